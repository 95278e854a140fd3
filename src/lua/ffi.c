/*
 * lua/ffi.c - the LuaJIT FFI fast path (src/upstream/ffi.lua): a pick
 * through a plain C call, and the slot table it reads backends from.
 */
#include "binding.h"

/* list:_slots() -> the slot table (slot + 1 -> backend) and its version, for
 * upstream.ffi's picker, which reads backends from it directly. */
int l_slots(lua_State *L) {
  lu_list *u;
  lua_settop(L, 1);
  u = lu_check_list(L);
  lua_getiuservalue(L, 1, LU_UV_SLOTS);
  lua_pushinteger(L, (lua_Integer)u->version);
  return 2;
}

/* pick() for LuaJIT's FFI, called with the list userdata's payload: the
 * common case without entering the Lua API, so a JIT-compiled caller stays
 * compiled. key: NULL or a string's bytes. Returns the slot, -1 when none
 * is eligible, -2 when the call needs list:pick() instead (a hash pick
 * without a key, slow start ramping on a Lua clock; on a shared list, a
 * slot table behind the shared one: list:pick() resyncs it). *version gets the
 * slot table's version. */
LU_EXPORT int32_t upstream_ffi_pick(lu_list *u, const char *key, size_t len,
                                    uint32_t *version) {
  ul_list *c = u->core;
  double now = 0;
  *version = u->version;
  if (u->sh) return lu_sh_ffi_pick(u, key, len, version);
  if (c == NULL || (key == NULL && c->opts.strategy == UL_HASH)) return -2;
  if (c->ramping) {
    if (u->lua_clock) return -2;
    now = lu_mono_now();
  }
  return ul_pick(c, key && c->opts.strategy == UL_HASH ? ul_hash(key, len) : 0,
                 now);
}
