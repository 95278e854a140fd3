local upstream = require "upstream"
local t, l, reenter = 0, nil, false
l = upstream.new({ "a", "b", "c" }, {
  slow_start = 0.5,
  clock = function()
    if reenter then reenter = false; l:reconcile({ "a" }); collectgarbage() end
    return t
  end,
})
l:down("a"); l:down("a"); l:up("a") -- "a" turns healthy again: it ramps up
reenter = true
print(l:pick()) -- the clock reconciles; the old block is collected; ul_pick reads it
