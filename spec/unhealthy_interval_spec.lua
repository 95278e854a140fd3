-- unhealthy_interval (HAProxy's downinter, Envoy's unhealthy_interval): an
-- unhealthy backend is checked at its own interval; default: interval.
-- Driven by a fake clock.
local upstream = require "upstream"
local util = require "spec.support.util"

-- the start times of the checks run() makes over secs on fake clock c
local function starts(opts, secs, result)
  local c, log = util.fake_clock(0), {}
  local list = upstream.new({ "a" }, util.merge({
    clock = c.clock, sleep = c.sleep, interval = 1, timeout = 0.1,
    check = function()
      log[#log + 1] = c.t
      return result(c.t)
    end,
  }, opts))
  list:run(secs)
  list:shutdown()
  return log
end

describe("unhealthy_interval", function()
  it("checks an unhealthy backend at its own interval, a healthy one at interval", function()
    -- fails until t = 10, then succeeds; initial score 0: one failure makes it unhealthy
    local log = starts({ unhealthy_interval = 4, initial_score = 0 }, 20.5,
      function(t) return t >= 10 end)
    -- 0 fails (score -1: unhealthy) -> 4 -> 8 -> 12 succeeds (-3+1 = -2: still
    -- unhealthy) -> 16 (-1) -> 20 (0: healthy) -> then every 1 s
    assert.are.same({ 0, 4, 8, 12, 16, 20 }, log)
    log = starts({ unhealthy_interval = 4, initial_score = 0 }, 24.5,
      function(t) return t >= 10 end)
    assert.are.same({ 0, 4, 8, 12, 16, 20, 21, 22, 23, 24 }, log)
  end)

  it("defaults to interval", function()
    local log = starts({ interval = 2, initial_score = -1 }, 6.5,
      function() return false end)
    assert.are.same({ 0, 2, 4, 6 }, log)
  end)

  it("a healthy backend is unaffected", function()
    local log = starts({ unhealthy_interval = 100 }, 3.5, function() return true end)
    assert.are.same({ 0, 1, 2, 3 }, log)
  end)

  it("a check that times out counts as a failure for it", function()
    local log = starts({ unhealthy_interval = 3, initial_score = 0, timeout = 0.5 }, 7,
      function() upstream.sleep(1); return true end)
    assert.are.same({ 0, 3, 6 }, log)
  end)

  it("is validated", function()
    for _, v in ipairs({ -1, util.NaN, util.INF }) do
      local ok, err = pcall(upstream.new, { "a" }, { unhealthy_interval = v })
      assert.is_false(ok)
      assert.matches("option 'unhealthy_interval' must be", err)
    end
    local ok, err = pcall(upstream.new, { "a" }, { unhealthy_interval = "5" })
    assert.is_false(ok)
    assert.matches("option 'unhealthy_interval' must be a number %(got string%)", err)
    assert.is_truthy(upstream.new({ "a" }, { unhealthy_interval = 0.5 }))
  end)
end)
