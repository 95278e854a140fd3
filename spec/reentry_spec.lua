-- Abuse an adversarial user would try: callbacks that reconcile or shut
-- the list down in the middle of a call, odd options, strict backends.
-- What a method does when called from inside the list's own callbacks is
-- written in docs/ARCHITECTURE.md ("Calls from callbacks").
local upstream = require "upstream"
local util = require "spec.support.util"

local expect_error = util.expect_error

-- a clock that calls hook() once, on its k-th reading after arm()
local function hooked_clock()
  local c = { t = 0, armed = false }
  c.clock = function()
    c.t = c.t + 1
    if c.armed then
      c.armed = false
      c.hook()
      collectgarbage(); collectgarbage()
    end
    return c.t
  end
  c.sleep = function(s) c.t = c.t + s end
  return c
end

local finalizer = util.finalizer

local function set_of(t)
  local s = {}
  for _, v in ipairs(t) do s[v] = true end
  return s
end

describe("a callback that reconciles the list", function()
  it("during pick: the pick is made from the reconciled list", function()
    local c = hooked_clock()
    local list = upstream.new({ "a", "b" }, { slow_start = 10, clock = c.clock })
    list:reconcile({ "a", "b", "c" })
    c.hook = function() list:reconcile({ "x", "y", "z", "w", "v" }) end
    c.armed = true
    local b = list:pick()
    assert.is_true(set_of({ "x", "y", "z", "w", "v" })[b])
    assert.equal(5, #list)
  end)

  it("during down: the backend named is the one moved, not the slot's new owner", function()
    local c = hooked_clock()
    local list = upstream.new({ "a", "b", "c" }, { slow_start = 10, clock = c.clock })
    c.hook = function() list:reconcile({ "c", "d", "e", "f", "g", "h" }) end
    c.armed = true
    list:down("a") -- a was removed by the callback: nothing to move
    for _, b in ipairs({ "c", "d", "e", "f", "g", "h" }) do
      assert.equal(1, list:score(b), b)
    end
    c.hook = function() list:reconcile({ "h", "g", "c" }) end
    c.armed = true
    list:down("c")
    assert.equal(0, list:score("c"))
    assert.equal(1, list:score("g"))
    assert.equal(1, list:score("h"))
  end)

  it("during up: a ring walk over a replaced block never loops", function()
    local c = hooked_clock()
    local list = upstream.new({ "a", "a", "b" }, { slow_start = 10, clock = c.clock })
    list:down("a"); list:down("a")
    c.hook = function() list:reconcile({ "b", "x", "a", "y", "z" }) end
    c.armed = true
    list:up("a")
    assert.equal(0, list:score("a"))
  end)

  it("during reconcile (its clock): the outer reconcile raises and the inner one stands", function()
    local c = hooked_clock()
    local list = upstream.new({ "a" }, { slow_start = 10, clock = c.clock })
    c.hook = function() list:reconcile({ "p", "q" }) end
    c.armed = true
    expect_error(function() list:reconcile({ "a", "b", "c", "d", "e" }) end,
      "upstream.list: reconcile", "reconciled")
    assert.equal(2, #list)
    assert.equal("p", list:status()[1].backend)
    assert.equal("q", list:status()[2].backend)
  end)

  it("during reconcile (a backend's __index): the outer reconcile raises and the inner one stands", function()
    local list
    local tricky = setmetatable({}, { __index = function(_, k)
      if k == "healthcheck" then list:reconcile({ "p" }); collectgarbage() end
    end })
    list = upstream.new({ "a" })
    expect_error(function() list:reconcile({ "a", tricky, "b", "c" }) end, "reconciled")
    assert.equal(1, #list)
    assert.equal("p", list:pick())
  end)

  it("during status (a finalizer): status is a consistent snapshot", function()
    local list = upstream.new({ "a", "b", "c" })
    for _ = 1, 50 do
      finalizer(function()
        pcall(list.reconcile, list, { "d", "e", "f", "g", "h", "i", "j", "k" })
      end)
    end
    for _ = 1, 20 do
      local st = list:status()
      assert.is_true(#st == 3 or #st == 8)
      for _, s in ipairs(st) do assert.is_string(s.backend) end
    end
    collectgarbage()
    assert.equal(8, #list)
  end)

  it("during a check run by step: the result of a removed backend is discarded", function()
    local c = util.fake_clock(0)
    local list
    list = upstream.new({ "a", "b" }, { clock = c.clock, sleep = c.sleep, check = function(b)
      if b == "a" then list:reconcile({ "b", "c", "d", "e", "f" }); collectgarbage() end
      return false
    end })
    list:step()
    assert.is_nil(list:score("a"))
    assert.equal(5, #list)
    for _, b in ipairs({ "c", "d", "e", "f" }) do assert.equal(1, list:score(b), b) end
  end)
end)

describe("a callback that shuts the list down", function()
  it("during pick, picks go on", function()
    local c = hooked_clock()
    local list = upstream.new({ "a", "b" }, { slow_start = 10, clock = c.clock })
    list:reconcile({ "a", "b", "c" })
    c.hook = function() list:shutdown() end
    c.armed = true
    assert.is_string(list:pick())
    assert.is_nil(list:step())
  end)

  it("during a check, step ends and no later check starts", function()
    local c = util.fake_clock(0)
    local list, runs = nil, 0
    list = upstream.new({ "a", "b", "c" }, { clock = c.clock, sleep = c.sleep, check = function()
      runs = runs + 1
      list:shutdown()
      return true
    end })
    assert.is_nil(list:step())
    assert.equal(1, runs)
    assert.is_nil(list:step())
  end)
end)

describe("options", function()
  it("seed = 0 repeats like any other seed", function()
    local function firsts(seed)
      local c, out = util.fake_clock(0), {}
      local l = upstream.new({ "a", "b", "c", "d" }, { clock = c.clock, jitter = 1, seed = seed,
        check = function() return true end })
      for _ = 1, 10 do
        c.t = c.t + 0.1
        for _, j in ipairs(l:due()) do out[#out + 1] = j.backend .. "@" .. c.t end
      end
      local r = upstream.new({ "a", "b", "c", "d" }, { strategy = "random", seed = seed })
      for _ = 1, 20 do out[#out + 1] = r:pick() end
      return table.concat(out, " ")
    end
    assert.equal(firsts(0), firsts(0))
    assert.are_not.equal(firsts(0), firsts(1))
  end)

  it("a weight given as a string says it was a string", function()
    expect_error(function() upstream.new({ "a" }, { weights = { a = "2" } }) end,
      'a weight must be an integer in [1, 1000000] (got string "2")')
  end)

  it("NaN prints as nan", function()
    expect_error(function() upstream.new({ "a" }, { interval = 0 / 0 }) end,
      "option 'interval' must be a finite number (got nan)")
  end)
end)

describe("backends", function()
  it("a strict object whose __index raises on unknown fields is a passive backend", function()
    local strict = setmetatable({}, { __index = function(_, k) error("no field " .. tostring(k)) end })
    local list = upstream.new({ strict, "b" })
    assert.equal(0, list:checked())
    list:reconcile({ "b", strict, setmetatable({}, getmetatable(strict)) })
    assert.equal(3, #list)
    assert.equal(0, list:checked())
  end)

  it("a userdata without __index is a passive backend", function()
    local u = io.tmpfile()
    local mt = debug.getmetatable(u)
    debug.setmetatable(u, {})
    local ok, err = pcall(function()
      local list = upstream.new({ u, "b" })
      assert.equal(0, list:checked())
      list:reconcile({ "b", u })
      assert.equal(2, #list)
    end)
    debug.setmetatable(u, mt)
    u:close()
    assert(ok, err)
  end)
end)

