-- The scheduler's rules, each with exact values: the tick that run() and
-- wait_initial() give a check that yields, when a clock counts as standing
-- still, the runaway-check hook (where it stops a check, that it is set only
-- while the check runs), what upstream.sleep and report() refuse; and the
-- results a host reports through report() (last_error, tiers, latency).
local upstream = require "upstream"
local util = require "spec.support.util"
local lists = require "spec.support.lists"

local expect_error = util.expect_error
local status_of = util.status_of

-- the tick: a yielded check is resumed no sooner than this under run()
local TICK = 1e-4

-- Under LuaJIT compiled code runs no hooks (README, Checks): spinning
-- checks are kept interpreted, which is what the hook stops there.
local interpreted = util.interpreted

local ticking = util.ticking_clock

local function near(expect, got, what)
  assert(math.abs(expect - got) < 1e-9, (what or "value") .. ": expected " .. expect .. ", got " .. got)
end

describe("the tick of run() and wait_initial()", function()
  it("resumes a yielded check one tick later on the list's clock", function()
    local c = util.fake_clock(0)
    local at = {}
    local list = lists.with_clock({ "a" }, c, { interval = 10, timeout = 1, check = function()
      for _ = 1, 3 do at[#at + 1] = c.t; coroutine.yield() end
      at[#at + 1] = c.t
      return true
    end })
    list:run(0.5)
    assert.equal(4, #at)
    for i = 1, 4 do near((i - 1) * TICK, at[i], "resume " .. i) end
    near(TICK, c.slept[1], "first sleep")
    assert.equal(2, list:score("a"))
  end)

  it("rounds a shorter upstream.sleep up to the tick, and keeps a longer one", function()
    local c = util.fake_clock(0)
    local at = {}
    local list = lists.with_clock({ "a" }, c, { interval = 10, timeout = 1, check = function()
      upstream.sleep(0)
      at[#at + 1] = c.t
      upstream.sleep(TICK / 10)
      at[#at + 1] = c.t
      upstream.sleep(0.25)
      at[#at + 1] = c.t
      return true
    end })
    list:run(1)
    near(TICK, at[1], "after sleep(0)")
    near(2 * TICK, at[2], "after sleep(tick / 10)")
    near(2 * TICK + 0.25, at[3], "after sleep(0.25)")
  end)

  it("step() still resumes a yielded check at the next step, the clock unmoved", function()
    local c = util.fake_clock(0)
    local n = 0
    local list = lists.with_clock({ "a" }, c, { check = function()
      n = n + 1; coroutine.yield(); n = n + 1
      return true
    end })
    assert.equal(0, list:step()) -- yielded: due again at once
    assert.equal(1, n)
    assert.equal(1, list:step()) -- done: the next start at 0 + interval
    assert.equal(2, n)
    assert.equal(0, c.t)
  end)

  it("a check that keeps yielding times out at its deadline under wait_initial()", function()
    local c = util.fake_clock(0)
    local resumes = 0
    local list = lists.with_clock({ "a" }, c, { timeout = 0.01, check = function()
      while true do resumes = resumes + 1; coroutine.yield() end
    end })
    assert.is_true(list:wait_initial())
    assert.equal("health check timed out", status_of(list, "a").last_error)
    -- the deadline, or up to a tick past it when the sum of ticks falls
    -- short of it by a rounding residue (the driver sleeps a tick at least)
    assert.is_true(c.t >= 0.01 and c.t <= 0.01 + TICK + 1e-12, "clock at the end: " .. c.t)
    -- resumed at 0, tick, 2 tick, ... up to the deadline (excluded)
    assert.is_true(resumes == 100 or resumes == 101, "resumes: " .. resumes)
  end)
end)

describe("a clock that stands still", function()
  it("is an error once the sleeps add up to 1 s, with a fake clock and the default sleep", function()
    local t = 0
    local list = upstream.new({ "a" }, { clock = function() return t end, interval = 1,
      check = function() return true end })
    expect_error(function() list:run(5) end, "the clock did not move during sleeps adding up to 1",
      "with a fake clock, pass a 'sleep' option that advances it")
  end)

  it("is an error once the sleeps add up to 1 s, with a sleep option that does not advance it", function()
    local slept = 0
    local list = upstream.new({ "a" }, { clock = function() return 0 end,
      sleep = function(s) slept = slept + s end, interval = 0.3,
      check = function() return true end })
    expect_error(function() list:run(5) end, "the clock did not move during sleeps adding up to 1.2",
      "the 'sleep' option must advance the 'clock'")
    near(1.2, slept, "slept")
  end)

  it("is not an error while a coarse clock catches up", function()
    local t = 0
    local list = upstream.new({ "a" }, {
      clock = function() return math.floor(t * 100) / 100 end, -- 10 ms resolution
      sleep = function(s) t = t + s end,
      interval = 0.05, timeout = 0.02,
      check = function() upstream.sleep(0.001); return true end })
    list:run(0.5)
    local s = status_of(list, "a")
    assert.equal(10, s.checks)
    assert.equal(0, s.failures)
  end)
end)

describe("the runaway-check hook", function()
  it("stops a helper coroutine the check resumes, and then the check", function()
    local c = ticking(0.001)
    local got
    local list = lists.with_clock({ "a" }, c, { timeout = 0.05, check = interpreted(function()
      local co = coroutine.create(function() while true do end end)
      got = { coroutine.resume(co) }
      while true do end
    end) })
    list:step()
    if jit then
      -- hooks are global there: the check is stopped at its first
      -- instruction after the helper's resume, before it sees the result
      assert.is_nil(got)
    else
      assert.are.same({ false, "health check timed out" }, got)
    end
    local s = status_of(list, "a")
    assert.equal("health check timed out", s.last_error)
    assert.equal(1, s.failures)
  end)

  it("stops a check spinning inside a C call (a sort comparator)", function()
    local c = ticking(0.001)
    local list = lists.with_clock({ "a" }, c, { timeout = 0.05, check = interpreted(function()
      table.sort({ 3, 1, 2 }, function() while true do end end)
      return true
    end) })
    list:step()
    assert.equal("health check timed out", status_of(list, "a").last_error)
  end)

  it("stops another list's runaway check run from inside a check", function()
    local c = ticking(0.001)
    local inner = lists.with_clock({ "x" }, c, { timeout = 0.05,
      check = interpreted(function() while true do end end) })
    local outer = lists.with_clock({ "a" }, c, { timeout = 100, check = function()
      inner:step()
      upstream.sleep(1) -- still the outer check's own sleep
      return true
    end })
    outer:run(2)
    assert.equal("health check timed out", status_of(inner, "x").last_error)
    assert.equal(2, outer:score("a"))
    assert.is_nil(status_of(outer, "a").last_error)
  end)

  it("keeps a clock that shuts the list down when read past the deadline", function()
    local c = { t = 0 }
    local list
    c.clock = function()
      c.t = c.t + 0.001
      if c.t > 0.03 and list then list:shutdown() end
      return c.t
    end
    list = upstream.new({ "a", "b" }, { clock = c.clock, timeout = 0.05,
      check = interpreted(function() while true do end end) })
    list:step()
    collectgarbage(); collectgarbage()
    assert.is_nil(list:step())
    assert.equal(2, #list:status())
  end)

  it("is set only while the check runs", function()
    local c = util.fake_clock(0)
    local co, inside
    local list = lists.with_clock({ "a" }, c, { check = function()
      co = coroutine.running()
      inside = debug.gethook(co) ~= nil or debug.gethook() ~= nil
      coroutine.yield()
      return true
    end })
    list:step()
    assert.is_true(inside)
    assert.equal("suspended", coroutine.status(co))
    assert.is_nil(debug.gethook(co))
    assert.is_nil(debug.gethook())
  end)
end)

describe("upstream.sleep", function()
  it("with a huge value wakes the check at its deadline, where it times out", function()
    local c = util.fake_clock(0)
    local list = lists.with_clock({ "a" }, c, { timeout = 0.25, check = function()
      upstream.sleep(1e300)
      return true
    end })
    assert.equal(0.25, list:step())
    c.t = 0.25
    list:step()
    assert.equal("health check timed out", status_of(list, "a").last_error)
  end)

  it("raises on the main thread", function()
    expect_error(function() upstream.sleep(0) end, "upstream.sleep: not inside a health check")
  end)

  it("raises in a to-be-closed variable's __close when a check is closed (5.4)", function()
    if not util.TBC then return end
    local c = util.fake_clock(0)
    local err
    local list = lists.with_clock({ "a" }, c, { timeout = 0.1, check = util.closing(function()
      return setmetatable({}, { __close = function()
        err = select(2, pcall(upstream.sleep, 1))
      end })
    end, function() coroutine.yield() return true end) })
    list:step()
    c.t = 0.1
    list:step()
    assert.is_truthy(tostring(err):find("not inside a health check", 1, true))
  end)
end)

describe("check errors that are not strings", function()
  local function last_error_of(fn)
    local list = lists.new({ "a" }, { check = fn })
    list:step()
    return status_of(list, "a").last_error
  end

  it("an object whose __tostring raises is named by its type", function()
    local e = setmetatable({}, { __tostring = function() error("broken") end })
    assert.equal("health check raised a table value", last_error_of(function() error(e) end))
  end)

  it("an object whose __tostring gives no string is named by its type", function()
    local e = setmetatable({}, { __tostring = function() return 42 end })
    assert.equal("health check raised a table value", last_error_of(function() error(e) end))
  end)

  it("a returned error object with __tostring is reported by it", function()
    local e = setmetatable({}, { __tostring = function() return "returned object" end })
    assert.equal("returned object", last_error_of(function() return nil, e end))
  end)

  it("report() takes an error object with __tostring by its string", function()
    local list = lists.new({ "a" }, { check = function() end })
    local job = list:due()[1]
    assert.is_true(list:report(job, false, setmetatable({}, { __tostring = function() return "from host" end })))
    assert.equal("from host", status_of(list, "a").last_error)
  end)
end)

describe("report()", function()
  -- a list driven by due()/report() on a fake clock
  local function hosted(backends, opts)
    return lists.new(backends, util.merge({ check = function() end, interval = 1 }, opts))
  end

  it("refuses a hand-made job without claiming the list", function()
    local list = lists.new({ "a" }, { check = function() return true end })
    expect_error(function() list:report({ slot = 0, gen = 1 }, true) end,
      "bad argument", "to 'report'", "not a job from this list's due()")
    assert.equal(1, list:step()) -- step() may still drive it
  end)

  it("refuses a job whose list was changed", function()
    local list, other = hosted({ "a" }), hosted({ "a" })
    local job = list:due()[1]
    job.list = other
    expect_error(function() list:report(job, true) end, "not a job from this list's due()")
    job.list = list
    assert.is_true(list:report(job, true))
  end)

  it("gives each job its list", function()
    local list = hosted({ "a" })
    assert.is_true(rawequal(list, list:due()[1].list))
  end)

  it("clears last_error on a success", function()
    local list, c = hosted({ "a" })
    assert.is_true(list:report(list:due()[1], false, "boom"))
    assert.equal("boom", status_of(list, "a").last_error)
    assert.equal(0, list:score("a"))
    c.t = 1
    assert.is_true(list:report(list:due()[1], true))
    assert.is_nil(status_of(list, "a").last_error)
    assert.equal(1, list:score("a"))
  end)

  it("applies its tier argument, clamped into the list's tiers", function()
    local list, c = hosted({ "a", "b" }, { tiers = { min = 1, init = 2, max = 4 } })
    local function report_a(ok, err, tier)
      for _, job in ipairs(list:due()) do
        if job.backend == "a" then assert.is_true(list:report(job, ok, err, tier))
        else assert.is_true(list:report(job, true)) end
      end
      c.t = c.t + 1
      return status_of(list, "a").tier
    end
    assert.equal(3, report_a(true, nil, 3))
    assert.equal(4, report_a(true, nil, 9))   -- above max
    assert.equal(1, report_a(true, nil, -5))  -- below min
    assert.equal(2, report_a(true, nil, 2.7)) -- a fraction: its integer part
    assert.equal(2, report_a(true))           -- none: kept
    assert.equal(3, report_a(false, "x", 3))  -- a failure may set it too
    assert.equal(4, report_a(true, nil, math.huge))
    assert.equal(2, status_of(list, "b").tier)
  end)

  it("sets the tier from the latency with tier_by_latency, on the list's clock at report()", function()
    local list, c = hosted({ "a" }, { tier_by_latency = true, timeout = 2 })
    local function check_taking(secs)
      local job = list:due()[1]
      local t0 = c.t
      c.t = t0 + secs
      assert.is_true(list:report(job, true, nil, 0)) -- the number is ignored
      c.t = t0 + math.max(1, secs) -- the next start
      return status_of(list, "a").tier
    end
    assert.equal(3, check_taking(0.05))
    assert.equal(0, check_taking(0.00005))
    assert.equal(4, check_taking(0.5))
    assert.equal(5, check_taking(1.5))
    assert.equal(1, check_taking(0.0005))
    -- a failure keeps the tier
    local job = list:due()[1]
    c.t = c.t + 0.05
    assert.is_true(list:report(job, false, "down"))
    assert.equal(1, status_of(list, "a").tier)
  end)
end)

describe("the first round", function()
  -- the times of the first checks, read off due() at each next_due()
  local function first_starts(n, opts)
    local backends = {}
    for i = 1, n do backends[i] = "b" .. i end
    local list, c = lists.new(backends, util.merge({ check = function() end, interval = 1, timeout = 0.5 }, opts))
    local at = {}
    for _ = 1, 10 * n do
      for _, job in ipairs(list:due()) do
        if at[job.backend] == nil then at[job.backend] = c.t end
      end
      local nd = list:next_due()
      local all = true
      for _, b in ipairs(backends) do if at[b] == nil then all = false end end
      if all or nd == nil then break end
      c.t = c.t + nd
    end
    return at, backends
  end

  it("with jitter 0.5 spreads the first checks over [0, interval), not all at 0", function()
    local at, backends = first_starts(16, { jitter = 0.5, seed = 11 })
    local at0, late, distinct, seen = 0, 0, 0, {}
    for _, b in ipairs(backends) do
      local t = at[b]
      assert(t ~= nil, b .. " never started")
      assert(t >= 0 and t < 1, b .. " first at " .. t)
      if t == 0 then at0 = at0 + 1 end
      if t >= 0.5 then late = late + 1 end
      if not seen[t] then seen[t] = true; distinct = distinct + 1 end
    end
    assert.is_true(at0 < 16, "every first check at 0")
    assert.equal(16, distinct)
    -- over the whole interval, not jitter x interval
    assert.is_true(late > 0, "no first check in [0.5, 1)")
  end)

  it("without jitter starts every first check at 0", function()
    local at, backends = first_starts(4, {})
    for _, b in ipairs(backends) do assert.equal(0, at[b]) end
  end)
end)

describe("a check's tier", function()
  it("moves every duplicate member of the backend, and only those", function()
    local c = util.fake_clock(0)
    local calls = 0
    local list = lists.with_clock({ "a", "b", "a", "c", "a" }, c, {
      tiers = { min = 0, init = 1, max = 5 },
      check = function(b)
        if b ~= "a" then return true end
        calls = calls + 1
        if calls == 1 then return 4 end -- one member's check sets the tier,
        return true                      -- the others' keep it
      end })
    list:step()
    assert.equal(3, calls)
    local tiers = {}
    for i, s in ipairs(list:status()) do tiers[i] = s.tier end
    assert.are.same({ 4, 1, 4, 1, 4 }, tiers)
    local scores = {}
    for i, s in ipairs(list:status()) do scores[i] = s.score end
    -- each member runs its own check, and each result moves all three "a"
    assert.are.same({ 3, 2, 3, 2, 3 }, scores)
  end)
end)
