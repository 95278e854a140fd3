#!/usr/bin/env bash
# Gateway throughput with wrk on loopback, one run, interleaved rounds:
#   native  nginx's own `upstream { server ...; }` round robin
#   bare    balancer_by_lua picking with a bare Lua counter
#   ngxu    ngxu.balance (balancer) + ngxu.log (log phase), active checks on
#   ngxu-b  ngxu.balance only (no log_by_lua), for the split
# All proxy with HTTP/1.1 keepalive to three backends (one nginx, 3 ports).
# The gateway (1 worker) is pinned to CPU 0, wrk and the backends to CPU 1,
# so the gateway is the bottleneck and requests/s measure its cost per
# request; the gateway worker's CPU time per request is reported too (less
# sensitive to the load generator's share of CPU 1). Shared VMs drift by
# +-10% between runs: rounds are short and interleaved, and the ratios are
# the median of the per-round ratios.
# Then the cost of each call, measured in a loop inside balancer_by_lua.
#   UPSTREAM_SO_DIR=dir  ROUNDS=5 SECS=3 CONNS=32 [BENCH_IR=1]  bash bench/gateway.sh
# BENCH_IR=1 adds instructions per request under callgrind (about a minute);
# bench/gateway_ir.sh (make bench-gateway-ir) is the finer, warmed-up count.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
SO_DIR=${UPSTREAM_SO_DIR:-$REPO/build/luajit}
BASE=${BENCH_PORT:-18180}
ROUNDS=${ROUNDS:-5} SECS=${SECS:-3} CONNS=${CONNS:-32}
MODDIR=${NGINX_MODULES:-/usr/lib/nginx/modules}
B1=$((BASE + 1)) B2=$((BASE + 2)) B3=$((BASE + 3))
. "$REPO/bench/lib.sh"
for f in "$SO_DIR/upstream.so" "$MODDIR/ngx_http_lua_module.so"; do
  [ -r "$f" ] || { echo "missing $f" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }

ROOT=$(mktemp -d /tmp/upstream-bench.XXXXXX)
chmod 755 "$ROOT"
stop() {
  local pidf=$ROOT/$1/logs/nginx.pid pid i
  [ -s "$pidf" ] || return 0
  pid=$(cat "$pidf"); kill -QUIT "$pid" 2>/dev/null
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null; return 0
}
VGPID=
trap 'stop gw; stop be; [ -n "$VGPID" ] && kill -KILL $VGPID 2>/dev/null; rm -rf "$ROOT"' EXIT
trap 'exit 130' INT TERM

GW_CPU=01 BE_CPU=10 PIN="taskset -c 1"
if [ "$(nproc)" -lt 2 ] || ! command -v taskset >/dev/null; then GW_CPU=auto BE_CPU=auto PIN=; fi
head_conf() { # head_conf CPU-MASK
  cat <<CONF
worker_processes 1;
worker_cpu_affinity $1;
user www-data;
daemon on;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 4096; }
CONF
}
mkdir -p "$ROOT"/{be,gw}/{conf,logs,tmp}
{
  head_conf $BE_CPU
  be_http 100000
} >"$ROOT/be/conf/nginx.conf"

ka='keepalive 64; keepalive_requests 100000;'
gw_http() { # gw_http LISTEN-PORT: the gateway's http block
  cat <<CONF
http {
  access_log off; $temps
  keepalive_requests 100000;
  lua_package_path "$REPO/src/?.lua;;";
  lua_package_cpath "$SO_DIR/?.so;;";
  lua_socket_log_errors off;
  init_worker_by_lua_block {
    local upstream = require "upstream"
    ngxu = require "upstream.nginx"
    backends = upstream.new({ "127.0.0.1:$B1", "127.0.0.1:$B2", "127.0.0.1:$B3" }, {
      interval = 0.5, timeout = 0.2,
      check = ngxu.http_check{ path = "/health", expect = 200 },
    })
    ngxu.start(backends)
    -- ngxu-b's own list: one that log_by_lua never sees records nothing
    backends_b = upstream.new({ "127.0.0.1:$B1", "127.0.0.1:$B2", "127.0.0.1:$B3" }, {
      interval = 0.5, timeout = 0.2,
      check = ngxu.http_check{ path = "/health", expect = 200 },
    })
    ngxu.start(backends_b)
$(bare_init)
  }
  upstream native { server 127.0.0.1:$B1; server 127.0.0.1:$B2; server 127.0.0.1:$B3; $ka }
$(bare_upstream "$ka")
  # per-call costs, each measured in a loop inside one balancer_by_lua run
  upstream micro {
    server 0.0.0.1;
    balancer_by_lua_block {
      local bal, clock, N = bare_balancer, os.clock, 200000
      local res = {}
      local function run(name, f)
        local best = 1e9
        for _ = 1, 3 do
          local t0 = clock(); f(N); local dt = clock() - t0
          if dt < best then best = dt end
        end
        res[#res + 1] = string.format("  %-34s %7.0f ns", name, best / N * 1e9)
      end
      run("bare counter + set_current_peer", function(n)
        for _ = 1, n do
          local k = bare_i % 3; bare_i = bare_i + 1
          bal.set_current_peer(bare_peers[2 * k + 1], bare_peers[2 * k + 2])
        end
      end)
      run("ngxu.balance(list)", function(n) for _ = 1, n do ngxu.balance(backends) end end)
      run("  of which set_current_peer", function(n)
        for _ = 1, n do bal.set_current_peer("127.0.0.1", $B1) end
      end)
      run("  of which list:pick()", function(n) for _ = 1, n do backends:pick() end end)
      run("list:down(b) + list:up(b)", function(n)
        for _ = 1, n do backends:down("127.0.0.1:$B1"); backends:up("127.0.0.1:$B1") end
      end)
      run("ngx.var.upstream_status (log phase)", function(n)
        for _ = 1, n do local _ = ngx.var.upstream_status end
      end)
      micro_result = table.concat(res, "\\n")
      bal.set_current_peer("127.0.0.1", $B1)
    }
  }
  upstream ngxu { server 0.0.0.1; balancer_by_lua_block { ngxu.balance(backends) } $ka }
  upstream ngxu_b { server 0.0.0.1; balancer_by_lua_block { ngxu.balance(backends_b) } $ka }
  server {
    listen 127.0.0.1:$1;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    location /native { proxy_pass http://native; }
    location /bare { proxy_pass http://bare; }
    location /ngxu { proxy_pass http://ngxu; log_by_lua_block { ngxu.log(backends) } }
    location /ngxu-b { proxy_pass http://ngxu_b; }
    location /micro { proxy_pass http://micro; }
    location /micro-result { content_by_lua_block { ngx.say(micro_result) } }
  }
}
CONF
}
{
  echo "load_module $MODDIR/ndk_http_module.so;"
  echo "load_module $MODDIR/ngx_http_lua_module.so;"
  head_conf $GW_CPU
  gw_http $BASE
} >"$ROOT/gw/conf/nginx.conf"

for s in be gw; do
  nginx -p "$ROOT/$s" -c conf/nginx.conf || { echo "nginx $s failed to start" >&2; exit 1; }
done
for i in $(seq 50); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -m 1 "http://127.0.0.1:$BASE/ngxu")" = 200 ] && break
  sleep 0.1
done
for v in native bare ngxu ngxu-b micro; do
  c=$(curl -s -o /dev/null -w '%{http_code}' -m 2 "http://127.0.0.1:$BASE/$v")
  [ "$c" = 200 ] || { echo "/$v answers $c" >&2; exit 1; }
done
for v in native bare ngxu ngxu-b; do # warm-up (keepalive pools, JIT)
  $PIN wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$BASE/$v" >/dev/null
done

wpid=$(pgrep -P "$(cat "$ROOT/gw/logs/nginx.pid")" | head -1)
hz=$(getconf CLK_TCK)
declare -A sum best rps us
variants="native bare ngxu ngxu-b"
ratios=$ROOT/ratios
echo "wrk -t1 -c$CONNS -d${SECS}s, $ROUNDS interleaved rounds; gateway: 1 worker on CPU mask $GW_CPU ($(nproc) cores)"
for r in $(seq "$ROUNDS"); do
  line="round $r:"
  for v in $variants; do
    c0=$(awk '{ print $14 + $15 }' "/proc/$wpid/stat")
    out=$($PIN wrk -t1 -c"$CONNS" -d"${SECS}s" "http://127.0.0.1:$BASE/$v")
    c1=$(awk '{ print $14 + $15 }' "/proc/$wpid/stat")
    rps=$(awk '/^Requests\/sec:/ { printf "%d", $2 }' <<<"$out")
    nreq=$(awk '/ requests in / { print $1 }' <<<"$out")
    # gateway worker CPU per request, in microseconds (clock ticks at $hz Hz)
    us[$v]=$(awk -v a="$c0" -v b="$c1" -v n="$nreq" -v hz="$hz" 'BEGIN { printf "%.2f", (b - a) * 1e6 / hz / n }')
    bad=$(awk '/Non-2xx or 3xx responses:|Socket errors:/' <<<"$out")
    [ -n "$bad" ] && echo "  $v: $bad" >&2
    sum[$v]=$(( ${sum[$v]:-0} + rps ))
    [ "${best[$v]:-0}" -lt "$rps" ] && best[$v]=$rps
    rps[$v]=$rps
    line="$line $v=$rps (${us[$v]} us)"
  done
  echo "$line"
  echo "${rps[ngxu]} ${rps[native]} ${rps[bare]} ${rps[ngxu-b]} ${us[ngxu]} ${us[native]} ${us[bare]} ${us[ngxu-b]}" >>"$ratios"
done
mean() { echo $(( sum[$1] / ROUNDS )); }
echo
printf '%-8s %10s %10s\n' variant "mean r/s" "best r/s"
for v in $variants; do printf '%-8s %10d %10d\n' "$v" "$(mean "$v")" "${best[$v]}"; done
median() { # median COLUMN-EXPRESSION over the rounds
  awk "{ print $1 }" "$ratios" | sort -g | awk '{ v[NR] = $1 } END { printf "%.3f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
echo
echo "median of per-round ratios     requests/s   CPU (inverse of gateway CPU time per request)"
row() { printf '  %-16s %8s     %8s   %s\n' "$1" "$(median "$2")" "$(median "$3")" "$4"; }
row "ngxu   / native" '$1 / $2' '$6 / $5' "(target >= 0.95)"
row "ngxu   / bare" '$1 / $3' '$7 / $5' "(target >= 0.98)"
row "ngxu-b / native" '$4 / $2' '$6 / $8' "(balance only, no log_by_lua)"
row "ngxu-b / bare" '$4 / $3' '$7 / $8' ""
row "bare   / native" '$3 / $2' '$6 / $7' ""
echo
echo "cost per call inside balancer_by_lua (best of 3 x 200000):"
curl -s -o /dev/null -m 30 "http://127.0.0.1:$BASE/micro"
curl -s -m 2 "http://127.0.0.1:$BASE/micro-result"
# Optional: user-space instructions per request of the gateway under
# callgrind, (Ir(N2) - Ir(N1)) / (requests N2 - N1): deterministic where the
# timings above are not, but blind to the kernel (syscalls, TCP), so the
# relative differences it shows are larger than in time.
if [ -n "${BENCH_IR:-}" ] && command -v valgrind >/dev/null; then
  IRP=$((BASE + 10))
  ir_run() { # ir_run VARIANT REQUESTS-PER-CLIENT (4 keepalive clients)
    local d=$ROOT/ir.$1.$2 i args=() pids=()
    mkdir -p "$d"/{conf,logs,tmp}
    {
      echo "load_module $MODDIR/ndk_http_module.so;"
      echo "load_module $MODDIR/ngx_http_lua_module.so;"
      echo "master_process off; daemon off; pid logs/nginx.pid; error_log logs/error.log warn;"
      echo "events { worker_connections 1024; }"
      gw_http $IRP
    } >"$d/conf/nginx.conf"
    valgrind --tool=callgrind --callgrind-out-file=/dev/null --smc-check=all-non-file \
      nginx -p "$d/" -c conf/nginx.conf >"$d/vg.log" 2>&1 &
    VGPID=$!
    for i in $(seq 100); do
      curl -s -o /dev/null -m 1 "http://127.0.0.1:$IRP/$1" && break
      kill -0 $VGPID 2>/dev/null || break; sleep 0.2
    done
    for i in $(seq "$2"); do args+=(-o /dev/null "http://127.0.0.1:$IRP/$1"); done
    for i in 1 2 3 4; do curl -s -m 120 "${args[@]}" & pids+=($!); done
    wait "${pids[@]}"
    kill -QUIT $VGPID 2>/dev/null; wait $VGPID; VGPID=
    grep -o "Collected : [0-9]*" "$d/vg.log" | awk '{ print $3 }'
  }
  echo
  echo "user-space instructions per request (callgrind, 4000 requests):"
  declare -A ir
  for v in $variants; do
    a=$(ir_run "$v" 250); b=$(ir_run "$v" 1250)
    ir[$v]=$(( (b - a) / 4000 ))
    printf '  %-8s %6d\n' "$v" "${ir[$v]}"
  done
  irr() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b / a }'; }
  echo "  ngxu / native = $(irr "${ir[ngxu]}" "${ir[native]}")   ngxu / bare = $(irr "${ir[ngxu]}" "${ir[bare]}")   ngxu-b / bare = $(irr "${ir[ngxu-b]}" "${ir[bare]}")"
fi

errs=$(grep -cE '\[(error|alert|crit|emerg)\]' "$ROOT/gw/logs/error.log")
echo "gateway error log: $errs error lines"
