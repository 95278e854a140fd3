-- bench/scale_list.lua - the list's scale cliffs of the binding (issue 9,
-- items 5 and 7): what list:reconcile costs at n = 1e3, 1e4, 1e5 when
-- nothing, one backend or 1% of them changed, against upstream.new with
-- the same n and against a pure-Lua list (bench/lualist.lua); and the CPU
-- the coroutine scheduler spends waking up for 10k checks a second, with
-- jitter 0 and 0.5. docs/BENCHMARKS.md has the method and the figures.
--
--   lua5.4 bench/scale_list.lua [reconcile|wakeup] [max_n]
--
-- Times are the best of several rounds, interleaved (the machine's times
-- drift between runs; a ratio measured side by side does not). Kilobytes
-- allocated per call are collectgarbage("count") before and after, with
-- the collector stopped: garbage made, whether or not it is freed later.
package.path = "./bench/?.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath
local upstream = require("upstream")
local lualist = require("lualist")

local clock = os.clock
local what, max_n = arg[1], tonumber(arg[2]) or 1e5

-- Seconds and KB per call of fn(i) over reps calls, collector stopped.
local function measure(fn, reps)
  collectgarbage()
  collectgarbage("stop")
  local kb0, t0 = collectgarbage("count"), clock()
  for i = 1, reps do fn(i) end
  local t, kb = clock() - t0, collectgarbage("count") - kb0
  collectgarbage("restart")
  collectgarbage()
  return t / reps, kb / reps
end

-- The sets a service-discovery push brings: the same one, one backend
-- replaced, 1% replaced. Each call alternates between two sets, so that
-- every call after the first changes the list the same way.
local function sets(n)
  local base = lualist.names(n)
  local function variant(k, tag)
    local t = {}
    for i = 1, n do t[i] = base[i] end
    for i = 1, k do t[i] = tag .. i end
    return t
  end
  local k1 = math.max(1, math.floor(n / 100))
  return base, {
    { "unchanged", base, base },
    { "one change", base, variant(1, "x") },
    { "1% change", base, variant(k1, "y") },
  }
end

local function bench_reconcile()
  print(string.format("%-28s %9s %9s %9s %9s %8s",
    "reconcile (" .. _VERSION .. ")", "n", "ms/call", "KB/call", "B/member", "x new"))
  local n = 1000
  while n <= max_n do
    local base, cases = sets(n)
    local reps = math.max(3, math.floor(3e5 / n))
    local rounds = 3
    local best = {}
    local function keep(name, t, kb)
      local b = best[name]
      if not b or t < b[1] then best[name] = { t, kb } end
    end
    for _ = 1, rounds do
      keep("upstream.new", measure(function() upstream.new(base) end, reps))
      for _, c in ipairs(cases) do
        local list = upstream.new(base)
        local a, b = c[2], c[3]
        list:reconcile(b) -- the first change grows the block; not counted
        keep("list:reconcile " .. c[1],
          measure(function(i) list:reconcile(i % 2 == 0 and b or a) end, reps))
        local ll = lualist.new(base)
        ll:reconcile(b)
        keep("pure Lua reconcile " .. c[1],
          measure(function(i) ll:reconcile(i % 2 == 0 and b or a) end, reps))
      end
    end
    local new_t = best["upstream.new"][1]
    local order = { "upstream.new" }
    for _, c in ipairs(cases) do
      order[#order + 1] = "list:reconcile " .. c[1]
      order[#order + 1] = "pure Lua reconcile " .. c[1]
    end
    for _, name in ipairs(order) do
      local b = best[name]
      print(string.format("%-28s %9d %9.3f %9.1f %9.1f %8.2f", name, n, b[1] * 1e3,
        b[2], b[2] * 1024 / n, b[1] / new_t))
    end
    n = n * 10
  end
end

-- CPU seconds (os.clock) that run(secs) takes for n backends checked every
-- interval with the given jitter, on the real clock: the checks return at
-- once, so what is measured is the scheduler, its wake-ups and the checks'
-- coroutines. The first 1.5 s (every check starting) are not counted.
local function wakeup_cpu(n, jitter, secs)
  local list = upstream.new(lualist.names(n), {
    interval = 1, timeout = 0.5, jitter = jitter,
    check = function() return true end,
  })
  list:run(1.5)
  local c0 = clock()
  list:run(secs)
  local cpu = clock() - c0
  list:shutdown()
  return cpu
end

-- Wake-ups a second: the same list on a fake clock, its sleeps counted.
local function wakeups(n, jitter, secs)
  local t, sleeps = 0, 0
  local list = upstream.new(lualist.names(n), {
    interval = 1, timeout = 0.5, jitter = jitter,
    check = function() return true end,
    clock = function() return t end,
    sleep = function(s) sleeps = sleeps + 1; t = t + s end,
  })
  list:run(1.5)
  sleeps = 0
  list:run(secs)
  return sleeps / secs
end

local function bench_wakeup()
  local n, secs = 10000, tonumber(os.getenv("WAKEUP_SECS")) or 5
  local rounds = tonumber(os.getenv("WAKEUP_ROUNDS")) or 3
  print(string.format("wake-ups (%s): %d backends, interval 1 s, run(%g) on the real clock, best of %d",
    _VERSION, n, secs, rounds))
  local r = {}
  for round = 1, rounds do
    for _, j in ipairs({ 0, 0.5 }) do
      local cpu = wakeup_cpu(n, j, secs)
      if not r[j] or cpu < r[j] then r[j] = cpu end
      io.stderr:write(string.format("  round %d jitter %.1f: %.3f s CPU\n", round, j, cpu))
    end
  end
  print(string.format("%-10s %10s %10s %14s", "jitter", "CPU s", "% of core", "wake-ups/s"))
  for _, j in ipairs({ 0, 0.5 }) do
    print(string.format("%-10.1f %10.3f %9.1f%% %14.0f", j, r[j], 100 * r[j] / secs, wakeups(n, j, 10)))
  end
  print(string.format("jitter 0.5 / jitter 0: %.2fx", r[0.5] / r[0]))
end

if what == nil or what == "reconcile" then bench_reconcile() end
if what == nil or what == "wakeup" then bench_wakeup() end
