-- The health-check scheduler, driven by a fake clock (never real sleeping).
local upstream = require "upstream"
local util = require "spec.support.util"

local status_of = util.status_of

-- new list with a fake clock c; extra options merged in
local make = require("spec.support.lists").with_clock

-- a check that records (backend, start time) and then runs body(b)
local function recorder(c, log, body)
  return function(b)
    log[#log + 1] = { b = b, t = c.t }
    if body then return body(b) end
    return true
  end
end

local function starts_of(log, b)
  local out = {}
  for _, e in ipairs(log) do
    if rawequal(e.b, b) then out[#out + 1] = e.t end
  end
  return out
end

describe("checks", function()
  local lists
  before_each(function() lists = {} end)
  after_each(function()
    for _, l in ipairs(lists) do l:shutdown() end
  end)
  local function track(l) lists[#lists + 1] = l; return l end

  describe("first round", function()
    it("is due at creation and runs at the first step, not before", function()
      local c, log = util.fake_clock(100), {}
      local list = track(make({ "a", "b" }, c, { check = recorder(c, log) }))
      assert.are.equal(0, #log)
      c.t = 100.25
      local dt = list:step()
      assert.are.same({ { b = "a", t = 100.25 }, { b = "b", t = 100.25 } }, log)
      assert.are.equal(1, dt) -- next at start (100.25) + interval
      for _, s in ipairs(list:status()) do
        assert.are.equal(1, s.checks)
        assert.are.equal(0, s.failures)
        assert.are.equal(2, s.score)
        assert.is_nil(s.last_error)
      end
    end)

    it("step() returns the time to the next deadline", function()
      local c, log = util.fake_clock(0), {}
      local list = track(make({ "a" }, c, { check = recorder(c, log), interval = 2 }))
      assert.are.equal(2, list:step())
      assert.are.equal(1, #log)
      c.t = 0.5
      assert.are.equal(1.5, list:step())
      assert.are.equal(1, #log)
      c.t = 2
      assert.are.equal(2, list:step())
      assert.are.same({ 0, 2 }, starts_of(log, "a"))
      c.t = 7 -- long overdue: one check at once, next at start + interval
      assert.are.equal(2, list:step())
      assert.are.same({ 0, 2, 7 }, starts_of(log, "a"))
    end)

    it("step() returns the nearer of wake-up and timeout of a running check", function()
      local c = util.fake_clock(0)
      local list = track(make({ "a" }, c, {
        interval = 1, timeout = 0.75,
        check = function() upstream.sleep(0.25); upstream.sleep(10); return true end,
      }))
      assert.are.equal(0.25, list:step()) -- wake at 0.25
      c.t = 0.25
      assert.are.equal(0.5, list:step())  -- now sleeping 10: timeout at 0.75 first
      c.t = 0.75
      assert.are.equal(0.25, list:step()) -- timed out; next start at 1
      assert.are.equal("health check timed out", status_of(list, "a").last_error)
    end)
  end)

  describe("timers", function()
    it("one slow backend never delays the others", function()
      local c, log = util.fake_clock(0), {}
      local list = track(make({ "slow", "fast" }, c, {
        interval = 1, timeout = 0.5,
        check = recorder(c, log, function(b)
          if b == "slow" then while true do upstream.sleep(100) end end
          return true
        end),
      }))
      for i = 0, 16 do
        c.t = i * 0.25
        list:step()
      end
      assert.are.same({ 0, 1, 2, 3, 4 }, starts_of(log, "fast"))
      assert.are.same({ 0, 1, 2, 3, 4 }, starts_of(log, "slow"))
      local fast, slow = status_of(list, "fast"), status_of(list, "slow")
      assert.are.equal(5, fast.checks)
      assert.are.equal(0, fast.failures)
      assert.are.equal(3, fast.score)
      assert.are.equal(4, slow.checks) -- timeouts at .5, 1.5, 2.5, 3.5; the 5th runs
      assert.are.equal(4, slow.failures)
      assert.are.equal(-3, slow.score)
      assert.are.equal("fast", list:pick())
      assert.are.equal("fast", list:pick())
    end)

    it("a backend's next check is due at start + interval, not at completion + interval", function()
      local c, log = util.fake_clock(0), {}
      local list = track(make({ "a", "b" }, c, {
        interval = 1, timeout = 0.75,
        check = recorder(c, log, function(b)
          if b == "a" then upstream.sleep(0.5) end
          return true
        end),
      }))
      for i = 0, 12 do
        c.t = i * 0.25
        list:step()
      end
      assert.are.same({ 0, 1, 2, 3 }, starts_of(log, "a"))
      assert.are.same({ 0, 1, 2, 3 }, starts_of(log, "b"))
      assert.are.equal(3, status_of(list, "a").checks) -- the 4th still sleeps
      assert.are.equal(4, status_of(list, "b").checks)
    end)

    it("starts the next check at once when start + interval already passed", function()
      local c, log = util.fake_clock(0), {}
      local list = track(make({ "a" }, c, {
        interval = 0.25, timeout = 1,
        check = recorder(c, log, function() upstream.sleep(0.5); return true end),
      }))
      assert.are.equal(0.5, list:step())
      c.t = 0.5
      list:step() -- completes the first check; the next one was due at 0.25
      assert.are.equal(1, status_of(list, "a").checks)
      -- whether the overdue check starts in this step or the next one, it
      -- starts now (t = 0.5) and no time needs to pass
      local dt = list:step()
      assert.are.same({ 0, 0.5 }, starts_of(log, "a"))
      assert.are.equal(0.5, dt) -- sleeping until 1.0
    end)

    it("jitter spreads the first checks over [0, interval) and is reproducible with a seed", function()
      local function run_one()
        local c, log = util.fake_clock(0), {}
        local backends = {}
        for i = 1, 8 do backends[i] = "b" .. i end
        local list = track(make(backends, c, {
          interval = 1, jitter = 1, seed = 7, check = recorder(c, log),
        }))
        for i = 0, 400 do
          c.t = i / 64
          list:step()
        end
        return log, backends
      end
      local log1, backends = run_one()
      local log2 = run_one()
      assert.are.same(log1, log2)
      local firsts = {}
      for _, b in ipairs(backends) do
        local s = starts_of(log1, b)
        assert.is_true(s[1] >= 0 and s[1] < 1 + 1 / 64, b .. " first at " .. s[1])
        firsts[s[1]] = true
        -- wait = interval * (1 + U(-1,1)): in [0, 2] (plus the step grain)
        for k = 2, #s do
          local w = s[k] - s[k - 1]
          assert.is_true(w >= 0 and w <= 2 + 1 / 64, b .. " wait " .. w)
        end
        assert.is_true(#s >= 3, b .. " started only " .. #s .. " times")
      end
      local distinct = 0
      for _ in pairs(firsts) do distinct = distinct + 1 end
      assert.is_true(distinct >= 2, "jitter 1 should not start all 8 at the same time")
    end)
  end)

  describe("results", function()
    it("a check raising is a failure with the error message", function()
      local c = util.fake_clock(0)
      local list = track(make({ "a", "b" }, c, {
        check = function(b)
          if b == "a" then error("boom", 0) end
          error("located")
        end,
      }))
      list:step()
      local a, b = status_of(list, "a"), status_of(list, "b")
      assert.are.equal("boom", a.last_error)
      assert.are.equal(0, a.score)
      assert.are.equal(1, a.checks)
      assert.are.equal(1, a.failures)
      assert.is_true(a.healthy)
      assert.is_string(b.last_error)
      assert.is_truthy(b.last_error:find("located", 1, true))
      assert.is_truthy(b.last_error:find("checks_spec.lua", 1, true))
    end)

    it("falsy without an error is 'health check failed'; nil, err is err; success clears it", function()
      local c = util.fake_clock(0)
      local round = 0
      local list = track(make({ "f", "n", "e" }, c, {
        check = function(b)
          if round >= 1 then return "yes" end -- any truthy value is success
          if b == "f" then return false end
          if b == "n" then return nil end
          return nil, "bad gateway"
        end,
      }))
      list:step()
      assert.are.equal("health check failed", status_of(list, "f").last_error)
      assert.are.equal("health check failed", status_of(list, "n").last_error)
      assert.are.equal("bad gateway", status_of(list, "e").last_error)
      for _, s in ipairs(list:status()) do
        assert.are.equal(0, s.score)
        assert.are.equal(1, s.failures)
      end
      round = 1
      c.t = 1
      list:step()
      for _, s in ipairs(list:status()) do
        assert.is_nil(s.last_error)
        assert.are.equal(1, s.score)
        assert.are.equal(2, s.checks)
        assert.are.equal(1, s.failures)
      end
    end)

    it("a check that never returns a value (plain end) is a failure", function()
      local c = util.fake_clock(0)
      local list = track(make({ "a" }, c, { check = function() end }))
      list:step()
      assert.are.equal("health check failed", status_of(list, "a").last_error)
      assert.are.equal(0, list:score("a"))
    end)

    it("check results respect low/high and the deltas", function()
      local c = util.fake_clock(0)
      local ok = false
      local list = track(make({ "a" }, c, {
        low_score = -1.5, high_score = 2, initial_score = 0.5,
        fail_delta = -0.75, success_delta = 1.25,
        check = function() return ok end,
      }))
      local expect = { 0.5 - 0.75, -1, -1.5, -1.5 }
      for i = 1, 4 do
        list:step()
        assert.are.equal(expect[i], list:score("a"), "fail #" .. i)
        c.t = c.t + 1
      end
      ok = true
      expect = { -0.25, 1, 2, 2 }
      for i = 1, 4 do
        list:step()
        assert.are.equal(expect[i], list:score("a"), "success #" .. i)
        c.t = c.t + 1
      end
    end)
  end)

  describe("coroutines", function()
    it("coroutine.yield() resumes the check at the next step", function()
      local c = util.fake_clock(0)
      local trace = {}
      local list = track(make({ "a" }, c, {
        check = function()
          trace[#trace + 1] = "start"
          coroutine.yield()
          trace[#trace + 1] = "resumed 1"
          coroutine.yield()
          trace[#trace + 1] = "resumed 2"
          return true
        end,
      }))
      assert.are.equal(0, list:step()) -- due again at once
      assert.are.same({ "start" }, trace)
      assert.are.equal(0, status_of(list, "a").checks)
      assert.are.equal(0, list:step())
      assert.are.same({ "start", "resumed 1" }, trace)
      assert.are.equal(1, list:step()) -- done; next at 0 + interval
      assert.are.same({ "start", "resumed 1", "resumed 2" }, trace)
      assert.are.equal(1, status_of(list, "a").checks)
      assert.are.equal(2, list:score("a"))
    end)

    it("upstream.sleep(s) resumes at the first step with clock() >= call time + s", function()
      local c = util.fake_clock(0)
      local trace = {}
      local list = track(make({ "a" }, c, {
        interval = 5, timeout = 2,
        check = function()
          trace[#trace + 1] = "start " .. c.t
          upstream.sleep(0.5)
          trace[#trace + 1] = "woke " .. c.t
          upstream.sleep(0.25)
          trace[#trace + 1] = "woke " .. c.t
          return true
        end,
      }))
      c.t = 0.125
      assert.are.equal(0.5, list:step())
      c.t = 0.5
      assert.are.equal(0.125, list:step()) -- not yet (0.625)
      assert.are.same({ "start 0.125" }, trace)
      c.t = 0.75 -- past 0.625
      assert.are.equal(0.25, list:step()) -- second sleep: 0.75 + 0.25 = 1.0
      assert.are.same({ "start 0.125", "woke 0.75" }, trace)
      c.t = 0.875
      list:step()
      assert.are.equal(0, status_of(list, "a").checks)
      c.t = 1
      assert.are.equal(4.125, list:step()) -- done; next at 0.125 + 5
      assert.are.same({ "start 0.125", "woke 0.75", "woke 1" }, trace)
      assert.are.equal(1, status_of(list, "a").checks)
      assert.is_nil(status_of(list, "a").last_error)
    end)

    it("upstream.sleep inside pcall sleeps (PUC 5.1 cannot yield there: the check fails)", function()
      -- whether this Lua can yield across pcall (all but PUC 5.1)
      local yields = coroutine.wrap(function() return pcall(coroutine.yield, "yielded") end)()
      local c = util.fake_clock(0)
      local list = track(make({ "a" }, c, {
        interval = 5, timeout = 2,
        check = function()
          local ok, err = pcall(upstream.sleep, 1)
          if not ok then return nil, err end
          return true
        end,
      }))
      if yields == "yielded" then
        assert.are.equal(1, list:step()) -- asleep until t = 1
        c.t = 1
        list:step()
        assert.is_nil(status_of(list, "a").last_error)
      else
        list:step()
        assert.are.equal("attempt to yield across metamethod/C-call boundary",
          status_of(list, "a").last_error)
      end
      assert.are.equal(1, status_of(list, "a").checks)
    end)

    it("upstream.sleep returns control: other backends' checks run meanwhile", function()
      local c = util.fake_clock(0)
      local order = {}
      local list = track(make({ "a", "b" }, c, {
        interval = 10, timeout = 5,
        check = function(b)
          order[#order + 1] = b .. ">"
          if b == "a" then upstream.sleep(1) end
          order[#order + 1] = "<" .. b
          return true
        end,
      }))
      list:step()
      assert.are.same({ "a>", "b>", "<b" }, order)
      c.t = 1
      list:step()
      assert.are.same({ "a>", "b>", "<b", "<a" }, order)
    end)

    it("timeout closes the check's to-be-closed variables (5.4), drops the check (all)", function()
      local c = util.fake_clock(0)
      local counter, threads = { closed = 0 }, util.threads()
      local after = false
      local list = track(make({ "a" }, c, {
        interval = 1, timeout = 0.25,
        check = util.closing(counter, function()
          threads.add()
          upstream.sleep(100)
          after = true
          return true
        end),
      }))
      list:step()
      c.t = 0.125
      list:step()
      assert.are.equal(0, counter.closed)
      assert.are.equal(0, status_of(list, "a").checks)
      assert.are.equal(1, threads.live())
      c.t = 0.25 -- exactly start + timeout
      list:step()
      assert.are.equal(util.TBC and 1 or 0, counter.closed) -- no <close> before 5.4
      assert.are.equal(0, threads.live())
      assert.is_false(after)
      local s = status_of(list, "a")
      assert.are.equal("health check timed out", s.last_error)
      assert.are.equal(1, s.checks)
      assert.are.equal(1, s.failures)
      assert.are.equal(0, s.score)
      c.t = 100 -- the abandoned coroutine is never resumed
      list:step()
      assert.is_false(after)
    end)

    it("timeout of a check that yields with coroutine.yield()", function()
      local c = util.fake_clock(0)
      local counter, threads = { closed = 0 }, util.threads()
      local list = track(make({ "a" }, c, {
        interval = 1, timeout = 0.25,
        check = util.closing(counter, function()
          threads.add()
          for _ = 1, 1000 do coroutine.yield() end
          return true
        end),
      }))
      for _ = 1, 5 do list:step() end
      assert.are.equal(0, counter.closed)
      assert.are.equal(1, threads.live())
      c.t = 0.25
      list:step()
      assert.are.equal(util.TBC and 1 or 0, counter.closed)
      assert.are.equal(0, threads.live())
      assert.are.equal("health check timed out", status_of(list, "a").last_error)
    end)
  end)

  describe("healthcheck method", function()
    it("checks table backends with backend:healthcheck()", function()
      local c = util.fake_clock(0)
      local seen = {}
      local mt = { __index = {
        healthcheck = function(self)
          seen[#seen + 1] = self
          if self.ok then return true end
          return nil, self.name .. " down"
        end,
      } }
      local good = setmetatable({ name = "good", ok = true }, mt)
      local bad = setmetatable({ name = "bad", ok = false }, mt)
      local list = track(make({ good, bad }, c, {}))
      assert.are.equal(1, list:step())
      assert.are.equal(2, #seen)
      assert.is_true(rawequal(seen[1], good))
      assert.is_true(rawequal(seen[2], bad))
      assert.are.equal(2, list:score(good))
      assert.are.equal(0, list:score(bad))
      assert.are.equal("bad down", status_of(list, bad).last_error)
    end)

    it("an explicit check option wins over the method", function()
      local c = util.fake_clock(0)
      local method_calls, check_calls = 0, 0
      local b = { healthcheck = function() method_calls = method_calls + 1 return true end }
      local list = track(make({ b }, c, {
        check = function() check_calls = check_calls + 1 return nil, "nope" end,
      }))
      list:step()
      assert.are.equal(0, method_calls)
      assert.are.equal(1, check_calls)
      assert.are.equal("nope", status_of(list, b).last_error)
    end)

    it("only backends with the method are checked", function()
      local c = util.fake_clock(0)
      local calls = 0
      local t = { healthcheck = function() calls = calls + 1 return true end }
      local list = track(make({ "plain", t, {} }, c, {}))
      assert.are.equal(1, list:step())
      assert.are.equal(1, calls)
      assert.are.equal(0, status_of(list, "plain").checks)
      assert.are.equal(1, status_of(list, t).checks)
      assert.are.equal(1, list:score("plain"))
      assert.are.equal(2, list:score(t))
    end)
  end)

  describe("passive list", function()
    it("step() returns nil without checks and never calls anything", function()
      local c = util.fake_clock(0)
      local list = track(make({ "a", "b", {} }, c, {}))
      for i = 0, 5 do
        c.t = i
        assert.is_nil(list:step())
      end
      for _, s in ipairs(list:status()) do assert.are.equal(0, s.checks) end
      assert.are.equal(true, list:wait_initial(1))
      assert.are.same({}, c.slept)
    end)

    it("run() on a passive list returns and pick still works", function()
      local c = util.fake_clock(0)
      local list = track(make({ "a" }, c, {}))
      list:run(3)
      assert.is_true(c.t <= 3)
      assert.are.equal("a", list:pick())
    end)
  end)

  describe("reconcile", function()
    it("discards the late result of a removed backend's in-flight check", function()
      local c = util.fake_clock(0)
      local calls = 0
      local list = track(make({ "a", "b" }, c, {
        interval = 10, timeout = 5,
        check = function(b)
          if b == "b" then return true end
          calls = calls + 1
          if calls == 1 then
            upstream.sleep(0.5)
            return nil, "stale failure"
          end
          upstream.sleep(100) -- later checks never finish in this test
          return true
        end,
      }))
      list:step()
      assert.are.equal(1, calls)
      list:reconcile({ "b" })
      assert.is_nil(list:score("a"))
      list:reconcile({ "b", "a" }) -- an equal backend comes back
      c.t = 0.5
      list:step()
      c.t = 1
      list:step()
      local s = status_of(list, "a")
      assert.are.equal(1, s.score) -- the initial score, not 0
      assert.is_nil(s.last_error)
      assert.are.equal(0, s.checks)
      assert.are.equal(0, s.failures)
      assert.are.equal(2, calls) -- the re-added one got its own check
      assert.are.equal(2, list:score("b"))
    end)

    it("a removed backend is no longer checked; a new one is checked at once", function()
      local c, log = util.fake_clock(0), {}
      local list = track(make({ "a", "b" }, c, { check = recorder(c, log) }))
      list:step()
      c.t = 0.5
      list:reconcile({ "b", "c" })
      list:step()
      assert.are.same({ 0.5 }, starts_of(log, "c"))
      for i = 2, 6 do
        c.t = i * 0.5
        list:step()
      end
      assert.are.same({ 0 }, starts_of(log, "a"))
      assert.are.same({ 0, 1, 2, 3 }, starts_of(log, "b"))
      assert.are.same({ 0.5, 1.5, 2.5 }, starts_of(log, "c"))
    end)
  end)

  describe("wait_initial", function()
    it("returns true once every backend finished a first check", function()
      local c = util.fake_clock(0)
      local list = track(make({ "a", "b" }, c, {
        interval = 1, timeout = 1,
        check = function(b)
          if b == "a" then upstream.sleep(0.5) end
          return true
        end,
      }))
      assert.are.equal(true, list:wait_initial(2))
      assert.are.equal(0.5, c.t)
      assert.are.equal(1, status_of(list, "a").checks)
      assert.are.equal(1, status_of(list, "b").checks)
    end)

    it("returns true at once when the checks finish in the first step", function()
      local c = util.fake_clock(0)
      local list = track(make({ "a" }, c, { check = function() return true end }))
      assert.are.equal(true, list:wait_initial())
      assert.are.equal(0, c.t)
    end)

    it("returns nil, 'timeout' when a check does not finish in time", function()
      local c = util.fake_clock(0)
      local list = track(make({ "a", "b" }, c, {
        interval = 2, timeout = 1,
        check = function(b)
          if b == "a" then upstream.sleep(100) end
          return true
        end,
      }))
      local ok, err = list:wait_initial(0.5)
      assert.is_nil(ok)
      assert.are.equal("timeout", err)
      assert.are.equal(0.5, c.t)
      assert.are.equal(0, status_of(list, "a").checks)
      assert.are.equal(1, status_of(list, "b").checks)
    end)

    it("counts a timed-out first check as finished", function()
      local c = util.fake_clock(0)
      local list = track(make({ "a" }, c, {
        interval = 2, timeout = 1,
        check = function() upstream.sleep(100) return true end,
      }))
      assert.are.equal(true, list:wait_initial(5))
      assert.are.equal(1, c.t)
      assert.are.equal("health check timed out", status_of(list, "a").last_error)
    end)

    it("returns nil, 'shut down' after shutdown", function()
      local c = util.fake_clock(0)
      local list = track(make({ "a" }, c, {
        check = function() upstream.sleep(100) return true end,
      }))
      list:shutdown()
      local ok, err = list:wait_initial(1)
      assert.is_nil(ok)
      assert.are.equal("shut down", err)
    end)
  end)

  describe("run", function()
    it("run(10.5) from t = 0 advances the clock by exactly 10.5 and checks 11 times", function()
      local c, log = util.fake_clock(0), {}
      local list = track(make({ "a", "b" }, c, { interval = 1, check = recorder(c, log) }))
      list:run(10.5)
      assert.are.equal(10.5, c.t)
      local expect = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }
      assert.are.same(expect, starts_of(log, "a"))
      assert.are.same(expect, starts_of(log, "b"))
      assert.are.equal(11, status_of(list, "a").checks)
      assert.are.equal(11, status_of(list, "b").checks)
      for _, s in ipairs(c.slept) do assert.is_true(s >= 0) end
    end)

    it("run drives sleeping checks and timeouts", function()
      local c = util.fake_clock(0)
      local list = track(make({ "s", "t" }, c, {
        interval = 1, timeout = 0.5,
        check = function(b)
          if b == "s" then upstream.sleep(0.25) return true end
          upstream.sleep(100)
        end,
      }))
      list:run(3)
      assert.are.equal(3, c.t)
      local s, t = status_of(list, "s"), status_of(list, "t")
      assert.are.equal(3, s.checks)       -- done at .25, 1.25, 2.25
      assert.are.equal(0, s.failures)
      assert.are.equal(3, t.checks)       -- timed out at .5, 1.5, 2.5
      assert.are.equal(3, t.failures)
      assert.are.equal(-2, t.score)
    end)

    it("run continues from a later clock", function()
      local c, log = util.fake_clock(50), {}
      local list = track(make({ "a" }, c, { interval = 2, check = recorder(c, log) }))
      list:run(3)
      assert.are.equal(53, c.t)
      list:run(2)
      assert.are.equal(55, c.t)
      assert.are.same({ 50, 52, 54 }, starts_of(log, "a"))
    end)
  end)

  describe("shutdown", function()
    it("is idempotent; pick/up/down/score/status keep working", function()
      local c = util.fake_clock(0)
      local counter, threads = { closed = 0 }, util.threads()
      local list = make({ "a", "b" }, c, {
        timeout = 5,
        check = util.closing(counter, function()
          threads.add()
          upstream.sleep(1)
          return true
        end),
      })
      list:step()
      assert.are.equal(2, threads.live())
      list:shutdown()
      list:shutdown()
      assert.are.equal(util.TBC and 2 or 0, counter.closed)
      assert.are.equal(0, threads.live())
      assert.is_nil(list:step())
      assert.are.equal("a", list:pick())
      list:down("b"); list:down("b")
      assert.are.equal(-1, list:score("b"))
      assert.are.equal("a", list:pick())
      list:up("b")
      assert.are.equal("b", list:pick())
      assert.are.equal(2, #list:status())
      assert.are.equal(2, #list)
      list:reconcile({ "b", "c" })
      assert.are.equal(2, #list)
      c.t = 10
      assert.is_nil(list:step()) -- the new one is not checked either
      assert.are.equal(0, status_of(list, "c").checks)
      list:run(1)
      assert.are.equal(0, status_of(list, "c").checks)
    end)

    it("<close> calls shutdown (5.4; before 5.4 the list stays open)", function()
      local c = util.fake_clock(0)
      local counter = { closed = 0 }
      local calls = 0
      local escaped
      util.scoped(make({ "a" }, c, {
        timeout = 5,
        check = util.closing(counter, function()
          calls = calls + 1
          upstream.sleep(1)
          return true
        end),
      }), function(list)
        escaped = list
        list:step()
        assert.are.equal(0, counter.closed)
      end)
      if util.TBC then
        assert.are.equal(1, counter.closed)
        assert.is_nil(escaped:step())
        c.t = 3
        assert.is_nil(escaped:step())
        assert.are.equal(1, calls)
      else -- no <close>: the scope's end did not shut the list down
        c.t = 3
        assert.is_number(escaped:step())
        assert.are.equal(1, status_of(escaped, "a").checks)
        escaped:shutdown()
        assert.is_nil(escaped:step())
      end
      assert.are.equal("a", escaped:pick())
    end)

    it("__gc shuts the list down and closes pending checks", function()
      local c = util.fake_clock(0)
      local counter, threads = { closed = 0 }, util.threads()
      do
        local list = make({ "a" }, c, {
          timeout = 5,
          check = util.closing(counter, function()
            threads.add()
            upstream.sleep(1)
            return true
          end),
        })
        list:step()
      end
      assert.are.equal(0, threads.live()) -- collected with the list
      assert.are.equal(util.TBC and 1 or 0, counter.closed) -- closed first (5.4)
    end)

    it("a check body that errors while being closed does not break shutdown", function()
      local c = util.fake_clock(0)
      local list = make({ "a", "b" }, c, {
        timeout = 5,
        check = util.closing(function()
          return setmetatable({}, { __close = function() error("close failed") end })
        end, function()
          upstream.sleep(1)
          return true
        end),
      })
      list:step()
      pcall(list.shutdown, list) -- may or may not report the error
      assert.is_nil(list:step())
      assert.are.equal("a", list:pick())
    end)
  end)
end)

describe("checks of duplicate backends", function()
  it("move every equal member, as the Go package does", function()
    local c = require("spec.support.util").fake_clock(0)
    local l = upstream.new({ "a", "b", "a" }, {
      clock = c.clock, check = function(b) if b == "a" then return nil, "down" end return true end,
    })
    l:step() -- two checks of "a" fail: each moves both members
    local st = l:status()
    assert.equal(-1, st[1].score)
    assert.equal(-1, st[3].score)
    assert.equal(1, st[1].checks)
    assert.equal(2, l:score("b"))
    assert.equal("b", l:pick())
    assert.equal("b", l:pick())
    l:shutdown()
  end)
end)
