#!/usr/bin/env bash
# End-to-end test of upstream.nginx.status and on_change in a real nginx:
# one nginx (1 worker) that serves two backends on loopback, health-checks
# them and a dead port with upstream.nginx, and serves the status page.
# Ports 18300-18319 only (spec/e2e/run.sh uses 18080-18133 meanwhile).
# Prints TAP and ends with one line "N passed, N failed".
#
#   UPSTREAM_SO_DIR=dir-with-upstream.so  bash spec/e2e/status.sh
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
SO_DIR=${UPSTREAM_SO_DIR:-$REPO/build/luajit}
GW=18300 UP=18301 SICK=18302 DEAD=18309
NGINX=${NGINX:-nginx}
MODDIR=${NGINX_MODULES:-/usr/lib/nginx/modules}

. "$REPO/spec/e2e/lib.sh"
need_tools curl python3

make_root e2e-status
mkdir -p "$ROOT/conf" "$ROOT/logs" "$ROOT/tmp"

stop_all() { stop_pidfile "$ROOT/logs/nginx.pid"; }
cleanup_at_exit "$ROOT/logs/error.log" 30 error.log

{
  conf_head 1 256 notice
  cat <<CONF
  access_log off;
  lua_socket_log_errors off;
  init_worker_by_lua_block {
    local upstream = require "upstream"
    local ngxu = require "upstream.nginx"
    -- a backend whose name needs escaping in every format, never checked
    -- (a passive list)
    passive = upstream.new({ '<b>"odd"</b>\\\\' }, { initial_score = -1 })
    web = upstream.new({ "127.0.0.1:$UP", "127.0.0.1:$SICK", "127.0.0.1:$DEAD" }, {
      interval = 0.2, timeout = 0.1,
      check = ngxu.http_check{ path = "/health", expect = 200 },
      on_change = function(b, healthy, score, err)
        ngx.log(ngx.NOTICE, "on_change ", b, " ", tostring(healthy), " ", score, " ", tostring(err),
                " worker ", ngx.worker.pid())
      end,
    })
    ngxu.start(web, { tick = 0.05 })
  }
  server {
    listen 127.0.0.1:$UP;
    location = /health { return 200 "ok\n"; }
  }
  server {
    listen 127.0.0.1:$SICK;
    location = /health { return 503 "draining\n"; }
  }
  server {
    listen 127.0.0.1:$GW;
    location = /upstream/status {
      content_by_lua_block { require("upstream.nginx").status({ web = web, passive = passive }) }
    }
    location = /pid { content_by_lua_block { ngx.say(ngx.worker.pid()) } }
  }
}
CONF
} >"$ROOT/conf/nginx.conf"

"$NGINX" -p "$ROOT" -c conf/nginx.conf -e logs/error.log 2>"$ROOT/start.err" ||
  bail "nginx did not start: $(cat "$ROOT/start.err")"
URL=http://127.0.0.1:$GW/upstream/status

# the first checks: SICK (503) and DEAD (refused) fall to -1 after two
# failures each, 0.2 s apart; poll for at most 10 s
ready=1
for _ in $(seq 100); do
  if curl -fsS "$URL?format=json" 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)["lists"]["web"]
sys.exit(0 if d["healthy"] == 1 and all(m["checks"] >= 2 for m in d["members"]) else 1)'; then
    ready=0; break
  fi
  sleep 0.1
done
check "the checks ran: one healthy backend of three" $ready

# --- Prometheus text -----------------------------------------------------
curl -fsS -D "$ROOT/prom.h" -o "$ROOT/prom.txt" "$URL"
check "default format: Prometheus text/plain; version=0.0.4" \
  "$(grep -qi '^content-type: text/plain; version=0.0.4' "$ROOT/prom.h"; echo $?)" "$(cat "$ROOT/prom.h")"
python3 - "$ROOT/prom.txt" >"$ROOT/prom.out" 2>&1 <<'PY'
import re, sys
sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\} (\S+)$')
label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
fams, cur, got = set(), None, {}
for line in open(sys.argv[1], encoding="utf-8").read().split("\n")[:-1]:
    if line.startswith("# HELP "):
        cur = line.split(" ")[2]
        assert cur not in fams, "family twice: " + cur
        fams.add(cur)
        continue
    if line.startswith("# TYPE "):
        assert line.split(" ")[2] == cur and line.split(" ")[3] in ("gauge", "counter"), line
        continue
    m = sample.match(line)
    assert m, "not a sample line: %r" % line
    assert m.group(1) == cur, "sample outside its family: " + line
    labels = {k: re.sub(r'\\(.)', lambda e: "\n" if e.group(1) == "n" else e.group(1), v)
              for k, v in label.findall(m.group(2))}
    float(m.group(3))
    got[(m.group(1), labels.get("list"), labels.get("backend"), labels.get("result"))] = m.group(3)
def want(key, v):
    assert got.get(key) == v, "%r: %r, expected %r" % (key, got.get(key), v)
want(("upstream_healthy", "web", "127.0.0.1:18301", None), "1")
want(("upstream_healthy", "web", "127.0.0.1:18302", None), "0")
want(("upstream_healthy", "web", "127.0.0.1:18309", None), "0")
want(("upstream_backends", "web", None, None), "3")
want(("upstream_healthy_backends", "web", None, None), "1")
want(("upstream_healthy", "passive", '<b>"odd"</b>\\', None), "0")
assert int(got[("upstream_checks_total", "web", "127.0.0.1:18302", "failure")]) >= 2
assert got[("upstream_checks_total", "web", "127.0.0.1:18302", "success")] == "0"
print("ok", len(got))
PY
check "Prometheus text parsed back line by line" $? "$(cat "$ROOT/prom.out")"

# --- JSON ----------------------------------------------------------------
curl -fsS -D "$ROOT/json.h" -o "$ROOT/status.json" "$URL?format=json"
check "?format=json: application/json" "$(grep -qi '^content-type: application/json' "$ROOT/json.h"; echo $?)"
python3 - "$ROOT/status.json" >"$ROOT/json.out" 2>&1 <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
web = {m["backend"]: m for m in d["lists"]["web"]["members"]}
assert set(web) == {"127.0.0.1:18301", "127.0.0.1:18302", "127.0.0.1:18309"}, web
assert web["127.0.0.1:18301"]["healthy"] is True and "last_error" not in web["127.0.0.1:18301"]
assert web["127.0.0.1:18302"]["healthy"] is False
assert web["127.0.0.1:18302"]["last_error"] == "status 503", web["127.0.0.1:18302"]
assert web["127.0.0.1:18309"]["last_error"].startswith("connect:"), web["127.0.0.1:18309"]
for m in web.values():
    assert m["last_check"] <= d["lists"]["web"]["now"] and 0 <= m["latency"] < 0.1, m
p = d["lists"]["passive"]["members"][0]
assert p["backend"] == '<b>"odd"</b>\\' and p["checks"] == 0 and "last_check" not in p, p
print("ok")
PY
check "JSON decoded: rows, health, last errors, times" $? "$(cat "$ROOT/json.out")"

# --- HTML ----------------------------------------------------------------
curl -fsS -D "$ROOT/html.h" -o "$ROOT/status.html" "$URL?format=html"
check "?format=html: text/html" "$(grep -qi '^content-type: text/html' "$ROOT/html.h"; echo $?)"
python3 - "$ROOT/status.html" >"$ROOT/html.out" 2>&1 <<'PY'
import re, sys
from html.parser import HTMLParser
page = open(sys.argv[1], encoding="utf-8").read()
class Rows(HTMLParser):
    def __init__(self):
        super().__init__(); self.rows = []; self.cell = None; self.bad = []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "link", "img", "iframe") or "src" in a or "href" in a:
            self.bad.append(tag)
        if tag == "tr" and "class" in a:
            self.rows.append((a["class"], []))
        if tag == "td":
            self.cell = ""
    def handle_data(self, data):
        if self.cell is not None: self.cell += data
    def handle_endtag(self, tag):
        if tag == "td":
            self.rows[-1][1].append(self.cell); self.cell = None
p = Rows(); p.feed(page)
assert not p.bad, p.bad
rows = {cells[0]: (cls, cells) for cls, cells in p.rows}
assert len(p.rows) == 4, p.rows
up, sick, dead = rows["127.0.0.1:18301"], rows["127.0.0.1:18302"], rows["127.0.0.1:18309"]
assert up[0] == "healthy" and up[1][1] == "up", up
assert sick[0] == "unhealthy" and sick[1][1] == "DOWN", sick
assert dead[0] == "unhealthy", dead
# backend, health, score, tier, weight, since, last check, latency, last error
assert sick[1][8] == "status 503", sick
assert dead[1][8].startswith("connect:"), dead
assert up[1][6].endswith(" ago") and up[1][7].endswith("s"), up
odd = rows['<b>"odd"</b>\\']
assert odd[0] == "unhealthy" and odd[1][6] == "never", odd
assert "<b>" not in page, "unescaped backend"
print("ok")
PY
check "HTML page: one row per backend, unhealthy rows marked, escaped, self-contained" $? "$(cat "$ROOT/html.out")"

code=$(curl -s -o "$ROOT/bad.txt" -w '%{http_code}' "$URL?format=xml")
check "?format=xml: 400 naming the formats" \
  "$([ "$code" = 400 ] && grep -q 'unknown format "xml"' "$ROOT/bad.txt"; echo $?)" "$code $(cat "$ROOT/bad.txt")"

# --- on_change in the worker that made the change -------------------------
pid=$(curl -fsS "http://127.0.0.1:$GW/pid")
grep -q "on_change 127.0.0.1:$SICK false -1 status 503 worker $pid" "$ROOT/logs/error.log"
check "on_change fired in the worker that ran the check" $? "$(grep on_change "$ROOT/logs/error.log" | head -5)"
c=$(grep -c "on_change 127.0.0.1:$SICK " "$ROOT/logs/error.log")
check "on_change fired once for the backend that fell" "$([ "$c" = 1 ]; echo $?)" "$c times"
grep -q "on_change 127.0.0.1:$UP " "$ROOT/logs/error.log"
check "no on_change for the backend that stayed healthy" "$([ $? != 0 ]; echo $?)"

finish
