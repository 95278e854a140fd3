-- Pick benchmark: ratios measured in one process (noisy shared machines:
-- absolute times mean little, ratios between loops run side by side do).
--   lua5.4 bench/pick.lua [iterations]
package.cpath = "./?.so;" .. package.cpath
local upstream = require "upstream"

local N = tonumber(arg and arg[1]) or 2000000
local clock = os.clock

-- Best of 5 runs of f(N), in ns per iteration.
local function time(f)
  local best = math.huge
  for _ = 1, 5 do
    local t0 = clock()
    f(N)
    local dt = clock() - t0
    if dt < best then best = dt end
  end
  return best / N * 1e9
end

-- A plain pure-Lua list with the same semantics, written the way a Lua
-- user would: nodes with scores, the Go package's scan for pick.
local LuaList = {}
LuaList.__index = LuaList
local function lua_list(backends)
  local nodes, index = {}, {}
  for i, b in ipairs(backends) do nodes[i] = { backend = b, score = 1 }; index[b] = nodes[i] end
  return setmetatable({ nodes = nodes, index = index, pos = -1 }, LuaList)
end
function LuaList:pick()
  local nodes = self.nodes
  local n = #nodes
  for j = 0, n - 1 do
    local i = (self.pos + 1 + j) % n
    local node = nodes[i + 1]
    if node.score >= 0 then self.pos = i; return node.backend end
  end
  return nil, "no upstreams available"
end
function LuaList:up(b)
  local node = self.index[b]
  if node then node.score = math.min(node.score + 1, 3) end
end
function LuaList:down(b)
  local node = self.index[b]
  if node then node.score = math.max(node.score - 1, -3) end
end

local function names(n)
  local t = {}
  for i = 1, n do t[i] = "10.0.0." .. i .. ":80" end
  return t
end

-- n backends, all but every 100th unhealthy when sparse
local function make(n, sparse)
  local b = names(n)
  local l, r = upstream.new(b), lua_list(b)
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
row("pure Lua pick n=10000, 99% down", time(function(n) for _ = 1, n // 100 do r10k:pick() end end) * 100)

-- up and down at a score that flips health (0 <-> -1): the bitmap path
local function updown(l, b)
  l:down(b); l:down(b) -- from 1 to -1
  return function(n) for _ = 1, n do l:up(b); l:down(b) end end
end
row("pure Lua up()+down() n=3", time(updown(r3, b3[2])))
row("list:up()+down() n=3", time(updown(l3, b3[2])))
row("list:up()+down() n=10000, 99% down", time(updown(l10k, b10k[5001])))

local w = 0
for _, r in ipairs(rows) do w = math.max(w, #r[1]) end
print(("%-" .. w .. "s  %9s  %8s"):format("operation (" .. _VERSION .. ")", "ns/op", "x floor"))
for _, r in ipairs(rows) do
  print(("%-" .. w .. "s  %9.1f  %8.2f"):format(r[1], r[2], r[2] / floor))
end
local function get(name) for _, r in ipairs(rows) do if r[1] == name then return r[2] end end end
print()
print(("pick n=3 vs floor:                 %.2fx (target <= 2)"):format(get("list:pick() n=3") / floor))
local function ratio(a, b) return get(a) / get(b) end
print(("pure Lua pick / pick n=3:          %.2fx (target >= 2)")
  :format(ratio("pure Lua pick n=3", "list:pick() n=3")))
print(("pick n=10000 99%% down / n=3:       %.2fx (target <= 3)")
  :format(ratio("list:pick() n=10000, 99% down", "list:pick() n=3")))
print(("pure Lua up+down / up+down n=3:    %.2fx")
  :format(ratio("pure Lua up()+down() n=3", "list:up()+down() n=3")))
print(("up+down n=10000 99%% down / n=3:    %.2fx (target <= 3)")
  :format(ratio("list:up()+down() n=10000, 99% down", "list:up()+down() n=3")))
