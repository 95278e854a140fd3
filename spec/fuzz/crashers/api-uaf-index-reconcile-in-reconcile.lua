local upstream = require "upstream"
local l = upstream.new({ "a" })
local b = setmetatable({}, { __index = function(_, k)
  if k == "healthcheck" then l:reconcile({ "a" }); collectgarbage() end
end })
l:reconcile({ "a", b }) -- the healthcheck lookup reconciles; l_reconcile reads the old block
