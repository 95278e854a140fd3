-- Shared helpers for the upstream specs (no dependency on the binding).
local util = {}

-- What pick() returns as its error when it has nothing to pick.
util.NONE = "no upstreams available"
-- Every value of the strategy option, in the module's order.
util.STRATEGIES = { "round_robin", "weighted", "least_conn", "hash", "random" }
-- Numbers the option checks must refuse.
util.NaN, util.INF = 0 / 0, math.huge

-- A new table with the fields of each given table in turn (nil counts as
-- empty), later ones winning: the options of a list, extra ones over defaults.
function util.merge(...)
  local out = {}
  for i = 1, select("#", ...) do
    for k, v in pairs(select(i, ...) or {}) do out[k] = v end
  end
  return out
end

-- A fake clock: returns clock object with .t, :now(), and option functions.
function util.fake_clock(start)
  local c = { t = start or 0, slept = {} }
  c.clock = function() return c.t end
  c.sleep = function(s)
    c.slept[#c.slept + 1] = s
    c.t = c.t + s
  end
  return c
end

-- A fake clock that moves a little every time it is read, as a real one
-- does while a check spins; its sleep advances it.
function util.ticking_clock(step)
  local c = { t = 0 }
  c.clock = function() c.t = c.t + step; return c.t end
  c.sleep = function(s) c.t = c.t + s end
  return c
end

-- fn, kept interpreted under LuaJIT: compiled code runs no hooks (README,
-- Checks), so a spinning check is stopped there only while interpreted.
function util.interpreted(fn)
  if jit then jit.off(fn, true) end
  return fn
end

-- An object whose finalizer is fn, on every runtime (5.1 and LuaJIT
-- finalize userdata only).
function util.finalizer(fn)
  if newproxy then
    local p = newproxy(true)
    getmetatable(p).__gc = fn
    return p
  end
  return setmetatable({}, { __gc = fn })
end

-- Calls fn(...) expecting an error whose message contains every one of the
-- given plain substrings. Returns the message.
function util.expect_error(fn, ...)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error, but the call succeeded")
  local msg = tostring(err)
  for i = 1, select("#", ...) do
    local s = select(i, ...)
    assert(string.find(msg, s, 1, true),
      string.format("error message %q does not contain %q", msg, s))
  end
  return msg
end

-- A to-be-closed value that counts its closings in counter[key].
function util.closer(counter, key)
  key = key or "closed"
  return setmetatable({}, {
    __close = function() counter[key] = (counter[key] or 0) + 1 end,
  })
end

-- Whether this Lua has to-be-closed variables (5.4). Before 5.4 the module
-- cannot close a check it abandons (timed out, removed, shut down): the
-- coroutine is only dropped, never resumed, left to the GC. The code using
-- <close> is compiled from strings so that these specs parse everywhere.
local compile = loadstring or load -- 5.1's load takes no string
util.TBC = compile("local x <close> = nil") ~= nil

-- fn, run with a to-be-closed variable holding make() (5.4); make may be
-- a counter table: util.closer(counter). Before 5.4, fn itself: there is
-- nothing to hold the value.
function util.closing(make, fn)
  if not util.TBC then return fn end
  if type(make) == "table" then
    local counter = make
    make = function() return util.closer(counter) end
  end
  return compile([[
    local make, fn = ...
    return function(...)
      local _ <close> = make()
      return fn(...)
    end]])(make, fn)
end

-- Calls fn(value) in a block where value is to-be-closed (5.4); before 5.4
-- the block is plain.
function util.scoped(value, fn)
  if not util.TBC then fn(value) return end
  compile([[
    local value, fn = ...
    local v <close> = value
    fn(v)]])(value, fn)
end

-- A weak set of coroutines: add(), called inside a check, records the
-- running coroutine; live() runs a full collection and counts the ones
-- still alive (closed or dropped checks must not be kept).
function util.threads()
  local set = setmetatable({}, { __mode = "k" })
  local t = {}
  function t.add() set[coroutine.running()] = true end
  function t.live()
    collectgarbage(); collectgarbage()
    local n = 0
    for _ in pairs(set) do n = n + 1 end
    return n
  end
  return t
end

-- The status fields of the pick strategies, for util.snapshot.
util.STRATEGY_FIELDS = { "weight", "tier", "inflight" }

-- Status reduced to comparable plain values: backend, score, healthy and
-- the check fields, and the fields named in extra (optional), e.g.
-- util.STRATEGY_FIELDS.
function util.snapshot(list, extra)
  local out = {}
  for i, s in ipairs(list:status()) do
    local e = { backend = s.backend, score = s.score, healthy = s.healthy,
      last_error = s.last_error, checks = s.checks, failures = s.failures }
    for _, k in ipairs(extra or {}) do e[k] = s[k] end
    out[i] = e
  end
  return out
end

-- Finds the status entry of backend b (first one, raw equality).
function util.status_of(list, b)
  for _, s in ipairs(list:status()) do
    if rawequal(s.backend, b) then return s end
  end
  return nil
end

return util
