/*
 * lua/clock.c - the list's time: its clock (the clock option, else
 * CLOCK_MONOTONIC), its sleep (the sleep option, else nanosleep), and the
 * wait until the next event that step() and next_due() return.
 */
#include <math.h>
#include <time.h>

#include "binding.h"

double lu_mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double lu_call_clock(lua_State *L) {
  double t;
  lua_call(L, 0, 1);
  if (lua_type(L, -1) != LUA_TNUMBER)
    luaL_error(L, "upstream: clock() must return a number (got %s)",
               luaL_typename(L, -1));
  t = lua_tonumber(L, -1);
  lua_pop(L, 1);
  /* every caller compares and subtracts times: inf - inf is NaN, and a
   * deadline at inf never comes */
  if (isnan(t)) luaL_error(L, "upstream: clock() returned NaN");
  if (isinf(t))
    luaL_error(L, "upstream: clock() returned %s", t > 0 ? "inf" : "-inf");
  return t;
}

double lu_list_now(lua_State *L, int idx) {
  if (lua_getiuservalue(L, idx, LU_UV_CLOCK) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    return lu_mono_now();
  }
  return lu_call_clock(L);
}

void lu_list_sleep(lua_State *L, int idx, double s) {
  if (lua_getiuservalue(L, idx, LU_UV_SLEEP) == LUA_TFUNCTION) {
    lua_pushnumber(L, s);
    lua_call(L, 1, 0);
    return;
  }
  lua_pop(L, 1);
  if (s > 0) {
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
  }
}

void lu_push_wait(lua_State *L, double next, double now) {
  if (isinf(next)) lua_pushnil(L);
  else lua_pushnumber(L, next > now ? next - now : 0);
}
