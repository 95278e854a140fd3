#!/usr/bin/env bash
# End-to-end test of upstream.nginx: a gateway nginx (2 workers) in front of
# three backend nginx instances, all on loopback, under a temp prefix.
# Prints TAP and ends with one line "N passed, N failed".
#
#   UPSTREAM_SO_DIR=dir-with-upstream.so  bash spec/e2e/run.sh
#   E2E_PORT=18080 (gateway; backends +1..+3, a dead port +9)
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
SO_DIR=${UPSTREAM_SO_DIR:-$REPO/build/luajit}
BASE=${E2E_PORT:-18080}
GW=$BASE B1=$((BASE + 1)) B2=$((BASE + 2)) B3=$((BASE + 3)) DEAD=$((BASE + 9))
HANG=$((BASE + 7)) ROGUE=$((BASE + 8)) REALIP=$((BASE + 10))
INTERVAL=0.5 TIMEOUT=0.2 TICK=0.1
NGINX=${NGINX:-nginx}
MODDIR=${NGINX_MODULES:-/usr/lib/nginx/modules}

. "$REPO/spec/e2e/lib.sh"
need_tools curl

make_root e2e
mkdir -p "$ROOT/jit" && chmod 777 "$ROOT/jit" # the workers' jit.v logs

stop() { stop_pidfile "$ROOT/$1/logs/nginx.pid"; } # stop NAME: one instance
# kill_hard NAME: SIGKILL an instance (master and workers), as a crash would
kill_hard() {
  local pidf=$ROOT/$1/logs/nginx.pid pid kids i
  [ -s "$pidf" ] || return 0
  pid=$(cat "$pidf"); kids=$(pgrep -P "$pid")
  kill -KILL "$pid" $kids 2>/dev/null
  for i in $(seq 50); do
    alive "$pid" || { rm -f "$pidf"; return 0; }
    sleep 0.1
  done
}
stop_all() { for s in gw b1 b2 b3 ex; do stop $s; done; }
cleanup_at_exit "$ROOT/gw/logs/error.log" 40 "gateway error.log"

# backend NAME PORT [extra listen]: answers /health (503 while the file
# healthfail exists) and / with its name in X-Backend
backend_conf() {
  local name=$1 port=$2 extra=${3:-}
  mkdir -p "$ROOT/$name/conf" "$ROOT/$name/logs" "$ROOT/$name/tmp"
  {
    conf_head 1 1024 notice plain
    echo "  access_log off;"
    cat <<CONF
  server {
    listen 127.0.0.1:$port;
    $extra
    location = /health {
      if (-f $ROOT/$name/healthfail) { return 503 "draining\n"; }
      return 200 "ok\n";
    }
    location / { add_header X-Backend $name always; return 200 "$name\n"; }
  }
}
CONF
  } >"$ROOT/$name/conf/nginx.conf"
}

# lua_upstream NAME LUA: an upstream block whose balancer_by_lua runs LUA
lua_upstream() {
  cat <<CONF
  upstream $1 {
    server 0.0.0.1;
    balancer_by_lua_block { $2 }
  }
CONF
}

gateway_conf() {
  local lists=
  mkdir -p "$ROOT/gw/conf" "$ROOT/gw/logs" "$ROOT/gw/tmp"
  {
    conf_head 2 1024 notice
    cat <<CONF
  log_format up '\$upstream_addr|\$upstream_status|\$status';
  access_log logs/access.log up;
  lua_socket_log_errors off;

  init_by_lua_block {
    upstream = require "upstream"
    ngxu = require "upstream.nginx"
    -- created in the master, before fork; IPv6 backend included
    master_list = upstream.new({ "[::1]:$B1", "127.0.0.1:$B2", "127.0.0.1:$B3" }, {
      interval = $INTERVAL, timeout = $TIMEOUT,
      check = ngxu.http_check{ path = "/health", expect = 200 },
    })
  }
  init_worker_by_lua_block {
    -- trace health: every worker logs LuaJIT's trace events (jit.v)
    require("jit.v").start("$ROOT/jit/v." .. ngx.worker.pid() .. ".log")
    backends = upstream.new({ "127.0.0.1:$B1", "127.0.0.1:$B2", "127.0.0.1:$B3" }, {
      interval = $INTERVAL, timeout = $TIMEOUT,
      check = ngxu.http_check{ path = "/health", expect = 200 },
    })
    ngxu.start(backends, { tick = $TICK })
    ngxu.start(master_list, { tick = $TICK })
    -- malformed backends: start() must name them; balance() skips them
    bad_list = upstream.new({ "bogus:80", "127.0.0.1:$B2", "1.2.3.4:99999" })
    local ok, err = pcall(ngxu.start, bad_list)
    ngx.log(ngx.NOTICE, "start(bad_list): ", ok and "started" or err)
    -- nothing healthy
    none_list = upstream.new({ "127.0.0.1:$DEAD" }, { initial_score = -1 })
    -- connect-only checks
    tcp_list = upstream.new({ "127.0.0.1:$B1", "127.0.0.1:$DEAD" }, {
      interval = $INTERVAL, timeout = $TIMEOUT, check = ngxu.tcp_check{},
    })
    ngxu.start(tcp_list, { tick = $TICK })
    -- one passive backend at score 0 that refuses: the retry finds none
    dead_list = upstream.new({ "127.0.0.1:$DEAD" }, { initial_score = 0 })
    -- a health endpoint that answers too late: the socket timeouts end it
    hang_list = upstream.new({ "127.0.0.1:$HANG" }, {
      interval = $INTERVAL, timeout = $TIMEOUT, check = ngxu.http_check{ path = "/slow" },
    })
    ngxu.start(hang_list, { tick = $TICK })
    -- a custom check that ignores its deadline: killed, counted as timed out
    rogue_list = upstream.new({ "127.0.0.1:$ROGUE" }, {
      interval = $INTERVAL, timeout = $TIMEOUT,
      check = function() ngx.sleep(1); return true end,
    })
    ngxu.start(rogue_list, { tick = $TICK })
    -- picked by a key the config computes (here: the query argument k)
    hash_list = upstream.new({ "127.0.0.1:$B1", "127.0.0.1:$B2", "127.0.0.1:$B3" }, {
      strategy = "hash", interval = $INTERVAL, timeout = $TIMEOUT,
      check = ngxu.http_check{ path = "/health", expect = 200 },
    })
    ngxu.start(hash_list, { tick = $TICK })
    -- passive (no active check): fed back by the log phase from the
    -- balancer's record of each request's pick
    passive_list = upstream.new({ "127.0.0.1:$B1", "127.0.0.1:$B2", "127.0.0.1:$B3" })
  }

$(lua_upstream gw "ngxu.balance(backends)")
$(lua_upstream gw_master "ngxu.balance(master_list)")
$(lua_upstream gw_bad "ngxu.balance(bad_list)")
$(lua_upstream gw_dead "ngxu.balance(dead_list)")
$(lua_upstream gw_none "ngxu.balance(none_list)")
$(lua_upstream gw_passive "ngxu.balance(passive_list)")
$(lua_upstream gw_hash "ngxu.balance(hash_list, 1, ngx.var.arg_k)")

  server {
    listen 127.0.0.1:$GW;
    add_header X-Worker \$pid always;
    proxy_connect_timeout 1s;
    proxy_read_timeout 2s;
    proxy_next_upstream error timeout http_502 http_503 http_504;
    location = /status {
      content_by_lua_block {
        local l = ({ w = backends, m = master_list, h = hang_list, r = rogue_list,
                     d = dead_list, t = tcp_list, b = bad_list, k = hash_list,
                     p = passive_list })[ngx.var.arg_l or "w"]
        for _, s in ipairs(l:status()) do
          ngx.say(s.backend, " ", s.score, " ", s.checks, " ", s.failures, " ", tostring(s.last_error))
        end
        ngx.say("timers ", ngx.timer.pending_count(), " ", ngx.timer.running_count())
      }
    }
    location / { proxy_pass http://gw; log_by_lua_block { ngxu.log(backends) } }
    location /m/ { proxy_pass http://gw_master; log_by_lua_block { ngxu.log(master_list) } }
    location /bad/ { proxy_pass http://gw_bad; log_by_lua_block { ngxu.log(bad_list) } }
    location /none/ { proxy_pass http://gw_none; log_by_lua_block { ngxu.log(none_list) } }
    location /dead/ { proxy_pass http://gw_dead; log_by_lua_block { ngxu.log(dead_list) } }
    location /h/ { proxy_pass http://gw_hash; log_by_lua_block { ngxu.log(hash_list) } }
    location /p/ { proxy_pass http://gw_passive; log_by_lua_block { ngxu.log(passive_list) } }
  }
  # nginx's own address parser and printer, as an oracle for
  # upstream.nginx.addr: realip parses X-Real-IP with ngx_inet6_addr() and
  # prints it in \$remote_addr with ngx_inet6_ntop() (127.0.0.1 when it
  # refuses the address). Answers "nginx's text|our text|our host".
  server {
    listen 127.0.0.1:$REALIP;
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Real-IP;
    location / {
      content_by_lua_block {
        local a = ngx.var.http_x_real_ip or ""
        local v6 = a:find(":", 1, true)
        local p = require("upstream.nginx.addr").parse_backend(v6 and "[" .. a .. "]:1" or a .. ":1")
        local text = p and p.addr:sub(v6 and 2 or 1, v6 and -4 or -3)
        local host = p and (v6 and p.host:sub(2, -2) or p.host)
        ngx.say(ngx.var.remote_addr, "|", text or "-", "|", host or "-")
      }
    }
  }
  server {
    listen 127.0.0.1:$HANG;
    location = /slow { content_by_lua_block { ngx.sleep(0.6) ngx.say("late") } }
  }
}
CONF
  } >"$ROOT/gw/conf/nginx.conf"
}

start() { # start NAME
  local out
  if ! out=$("$NGINX" -p "$ROOT/$1" -c conf/nginx.conf 2>&1); then
    bail "nginx $1 failed to start: $out"
  fi
}

# fetch COUNT PATH: COUNT requests, each on a new connection; appends one
# line "STATUS,BACKEND,WORKER" per response to $ROOT/out; echoes the tally.
fetch() {
  local count=$1 path=$2 args=() i
  for i in $(seq "$count"); do args+=(-o /dev/null "http://127.0.0.1:$GW$path"); done
  : >"$ROOT/batch"
  curl -s -m 5 -H 'Connection: close' -w '%{http_code},%header{x-backend},%header{x-worker}\n' \
    "${args[@]}" >>"$ROOT/batch" 2>/dev/null
  cat "$ROOT/batch" >>"$ROOT/out"
  local got; got=$(wc -l <"$ROOT/batch")
  # a transfer that failed outright prints "000"; a missing line is a lost request
  if [ "$got" -lt "$count" ]; then
    for i in $(seq $((count - got))); do echo "lost,," >>"$ROOT/out"; done
  fi
}
# tally: "status backend count" lines of $ROOT/out, then clears it
tally() {
  awk -F, '{ k = $1 " " ($2 == "" ? "-" : $2); c[k]++ } END { for (k in c) print k, c[k] }' "$ROOT/out" | sort
}
count_of() { # count_of STATUS BACKEND (from tally in $T)
  awk -v s="$1" -v b="$2" '$1 == s && $2 == b { print $3; f = 1 } END { if (!f) print 0 }' <<<"$T"
}
total_of() { awk '{ t += $3 } END { print t + 0 }' <<<"$T"; }
workers_of() { awk -F, '{ print $3 }' "$ROOT/out" | sort -u | grep -c .; }
reset() { : >"$ROOT/out"; }
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------------------
backend_conf b1 "$B1" "listen [::1]:$B1;"
backend_conf b2 "$B2"
backend_conf b3 "$B3"
gateway_conf
for s in b1 b2 b3 gw; do start $s; done

# wait (bounded) for the gateway to answer
up=1
for i in $(seq 50); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' -m 1 "http://127.0.0.1:$GW/")" = 200 ]; then up=0; break; fi
  sleep 0.1
done
check "gateway answers" $up || { finish; exit 1; }
sleep 1 # a couple of check rounds: every backend at a higher score
st=$(curl -s -m 2 "http://127.0.0.1:$GW/status?l=m")
v6=$(grep "^\[::1\]:$B1 " <<<"$st")
check "active checks over IPv6: [::1]:$B1 checked, no failure" \
  $(awk '{ exit !($3 >= 1 && $4 == 0) }' <<<"$v6"; echo $?) "$st"

# (1) traffic spreads over all three
reset; fetch 90 /; T=$(tally)
check "(1) 90 requests, 90 answered" $([ "$(total_of)" = 90 ]; echo $?) "$T"
check "(1) all 200" $([ "$(count_of 200 b1)" -gt 0 ] && [ $(( $(count_of 200 b1) + $(count_of 200 b2) + $(count_of 200 b3) )) = 90 ]; echo $?) "$T"
check "(1) each backend served >= 20 of 90" $([ "$(count_of 200 b1)" -ge 20 ] && [ "$(count_of 200 b2)" -ge 20 ] && [ "$(count_of 200 b3)" -ge 20 ]; echo $?) "$T"
echo "# (1) $(echo $T) ; gateway workers seen: $(workers_of)"

# the list created in init_by_lua (before fork), with an IPv6 backend
reset; fetch 60 /m/; T=$(tally)
check "(1m) init_by_lua list: 60 of 60 are 200, spread over the 3 (b1 via [::1])" \
  $([ "$(count_of 200 b1)" -ge 10 ] && [ "$(count_of 200 b2)" -ge 10 ] && [ "$(count_of 200 b3)" -ge 10 ] && [ "$(total_of)" = 60 ]; echo $?) "$T"

# (13) a hash list, picked by a key the config computes (ngx.var.arg_k):
# the same key always gets the same backend, in either worker; keys spread
declare -A owner
split=""; hw=""
for k in $(seq 30); do
  reset; fetch 4 "/h/?k=user$k"
  got=$(awk -F, '{ print $1 "," $2 }' "$ROOT/out" | sort -u)
  hw+=$(awk -F, '{ print $3 }' "$ROOT/out")$'\n'
  if [ "$(grep -c . <<<"$got")" != 1 ] || [ "${got%%,*}" != 200 ]; then split+="user$k: $(echo $got); "; fi
  owner[$k]=${got#*,}
done
keys_of() { local k c=0; for k in "${!owner[@]}"; do [ "${owner[$k]}" = "$1" ] && c=$((c + 1)); done; echo $c; }
echo "# (13) 30 keys: b1 $(keys_of b1), b2 $(keys_of b2), b3 $(keys_of b3); workers seen: $(sort -u <<<"$hw" | grep -c .)"
check "(13) hash list: 4 requests of each of 30 keys, each key always 200 from one backend" \
  $([ -z "$split" ]; echo $?) "$split"
check "(13) ... and the keys spread: each backend owns >= 3 of the 30" \
  $([ "$(keys_of b1)" -ge 3 ] && [ "$(keys_of b2)" -ge 3 ] && [ "$(keys_of b3)" -ge 3 ]; echo $?)
reset; fetch 20 /h/; T=$(tally)
check "(13) hash list without a key (no k): 20 of 20 are 200, spread" \
  $([ $(( $(count_of 200 b1) + $(count_of 200 b2) + $(count_of 200 b3) )) = 20 ] \
    && [ "$(awk '$1 == 200 { n++ } END { print n + 0 }' <<<"$T")" -ge 2 ]; echo $?) "$T"

# (14) upstream.nginx.addr against nginx's own parser and printer (realip)
# cases where both read the same: the same text, or both refuse
AGREE=(127.0.0.1 010.0.0.1 255.255.255.254 255.255.255.255 1.2.3.256 256.1.1.1 1.2.3
  ::1 0:0:0:0:0:0:0:1 ::ffff:7f00:1 ::ffff:1.2.3.4 ::FFFF:010.0.0.1 ::ffff:0:0 ::ffff:ffff:0
  ::1:2:3 ::1.2.3.4 ::1:0 ::2 ::ff ::101 ::100 ::1:0:0 1::1.2.3.4 1:2:3:4:5:6:1.2.3.4
  ::2:3:4:5:6:7:8 1:2:3::5:6:7:8 :: ::0.0.0.1 ::0.0.0.2 0:0:0:0:0:0:0.0.1.0
  2001:0DB8:0:0:1:0:0:1 1:0:0:2:0:0:0:3 1:2:3:4:5:6:7:8 fe80::1:2 2001:db8::ffff:0:1
  ::1.2.3.256 ::ffff:1.2.3.256 ::1.2.3.4.5 ::1.2.3 1:2:3:4::5:6:7:8 ::1:2:3:4:5:6:7:8
  1:2:3:4:5:6:7:8:: 1:2:3:4:5:6:7::8 1:2:3:4:5:6:7 1:2:3:4:5:1.2.3.4 1:2:3:4:5:6:7:1.2.3.4
  ::: 1::2::3 12345:: 1.2.3.4:: 00000::1 fe80::1%eth0)
# where they part, on purpose: nginx lets these pass, RFC 4291 does not
# (we refuse them); RFC 4291 allows these, nginx refuses them (we take them
# and hand nginx a form it parses)
STRICTER=(:1::2 1::2: 1..2.3 ::1..2.3)
LAXER=(1:2:3:4:5:6:7:: ::ffff:255.255.255.255 ::255.255.255.255)
ask() { curl -s -m 2 -H "X-Real-IP: $1" "http://127.0.0.1:$REALIP/"; }
differ="" parts="" hosts=""
for a in "${AGREE[@]}" "${STRICTER[@]}" "${LAXER[@]}"; do
  IFS='|' read -r theirs ours host <<<"$(ask "$a")"
  [ "$theirs" = 127.0.0.1 ] && [ "$a" != 127.0.0.1 ] && theirs=-
  if printf '%s\n' "${AGREE[@]}" | grep -qxF -- "$a"; then
    [ "$theirs" = "$ours" ] || differ+="$a: nginx $theirs, ours $ours; "
  elif printf '%s\n' "${STRICTER[@]}" | grep -qxF -- "$a"; then
    { [ "$theirs" != - ] && [ "$ours" = - ]; } || parts+="$a: nginx $theirs, ours $ours; "
  else
    { [ "$theirs" = - ] && [ "$ours" != - ]; } || parts+="$a: nginx $theirs, ours $ours; "
  fi
  # the host handed to set_current_peer: nginx parses it into our text
  if [ "$ours" != - ]; then
    IFS='|' read -r back _ _ <<<"$(ask "$host")"
    [ "$back" = "$ours" ] || hosts+="$a: host $host reads as $back, not $ours; "
  fi
done
check "(14) ${#AGREE[@]} addresses: upstream.nginx.addr reads and prints them as nginx does" \
  $([ -z "$differ" ]; echo $?) "$differ"
check "(14) ... and parts from it only where meant (${#STRICTER[@]} refused, ${#LAXER[@]} taken)" \
  $([ -z "$parts" ]; echo $?) "$parts"
check "(14) ... and nginx reads every host it is handed as the address we expect in \$upstream_addr" \
  $([ -z "$hosts" ]; echo $?) "$hosts"

# (2) b2's /health fails; its real traffic still succeeds. After 4 failed
# checks (score 3 -> -1) plus the timeout, no request may reach it.
touch "$ROOT/b2/healthfail"
t0=$(now_ms)
reset
window_ms=$(awk -v i=$INTERVAL -v t=$TIMEOUT -v k=$TICK 'BEGIN { printf "%d", (4 * i + t + k) * 1000 + 400 }')
for i in $(seq 40); do # traffic during the drain (b2 answers it fine)
  [ $(($(now_ms) - t0)) -ge "$window_ms" ] && break
  fetch 6 /; sleep 0.05
done
while [ $(($(now_ms) - t0)) -lt "$window_ms" ]; do sleep 0.05; done
T=$(tally)
echo "# (2) during the ${window_ms} ms drain window: $(echo $T)"
check "(2) no error while draining" $([ "$(total_of)" = "$(( $(count_of 200 b1) + $(count_of 200 b2) + $(count_of 200 b3) ))" ]; echo $?) "$T"
reset
for i in $(seq 10); do fetch 15 /; sleep 0.1; done
T=$(tally)
check "(2) after the window: 150 requests, none reaches b2, all 200" \
  $([ "$(count_of 200 b2)" = 0 ] && [ $(( $(count_of 200 b1) + $(count_of 200 b3) )) = 150 ] && [ "$(total_of)" = 150 ]; echo $?) "$T"
reset; fetch 60 /m/; T=$(tally)
check "(2m) init_by_lua list: drained too (60 requests, none to b2, all 200)" \
  $([ "$(count_of 200 b2)" = 0 ] && [ "$(total_of)" = 60 ] && [ $(( $(count_of 200 b1) + $(count_of 200 b3) )) = 60 ]; echo $?) "$T"
st=$(curl -s -m 2 "http://127.0.0.1:$GW/status")
check "(2) the list says why: b2's last check error is 'status 503'" \
  $(grep -q "^127.0.0.1:$B2 .* status 503\$" <<<"$st"; echo $?) "$st"
rm -f "$ROOT/b2/healthfail"
reset; seen=1
for i in $(seq 40); do fetch 10 /; grep -q ',b2,' "$ROOT/out" && { seen=0; break; }; sleep 0.1; done
T=$(tally)
check "(2) health restored: b2 gets traffic again" $seen "$T"
check "(2) ... with no error meanwhile" $([ "$(total_of)" = "$(( $(count_of 200 b1) + $(count_of 200 b2) + $(count_of 200 b3) ))" ]; echo $?) "$T"
sleep 1.5 # b2 back to a high score in both workers

# (3) b3 is killed (SIGKILL): connection refused. Passive feedback + one retry: no
# client sees an error.
retries_before=$(grep -c '502, ' "$ROOT/gw/logs/access.log")
kill_hard b3
reset
for i in $(seq 10); do fetch 20 /; sleep 0.1; done
T=$(tally)
retries=$(( $(grep -c '502, ' "$ROOT/gw/logs/access.log") - retries_before ))
echo "# (3) $(echo $T); requests retried after a refused connection: $retries"
check "(3) b3 down: 200 requests, all 200 from b1/b2" \
  $([ "$(total_of)" = 200 ] && [ $(( $(count_of 200 b1) + $(count_of 200 b2) )) = 200 ]; echo $?) "$T"
check "(3) the refused tries were retried on another backend (>= 1 retry seen)" $([ "$retries" -ge 1 ]; echo $?)
# the hash list: b3's keys are served by b1/b2 (a refused try is retried on
# a rehashed key), the other keys mostly keep their backend
bad3="" kept=0 others=0
for k in $(seq 30); do
  reset; fetch 2 "/h/?k=user$k"
  got=$(awk -F, '{ print $1 "," $2 }' "$ROOT/out" | sort -u | tr '\n' ' ')
  if [ "${owner[$k]}" = b3 ]; then
    [[ "$got" =~ ^(200,b[12] )+$ ]] || bad3+="user$k: $got; "
  else
    others=$((others + 1)); [ "$got" = "200,${owner[$k]} " ] && kept=$((kept + 1))
  fi
done
echo "# (13) b3 down: $kept of $others keys of b1/b2 kept their backend"
check "(13) b3 down: each of b3's $(keys_of b3) keys is served 200 by b1 or b2" $([ -z "$bad3" ]; echo $?) "$bad3"
check "(13) ... and >= 80% of the other keys keep their backend ($kept of $others)" \
  $([ $((kept * 5)) -ge $((others * 4)) ]; echo $?)
# (15) the passive list, fed back without ngx.var: b3's refused tries are
# retried and b3 downed; successes keep b1 and b2 at the high mark (3).
# Both workers: ask each for its scores until both were seen.
reset; fetch 100 /p/; T=$(tally)
check "(15) passive list, b3 down: 100 requests, all 200 from b1/b2" \
  $([ "$(total_of)" = 100 ] && [ $(( $(count_of 200 b1) + $(count_of 200 b2) )) = 100 ]; echo $?) "$T"
pst="" seenw=""
for i in $(seq 20); do
  out=$(curl -s -m 2 -D - "http://127.0.0.1:$GW/status?l=p")
  w=$(awk 'tolower($1) == "x-worker:" { print $2 }' <<<"$out" | tr -d '\r')
  case " $seenw " in *" $w "*) ;; *) seenw="$seenw $w"; pst+=$(grep '^127' <<<"$out")$'\n' ;; esac
  [ "$(wc -w <<<"$seenw")" -ge 2 ] && break
done
bad15=$(awk -v a="127.0.0.1:$B1" -v b="127.0.0.1:$B2" -v c="127.0.0.1:$B3" \
  'NF { if (($1 == a || $1 == b) && $2 != 3) print; if ($1 == c && $2 >= 0) print }' <<<"$pst")
check "(15) ... b1, b2 at score 3 and b3 below 0 in every worker that served" \
  $([ -n "$pst" ] && [ -z "$bad15" ]; echo $?) "$pst"
reset; fetch 60 /m/; T=$(tally)
check "(3m) init_by_lua list: 60 requests, all 200 from b1/b2" \
  $([ "$(total_of)" = 60 ] && [ $(( $(count_of 200 b1) + $(count_of 200 b2) )) = 60 ]; echo $?) "$T"
sleep 1 # b3's score falls to the floor

# (4) b3 comes back: traffic again within the recovery window
# (from the floor -3, 3 good checks to reach 0; + one interval + tick + slack)
recovery_ms=$(awk -v i=$INTERVAL -v k=$TICK 'BEGIN { printf "%d", (4 * i + k) * 1000 + 1000 }')
start b3
t0=$(now_ms); reset; seen=1
for i in $(seq 100); do
  [ $(($(now_ms) - t0)) -ge "$recovery_ms" ] && break
  fetch 10 /; grep -q ',b3,' "$ROOT/out" && { seen=0; break; }; sleep 0.05
done
took=$(($(now_ms) - t0)); T=$(tally)
echo "# (4) b3 served again after ${took} ms (window ${recovery_ms} ms): $(echo $T)"
check "(4) b3 back: receives traffic within the recovery window" $seen "$T"
check "(4) ... with no error meanwhile" $([ "$(total_of)" = "$(( $(count_of 200 b1) + $(count_of 200 b2) + $(count_of 200 b3) ))" ]; echo $?) "$T"
sleep 1.5
reset; fetch 60 /m/; T=$(tally)
check "(4m) init_by_lua list: b3 back too" $([ "$(count_of 200 b3)" -gt 0 ] && [ "$(total_of)" = 60 ] && [ "$(count_of 200 b1)" -gt 0 ]; echo $?) "$T"

# (8) deadlines: a slow health endpoint is cut by the socket timeouts; a
# check that ignores its deadline is killed and counted as timed out
st=$(curl -s -m 2 "http://127.0.0.1:$GW/status?l=h")
check "(8) slow /health: every check failed by its deadline (receive timeout)" \
  $(awk '{ exit !($3 >= 3 && $4 == $3 && $2 < 0) }' <<<"$st" && grep -q 'receive: timeout$' <<<"$st"; echo $?) "$st"
st=$(curl -s -m 2 "http://127.0.0.1:$GW/status?l=r")
check "(8) check ignoring its deadline: counted as timed out, score below 0" \
  $(awk '{ exit !($3 >= 3 && $4 == $3 && $2 < 0) }' <<<"$st" && grep -q 'health check timed out$' <<<"$st"; echo $?) "$st"
grep -q "check of 127.0.0.1:$ROGUE ignored its deadline; killed" "$ROOT/gw/logs/error.log"
check "(8) ... and its light thread was killed" $?

# (6) malformed backends: named by start(), skipped by balance()
log=$ROOT/gw/logs/error.log
grep -q 'start(bad_list): .*bad backend "bogus:80".*bad backend "1.2.3.4:99999"' "$log"
check "(6) ngxu.start names the malformed backends" $? "$(grep 'start(bad_list)' "$log" | head -2)"
reset; fetch 30 /bad/; T=$(tally)
check "(6) balance skips malformed backends: 30 of 30 are 200 from b2" \
  $([ "$(count_of 200 b2)" = 30 ] && [ "$(total_of)" = 30 ]; echo $?) "$T"
grep -q 'upstream.nginx: bad backend "bogus:80"' "$log"
check "(6) balance logs the malformed backend by name" $?

# (12) a passive list (no active check): successes raise the score (1 -> 3)
res=$(curl -s -m 5 -o /dev/null "http://127.0.0.1:$GW/bad/" --next -s -m 5 -o /dev/null "http://127.0.0.1:$GW/bad/" \
  --next -s -m 5 -o /dev/null "http://127.0.0.1:$GW/bad/" --next -s -m 5 "http://127.0.0.1:$GW/status?l=b")
check "(12) passive list: successes raise the score to the high mark (3)" \
  $(grep -q "^127.0.0.1:$B2 3 " <<<"$res"; echo $?) "$res"

# (11) tcp_check: connect only
st=$(curl -s -m 2 "http://127.0.0.1:$GW/status?l=t")
check "(11) tcp_check: a listening backend passes, a closed port fails (connection refused)" \
  $(awk -v a="127.0.0.1:$B1" -v d="127.0.0.1:$DEAD" '$1 == a && $3 >= 2 && $4 == 0 { ok++ } $1 == d && $3 >= 2 && $4 == $3 && $2 < 0 { ok++ } END { exit ok != 2 }' <<<"$st" \
    && grep -q "^127.0.0.1:$DEAD .* connect: connection refused\$" <<<"$st"; echo $?) "$st"

# (7) nothing healthy: 502, and the reason is logged
reset; fetch 10 /none/; T=$(tally)
check "(7) no healthy backend: 10 of 10 are 502" $([ "$(count_of 502 -)" = 10 ] && [ "$(total_of)" = 10 ]; echo $?) "$T"
grep -q 'upstream.nginx: no healthy backend' "$log"
check "(7) ... and the error log says why" $?

# (9) examples/nginx/nginx.conf works as shipped (paths and ports rewritten
# to this test's: 8080-8083 -> E2E_PORT+50..+53)
EX=$((BASE + 50))
mkdir -p "$ROOT/ex/conf" "$ROOT/ex/logs"
sed -e "s#\\\$prefix/../../build/luajit#$LIB#g" -e "s#\\\$prefix/../../src#$LIB#g" \
  -e "s/127.0.0.1:8080/127.0.0.1:$EX/g" -e "s/127.0.0.1:8081/127.0.0.1:$((EX + 1))/g" \
  -e "s/127.0.0.1:8082/127.0.0.1:$((EX + 2))/g" -e "s/127.0.0.1:8083/127.0.0.1:$((EX + 3))/g" \
  "$REPO/examples/nginx/nginx.conf" >"$ROOT/ex/conf/nginx.conf"
if grep -q 'prefix/\.\./' "$ROOT/ex/conf/nginx.conf" || ! grep -q "127.0.0.1:$EX;" "$ROOT/ex/conf/nginx.conf"; then
  not_ok "(9) rewrite the example's paths and ports" "$(grep -n 'prefix\|listen' "$ROOT/ex/conf/nginx.conf")"
elif ! out=$("$NGINX" -p "$ROOT/ex/" -c conf/nginx.conf -g "user www-data;" 2>&1); then
  not_ok "(9) the example config starts" "$out"
else
  ok "(9) the example config starts"
  sleep 1
  args=(); for i in $(seq 30); do args+=(-o /dev/null "http://127.0.0.1:$EX/"); done
  res=$(curl -s -m 5 -H 'Connection: close' -w '%{http_code},%header{x-backend}\n' "${args[@]}" | sort | uniq -c | awk '{ print $2 "=" $1 }' | tr '\n' ' ')
  check "(9) the example gateway spreads 30 requests over its 3 backends" \
    $([ "$(wc -w <<<"$res")" = 3 ] && ! grep -qv '^200,' <<<"$(tr ' ' '\n' <<<"$res" | grep .)"; echo $?) "$res"
  stat=$(curl -s -m 2 "http://127.0.0.1:$EX/upstream-status")
  check "(9) the example's /upstream-status lists 3 healthy backends" \
    $([ "$(grep -c 'healthy=true' <<<"$stat")" = 3 ]; echo $?) "$stat"
fi
stop ex

# (10) a refused try and no other backend: 502; the failure counts once
# (score 0 -> -1, not -2). Both requests on one connection: one worker.
res=$(curl -s -m 5 -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$GW/dead/" \
  --next -s -m 5 "http://127.0.0.1:$GW/status?l=d")
check "(10) refused, retry finds no healthy backend: 502, backend downed once (score -1)" \
  $([ "$(head -1 <<<"$res")" = 502 ] && grep -q "^127.0.0.1:$DEAD -1 " <<<"$res"; echo $?) "$res"

# (16) trace health: LuaJIT compiled the request path (balance, log) in
# every worker, and no trace aborted in upstream/*.lua on the request path
# (a closure, an ngx.var read or an NYI builtin there would abort it, and
# after a few tries LuaJIT blacklists the function: it then runs
# interpreted). The request path: nginx.lua from its "balancer and log
# phases" section on, and ffi.lua.
NLUA=$REPO/src/upstream/nginx.lua
rp_from=$(grep -n '^-- balancer and log phases' "$NLUA" | cut -d: -f1)
bal_line=$(grep -n '^function _M.balance(' "$NLUA" | cut -d: -f1)
log_line=$(grep -n '^function _M.log(' "$NLUA" | cut -d: -f1)
jv=$(cat "$ROOT"/jit/v.*.log 2>/dev/null)
aborts=$(grep -E '^\[TRACE ---' <<<"$jv" | grep -oE '(nginx|ffi)\.lua:[0-9]+' | sort -u |
  awk -F: -v f="$rp_from" '$1 == "ffi.lua" || $2 >= f')
check "(16) no trace abort in upstream/nginx.lua's request path or upstream/ffi.lua" \
  $([ -n "$jv" ] && [ -z "$aborts" ]; echo $?) "aborts at: $(echo $aborts)" \
  "$(grep -E '^\[TRACE ---' <<<"$jv" | grep -E 'nginx\.lua|ffi\.lua' | sort | uniq -c | head -5)"
nw=$(ls "$ROOT"/jit/v.*.log 2>/dev/null | wc -l) compiled=0
for f in "$ROOT"/jit/v.*.log; do
  grep -qE "^\[TRACE +[0-9]+ nginx\.lua:$bal_line " "$f" && grep -qE "^\[TRACE +[0-9]+ nginx\.lua:$log_line " "$f" \
    && compiled=$((compiled + 1))
done
check "(16) ngxu.balance (line $bal_line) and ngxu.log (line $log_line) have traces in each of the $nw workers" \
  $([ "$nw" -ge 2 ] && [ "$compiled" = "$nw" ]; echo $?) "$(grep -hE 'nginx\.lua' "$ROOT"/jit/v.*.log | head -8)"

# (5) reload, then shutdown: no error and no timer warning in the error log
off=$(wc -c <"$log")
master=$(cat "$ROOT/gw/logs/nginx.pid")
old=$(pgrep -P "$master" | sort | tr '\n' ' ')
"$NGINX" -p "$ROOT/gw" -c conf/nginx.conf -s reload 2>/dev/null
reloaded=1
for i in $(seq 100); do
  now=$(pgrep -P "$master" | sort | tr '\n' ' ')
  gone=0; for p in $old; do alive "$p" && gone=1; done
  if [ "$gone" = 0 ] && [ -n "$now" ] && [ "$now" != "$old" ]; then reloaded=0; break; fi
  sleep 0.1
done
check "(5) reload: new workers, old ones exited" $reloaded "old: $old" "now: $(pgrep -P "$master" | tr '\n' ' ')"
sleep 0.5
reset; fetch 60 /; T=$(tally)
check "(5) after reload: 60 of 60 are 200, spread over the 3" \
  $([ "$(count_of 200 b1)" -ge 10 ] && [ "$(count_of 200 b2)" -ge 10 ] && [ "$(count_of 200 b3)" -ge 10 ] && [ "$(total_of)" = 60 ]; echo $?) "$T"
# timers: 6 started lists per worker, one timer each (pending, or running
# while its checks run); nothing accumulates across ticks or the reload
tmax=0
for i in $(seq 10); do
  t=$(curl -s -m 2 "http://127.0.0.1:$GW/status" | awk '$1 == "timers" { print $2 + $3 }')
  [ "${t:-99}" -gt "$tmax" ] && tmax=${t:-99}
  sleep 0.13
done
check "(5) one timer per started list: at most 6 timers per worker over 10 samples (max $tmax)" \
  $([ "$tmax" -le 6 ]; echo $?)
"$NGINX" -p "$ROOT/gw" -c conf/nginx.conf -s quit 2>/dev/null
quit=1
for i in $(seq 100); do alive "$master" || { quit=0; break; }; sleep 0.1; done
check "(5) graceful shutdown ends within 10 s" $quit
bad=$(tail -c +$((off + 1)) "$log" | sed 's/, context: ngx.timer//' | grep -E '\[(error|alert|crit|emerg)\]|timer' | head -5)
check "(5) no error and no timer warning logged from reload to exit" $([ -z "$bad" ]; echo $?) "$bad"
bad=$(sed 's/, context: ngx.timer//' "$log" | grep -v "127.0.0.1:$ROGUE ignored" | grep -E '\[(alert|crit|emerg)\]|timer|runtime error|check loop|aborted|killed' | head -5)
check "(5) no alert, crash, timer or check-loop message in the whole run" $([ -z "$bad" ]; echo $?) "$bad"

finish
