-- One loop of bench/pick.lua's operations, run under callgrind by
-- bench/pick_ir.sh: instructions are repeatable where times are not.
--   lua5.4 bench/pick_ir.lua WHAT N
package.cpath = "./?.so;" .. package.cpath
package.path = "./bench/?.lua;" .. package.path
local upstream = require "upstream"
local lualist = require "lualist"
local names = lualist.names
local what, N = arg[1], tonumber(arg[2]) or 200000

local s = "x"
if what == "none" then return end
if what == "floor" then for _ = 1, N do s:len() end return end
if what == "purelua" then
  local l = lualist.new(names(3))
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
