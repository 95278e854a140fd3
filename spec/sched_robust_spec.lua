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

-- A backend's healthcheck method is looked up again when its check starts
-- (the backend's __index is user code): new() found it, the start may not.
describe("a check's healthcheck lookup at its start", function()
  -- an object whose healthcheck new() finds, and whose __index raises
  -- err (a value, or a function of the key) once strict is set
  local function turning_strict(err)
    local o = { strict = false, calls = 0 }
    o.backend = setmetatable({}, { __index = function(_, k)
      if o.strict then error(type(err) == "function" and err(k) or err, 0) end
      if k == "healthcheck" then
        return function() o.calls = o.calls + 1; return true end
      end
    end })
    return o
  end

  local function good()
    local o = { calls = 0 }
    o.backend = { healthcheck = function() o.calls = o.calls + 1; return true end }
    return o
  end

  it("fails that check with the lookup's error, and step() runs the others", function()
    local c = util.fake_clock(0)
    local s, g = turning_strict(function(k) return "strict: no field " .. tostring(k) end), good()
    local list = upstream.new({ s.backend, g.backend }, { clock = c.clock, sleep = c.sleep,
      interval = 1 })
    assert.equal(2, list:checked())
    s.strict = true
    assert.equal(1, list:step())
    assert.equal(1, g.calls)
    assert.equal(2, list:score(g.backend))
    assert.equal(0, list:score(s.backend)) -- 1 + fail_delta
    local st = util.status_of(list, s.backend)
    assert.equal("strict: no field healthcheck", st.last_error)
    assert.equal(1, st.failures)
    -- the next round goes on, and a lookup that works again is a check again
    c.t = 1
    assert.equal(1, list:step())
    assert.equal(2, g.calls)
    assert.equal(-1, list:score(s.backend))
    s.strict = false
    c.t = 2
    list:step()
    assert.equal(1, s.calls)
    assert.equal(0, list:score(s.backend))
    assert.is_nil(util.status_of(list, s.backend).last_error)
  end)

  it("a non-string error from the lookup is a failure with the usual message", function()
    local c = util.fake_clock(0)
    local s = turning_strict({})
    local list = upstream.new({ s.backend }, { clock = c.clock, sleep = c.sleep })
    s.strict = true
    list:step()
    assert.equal("health check raised a table value", util.status_of(list, s.backend).last_error)
  end)

  it("run() and wait_initial() go on too", function()
    local c = util.fake_clock(0)
    local s, g = turning_strict("strict"), good()
    local list = upstream.new({ s.backend, g.backend }, { clock = c.clock, sleep = c.sleep,
      interval = 1 })
    s.strict = true
    assert.is_true(list:wait_initial(1))
    list:run(3.5)
    assert.equal(4, g.calls)
    assert.equal(-3, list:score(s.backend))
    assert.equal(4, util.status_of(list, s.backend).failures)
  end)

  it("a userdata that lost its __index fails its check, and the scheduler goes on", function()
    local f = assert(io.tmpfile())
    local calls = 0
    debug.setmetatable(f, { __index = { healthcheck = function() calls = calls + 1; return true end } })
    local c = util.fake_clock(0)
    local list = upstream.new({ f, "plain" }, { clock = c.clock, sleep = c.sleep })
    assert.equal(1, list:checked())
    debug.setmetatable(f, {})
    assert.equal(1, list:step())
    assert.equal(0, calls)
    local st = util.status_of(list, f)
    assert.equal(1, st.failures)
    assert.is_truthy(st.last_error:find("attempt to index", 1, true))
    c.t = 1
    assert.equal(1, list:step())
    assert.equal(2, util.status_of(list, f).failures)
    assert.equal(-1, list:score(f))
  end)

  it("a lookup that reconciles the list away ends that check, and step() goes on", function()
    local c = util.fake_clock(0)
    local list
    local armed = false
    local b = setmetatable({}, { __index = function(_, k)
      if k ~= "healthcheck" then return nil end
      if armed then armed = false; list:reconcile({ "x", "y" }); collectgarbage() end
      return function() return true end
    end })
    list = upstream.new({ b }, { clock = c.clock, sleep = c.sleep })
    armed = true
    list:step()
    assert.equal(2, #list)
    assert.is_nil(util.status_of(list, b))
  end)
end)

describe("step()'s wait", function()
  it("counts from the clock after the checks ran", function()
    local c = util.fake_clock(0)
    local list = upstream.new({ "a" }, { clock = c.clock, sleep = c.sleep, interval = 1,
      check = function() c.t = c.t + 0.25; return true end })
    assert.equal(0.75, list:step()) -- the next check at 1, the clock at 0.25
    c.t = 1
    assert.equal(0.75, list:step())
  end)

  it("is 0 when the checks ran past the next event", function()
    local c = util.fake_clock(0)
    local list = upstream.new({ "a", "b" }, { clock = c.clock, sleep = c.sleep, interval = 1,
      timeout = 5, check = function() c.t = c.t + 0.75; return true end })
    assert.equal(0, list:step()) -- both ran: the clock at 1.5, a's next check at 1
  end)

  it("is nil when a check shut the list down", function()
    local c = util.fake_clock(0)
    local list
    list = upstream.new({ "a" }, { clock = c.clock, sleep = c.sleep,
      check = function() c.t = c.t + 1; list:shutdown(); return true end })
    assert.is_nil(list:step())
  end)
end)
