#!/usr/bin/env bash
# bench/shared_ffi.lua inside nginx: the same loops (shared lists against
# private ones under LuaJIT, the FFI pick, the passive reports), run by
# content_by_lua in one nginx worker, so with nginx's own LuaJIT.
#   bash bench/shared_ffi_nginx.sh [iterations]
#   UPSTREAM_SO_DIR=dir (default build/luajit)  BENCH_PORT=18520
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
SO_DIR=${UPSTREAM_SO_DIR:-$REPO/build/luajit}
PORT=${BENCH_PORT:-18520}
N=${1:-2000000}
MODDIR=${NGINX_MODULES:-/usr/lib/nginx/modules}
[ -r "$SO_DIR/upstream.so" ] || { echo "missing $SO_DIR/upstream.so (make build/luajit/upstream.so)" >&2; exit 1; }
ROOT=$(mktemp -d /tmp/upstream-sharedffi.XXXXXX)
chmod 755 "$ROOT"
trap '[ -s "$ROOT/logs/nginx.pid" ] && kill -QUIT "$(cat "$ROOT/logs/nginx.pid")" 2>/dev/null; sleep 0.3; rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT"/{conf,logs,lib/upstream/nginx,tmp}
cp "$REPO"/src/upstream/*.lua "$ROOT/lib/upstream/" && cp "$REPO"/src/upstream/nginx/*.lua "$ROOT/lib/upstream/nginx/" \
  && cp "$SO_DIR/upstream.so" "$ROOT/lib/" && cp "$REPO/bench/shared_ffi.lua" "$ROOT/lib/" || exit 1
chmod -R a+rX "$ROOT/lib"
cat >"$ROOT/conf/nginx.conf" <<CONF
load_module $MODDIR/ndk_http_module.so;
load_module $MODDIR/ngx_http_lua_module.so;
worker_processes 1;
user www-data;
daemon on;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fcgi;
  uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
  lua_package_path "$ROOT/lib/?.lua;;";
  lua_package_cpath "$ROOT/lib/?.so;;";
  server {
    listen 127.0.0.1:$PORT;
    location / {
      content_by_lua_block {
        local out = {}
        BENCH_N = $N
        BENCH_OUT = function(s) out[#out + 1] = s end
        dofile("$ROOT/lib/shared_ffi.lua")
        ngx.say(table.concat(out, "\n"))
      }
    }
  }
}
CONF
nginx -p "$ROOT/" -c conf/nginx.conf || exit 1
for _ in $(seq 50); do [ -s "$ROOT/logs/nginx.pid" ] && break; sleep 0.1; done
curl -s -m 900 "http://127.0.0.1:$PORT/"
errs=$(grep -cE '\[(error|alert|crit|emerg)\]' "$ROOT/logs/error.log")
[ "$errs" = 0 ] || { echo "nginx error log:" >&2; tail -5 "$ROOT/logs/error.log" >&2; exit 1; }
