# spec/e2e/lib.sh - what the e2e scripts share: TAP output, the module and
# tool checks, the head of an nginx.conf, a temp root with copies of the
# driver for the www-data workers, the clean-up at exit, and stopping an
# nginx by its pid file. Sourced, after REPO, SO_DIR, NGINX and MODDIR are
# set; bench/lib.sh sources it too (for conf_head and make_root).

n=0 passed=0 failed=0
ok() { n=$((n + 1)); passed=$((passed + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "#   $l"; done; }
check() { # check DESC CONDITION-RESULT(0/1) [diag...]
  local d=$1 r=$2; shift 2
  if [ "$r" = 0 ]; then ok "$d"; else not_ok "$d" "$@"; fi
}
finish() { echo "1..$n"; echo "$passed passed, $failed failed"; [ "$failed" = 0 ]; }
bail() { not_ok "$1"; finish; exit 1; }

# need_tools TOOL...: the module, nginx's Lua module and each tool, or bail
need_tools() {
  local f t
  for f in "$SO_DIR/upstream.so" "$MODDIR/ngx_http_lua_module.so" "$MODDIR/ndk_http_module.so"; do
    [ -r "$f" ] || bail "missing $f (make e2e builds upstream.so for LuaJIT; apt-get install nginx-light libnginx-mod-http-lua)"
  done
  command -v "$NGINX" >/dev/null || bail "nginx not found"
  for t in "$@"; do command -v "$t" >/dev/null || bail "$t not found"; done
}

# conf_head WORKERS CONNECTIONS LOG-LEVEL [plain]: the head of an
# nginx.conf for a prefix with logs/ and tmp/, into its http block, which
# the caller goes on with and closes: a daemon whose workers run as
# www-data, the pid and the error log (at LOG-LEVEL) in logs/, the temp
# files in tmp/; and, but with "plain", nginx's Lua module loaded, finding
# the driver and the module in LIB
conf_head() {
  local plain=${4:-}
  if [ "$plain" != plain ]; then
    echo "load_module $MODDIR/ndk_http_module.so;"
    echo "load_module $MODDIR/ngx_http_lua_module.so;"
  fi
  cat <<CONF
worker_processes $1;
user www-data;
daemon on;
pid logs/nginx.pid;
error_log logs/error.log $3;
events { worker_connections $2; }
http {
  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy;
  fastcgi_temp_path tmp/fastcgi; uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
CONF
  if [ "$plain" != plain ]; then
    echo "  lua_package_path \"$LIB/?.lua;;\";"
    echo "  lua_package_cpath \"$LIB/?.so;;\";"
  fi
}

# copy_lib DIR: the driver and the module, readable by the workers (they
# run as www-data, which may not reach this checkout); fails if a copy does
copy_lib() {
  mkdir -p "$1/upstream/nginx"
  cp "$REPO"/src/upstream/*.lua "$1/upstream/" && cp "$REPO"/src/upstream/nginx/*.lua "$1/upstream/nginx/" \
    && cp "$SO_DIR/upstream.so" "$1/" || return 1
  chmod -R a+rX "$1"
}

# make_root NAME: ROOT, a new temp dir /tmp/upstream-NAME.XXXXXX that the
# workers can read, with the driver and the module in LIB=$ROOT/lib; fails
# if a copy does
make_root() {
  ROOT=$(mktemp -d "/tmp/upstream-$1.XXXXXX") || return 1
  chmod 755 "$ROOT"
  LIB=$ROOT/lib
  copy_lib "$LIB"
}

# cleanup_at_exit LOG LINES TITLE: at exit, stop_all (the caller's), then,
# if a test failed, the last LINES of LOG as TAP comments under TITLE, then
# ROOT removed (E2E_KEEP=1 keeps it); INT and TERM exit 130 through it
cleanup_at_exit() {
  exit_log=$1 exit_lines=$2 exit_title=$3
  trap e2e_cleanup EXIT
  trap 'exit 130' INT TERM
}
e2e_cleanup() {
  stop_all
  if [ "$failed" != 0 ] && [ -f "$exit_log" ]; then
    echo "# --- $exit_title (last $exit_lines lines) ---"
    tail -"$exit_lines" "$exit_log" | sed 's/^/# /'
  fi
  if [ -n "${E2E_KEEP:-}" ]; then echo "# kept $ROOT"; else rm -rf "$ROOT"; fi
}

# alive PID: the process runs (a zombie does not: a daemon killed here may
# wait a while to be reaped, and kill -0 still finds it)
alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  case "$st" in Z*) return 1 ;; esac
}

# stop_pidfile FILE: graceful stop of the nginx whose master's pid is in
# FILE, bounded; then SIGKILL (the master and its workers, by pid)
stop_pidfile() {
  local pid i
  [ -s "$1" ] || return 0
  pid=$(cat "$1")
  kill -QUIT "$pid" 2>/dev/null
  for i in $(seq 50); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  pkill -KILL -P "$pid" 2>/dev/null
  return 0
}
