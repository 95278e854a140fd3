-- The Go seed's own tests, ported (see /work/shared/seed/README.md).
-- Every list uses a fake clock; nothing ever sleeps for real.
local upstream = require "upstream"
local util = require "spec.support.util"
local lists = require "spec.support.lists"
local stats = require "spec.support.stats"

local NONE = util.NONE

local SEED_SCORES = {
  low_score = -3, high_score = 3, initial_score = 1,
  fail_delta = -1, success_delta = 1,
}

local picks = stats.picks

local function times(n, f, b)
  for _ = 1, n do f(b) end
end

describe("seed", function()
  it("(1) empty list: pick -> nil, 'no upstreams available'", function()
    local c = util.fake_clock()
    local list = lists.with_clock({}, c)
    local b, err = list:pick()
    assert.is_nil(b)
    assert.are.equal(NONE, err)
    -- and again: still nothing, position untouched
    b, err = list:pick()
    assert.is_nil(b)
    assert.are.equal(NONE, err)
    assert.are.equal(0, #list)
    assert.is_nil(list:step())
    list:shutdown()
  end)

  it("(2) round robin with defaults: one, two, three, one", function()
    local c = util.fake_clock()
    local list = lists.with_clock({ "one", "two", "three" }, c)
    assert.are.same({ "one", "two", "three", "one" }, picks(list, 4))
    list:shutdown()
  end)

  it("(3) down/up sequence", function()
    local c = util.fake_clock()
    local list = lists.with_clock({ "one", "two", "three" }, c, SEED_SCORES)
    local down = function(b) list:down(b) end
    local up = function(b) list:up(b) end

    assert.are.equal("one", list:pick())
    times(2, down, "two")
    down("three")
    assert.are.equal(1, list:score("one"))
    assert.are.equal(-1, list:score("two"))
    assert.are.equal(0, list:score("three"))
    assert.are.same({ "three", "one", "three" }, picks(list, 3))

    down("three")
    times(5, up, "two")
    assert.are.equal(-1, list:score("three"))
    assert.are.equal(3, list:score("two")) -- capped at high
    assert.are.same({ "one", "two", "one" }, picks(list, 3))

    times(4, down, "two")
    assert.are.equal(-1, list:score("two"))
    assert.are.equal("one", list:pick())

    times(3, down, "two")
    assert.are.equal(-3, list:score("two")) -- floored at low
    assert.are.equal("one", list:pick())

    times(3, up, "two")
    assert.are.equal(0, list:score("two")) -- exactly 0 is healthy
    assert.are.equal("two", list:pick())
    list:shutdown()
  end)

  it("(4) health checks: only 'success' is picked after a few rounds", function()
    local c = util.fake_clock()
    local calls = {}
    local list = lists.with_clock({ "success", "fail", "timeout" }, c, {
      low_score = -1, high_score = 1, initial_score = 1,
      interval = 0.01, timeout = 0.001,
      check = function(b)
        calls[b] = (calls[b] or 0) + 1
        if b == "success" then return true end
        if b == "fail" then return nil, "failed" end
        while true do upstream.sleep(1) end
      end,
    })
    for i = 1, 200 do
      list:step()
      c.t = i * 0.0005
    end
    list:step()
    for i = 1, 10 do
      assert.are.equal("success", list:pick(), "pick #" .. i)
    end
    assert.are.equal(1, list:score("success"))
    assert.are.equal(-1, list:score("fail"))
    assert.are.equal(-1, list:score("timeout"))

    local st = list:status()
    assert.are.equal(3, #st)
    assert.are.same({ "success", "fail", "timeout" }, { st[1].backend, st[2].backend, st[3].backend })
    assert.is_nil(st[1].last_error)
    assert.are.equal("failed", st[2].last_error)
    assert.are.equal("health check timed out", st[3].last_error)
    assert.is_true(st[1].healthy)
    assert.is_false(st[2].healthy)
    assert.is_false(st[3].healthy)
    assert.are.equal(0, st[1].failures)
    for i = 1, 3 do
      -- about 0.1 s / 0.01 s interval = 10 rounds
      assert.is_true(st[i].checks >= 9 and st[i].checks <= 11,
        st[i].backend .. " checks: " .. tostring(st[i].checks))
      assert.is_true(calls[st[i].backend] >= st[i].checks)
    end
    assert.are.equal(st[2].checks, st[2].failures)
    assert.are.equal(st[3].checks, st[3].failures)
    list:shutdown()
  end)

  it("(5) reconcile sequence", function()
    local c = util.fake_clock()
    local list = lists.with_clock({ "one", "two", "three" }, c, SEED_SCORES)
    assert.are.equal("one", list:pick())

    list:reconcile({ "one", "two", "three" })
    assert.are.equal("two", list:pick())

    list:reconcile({ "one", "two", "four" })
    assert.are.equal(3, #list)
    assert.is_nil(list:score("three"))
    assert.are.equal(1, list:score("four"))
    assert.are.equal("four", list:pick())

    list:reconcile({ "five", "six", "four" })
    -- survivors first (four), then new ones in given order
    local order = {}
    for i, s in ipairs(list:status()) do order[i] = s.backend end
    assert.are.same({ "four", "five", "six" }, order)
    assert.are.same({ "four", "five", "six" }, picks(list, 3))

    for _ = 1, 4 do list:down("four") end
    assert.are.equal(-3, list:score("four"))
    assert.are.same({ "five", "six" }, picks(list, 2))

    list:reconcile({ "five", "six", "four" }) -- no change
    assert.are.equal(-3, list:score("four"))
    assert.are.same({ "five", "six" }, picks(list, 2))

    list:reconcile({})
    assert.are.equal(0, #list)
    local b, err = list:pick()
    assert.is_nil(b)
    assert.are.equal(NONE, err)
    list:shutdown()
  end)

  it("(6) after shutdown nothing of the checker is left running", function()
    local c = util.fake_clock()
    local calls, counter, threads = 0, { closed = 0 }, util.threads()
    local list = lists.with_clock({ "a", "b" }, c, {
      interval = 1, timeout = 10,
      check = util.closing(counter, function()
        calls = calls + 1
        threads.add()
        upstream.sleep(100)
        return true
      end),
    })
    assert.are.equal(0, calls) -- nothing runs before the first step
    local dt = list:step()
    assert.are.equal(2, calls)
    assert.are.equal(0, counter.closed)
    assert.are.equal(10, dt) -- next event: the timeouts at t = 10
    assert.are.equal(2, threads.live())

    list:shutdown()
    -- both sleeping checks were closed (5.4); before 5.4 only dropped
    local closed = util.TBC and 2 or 0
    assert.are.equal(closed, counter.closed)
    assert.are.equal(0, threads.live()) -- and neither is kept
    assert.is_nil(list:step())
    for i = 1, 50 do
      c.t = i
      assert.is_nil(list:step())
    end
    assert.are.equal(2, calls)
    assert.are.equal(closed, counter.closed)
    -- nothing was counted for the cancelled checks
    for _, s in ipairs(list:status()) do
      assert.are.equal(1, s.score)
      assert.are.equal(0, s.checks)
    end
    list:shutdown() -- idempotent
    assert.are.equal(closed, counter.closed)
    assert.is_nil(list:step())
  end)
end)
