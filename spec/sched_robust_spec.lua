-- The scheduler and the host-loop interface under abuse: checks that keep
-- yielding on a fake clock, coarse and degenerate clocks, jobs from another
-- list, upstream.sleep outside a check.
local upstream = require "upstream"
local util = require "spec.support.util"

local expect_error = util.expect_error

describe("the scheduler never hangs", function()
  it("run() with a fake clock ends when a check keeps yielding", function()
    local c = util.fake_clock(0)
    local list = upstream.new({ "a" }, { clock = c.clock, sleep = c.sleep, timeout = 0.1,
      check = function() while true do coroutine.yield() end end })
    list:run(1)
    assert.is_true(c.t >= 1)
    local s = util.status_of(list, "a")
    assert.equal("health check timed out", s.last_error)
    assert.is_true(s.failures >= 1)
  end)

  it("wait_initial(2) with a fake clock ends when a check keeps yielding", function()
    local c = util.fake_clock(0)
    local list = upstream.new({ "a" }, { clock = c.clock, sleep = c.sleep, timeout = 0.1,
      check = function() while true do coroutine.yield() end end })
    assert.is_true(list:wait_initial(2))
    assert.is_true(c.t <= 2)
  end)

  it("run() with a millisecond clock and the default sleep takes sub-ms sleeps", function()
    local t = 0
    local sleeps = 0
    local list = upstream.new({ "a" }, {
      clock = function() return math.floor(t * 1000) / 1000 end,
      sleep = function(s) sleeps = sleeps + 1; t = t + s end,
      interval = 0.01, timeout = 0.005,
      check = function() upstream.sleep(0.0003); return true end })
    list:run(0.05)
    assert.equal(3, list:score("a"))
    assert.is_true(sleeps > 0)
  end)
end)

describe("report()", function()
  it("refuses a job from another list with an error", function()
    local c = util.fake_clock(0)
    local check = function() return true end
    local l1 = upstream.new({ "a" }, { clock = c.clock, check = check })
    local l2 = upstream.new({ "a" }, { clock = c.clock, check = check })
    local j1, j2 = l1:due()[1], l2:due()[1]
    expect_error(function() l1:report(j2, false) end, "bad argument", "not a job from this list")
    assert.is_true(l1:report(j1, true))
    assert.is_true(l2:report(j2, true))
  end)

  it("raises on a list driven by step()", function()
    local c = util.fake_clock(0)
    local list = upstream.new({ "a" }, { clock = c.clock, sleep = c.sleep,
      check = function() return true end })
    list:step()
    expect_error(function() list:report({ slot = 0, gen = 1 }, true) end,
      "checks are driven by step()")
  end)
end)

describe("upstream.sleep", function()
  it("raises in a coroutine outside any check", function()
    local co = coroutine.create(function() upstream.sleep(1) end)
    local ok, err = coroutine.resume(co)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("upstream.sleep: not inside a health check", 1, true))
  end)

  it("raises in a helper coroutine inside a check", function()
    local c = util.fake_clock(0)
    local got
    local list = upstream.new({ "a" }, { clock = c.clock, sleep = c.sleep, check = function()
      local co = coroutine.create(function() upstream.sleep(1) end)
      local ok, err = coroutine.resume(co)
      got = { ok, err }
      return true
    end })
    list:step()
    assert.is_false(got[1])
    assert.is_truthy(tostring(got[2]):find("not inside a health check", 1, true))
    assert.equal(2, list:score("a"))
  end)
end)
describe("degenerate slow start and clocks", function()
  it("slow_start = math.huge is rejected", function()
    expect_error(function() upstream.new({ "a" }, { slow_start = math.huge }) end,
      "option 'slow_start' must be a finite number")
  end)

  it("a clock returning math.huge is an error, and the list keeps working", function()
    local t = 0
    local list = upstream.new({ "a", "b" }, { strategy = "hash", slow_start = 1,
      clock = function() return t end })
    list:down("a"); list:down("a")
    t = math.huge
    expect_error(function() list:up("a") end, "clock() returned inf")
    t = 5
    assert.is_string(list:pick("k"))
  end)

  it("a hash list ramping on a clock that stands still picks (no hang)", function()
    local list = upstream.new({ "a", "b", "c" }, { strategy = "hash", slow_start = 0.01,
      clock = function() return 0 end })
    list:down("a"); list:down("a"); list:up("a"); list:up("a")
    for i = 1, 10 do assert.is_string(list:pick(tostring(i))) end
  end)
end)

describe("degenerate slow start", function()
  it("a slow_start whose step underflows is rejected", function()
    expect_error(function() upstream.new({ "a" }, { slow_start = 1e-320 }) end,
      "option 'slow_start' must be 0 (off) or a finite number >= 0.001")
  end)
end)
