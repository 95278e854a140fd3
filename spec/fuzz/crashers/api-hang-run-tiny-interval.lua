local upstream = require "upstream"
local t = 1000
local l = upstream.new({ "a" }, {
  interval = 1e-274, check = function() return true end,
  clock = function() return t end, sleep = function(s) t = t + s end,
})
l:run(1) -- never returns: t + interval == t, so the check is due again at once, for ever
print("returned")
