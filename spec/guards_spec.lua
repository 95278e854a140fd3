-- Guards the issue's mutation list found untested: each spec pins the
-- exact behaviour (the message, or the value), so that removing or
-- loosening the guard in the binding fails it.
local upstream = require "upstream"
local util = require "spec.support.util"

local expect_error = util.expect_error

local function new_with(opts)
  return function() return upstream.new({ "a", "b" }, opts) end
end

-- expect_error, and the message is exactly "upstream.new: " .. msg after
-- the position prefix.
local function exact(fn, msg)
  local err = expect_error(fn, msg)
  assert.equal(msg, (err:gsub("^[^:]*:%d+: ", "")))
end

describe("guards", function()
  describe("seed", function()
    it("a fractional seed is refused", function()
      exact(new_with({ seed = 1.5 }), "upstream.new: option 'seed' must be an integer (got 1.5)")
      exact(new_with({ seed = -0.25 }), "upstream.new: option 'seed' must be an integer (got -0.25)")
    end)

    it("an integral float seed is the integer seed", function()
      local function picks(seed)
        local l = upstream.new({ "a", "b", "c" }, { strategy = "random", seed = seed })
        local out = {}
        for i = 1, 30 do out[i] = l:pick() end
        return table.concat(out)
      end
      assert.equal(picks(7), picks(7.0))
    end)
  end)

  describe("tiers", function()
    it("an unknown key is refused, whatever its type", function()
      exact(new_with({ tiers = { min = 0, max = 2, init = 0, mxa = 3 } }),
        "upstream.new: option 'tiers' has an unknown key string \"mxa\" (allowed: min, max, init)")
      exact(new_with({ tiers = { min = 0, max = 2, init = 0, [1] = 3 } }),
        "upstream.new: option 'tiers' has an unknown key 1 (allowed: min, max, init)")
    end)

    it("a bound given as a string says so", function()
      exact(new_with({ tiers = { min = "0", max = 2, init = 0 } }),
        "upstream.new: option 'tiers' needs min, an integer in [0, 10] (got string \"0\")")
    end)
  end)

  describe("tier_by_latency", function()
    it("a non-boolean is refused", function()
      exact(new_with({ tier_by_latency = 1 }),
        "upstream.new: option 'tier_by_latency' must be a boolean (got number)")
      exact(new_with({ tier_by_latency = "yes" }),
        "upstream.new: option 'tier_by_latency' must be a boolean (got string)")
    end)

    it("false is accepted and leaves the tiers off", function()
      local l = upstream.new({ "a" }, { tier_by_latency = false })
      assert.equal(0, l:status()[1].tier)
    end)
  end)

  describe("slow_start", function()
    it("math.huge is refused", function()
      exact(new_with({ slow_start = math.huge }),
        "upstream.new: option 'slow_start' must be a finite number >= 0 (got inf)")
    end)

    it("-math.huge and NaN are refused", function()
      exact(new_with({ slow_start = -math.huge }),
        "upstream.new: option 'slow_start' must be a finite number >= 0 (got -inf)")
      exact(new_with({ slow_start = 0 / 0 }),
        "upstream.new: option 'slow_start' must be a finite number >= 0 (got nan)")
    end)
  end)

  describe("inflight", function()
    it("sums the picks in flight over duplicate members", function()
      local l = upstream.new({ "a", "b", "a" }, { strategy = "least_conn", seed = 5 })
      -- all at 0: round robin gives slots 1, 2, 3 in turn
      assert.same({ "a", "b", "a" }, { l:pick(), l:pick(), l:pick() })
      assert.equal(2, l:inflight("a"))
      assert.equal(1, l:inflight("b"))
      local per = {}
      for i, s in ipairs(l:status()) do per[i] = s.inflight end
      assert.same({ 1, 1, 1 }, per)
      assert.is_true(l:release("a"))
      assert.equal(1, l:inflight("a"))
      assert.is_true(l:release("a"))
      assert.equal(0, l:inflight("a"))
      assert.is_false(l:release("a"))
      assert.is_nil(l:inflight("c"))
    end)
  end)

  describe("reconcile", function()
    it("closes a removed backend's running check, which never resumes", function()
      local c = util.fake_clock(0)
      local counter = { closed = 0 }
      local threads = util.threads()
      local resumed = 0
      local list = upstream.new({ "a", "b" }, {
        clock = c.clock, sleep = c.sleep, timeout = 5, interval = 10,
        check = util.closing(counter, function(b)
          if b == "b" then return true end
          threads.add()
          upstream.sleep(1)
          resumed = resumed + 1
          return true
        end),
      })
      list:step() -- a sleeps, b is done (its <close> ran as it returned)
      assert.equal(1, threads.live())
      local closed = counter.closed
      list:reconcile({ "b" })
      if util.TBC then assert.equal(closed + 1, counter.closed) end -- a's <close> ran
      assert.equal(0, threads.live()) -- and the list holds it no more
      c.t = 2
      list:step()
      c.t = 20
      list:step()
      assert.equal(0, resumed)
      assert.is_nil(list:score("a"))
      assert.equal(1, list:checked())
    end)
  end)
end)
