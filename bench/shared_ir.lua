-- One list's picks, for bench/shared_ir.sh: N picks of a 16-backend list
-- of the strategy, private or shared, after one untimed pick.
--   lua5.4 bench/shared_ir.lua STRATEGY private|shared N
package.cpath = "./?.so;" .. package.cpath
local upstream = require "upstream"
local st, mode, n = arg[1], arg[2], tonumber(arg[3])
local bs = {}
for i = 1, 16 do bs[i] = ("10.0.0.%d:80"):format(i) end
local l = upstream.new(bs, {
  strategy = st, shared = mode == "shared" and ("shared_ir_" .. st) or nil,
})
local key = st == "hash" and "client-42" or nil
l:pick(key)
for _ = 1, n do l:pick(key) end
