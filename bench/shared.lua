-- Shared lists against private ones, in one process (issue 10): ns per
-- pick, up+down, and due()+report() of a check, interleaved rounds, the
-- best round counts. Ratios matter; absolute ns on a shared machine less.
--   lua5.4 bench/shared.lua [iterations [name]]
-- name: only the rows whose name contains it (plain), e.g. "hash", and
-- then no 4-thread rows
package.cpath = "./?.so;" .. package.cpath
package.path = "./bench/?.lua;" .. package.path
local upstream = require "upstream"

local N = tonumber(arg and arg[1]) or 1000000
local ONLY = arg and arg[2]
local ROUNDS = 5
local bench = require("shared_rounds").new(upstream, "bench")
if ONLY then -- only the loops named so
  local time = bench.time
  function bench.time(b, name, ...)
    if name:find(ONLY, 1, true) then time(b, name, ...) end
  end
end

for _, strategy in ipairs({ "round_robin", "weighted", "least_conn", "hash", "random" }) do
  local p, s = bench:pair(16, { strategy = strategy })
  local key = strategy == "hash" and "client-42" or nil
  bench:time(strategy .. " pick private", function(n)
    for _ = 1, n do p:pick(key) end
  end)
  bench:time(strategy .. " pick shared", function(n)
    for _ = 1, n do s:pick(key) end
  end)
end

-- hash with 1 of the 16 down (its keys on the others), then all 16 down
-- (no panic: every pick finds none), over 16 keys; the table built first
for _, down in ipairs({ 1, 16 }) do
  local p, s, b = bench:pair(16, { strategy = "hash" })
  local keys = {}
  for i = 1, 16 do keys[i] = "client-" .. i end
  for i = 1, down do
    for _ = 1, 3 do p:down(b[i]); s:down(b[i]) end
  end
  p:pick("x"); s:pick("x")
  local label = ("hash %d/16 down pick"):format(down)
  bench:time(label .. " private", function(n)
    for i = 1, n do p:pick(keys[i % 16 + 1]) end
  end)
  bench:time(label .. " shared", function(n)
    for i = 1, n do s:pick(keys[i % 16 + 1]) end
  end)
end

do
  local p, s, b = bench:pair(16)
  local x = b[3]
  bench:time("up+down private", function(n)
    for _ = 1, n do p:down(x); p:up(x) end
  end, 0.5)
  bench:time("up+down shared", function(n)
    for _ = 1, n do s:down(x); s:up(x) end
  end, 0.5)
end

if not ONLY then bench:due_report() end
bench:run(N, ROUNDS)
if ONLY then
  bench:report(print, 28)
  return
end

-- 4 threads (lua_States) picking at once: each from a private list of its
-- own, then all from one shared list
local wall = upstream.new({ "x" })
local function threads(chunk)
  local best = math.huge
  for _ = 1, 3 do
    local t0 = wall:now()
    for i, out in ipairs({ upstream._in_threads(4, chunk) }) do
      assert(not out:find("^error"), "thread " .. i .. ": " .. out)
    end
    local dt = (wall:now() - t0) / N * 1e9
    if dt < best then best = dt end
  end
  return best
end
-- every strategy; wall ns per pick per thread, the best of 3
local rows = {}
for _, st in ipairs({ "round_robin", "weighted", "least_conn", "hash", "random" }) do
  local tname = bench:shared_name()
  -- hash: 64 keys in turn (one key would put every thread on one counter)
  local key = st == "hash" and '"client-" .. (i % 64)' or "nil"
  upstream.new(bench.names(16), { shared = tname, strategy = st })
  local tp = threads(([[
    local up = require "upstream"
    local b = {}
    for i = 1, 16 do b[i] = ("10.0.%%d.%%d:80"):format(i // 256, i %% 256) end
    local l = up.new(b, { strategy = %q })
    for i = 1, %d do l:pick(%s) end
  ]]):format(st, N, key))
  local ts = threads(([[
    local up = require "upstream"
    local l = up.attach(%q)
    for i = 1, %d do l:pick(%s) end
  ]]):format(tname, N, key))
  rows[#rows + 1] = { st, tp, ts }
end

bench:report(print, 28)
for _, r in ipairs(rows) do
  print(("%-28s %10.1f"):format("4 threads " .. r[1] .. " private", r[2]))
  print(("%-28s %10.1f %8s"):format("4 threads " .. r[1] .. " shared", r[3],
    ("%.2fx"):format(r[3] / r[2])))
end
