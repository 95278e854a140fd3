/*
 * lua/result.c - the end of a check, whichever layer drove it (the
 * scheduler's coroutines or a host's report()): the failure message, the
 * tier the result asks for, ul_report, and the backend's last_error.
 */
#include "binding.h"

/* Records the check's error (string at top of L, or nil) for slot s of
 * the list at index 1. Pops it. */
static void lu_set_error(lua_State *L, int32_t s) {
  lua_getiuservalue(L, 1, LU_UV_ERRORS);
  lua_insert(L, -2);
  lua_rawseti(L, -2, (lua_Integer)s + 1);
  lua_pop(L, 1);
}

/* Replaces the value at top of L by what its __tostring metamethod makes
 * of it and returns 1; returns 0, the value left as it is, when it has
 * none, or the metamethod raises or gives no string. Called protected: a
 * broken error object must not turn one failed check into an error of the
 * whole step() or report(). */
static int lu_error_tostring(lua_State *L) {
  if (!luaL_getmetafield(L, -1, "__tostring")) return 0;
  lua_pushvalue(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 1);
    return 0;
  }
  lua_remove(L, -2);
  return 1;
}

/* Pushes onto L the message of a failed check from the value at idx on
 * from (0: none): a string or number as is, an object by its __tostring,
 * else a default that says whether the check raised or returned. from may
 * be a check's coroutine, dead by error: nothing is called on it. */
void lu_push_failure(lua_State *L, lua_State *from, int idx, int raised) {
  int t = idx ? lua_type(from, idx) : LUA_TNONE;
  if (t == LUA_TSTRING || t == LUA_TNUMBER) {
    lua_pushstring(L, lua_tostring(from, idx));
    return;
  }
  if (t != LUA_TNONE && t != LUA_TNIL) {
    luaL_checkstack(L, 4, NULL);
    if (from == L) {
      lua_pushvalue(L, idx);
    } else {
      if (!lua_checkstack(from, 1)) luaL_error(L, "upstream: stack overflow");
      lua_pushvalue(from, idx);
      lua_xmove(from, L, 1);
    }
    if (lu_error_tostring(L)) return;
    lua_pop(L, 1);
  }
  if (raised)
    lua_pushfstring(L, "health check raised a %s value", lua_typename(from, t));
  else
    lua_pushliteral(L, LU_CHECK_FAILED);
}

/* The tier check (s, gen) of u's list asks for, for ul_report: with
 * tier_by_latency, the duration of a successful check; else the number
 * the check gave, clamped later into [min, max]. No number (NaN) keeps the
 * tier: Go's -1 for "keep" is a plain `return true` in Lua. */
static int lu_result_tier(const lu_list *u, int32_t s, uint64_t gen, int ok,
                          double now, lua_Number tier) {
  const ul_list *c = u->core;
  if (u->latency)
    return ok && ul_current(c, s, gen)
               ? ul_latency_tier(now - ul_nodes(c)[s].started)
               : -1;
  if (tier != tier) return -1;
  return tier < 0 ? 0 : tier > UL_MAX_TIER ? UL_MAX_TIER : (int)tier;
}

/* Applies the result of check (s, gen) of the list u at index 1: ok, at
 * now, asking for tier (NaN: none), with its error message (or nil) at the
 * top of L, which is popped. Returns 0 when the check was stale (timed
 * out, removed, shut down): nothing changes then. The message is stored
 * before the core counts the result: when storing it runs out of memory,
 * the error escapes with nothing applied (a report() can be retried; the
 * scheduler puts the check back, see lu_finish_check). */
int lu_check_result(lua_State *L, lu_list *u, int32_t s, uint64_t gen, int ok,
                    double now, lua_Number tier) {
  int t = lu_result_tier(u, s, gen, ok, now, tier);
  if (!ul_current(u->core, s, gen)) {
    lua_pop(L, 1);
    return 0;
  }
  lua_getiuservalue(L, 1, LU_UV_ERRORS);
  lua_rawgeti(L, -1, (lua_Integer)s + 1); /* the old message */
  lua_pushvalue(L, -3);
  lua_rawseti(L, -3, (lua_Integer)s + 1); /* may raise: nothing applied */
  if (!ul_report(u->core, s, gen, ok, now, t)) {
    lua_rawseti(L, -2, (lua_Integer)s + 1); /* the key exists: no alloc */
    lua_pop(L, 2);
    return 0;
  }
  lua_pop(L, 3);
  return 1;
}

/* Slot s's check is about to be timed out (ul_peek said UL_EV_TIMEOUT):
 * its message is stored before ul_take counts it, so that running out of
 * memory here leaves the timeout for the next step. */
void lu_check_timed_out(lua_State *L, int32_t s) {
  lua_pushliteral(L, LU_TIMED_OUT);
  lu_set_error(L, s);
}
