-- One loop of bench/pick.lua's operations, run under callgrind by
-- bench/pick_ir.sh: instructions are repeatable where times are not.
--   lua5.4 bench/pick_ir.lua WHAT N
package.cpath = "./?.so;" .. package.cpath
local upstream = require "upstream"
local what, N = arg[1], tonumber(arg[2]) or 200000

local function names(n)
  local t = {}
  for i = 1, n do t[i] = "10.0.0." .. i .. ":80" end
  return t
end

-- the plain pure-Lua list of bench/pick.lua
local LuaList = {}
LuaList.__index = LuaList
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

local s = "x"
if what == "none" then return end
if what == "floor" then for _ = 1, N do s:len() end return end
if what == "purelua" then
  local nodes = {}
  for i, b in ipairs(names(3)) do nodes[i] = { backend = b, score = 1 } end
  local l = setmetatable({ nodes = nodes, pos = -1 }, LuaList)
  for _ = 1, N do l:pick() end
  return
end
local strategy, n = what:match("^(%a[%a_]*)(%d+)$")
n = tonumber(n)
local bs = names(n)
local l = upstream.new(bs, { strategy = strategy })
if n > 3 then
  for k = 1, n do if k % 100 ~= 1 then l:down(bs[k]); l:down(bs[k]) end end
end
if strategy == "hash" then
  local key = "user-42"
  for _ = 1, N do l:pick(key) end
else
  for _ = 1, N do l:pick() end
end
