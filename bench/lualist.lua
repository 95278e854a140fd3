-- The benchmarks' baseline: a plain pure-Lua list with the same semantics,
-- written the way a Lua user would (nodes with scores, the Go package's
-- scan for pick), and the backend names they use.
local M = {}

local LuaList = {}
LuaList.__index = LuaList

function M.new(backends)
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

-- The list becomes the set backends: kept members keep their node (and
-- score) in their order, new ones are appended, duplicates skipped.
function LuaList:reconcile(backends)
  local set, nodes, index = {}, {}, {}
  for _, b in ipairs(backends) do set[b] = true end
  for _, node in ipairs(self.nodes) do
    if set[node.backend] then nodes[#nodes + 1] = node; index[node.backend] = node end
  end
  for _, b in ipairs(backends) do
    if not index[b] then
      local node = { backend = b, score = 1 }
      nodes[#nodes + 1] = node
      index[b] = node
    end
  end
  self.nodes, self.index = nodes, index
end

function M.names(n)
  local t = {}
  for i = 1, n do t[i] = "10.0.0." .. i .. ":80" end
  return t
end

return M
