local upstream = require "upstream"
local t = 0
local l = upstream.new({ "a", "b" }, { slow_start = 0.5, clock = function() return t end })
l:down("a"); l:down("a")
t = math.huge
l:up("a")      -- turns healthy at t = inf
print(l:pick()) -- (inf - inf) / 0.05 = NaN
