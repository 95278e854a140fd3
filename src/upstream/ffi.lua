-- upstream.ffi: a pick for LuaJIT that stays JIT-compiled.
--
-- Calling a classic Lua C function (list:pick()) ends a LuaJIT trace: about
-- 100 ns a call. Through the FFI, the same C pick is an ordinary compiled
-- call, and the backend comes from the list's own slot table:
--
--   local pick = require("upstream.ffi").picker(list)
--   local backend, err = pick()        -- or pick(key) for "hash"
--
-- Same results as list:pick([key]) (same core call); anything unusual (a
-- number key, slow start on a Lua clock, a hash pick without a key) goes
-- through list:pick() itself, errors included.
local ffi = require "ffi"
local upstream = require "upstream"

ffi.cdef [[
int32_t upstream_ffi_pick(void *list, const char *key, size_t len,
                          uint32_t *version);
]]

-- The module's own shared object: dlopen hands back the copy require loaded.
local path = package.searchpath("upstream", package.cpath)
if not path then error("upstream.ffi: upstream's shared object is not on package.cpath") end
local C = ffi.load(path)
local NO_UPSTREAMS = "no upstreams available"

local M = { _VERSION = upstream._VERSION }

function M.picker(list)
  if type(list) ~= "userdata" or not pcall(list._slots, list) then
    error("upstream.ffi.picker: an upstream.list expected, got " .. type(list), 2)
  end
  local slots, version = list:_slots()
  local v = ffi.new("uint32_t[1]")
  return function(key)
    local s
    if key == nil then
      s = C.upstream_ffi_pick(list, nil, 0, v)
    elseif type(key) == "string" then
      s = C.upstream_ffi_pick(list, key, #key, v)
    else
      return list:pick(key)
    end
    if s >= 0 then
      if v[0] ~= version then slots, version = list:_slots() end
      return slots[s + 1]
    end
    if s == -1 then return nil, NO_UPSTREAMS end
    return list:pick(key)
  end
end

-- M._pick_slot(list [, key]) -> slot, version: the lower half of a picker,
-- for a caller that keeps its own per-slot data (upstream.nginx): the slot
-- picked (0-based; slot s holds the backend at index s + 1 of
-- list:_slots()) and the version of the slot table it belongs to; -1 when
-- no backend is eligible, -2 when the pick must go through list:pick(key)
-- (see upstream_ffi_pick). key: nil or a string. No check of `list`: the
-- caller passes a list it already knows.
local vbuf = ffi.new("uint32_t[1]")
function M._pick_slot(list, key)
  local s
  if key == nil then
    s = C.upstream_ffi_pick(list, nil, 0, vbuf)
  else
    s = C.upstream_ffi_pick(list, key, #key, vbuf)
  end
  return s, vbuf[0]
end

return M
