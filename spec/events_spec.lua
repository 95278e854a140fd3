-- on_change (issue 11): called once each time a backend crosses between
-- healthy and unhealthy, from a check result, a timeout, up/down or a
-- reconcile adding a member, after the state has changed; what it raises
-- is a warning, never an error of the caller; what it may call on the
-- list (anything: reconcile and shutdown included) under ASan and the
-- aggressive GC (make test-asan, make test-gc).
local upstream = require "upstream"
local util = require "spec.support.util"

local expect_error = util.expect_error

-- A list on a fake clock recording every on_change call in events.
local function recorder(backends, opts, handler)
  local c = util.fake_clock()
  local events = {}
  local list
  local o = util.merge({ clock = c.clock, sleep = c.sleep, interval = 1, timeout = 0.5 }, opts)
  o.on_change = function(b, healthy, score, err)
    events[#events + 1] = { b = b, healthy = healthy, score = score, err = err, t = c.t }
    if handler then handler(list, b, healthy, score, err) end
  end
  list = upstream.new(backends, o)
  return list, events, c
end

-- A check whose results are given per backend: results[b] is a list of
-- booleans, consumed one per check (true when exhausted).
local function scripted(results)
  return function(b)
    local r = results[b]
    local v = true
    if r and #r > 0 then v = table.remove(r, 1) end
    if v then return true end
    return nil, "down: " .. tostring(b)
  end
end

describe("on_change", function()
  it("is refused when it is not a function", function()
    expect_error(function() upstream.new({ "a" }, { on_change = 1 }) end,
      "upstream.new: option 'on_change' must be a function (got number)")
    expect_error(function() upstream.new({ "a" }, { on_change = "f" }) end,
      "option 'on_change' must be a function (got string)")
  end)

  it("fires once when a check makes a backend cross, after the change", function()
    local seen
    local list, events, c = recorder({ "a", "b" }, {
      check = scripted({ b = { false, false, false, true, true } }),
    }, function(l, b)
      -- the list already shows the new state
      seen = { score = l:score(b), healthy = l:status_of(b).healthy }
    end)
    for i = 0, 6 do c.t = i; list:step() end
    -- b: 1 -> 0 -> -1 (crosses at t=1) -> -2 -> -1 -> 0 (crosses back at t=4)
    assert.equal(2, #events)
    assert.same({ b = "b", healthy = false, score = -1, err = "down: b", t = 1 }, events[1])
    assert.same({ b = "b", healthy = true, score = 0, t = 4 }, events[2])
    assert.same({ score = 0, healthy = true }, seen)
    assert.equal(4, list:status_of("b").since)
    assert.equal(2, #events) -- nothing for a, which never crossed
  end)

  it("fires from up/down with err nil, and since is the clock's time", function()
    local reads = 0
    local _, events, c = recorder({ "a" }, {})
    local clock = c.clock
    -- count clock reads: up/down read it only when they make b cross
    local list = upstream.new({ "a" }, {
      clock = function() reads = reads + 1; return clock() end,
      on_change = function(b, h, s, e) events[#events + 1] = { b = b, healthy = h, score = s, err = e, t = c.t } end,
    })
    c.t = 5
    list:down("a") -- 1 -> 0
    assert.equal(0, reads)
    assert.equal(0, #events)
    c.t = 7
    list:down("a") -- 0 -> -1: crosses
    assert.equal(1, reads)
    assert.same({ { b = "a", healthy = false, score = -1, t = 7 } }, events)
    assert.equal(7, list:status_of("a").since)
    list:down("a"); list:down("a"); list:down("a") -- floored at -3: no event
    assert.equal(1, #events)
    c.t = 9
    list:up("a"); list:up("a"); list:up("a") -- -3 -> -2 -> -1 -> 0
    assert.equal(2, #events)
    assert.same({ b = "a", healthy = true, score = 0, t = 9 }, events[2])
    assert.equal(9, list:status_of("a").since)
    list:down("nobody")
    assert.equal(2, #events)
  end)

  it("fires on a timeout with its message, and counts the timeout", function()
    local list, events, c = recorder({ "slow" }, {
      initial_score = 0,
      check = function() while true do coroutine.yield() end end,
    })
    c.t = 0; list:step()
    c.t = 0.6; list:step()
    assert.equal(1, #events)
    assert.same({ b = "slow", healthy = false, score = -1, err = "health check timed out", t = 0.6 }, events[1])
    local s = list:status_of("slow")
    assert.equal(1, s.timeouts)
    assert.equal(1, s.failures)
    assert.equal(0.6, s.last_check)
    assert.near(0.6, s.latency, 1e-12)
  end)

  it("fires on a check the runaway hook stopped, counted as a timeout", function()
    local c = util.ticking_clock(0.01)
    local events = {}
    local list = upstream.new({ "spin" }, {
      clock = c.clock, sleep = c.sleep, timeout = 0.05, initial_score = 0,
      check = util.interpreted(function() local x = 0 while true do x = x + 1 end end),
      on_change = function(b, h, _, e) events[#events + 1] = { b, h, e } end,
    })
    if jit then jit.off() end
    list:step()
    if jit then jit.on() end
    assert.same({ { "spin", false, "health check timed out" } }, events)
    assert.equal(1, list:status_of("spin").timeouts)
  end)

  it("fires from due/report and from a due() timeout", function()
    local list, events, c = recorder({ "a", "b" }, { initial_score = 0, check = function() return true end })
    local jobs = list:due()
    assert.equal(2, #jobs)
    c.t = 0.1
    assert.is_true(list:report(jobs[1], false, "refused"))
    assert.same({ b = jobs[1].backend, healthy = false, score = -1, err = "refused", t = 0.1 }, events[1])
    c.t = 0.7
    list:due() -- b's job passed its deadline
    assert.equal(2, #events)
    assert.same({ b = jobs[2].backend, healthy = false, score = -1, err = "health check timed out", t = 0.7 },
      events[2])
  end)

  it("fires for a member reconcile adds that starts healthy, not for new()'s", function()
    local list, events = recorder({ "a" }, {})
    assert.equal(0, #events)
    list:reconcile({ "a", "b", "c", "b" })
    assert.same({ "b", "c" }, { events[1].b, events[2].b })
    assert.is_true(events[1].healthy)
    assert.equal(1, events[1].score)
    assert.is_nil(events[1].err)
    list:reconcile({ "a", "b", "c" }) -- nothing added
    assert.equal(2, #events)

    local l2, ev2 = recorder({ "a" }, { initial_score = -1 })
    l2:reconcile({ "a", "z" })
    assert.equal(0, #ev2) -- starts unhealthy: fires when it turns healthy
    l2:up("z")
    assert.same({ "z", true }, { ev2[1].b, ev2[1].healthy })
  end)

  it("fires once for a backend given twice", function()
    local list, events = recorder({ "a", "a", "b" }, {})
    list:down("a"); list:down("a")
    assert.equal(1, #events)
    assert.equal("a", events[1].b)
  end)

  it("reports events in the order the changes happened", function()
    local list, events, c = recorder({ "a", "b", "c" }, {
      initial_score = 0,
      check = scripted({ a = { false }, b = { true, false, false }, c = { false, true } }),
    })
    c.t = 0; list:step() -- a and c fall (in pick order), b rises to 1
    c.t = 1; list:step() -- a and c rise back, b 1 -> 0
    c.t = 2; list:step() -- b falls
    local seq = {}
    for _, e in ipairs(events) do seq[#seq + 1] = e.b .. (e.healthy and "+" or "-") .. e.t end
    assert.same({ "a-0", "c-0", "a+1", "c+1", "b-2" }, seq)
  end)

  it("never breaks the caller when it raises", function()
    local calls = 0
    local list, _, c = recorder({ "a", "b" }, {
      initial_score = 0,
      check = scripted({ a = { false, false }, b = { false } }),
    }, function()
      calls = calls + 1
      error(calls == 1 and "boom" or setmetatable({}, { __tostring = function() error("worse") end }))
    end)
    c.t = 0
    assert.has_no.errors(function() list:step() end)
    assert.equal(2, calls)
    assert.has_no.errors(function() list:up("a"); list:up("b") end)
    assert.equal(4, calls)
    assert.has_no.errors(function() list:reconcile({ "a", "b", "c" }) end)
    c.t = 1
    assert.has_no.errors(function() list:step() end)
    assert.equal(0, list:status_of("b").timeouts)
  end)

  it("reports what it raised as a warning (5.4) or on stderr", function()
    local exe = jit and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(([[
      package.cpath = %q
      local upstream = require "upstream"
      local l = upstream.new({ "a" }, { on_change = function(b) error("bad " .. b, 0) end })
      l:down("a"); l:down("a")
      io.stdout:write("still here\n")
    ]]):format(package.cpath))
    f:close()
    local p = assert(io.popen(exe .. (_VERSION == "Lua 5.4" and " -W " or " ") .. script .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    os.remove(script)
    assert.truthy(out:find("upstream.list: on_change raised: bad a", 1, true), out)
    assert.truthy(out:find("still here", 1, true), out)
  end)

  describe("may call anything on the list", function()
    it("reconcile removing the backend, from a check's result", function()
      local list, events, c = recorder({ "a", "b" }, {
        initial_score = 0,
        check = scripted({ a = { false } }),
      }, function(l, b)
        if b == "a" then l:reconcile({ "b", "c" }) end
      end)
      c.t = 0; list:step()
      assert.equal("a", events[1].b)
      assert.equal(2, #list)
      assert.is_nil(list:score("a"))
      c.t = 1; list:step(); c.t = 2; list:step()
      assert.equal(2, #list:status())
    end)

    it("shutdown, from a timeout in step() and in due()", function()
      for _, host in ipairs({ false, true }) do
        local list, events, c = recorder({ "x", "y" }, {
          initial_score = 0,
          check = function() while true do coroutine.yield() end end,
        }, function(l) l:shutdown() end)
        if host then list:due() else list:step() end
        c.t = 1
        if host then list:due() else list:step() end
        assert.equal(1, #events)
        assert.is_nil(list:step())
        assert.equal(-1, list:score("x"))
      end
    end)

    it("up/down of the same backend, status and metrics, from up/down", function()
      local depth = 0
      local list, events = recorder({ "a", "b" }, {}, function(l, b, healthy)
        depth = depth + 1
        assert.is_table(l:status())
        assert.is_string(upstream.metrics({ l = l }))
        if depth < 5 then
          if healthy then l:down(b); l:down(b) else l:up(b) end
        end
      end)
      list:down("a"); list:down("a")
      assert.equal(5, #events)
      for i, e in ipairs(events) do assert.equal(i % 2 == 0, e.healthy) end
    end)

    it("reconcile from the event of an added member", function()
      local list, events = recorder({ "a" }, {}, function(l, b)
        if b == "b" then l:reconcile({ "a", "c", "d" }) end
      end)
      list:reconcile({ "a", "b", "c" })
      -- b's event reconciled: b left, d came (its event fired inside), c
      -- (still a member) fires after
      local seq = {}
      for _, e in ipairs(events) do seq[#seq + 1] = e.b end
      assert.same({ "b", "d", "c" }, seq)
      assert.equal(3, #list)
    end)

    it("reconcile and shutdown from a reported result, list still consistent", function()
      local list, events, c = recorder({ "a", "b", "c" }, { initial_score = 0, check = function() return true end },
        function(l, b)
          if b == "a" then l:reconcile({ "c", "d" }) elseif b == "c" then l:shutdown() end
        end)
      local jobs = list:due()
      c.t = 0.1
      for _, j in ipairs(jobs) do list:report(j, false, "no") end
      -- a's event reconciled (d added, its event inside), b's job is then
      -- stale, c's event shut the list down
      assert.same({ "a", "d", "c" }, { events[1].b, events[2].b, events[3].b })
      assert.is_nil(list:step())
      assert.same({ "c", "d" }, { list:status()[1].backend, list:status()[2].backend })
    end)
  end)
end)
