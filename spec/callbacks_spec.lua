-- Every method called from inside the list's own callbacks: the clock
-- (read by pick, up and down with slow start, and by reconcile), the
-- sleep (run), a check (step), a backend's __index (the healthcheck
-- lookup of new and reconcile) and finalizers run by an allocation
-- (status, reconcile, shutdown). The rule and the table of what each
-- method does are in docs/ARCHITECTURE.md ("Calls from callbacks");
-- reentry_spec.lua has the cases the issue started from. Run under ASan
-- and the aggressive-GC pass (make test-asan, make test-gc).
local upstream = require "upstream"
local util = require "spec.support.util"

local expect_error = util.expect_error
local STALE = "upstream.list: reconcile: the list was reconciled by a callback during the call"

local finalizer = util.finalizer

-- Calls fn() while finalizers keep running: each calls action(k) (the
-- k-th run, errors ignored) and arms the next one, and the collector runs
-- a cycle at every step meanwhile; after 50 runs the collector is itself
-- again (some runtimes finish a cycle at almost every step: a long fn
-- would take minutes). Returns how many ran.
local function with_finalizers(action, fn)
  local active, runs = true, 0
  local pause = collectgarbage("setpause", 0)
  local mul = collectgarbage("setstepmul", 1000)
  local function arm()
    finalizer(function()
      if not active then return end
      runs = runs + 1
      pcall(action, runs)
      if runs < 50 then
        arm()
      else
        collectgarbage("setpause", pause)
        collectgarbage("setstepmul", mul)
      end
    end)
  end
  arm()
  local ok, err = pcall(fn)
  active = false
  collectgarbage("setpause", pause)
  collectgarbage("setstepmul", mul)
  collectgarbage()
  assert(ok, err)
  return runs
end

local function names(n, prefix)
  local t = {}
  for i = 1, n do t[i] = (prefix or "b") .. i end
  return t
end

local function set_of(t)
  local s = {}
  for _, v in ipairs(t) do s[v] = true end
  return s
end

-- The list is whole: its length, its status and its picks agree.
local function whole(list)
  local st = list:status()
  assert.equal(#list, #st)
  local members = {}
  for _, s in ipairs(st) do
    assert.is_string(s.backend)
    assert.equal(s.score, list:score(s.backend))
    members[s.backend] = true
  end
  for _ = 1, #st do
    local b = list:pick()
    if b ~= nil then assert.is_true(members[b]) end
  end
  return members
end

describe("status, while finalizers run", function()
  it("is a snapshot of one moment while they move every score", function()
    local bs = names(300)
    local list = upstream.new(bs, { low_score = -1e6 })
    local mixed = 0
    local runs = with_finalizers(function()
      for _, b in ipairs(bs) do list:down(b) end
    end, function()
      for _ = 1, 30 do
        local st = list:status()
        assert.equal(300, #st)
        for _, s in ipairs(st) do
          if s.score ~= st[1].score then mixed = mixed + 1 break end
        end
      end
    end)
    assert.is_true(runs > 0)
    assert.equal(0, mixed)
  end)

  it("is one of the lists while they reconcile it (the block it reads is anchored)", function()
    -- long enough for a collection cycle to end inside one status(): the
    -- block a finalizer replaced would then be freed under it
    local one, other = names(2000, "o"), names(2000, "t")
    local list = upstream.new(one)
    local isone, isother = set_of(one), set_of(other)
    local runs = with_finalizers(function(k)
      list:reconcile(k % 2 == 0 and one or other)
    end, function()
      for _ = 1, 10 do
        local st = list:status()
        assert.equal(2000, #st)
        local of = isone[st[1].backend] and isone or isother
        for _, s in ipairs(st) do assert.is_true(of[s.backend], tostring(s.backend)) end
      end
    end)
    assert.is_true(runs > 0)
    whole(list)
  end)
end)

describe("reconcile, while finalizers reconcile", function()
  it("stands, or raises the stale error; the list stays whole", function()
    local mine, theirs = names(200, "m"), names(50, "t")
    local list = upstream.new({ "x" })
    local errs = {}
    with_finalizers(function() list:reconcile(theirs) end, function()
      for _ = 1, 30 do
        local ok, err = pcall(list.reconcile, list, mine)
        if not ok then errs[#errs + 1] = tostring(err) end
      end
    end)
    -- how often a finalizer lands inside the call depends on the runtime
    for _, err in ipairs(errs) do assert.is_truthy(err:find(STALE, 1, true), err) end
    local members = whole(list)
    assert.is_true(members.m1 or members.t1)
  end)
end)

describe("a finalizer that shuts the list down", function()
  it("during reconcile: the reconciled list stays shut, holding no check", function()
    local small, big = names(100), names(400)
    for _ = 1, 20 do
      local c = util.fake_clock(0)
      local threads = util.threads()
      local list = upstream.new(small, { clock = c.clock, sleep = c.sleep, timeout = 5, check = function()
        threads.add()
        upstream.sleep(1)
        return true
      end })
      list:step() -- every check sleeps
      local shut = false
      with_finalizers(function()
        if not shut then shut = true; list:shutdown() end
      end, function()
        -- reconcile in place allocates little: it takes more calls on
        -- some runtimes before a collection runs the finalizer
        for k = 1, 2000 do
          list:reconcile(k % 2 == 0 and small or big)
          if shut then break end
        end
      end)
      assert.is_true(shut)
      assert.is_nil(list:step())
      assert.same({ nil, "shut down" }, { list:wait_initial(1) })
      assert.equal(0, threads.live())
    end
  end)

  it("during shutdown's own allocation: shutdown ends once, with no check left", function()
    local c = util.fake_clock(0)
    local threads = util.threads()
    local list = upstream.new(names(30), { clock = c.clock, sleep = c.sleep, timeout = 5, check = function()
      threads.add()
      upstream.sleep(1)
      return true
    end })
    list:step()
    with_finalizers(function() list:reconcile(names(40)) end, function()
      list:shutdown()
    end)
    assert.equal(0, threads.live())
    assert.is_nil(list:step())
    whole(list)
  end)
end)

describe("the healthcheck lookup", function()
  it("is made once per backend by new() and none for a kept one by reconcile()", function()
    local asked = 0
    local mt = { __index = function(_, k)
      if k == "healthcheck" then asked = asked + 1 end
    end }
    local a, b = setmetatable({}, mt), setmetatable({}, mt)
    local list = upstream.new({ a, b, a })
    assert.equal(3, asked) -- each given entry, the duplicate too
    list:reconcile({ a, b, setmetatable({}, mt) })
    assert.equal(4, asked)
  end)

  it("a check made stale by its own lookup (the backend's __index reconciles it away) never runs", function()
    local c = util.fake_clock(0)
    local list, ran, asked = nil, 0, 0
    local obj = setmetatable({}, { __index = function(_, k)
      if k ~= "healthcheck" then return nil end
      asked = asked + 1
      if asked == 2 then list:reconcile({ "a" }) end -- at the check's start: drops this backend
      return function() ran = ran + 1; return true end
    end })
    list = upstream.new({ "a", obj }, { clock = c.clock, sleep = c.sleep, interval = 1 })
    assert.equal(1, asked) -- new()'s lookup
    for _ = 1, 3 do c.t = c.t + 1; list:step() end
    assert.equal(2, asked) -- the check's start looked it up: then the list dropped it
    assert.equal(1, #list)
    assert.equal(0, ran) -- its function was never resumed (it was, until the hook, before)
  end)

  it("a healthcheck found through __index makes a checked backend", function()
    local calls = 0
    local obj = setmetatable({}, { __index = { healthcheck = function() calls = calls + 1; return true end } })
    local c = util.fake_clock(0)
    local list = upstream.new({ obj, "plain" }, { clock = c.clock, sleep = c.sleep })
    assert.equal(1, list:checked())
    list:step()
    assert.equal(1, calls)
  end)

  it("a lookup that raises a non-string error is no method either", function()
    local odd = setmetatable({}, { __index = function() error({}) end })
    local list = upstream.new({ odd })
    assert.equal(0, list:checked())
  end)
end)

-- Every method, called with valid arguments from a callback; each
-- returns what it returns outside one (checked by its own function).
local CALLS = {
  pick = function(l) local b = l:pick(); assert(b == nil or type(b) == "string") end,
  up = function(l) l:up("a") end,
  down = function(l) l:down("b") end,
  score = function(l) assert(type(l:score("a")) == "number") end,
  weight = function(l) assert(l:weight("a") >= 1) end,
  set_weight = function(l) assert(l:set_weight("a", 3) == true) end,
  release = function(l) assert(type(l:release("a")) == "boolean") end,
  inflight = function(l) assert(l:inflight("a") >= 0) end,
  status = function(l) assert(#l:status() == #l) end,
  reconcile_bigger = function(l) l:reconcile({ "a", "b", "c", "p", "q", "r", "s", "t" }) end,
  reconcile_smaller = function(l) l:reconcile({ "b" }) end,
  now = function(l) assert(type(l:now()) == "number") end,
  checked = function(l) assert(l:checked() >= 0) end,
  len = function(l) assert(#l >= 1) end,
  tostring = function(l) assert(tostring(l):find("^upstream.list: ")) end,
  next_due = function(l) local w = l:next_due(); assert(w == nil or w >= 0) end,
  slots = function(l) assert(type(l:_slots()) == "table") end,
  shutdown = function(l) l:shutdown() end,
}

local function each_call(fn)
  for name, call in pairs(CALLS) do fn(name, call) end
end

-- A list whose clock calls call(list) once, at its first reading after
-- arm(); c.called says it did.
local function hooked(backends, opts, call)
  local c = { t = 0, armed = false, called = false }
  local list
  opts.clock = function()
    c.t = c.t + 0.25
    if c.armed then
      c.armed = false
      call(list)
      c.called = true
      collectgarbage()
    end
    return c.t
  end
  opts.sleep = function(s) c.t = c.t + s end
  list = upstream.new(backends, opts)
  function c.arm() c.armed = true end
  return list, c
end

describe("every method called from the clock", function()
  each_call(function(name, call)
    it("during pick: " .. name, function()
      local list, c = hooked({ "a", "b" }, { slow_start = 10 }, call)
      list:reconcile({ "a", "b", "c" }) -- c ramps: pick reads the clock
      c.arm()
      local b = list:pick()
      assert.is_true(c.called)
      assert.is_string(b)
      assert.is_number(list:score(b)) -- a member of the list as it is now
      whole(list)
    end)

    it("during down: " .. name, function()
      local list, c = hooked({ "a", "b", "c" }, { slow_start = 10 }, call)
      local before = list:score("c")
      c.arm()
      list:down("c")
      assert.is_true(c.called)
      local after = list:score("c")
      if after ~= nil then assert.equal(before - 1, after) end -- c, whatever took its slot
      whole(list)
    end)

    it("during reconcile: " .. name, function()
      local list, c = hooked({ "a", "b", "c" }, { slow_start = 10 }, call)
      local target = { "a", "b", "c", "d", "e" }
      c.arm()
      local ok, err = pcall(list.reconcile, list, target)
      assert.is_true(c.called)
      if name:find("^reconcile_") then
        assert.is_false(ok)
        assert.is_truthy(tostring(err):find(STALE, 1, true))
        assert.is_nil(list:score("e")) -- the callback's list stands
      else
        assert(ok, err)
        assert.equal(5, #list)
      end
      whole(list)
    end)
  end)
end)

describe("every method called from a backend's __index during reconcile", function()
  each_call(function(name, call)
    it(name, function()
      local list
      local done = false
      local tricky = setmetatable({}, { __index = function(_, k)
        if k == "healthcheck" and not done then
          done = true
          call(list)
          collectgarbage()
        end
      end })
      list = upstream.new({ "a", "b", "c" })
      local ok, err = pcall(list.reconcile, list, { "a", "b", "c", tricky })
      assert.is_true(done)
      if name:find("^reconcile_") then
        assert.is_false(ok)
        assert.is_truthy(tostring(err):find(STALE, 1, true))
        assert.is_nil(list:score(tricky))
      else
        assert(ok, err)
        assert.equal(4, #list)
        assert.is_number(list:score(tricky))
      end
    end)
  end)
end)

describe("every method called from a check run by step", function()
  each_call(function(name, call)
    it(name, function()
      local c = util.fake_clock(0)
      local list, ran = nil, 0
      list = upstream.new({ "a", "b", "c" }, { clock = c.clock, sleep = c.sleep, check = function(b)
        ran = ran + 1
        if ran == 1 then call(list); collectgarbage() end
        return b ~= "b"
      end })
      local w = list:step()
      assert.is_true(ran >= 1)
      assert.is_true(w == nil or w >= 0)
      whole(list)
      c.t = 5
      list:step()
      whole(list)
    end)
  end)
end)

describe("every method called from the sleep of run", function()
  each_call(function(name, call)
    it(name, function()
      local c = { t = 0 }
      local list, slept = nil, 0
      list = upstream.new({ "a", "b", "c" }, {
        clock = function() return c.t end,
        sleep = function(s)
          slept = slept + 1
          if slept == 1 then call(list); collectgarbage() end
          c.t = c.t + s
        end,
        check = function() return true end,
      })
      list:run(3)
      assert.is_true(slept >= 1)
      whole(list)
    end)
  end)
end)

describe("upstream.sleep from a callback that is not the check itself", function()
  it("raises, and the check fails with that error", function()
    local c = util.fake_clock(0)
    local list
    local inner = false
    list = upstream.new({ "a" }, {
      clock = function()
        if inner then upstream.sleep(1) end
        return c.t
      end,
      sleep = c.sleep, slow_start = 1,
      check = function()
        inner = true
        local ok = pcall(list.down, list, "a") -- down reads the clock (slow start)
        inner = false
        return not ok, "sleep in the clock worked"
      end,
    })
    list:step()
    assert.is_nil(list:status()[1].last_error)
  end)
end)

describe("a list under construction", function()
  it("cannot be used from a backend's __index (methods raise, shutdown is a no-op)", function()
    if not debug.getlocal then return end
    local seen = {}
    local probe = setmetatable({}, { __index = function(_, k)
      if k ~= "healthcheck" then return nil end
      -- the half-built list is reachable from here only through debug
      for level = 2, 4 do
        for i = 1, 20 do
          local _, v = debug.getlocal(level, i)
          if type(v) == "userdata" and tostring(v):find("^upstream.list") then seen[#seen + 1] = v end
        end
      end
      for _, l in ipairs(seen) do
        expect_error(function() l:pick() end, "list is not initialised")
        l:shutdown()
      end
    end })
    local list = upstream.new({ "a", probe })
    assert.equal(2, #list)
    assert.equal("a", list:pick())
  end)
end)

describe("the scheduler's methods called from a check run by step", function()
  -- a and b checked; a's first check calls fn(list) and then succeeds
  local function nested(fn)
    local c = util.fake_clock(0)
    local list, first, out = nil, true, nil
    list = upstream.new({ "a", "b" }, { clock = c.clock, sleep = c.sleep, timeout = 0.1, check = function(b)
      if b == "a" and first then
        first = false
        out = { pcall(fn, list) }
      end
      return true
    end })
    list:step()
    return list, out, c
  end

  it("step runs the other due checks, not the caller's again", function()
    local list, out = nested(function(l) return l:step() end)
    assert.same({ true, 0.1 }, out) -- a's deadline is the next event
    assert.equal(1, util.status_of(list, "a").checks)
    assert.equal(1, util.status_of(list, "b").checks)
    assert.equal(2, list:score("a"))
  end)

  it("run drives the clock; the caller, past its deadline, is counted timed out and its result discarded", function()
    local list, out, c = nested(function(l) return l:run(0.5) end)
    assert.same({ true }, out)
    assert.equal(0.5, c.t)
    local a = util.status_of(list, "a")
    assert.equal(0, a.score)
    assert.equal("health check timed out", a.last_error)
    assert.equal(2, list:score("b"))
  end)

  it("wait_initial returns once the caller timed out (its first round is done)", function()
    local list, out, c = nested(function(l) return l:wait_initial(5) end)
    assert.same({ true, true }, out)
    assert.equal(0.1, c.t)
    assert.equal(0, list:score("a"))
  end)

  it("due raises: the list is driven by step", function()
    local list, out = nested(function(l) return l:due() end)
    assert.is_false(out[1])
    assert.is_truthy(out[2]:find("checks are driven by step()", 1, true))
    assert.equal(2, list:score("a"))
  end)
end)
