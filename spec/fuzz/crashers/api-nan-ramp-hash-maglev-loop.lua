local upstream = require "upstream"
local l = upstream.new({ "a" }, { strategy = "hash", slow_start = 5e-324, clock = function() return 0 end })
l:down("a"); l:down("a"); l:up("a") -- turns healthy at t = 0: a ramp whose step is 0 s
print(l:pick("k")) -- (0 - 0) / 0 = NaN ramp step -> weight 0 -> the Maglev build never fills
