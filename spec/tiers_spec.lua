-- Tiers: a check may return the backend's tier; pick takes only the lowest
-- tier that has a healthy member. Includes the Go package's TestBalancing,
-- replayed step by step on a fake clock, and tier_by_latency.
local upstream = require "upstream"
local util = require "spec.support.util"
local stats = require "spec.support.stats"
local lists = require "spec.support.lists"

local expect_error = util.expect_error
local NaN = util.NaN
local NONE, STRATEGIES = util.NONE, util.STRATEGIES

local function tier_of(list, b)
  local s = util.status_of(list, b)
  return s and s.tier
end

local function tiers_of(list)
  local out = {}
  for i, s in ipairs(list:status()) do out[i] = s.tier end
  return out
end

local function sorted(arr)
  local out = {}
  for i = 1, #arr do out[i] = arr[i] end
  table.sort(out)
  return out
end

-- a list whose check returns what ctl[backend] says: { tier = n } returns n
-- (success), { err = e, tier = n } returns nil, e, n; {} returns true.
-- calls[backend] counts the checks (Go's `called`).
local function controlled(backends, ctl, opts)
  local calls = {}
  local list, c = lists.new(backends, util.merge(opts, { check = function(b)
    calls[b] = (calls[b] or 0) + 1
    local r = ctl[b]
    if r.err then return nil, r.err, r.tier end
    if r.tier ~= nil then return r.tier end
    return true
  end }))
  return list, c, calls
end

describe("tiers option", function()
  local function new_t(t)
    return function() return upstream.new({ "a" }, { tiers = t }) end
  end

  for _, case in ipairs({
    { "min < 0", { min = -1, max = 5, init = 0 } },
    { "max > 10", { min = 0, max = 11, init = 0 } },
    { "init > 10", { min = 0, max = 10, init = 11 } },
    { "min > max", { min = 3, max = 2, init = 2 } },
    { "init < min", { min = 2, max = 5, init = 1 } },
    { "init > max", { min = 0, max = 5, init = 6 } },
    { "a fractional min", { min = 0.5, max = 5, init = 1 } },
    { "a fractional init", { min = 0, max = 5, init = 1.5 } },
    { "a NaN max", { min = 0, max = NaN, init = 0 } },
    { "a string max", { min = 0, max = "5", init = 0 } },
    { "a number", 5 },
    { "a string", "0-5" },
  }) do
    it("rejects " .. case[1], function()
      expect_error(new_t(case[2]), "tiers")
    end)
  end

  it("accepts the edges and starts every member at init", function()
    local list = upstream.new({ "a", "b", "a" }, { tiers = { min = 0, max = 10, init = 10 } })
    assert.are.same({ 10, 10, 10 }, tiers_of(list))
    list = upstream.new({ "a", "b" }, { tiers = { min = 3, max = 3, init = 3 } })
    assert.are.same({ 3, 3 }, tiers_of(list))
    list = upstream.new({ "a", "b" }, { tiers = { min = 0, max = 5, init = 1 } })
    assert.are.same({ 1, 1 }, tiers_of(list))
    list:reconcile({ "b", "c" })
    assert.are.same({ 1, 1 }, tiers_of(list))
  end)
end)

describe("tiers from checks", function()
  local T = { min = 0, max = 5, init = 1 }

  it("a number from a check is a success and sets the tier", function()
    local ctl = { a = { tier = 3 }, b = {} }
    local list = controlled({ "a", "b" }, ctl, { tiers = T })
    list:step()
    local a = util.status_of(list, "a")
    assert.are.equal(3, a.tier)
    assert.are.equal(2, a.score)
    assert.are.equal(1, a.checks)
    assert.are.equal(0, a.failures)
    assert.is_nil(a.last_error)
    assert.are.equal(1, tier_of(list, "b")) -- true: tier kept
    assert.are.equal(2, list:score("b"))
  end)

  it("returning 0 sets tier 0", function()
    local ctl = { a = { tier = 0 } }
    local list = controlled({ "a" }, ctl, { tiers = T })
    list:step()
    assert.are.equal(0, tier_of(list, "a"))
    assert.are.equal(2, list:score("a"))
  end)

  it("a failing check may set the tier with nil, err, tier", function()
    local ctl = { a = { err = "bad", tier = 4 }, b = { err = "worse" } }
    local list, c = controlled({ "a", "b" }, ctl, { tiers = T })
    list:step()
    local a, b = util.status_of(list, "a"), util.status_of(list, "b")
    assert.are.equal(4, a.tier)
    assert.are.equal(0, a.score)
    assert.are.equal("bad", a.last_error)
    assert.are.equal(1, a.failures)
    assert.are.equal(1, b.tier) -- no tier given: kept
    assert.are.equal(0, b.score)
    assert.are.equal("worse", b.last_error)
    ctl.a = {}
    c.t = 1
    list:step()
    assert.are.equal(4, tier_of(list, "a")) -- a success without a number keeps it
    assert.are.equal(1, list:score("a"))
  end)

  it("clamps the tier into [min, max]", function()
    local ctl = {
      hi = { tier = 7 }, lo = { tier = 0 }, ferr = { err = "x", tier = 9 }, ferr0 = { err = "y", tier = 0 },
    }
    local list = controlled({ "hi", "lo", "ferr", "ferr0" }, ctl, { tiers = { min = 1, max = 3, init = 2 } })
    assert.are.same({ 2, 2, 2, 2 }, tiers_of(list))
    list:step()
    assert.are.same({ 3, 1, 3, 1 }, tiers_of(list))
  end)

  -- the contract: any number is clamped into [min, max]; Go's convention
  -- that -1 means "keep the tier" is nil (or plain true) here
  it("clamps a negative tier to min", function()
    local ctl = { neg = { tier = -1 }, neg2 = { tier = -3 }, ferr = { err = "x", tier = -1 } }
    local list = controlled({ "neg", "neg2", "ferr" }, ctl, { tiers = { min = 1, max = 3, init = 2 } })
    list:step()
    assert.are.same({ 1, 1, 1 }, tiers_of(list))
  end)

  it("up() and down() leave the tier alone", function()
    local ctl = { a = { tier = 4 } }
    local list = controlled({ "a" }, ctl, { tiers = T })
    list:step()
    list:down("a"); list:down("a"); list:down("a")
    assert.are.equal(4, tier_of(list, "a"))
    list:up("a")
    assert.are.equal(4, tier_of(list, "a"))
  end)

  it("without tiers a number is just a success and every member is tier 0", function()
    local ctl = { a = { tier = 3 }, b = { tier = 0 }, c = { tier = -2 } }
    local list = controlled({ "a", "b", "c" }, ctl)
    list:step()
    for _, s in ipairs(list:status()) do
      assert.are.equal(0, s.tier)
      assert.are.equal(2, s.score)
      assert.is_nil(s.last_error)
    end
    assert.are.same({ "a", "b", "c", "a" }, stats.picks(list, 4))
  end)

  it("round robin within the lowest tier that has a healthy member", function()
    local ctl = { a = { tier = 2 }, b = { tier = 1 }, c = { tier = 2 }, d = { tier = 1 } }
    local list = controlled({ "a", "b", "c", "d" }, ctl, { tiers = T })
    list:step()
    assert.are.same({ "b", "d", "b", "d" }, stats.picks(list, 4))
    list:down("d"); list:down("d"); list:down("d") -- 2 -> -1
    assert.are.same({ "b", "b" }, stats.picks(list, 2))
    list:down("b"); list:down("b"); list:down("b")
    assert.are.same({ "a", "c" }, sorted(stats.picks(list, 2)))
    list:down("a"); list:down("a"); list:down("a")
    list:down("c"); list:down("c"); list:down("c")
    local b, err = list:pick()
    assert.is_nil(b)
    assert.are.equal(NONE, err)
    list:up("c")
    assert.are.same({ "c", "c" }, stats.picks(list, 2))
  end)

  it("every strategy picks only from the lowest tier with a healthy member", function()
    for _, s in ipairs(STRATEGIES) do
      local ctl = { a = { tier = 2 }, b = { tier = 1 }, c = { tier = 1 }, d = { tier = 3 } }
      local list = controlled({ "a", "b", "c", "d" }, ctl, { tiers = T, strategy = s, seed = 9 })
      list:step()
      local seen = {}
      for i = 1, 300 do seen[#seen + 1] = list:pick("key" .. i) end
      assert.are.same({ "b", "c" }, stats.set(seen), s)
      list:down("b"); list:down("b"); list:down("b")
      list:down("c"); list:down("c"); list:down("c")
      seen = {}
      for i = 1, 50 do seen[#seen + 1] = list:pick("key" .. i) end
      assert.are.same({ "a" }, stats.set(seen), s)
    end
  end)
end)

describe("Go TestBalancing, replayed", function()
  it("follows the Go expectations step by step", function()
    local ctl = {}
    -- Go's SetBackend(name, tier, err): tier -1 (keep the tier) is nil here
    local function set(name, tier, err)
      ctl[name] = { tier = tier, err = err }
      return name
    end
    local I = 1 / 1024 -- a small interval, exact in binary
    local list, c, calls = controlled({ set("one", 1), set("two", 1), set("three", 1) }, ctl, {
      low_score = -3, high_score = 3, initial_score = 1,
      fail_delta = -1, success_delta = 1,
      interval = I, timeout = 3600,
      tiers = { min = 0, max = 5, init = 1 },
    })
    local function step()
      c.t = c.t + I
      list:step()
    end
    -- Go's waitForUpdate(backend, k): until its check count grew by k
    local function wait(name, k)
      local target = (calls[name] or 0) + k
      for _ = 1, 100 do
        if (calls[name] or 0) >= target then return end
        step()
      end
      error("waitForUpdate(" .. name .. ", " .. k .. "): " .. tostring(calls[name]) .. " checks")
    end
    local function always(want, what)
      for i = 1, 100 do
        local b, err = list:pick()
        assert.are.equal(want, b, what .. ", pick " .. i)
        assert.is_nil(err)
      end
    end
    local function seen(want, what)
      local got = {}
      for i = 1, 100 do
        local b, err = list:pick()
        assert.is_nil(err, what .. ", pick " .. i)
        got[i] = b
      end
      assert.are.same(sorted(want), stats.set(got), what)
    end

    assert.are.same({ 1, 1, 1 }, tiers_of(list))

    wait(set("one", 0), 1)
    assert.are.same({ 0, 1, 1 }, tiers_of(list))
    always("one", "one moved to tier 0")

    wait(set("one", 2), 1)
    seen({ "two", "three" }, "one moved to tier 2")

    wait(set("two", nil, "fail"), 4) -- score 3 -> -1
    assert.is_true(list:score("two") < 0)
    assert.are.equal(1, tier_of(list, "two")) -- a failure without a tier keeps it
    always("three", "two failed 4 times")

    wait(set("three", nil, "fail"), 4)
    always("one", "three failed 4 times")

    wait(set("one", nil, "fail"), 4)
    local b, err = list:pick()
    assert.is_nil(b)
    assert.are.equal(NONE, err)

    wait(set("two", nil, nil), 4) -- score -3 -> 1
    always("two", "two succeeded 4 times")

    wait(set("three", nil, nil), 4)
    seen({ "two", "three" }, "three succeeded 4 times")

    -- Go waits for 0 updates here, which races in Go; one check makes it certain
    wait(set("three", 0, nil), 1)
    always("three", "three moved to tier 0")

    wait(set("one", nil, nil), 4)
    assert.is_true(list:score("one") >= 0)
    assert.are.equal(2, tier_of(list, "one"))
    always("three", "one succeeded 4 times, still in tier 2")

    wait(set("one", 0, nil), 1)
    seen({ "one", "three" }, "one moved to tier 0")

    wait(set("two", 0, nil), 1)
    seen({ "one", "two", "three" }, "two moved to tier 0")

    list:reconcile({ "one", "two", set("four", 1, nil) })
    assert.are.equal(1, tier_of(list, "four")) -- init tier until checked
    assert.is_nil(tier_of(list, "three"))
    seen({ "one", "two" }, "reconciled to one, two, four")

    wait(set("one", 1, nil), 1)
    wait(set("two", 1, nil), 1)
    seen({ "one", "two", "four" }, "one and two moved to tier 1")

    list:reconcile({ "one", set("five", 0, nil), set("six", 0, nil) })
    assert.are.same({ 1, 1, 1 }, tiers_of(list)) -- five, six at init until checked
    seen({ "one", "five", "six" }, "reconciled to one, five, six")

    wait(set("one", 2, nil), 1)
    -- not in Go: five and six were checked in that step too and are tier 0 now
    assert.are.same({ 2, 0, 0 }, tiers_of(list))
    seen({ "five", "six" }, "five and six checked")

    list:reconcile({ "one", set("seven", 1, nil), set("eight", 1, nil) })
    seen({ "seven", "eight" }, "reconciled to one, seven, eight")
    list:shutdown()
  end)
end)

describe("tier_by_latency", function()
  -- steps the list through its events up to t_end (bounded)
  local function drive(list, c, t_end)
    for _ = 1, 1000 do
      local dt = list:step()
      if dt == nil or c.t + dt > t_end then
        c.t = t_end
        list:step()
        return
      end
      c.t = c.t + dt
    end
    error("drive: too many steps")
  end

  local ORDER = { "z", "t0", "t1", "t2", "t3", "t4", "t5" }
  local function latency_list(durations, extra)
    return lists.new(ORDER, util.merge({
      interval = 100, timeout = 10, tier_by_latency = true,
      check = function(b)
        local d = durations[b]
        if d > 0 then upstream.sleep(d) end
        return true
      end,
    }, extra))
  end

  it("derives the tier from the check's duration on the list's clock", function()
    local durations = { z = 0, t0 = 0.00005, t1 = 0.0005, t2 = 0.005, t3 = 0.05, t4 = 0.5, t5 = 2 }
    local list, c = latency_list(durations)
    assert.are.same({ 0, 0, 0, 0, 0, 0, 0 }, tiers_of(list)) -- implied tiers {0, 5, init 0}
    drive(list, c, 50)
    for _, s in ipairs(list:status()) do
      assert.are.equal(1, s.checks, s.backend)
      assert.are.equal(0, s.failures, s.backend)
    end
    assert.are.same({ 0, 0, 1, 2, 3, 4, 5 }, tiers_of(list))
    assert.are.same({ "t0", "z" }, stats.set(stats.picks(list, 10)))
    -- the next round: t5 got fast, t0 and z slow
    durations.t5, durations.t0, durations.z = 0.00001, 2, 0.3
    drive(list, c, 150)
    assert.are.same({ 4, 5, 1, 2, 3, 4, 0 }, tiers_of(list))
    assert.are.same({ "t5", "t5", "t5" }, stats.picks(list, 3))
  end)

  it("clamps into the given tiers", function()
    local durations = { z = 0, t0 = 0.00005, t1 = 0.0005, t2 = 0.005, t3 = 0.05, t4 = 0.5, t5 = 2 }
    local list, c = latency_list(durations, { tiers = { min = 1, max = 4, init = 2 } })
    assert.are.same({ 2, 2, 2, 2, 2, 2, 2 }, tiers_of(list))
    drive(list, c, 50)
    assert.are.same({ 1, 1, 1, 2, 3, 4, 4 }, tiers_of(list))
  end)
end)
