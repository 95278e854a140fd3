-- Guards written for mutants that survived the rest of the suite
-- (spec/mutate/mutants.txt; the id of each mutant is named in its test).
-- Fake clocks throughout; nothing sleeps for real.
local upstream = require "upstream"
local addr = require "upstream.nginx.addr"
local util = require "spec.support.util"
local lists = require "spec.support.lists"

local status_of, expect_error = util.status_of, util.expect_error

local function inflights(list)
  local out = {}
  for i, s in ipairs(list:status()) do out[i] = s.inflight end
  return out
end

describe("least_conn release() with duplicate members", function()
  -- list.release_least
  it("ends a pick of the equal member with the most in flight", function()
    local list = upstream.new({ "a", "a", "b" }, { strategy = "least_conn" })
    -- the fewest in flight, ties by round robin: a(1st), a(2nd), b, a(1st)
    assert.are.same({ "a", "a", "b", "a" }, { list:pick(), list:pick(), list:pick(), list:pick() })
    assert.are.same({ 2, 1, 1 }, inflights(list))
    assert.is_true(list:release("a"))
    assert.are.same({ 1, 1, 1 }, inflights(list))
    assert.is_true(list:release("a"))
    assert.are.same({ 0, 1, 1 }, inflights(list))
  end)
end)

describe("the tiers option's own messages", function()
  local function new_t(t)
    return function() return upstream.new({ "a" }, { tiers = t }) end
  end

  -- opt.tiers_above_ten: the binding names the key and its range
  it("a tier above 10 names the key, the range and the value", function()
    expect_error(new_t({ min = 0, max = 11, init = 0 }), "option 'tiers' needs max", "[0, 10]", "(got 11)")
    expect_error(new_t({ min = 0, max = 10, init = 11 }), "option 'tiers' needs init", "(got 11)")
  end)

  -- opt.tiers_order
  it("min <= init <= max broken gives the three values", function()
    expect_error(new_t({ min = 0, max = 5, init = 6 }), "min <= init <= max", "(got min 0, init 6, max 5)")
    expect_error(new_t({ min = 3, max = 2, init = 2 }), "(got min 3, init 2, max 2)")
  end)
end)

describe("reconcile keeps what a kept backend had", function()
  -- rc.errors_lost
  it("its last_error", function()
    local list, c = lists.new({ "a", "b" }, {
      interval = 10,
      check = function(b) if b == "a" then return nil, "boom" end return true end,
    })
    list:step()
    assert.are.equal("boom", status_of(list, "a").last_error)
    c.t = 1
    list:reconcile({ "c", "a" })
    local s = status_of(list, "a")
    assert.are.equal("boom", s.last_error)
    assert.are.equal(1, s.failures)
    assert.is_nil(status_of(list, "b"))
  end)

  -- rc.threads_lost
  it("its running check: a check asleep across reconcile finishes", function()
    local done = 0
    local list, c = lists.new({ "a" }, {
      interval = 100, timeout = 5,
      check = function(b)
        if b == "a" then upstream.sleep(0.5) end
        done = done + 1
        return true
      end,
    })
    list:step() -- a's check starts and sleeps until 0.5
    assert.are.equal(0, status_of(list, "a").checks)
    c.t = 0.1
    list:reconcile({ "a", "b" }) -- b's check runs at once (no sleep)
    c.t = 0.6
    list:step()
    local s = status_of(list, "a")
    assert.are.equal(1, s.checks)
    assert.are.equal(0, s.failures)
    assert.is_nil(s.last_error)
    assert.are.equal(2, done)
  end)
end)

describe("tier_by_latency and failures", function()
  -- res.latency_on_failure
  it("a failed check's duration sets no tier", function()
    local fail = true
    local list, c = lists.new({ "a", "b" }, {
      interval = 10, timeout = 5, tier_by_latency = true,
      check = function(b)
        if b == "a" then
          upstream.sleep(0.05) -- 50 ms: tier 3 on success
          if fail then return false end
        end
        return true
      end,
    })
    list:step()
    c.t = 0.05
    list:step()
    local s = status_of(list, "a")
    assert.are.equal(1, s.failures)
    assert.are.equal(0, s.tier)
    fail = false
    c.t = 10
    list:step()
    c.t = 10.05
    list:step()
    s = status_of(list, "a")
    assert.are.equal(2, s.checks)
    assert.are.equal(1, s.failures)
    assert.are.equal(3, s.tier)
  end)
end)

describe("upstream.nginx.addr: an embedded IPv4 address", function()
  -- addr.v4_in_v6_middle
  for _, b in ipairs({ "[::1.2.3.4:5]:80", "[1:2:3:4:5:1.2.3.4:6]:80", "[1::1.2.3.4:5]:80" }) do
    it(("is the last group only: rejects %q"):format(b), function()
      local p, err = addr.parse_backend(b)
      assert.is_nil(p)
      assert.truthy(err:find("is not an IPv6 address", 1, true), err)
    end)
  end
end)
