-- A pure-Lua reference model of the upstream list semantics, without
-- health checks: new, pick, up, down, score, reconcile, status, len.
local Model = {}
Model.__index = Model

local DEFAULTS = {
  initial_score = 1, low_score = -3, high_score = 3,
  fail_delta = -1, success_delta = 1,
}

local function find(items, v)
  for i = 1, #items do
    if rawequal(items[i].value, v) then return i end
  end
  return nil
end

local function contains(arr, v)
  for i = 1, #arr do
    if rawequal(arr[i], v) then return true end
  end
  return false
end

function Model.new(backends, opts)
  opts = opts or {}
  local o = {}
  for k, v in pairs(DEFAULTS) do
    if opts[k] ~= nil then o[k] = opts[k] + 0.0 else o[k] = v + 0.0 end
  end
  local self = setmetatable({ o = o, items = {}, pos = -1 }, Model)
  for i = 1, #backends do
    self.items[i] = { value = backends[i], score = o.initial_score }
  end
  return self
end

function Model:len() return #self.items end

function Model:pick()
  local n = #self.items
  for j = 0, n - 1 do
    local i = (self.pos + 1 + j) % n
    if self.items[i + 1].score >= 0 then
      self.pos = i
      return self.items[i + 1].value
    end
  end
  return nil, "no upstreams available"
end

function Model:up(b)
  for _, it in ipairs(self.items) do
    if rawequal(it.value, b) then
      it.score = math.min(it.score + self.o.success_delta, self.o.high_score)
    end
  end
end

function Model:down(b)
  for _, it in ipairs(self.items) do
    if rawequal(it.value, b) then
      it.score = math.max(it.score + self.o.fail_delta, self.o.low_score)
    end
  end
end

function Model:score(b)
  local i = find(self.items, b)
  if i then return self.items[i].score end
  return nil
end

function Model:reconcile(backends)
  local kept = {}
  for _, it in ipairs(self.items) do
    if contains(backends, it.value) then kept[#kept + 1] = it end
  end
  for i = 1, #backends do
    local v = backends[i]
    if not find(kept, v) then
      kept[#kept + 1] = { value = v, score = self.o.initial_score }
    end
  end
  self.items = kept
end

function Model:status()
  local out = {}
  for i, it in ipairs(self.items) do
    out[i] = { backend = it.value, score = it.score, healthy = it.score >= 0 }
  end
  return out
end

return Model
