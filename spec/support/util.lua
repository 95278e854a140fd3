-- Shared helpers for the upstream specs (no dependency on the binding).
local util = {}

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

-- Status reduced to comparable plain values.
function util.snapshot(list)
  local out = {}
  for i, s in ipairs(list:status()) do
    out[i] = { backend = s.backend, score = s.score, healthy = s.healthy,
      last_error = s.last_error, checks = s.checks, failures = s.failures }
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
