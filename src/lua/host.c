/*
 * lua/host.c - checks driven by a host event loop (the nginx driver):
 * list:due() hands out the checks to start as jobs, list:report() takes
 * their results, list:next_due() says how long the host may sleep. The
 * core applies deadlines itself; nothing here runs a check.
 */
#include <math.h>

#include "binding.h"

/* Fills the table on top (made with room for 6 fields) as the job of slot
 * s's check gen of the list at 1, for due(). Generations restart at 1 in
 * every list, so a job also names its list: report() refuses another
 * list's jobs rather than take them for its own. */
void lu_fill_job(lua_State *L, int32_t s, uint64_t gen, double deadline) {
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "list");
  lua_getiuservalue(L, 1, LU_UV_SLOTS);
  lua_rawgeti(L, -1, (lua_Integer)s + 1);
  lua_setfield(L, -3, "backend");
  lua_pop(L, 1);
  lua_pushinteger(L, (lua_Integer)s);
  lua_setfield(L, -2, "slot");
  lua_pushnumber(L, (lua_Number)gen);
  lua_setfield(L, -2, "gen");
  lua_pushnumber(L, deadline);
  lua_setfield(L, -2, "deadline");
  lua_getiuservalue(L, 1, LU_UV_CHECK); /* the check to run, or false */
  lua_setfield(L, -2, "check");
}

/* l_due's loop, protected: the list at 1, the jobs table at 2, the count
 * of jobs taken at 3 (a light userdata). What can run out of memory is
 * done before ul_take: the timeout's message stored, the job made and in
 * the jobs table (its gen and deadline set after, in fields that exist),
 * so an error leaves the event where it was. */
static int lu_due_p(lua_State *L) {
  lu_list *u = (lu_list *)lua_touserdata(L, 1);
  int *k = (int *)lua_touserdata(L, 3);
  int32_t s;
  uint64_t gen;
  int ev;
  lua_settop(L, 2);
  while ((ev = ul_peek(u->core, &s)) != UL_EV_NONE) {
    int was = 0;
    if (ev == UL_EV_TIMEOUT) {
      lu_check_timed_out(L, s);
      was = lu_healthy(u, s);
    } else if (ev == UL_EV_START) { /* no sleeps (UL_EV_WAKE) in this mode */
      lua_createtable(L, 0, 6);
      lu_fill_job(L, s, 0, ul_nodes(u->core)[s].deadline);
      lua_pushvalue(L, -1);
      lua_rawseti(L, 2, *k + 1);
    }
    ev = ul_take(u->core, &s, &gen);
    if (ev == UL_EV_START) {
      lua_pushnumber(L, (lua_Number)gen);
      lua_setfield(L, -2, "gen");
      lua_pushnumber(L, ul_nodes(u->core)[s].deadline);
      lua_setfield(L, -2, "deadline");
      lua_pop(L, 1);
      ++*k;
    } else if (ev == UL_EV_TIMEOUT) {
      lu_changed(L, u, s, was, 1);
    }
  }
  return 0;
}

/* due([now]) -> the jobs to start now. Running out of memory hands back
 * every check taken for the jobs so far (ul_cancel): nobody else has them,
 * they start again at the next due(). */
int l_due(lua_State *L) {
  lu_list *u;
  double now;
  int k = 0, i;
  lua_settop(L, 2);
  u = lu_check_list(L);
  now = lua_isnoneornil(L, 2) ? lu_list_now(L, 1) : luaL_checknumber(L, 2);
  lua_newtable(L); /* 3: jobs */
  if (u->core->shut) return 1;
  lu_use_driver(L, u, LU_DRIVER_DUE);
  ul_collect(u->core, now);
  lua_pushcfunction(L, lu_due_p);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 3);
  lua_pushlightuserdata(L, &k);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) { /* 4: the error */
    for (i = 1; i <= k; i++) {
      lua_rawgeti(L, 3, i);
      lua_getfield(L, -1, "slot"); /* the keys exist: nothing allocated */
      lua_getfield(L, -2, "gen");
      ul_cancel(u->core, (int32_t)lua_tointeger(L, -2),
                (uint64_t)lua_tonumber(L, -1));
      lua_pop(L, 3);
    }
    lua_error(L);
  }
  return 1;
}

/* report()'s arguments after the list (at 1; the stack set to 5): the
 * job, checked to be one of this list's due() with a slot of at most max,
 * ok, and the tier, in that order. */
void lu_report_args(lua_State *L, lua_Integer max, lu_report *r) {
  lua_Integer s;
  lua_Number gen;
  int isint;
  luaL_checktype(L, 2, LUA_TTABLE);
  r->ok = lua_toboolean(L, 3);
  r->tier = NAN;
  if (!lua_isnil(L, 5)) r->tier = luaL_checknumber(L, 5);
  lua_pushliteral(L, "list");
  lua_rawget(L, 2);
  lua_pushliteral(L, "slot");
  lua_rawget(L, 2);
  lua_pushliteral(L, "gen");
  lua_rawget(L, 2);
  s = lua_tointegerx(L, -2, &isint);
  gen = lua_tonumber(L, -1);
  if (!lua_rawequal(L, -3, 1) || !isint || lua_type(L, -1) != LUA_TNUMBER ||
      s < 0 || s > max || !(gen >= 1) || gen != floor(gen))
    luaL_argerror(L, 2, "not a job from this list's due()");
  lua_pop(L, 3);
  r->s = (int32_t)s;
  r->gen = (uint64_t)gen;
}

/* report(job, ok [, err [, tier]]) -> whether the result was applied */
int l_report(lua_State *L) {
  lu_list *u;
  lu_report r;
  double now;
  lua_settop(L, 5);
  u = lu_check_list(L);
  /* a job can only come from due(), which claims the list: a list that
   * step() drives has none */
  if (u->driver == LU_DRIVER_STEP) lu_use_driver(L, u, LU_DRIVER_DUE);
  lu_report_args(L, INT32_MAX, &r);
  now = lu_list_now(L, 1);
  if (r.ok) lua_pushnil(L);
  else lu_push_failure(L, L, 4, 0);
  lua_pushboolean(L, lu_check_result(L, u, r.s, r.gen, r.ok, now, r.tier));
  return 1;
}

/* Seconds until the next check event (0: due now), nil when nothing is
 * scheduled: a host loop sleeps exactly that long between due() calls. */
int l_next_due(lua_State *L) {
  lu_list *u;
  double next;
  lua_settop(L, 1);
  u = lu_check_list(L);
  next = u->core->shut ? INFINITY : ul_next_time(u->core);
  if (isinf(next)) lua_pushnil(L);
  else lu_push_wait(L, next, lu_list_now(L, 1));
  return 1;
}
