-- The hash strategy's key -> backend mapping is STABLE across releases:
-- operators rely on session affinity surviving an upgrade (a rolling
-- upgrade of a fleet mixes old and new versions behind one balancer tier).
-- These are the exact picks of today's release; a change to ul_hash, to the
-- Maglev table (its size, offsets, skips, fill order, weights) or to how
-- the binding hashes keys fails here. Changing the mapping on purpose is a
-- breaking change: say so in the release notes and update these values
-- (spec/c/test_pinned.c pins ul_hash itself and the Maglev table sizes).
-- Runs under every runtime: the mapping must not depend on the Lua version.
local upstream = require "upstream"

-- five string backends, default weights, in this order
local B = { "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80", "10.0.0.5:80" }

-- key -> index in B of the backend it maps to
local PINNED = {
  { "", 5 },
  { "a", 3 },
  { "b", 1 },
  { "ab", 1 },
  { "abc", 5 },
  { "abcd", 2 },
  { "abcde", 4 },
  { "abcdefg", 4 },
  { "abcdefgh", 4 },
  { "abcdefghi", 5 },
  { "abcdefghijklmno", 3 },
  { "abcdefghijklmnop", 3 },
  { "abcdefghijklmnopq", 4 },
  { "user:1", 4 },
  { "user:2", 2 },
  { "user:3", 5 },
  { "user:4", 1 },
  { "user:5", 5 },
  { "user:6", 4 },
  { "user:7", 5 },
  { "user:8", 2 },
  { "user:9", 5 },
  { "user:10", 5 },
  { "user:11", 5 },
  { "user:12", 2 },
  { "user:13", 2 },
  { "user:14", 4 },
  { "session-9e3779b1", 5 },
  { "session-3c6ef362", 3 },
  { "session-daa66d13", 3 },
  { "session-78dde6c4", 3 },
  { "session-17156075", 1 },
  { "session-b54cda26", 4 },
  { "session-538453d7", 3 },
  { "/api/v1/orders?id=12345", 4 },
  { "192.168.1.10", 1 },
  { "10.0.0.1:80", 5 },
  { "\0", 4 },
  { "\195\156n\195\175c\195\182d\195\169", 1 }, -- "Ünïcödé" in UTF-8
  { ("x"):rep(40), 2 },
}

-- number keys hash by their text: integral values as "%lld", others as
-- "%.17g" (so 1 and 1.0 alike, and -0.0 as 0)
local PINNED_NUMBERS = {
  { 0, 3 }, { 1, 2 }, { 2, 1 }, { 42, 4 }, { -7, 3 }, { 1.5, 1 }, { 0.1, 3 },
  { 2 ^ 53, 5 }, { 1e300, 2 }, { -0.0, 3 },
}

local function index_of(list, b)
  for i, x in ipairs(list) do if x == b then return i end end
  return nil
end

-- the picks of every key of PINNED as one string of indices in B
local function picks(list)
  local out = {}
  for i, p in ipairs(PINNED) do out[i] = index_of(B, (list:pick(p[1]))) end
  return table.concat(out)
end

describe("the hash mapping is pinned", function()
  it("40 string keys over 5 equal backends map as in every release", function()
    local list = upstream.new(B, { strategy = "hash" })
    local wrong = {}
    for _, p in ipairs(PINNED) do
      local got = list:pick(p[1])
      if got ~= B[p[2]] then
        wrong[#wrong + 1] = ("%q -> %s, pinned %s"):format(p[1], tostring(got), B[p[2]])
      end
    end
    assert.are.same({}, wrong)
  end)

  it("number keys map as in every release", function()
    local list = upstream.new(B, { strategy = "hash" })
    for _, p in ipairs(PINNED_NUMBERS) do
      assert.are.equal(B[p[2]], list:pick(p[1]), ("key %.17g"):format(p[1]))
    end
  end)

  it("does not depend on the seed, the clock or the order of calls", function()
    local a = upstream.new(B, { strategy = "hash", seed = 1 })
    local b = upstream.new(B, { strategy = "hash", seed = 987654321, clock = function() return 5 end })
    for i = #PINNED, 1, -1 do b:pick(PINNED[i][1]) end
    assert.are.equal(picks(a), picks(b))
  end)

  it("with one backend unhealthy, its keys move and the others stay", function()
    local list = upstream.new(B, { strategy = "hash" })
    list:down(B[3]); list:down(B[3]) -- 1 -> -1
    assert.is_true(list:score(B[3]) < 0)
    assert.are.equal("5111524445244425154525552245544141415412", picks(list))
    for _ = 1, 2 do list:up(B[3]) end -- healthy again: the pinned mapping back
    local back = {}
    for i, p in ipairs(PINNED) do back[i] = p[2] end
    assert.are.equal(table.concat(back), picks(list))
  end)

  it("with weights 1, 2, 3, 1, 1", function()
    local list = upstream.new(B, { strategy = "hash", weights = { [B[2]] = 2, [B[3]] = 3 } })
    assert.are.equal("3313524445334425252525532345333133332412", picks(list))
  end)

  describe("on 200 backends", function()
    local big = {}
    for i = 1, 200 do big[i] = ("10.1.%d.%d:8080"):format(math.floor(i / 100), i % 100) end
    local grown = {}
    for i = 1, 200 do grown[i] = big[i] end
    grown[201] = "10.1.9.9:8080"
    local keys = {}
    for i = 1, 20 do keys[i] = "k" .. i end
    local function map(list, bs)
      local out = {}
      for i, k in ipairs(keys) do out[i] = index_of(bs, (list:pick(k))) end
      return out
    end

    it("a list of 200 (a table of its own size)", function()
      local list = upstream.new(big, { strategy = "hash" })
      assert.are.same({ 177, 193, 11, 6, 200, 71, 42, 159, 118, 151, 9, 182, 164, 130, 198, 20, 6, 66,
                        92, 94 }, map(list, big))
    end)

    it("grown to 201 by reconcile keeps its table size: only the new backend's keys move", function()
      local list = upstream.new(big, { strategy = "hash" })
      list:reconcile(grown)
      assert.are.same({ 177, 193, 11, 6, 200, 71, 201, 159, 118, 151, 9, 182, 164, 130, 198, 20, 6, 66,
                        92, 94 }, map(list, grown))
    end)

    it("a new list of the 201 sizes its own table", function()
      local list = upstream.new(grown, { strategy = "hash" })
      assert.are.same({ 182, 45, 121, 108, 191, 68, 75, 72, 138, 153, 96, 48, 149, 60, 114, 54, 187, 10,
                        94, 101 }, map(list, grown))
    end)
  end)

  -- service discovery grows a list a few backends at a time: a block that
  -- must grow at least doubles, and the Maglev table keeps its size while it
  -- gives 20 entries a slot, so this list resizes its table at 641 (block
  -- of 1280), unlike a new list of 641
  it("a list grown by reconcile 5 -> 6 -> 11 -> ... -> 641", function()
    local function backends(n)
      local out = {}
      for i = 1, n do out[i] = ("10.2.%d.%d:80"):format(math.floor(i / 256), i % 256) end
      return out
    end
    local list = upstream.new(backends(5), { strategy = "hash" })
    for _, n in ipairs({ 6, 11, 21, 41, 81, 161, 321, 641 }) do list:reconcile(backends(n)) end
    -- a table of M >= 32768 is built a slice a pick, the first one too
    local function built(l) for i = 1, 20000 do l:pick("warm-" .. i) end end
    built(list)
    local all, got = backends(641), {}
    for i = 1, 20 do got[i] = index_of(all, (list:pick("k" .. i))) end
    assert.are.same({ 535, 157, 246, 317, 347, 107, 182, 617, 281, 238, 296, 543, 2, 42, 412, 54, 235,
                      448, 473, 530 }, got)
    local fresh = upstream.new(all, { strategy = "hash" })
    built(fresh)
    for i = 1, 20 do got[i] = index_of(all, (fresh:pick("k" .. i))) end
    assert.are.same({ 191, 18, 75, 621, 86, 63, 573, 462, 44, 138, 484, 116, 482, 460, 331, 321, 297,
                      480, 506, 301 }, got)
  end)
end)
