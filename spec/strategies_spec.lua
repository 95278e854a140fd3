-- Pick strategies: round_robin (default), weighted (nginx's smooth weighted
-- round robin), least_conn, hash (Maglev) and random; weights, panic mode and
-- slow start. Passive lists with a fake clock; nothing sleeps for real.
local upstream = require "upstream"
local util = require "spec.support.util"
local stats = require "spec.support.stats"
local lists = require "spec.support.lists"

local expect_error = util.expect_error
local NaN, INF = util.NaN, util.INF
local NONE, STRATEGIES = util.NONE, util.STRATEGIES

-- a passive list with a fake clock; returns the list and the clock
local new = lists.new

local function names(n, prefix)
  local out = {}
  for i = 1, n do out[i] = (prefix or "b") .. i end
  return out
end

-- moves b's score below 0 / back to >= 0 with down()/up() (bounded)
local function make_unhealthy(list, b)
  for _ = 1, 50 do
    if list:score(b) < 0 then return end
    list:down(b)
  end
  error("could not take " .. tostring(b) .. " down")
end

local function make_healthy(list, b)
  for _ = 1, 50 do
    if list:score(b) >= 0 then return end
    list:up(b)
  end
  error("could not bring " .. tostring(b) .. " up")
end

-- status reduced to plain values, with the strategy fields
local function snapshot(list)
  return util.snapshot(list, util.STRATEGY_FIELDS)
end

-- 100000 distinct string keys, built once
local KEYS
local function keys()
  if not KEYS then
    KEYS = {}
    for i = 1, 100000 do KEYS[i] = "key-" .. i end
  end
  return KEYS
end

-- the backend of every key (nil where pick failed)
local function mapping(list, ks)
  local m = {}
  for i = 1, #ks do m[i] = list:pick(ks[i]) end
  return m
end

local function shares(m, n)
  local counts = {}
  for i = 1, n do
    local b = m[i]
    if b == nil then b = "nil" end
    counts[b] = (counts[b] or 0) + 1
  end
  for b, k in pairs(counts) do counts[b] = k / n end
  return counts
end

local function assert_near(got, want, tol, what)
  local ok, msg = stats.near(got or 0, want, tol, what)
  assert(ok, msg)
end

describe("strategy option", function()
  it("defaults to round robin: one, two, three, one", function()
    local list = new({ "one", "two", "three" })
    assert.are.same({ "one", "two", "three", "one" }, stats.picks(list, 4))
    local rr = new({ "one", "two", "three" }, { strategy = "round_robin" })
    assert.are.same({ "one", "two", "three", "one", "two" }, stats.picks(rr, 5))
  end)

  it("accepts every strategy name", function()
    for _, s in ipairs(STRATEGIES) do
      local list = new({ "a", "b" }, { strategy = s, seed = 1 })
      local b = list:pick("k")
      assert.is_true(b == "a" or b == "b", s .. " picked " .. tostring(b))
    end
  end)

  it("rejects an unknown strategy", function()
    expect_error(function() new({ "a" }, { strategy = "fastest" }) end, "strategy")
    expect_error(function() new({ "a" }, { strategy = "Weighted" }) end, "strategy")
    expect_error(function() new({ "a" }, { strategy = "" }) end, "strategy")
  end)

  it("rejects a strategy that is not a string", function()
    expect_error(function() new({ "a" }, { strategy = 1 }) end, "strategy")
    expect_error(function() new({ "a" }, { strategy = true }) end, "strategy")
  end)

  it("status() entries have weight 1, tier 0, inflight 0 by default", function()
    for _, s in ipairs(STRATEGIES) do
      local list = new({ "a", "b" }, { strategy = s, seed = 1 })
      for _, e in ipairs(list:status()) do
        assert.are.equal(1, e.weight, s)
        assert.are.equal(0, e.tier, s)
        assert.are.equal(0, e.inflight, s)
      end
      assert.are.equal(1, list:weight("a"))
      assert.is_nil(list:weight("zzz"))
    end
  end)

  it("an empty list picks nil, 'no upstreams available' under every strategy", function()
    for _, s in ipairs(STRATEGIES) do
      local list = new({}, { strategy = s, seed = 1 })
      local b, err = list:pick("k")
      assert.is_nil(b, s)
      assert.are.equal(NONE, err, s)
    end
  end)
end)

describe("keys of pick()", function()
  it("a table key raises 'string or number' under every strategy", function()
    for _, s in ipairs(STRATEGIES) do
      local list = new({ "a", "b" }, { strategy = s, seed = 1 })
      expect_error(function() list:pick({}) end, "string or number")
    end
  end)

  it("is ignored by round_robin, weighted and least_conn", function()
    for _, s in ipairs({ "round_robin", "weighted", "least_conn" }) do
      local opts = { strategy = s }
      if s == "weighted" then opts.weights = { a = 3, b = 1, c = 2 } end
      local plain = new({ "a", "b", "c" }, opts)
      local keyed = new({ "a", "b", "c" }, opts)
      local want = stats.picks(plain, 30)
      local got = {}
      for i = 1, 30 do
        if i % 2 == 0 then got[i] = keyed:pick("key" .. i) else got[i] = keyed:pick(i) end
      end
      assert.are.same(want, got, s)
    end
  end)

  it("is ignored by random: same sequence as pick() with the same seed", function()
    local w = { a = 1, b = 2, c = 3 }
    local plain = new({ "a", "b", "c" }, { strategy = "random", seed = 99, weights = w })
    local keyed = new({ "a", "b", "c" }, { strategy = "random", seed = 99, weights = w })
    local want, got = stats.picks(plain, 500), {}
    for i = 1, 500 do got[i] = keyed:pick("k" .. (i % 7)) end
    assert.are.same(want, got)
  end)
end)

describe("weights", function()
  local function new_w(w, backends, strategy)
    return function()
      return new(backends or { "a", "b", "c" }, { strategy = strategy or "weighted", weights = w })
    end
  end

  it("are read from opts.weights; default 1; weight(b) and status show them", function()
    local list = new({ "a", "b", "c" }, { strategy = "weighted", weights = { a = 5, c = 2 } })
    assert.are.equal(5, list:weight("a"))
    assert.are.equal(1, list:weight("b"))
    assert.are.equal(2, list:weight("c"))
    assert.is_nil(list:weight("d"))
    local w = {}
    for i, s in ipairs(list:status()) do w[i] = s.weight end
    assert.are.same({ 5, 1, 2 }, w)
  end)

  it("apply to every member equal to the key; table backends by identity", function()
    local t1, t2 = {}, {}
    local list = new({ "a", t1, "a", t2 }, { strategy = "weighted", weights = { a = 4, [t2] = 7 } })
    local w = {}
    for i, s in ipairs(list:status()) do w[i] = s.weight end
    assert.are.same({ 4, 1, 4, 7 }, w)
    assert.are.equal(7, list:weight(t2))
    assert.are.equal(1, list:weight(t1))
  end)

  it("accept the maximum 1000000", function()
    local list = new_w({ a = 1000000 })()
    assert.are.equal(1000000, list:weight("a"))
  end)

  for _, case in ipairs({
    { "0", 0 }, { "-1", -1 }, { "1.5", 1.5 }, { "NaN", NaN }, { "inf", INF },
    { "1000001", 1000001 }, { "a string", "2" }, { "a boolean", true },
  }) do
    it("rejects a weight of " .. case[1], function()
      expect_error(new_w({ a = case[2] }), "weight")
    end)
  end

  it("rejects a key that is not one of the backends", function()
    expect_error(new_w({ zzz = 2 }), "weight")
    expect_error(new_w({ a = 2, [{}] = 3 }), "weight")
  end)

  it("rejects weights that are not a table", function()
    expect_error(new_w(5), "weight")
    expect_error(new_w("a=1"), "weight")
  end)

  describe("reconcile(backends, weights)", function()
    it("kept backends keep their weight unless given; new ones get theirs or 1", function()
      local list = new({ "a", "b" }, { strategy = "weighted", weights = { a = 3, b = 4 } })
      list:reconcile({ "a", "b", "c", "d" }, { c = 2 })
      assert.are.equal(3, list:weight("a"))
      assert.are.equal(4, list:weight("b"))
      assert.are.equal(2, list:weight("c"))
      assert.are.equal(1, list:weight("d"))
      list:reconcile({ "a", "c", "d" }, { a = 9 })
      assert.are.equal(9, list:weight("a"))
      assert.are.equal(2, list:weight("c"))
      assert.is_nil(list:weight("b"))
      list:reconcile({ "a", "c", "d" })
      assert.are.equal(9, list:weight("a"))
      -- a backend that left and comes back is new: weight 1 unless given
      list:reconcile({ "a", "c", "d", "b" })
      assert.are.equal(1, list:weight("b"))
    end)

    for _, case in ipairs({
      { "a weight of 0", { "a", "b", "c" }, { c = 0 } },
      { "a fractional weight", { "a", "b" }, { a = 2.5 } },
      { "a NaN weight", { "a", "b" }, { b = NaN } },
      { "a weight above 1000000", { "a", "b", "c" }, { a = 1000001 } },
      { "a key not among the new backends", { "a", "c" }, { b = 2 } },
      { "weights that are not a table", { "a", "c" }, 7 },
    }) do
      it("raises for " .. case[1] .. " and changes nothing", function()
        for _, opts in ipairs({
          { strategy = "weighted", weights = { a = 3 } },
          { strategy = "least_conn" },
          { strategy = "hash", weights = { b = 2 } },
        }) do
          local list = new({ "a", "b" }, opts)
          list:pick("k"); list:pick("k"); list:down("b")
          local before = snapshot(list)
          expect_error(function() list:reconcile(case[2], case[3]) end, "weight")
          assert.are.same(before, snapshot(list), opts.strategy)
          assert.are.equal(2, #list)
        end
      end)
    end
  end)

  describe("set_weight(b, w)", function()
    it("sets every member equal to b and returns true", function()
      local list = new({ "a", "b", "a" }, { strategy = "weighted" })
      assert.are.equal(true, list:set_weight("a", 6))
      local w = {}
      for i, s in ipairs(list:status()) do w[i] = s.weight end
      assert.are.same({ 6, 1, 6 }, w)
      assert.are.equal(6, list:weight("a"))
    end)

    it("returns false for a backend not in the list", function()
      local list = new({ "a", "b" }, { strategy = "weighted" })
      local before = snapshot(list)
      assert.are.equal(false, list:set_weight("zzz", 3))
      assert.are.same(before, snapshot(list))
    end)

    for _, case in ipairs({
      { "0", 0 }, { "-2", -2 }, { "0.5", 0.5 }, { "NaN", NaN }, { "1000001", 1000001 }, { "nil", nil },
    }) do
      it("raises for a weight of " .. case[1] .. " and changes nothing", function()
        local list = new({ "a", "b" }, { strategy = "weighted", weights = { a = 2 } })
        list:pick()
        local before = snapshot(list)
        expect_error(function() list:set_weight("a", case[2]) end, "weight")
        assert.are.same(before, snapshot(list))
      end)
    end
  end)
end)

describe("weighted", function()
  local function weighted(backends, w, extra)
    return new(backends, util.merge({ strategy = "weighted", weights = w }, extra))
  end

  -- weights as a map from a names array and a weights array
  local function wmap(ns, ws)
    local m = {}
    for i = 1, #ns do m[ns[i]] = ws[i] end
    return m
  end

  it("5, 1, 1 gives a a b a c a a, repeating", function()
    local list = weighted({ "a", "b", "c" }, { a = 5, b = 1, c = 1 })
    local period = { "a", "a", "b", "a", "c", "a", "a" }
    for p = 1, 10 do
      assert.are.same(period, stats.picks(list, 7), "period " .. p)
    end
  end)

  it("equal weights are plain round robin", function()
    local list = weighted({ "a", "b", "c" }, { a = 2, b = 2, c = 2 })
    assert.are.same({ "a", "b", "c", "a", "b", "c", "a", "b", "c" }, stats.picks(list, 9))
  end)

  it("matches nginx's smooth weighted round robin for 10 periods", function()
    local rng = stats.rng(4242)
    local cases = {
      { { "a", "b", "c" }, { 3, 2, 1 } },
      { { "a", "b", "c" }, { 1, 2, 3 } },
      { { "a", "b", "c", "d" }, { 4, 4, 1, 7 } },
      { { "a", "b" }, { 1, 100 } },
      { { "a", "b", "a", "c" }, { 2, 3, 2, 1 } }, -- duplicates: each member its own current
    }
    local ns = names(20)
    local ws = {}
    for i = 1, 20 do ws[i] = rng.int(10) end
    cases[#cases + 1] = { ns, ws }
    for _, case in ipairs(cases) do
      local ns_, ws_ = case[1], case[2]
      local list = weighted(ns_, wmap(ns_, ws_))
      local model = stats.swrr(ns_, ws_)
      local total = 0
      for i = 1, #ns_ do total = total + ws_[i] end
      local n = 10 * total
      assert.are.same(model.seq(n), stats.picks(list, n), "weights " .. table.concat(ws_, ","))
    end
  end)

  it("picks each member exactly its weight in every period of sum(weights) picks", function()
    local rng = stats.rng(77)
    for _ = 1, 8 do
      local n = rng.int(12)
      local ns, ws, total = names(n), {}, 0
      for i = 1, n do ws[i] = rng.int(20); total = total + ws[i] end
      local list = weighted(ns, wmap(ns, ws))
      for p = 1, 5 do
        local counts = stats.count_picks(list, total)
        for i = 1, n do
          assert.are.equal(ws[i], counts[ns[i]] or 0,
            string.format("period %s, %s of weight %s", p, ns[i], ws[i]))
        end
      end
    end
  end)

  it("skips an unhealthy member and freezes its current (as nginx skips a down peer)", function()
    local ns, ws = { "a", "b", "c" }, { 5, 1, 1 }
    local list = weighted(ns, wmap(ns, ws))
    local model = stats.swrr(ns, ws)
    local function both(n, what)
      assert.are.same(model.seq(n), stats.picks(list, n), what)
    end
    both(3, "start")
    make_unhealthy(list, "c"); model.set_up("c", false)
    both(10, "c down")
    make_healthy(list, "c"); model.set_up("c", true)
    both(21, "c up again")
    make_unhealthy(list, "a"); model.set_up("a", false)
    both(5, "a down")
    make_healthy(list, "a"); model.set_up("a", true)
    both(70, "a up again")
  end)

  it("over sum(weights) picks with a member down, the others get exactly their weights", function()
    local list = weighted({ "a", "b", "c", "d" }, { a = 3, b = 2, c = 4, d = 1 })
    make_unhealthy(list, "c")
    for p = 1, 4 do
      local counts = stats.count_picks(list, 6)
      assert.are.same({ a = 3, b = 2, d = 1 }, counts, "period " .. p)
    end
  end)

  it("matches the model over 3000 random picks, downs and ups", function()
    local rng = stats.rng(2024)
    local ns, ws = names(6), {}
    for i = 1, 6 do ws[i] = rng.int(9) end
    local list = weighted(ns, wmap(ns, ws))
    local model = stats.swrr(ns, ws)
    local up = {}
    for i = 1, 6 do up[i] = true end
    for op = 1, 3000 do
      local r = rng.int(10)
      if r <= 7 then
        local want = model.pick()
        local got, err = list:pick()
        assert.are.equal(want, got, "op " .. op)
        if want == nil then assert.are.equal(NONE, err) end
      else
        local i = rng.int(6)
        if up[i] then make_unhealthy(list, ns[i]) else make_healthy(list, ns[i]) end
        up[i] = not up[i]
        model.set_up(ns[i], up[i])
      end
    end
  end)

  it("set_weight between periods: the model with the new weights", function()
    local ns, ws = { "a", "b", "c" }, { 5, 1, 1 }
    local list = weighted(ns, wmap(ns, ws))
    stats.picks(list, 21) -- three whole periods: every current is back at 0
    assert.are.equal(true, list:set_weight("b", 4))
    local model = stats.swrr(ns, { 5, 4, 1 })
    assert.are.same(model.seq(100), stats.picks(list, 100))
    local counts = stats.count_picks(list, 10) -- 100 picks = 10 periods of 10
    assert.are.same({ a = 5, b = 4, c = 1 }, counts)
  end)

  it("all members unhealthy: nil, 'no upstreams available'", function()
    local list = weighted({ "a", "b" }, { a = 2 })
    make_unhealthy(list, "a"); make_unhealthy(list, "b")
    local b, err = list:pick()
    assert.is_nil(b)
    assert.are.equal(NONE, err)
    make_healthy(list, "b")
    assert.are.same({ "b", "b" }, stats.picks(list, 2))
  end)

  it("a failing reconcile or set_weight does not disturb the sequence", function()
    local ns, ws = { "a", "b", "c" }, { 5, 1, 1 }
    local list = weighted(ns, wmap(ns, ws))
    local model = stats.swrr(ns, ws)
    assert.are.same(model.seq(4), stats.picks(list, 4))
    expect_error(function() list:reconcile({ "a", "b", "c", "d" }, { d = 0 }) end, "weight")
    expect_error(function() list:set_weight("a", -1) end, "weight")
    expect_error(function() list:reconcile({ "a", "b", "c" }, { zzz = 1 }) end, "weight")
    assert.are.same(model.seq(38), stats.picks(list, 38))
  end)
end)

describe("least_conn", function()
  local function lc(backends, extra)
    return new(backends, util.merge({ strategy = "least_conn", seed = 5 }, extra))
  end

  it("picks the fewest in flight, ties by round robin from after the last pick", function()
    local list = lc({ "a", "b", "c" })
    assert.are.same({ "a", "b", "c", "a" }, stats.picks(list, 4)) -- in flight 2, 1, 1
    assert.are.equal(true, list:release("a"))
    assert.are.equal(true, list:release("a"))
    assert.are.equal(false, list:release("a")) -- nothing left in flight for a
    assert.are.equal(0, list:inflight("a"))
    assert.are.same({ "a", "b", "c" }, stats.picks(list, 3)) -- 1,1,1 -> a; then ties from b
    assert.are.equal(true, list:release("b"))
    assert.are.equal(true, list:release("b"))           -- 1, 0, 2
    assert.are.equal("b", list:pick())                  -- 1, 1, 2
    assert.are.equal("a", list:pick())                  -- from c: c 2, a 1 -> a; 2, 1, 2
    assert.are.equal("b", list:pick())                  -- 2, 2, 2
    assert.are.equal("c", list:pick())                  -- tie, after b -> c; 2, 2, 3
    assert.are.equal(2, list:inflight("a"))
    assert.are.equal(2, list:inflight("b"))
    assert.are.equal(3, list:inflight("c"))
    local inflight = {}
    for i, s in ipairs(list:status()) do inflight[i] = s.inflight end
    assert.are.same({ 2, 2, 3 }, inflight)
  end)

  it("a released member is chosen next", function()
    local list = lc({ "a", "b", "c", "d" })
    stats.picks(list, 8) -- two each
    for _, b in ipairs({ "c", "a", "d", "b", "c" }) do
      assert.are.equal(true, list:release(b))
      assert.are.equal(b, list:pick())
    end
  end)

  it("release() of a backend not in the list or with nothing in flight returns false", function()
    local list = lc({ "a", "b" })
    assert.are.equal(false, list:release("a"))
    assert.are.equal(false, list:release("zzz"))
    assert.are.equal("a", list:pick())
    assert.are.equal(false, list:release("b"))
    assert.are.equal(true, list:release("a"))
    assert.are.equal(false, list:release("a"))
  end)

  it("skips unhealthy members even with nothing in flight", function()
    local list = lc({ "a", "b", "c" })
    stats.picks(list, 3)
    make_unhealthy(list, "b")
    list:release("b")
    assert.are.same({ "a", "c", "a", "c" }, stats.picks(list, 4))
    make_healthy(list, "b")
    assert.are.equal("b", list:pick()) -- 0 in flight against 3 and 3
    make_unhealthy(list, "a"); make_unhealthy(list, "b"); make_unhealthy(list, "c")
    local b, err = list:pick()
    assert.is_nil(b)
    assert.are.equal(NONE, err)
  end)

  local function against_model(n, down, ops, seed)
    local rng = stats.rng(seed)
    local ns = names(n)
    local list = lc(ns)
    local model = stats.least_conn(ns)
    for _, i in ipairs(down) do
      make_unhealthy(list, ns[i]); model.set_up(ns[i], false)
    end
    for op = 1, ops do
      local r = rng.int(10)
      if r <= 6 then
        local want = model.pick()
        local got = list:pick()
        assert.are.equal(want, got, "pick, op " .. op)
      else
        local b = ns[rng.int(n)]
        assert.are.equal(model.release(b), list:release(b), "release " .. b .. ", op " .. op)
      end
    end
    for i = 1, n do
      assert.are.equal(model.inflight[i], list:inflight(ns[i]), ns[i])
    end
  end

  it("matches the exact model over 3000 random picks and releases (5 members)", function()
    against_model(5, {}, 3000, 31)
  end)

  it("matches the exact model with 16 eligible of 20 members", function()
    against_model(20, { 2, 7, 13, 20 }, 3000, 57)
  end)

  it("matches the model through health changes", function()
    local rng = stats.rng(8)
    local ns = names(6)
    local list = lc(ns)
    local model = stats.least_conn(ns)
    local up = { true, true, true, true, true, true }
    for op = 1, 3000 do
      local r = rng.int(10)
      if r <= 5 then
        assert.are.equal(model.pick(), list:pick(), "pick, op " .. op)
      elseif r <= 8 then
        local b = ns[rng.int(6)]
        assert.are.equal(model.release(b), list:release(b), "release, op " .. op)
      else
        local i = rng.int(6)
        if up[i] then make_unhealthy(list, ns[i]) else make_healthy(list, ns[i]) end
        up[i] = not up[i]
        model.set_up(ns[i], up[i])
      end
    end
  end)

  it("in-flight counts survive reconcile for kept backends", function()
    local list = lc({ "a", "b", "c" })
    stats.picks(list, 5) -- a2 b2 c1
    list:reconcile({ "b", "c", "d", "e" })
    assert.are.equal(2, list:inflight("b"))
    assert.are.equal(1, list:inflight("c"))
    assert.are.equal(0, list:inflight("d"))
    assert.are.equal(0, list:inflight("e"))
    local inflight = {}
    for i, s in ipairs(list:status()) do inflight[i] = s.inflight end
    assert.are.same({ 2, 1, 0, 0 }, inflight)
    assert.are.equal(false, list:release("a")) -- gone with its count
    assert.are.same({ "d", "e" }, stats.set(stats.picks(list, 2))) -- the two with 0
    assert.are_not.equal("b", list:pick()) -- b 2 against c, d, e at 1
  end)

  it("at n = 100 (power of two choices) a member with many in flight is almost never picked", function()
    local ns = names(100)
    local list = lc(ns, { seed = 12345 })
    local hog = ns[37]
    for _, b in ipairs(ns) do
      if b ~= hog then make_unhealthy(list, b) end
    end
    for _ = 1, 50 do assert.are.equal(hog, list:pick()) end -- the only eligible one
    assert.are.equal(50, list:inflight(hog))
    for _, b in ipairs(ns) do make_healthy(list, b) end
    assert.are.equal(50, list:inflight(hog))
    local hog_picks, seen, distinct = 0, {}, 0
    for _ = 1, 10000 do
      local b = list:pick()
      if b == hog then
        hog_picks = hog_picks + 1
      else
        assert.are.equal(true, list:release(b))
      end
      if not seen[b] then seen[b] = true; distinct = distinct + 1 end
    end
    assert.is_true(hog_picks <= 5, "hog picked " .. hog_picks .. " times of 10000")
    assert.is_true(distinct >= 50, "only " .. distinct .. " distinct members picked")
  end)

  it("at n = 100 without releases the load stays within a few of the mean", function()
    local ns = names(100)
    local list = lc(ns, { seed = 777 })
    for _ = 1, 1000 do assert.is_string(list:pick()) end
    local max = 0
    for _, b in ipairs(ns) do
      local k = list:inflight(b)
      if k > max then max = k end
    end
    -- two choices: about mean + log log n; one random choice would reach ~20
    assert.is_true(max <= 15, "max in flight " .. max .. " (mean 10)")
  end)
end)

describe("hash", function()
  local function hashed(backends, w, extra)
    return new(backends, util.merge({ strategy = "hash", weights = w, seed = 3 }, extra))
  end

  it("pick() without a key raises 'key'", function()
    local list = hashed({ "a", "b" })
    expect_error(function() list:pick() end, "key")
    expect_error(function() list:pick(nil) end, "key")
  end)

  it("a table key raises 'string or number'", function()
    local list = hashed({ "a", "b" })
    expect_error(function() list:pick({}) end, "string or number")
  end)

  it("the same key gives the same backend, also after score moves that keep all healthy", function()
    local list = hashed(names(7))
    local ks = {}
    for i = 1, 5000 do ks[i] = "k" .. i end
    for i = 5001, 10000 do ks[i] = i * 7 end -- number keys
    local m1 = mapping(list, ks)
    for i = 1, #ks do assert.is_string(m1[i]) end
    assert.are.same(m1, mapping(list, ks))
    list:up("b3"); list:down("b5") -- b5: 1 -> 0, still healthy
    assert.are.same(m1, mapping(list, ks))
  end)

  it("spreads 100000 string keys over 5 equal backends within 2 points of 20%", function()
    local list = hashed(names(5))
    local s = shares(mapping(list, keys()), 100000)
    for _, b in ipairs(names(5)) do assert_near(s[b], 0.2, 0.02, b) end
  end)

  it("spreads 100000 number keys over 5 equal backends within 2 points of 20%", function()
    local list = hashed(names(5))
    local m = {}
    for i = 1, 100000 do m[i] = list:pick(i) end
    local s = shares(m, 100000)
    for _, b in ipairs(names(5)) do assert_near(s[b], 0.2, 0.02, b) end
  end)

  it("respects weights: 1, 2, 1 give 25/50/25% within 2 points", function()
    local list = hashed({ "a", "b", "c" }, { a = 1, b = 2, c = 1 })
    local s = shares(mapping(list, keys()), 100000)
    assert_near(s.a, 0.25, 0.02, "a")
    assert_near(s.b, 0.50, 0.02, "b")
    assert_near(s.c, 0.25, 0.02, "c")
  end)

  -- how many keys changed backend; asserts that every key of `gone` moved
  -- to some other backend
  local function moved(m1, m2, gone)
    local changed, of_gone = 0, 0
    for i = 1, #m1 do
      if m1[i] ~= m2[i] then changed = changed + 1 end
      if m1[i] == gone then
        of_gone = of_gone + 1
        assert(m2[i] ~= nil and m2[i] ~= gone, "a key of " .. gone .. " did not move: " .. tostring(m2[i]))
      end
    end
    return changed / #m1, of_gone / #m1
  end

  for _, n in ipairs({ 5, 10, 20 }) do
    it("when one of " .. n .. " turns unhealthy, only about its keys move (<= 1/n + 0.02)", function()
      local list = hashed(names(n))
      local m1 = mapping(list, keys())
      make_unhealthy(list, "b2")
      local m2 = mapping(list, keys())
      local frac, own = moved(m1, m2, "b2")
      assert_near(own, 1 / n, 0.02, "share of b2 before")
      assert.is_true(frac <= 1 / n + 0.02, string.format("changed %.4f, b2 had %.4f", frac, own))
    end)

    it("when one of " .. n .. " leaves by reconcile, only about its keys move (<= 1/n + 0.02)", function()
      local ns = names(n)
      local list = hashed(ns)
      local m1 = mapping(list, keys())
      local rest = {}
      for _, b in ipairs(ns) do if b ~= "b4" then rest[#rest + 1] = b end end
      list:reconcile(rest)
      local m2 = mapping(list, keys())
      local frac, own = moved(m1, m2, "b4")
      assert_near(own, 1 / n, 0.02, "share of b4 before")
      assert.is_true(frac <= 1 / n + 0.02, string.format("changed %.4f, b4 had %.4f", frac, own))
    end)
  end

  it("when the unhealthy one recovers, every key maps as before", function()
    local list = hashed(names(5))
    local m1 = mapping(list, keys())
    make_unhealthy(list, "b2")
    mapping(list, keys())
    make_healthy(list, "b2")
    local m3 = mapping(list, keys())
    local diff = 0
    for i = 1, #m1 do
      if m1[i] ~= m3[i] then diff = diff + 1 end
    end
    assert.are.equal(0, diff)
  end)

  it("when a 6th backend joins by reconcile, at most about 1/6 + 0.02 of the keys move", function()
    local ns = names(5)
    local list = hashed(ns)
    local m1 = mapping(list, keys())
    list:reconcile(names(6))
    local m2 = mapping(list, keys())
    local frac = moved(m1, m2, "none")
    assert.is_true(frac <= 1 / 6 + 0.02, "changed " .. frac)
    local s = shares(m2, 100000)
    assert_near(s.b6, 1 / 6, 0.02, "b6")
  end)

  it("no healthy backend: nil, 'no upstreams available'", function()
    local list = hashed({ "a", "b" })
    make_unhealthy(list, "a"); make_unhealthy(list, "b")
    local b, err = list:pick("k")
    assert.is_nil(b)
    assert.are.equal(NONE, err)
    make_healthy(list, "b")
    assert.are.equal("b", list:pick("k"))
  end)
end)

describe("random", function()
  local function rnd(backends, w, seed, extra)
    return new(backends, util.merge({ strategy = "random", weights = w, seed = seed or 2718 }, extra))
  end

  it("is weighted-uniform: chi-square of 100000 picks over weights 1,1,2,3,3 < 20 (4 d.f.)", function()
    local ns, ws = { "a", "b", "c", "d", "e" }, { 1, 1, 2, 3, 3 }
    local list = rnd(ns, { a = 1, b = 1, c = 2, d = 3, e = 3 })
    local counts = stats.count_picks(list, 100000)
    assert.are.same(ns, stats.keys(counts))
    local chi2 = stats.chi2(counts, ns, ws, 100000)
    assert.is_true(chi2 < 20, "chi2 = " .. chi2)
  end)

  it("equal weights: chi-square over 5 backends < 20", function()
    local ns = names(5)
    local list = rnd(ns, nil, 31337)
    local counts = stats.count_picks(list, 100000)
    local chi2 = stats.chi2(counts, ns, { 1, 1, 1, 1, 1 }, 100000)
    assert.is_true(chi2 < 20, "chi2 = " .. chi2)
  end)

  it("never picks an unhealthy member", function()
    local list = rnd({ "a", "b", "c", "d" }, { a = 1, b = 5, c = 1, d = 1 })
    make_unhealthy(list, "b")
    make_unhealthy(list, "d")
    local counts = stats.count_picks(list, 20000)
    assert.are.same({ "a", "c" }, stats.keys(counts))
    assert_near(counts.a / 20000, 0.5, 0.03, "a")
    make_unhealthy(list, "a"); make_unhealthy(list, "c")
    local b, err = list:pick()
    assert.is_nil(b)
    assert.are.equal(NONE, err)
  end)

  it("is reproducible with a seed; another seed gives another sequence", function()
    local ns = names(5)
    local one = stats.picks(rnd(ns, nil, 42), 1000)
    local two = stats.picks(rnd(ns, nil, 42), 1000)
    local other = stats.picks(rnd(ns, nil, 43), 1000)
    assert.are.same(one, two)
    assert.are_not.same(one, other)
  end)
end)

describe("panic", function()
  local function four(p)
    return new({ "a", "b", "c", "d" }, { panic = p })
  end

  it("fewer than p of the members healthy: picks from all of them", function()
    local list = four(0.5)
    for _, b in ipairs({ "b", "c", "d" }) do make_unhealthy(list, b) end
    local seq = stats.picks(list, 8)
    local counts = stats.count_picks(list, 8)
    assert.are.same({ a = 2, b = 2, c = 2, d = 2 }, counts)
    for i = 1, 4 do assert.are.equal(seq[i], seq[i + 4]) end
    assert.are.same({ "a", "b", "c", "d" }, stats.set({ seq[1], seq[2], seq[3], seq[4] }))
  end)

  it("2 of 4 healthy is not below 0.5 * 4: only the healthy are picked", function()
    local list = four(0.5)
    for _, b in ipairs({ "b", "c", "d" }) do make_unhealthy(list, b) end
    make_healthy(list, "c")
    local seq = stats.picks(list, 6)
    assert.are.same({ a = 3, c = 3 }, stats.count_picks(list, 6))
    for i = 1, 5 do assert.are_not.equal(seq[i], seq[i + 1]) end
    assert.are.same({ "a", "c" }, stats.set(seq))
  end)

  it("all members unhealthy with panic: still picks from all", function()
    local list = four(0.5)
    for _, b in ipairs({ "a", "b", "c", "d" }) do make_unhealthy(list, b) end
    assert.are.same({ a = 1, b = 1, c = 1, d = 1 }, stats.count_picks(list, 4))
  end)

  it("panic 1: one unhealthy of 4 is already below 1 * 4", function()
    local list = four(1)
    make_unhealthy(list, "d")
    assert.are.same({ a = 2, b = 2, c = 2, d = 2 }, stats.count_picks(list, 8))
  end)

  it("off by default (and with 0): nothing healthy is nil", function()
    for _, p in ipairs({ 0, false }) do
      local list
      if p then list = four(p) else list = new({ "a", "b", "c", "d" }) end
      for _, b in ipairs({ "a", "b", "c", "d" }) do make_unhealthy(list, b) end
      local b, err = list:pick()
      assert.is_nil(b)
      assert.are.equal(NONE, err)
    end
  end)

  it("an empty list still has nothing to pick", function()
    local list = new({}, { panic = 1 })
    local b, err = list:pick()
    assert.is_nil(b)
    assert.are.equal(NONE, err)
  end)

  for _, case in ipairs({ { "-0.1", -0.1 }, { "1.5", 1.5 }, { "NaN", NaN }, { "a string", "0.5" } }) do
    it("rejects panic = " .. case[1], function()
      expect_error(function() four(case[2]) end, "panic")
    end)
  end
end)

describe("slow_start", function()
  local T0 = 1000
  local N = 40000

  -- share of b in N picks
  local function share(list, b)
    return (stats.count_picks(list, N)[b] or 0) / N
  end

  -- b: down below 0 and up again at the clock's current time
  local function recover(list, b)
    make_unhealthy(list, b)
    make_healthy(list, b)
  end

  it("random: a recovered backend ramps from 10% to 100% of its weight over slow_start", function()
    local list, c = new({ "a", "b" }, { strategy = "random", seed = 99, slow_start = 10 }, T0)
    assert_near(share(list, "b"), 0.5, 0.012, "b before")
    recover(list, "b")
    assert_near(share(list, "b"), 0.1 / 1.1, 0.012, "b at 0 s (10%)")
    c.t = T0 + 2.5
    assert_near(share(list, "b"), 0.3 / 1.3, 0.012, "b at 2.5 s (30%)")
    c.t = T0 + 5.5
    assert_near(share(list, "b"), 0.6 / 1.6, 0.012, "b at 5.5 s (60%)")
    c.t = T0 + 10.5
    assert_near(share(list, "b"), 0.5, 0.012, "b at 10.5 s (100%)")
    c.t = T0 + 100
    assert_near(share(list, "b"), 0.5, 0.012, "b at 100 s")
  end)

  it("random: without slow_start a recovered backend gets its full share at once", function()
    local list = new({ "a", "b" }, { strategy = "random", seed = 99 }, T0)
    recover(list, "b")
    assert_near(share(list, "b"), 0.5, 0.012, "b")
  end)

  it("random: a backend added by reconcile ramps up too; initial members do not", function()
    local list, c = new({ "a", "b" }, { strategy = "random", seed = 5, slow_start = 10 }, T0)
    assert_near(share(list, "a"), 0.5, 0.012, "a at creation")
    list:reconcile({ "a", "b", "c" })
    assert_near(share(list, "c"), 0.1 / 2.1, 0.012, "c at 0 s")
    c.t = T0 + 10.5
    assert_near(share(list, "c"), 1 / 3, 0.012, "c at 10.5 s")
  end)

  it("weighted: 11 picks right after recovery are 10 a and 1 b; later 1:1", function()
    local list, c = new({ "a", "b" }, { strategy = "weighted", slow_start = 10 }, T0)
    assert.are.same({ a = 10, b = 10 }, stats.count_picks(list, 20))
    recover(list, "b")
    assert.are.same({ a = 10, b = 1 }, stats.count_picks(list, 11))
    assert.are.same({ a = 10, b = 1 }, stats.count_picks(list, 11))
    c.t = T0 + 10.5
    assert.are.same({ a = 10, b = 10 }, stats.count_picks(list, 20))
  end)

  it("hash: a recovered backend's share of the keys ramps up with its weight", function()
    local list, c = new({ "a", "b" }, { strategy = "hash", seed = 4, slow_start = 10 }, T0)
    local ks = keys()
    assert_near(shares(mapping(list, ks), #ks).b, 0.5, 0.02, "b before")
    recover(list, "b")
    assert_near(shares(mapping(list, ks), #ks).b, 0.1 / 1.1, 0.02, "b at 0 s (10%)")
    c.t = T0 + 5.5
    assert_near(shares(mapping(list, ks), #ks).b, 0.6 / 1.6, 0.02, "b at 5.5 s (60%)")
    c.t = T0 + 10.5
    assert_near(shares(mapping(list, ks), #ks).b, 0.5, 0.02, "b at 10.5 s (100%)")
  end)

  it("rejects a negative or NaN slow_start", function()
    expect_error(function() new({ "a" }, { slow_start = -1 }) end, "slow_start")
    expect_error(function() new({ "a" }, { slow_start = NaN }) end, "slow_start")
  end)
end)

describe("hash across a growing list", function()
  it("moves only the new backend's share when reconcile outgrows the block", function()
    local bs = {}
    for i = 1, 200 do bs[i] = "10.1." .. math.floor(i / 256) .. "." .. (i % 256) .. ":80" end
    local l = upstream.new(bs, { strategy = "hash" }) -- a full block: the next add grows it
    local before = {}
    for k = 1, 20000 do before[k] = l:pick("key-" .. k) end
    local more = {}
    for i = 1, 201 do more[i] = bs[i] or "10.9.9.9:80" end
    l:reconcile(more)
    local moved = 0
    for k = 1, 20000 do if l:pick("key-" .. k) ~= before[k] then moved = moved + 1 end end
    assert.is_true(moved / 20000 <= 1 / 201 + 0.02, "moved " .. moved / 20000)
  end)
end)

describe("hash at scale (issue 9)", function()
  -- a list of 1000 has a table of 100003 entries: after a change the picks
  -- build the next one a slice each, reading the last one meanwhile; its
  -- first table too (until it is done, a key's pick is the next eligible
  -- backend from a position the key gives)
  local function built(l)
    for i = 1, 20000 do l:pick("warm-" .. i) end
    return l
  end
  it("right after a change no key of another backend moves; once built, the table of a new list", function()
    local bs = names(1000)
    local l = built(upstream.new(bs, { strategy = "hash" }))
    local ks = {}
    for i = 1, 200 do ks[i] = "key-" .. i end
    local m1 = mapping(l, ks)
    make_unhealthy(l, "b10")
    for i = 1, #ks do -- the next 200 picks: the build is under way
      local b = l:pick(ks[i])
      assert.are_not.equal("b10", b)
      if m1[i] ~= "b10" then assert.are.equal(m1[i], b, ks[i]) end
    end
    for i = 1, 20000 do l:pick("warm-" .. i) end -- the build ends
    local fresh = upstream.new(bs, { strategy = "hash" })
    make_unhealthy(fresh, "b10")
    built(fresh)
    assert.are.same(mapping(fresh, keys()), mapping(l, keys()))
  end)

  it("one weight of 1e6 among 3000 gets its share of the keys, not all of them", function()
    local bs = names(3000)
    local l = built(upstream.new(bs, { strategy = "hash", weights = { b1 = 1000000 } }))
    local s = shares(mapping(l, keys()), 100000)
    assert_near(s.b1, 1e6 / (1e6 + 2999), 0.001, "b1")
  end)
end)
