-- status() at scale (issue 9 item 6): time and garbage of one call at
-- n = 1e3, 1e4, 1e5, for the full table (status(), alone and with every
-- field of every row read), the refilled one
-- (status(into), its rows reused), one backend (status_of(b)) and
-- upstream.metrics. Time: CPU (os.clock) per call over ROUNDS calls in a
-- row with the collector running, so that collecting a call's garbage is
-- counted; garbage: collectgarbage("count") across one call with the
-- collector stopped, after a full collection. Forms a build lacks print
-- n/a. Before/after: run it in the old checkout and in this one in turn, a
-- few times each (two builds cannot share a process: both would register
-- the one "upstream.list" metatable).
--   lua5.4 bench/scale_status.lua          (make bench-scale runs bench/scale_*.lua)
package.cpath = "./?.so;" .. package.cpath
local upstream = require "upstream"

local ROUNDS = tonumber(os.getenv("ROUNDS")) or 5

local function names(n)
  local t = {}
  for i = 1, n do t[i] = ("10.%d.%d.%d:80"):format(math.floor(i / 65536) % 256, math.floor(i / 256) % 256, i % 256) end
  return t
end

-- A list of n with some history: a tenth down, picks, a check error each
-- (so that rows carry every field).
local function make(n)
  local bs = names(n)
  local t = 0
  local l = upstream.new(bs, {
    clock = function() return t end,
    sleep = function(s) t = t + s end,
    check = function(b) if b:sub(-4, -4) == "1" then return nil, "refused" end return true end,
    interval = 1, timeout = 0.5,
  })
  l:step()
  for k = 1, n, 10 do l:down(bs[k]); l:down(bs[k]) end
  for _ = 1, n do l:pick() end
  return l, bs
end

-- CPU seconds per call of fn() over ROUNDS calls in a row, the collector
-- running, and KB allocated by one call
local function measure(fn)
  fn()
  collectgarbage()
  local t0 = os.clock()
  for _ = 1, ROUNDS do fn() end
  local best = (os.clock() - t0) / ROUNDS
  collectgarbage()
  collectgarbage()
  collectgarbage("stop")
  local before = collectgarbage("count")
  fn()
  local kb = collectgarbage("count") - before
  collectgarbage("restart")
  return best, kb
end

local function row(what, n, secs, kb)
  if not secs then
    print(("%-22s %7d %12s %12s %10s"):format(what, n, "n/a", "n/a", "n/a"))
    return
  end
  print(("%-22s %7d %12.3f %12.1f %10.1f"):format(what, n, secs * 1e3, kb, kb * 1024 / n))
end

print(("%s, %s"):format(_VERSION, upstream._VERSION))
print(("%-22s %7s %12s %12s %10s"):format("call", "n", "ms/call", "KB/call", "B/member"))
for _, n in ipairs({ 1000, 10000, 100000 }) do
  local l, bs = make(n)
  row("status()", n, measure(function() return l:status() end))
  -- what a reader of every field pays: on 5.2+ each read of a status()
  -- row is an __index call (its garbage is the status() call's)
  local function read_all(st)
    local x = 0
    for i = 1, #st do
      local r = st[i]
      local _, _, _, _, _, _ = r.backend, r.last_error, r.healthy, r.last_check, r.since, r.latency
      x = x + r.score + r.checks + r.failures + r.timeouts + r.weight + r.tier + r.inflight + r.picks
    end
    return x
  end
  row("status() + read all", n, measure(function() return read_all(l:status()) end))
  if l.status_of then
    local into = l:status()
    row("status(into) reused", n, measure(function() return l:status(into) end))
    row("status(into) + read all", n, measure(function() return read_all(l:status(into)) end))
    local one = {}
    local k = 0
    local s1, kb1 = measure(function()
      for _ = 1, 1000 do k = k % n + 1; l:status_of(bs[k], one) end
    end)
    -- per call: the loop makes 1000
    print(("%-22s %7d %12.5f %12.3f %10s"):format("status_of(b, row)", n, s1, kb1 / 1000, "-"))
    local s2, kb2 = measure(function()
      for _ = 1, 1000 do k = k % n + 1; l:status_of(bs[k]) end
    end)
    print(("%-22s %7d %12.5f %12.3f %10s"):format("status_of(b)", n, s2, kb2 / 1000, "-"))
  else
    row("status(into) reused", n)
  end
  if upstream.metrics then
    row("upstream.metrics", n, measure(function() return upstream.metrics({ web = l }) end))
  else
    row("upstream.metrics", n)
  end
  l:shutdown()
  collectgarbage()
end
