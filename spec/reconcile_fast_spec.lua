-- reconcile in place (issue 9, item 5): when the kept and added members
-- fit in the list's slots, reconcile edits the block and the tables where
-- they are instead of building new ones. What it allocates is measured
-- here (garbage made per call, a count, not a time); what it does must be
-- what the README says of reconcile, whichever way it went.
local upstream = require "upstream"
local util = require "spec.support.util"

local expect_error = util.expect_error

local function names(n, tag)
  local t = {}
  for i = 1, n do t[i] = (tag or "b") .. i end
  return t
end

-- KB of garbage one call of fn makes, the collector stopped around it.
local function kb_of(fn)
  collectgarbage()
  collectgarbage("stop")
  local before = collectgarbage("count")
  fn()
  local kb = collectgarbage("count") - before
  collectgarbage("restart")
  collectgarbage()
  return kb
end

local function backends_of(list)
  local out = {}
  for i, s in ipairs(list:status()) do out[i] = s.backend end
  return out
end

-- The slot table holds exactly the members.
local function slots_match(list)
  local slots = list:_slots()
  local members, inslots = {}, 0
  for _, b in ipairs(backends_of(list)) do members[b] = (members[b] or 0) + 1 end
  for _, b in pairs(slots) do
    inslots = inslots + 1
    assert.is_truthy(members[b], tostring(b))
  end
  assert.equal(#list, inslots)
end

describe("reconcile in place: what a call allocates", function()
  local N = 5000

  -- before: a new block and new slot and index tables, about 250 bytes
  -- per member; a pure-Lua list (bench/lualist.lua) makes about 90
  it("an unchanged set: a few bytes per member at most", function()
    local bs = names(N)
    local list = upstream.new(bs)
    list:reconcile(bs)
    local kb = kb_of(function() list:reconcile(bs) end)
    assert.is_true(kb * 1024 / N < 8, string.format("%.1f B/member", kb * 1024 / N))
    assert.equal(N, #list)
  end)

  it("one backend replaced, and 1% replaced: a few bytes per member at most", function()
    local bs = names(N)
    for _, k in ipairs({ 1, math.floor(N / 100) }) do
      local other = names(N)
      for i = 1, k do other[i] = "x" .. i end
      local list = upstream.new(bs)
      list:reconcile(other)
      local kb = kb_of(function() list:reconcile(bs) end)
      assert.is_true(kb * 1024 / N < 8, string.format("%d replaced: %.1f B/member", k, kb * 1024 / N))
      assert.are.same(bs, (function()
        local sorted = backends_of(list)
        table.sort(sorted, function(a, b) return tonumber(a:sub(2)) < tonumber(b:sub(2)) end)
        return sorted
      end)())
    end
  end)
end)

describe("reconcile in place: the documented behaviour", function()
  it("keeps the kept members' scores, errors and order; appends the new in order", function()
    local c = util.fake_clock(0)
    local list = upstream.new({ "a", "b", "c", "d" }, {
      clock = c.clock, sleep = c.sleep,
      check = function(b) if b == "b" then return false, "b is down" end return true end,
    })
    list:step()
    list:down("c")
    list:reconcile({ "e", "d", "c", "b", "e", "f" }) -- "a" leaves, "e" given twice
    assert.are.same({ "b", "c", "d", "e", "f" }, backends_of(list))
    assert.equal("b is down", util.status_of(list, "b").last_error)
    assert.equal(1, util.status_of(list, "b").checks)
    assert.is_nil(list:score("a"))
    assert.equal(list:score("d") - 1, list:score("c"))
    slots_match(list)
  end)

  it("keeps rings of equal backends whole, and drops them whole", function()
    local list = upstream.new({ "a", "b", "a", "c" })
    list:down("a")
    list:reconcile({ "c", "a", "d" })
    assert.are.same({ "a", "a", "c", "d" }, backends_of(list))
    list:up("a")
    local st = list:status()
    assert.equal(st[1].score, st[2].score)
    list:reconcile({ "c", "d", "e" })
    assert.are.same({ "c", "d", "e" }, backends_of(list))
    slots_match(list)
  end)

  it("sets the weights it names and keeps the others", function()
    local list = upstream.new({ "a", "b", "c" }, { strategy = "weighted", weights = { a = 5, b = 7 } })
    list:reconcile({ "a", "b", "c", "d" }, { b = 2, d = 9 })
    assert.equal(5, list:weight("a"))
    assert.equal(2, list:weight("b"))
    assert.equal(1, list:weight("c"))
    assert.equal(9, list:weight("d"))
  end)

  it("a bad weight or a weight for another backend: the list unchanged", function()
    local list = upstream.new({ "a", "b" })
    expect_error(function() list:reconcile({ "a", "x" }, { y = 2 }) end,
      "weights name", "not one of the backends")
    expect_error(function() list:reconcile({ "a", "x" }, { x = 0 }) end, "a weight must be")
    assert.are.same({ "a", "b" }, backends_of(list))
    assert.is_nil(list:score("x"))
    list:reconcile({ "b", "x" })
    assert.are.same({ "b", "x" }, backends_of(list))
    assert.equal(1, list:score("x"))
    slots_match(list)
  end)

  it("bumps the slot table's version every time, the table is the list's", function()
    local list = upstream.new({ "a", "b" })
    local _, v0 = list:_slots()
    list:reconcile({ "a", "b" })
    local slots, v1 = list:_slots()
    assert.are_not.equal(v0, v1)
    list:reconcile({ "a", "c" })
    local _, v2 = list:_slots()
    assert.are_not.equal(v1, v2)
    assert.equal("a", slots[1])
    for _ = 1, 4 do
      local b = list:pick()
      assert.is_true(b == "a" or b == "c")
    end
  end)

  it("discards the result of a removed backend's running check", function()
    local c = util.fake_clock(0)
    local list = upstream.new({ "a", "b" }, { clock = c.clock, sleep = c.sleep, timeout = 10,
      check = function(b)
        if b == "a" then upstream.sleep(1) end
        return false
      end })
    list:step()
    list:reconcile({ "b", "c" }) -- "a" leaves while its check sleeps
    list:reconcile({ "a", "b", "c" }) -- and comes back, in a new check's slot
    c.t = 2
    list:step()
    assert.equal(1, list:score("a"))
  end)

  it("agrees with a model over random pushes (in place, and grown)", function()
    local rnd = 12345
    local function rand(k)
      rnd = (rnd * 1103515245 + 12345) % 2147483648
      return rnd % k + 1
    end
    local list = upstream.new({ "p1" })
    local order, score = { "p1" }, { p1 = 1 }
    for _ = 1, 200 do
      local new, seen = {}, {}
      for _ = 1, rand(12) - 1 do new[#new + 1] = "p" .. rand(16) end
      -- the model: kept in their order, new ones appended once
      local set = {}
      for _, b in ipairs(new) do set[b] = true end
      local o = {}
      for _, b in ipairs(order) do if set[b] then o[#o + 1] = b; seen[b] = true end end
      for _, b in ipairs(new) do
        if not seen[b] then o[#o + 1] = b; seen[b] = true; score[b] = 1 end
      end
      for b in pairs(score) do if not set[b] then score[b] = nil end end
      order = o
      list:reconcile(new)
      assert.are.same(order, backends_of(list))
      if #order > 0 then
        local b = order[rand(#order)]
        list:down(b)
        score[b] = math.max(score[b] - 1, -3)
      end
      for b, s in pairs(score) do assert.equal(s, list:score(b), b) end
      slots_match(list)
    end
  end)
end)

describe("reconcile in place, from callbacks", function()
  it("a healthcheck lookup that reconciles: the outer call raises, the list is the inner one's", function()
    local list
    local sneaky = setmetatable({}, { __index = function(_, k)
      if k == "healthcheck" then list:reconcile({ "p", "q" }) end
    end })
    list = upstream.new({ "a", "b" })
    expect_error(function() list:reconcile({ "a", sneaky }) end, "reconciled by a callback")
    assert.are.same({ "p", "q" }, backends_of(list))
    slots_match(list)
  end)

  it("a lookup whose reconcile shrinks the block the outer call counted in: the outer call raises", function()
    local list
    local sneaky = setmetatable({}, { __index = function(_, k)
      if k == "healthcheck" then list:reconcile({ "b" }) end
    end })
    list = upstream.new({ "a", "b", "c", "d", "e" }) -- room for the outer call
    expect_error(function() list:reconcile({ "a", "b", "c", "d", sneaky }) end,
      "reconciled by a callback")
    assert.are.same({ "b" }, backends_of(list))
    slots_match(list)
  end)

  it("status while finalizers reconcile to a set of another size: a snapshot of one set", function()
    -- big enough for a collection cycle to end inside one status()
    local small, big = names(3, "s"), names(2000, "g")
    local list = upstream.new(big)
    list:reconcile(small) -- the block keeps room for the big set: every
    list:reconcile(big)   -- reconcile between the two goes in place
    local issmall, isbig = {}, {}
    for _, b in ipairs(small) do issmall[b] = true end
    for _, b in ipairs(big) do isbig[b] = true end
    collectgarbage() -- the same start whatever the specs before left behind
    local pause = collectgarbage("setpause", 0)
    local mul = collectgarbage("setstepmul", 1000)
    local k, inside, instatus, active = 0, 0, false, true
    local function arm()
      util.finalizer(function()
        if not active then return end
        k = k + 1
        if instatus then inside = inside + 1 end
        pcall(list.reconcile, list, k % 2 == 0 and small or big)
        arm()
      end)
    end
    arm()
    local ok, err = pcall(function()
      -- until finalizers have reconciled inside status() 20 times
      for _ = 1, 300 do
        instatus = true
        local st = list:status()
        instatus = false
        local of = (#st == 3 and issmall) or (#st == 2000 and isbig)
        assert.is_truthy(of, "rows: " .. #st)
        for _, s in ipairs(st) do assert.is_true(of[s.backend], tostring(s.backend)) end
        if inside >= 20 then break end
      end
    end)
    active = false
    collectgarbage("setpause", pause)
    collectgarbage("setstepmul", mul)
    collectgarbage()
    assert(ok, err)
    assert.is_true(inside > 0)
    slots_match(list)
  end)
end)
