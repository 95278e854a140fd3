local upstream = require "upstream"
local l = upstream.new({ "a", "b", "c", "d" })
local inside, done = false, false
collectgarbage("generational", 1) -- a minor collection (which runs finalizers) every 1% more memory
for round = 1, 1000 do
  for _ = 1, 64 do
    setmetatable({}, { __gc = function()
      if inside and not done then
        done = true
        l:reconcile({ "a" }) -- the block the outer reconcile reads is garbage now
        for _ = 1, 1000 do local _ = {} end -- debt: the next allocation collects it
      end
    end })
  end
  inside = round > 2 -- by then the block is young: a minor collection frees it
  l:reconcile(round % 2 == 0 and { "a", "b", "c", "d" } or { "a", "b", "c" })
  inside = false -- a finalizer run by one of reconcile's allocations reconciled l
  if done then print("a finalizer ran inside reconcile, round " .. round) break end
end
