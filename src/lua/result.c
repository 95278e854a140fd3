/*
 * lua/result.c - the end of a check, whichever layer drove it (the
 * scheduler's coroutines or a host's report()): the failure message, the
 * tier the result asks for, ul_report, and the backend's last_error; and
 * on_change, called when a check, up/down, a timeout or a reconcile made a
 * backend cross between healthy and unhealthy.
 */
#include <math.h>
#include <stdio.h>

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
    size_t len;
    const char *m = lua_tolstring(from, idx, &len);
    lua_pushlstring(L, m, len); /* the whole message, NUL bytes too */
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
static int lu_result(lua_State *L, lu_list *u, int32_t s, uint64_t gen,
                     int ok, double now, lua_Number tier, int timed_out) {
  int t = lu_result_tier(u, s, gen, ok, now, tier), was;
  if (!ul_current(u->core, s, gen)) {
    lua_pop(L, 1);
    return 0;
  }
  lua_getiuservalue(L, 1, LU_UV_ERRORS);
  lua_rawgeti(L, -1, (lua_Integer)s + 1); /* the old message */
  lua_pushvalue(L, -3);
  lua_rawseti(L, -3, (lua_Integer)s + 1); /* may raise: nothing applied */
  was = lu_healthy(u, s);
  if (!ul_report(u->core, s, gen, ok, now, t)) {
    lua_rawseti(L, -2, (lua_Integer)s + 1); /* the key exists: no alloc */
    lua_pop(L, 2);
    return 0;
  }
  if (timed_out) ul_stats(u->core)[s].timeouts++;
  lua_pop(L, 3);
  lu_changed(L, u, s, was, 1); /* the last thing: it calls Lua */
  return 1;
}

int lu_check_result(lua_State *L, lu_list *u, int32_t s, uint64_t gen, int ok,
                    double now, lua_Number tier) {
  return lu_result(L, u, s, gen, ok, now, tier, 0);
}

/* The check (s, gen) ran past its deadline and was stopped at now (by the
 * runaway-check hook): a failure counted as a timeout, its message
 * (LU_TIMED_OUT) at the top of L. */
int lu_check_stopped(lua_State *L, lu_list *u, int32_t s, uint64_t gen,
                     double now) {
  return lu_result(L, u, s, gen, 0, now, NAN, 1);
}

/* Slot s's check is about to be timed out (ul_peek said UL_EV_TIMEOUT):
 * its message is stored before ul_take counts it, so that running out of
 * memory here leaves the timeout for the next step. */
void lu_check_timed_out(lua_State *L, int32_t s) {
  lua_pushliteral(L, LU_TIMED_OUT);
  lu_set_error(L, s);
}

/* ---- on_change ------------------------------------------------------------ */

int lu_healthy(const lu_list *u, int32_t s) {
  return ul_nodes(u->core)[s].score >= 0;
}

/* Right after a core call that may have moved slot s of the list at index
 * 1 (healthy before: was), with no Lua code run since: when the list has
 * an on_change and s crossed, pushes it and its arguments (backend,
 * healthy, score, and with err the slot's last_error, else nil) and
 * returns 1; lu_call_change calls them. Reads the block before anything
 * is pushed; pushes nothing that allocates, so no collection (and no
 * finalizer) can run in between. Without room on the stack the event is
 * dropped rather than raise in the middle of a step. */
int lu_push_change(lua_State *L, const lu_list *u, int32_t s, int was,
                   int err) {
  double score;
  if (!u->on_change) return 0;
  score = ul_nodes(u->core)[s].score;
  if ((score >= 0) == (was != 0) || !lua_checkstack(L, 8)) return 0;
  lua_getiuservalue(L, 1, LU_UV_ON_CHANGE);
  lua_getiuservalue(L, 1, LU_UV_SLOTS);
  lua_rawgeti(L, -1, (lua_Integer)s + 1);
  lua_remove(L, -2);
  lua_pushboolean(L, score >= 0);
  lua_pushnumber(L, score);
  if (err) {
    lua_getiuservalue(L, 1, LU_UV_ERRORS);
    lua_rawgeti(L, -1, (lua_Integer)s + 1);
    lua_remove(L, -2);
  } else {
    lua_pushnil(L);
  }
  return 1;
}

/* Reports what on_change raised (at the top of L, popped): a warning on
 * 5.4 (shown once warnings are on: lua -W, warn("@on")), a line on stderr
 * before. Converts nothing and calls no metamethod: this cannot raise. */
static void lu_change_failed(lua_State *L) {
  char num[64];
  const char *msg;
  int t = lua_type(L, -1);
  if (t == LUA_TSTRING) {
    msg = lua_tostring(L, -1);
  } else if (t == LUA_TNUMBER) {
    snprintf(num, sizeof num, "%.14g", (double)lua_tonumber(L, -1));
    msg = num;
  } else {
    snprintf(num, sizeof num, "a %s value", lua_typename(L, t));
    msg = num;
  }
#if LUA_VERSION_NUM >= 504
  lua_warning(L, "upstream.list: on_change raised: ", 1);
  lua_warning(L, msg, 0);
#else
  fprintf(stderr, "upstream.list: on_change raised: %s\n", msg);
  fflush(stderr);
#endif
  lua_pop(L, 1);
}

/* Calls what lu_push_change pushed, protected: an error it raises is
 * reported, never passed on to the scheduler or to the caller of up/down.
 * The caller holds no pointer into the block, no slot index and no count
 * across this: on_change may call anything on the list (README). */
void lu_call_change(lua_State *L) {
  if (lua_pcall(L, 4, 0, 0) != LUA_OK) lu_change_failed(L);
}

void lu_changed(lua_State *L, const lu_list *u, int32_t s, int was, int err) {
  if (lu_push_change(L, u, s, was, err)) lu_call_change(L);
}

/* After a reconcile's commit: each of the n backends it added (a sequence
 * at index added) that is healthy when its turn comes fires on_change once
 * (as Envoy's add_healthy event): a member that starts unhealthy fires when
 * it turns healthy. Looked up anew each time: an earlier on_change may have
 * reconciled the list again or moved that backend (whose own change then
 * fired). */
void lu_added(lua_State *L, int added, lua_Integer n) {
  lua_Integer k;
  for (k = 1; k <= n; k++) {
    lu_list *u = (lu_list *)lua_touserdata(L, 1);
    int32_t s = -1;
    lua_getiuservalue(L, 1, LU_UV_INDEX);
    lua_rawgeti(L, added, k);
    if (lua_rawget(L, -2) == LUA_TNUMBER) s = (int32_t)lua_tointeger(L, -1);
    lua_pop(L, 2);
    if (s >= 0) lu_changed(L, u, s, 0, 0);
  }
}
