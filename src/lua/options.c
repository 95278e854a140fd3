/*
 * lua/options.c - upstream.new's options table, read into a lu_conf: the
 * ranges of the numbers are the core's own (ul_opts_validate).
 */
#include <string.h>

#include "binding.h"

static const char *const lu_opt_names[] = {
    "interval",   "timeout",    "jitter",     "initial_score", "low_score",
    "high_score", "fail_delta", "success_delta", "panic",      "slow_start",
    "check",      "clock",      "sleep",      "seed",          "strategy",
    "weights",    "tiers",      "tier_by_latency", NULL};
enum {
  LU_OPT_NUMBERS = 10, LU_OPT_CHECK = 10, LU_OPT_CLOCK, LU_OPT_SLEEP, LU_OPT_SEED,
  LU_OPT_STRATEGY, LU_OPT_WEIGHTS, LU_OPT_TIERS, LU_OPT_LATENCY
};
static const char *const lu_strategies[] = {
    "round_robin", "weighted", "least_conn", "hash", "random", NULL};

/* Reads tiers = { min =, max =, init = } at the top of the stack. */
static void lu_read_tiers(lua_State *L, ul_opts *o) {
  static const char *const keys[] = {"min", "max", "init", NULL};
  int *dst[3], k, t = lua_gettop(L);
  dst[0] = &o->tier_min;
  dst[1] = &o->tier_max;
  dst[2] = &o->tier_init;
  if (lua_type(L, t) != LUA_TTABLE)
    luaL_error(L, "upstream.new: option 'tiers' must be a table "
                  "{ min =, max =, init = } (got %s)", luaL_typename(L, t));
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    for (k = 0; keys[k]; k++)
      if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), keys[k]) == 0)
        break;
    if (!keys[k])
      luaL_error(L, "upstream.new: option 'tiers' has an unknown key %s "
                    "(allowed: min, max, init)", luaL_tolstring(L, -1, NULL));
  }
  for (k = 0; keys[k]; k++) {
    lua_Integer v = 0;
    int isint = 0;
    if (lua_getfield(L, t, keys[k]) == LUA_TNUMBER) v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < 0 || v > UL_MAX_TIER)
      luaL_error(L, "upstream.new: option 'tiers' needs %s, an integer in "
                    "[0, 10] (got %s)", keys[k], luaL_tolstring(L, -1, NULL));
    *dst[k] = (int)v;
    lua_pop(L, 1);
  }
  if (!(o->tier_min <= o->tier_init && o->tier_init <= o->tier_max))
    luaL_error(L, "upstream.new: option 'tiers' must have min <= init <= max "
                  "(got min %d, init %d, max %d)",
               o->tier_min, o->tier_init, o->tier_max);
}

/* Reads the options table at idx into c; functions and the weights table
 * stay on the stack, their indices in c. */
void lu_read_opts(lua_State *L, int idx, lu_conf *c) {
  double *field[LU_OPT_NUMBERS];
  ul_opts *o = &c->o;
  const char *bad, *name;
  int i, tiers = 0;
  field[0] = &o->interval;
  field[1] = &o->timeout;
  field[2] = &o->jitter;
  field[3] = &o->initial_score;
  field[4] = &o->low_score;
  field[5] = &o->high_score;
  field[6] = &o->fail_delta;
  field[7] = &o->success_delta;
  field[8] = &o->panic;
  field[9] = &o->slow_start;
  ul_opts_default(o);
  c->fns[0] = c->fns[1] = c->fns[2] = 0;
  c->weights = c->latency = 0;
  c->seed = 0;
  if (lua_isnoneornil(L, idx)) return;
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "upstream.new: options must be a table, got %s",
               luaL_typename(L, idx));
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "upstream.new: option names must be strings, got %s",
                 luaL_typename(L, -2));
    lua_pop(L, 1);
  }
  /* unknown keys: a typo must not pass silently */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *k = lua_tostring(L, -2);
    for (i = 0; lu_opt_names[i]; i++)
      if (strcmp(k, lu_opt_names[i]) == 0) break;
    if (!lu_opt_names[i]) luaL_error(L, "upstream.new: unknown option '%s'", k);
    lua_pop(L, 1);
  }
  for (i = 0; lu_opt_names[i]; i++) {
    int t = lua_getfield(L, idx, lu_opt_names[i]);
    if (t == LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    if (i < LU_OPT_NUMBERS || i == LU_OPT_SEED) {
      if (t != LUA_TNUMBER)
        luaL_error(L, "upstream.new: option '%s' must be a number (got %s)",
                   lu_opt_names[i], lua_typename(L, t));
      if (i == LU_OPT_SEED) {
        int isint;
        lua_Integer sd = lua_tointegerx(L, -1, &isint);
        if (!isint)
          luaL_error(L, "upstream.new: option 'seed' must be an integer");
        c->seed = (uint64_t)sd;
      } else {
        *field[i] = lua_tonumber(L, -1);
      }
      lua_pop(L, 1);
    } else if (i == LU_OPT_STRATEGY) {
      int k;
      for (k = 0; lu_strategies[k]; k++)
        if (t == LUA_TSTRING && strcmp(lua_tostring(L, -1), lu_strategies[k]) == 0)
          break;
      if (!lu_strategies[k])
        luaL_error(L, "upstream.new: option 'strategy' must be one of "
                      "round_robin, weighted, least_conn, hash, random (got %s)",
                   luaL_tolstring(L, -1, NULL));
      o->strategy = k;
      lua_pop(L, 1);
    } else if (i == LU_OPT_WEIGHTS) {
      if (t != LUA_TTABLE)
        luaL_error(L, "upstream.new: option 'weights' must be a table "
                      "{ [backend] = weight } (got %s)", lua_typename(L, t));
      c->weights = lua_gettop(L); /* stays on the stack */
    } else if (i == LU_OPT_TIERS) {
      lu_read_tiers(L, o);
      tiers = 1;
      lua_pop(L, 1);
    } else if (i == LU_OPT_LATENCY) {
      if (t != LUA_TBOOLEAN)
        luaL_error(L, "upstream.new: option 'tier_by_latency' must be a "
                      "boolean (got %s)", lua_typename(L, t));
      c->latency = lua_toboolean(L, -1);
      lua_pop(L, 1);
    } else {
      if (t != LUA_TFUNCTION)
        luaL_error(L, "upstream.new: option '%s' must be a function (got %s)",
                   lu_opt_names[i], lua_typename(L, t));
      c->fns[i - LU_OPT_CHECK] = lua_gettop(L); /* stays on the stack */
    }
  }
  if (c->latency && !tiers) { /* the latency tiers, all starting at 0 */
    o->tier_min = o->tier_init = 0;
    o->tier_max = 5;
  }
  bad = ul_opts_validate(o, &name);
  if (bad) {
    lua_getfield(L, idx, name);
    luaL_error(L, "upstream.new: option '%s' %s (got %s)", name, bad,
               luaL_tolstring(L, -1, NULL));
  }
}
