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
. "$REPO/bench/lib.sh"
content_bench sharedffi
cp "$REPO/bench/shared_ffi.lua" "$REPO/bench/shared_rounds.lua" "$ROOT/lib/" || exit 1
content_conf "$PORT" "        local out = {}
        BENCH_N = $N
        BENCH_OUT = function(s) out[#out + 1] = s end
        dofile(\"$ROOT/lib/shared_ffi.lua\")
        ngx.say(table.concat(out, \"\\n\"))"
content_start
curl -s -m 900 "http://127.0.0.1:$PORT/"
errs=$(grep -cE '\[(error|alert|crit|emerg)\]' "$ROOT/logs/error.log")
[ "$errs" = 0 ] || { echo "nginx error log:" >&2; tail -5 "$ROOT/logs/error.log" >&2; exit 1; }
