-- Pick benchmark: ratios measured in one process (noisy shared machines:
-- absolute times mean little, ratios between loops run side by side do).
--   lua5.4 bench/pick.lua [iterations]
package.cpath = "./?.so;" .. package.cpath
package.path = "./bench/?.lua;" .. package.path
local upstream = require "upstream"
local lualist = require "lualist"
local lua_list, names = lualist.new, lualist.names

local N = tonumber(arg and arg[1]) or 2000000
local clock = os.clock

-- Loops are registered first and then timed in interleaved rounds (each
-- round runs every loop once; the best round counts), so that a slow spell
-- of the shared machine hits all of them alike.
local ROUNDS = 7
local loops = {}
local function time(f, scale)
  local e = { f = f, scale = scale or 1, best = math.huge }
  loops[#loops + 1] = e
  return e
end
local function run_all()
  for _ = 1, ROUNDS do
    for _, e in ipairs(loops) do
      local t0 = clock()
      e.f(N)
      local dt = clock() - t0
      if dt < e.best then e.best = dt end
    end
  end
  for _, e in ipairs(loops) do e.ns = e.best / N * 1e9 * e.scale end
end

-- n backends, all but every 100th unhealthy when sparse
local function make(n, sparse, strategy)
  local b = names(n)
  local l, r = upstream.new(b, { strategy = strategy }), lua_list(b)
  if sparse then
    for i = 1, n do
      if i % 100 ~= 1 then
        for _ = 1, 2 do l:down(b[i]); r:down(b[i]) end
      end
    end
  end
  return l, r, b
end

local s = "x"
local floor = time(function(n) for _ = 1, n do s:len() end end)

local rows = {}
local function row(name, ns) rows[#rows + 1] = { name, ns } end

local l3, r3, b3 = make(3)
local l10k, r10k, b10k = make(10000, true)

row("floor: (\"x\"):len()", floor)
row("list:pick() n=3", time(function(n) for _ = 1, n do l3:pick() end end))
row("pure Lua pick n=3", time(function(n) for _ = 1, n do r3:pick() end end))
row("list:pick() n=10000, 99% down", time(function(n) for _ = 1, n do l10k:pick() end end))
-- the scan costs ~100 steps a pick here: run 1/100 of the picks
row("pure Lua pick n=10000, 99% down", time(function(n) for _ = 1, math.floor(n / 100) do r10k:pick() end end, 100))

-- up and down at a score that flips health (0 <-> -1): the bitmap path
local function updown(l, b)
  l:down(b); l:down(b) -- from 1 to -1
  return function(n) for _ = 1, n do l:up(b); l:down(b) end end
end
row("pure Lua up()+down() n=3", time(updown(r3, b3[2])))
row("list:up()+down() n=3", time(updown(l3, b3[2])))
row("list:up()+down() n=10000, 99% down", time(updown(l10k, b10k[5001])))

-- every strategy, n=3 and n=10000 with 99% of the backends down
local strategies = { "weighted", "least_conn", "hash", "random" }
for _, st in ipairs(strategies) do
  local a = make(3, false, st)
  local z = make(10000, true, st)
  if st == "hash" then
    local key = "user-42"
    row(st .. " pick(key) n=3", time(function(n) for _ = 1, n do a:pick(key) end end))
    row(st .. " pick(key) n=10000, 99% down", time(function(n) for _ = 1, n do z:pick(key) end end))
  else
    row(st .. " pick() n=3", time(function(n) for _ = 1, n do a:pick() end end))
    row(st .. " pick() n=10000, 99% down", time(function(n) for _ = 1, n do z:pick() end end))
  end
end

run_all()
for _, r in ipairs(rows) do r[2] = r[2].ns end
floor = rows[1][2]
local w = 0
for _, r in ipairs(rows) do w = math.max(w, #r[1]) end
print(("%-" .. w .. "s  %9s  %8s"):format("operation (" .. _VERSION .. ")", "ns/op", "x floor"))
for _, r in ipairs(rows) do
  print(("%-" .. w .. "s  %9.1f  %8.2f"):format(r[1], r[2], r[2] / floor))
end
local function get(name) for _, r in ipairs(rows) do if r[1] == name then return r[2] end end end
print()
local function ratio(label, a, b, target)
  print(("%-34s %5.2fx %s"):format(label, get(a) / get(b), target or ""))
end
ratio("pick n=3 / floor", "list:pick() n=3", "floor: (\"x\"):len()", "(target <= 2)")
ratio("pure Lua pick / pick, n=3", "pure Lua pick n=3", "list:pick() n=3", "(target >= 2)")
ratio("pure Lua up+down / up+down, n=3", "pure Lua up()+down() n=3", "list:up()+down() n=3")
ratio("pick n=10000 99% down / n=3", "list:pick() n=10000, 99% down", "list:pick() n=3", "(target <= 3)")
for _, st in ipairs(strategies) do
  local call = st == "hash" and " pick(key)" or " pick()"
  ratio(st .. " n=3 / floor", st .. call .. " n=3", "floor: (\"x\"):len()",
    st == "hash" and "(target <= 3)" or "(target <= 2.5)")
  ratio(st .. " n=10000 99% down / n=3", st .. call .. " n=10000, 99% down", st .. call .. " n=3", "(target <= 3)")
end
ratio("up+down n=10000 99% down / n=3", "list:up()+down() n=10000, 99% down", "list:up()+down() n=3",
  "(target <= 3)")
