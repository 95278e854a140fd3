# bench/lib.sh - what the nginx benchmarks share (gateway.sh, gateway_ir.sh,
# nginx_pick.sh, shared_ffi_nginx.sh):
# nginx's temp paths, the backends' http block, and the bare balancer_by_lua
# counter they are measured against. Sourced after B1..B3 are set (and
# REPO, SO_DIR, MODDIR); it sources spec/e2e/lib.sh for the conf's head and
# the root with the copy of the driver.

. "$REPO/spec/e2e/lib.sh"

temps='client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fcgi; uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;'

# be_http KEEPALIVE-REQUESTS: one server on the three backend ports, "ok"
be_http() {
  cat <<CONF
http {
  access_log off; $temps
  keepalive_requests $1;
  server { listen 127.0.0.1:$B1; listen 127.0.0.1:$B2; listen 127.0.0.1:$B3;
           location / { return 200 "ok\n"; } }
}
CONF
}

# bare_init: the bare counter's globals (for init_worker_by_lua)
bare_init() {
  cat <<CONF
    bare_peers = { "127.0.0.1", $B1, "127.0.0.1", $B2, "127.0.0.1", $B3 }
    bare_i = 0
    bare_balancer = require "ngx.balancer"
CONF
}

# bare_upstream KEEPALIVE-DIRECTIVES: upstream "bare", a bare Lua counter +
# set_current_peer, the floor of any balancer_by_lua
bare_upstream() {
  cat <<CONF
  upstream bare {
    server 0.0.0.1;
    balancer_by_lua_block {
      local i = bare_i % 3
      bare_i = bare_i + 1
      bare_balancer.set_current_peer(bare_peers[2 * i + 1], bare_peers[2 * i + 2])
    }
    $1
  }
CONF
}

# content_bench NAME: a root for a one-worker nginx that runs a Lua bench
# in content_by_lua (nginx_pick.sh, shared_ffi_nginx.sh): ROOT (readable by
# the www-data worker) with the driver and the module in ROOT/lib, stopped
# and removed at exit. Needs REPO, SO_DIR.
content_bench() {
  [ -r "$SO_DIR/upstream.so" ] || { echo "missing $SO_DIR/upstream.so (make build/luajit/upstream.so)" >&2; exit 1; }
  local made
  make_root "$1"; made=$?
  trap '[ -s "$ROOT/logs/nginx.pid" ] && kill -QUIT "$(cat "$ROOT/logs/nginx.pid")" 2>/dev/null; sleep 0.3; rm -rf "$ROOT"' EXIT
  [ "$made" = 0 ] || exit 1
  mkdir -p "$ROOT"/{conf,logs,tmp}
}

# content_conf PORT LUA: that nginx's conf, LUA the body of content_by_lua;
# content_start: starts it (bounded wait for its pid file)
content_conf() {
  {
    conf_head 1 64 warn
    cat <<CONF
  access_log off;
  server {
    listen 127.0.0.1:$1;
    location / {
      content_by_lua_block {
$2
      }
    }
  }
}
CONF
  } >"$ROOT/conf/nginx.conf"
}
content_start() {
  nginx -p "$ROOT/" -c conf/nginx.conf || exit 1
  for _ in $(seq 50); do [ -s "$ROOT/logs/nginx.pid" ] && break; sleep 0.1; done
}
