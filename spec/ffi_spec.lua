-- upstream.ffi: LuaJIT's compiled pick gives what list:pick() gives.
local upstream = require "upstream"
local util = require "spec.support.util"

local has_ffi = pcall(require, "ffi") and type(jit) == "table"

describe("upstream.ffi", function()
  if not has_ffi then
    it("is LuaJIT-only: require fails elsewhere", function()
      assert.is_false(pcall(require, "upstream.ffi"))
    end)
    return
  end
  local uffi = require "upstream.ffi"

  for _, st in ipairs(util.STRATEGIES) do
    it("picks as list:pick() does: " .. st, function()
      local bs = {}
      for i = 1, 20 do bs[i] = "b" .. i end
      local opts = { strategy = st, seed = 3, weights = { b1 = 5, b2 = 3 } }
      local a, b = upstream.new(bs, opts), upstream.new(bs, opts)
      local pick = uffi.picker(b)
      for i = 1, 2000 do
        local key = st == "hash" and ("k" .. i) or nil
        if i % 97 == 0 then -- health and membership change on the way
          a:down("b" .. (i % 20 + 1)); b:down("b" .. (i % 20 + 1))
        end
        if i == 1000 then
          a:reconcile({ "b1", "b3", "x", "y" }); b:reconcile({ "b1", "b3", "x", "y" })
        end
        assert.equal(a:pick(key), pick(key))
      end
    end)
  end

  it("returns nil, 'no upstreams available' like pick()", function()
    local l = upstream.new({ "a" })
    local pick = uffi.picker(l)
    l:down("a"); l:down("a")
    local b, err = pick()
    assert.is_nil(b)
    assert.equal(util.NONE, err)
  end)

  it("hands number keys and a missing hash key to list:pick()", function()
    local l = upstream.new({ "a", "b" }, { strategy = "hash" })
    local pick = uffi.picker(l)
    assert.equal(l:pick(42), pick(42))
    assert.has_error(function() pick() end)
    assert.has_error(function() pick({}) end)
  end)

  it("follows slow start on a Lua clock through list:pick()", function()
    local t = 0
    local l = upstream.new({ "a", "b" }, { strategy = "weighted", slow_start = 10, clock = function() return t end })
    local pick = uffi.picker(l)
    l:down("b"); l:down("b"); l:up("b"); l:up("b") -- b ramps from 10%
    local n = 0
    for _ = 1, 11 do if pick() == "b" then n = n + 1 end end
    assert.equal(1, n)
  end)

  it("rejects what is not a list", function()
    assert.has_error(function() uffi.picker({}) end)
  end)
end)
