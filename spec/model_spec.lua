-- Randomized comparison of the binding against a pure-Lua model
-- (spec/support/model.lua). Passive lists only (no checks).
local upstream = require "upstream"
local Model = require "spec.support.model"

local SEED = 20240601
local LISTS = 60
local OPS_PER_LIST = 2000 -- 120000 operations in all

-- a pool of 12 distinct backends (raw equality), including values whose
-- __eq would claim equality, false, integers, a float and a function
local eq_mt = { __eq = function() return true end, __name = "eqtab" }
local tA = setmetatable({ name = "tA" }, eq_mt)
local tB = setmetatable({ name = "tB" }, eq_mt)
local fn = function() end
local POOL = { "a", "b", "c", "d", 1, 2, 2.5, true, false, tA, tB, fn }

local function show(v)
  if type(v) == "table" then return "<" .. tostring(v.name) .. ">" end
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

local function show_list(arr)
  local t = {}
  for i = 1, #arr do t[i] = show(arr[i]) end
  return "{" .. table.concat(t, ", ") .. "}"
end

local LOWS = { 0, -0.5, -1, -1.5, -3, -0.3 }
local HIGHS = { 0, 0.5, 1, 2, 3, 0.7 }
local FAILS = { -0.5, -1, -1.5, -2, -3, -0.1 }
local SUCCS = { 0.5, 1, 1.5, 2, 3, 0.1 }

local function choose(arr) return arr[math.random(#arr)] end

local function random_opts()
  local o = {
    low_score = choose(LOWS), high_score = choose(HIGHS),
    fail_delta = choose(FAILS), success_delta = choose(SUCCS),
  }
  local r = math.random(5)
  if r == 1 then o.initial_score = o.low_score
  elseif r == 2 then o.initial_score = o.high_score
  elseif r == 3 then o.initial_score = 0
  elseif r == 4 then o.initial_score = (o.low_score + o.high_score) / 2
  end -- r == 5: default (1), only when in range
  if o.initial_score == nil and (o.high_score < 1) then o.initial_score = o.high_score end
  return o
end

-- a random sequence of pool members: random subset, random order,
-- possibly with duplicates
local function random_backends(maxn, dups)
  local n = math.random(0, maxn)
  local out = {}
  for i = 1, n do
    if dups and i > 1 and math.random(4) == 1 then
      out[i] = out[math.random(i - 1)]
    else
      out[i] = choose(POOL)
    end
  end
  return out
end

local function fail(li, opi, op, what, expected, got)
  error(string.format("mismatch in list %d at op %d (%s): %s: expected %s, got %s (seed %d)",
    li, opi, op, what, show(expected), show(got), SEED), 2)
end

local function compare_status(li, opi, op, list, model)
  local got, exp = list:status(), model:status()
  if #got ~= #exp then fail(li, opi, op, "#status", #exp, #got) end
  if #list ~= model:len() then fail(li, opi, op, "#list", model:len(), #list) end
  for i = 1, #exp do
    local g, e = got[i], exp[i]
    if not rawequal(g.backend, e.backend) then
      fail(li, opi, op, "status[" .. i .. "].backend", e.backend, g.backend)
    end
    if g.score ~= e.score then fail(li, opi, op, "status[" .. i .. "].score", e.score, g.score) end
    if g.healthy ~= e.healthy then fail(li, opi, op, "status[" .. i .. "].healthy", e.healthy, g.healthy) end
    if g.checks ~= 0 then fail(li, opi, op, "status[" .. i .. "].checks", 0, g.checks) end
    if g.failures ~= 0 then fail(li, opi, op, "status[" .. i .. "].failures", 0, g.failures) end
    if g.last_error ~= nil then fail(li, opi, op, "status[" .. i .. "].last_error", nil, g.last_error) end
  end
end

describe("model comparison", function()
  it("matches the reference model on " .. LISTS * OPS_PER_LIST .. " random operations", function()
    math.randomseed(SEED)
    local total = 0
    for li = 1, LISTS do
      local opts = random_opts()
      local initial = random_backends(12, true)
      local list = upstream.new(initial, opts)
      local model = Model.new(initial, opts)
      local op0 = "new(" .. show_list(initial) .. ")"
      compare_status(li, 0, op0, list, model)
      assert.is_nil(list:step()) -- passive
      for opi = 1, OPS_PER_LIST do
        total = total + 1
        local r = math.random(100)
        if r <= 35 then
          local g1, g2 = list:pick()
          local e1, e2 = model:pick()
          if not rawequal(g1, e1) then fail(li, opi, "pick()", "backend", e1, g1) end
          if g2 ~= e2 then fail(li, opi, "pick()", "error", e2, g2) end
        elseif r <= 52 then
          local b = choose(POOL)
          list:up(b); model:up(b)
          local g, e = list:score(b), model:score(b)
          if g ~= e then fail(li, opi, "up(" .. show(b) .. ")", "score", e, g) end
        elseif r <= 74 then
          local b = choose(POOL)
          list:down(b); model:down(b)
          local g, e = list:score(b), model:score(b)
          if g ~= e then fail(li, opi, "down(" .. show(b) .. ")", "score", e, g) end
        elseif r <= 84 then
          local b = choose(POOL)
          local g, e = list:score(b), model:score(b)
          if g ~= e then fail(li, opi, "score(" .. show(b) .. ")", "score", e, g) end
        elseif r <= 90 then
          local bs = random_backends(10, true)
          local op = "reconcile(" .. show_list(bs) .. ")"
          list:reconcile(bs); model:reconcile(bs)
          compare_status(li, opi, op, list, model)
        else
          if #list ~= model:len() then fail(li, opi, "#list", "length", model:len(), #list) end
          if r >= 97 then compare_status(li, opi, "status()", list, model) end
        end
      end
      compare_status(li, OPS_PER_LIST, "final", list, model)
      list:shutdown()
    end
    assert.are.equal(LISTS * OPS_PER_LIST, total)
  end)

  it("uses raw equality: tables with __eq are distinct, 1 == 1.0", function()
    local list = upstream.new({ tA, tB, 1 }, { low_score = -3, initial_score = 0 })
    list:down(tA)
    assert.are.equal(-1, list:score(tA))
    assert.are.equal(0, list:score(tB))
    -- raw equality treats the integer 1 and the float 1.0 as equal
    list:down(1.0)
    assert.are.equal(-1, list:score(1))
    -- luassert's equal would use __eq, so compare raw
    assert.is_true(rawequal(tB, list:pick()))
    assert.is_true(rawequal(tB, list:pick()))
    list:shutdown()
  end)

  it("duplicates in new() are all updated and all survive reconcile", function()
    local list = upstream.new({ "x", "y", "x" }, {})
    assert.are.equal(3, #list)
    assert.are.same({ "x", "y", "x", "x" }, { list:pick(), list:pick(), list:pick(), list:pick() })
    list:down("x"); list:down("x")
    local st = list:status()
    assert.are.equal(-1, st[1].score)
    assert.are.equal(1, st[2].score)
    assert.are.equal(-1, st[3].score)
    list:reconcile({ "z", "x", "z" })
    st = list:status()
    assert.are.equal(3, #st)
    assert.are.same({ "x", "x", "z" }, { st[1].backend, st[2].backend, st[3].backend })
    assert.are.same({ -1, -1, 1 }, { st[1].score, st[2].score, st[3].score })
    list:shutdown()
  end)

  it("keeps the round-robin position across reconcile (position modulo new length)", function()
    local list = upstream.new({ "a", "b", "c", "d", "e" }, {})
    for _ = 1, 4 do list:pick() end -- position 3 ("d")
    list:reconcile({ "a", "b" })     -- next index is (3+1) mod 2 = 0
    assert.are.equal("a", list:pick())
    assert.are.equal("b", list:pick())
    list:reconcile({})
    assert.is_nil(list:pick())
    list:reconcile({ "p", "q", "r" }) -- position still 1: next is index 2
    assert.are.equal("r", list:pick())
    list:shutdown()
  end)
end)
