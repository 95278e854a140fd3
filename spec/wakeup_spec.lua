-- Coalesced wake-ups (issue 9, item 7): run() and wait_initial() sleep
-- until the latest event within the slack of the first one, so that
-- checks due close together share one wake-up. The slack is
-- min(10 ms, interval / 100), and with jitter at least min(100 ms,
-- interval x jitter / 5), a tenth of the window jitter spreads a start
-- over; no check starts later than that after it was due, and a running
-- check's wake-up (upstream.sleep) and deadline are served on time.
-- Everything runs on a fake clock that counts the sleeps.
local upstream = require "upstream"
local util = require "spec.support.util"

local function names(n)
  local t = {}
  for i = 1, n do t[i] = "b" .. i end
  return t
end

-- A list on a fake clock whose check records each start: starts[b] is the
-- list of clock readings at which b's checks began.
local function recorded(bs, opts)
  local c = util.fake_clock(0)
  local starts = {}
  opts = util.merge({
    clock = c.clock, sleep = c.sleep,
    check = function(b)
      local t = starts[b] or {}
      starts[b] = t
      t[#t + 1] = c.t
      return true
    end,
  }, opts or {})
  return upstream.new(bs, opts), c, starts
end

local EPS = 1e-9

describe("coalesced wake-ups", function()
  it("checks due within the slack share one wake-up; none starts later than the slack", function()
    local n, secs = 2000, 5
    local list, c, starts = recorded(names(n), { interval = 1, timeout = 0.5, jitter = 0.5 })
    list:run(secs)
    -- about 2000 distinct start times a second; with jitter 0.5 the slack
    -- is 100 ms: about 10 wake-ups a second (it was 100 with 10 ms)
    assert.is_true(#c.slept <= secs * 12, #c.slept .. " sleeps")
    local checks = 0
    for _, b in ipairs(names(n)) do
      local t = starts[b]
      assert.is_true(#t >= 3, b)
      for k = 2, #t do
        -- the next start is due interval x (1 +- jitter) after this one
        local gap = t[k] - t[k - 1]
        assert.is_true(gap >= 0.5 - EPS and gap <= 1.5 + 0.1 + EPS, b .. " gap " .. gap)
      end
      checks = checks + #t
    end
    assert.is_true(checks > n * secs / 1.5)
  end)

  it("the slack is min(10 ms, interval / 100): a check alone starts on time", function()
    -- a at 0, b 3 ms later, c 20 ms later (by reconcile), jitter 0: b's
    -- start is within a's slack and takes a along; c's is not
    local list, c, starts = recorded({ "a" }, { interval = 1, timeout = 0.5 })
    list:step()
    c.t = 0.003
    list:reconcile({ "a", "b" })
    list:step()
    c.t = 0.02
    list:reconcile({ "a", "b", "c" })
    list:step()
    list:run(3.5)
    assert.are.same({ 0, 1.003, 2.003, 3.003 }, starts.a)
    assert.are.same({ 0.003, 1.003, 2.003, 3.003 }, starts.b)
    assert.are.same({ 0.02, 1.02, 2.02, 3.02 }, starts.c)
    -- interval 0.1: slack 1 ms; 3 ms apart is too far
    list, c, starts = recorded({ "a" }, { interval = 0.1, timeout = 0.05 })
    list:step()
    c.t = 0.003
    list:reconcile({ "a", "b" })
    list:step()
    list:run(0.25)
    for k, t in ipairs(starts.a) do assert.is_true(math.abs(t - 0.1 * (k - 1)) < EPS, "a " .. t) end
    for k, t in ipairs(starts.b) do
      assert.is_true(math.abs(t - (0.003 + 0.1 * (k - 1))) < EPS, "b " .. t)
    end
  end)

  it("a check's own wake-up and its deadline are served on time", function()
    local c = util.fake_clock(0)
    local woke, timed = {}, {}
    local list = upstream.new({ "s", "t", "x1", "x2", "x3" }, {
      clock = c.clock, sleep = c.sleep, interval = 1, timeout = 0.004, jitter = 0,
      check = function(b)
        if b == "s" then
          local t0 = c.t
          upstream.sleep(0.002)
          woke[#woke + 1] = c.t - t0
        elseif b == "t" then
          upstream.sleep(1) -- past its deadline: closed at it
        end
        return true
      end,
    })
    list:step() -- everyone starts at 0
    c.t = 0.001
    list:reconcile({ "s", "t", "x1", "x2", "x3", "late" }) -- a start due at 0.001
    list:run(0.5)
    assert.equal(1, #woke)
    assert.is_true(math.abs(woke[1] - 0.002) < EPS, tostring(woke[1]))
    local st = util.status_of(list, "t")
    assert.equal(1, st.failures)
    -- the timeout came at 0.004 sharp: one sleep ends there
    for _, s in ipairs(c.slept) do timed[#timed + 1] = s end
    local t, at4 = 0.001, false
    for _, s in ipairs(timed) do
      t = t + s
      if math.abs(t - 0.004) < EPS then at4 = true end
    end
    assert.is_true(at4)
  end)

  it("wait_initial coalesces too", function()
    local n = 2000
    local list, c = recorded(names(n), { interval = 1, timeout = 0.5, jitter = 0.5 })
    assert.is_true(list:wait_initial(5))
    -- the first round is spread over one interval: 10 wake-ups of 100 ms
    assert.is_true(#c.slept <= 12, #c.slept .. " sleeps")
  end)
end)
