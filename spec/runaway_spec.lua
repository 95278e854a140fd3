-- Checks that never give control back: a loop that never yields is stopped
-- at its deadline by a count hook on the check's coroutine (set only while
-- it runs), counted as "health check timed out", and closed.
local upstream = require "upstream"
local util = require "spec.support.util"

-- Under LuaJIT compiled code does not run hooks: a tight loop that gets
-- compiled is never stopped (README, Checks). What is stopped there is
-- interpreted code, so the spinning checks below are kept interpreted.
local interpreted = util.interpreted

local ticking = util.ticking_clock

describe("a runaway check", function()
  it("that never yields is stopped at its deadline and the scheduler goes on", function()
    local c = ticking(0.001)
    local others = 0
    local list = upstream.new({ "spin", "ok" }, { clock = c.clock, sleep = c.sleep,
      timeout = 0.05, interval = 1,
      check = interpreted(function(b)
        if b == "spin" then while true do end end
        others = others + 1
        return true
      end) })
    list:step()
    local s = util.status_of(list, "spin")
    assert.equal("health check timed out", s.last_error)
    assert.equal(1, s.failures)
    assert.equal(0, list:score("spin"))
    assert.equal(1, others)
    assert.equal(2, list:score("ok"))
  end)

  it("is stopped even when it catches errors with pcall", function()
    local c = ticking(0.001)
    local list = upstream.new({ "spin" }, { clock = c.clock, sleep = c.sleep, timeout = 0.05,
      check = interpreted(function()
        while true do pcall(function() while true do end end) end
      end) })
    list:step()
    assert.equal("health check timed out", util.status_of(list, "spin").last_error)
  end)

  it("runs its to-be-closed variables when stopped (5.4)", function()
    if not util.TBC then return end
    local c = ticking(0.001)
    local counter = {}
    local list = upstream.new({ "spin" }, { clock = c.clock, sleep = c.sleep, timeout = 0.05,
      check = util.closing(counter, interpreted(function() while true do end end)) })
    list:step()
    assert.equal(1, counter.closed)
  end)

  it("under run(), the next round is checked again", function()
    local c = ticking(0.001)
    local list = upstream.new({ "spin" }, { clock = c.clock, sleep = c.sleep,
      timeout = 0.05, interval = 0.5, check = interpreted(function() while true do end end) })
    list:run(2)
    local s = util.status_of(list, "spin")
    assert.is_true(s.checks >= 3)
    assert.equal(s.checks, s.failures)
  end)

  it("an ordinary check that loops a while but ends in time is not stopped", function()
    local c = ticking(0.000001)
    local list = upstream.new({ "a" }, { clock = c.clock, sleep = c.sleep, timeout = 1,
      check = function() local x = 0; for i = 1, 100000 do x = x + i end; return x > 0 end })
    list:step()
    assert.equal(2, list:score("a"))
    assert.is_nil(util.status_of(list, "a").last_error)
  end)
end)

describe("check errors that are not strings", function()
  local function last_error_of(fn)
    local c = util.fake_clock(0)
    local list = upstream.new({ "a" }, { clock = c.clock, sleep = c.sleep, check = fn })
    list:step()
    return util.status_of(list, "a").last_error
  end

  it("a table with __tostring is reported by it", function()
    local e = setmetatable({}, { __tostring = function() return "custom failure" end })
    assert.equal("custom failure", last_error_of(function() error(e) end))
  end)

  it("a table without __tostring names its type", function()
    assert.equal("health check raised a table value", last_error_of(function() error({}) end))
  end)

  it("nil names its type", function()
    assert.equal("health check raised a nil value", last_error_of(function() error(nil) end))
  end)
end)

describe("upstream.sleep with huge values", function()
  it("math.huge is refused with a message that says why", function()
    local c = util.fake_clock(0)
    local got
    local list = upstream.new({ "a" }, { clock = c.clock, sleep = c.sleep, check = function()
      local ok, err = pcall(upstream.sleep, math.huge)
      got = err
      return ok
    end })
    list:step()
    assert.is_truthy(tostring(got):find("seconds must be a finite number >= 0", 1, true))
  end)

  it("a sleep past the deadline ends the check at its deadline", function()
    local c = util.fake_clock(0)
    local list = upstream.new({ "a" }, { clock = c.clock, sleep = c.sleep, timeout = 0.1,
      check = function() upstream.sleep(1e300); return true end })
    list:run(0.5)
    assert.equal("health check timed out", util.status_of(list, "a").last_error)
  end)
end)
