-- The low-level check interface for host event loops (the nginx driver):
-- due() hands out jobs, report() takes results, the list applies deadlines.
local upstream = require "upstream"
local util = require "spec.support.util"
local lists = require "spec.support.lists"

-- a list on the fake clock c for due()/report(): the list never calls its check
local function make(backends, c, opts)
  return lists.with_clock(backends, c,
    util.merge({ check = function() error("not called in this mode") end }, opts))
end

describe("due/report", function()
  it("hands out every due check once, with its deadline", function()
    local c = util.fake_clock(10)
    local l = make({ "a", "b" }, c)
    local jobs = l:due()
    assert.equal(2, #jobs)
    assert.equal("a", jobs[1].backend)
    assert.equal("b", jobs[2].backend)
    assert.equal(10.1, jobs[1].deadline)
    assert.is_function(jobs[1].check)
    assert.are_not.equal(jobs[1].gen, jobs[2].gen)
    assert.equal(0, #l:due()) -- running: not handed out again
    assert.equal(10, l:now())
    assert.equal(2, l:checked())
  end)

  it("applies reports once and schedules the next check at start + interval", function()
    local c = util.fake_clock(0)
    local l = make({ "a", "b" }, c)
    local jobs = l:due()
    c.t = 0.05
    assert.is_true(l:report(jobs[1], true))
    assert.is_false(l:report(jobs[1], true)) -- twice: stale
    assert.is_true(l:report(jobs[2], false, "refused"))
    assert.equal(2, l:score("a"))
    assert.equal(0, l:score("b"))
    assert.equal("refused", util.status_of(l, "b").last_error)
    c.t = 0.99
    assert.equal(0, #l:due())
    c.t = 1
    assert.equal(2, #l:due())
  end)

  it("a failure without a message is 'health check failed'", function()
    local c = util.fake_clock(0)
    local l = make({ "a" }, c)
    assert.is_true(l:report(l:due()[1], false))
    assert.equal("health check failed", util.status_of(l, "a").last_error)
  end)

  it("times out an unreported job at its deadline; the late report is refused", function()
    local c = util.fake_clock(0)
    local l = make({ "a" }, c)
    local job = l:due()[1]
    c.t = 0.1
    assert.equal(0, #l:due()) -- the timeout is applied, no new job yet
    local s = util.status_of(l, "a")
    assert.equal("health check timed out", s.last_error)
    assert.equal(1, s.failures)
    assert.equal(0, l:score("a"))
    assert.is_false(l:report(job, true))
    assert.equal(0, l:score("a"))
    c.t = 1
    assert.equal(1, #l:due())
  end)

  it("refuses reports for backends removed by reconcile, and after shutdown", function()
    local c = util.fake_clock(0)
    local l = make({ "a", "b" }, c)
    local jobs = l:due()
    l:reconcile({ "b", "a2" })
    assert.is_false(l:report(jobs[1], false))
    assert.is_true(l:report(jobs[2], false))
    local j2 = l:due()
    assert.equal(1, #j2)
    assert.equal("a2", j2[1].backend)
    l:shutdown()
    assert.is_false(l:report(j2[1], true))
    assert.equal(0, #l:due())
  end)

  it("a job of a healthcheck-method backend has check = false", function()
    local c = util.fake_clock(0)
    local b = { healthcheck = function() return true end }
    local l = upstream.new({ b }, { clock = c.clock })
    local job = l:due()[1]
    assert.equal(b, job.backend)
    assert.is_false(job.check)
  end)

  it("next_due() is the time to the next event, nil when nothing is scheduled", function()
    local c = util.fake_clock(0)
    local l = make({ "a" }, c)
    assert.equal(0, l:next_due())
    local job = l:due()[1]
    assert.equal(0.1, l:next_due()) -- the running check's deadline
    c.t = 0.05
    assert.is_true(l:report(job, true))
    assert.equal(0.95, l:next_due()) -- the next start: 0 + interval
    l:shutdown()
    assert.is_nil(l:next_due())
    assert.is_nil(upstream.new({ "a" }):next_due())
  end)

  it("a passive list has no jobs", function()
    local l = upstream.new({ "a", "b" })
    assert.equal(0, l:checked())
    assert.equal(0, #l:due())
  end)

  it("rejects what is not a job", function()
    local c = util.fake_clock(0)
    local l = make({ "a" }, c)
    util.expect_error(function() l:report({}, true) end, "not a job")
    local job = l:due()[1]
    util.expect_error(function() l:report({ slot = job.slot + 0.5, gen = job.gen }, true) end, "not a job")
    util.expect_error(function() l:report({ slot = job.slot, gen = job.gen + 0.5 }, true) end, "not a job")
    assert.is_true(l:report(job, true))
    util.expect_error(function() l:report("x", true) end, "table expected")
  end)

  it("cannot be mixed with the coroutine scheduler", function()
    local c = util.fake_clock(0)
    local l = make({ "a" }, c)
    l:due()
    util.expect_error(function() l:step() end, "due()/report()")
    local l2 = make({ "a" }, c, { check = function() return true end })
    l2:step()
    util.expect_error(function() l2:due() end, "driven by step()")
  end)
end)

describe("methods on the wrong object", function()
  it("raise a type error naming upstream.list", function()
    local l = upstream.new({ "a" })
    util.expect_error(function() l.pick({}) end, "upstream.list expected")
    util.expect_error(function() l.up(io.stdout, "a") end, "upstream.list expected")
    util.expect_error(function() l.status(nil) end, "upstream.list expected")
  end)
  it("up/down/score with no backend are no-ops", function()
    local l = upstream.new({ "a" })
    l:up(); l:down()
    assert.equal(1, l:score("a"))
    assert.is_nil(l:score())
  end)
end)
