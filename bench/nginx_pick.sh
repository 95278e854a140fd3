#!/usr/bin/env bash
# ns per pick under LuaJIT inside nginx (content_by_lua), for every strategy,
# through upstream.ffi's picker and through list:pick(), at n=3 and at
# n=10000 with 99% of the backends down. The reference: lua-resty-balancer's
# JIT-compiled roundrobin/chash find, about 65 ns a call on this kind of
# machine (the issue's figure), and a bare Lua counter measured here.
#   make bench-nginx-pick      (or: bash bench/nginx_pick.sh [picks])
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
SO_DIR=${UPSTREAM_SO_DIR:-$REPO/build/luajit}
PORT=${BENCH_PORT:-18190}
PICKS=${1:-2000000}
MODDIR=${NGINX_MODULES:-/usr/lib/nginx/modules}
. "$REPO/bench/lib.sh"
content_bench pickbench
content_conf "$PORT" "$(cat <<'LUA'
        local upstream = require "upstream"
        local uffi = require "upstream.ffi"
        local N = PICKS_HERE
        local clock = os.clock
        local function best(f) -- best of 5, ns per call
          local b = math.huge
          for _ = 1, 5 do
            local t = clock(); f(); t = clock() - t
            if t < b then b = t end
          end
          return b / N * 1e9
        end
        local function backends(n)
          local t = {}
          for i = 1, n do t[i] = "10.0." .. math.floor(i / 256) .. "." .. (i % 256) .. ":80" end
          return t
        end
        local out = {}
        local function say(...) out[#out + 1] = table.concat({ ... }) end
        local i = 0
        local bare = { "a", "b", "c" }
        say(("%-28s %8.1f ns"):format("bare Lua counter", best(function()
          for _ = 1, N do i = i % 3 + 1; local _ = bare[i] end end)))
        for _, st in ipairs({ "round_robin", "weighted", "least_conn", "hash", "random" }) do
          for _, n in ipairs({ 3, 10000 }) do
            local bs = backends(n)
            local l = upstream.new(bs, { strategy = st })
            if n > 3 then
              for k = 1, n do if k % 100 ~= 1 then l:down(bs[k]); l:down(bs[k]) end end
            end
            local pick = uffi.picker(l)
            local key = st == "hash" and "user-42" or nil
            local f = best(function() for _ = 1, N do pick(key) end end)
            local c = best(function() for _ = 1, N do l:pick(key) end end)
            say(("%-11s n=%-5d  upstream.ffi %6.1f ns   list:pick() %6.1f ns"):format(st, n, f, c))
          end
        end
        ngx.say(table.concat(out, "\n"))
LUA
)"
sed -i "s/PICKS_HERE/$PICKS/" "$ROOT/conf/nginx.conf"
content_start
echo "ns per pick, LuaJIT in nginx ($(nginx -v 2>&1 | sed 's/.*: //')), $PICKS picks, best of 5:"
curl -s -m 600 "http://127.0.0.1:$PORT/"
