#!/usr/bin/env bash
# End-to-end test of a shared list (issue 10) in a real nginx with 4
# workers: the list is made in init_by_lua (the master, before the fork)
# with shared = "web", checked by upstream.nginx.start in every worker
# (only the lease holder probes), balanced and passively scored in every
# worker. Three backends in the same nginx on loopback, each logging its
# /health probes to a file of its own.
# Ports 18400-18449 only. Prints TAP and ends with "N passed, N failed".
#
#   UPSTREAM_SO_DIR=dir-with-upstream.so  bash spec/e2e/shared.sh
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
SO_DIR=${UPSTREAM_SO_DIR:-$REPO/build/luajit}
GW=18400 B1=18401 B2=18402 B3=18403
INTERVAL=0.5
NGINX=${NGINX:-nginx}
MODDIR=${NGINX_MODULES:-/usr/lib/nginx/modules}

. "$REPO/spec/e2e/lib.sh"
need_tools curl

make_root e2e-shared
mkdir -p "$ROOT/conf" "$ROOT/logs" "$ROOT/tmp"
chmod 777 "$ROOT/logs" "$ROOT"

stop_all() { stop_pidfile "$ROOT/logs/nginx.pid"; }
cleanup_at_exit "$ROOT/logs/error.log" 30 error.log

backend() { # backend NAME PORT
  cat <<CONF
  server {
    listen 127.0.0.1:$2;
    location = /health {
      access_log logs/probe-$1.log probe;
      if (-f $ROOT/fail-$1) { return 503 "draining\n"; }
      return 200 "ok\n";
    }
    location / { access_log off; add_header X-Backend $1 always; return 200 "$1\n"; }
  }
CONF
}

{
  conf_head 4 512 notice
  cat <<CONF
  log_format probe '\$msec';
  access_log off;
  lua_socket_log_errors off;
  init_by_lua_block {
    upstream = require "upstream"
    ngxu = require "upstream.nginx"
    web = upstream.new({ "127.0.0.1:$B1", "127.0.0.1:$B2", "127.0.0.1:$B3" }, {
      shared = "web", interval = $INTERVAL, timeout = 0.3,
      check = ngxu.http_check{ path = "/health", expect = 200 },
    })
  }
  init_worker_by_lua_block { ngxu.start(web, { tick = 0.05 }) }
$(backend b1 $B1)
$(backend b2 $B2)
$(backend b3 $B3)
  upstream gw {
    server 0.0.0.1;
    balancer_by_lua_block { ngxu.balance(web) }
  }
  server {
    listen 127.0.0.1:$GW;
    add_header X-Worker \$pid always;
    proxy_connect_timeout 1s;
    proxy_read_timeout 2s;
    location = /down {
      content_by_lua_block {
        for _ = 1, 10 do web:down(ngx.var.arg_b) end
        ngx.say(web:score(ngx.var.arg_b), " ", ngx.worker.pid())
      }
    }
    location = /state {
      content_by_lua_block {
        local le = web:lease()
        ngx.say("lease ", le.pid, " ", le.generation)
        for _, s in ipairs(web:status()) do
          ngx.say(s.backend, " ", s.score, " ", s.checks, " ", s.failures)
        end
      }
    }
    location / { proxy_pass http://gw; log_by_lua_block { ngxu.log(web) } }
  }
}
CONF
} >"$ROOT/conf/nginx.conf"

"$NGINX" -p "$ROOT" -c conf/nginx.conf -e logs/error.log 2>"$ROOT/start.err" ||
  bail "nginx did not start: $(cat "$ROOT/start.err")"
G=http://127.0.0.1:$GW

workers() { pgrep -P "$(cat "$ROOT/logs/nginx.pid")" | sort; }
probes() { cat "$ROOT/logs/probe-$1.log" 2>/dev/null | wc -l; }
# hits_of NAME COUNT: how many of COUNT sequential requests NAME served
hits_of() {
  local b h=0
  for _ in $(seq "$2"); do
    b=$(curl -sS -D - -o /dev/null "$G/" | tr -d '\r' | awk '/^X-Backend:/ { print $2 }')
    [ "$b" = "$1" ] && h=$((h + 1))
  done
  echo "$h"
}
# drained BACKEND STATE: BACKEND's score is below 0 in STATE (/state's text)
drained() { awk -v b="$1" '$1 == b && $2 < 0 { f = 1 } END { exit !f }' <<<"$2"; }
# reload: nginx -s reload (SIGHUP to the master), then a bounded wait for
# the 4 new workers
reload() {
  local old_workers new w
  old_workers=$(workers | tr '\n' ' ')
  kill -HUP "$(cat "$ROOT/logs/nginx.pid")"
  for _ in $(seq 100); do
    new=0
    for w in $(workers); do case " $old_workers " in *" $w "*) ;; *) new=$((new + 1)) ;; esac; done
    [ "$new" -ge 4 ] && break
    sleep 0.05
  done
}

# the first round of checks (bounded)
ready=1
for _ in $(seq 100); do
  if curl -fsS "$G/state" 2>/dev/null | awk 'NR > 1 && $3 < 1 { bad = 1 } END { exit bad }'; then
    ready=0; break
  fi
  sleep 0.1
done
check "the shared list was checked" $ready "$(curl -sS "$G/state")"
check "4 workers" "$([ "$(workers | wc -l)" = 4 ]; echo $?)" "$(workers)"

# --- sequential requests rotate globally, over every worker --------------------
seq_out=$ROOT/seq.txt
: >"$seq_out"
for _ in $(seq 30); do
  curl -sS -D - -o /dev/null "$G/" | tr -d '\r' |
    awk '/^X-Backend:/ { b = $2 } /^X-Worker:/ { w = $2 } END { print b, w }' >>"$seq_out"
done
rot=0
awk '{ print $1 }' "$seq_out" | awk '
  { s[NR] = $1 } END {
    for (i = 4; i <= NR; i++) if (s[i] != s[i - 3]) exit 1
    if (s[1] == s[2] || s[2] == s[3] || s[1] == s[3]) exit 1
  }' || rot=1
nworkers=$(awk '{ print $2 }' "$seq_out" | sort -u | wc -l)
check "sequential requests rotate b1 b2 b3 globally" $rot "$(awk '{ printf "%s ", $1 }' "$seq_out")"
check "the requests were served by more than one worker ($nworkers)" \
  "$([ "$nworkers" -ge 2 ]; echo $?)" "$(awk '{ printf "%s ", $2 }' "$seq_out")"

# --- one probe per backend per interval, not four --------------------------------
p0=$(probes b1)
sleep 4
p1=$(probes b1)
want=$(awk -v i=$INTERVAL 'BEGIN { print 4 / i }')
got=$((p1 - p0))
check "one probe of b1 per interval over 4 s: $got, want $want +-1" \
  "$([ "$got" -ge $((want - 1)) ] && [ "$got" -le $((want + 1)) ]; echo $?)"

# --- 3000 requests over 4 connections: each backend within 5% of its share ------
curl -sS --parallel --parallel-max 4 -D - -o /dev/null "$G/?[1-3000]" 2>/dev/null | tr -d '\r' |
  awk '/^X-Backend:/ { c[$2]++ } END { for (b in c) print b, c[b] }' | sort >"$ROOT/spread.txt"
spread=$(awk '$2 >= 950 && $2 <= 1050 { k++ } END { print k + 0 }' "$ROOT/spread.txt")
check "3000 requests spread evenly: each backend 1000 +-5%" "$([ "$spread" = 3 ]; echo $?)" \
  "$(tr '\n' ' ' <"$ROOT/spread.txt")"

# --- a down() in one worker is seen by the next request in any other ------------
touch "$ROOT/fail-b2" # its checks fail too, so that it stays down
downer=$(curl -fsS "$G/down?b=127.0.0.1:$B2" | awk '{ print $2 }')
hits=0 others=0 sent=0
while [ "$sent" -lt 12 ] || { [ "$others" -lt 3 ] && [ "$sent" -lt 200 ]; }; do
  line=$(curl -sS -D - -o /dev/null "$G/" | tr -d '\r' |
    awk '/^X-Backend:/ { b = $2 } /^X-Worker:/ { w = $2 } END { print b, w }')
  sent=$((sent + 1))
  case "$line" in b2\ *) hits=$((hits + 1)) ;; esac
  [ "${line#* }" != "$downer" ] && others=$((others + 1))
done
check "no request reaches b2 after a down() in worker $downer ($others of $sent in other workers)" \
  "$([ "$hits" = 0 ] && [ "$others" -ge 1 ]; echo $?)" "hits $hits"

# --- kill -9 of every worker in turn: nothing lost, one prober carries on ------
lease0=$(curl -fsS "$G/state" | awk '/^lease/ { print $2 }')
for w in $(workers); do
  kill -KILL "$w"
  for _ in $(seq 50); do # the master respawns it (bounded)
    [ "$(workers | wc -l)" = 4 ] && ! workers | grep -qx "$w" && break
    sleep 0.1
  done
done
sleep 3 # > interval + timeout + 1: a takeover, if the holder was slow to be reaped
hits=$(hits_of b2 12)
state=$(curl -fsS "$G/state")
check "after kill -9 of every worker, b2 is still drained" \
  "$([ "$hits" = 0 ] && drained "127.0.0.1:$B2" "$state"; echo $?)" \
  "hits $hits" "$state"
lease1=$(echo "$state" | awk '/^lease/ { print $2 }')
check "the lease moved from the killed holder $lease0 to a live worker $lease1" \
  "$([ "$lease1" != "$lease0" ] && workers | grep -qx "$lease1"; echo $?)" "$(workers)"
p0=$(probes b1)
sleep 3
got=$(($(probes b1) - p0))
want=$(awk -v i=$INTERVAL 'BEGIN { print 3 / i }')
check "checks carry on from one prober: $got probes of b1 in 3 s, want $want +-1" \
  "$([ "$got" -ge $((want - 1)) ] && [ "$got" -le $((want + 1)) ]; echo $?)"

# --- nginx -s reload keeps the state of a list whose name and options stay ------
before=$(curl -fsS "$G/state" | awk -v b="127.0.0.1:$B1" '$1 == b { print $3 }')
reload
hits=$(hits_of b2 6)
state=$(curl -fsS "$G/state")
after=$(echo "$state" | awk -v b="127.0.0.1:$B1" '$1 == b { print $3 }')
check "right after nginx -s reload, b2 is still drained (hits $hits)" \
  "$([ "$hits" = 0 ] && drained "127.0.0.1:$B2" "$state"; echo $?)" "$state"
check "the reload kept the checks' counts (b1: $before before, $after after)" \
  "$([ -n "$before" ] && [ -n "$after" ] && [ "$after" -ge "$before" ]; echo $?)"
sleep 1
p0=$(probes b1)
sleep 3
got=$(($(probes b1) - p0))
check "after the reload, one prober: $got probes of b1 in 3 s, want $want +-1" \
  "$([ "$got" -ge $((want - 1)) ] && [ "$got" -le $((want + 1)) ]; echo $?)"
rm -f "$ROOT/fail-b2"

# --- a reload that changes the layout starts fresh, and says so once ------------
before=$(curl -fsS "$G/state" | awk -v b="127.0.0.1:$B1" '$1 == b { print $3 }')
sed -i 's/shared = "web", interval = /shared = "web", strategy = "weighted", interval = /' "$ROOT/conf/nginx.conf"
reload
sleep 2
state=$(curl -fsS "$G/state")
after=$(echo "$state" | awk -v b="127.0.0.1:$B1" '$1 == b { print $3 }')
logged=$(grep -c "shared list 'web' exists with other options: strategy round_robin, not weighted: it starts fresh" "$ROOT/logs/error.log")
check "a reload with another strategy starts fresh (b1 checks: $before before, $after after) and logs it once ($logged)" \
  "$([ "$logged" = 1 ] && [ -n "$after" ] && [ "$after" -lt "$before" ]; echo $?)" "$state"
p0=$(probes b1)
sleep 3
got=$(($(probes b1) - p0))
check "the fresh list has one prober: $got probes of b1 in 3 s, want $want +-1" \
  "$([ "$got" -ge $((want - 1)) ] && [ "$got" -le $((want + 1)) ]; echo $?)"

finish
