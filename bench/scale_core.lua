-- The core's scale cliffs (issue 9), at n = 1e3, 1e4, 1e5:
--   hash     the first pick of a new list and the worst of the 200 after
--            it; then, once its first table is built, the worst single
--            pick, up, down, set_weight and report right after a change
--            (each op timed alone, then the 200 picks after it; the picks'
--            99.9th percentile too)
--   build    the first hash pick of a list with one weight of 1e6 (a full
--            Maglev build before issue 9's last cliffs; a slice of it since),
--            the worst of the 200 picks after it, and of the 200 after a change
--   panic    up/down crossing the panic threshold (panic 0.5), each strategy
--   weighted ns per pick at 99% down (through upstream.ffi under LuaJIT)
-- Single operations are timed one by one with os.clock (CPU time, about a
-- microsecond's resolution): the worst of several, in microseconds.
--   lua5.4 bench/scale_core.lua [sizes] [build sizes] [sections]
--   e.g. lua5.4 bench/scale_core.lua 1000,10000,100000 1000,3000 panic,build
package.cpath = (os.getenv("UPSTREAM_SO_DIR") or ".") .. "/?.so;" .. package.cpath
package.path = "./bench/?.lua;./src/?.lua;" .. package.path
local upstream = require "upstream"
local names = require("lualist").names
local clock = os.clock

local function list_of(s, default)
  local t = {}
  for x in (s or default):gmatch("[^,]+") do t[#t + 1] = tonumber(x) end
  return t
end
local SIZES = list_of(arg and arg[1], "1000,10000,100000")
local BUILD_SIZES = list_of(arg and arg[2], "1000,10000,100000")
-- the sections to run (default all): hash,build,panic,weighted
local ONLY = {}
for x in (arg and arg[3] or "hash,build,panic,weighted"):gmatch("[^,]+") do ONLY[x] = true end
local PANIC_STRATEGIES = { "round_robin", "random", "least_conn", "hash", "weighted" }

local function us(t) return t * 1e6 end
local function timed(f, ...)
  local t0 = clock()
  f(...)
  return clock() - t0
end

-- A fake clock for the checked list, so that due() hands out jobs on demand.
local fake = { t = 0 }
local function fclock() return fake.t end

-- the worst of the 200 picks after a change, each timed alone
local PICKS_AFTER = 200
local all_picks = {}
local function worst_picks(l, round)
  local worst = 0
  for i = 1, PICKS_AFTER do
    local t = timed(l.pick, l, "key-" .. round .. "-" .. i)
    all_picks[#all_picks + 1] = t
    if t > worst then worst = t end
  end
  return worst
end
local function p999()
  table.sort(all_picks)
  local v = all_picks[math.max(1, math.floor(#all_picks * 0.999))] or 0
  all_picks = {}
  return v
end

-- one job for backend b: every due job is reported (ok) but b's, returned
local function job_of(l, b)
  local mine
  for _ = 1, 3 do
    fake.t = fake.t + 2 -- past every interval (1 s) and timeout
    for _, j in ipairs(l:due()) do
      if j.backend == b and not mine then mine = j else l:report(j, true) end
    end
    if mine then return mine end
  end
  error("no job for " .. tostring(b))
end

local ROUNDS = 5
local function hash_row(n)
  local bs = names(n)
  local l = upstream.new(bs, { strategy = "hash", check = function() return true end,
    clock = fclock, interval = 1, timeout = 0.5 })
  local first = timed(l.pick, l, "warm")
  local next200 = worst_picks(l, "first")
  p999()
  -- the first table is built a slice a pick: about 3.2 n picks at the
  -- default slice (bench/scale_slices.c); the rounds below change a built one
  for i = 1, 4 * n do l:pick("w" .. i) end
  local worst = { up = 0, down = 0, set_weight = 0, report = 0, pick = 0 }
  local function note(op, t) if t > worst[op] then worst[op] = t end end
  for r = 1, ROUNDS do
    local b = bs[(r * 7919) % n + 1]
    -- down twice: 1 -> 0 -> -1, the second crosses into unhealthy
    l:down(b); note("down", timed(l.down, l, b)); note("pick", worst_picks(l, r .. "d"))
    l:up(b); note("up", timed(l.up, l, b)); note("pick", worst_picks(l, r .. "u"))
    note("set_weight", timed(l.set_weight, l, b, 3)); note("pick", worst_picks(l, r .. "w"))
    l:set_weight(b, 1); worst_picks(l, r .. "w1")
    -- a failed report crossing into unhealthy (score 1 -> 0 by a first one)
    local j = job_of(l, b); l:report(j, false)
    j = job_of(l, b); note("report", timed(l.report, l, j, false)); note("pick", worst_picks(l, r .. "r"))
    j = job_of(l, b); l:report(j, true); worst_picks(l, r .. "r1")
  end
  return first, next200, worst
end

local function build_row(n)
  local bs = names(n)
  local l = upstream.new(bs, { strategy = "hash", weights = { [bs[1]] = 1000000 } })
  local t = timed(l.pick, l, "first")
  local next = worst_picks(l, "f")
  -- after a change: the worst of the next picks
  l:down(bs[2]); l:down(bs[2]); l:down(bs[2])
  return t, next, worst_picks(l, "b")
end

local function panic_row(n, strategy)
  local bs = names(n)
  local l = upstream.new(bs, { panic = 0.5, strategy = strategy })
  -- healthy exactly n/2: one more unhealthy crosses into panic
  for i = 1, math.floor(n / 2) do l:down(bs[i]); l:down(bs[i]) end
  local worst_down, worst_up = 0, 0
  for r = 1, 10 do
    local b = bs[math.floor(n / 2) + r]
    l:down(b)
    local td = timed(l.down, l, b) -- 0 -> -1: panic on
    if strategy == "hash" then l:pick("k" .. r) end -- the build starts
    local tu = timed(l.up, l, b) -- -1 -> 0: panic off
    if td > worst_down then worst_down = td end
    if tu > worst_up then worst_up = tu end
    l:up(b)
  end
  return worst_down, worst_up
end

local pickers = {}
do
  local ok, uffi = pcall(require, "upstream.ffi")
  if ok and jit then pickers.via = "upstream.ffi" pickers.make = uffi.picker
  else pickers.via = "list:pick()" pickers.make = function(l) return function() return l:pick() end end end
end

local function weighted_ns(n)
  local bs = names(n)
  local l = upstream.new(bs, { strategy = "weighted" })
  if n > 3 then
    for k = 1, n do if k % 100 ~= 1 then l:down(bs[k]); l:down(bs[k]) end end
  end
  local pick, N, best = pickers.make(l), 2000000, math.huge
  for _ = 1, 5 do
    local t0 = clock()
    for _ = 1, N do pick() end
    local dt = clock() - t0
    if dt < best then best = dt end
  end
  return best / N * 1e9
end

print(("bench/scale_core.lua (%s)"):format(jit and jit.version or _VERSION))
print()
if ONLY.hash then
  print("hash, right after a change: worst single op (us)")
  print(("%8s %10s %9s %8s %8s %10s %8s %12s %10s"):format("n", "first pick", "next 200", "down", "up",
    "set_weight", "report", "worst pick", "pick p99.9"))
  for _, n in ipairs(SIZES) do
    local first, nx, w = hash_row(n)
    print(("%8d %10.0f %9.1f %8.1f %8.1f %10.1f %8.1f %12.1f %10.1f"):format(n, us(first), us(nx), us(w.down),
      us(w.up), us(w.set_weight), us(w.report), us(w.pick), us(p999())))
  end
end
print()
if ONLY.build then
  print("hash, one weight of 1e6 among n: the first pick, the worst of the next 200, " ..
    "the worst of 200 after a change (us)")
  print(("%8s %14s %12s %12s"):format("n", "first pick", "next 200", "after change"))
  for _, n in ipairs(BUILD_SIZES) do
    local t, nx, w = build_row(n)
    p999()
    print(("%8d %14.0f %12.1f %12.1f"):format(n, us(t), us(nx), us(w)))
  end
end
print()
if ONLY.panic then
  print("panic 0.5: worst up/down crossing the threshold (us), by strategy")
  print(("%12s %8s %10s %10s"):format("strategy", "n", "down (on)", "up (off)"))
  for _, st in ipairs(PANIC_STRATEGIES) do
    for _, n in ipairs(SIZES) do
      local d, u = panic_row(n, st)
      print(("%12s %8d %10.1f %10.1f"):format(st, n, us(d), us(u)))
    end
  end
end
print()
if ONLY.weighted then
  print(("weighted pick, ns per pick through %s, best of 5 x 2e6"):format(pickers.via))
  print(("%8s %10s"):format("n", "ns/pick"))
  local wsizes = { 3 }
  for _, n in ipairs(SIZES) do wsizes[#wsizes + 1] = n end
  for _, n in ipairs(wsizes) do
    print(("%8d %10.1f%s"):format(n, weighted_ns(n), n > 3 and "  (99% down)" or ""))
  end
end
