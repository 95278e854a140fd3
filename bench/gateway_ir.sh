#!/usr/bin/env bash
# Instructions per proxied request through the gateway, under callgrind: the
# figure wall-clock benchmarks cannot settle on shared machines (wrk rates
# swing threefold between rounds; instruction counts repeat within ~1%).
#
# One nginx process under callgrind (master_process off, daemon off), three
# keepalive backends in a second nginx that is not measured. Each variant is
# a location of the same gateway; for each, in turn: a warm-up (keepalive
# pools filled, traces compiled), then the counters are zeroed
# (callgrind_control -z), C keepalive clients (curl, one connection each)
# send R requests each, the counters are dumped (callgrind_control -d);
# again with 2R. Instructions per request = (I(2R) - I(R)) / (C * R): fixed
# costs (the clients' connections, the dump) cancel out.
#
#   native       nginx's own `upstream { server ...; }` round robin
#   bare         balancer_by_lua: a bare Lua counter + set_current_peer
#   bare+log     the same + an empty log_by_lua
#   balance      ngxu.balance(list), a checked list, no log_by_lua (feedback
#                through retries only: README, "Without log_by_lua")
#   balance+log  ngxu.balance + ngxu.log, a checked list
#   passive+log  ngxu.balance + ngxu.log, a passive list (no active check)
#   shared       balance's checked list, but shared (issue 10): made in
#                init_by_lua with shared = "gw" (with master_process off,
#                init_by_lua runs in the one measured process: the script
#                checks that its pid is the process that serves requests)
#   shared+log   balance+log's, shared the same way (shared = "gw_log")
#
#   make bench-gateway-ir    (or: bash bench/gateway_ir.sh [R [C [ROUNDS]]])
#   UPSTREAM_SO_DIR=dir  UPSTREAM_LUA_DIR=dir (holding upstream/*.lua)  BENCH_PORT=18200
#   JITV=file (jit.v log of the gateway)  JITDUMP=file (jit.dump)  KEEP=1 (keep the dumps)
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
SO_DIR=${UPSTREAM_SO_DIR:-$REPO/build/luajit}
LUA_DIR=${UPSTREAM_LUA_DIR:-$REPO/src} # where upstream/*.lua come from (to measure another version)
BASE=${BENCH_PORT:-18200}
R=${1:-500} C=${2:-4} ROUNDS=${3:-3}
MODDIR=${NGINX_MODULES:-/usr/lib/nginx/modules}
B1=$((BASE + 1)) B2=$((BASE + 2)) B3=$((BASE + 3))
. "$REPO/bench/lib.sh"
for f in "$SO_DIR/upstream.so" "$MODDIR/ngx_http_lua_module.so"; do
  [ -r "$f" ] || { echo "missing $f (make build/luajit/upstream.so)" >&2; exit 1; }
done
for c in valgrind callgrind_control curl nginx; do
  command -v $c >/dev/null || { echo "$c not found" >&2; exit 1; }
done

ROOT=$(mktemp -d /tmp/upstream-gwir.XXXXXX)
chmod 755 "$ROOT"
VGPID=
cleanup() {
  [ -n "$VGPID" ] && { kill -QUIT "$VGPID" 2>/dev/null; sleep 1; kill -KILL "$VGPID" 2>/dev/null; }
  if [ -s "$ROOT/be/logs/nginx.pid" ]; then kill -QUIT "$(cat "$ROOT/be/logs/nginx.pid")" 2>/dev/null; fi
  sleep 0.3
  if [ -n "${KEEP:-}" ]; then echo "kept $ROOT" >&2; else rm -rf "$ROOT"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$ROOT"/{be,gw}/{conf,logs,tmp} "$ROOT/lib/upstream/nginx"
cp "$LUA_DIR"/upstream/*.lua "$ROOT/lib/upstream/" && cp "$LUA_DIR"/upstream/nginx/*.lua "$ROOT/lib/upstream/nginx/" \
  && cp "$SO_DIR/upstream.so" "$ROOT/lib/" || exit 1
chmod -R a+rX "$ROOT/lib"

{
  cat <<CONF
worker_processes 1;
user www-data;
daemon on;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 1024; }
CONF
  be_http 1000000
} >"$ROOT/be/conf/nginx.conf"

ka='keepalive 16; keepalive_requests 1000000;'
jitv=
[ -n "${JITV:-}" ] && jitv="require('jit.v').start('$JITV')"
[ -n "${JITDUMP:-}" ] && jitv="require('jit.dump').on('tim', '$JITDUMP')"
cat >"$ROOT/gw/conf/nginx.conf" <<CONF
load_module $MODDIR/ndk_http_module.so;
load_module $MODDIR/ngx_http_lua_module.so;
master_process off;
daemon off;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off; $temps
  keepalive_requests 1000000;
  lua_package_path "$ROOT/lib/?.lua;;";
  lua_package_cpath "$ROOT/lib/?.so;;";
  lua_socket_log_errors off;
  init_by_lua_block {
    local upstream = require "upstream"
    local ngxu = require "upstream.nginx"
    local B = { "127.0.0.1:$B1", "127.0.0.1:$B2", "127.0.0.1:$B3" }
    local function shared_list(name)
      return upstream.new(B, { shared = name, interval = 3600, timeout = 1,
        check = ngxu.http_check{ path = "/health", expect = 200 } })
    end
    shared, shared_log = shared_list("gw"), shared_list("gw_log")
    local f = io.open("/proc/self/stat")
    init_pid = f and f:read("*n")
    if f then f:close() end
  }
  init_worker_by_lua_block {
    $jitv
    local upstream = require "upstream"
    ngxu = require "upstream.nginx"
    local B = { "127.0.0.1:$B1", "127.0.0.1:$B2", "127.0.0.1:$B3" }
    -- checked, with checks far apart so that none runs while counting
    local function checked_list()
      local l = upstream.new(B, { interval = 3600, timeout = 1,
        check = ngxu.http_check{ path = "/health", expect = 200 } })
      ngxu.start(l, { tick = 60 })
      return l
    end
    checked, checked_log = checked_list(), checked_list()
    passive = upstream.new(B)
    ngxu.start(shared, { tick = 60 })
    ngxu.start(shared_log, { tick = 60 })
$(bare_init)
  }
  upstream native { server 127.0.0.1:$B1; server 127.0.0.1:$B2; server 127.0.0.1:$B3; $ka }
$(bare_upstream "$ka")
  upstream checked { server 0.0.0.1; balancer_by_lua_block { ngxu.balance(checked) } $ka }
  upstream passive { server 0.0.0.1; balancer_by_lua_block { ngxu.balance(passive) } $ka }
  upstream checked_log { server 0.0.0.1; balancer_by_lua_block { ngxu.balance(checked_log) } $ka }
  upstream shared { server 0.0.0.1; balancer_by_lua_block { ngxu.balance(shared) } $ka }
  upstream shared_log { server 0.0.0.1; balancer_by_lua_block { ngxu.balance(shared_log) } $ka }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  # one server per variant, each with the one location "/": the same
  # request line and the same location lookup for all (a longer URI or a
  # deeper place in the location tree costs ~100 instructions)
  server { listen 127.0.0.1:$((BASE + 10)); location / { proxy_pass http://native; } }
  server { listen 127.0.0.1:$((BASE + 11)); location / { proxy_pass http://bare; } }
  server { listen 127.0.0.1:$((BASE + 12)); location / { proxy_pass http://bare; log_by_lua_block { } } }
  server { listen 127.0.0.1:$((BASE + 13)); location / { proxy_pass http://checked; } }
  server { listen 127.0.0.1:$((BASE + 14)); location / { proxy_pass http://checked_log;
    log_by_lua_block { ngxu.log(checked_log) } } }
  server { listen 127.0.0.1:$((BASE + 15)); location / { proxy_pass http://passive;
    log_by_lua_block { ngxu.log(passive) } } }
  server { listen 127.0.0.1:$((BASE + 16)); location / { proxy_pass http://shared; } }
  server { listen 127.0.0.1:$((BASE + 17)); location / { proxy_pass http://shared_log;
    log_by_lua_block { ngxu.log(shared_log) } } }
  server {
    listen 127.0.0.1:$BASE;
    # a full collection before each count, so that each starts from the same heap
    location /gc { content_by_lua_block { collectgarbage("collect") ngx.say("ok") } }
    # the pid init_by_lua ran in, the pid serving requests, the shared list's lease holder
    location /pids { content_by_lua_block {
      ngx.say(init_pid, " ", ngx.worker.pid(), " ", shared:lease().pid, " ", shared_log:lease().pid)
    } }
  }
}
CONF

nginx -p "$ROOT/be/" -c conf/nginx.conf || { echo "backend nginx failed to start" >&2; exit 1; }
valgrind --tool=callgrind --callgrind-out-file="$ROOT/cg.out" --smc-check=all-non-file \
  nginx -p "$ROOT/gw/" -c conf/nginx.conf >"$ROOT/vg.log" 2>&1 &
VGPID=$!
declare -A port=([native]=$((BASE + 10)) [bare]=$((BASE + 11)) [bare+log]=$((BASE + 12))
  [balance]=$((BASE + 13)) [balance+log]=$((BASE + 14)) [passive+log]=$((BASE + 15))
  [shared]=$((BASE + 16)) [shared+log]=$((BASE + 17)))
up=
for _ in $(seq 150); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -m 2 "http://127.0.0.1:${port[native]}/")" = 200 ] && { up=1; break; }
  kill -0 $VGPID 2>/dev/null || break
  sleep 0.2
done
[ -n "$up" ] || { echo "the gateway did not start:" >&2; tail -20 "$ROOT/vg.log" "$ROOT/gw/logs/error.log" >&2; exit 1; }

variants=${VARIANTS:-native bare bare+log balance balance+log passive+log shared shared+log}
# the shared lists were made in init_by_lua of the process measured, which holds their leases
read -r ipid wpid l1 l2 <<<"$(curl -s -m 5 "http://127.0.0.1:$BASE/pids")"
if [ -z "${ipid:-}" ] || [ "$ipid" != "$wpid" ] || [ "$l1" != "$wpid" ] || [ "$l2" != "$wpid" ]; then
  echo "init_by_lua ran in pid ${ipid:-?}, requests in ${wpid:-?}, leases ${l1:-?} ${l2:-?}: not one process" >&2; exit 1
fi
echo "init_by_lua and the requests: one process (pid $wpid), holding both shared lists' leases"
for v in $variants; do
  c=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://127.0.0.1:${port[$v]}/")
  [ "$c" = 200 ] || { echo "/$v answers $c" >&2; exit 1; }
done

# clients PATH COUNT: C keepalive clients, COUNT requests each; fails on any non-200
clients() {
  local args=() pids=() i bad=0
  for i in $(seq "$2"); do args+=(-o /dev/null "http://127.0.0.1:${port[$1]}/"); done
  for i in $(seq "$C"); do
    curl -s -m 300 -w '%{http_code}\n' "${args[@]}" >"$ROOT/codes.$i" & pids+=($!)
  done
  wait "${pids[@]}"
  for i in $(seq "$C"); do
    [ "$(grep -c '^200$' "$ROOT/codes.$i")" = "$2" ] || bad=1
  done
  [ "$bad" = 0 ] || echo "  /$1: a request did not answer 200" >&2
}
# counted PATH COUNT: instructions the gateway ran for C x COUNT requests
counted() {
  curl -s -o /dev/null -m 10 "http://127.0.0.1:$BASE/gc"
  callgrind_control -z $VGPID >/dev/null 2>&1
  clients "$1" "$2"
  callgrind_control -d $VGPID >/dev/null 2>&1
  local f i
  f=$ROOT/cg.out.$(find "$ROOT" -maxdepth 1 -name 'cg.out.*' | wc -l)
  for i in $(seq 50); do [ -s "$f" ] && grep -q '^summary:' "$f" && break; sleep 0.1; done
  awk '/^summary:/ { print $2 }' "$f"
}

declare -A ir all
echo "user-space instructions per proxied request (callgrind; $C keepalive clients x $R and x $((2 * R)) requests,"
echo "difference over $((C * R)); nginx $(nginx -v 2>&1 | sed 's/.*\///'), one process; median of $ROUNDS interleaved rounds):"
for v in $variants; do clients "$v" 150; done # warm-up: pools, traces
for r in $(seq "$ROUNDS"); do
  line="  round $r:"
  for v in $variants; do
    a=$(counted "$v" "$R"); b=$(counted "$v" $((2 * R)))
    x=$(( (b - a) / (C * R) ))
    all[$v]="${all[$v]:-} $x"
    line="$line $v=$x"
  done
  echo "$line"
done
for v in $variants; do # the median of the rounds
  ir[$v]=$(tr ' ' '\n' <<<"${all[$v]}" | grep . | sort -n | awk '{ x[NR] = $1 } END { print (NR % 2) ? x[(NR + 1) / 2] : int((x[NR / 2] + x[NR / 2 + 1]) / 2) }')
done
echo
printf '  %-12s %8s\n' variant "instr/req"
for v in $variants; do printf '  %-12s %8d\n' "$v" "${ir[$v]}"; done
ratio() { # ratio A B: instructions of A over those of B ("-" if one was not run)
  if [ -z "${ir[$1]:-}" ] || [ -z "${ir[$2]:-}" ]; then echo -; return; fi
  awk -v a="${ir[$1]}" -v b="${ir[$2]}" 'BEGIN { printf "%.3f", a / b }'
}
echo
echo "  balance     / bare      $(ratio balance bare)   (target <= 1.01)"
echo "  balance+log / bare+log  $(ratio balance+log bare+log)   (target <= 1.02, checked list)"
echo "  passive+log / bare+log  $(ratio passive+log bare+log)   (target <= 1.02, passive list)"
echo "  shared      / balance   $(ratio shared balance)   (target <= 1.03, shared vs private checked list)"
echo "  shared+log  / balance+log $(ratio shared+log balance+log) (target <= 1.03, shared vs private checked list)"
echo "  bare        / native    $(ratio bare native)"
errs=$(grep -cE '\[(error|alert|crit|emerg)\]' "$ROOT/gw/logs/error.log")
echo "gateway error log: $errs error lines"
[ "$errs" = 0 ] || tail -5 "$ROOT/gw/logs/error.log"
