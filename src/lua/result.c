/*
 * lua/result.c - what a check's result leaves behind: its failure message,
 * the tier it asks for, the backend's last_error.
 */
#include "binding.h"

/* Records the check's error (string at top of L, or nil) for slot. */
void lu_set_error(lua_State *L, int list, int32_t s) {
  lua_getiuservalue(L, list, LU_UV_ERRORS);
  lua_insert(L, -2);
  lua_rawseti(L, -2, (lua_Integer)s + 1);
  lua_pop(L, 1);
}

/* Pushes onto L a message for a failed check from the values on co. */
void lu_push_failure(lua_State *L, lua_State *co, int idx, int raised) {
  int t = lua_type(co, idx);
  if (t == LUA_TSTRING || t == LUA_TNUMBER) {
    lua_pushstring(L, lua_tostring(co, idx));
  } else if (raised) {
    lua_pushfstring(L, "health check raised a %s value", lua_typename(co, t));
  } else {
    lua_pushliteral(L, "health check failed");
  }
}

/* The tier a check's result asks for: with tier_by_latency, the duration
 * of a successful check; else a number among the results at idx (co's
 * stack, 0: none), clamped later into [min, max]. No number (or NaN) keeps
 * the tier: Go's -1 for "keep" is a plain `return true` in Lua. */
int lu_result_tier(const lu_list *u, lua_State *co, int idx, int ok,
                   int32_t s, double now) {
  lua_Number t;
  if (u->latency)
    return ok ? ul_latency_tier(now - ul_nodes(u->core)[s].started) : -1;
  if (!idx || lua_type(co, idx) != LUA_TNUMBER) return -1;
  t = lua_tonumber(co, idx);
  if (t != t) return -1;
  return t < 0 ? 0 : t > UL_MAX_TIER ? UL_MAX_TIER : (int)t;
}
