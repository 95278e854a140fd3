/*
 * lua/options.c - upstream.new's options table. One row per option gives
 * its name, the Lua type it must have, the rule a wrong value breaks, and
 * where its value goes; the ranges of the numbers are the core's own
 * (ul_opts_validate), so every front end applies the same ones.
 */
#include <stddef.h>
#include <string.h>

#include "binding.h"

typedef struct lu_option lu_option;

/* Stores the option's value (top of the stack) in c. Returns 1 when the
 * value is to stay on the stack (its index stored), 0 when it may go. */
typedef int (*lu_option_reader)(lua_State *L, lu_conf *c, const lu_option *opt);

struct lu_option {
  const char *name;
  int type;         /* the Lua type it must have; LUA_TNONE: read checks */
  const char *rule; /* "must be <rule>" */
  size_t offset;    /* where the value goes in lu_conf */
  lu_option_reader read;
};

#define LU_AT(field) offsetof(lu_conf, field)
#define LU_FIELD(c, opt, type) ((type *)(void *)((char *)(c) + (opt)->offset))

static const char *const lu_strategies[] = {
    "round_robin", "weighted", "least_conn", "hash", "random", NULL};

static int lu_opt_error(lua_State *L, const lu_option *opt, const char *got) {
  return luaL_error(L, "upstream.new: option '%s' must be %s (got %s)",
                    opt->name, opt->rule, got);
}

static int lu_opt_number(lua_State *L, lu_conf *c, const lu_option *opt) {
  *LU_FIELD(c, opt, double) = lua_tonumber(L, -1);
  return 0;
}

/* Any integer, 0 too: without the option the seed is time-based (set by
 * lu_read_opts before the options are read). */
static int lu_opt_seed(lua_State *L, lu_conf *c, const lu_option *opt) {
  int isint;
  lua_Integer sd = lua_tointegerx(L, -1, &isint);
  if (!isint)
    luaL_error(L, "upstream.new: option 'seed' must be an integer (got %s)",
               lu_got(L, -1));
  *LU_FIELD(c, opt, uint64_t) = (uint64_t)sd;
  return 0;
}

static int lu_opt_strategy(lua_State *L, lu_conf *c, const lu_option *opt) {
  int k;
  for (k = 0; lu_strategies[k]; k++)
    if (lua_type(L, -1) == LUA_TSTRING &&
        strcmp(lua_tostring(L, -1), lu_strategies[k]) == 0)
      break;
  if (!lu_strategies[k]) lu_opt_error(L, opt, lu_got(L, -1));
  *LU_FIELD(c, opt, int) = k;
  return 0;
}

static int lu_opt_boolean(lua_State *L, lu_conf *c, const lu_option *opt) {
  *LU_FIELD(c, opt, int) = lua_toboolean(L, -1);
  return 0;
}

/* functions and the weights table: used from the stack by upstream.new */
static int lu_opt_keep(lua_State *L, lu_conf *c, const lu_option *opt) {
  *LU_FIELD(c, opt, int) = lua_gettop(L);
  return 1;
}

/* capacity: the most members of a shared list */
static int lu_opt_capacity(lua_State *L, lu_conf *c, const lu_option *opt) {
  int isint;
  lua_Integer v = lua_tointegerx(L, -1, &isint);
  if (!isint || v < 1 || v > 1048576) lu_opt_error(L, opt, lu_got(L, -1));
  *LU_FIELD(c, opt, lua_Integer) = v;
  return 0;
}

/* tiers = { min =, max =, init = } */
static int lu_opt_tiers(lua_State *L, lu_conf *c, const lu_option *opt) {
  static const struct { const char *key; size_t offset; } keys[] = {
      {"min", offsetof(ul_opts, tier_min)},
      {"max", offsetof(ul_opts, tier_max)},
      {"init", offsetof(ul_opts, tier_init)},
      {NULL, 0}};
  ul_opts *o = LU_FIELD(c, opt, ul_opts);
  int k, t = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    for (k = 0; keys[k].key; k++)
      if (lua_type(L, -1) == LUA_TSTRING &&
          strcmp(lua_tostring(L, -1), keys[k].key) == 0)
        break;
    if (!keys[k].key)
      luaL_error(L, "upstream.new: option 'tiers' has an unknown key %s "
                    "(allowed: min, max, init)", lu_got(L, -1));
  }
  for (k = 0; keys[k].key; k++) {
    lua_Integer v = 0;
    int isint = 0;
    if (lua_getfield(L, t, keys[k].key) == LUA_TNUMBER)
      v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < 0 || v > UL_MAX_TIER)
      luaL_error(L, "upstream.new: option 'tiers' needs %s, an integer in "
                    "[0, %d] (got %s)", keys[k].key, UL_MAX_TIER,
                 lu_got(L, -1));
    *(int *)(void *)((char *)o + keys[k].offset) = (int)v;
    lua_pop(L, 1);
  }
  if (!(o->tier_min <= o->tier_init && o->tier_init <= o->tier_max))
    luaL_error(L, "upstream.new: option 'tiers' must have min <= init <= max "
                  "(got min %d, init %d, max %d)",
               o->tier_min, o->tier_init, o->tier_max);
  c->tiers = 1;
  return 0;
}

/* In the order they are read: with several bad options, the first one
 * here is the one reported. */
static const lu_option lu_options[] = {
    {"interval", LUA_TNUMBER, "a number", LU_AT(o.interval), lu_opt_number},
    {"unhealthy_interval", LUA_TNUMBER, "a number", LU_AT(o.unhealthy_interval),
     lu_opt_number},
    {"timeout", LUA_TNUMBER, "a number", LU_AT(o.timeout), lu_opt_number},
    {"jitter", LUA_TNUMBER, "a number", LU_AT(o.jitter), lu_opt_number},
    {"initial_score", LUA_TNUMBER, "a number", LU_AT(o.initial_score),
     lu_opt_number},
    {"low_score", LUA_TNUMBER, "a number", LU_AT(o.low_score), lu_opt_number},
    {"high_score", LUA_TNUMBER, "a number", LU_AT(o.high_score), lu_opt_number},
    {"fail_delta", LUA_TNUMBER, "a number", LU_AT(o.fail_delta), lu_opt_number},
    {"success_delta", LUA_TNUMBER, "a number", LU_AT(o.success_delta),
     lu_opt_number},
    {"panic", LUA_TNUMBER, "a number", LU_AT(o.panic), lu_opt_number},
    {"slow_start", LUA_TNUMBER, "a number", LU_AT(o.slow_start), lu_opt_number},
    {"check", LUA_TFUNCTION, "a function", LU_AT(check), lu_opt_keep},
    {"clock", LUA_TFUNCTION, "a function", LU_AT(clock), lu_opt_keep},
    {"sleep", LUA_TFUNCTION, "a function", LU_AT(sleep), lu_opt_keep},
    {"seed", LUA_TNUMBER, "a number", LU_AT(seed), lu_opt_seed},
    {"strategy", LUA_TNONE,
     "one of round_robin, weighted, least_conn, hash, random",
     LU_AT(o.strategy), lu_opt_strategy},
    {"weights", LUA_TTABLE, "a table { [backend] = weight }", LU_AT(weights),
     lu_opt_keep},
    {"tiers", LUA_TTABLE, "a table { min =, max =, init = }", LU_AT(o),
     lu_opt_tiers},
    {"tier_by_latency", LUA_TBOOLEAN, "a boolean", LU_AT(latency),
     lu_opt_boolean},
    {"on_change", LUA_TFUNCTION, "a function", LU_AT(on_change), lu_opt_keep},
    {"shared", LUA_TSTRING, "a string (the shared list's name)", LU_AT(shared),
     lu_opt_keep},
    {"capacity", LUA_TNUMBER, "an integer in [1, 1048576]", LU_AT(capacity),
     lu_opt_capacity},
    {NULL, LUA_TNONE, NULL, 0, NULL}};

/* Option names must be strings, and known ones: a typo must not pass
 * silently. */
static void lu_check_option_names(lua_State *L, int idx) {
  const lu_option *opt;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "upstream.new: option names must be strings, got %s",
                 luaL_typename(L, -2));
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *k = lua_tostring(L, -2);
    for (opt = lu_options; opt->name; opt++)
      if (strcmp(k, opt->name) == 0) break;
    if (!opt->name) luaL_error(L, "upstream.new: unknown option '%s'", k);
    lua_pop(L, 1);
  }
}

static void lu_read_option(lua_State *L, int idx, lu_conf *c,
                           const lu_option *opt) {
  int t = lua_getfield(L, idx, opt->name);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (opt->type != LUA_TNONE && t != opt->type)
    lu_opt_error(L, opt, lua_typename(L, t));
  if (!opt->read(L, c, opt)) lua_pop(L, 1);
}

/* Reads the options table at idx (nil: the defaults) into c. */
void lu_read_opts(lua_State *L, int idx, lu_conf *c) {
  const lu_option *opt;
  const char *bad, *name;
  ul_opts_default(&c->o);
  c->check = c->clock = c->sleep = 0;
  c->weights = c->latency = c->tiers = 0;
  c->on_change = 0;
  c->shared = 0;
  c->capacity = 0;
  c->seed = (uint64_t)(lu_mono_now() * 1e9) ^ (uint64_t)(size_t)c;
  if (lua_isnoneornil(L, idx)) return;
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "upstream.new: options must be a table, got %s",
               luaL_typename(L, idx));
  lu_check_option_names(L, idx);
  for (opt = lu_options; opt->name; opt++) lu_read_option(L, idx, c, opt);
  if (c->latency && !c->tiers) { /* the latency tiers, all starting at 0 */
    c->o.tier_min = c->o.tier_init = 0;
    c->o.tier_max = 5;
  }
  bad = ul_opts_validate(&c->o, &name);
  if (bad) {
    lua_getfield(L, idx, name);
    luaL_error(L, "upstream.new: option '%s' %s (got %s)", name, bad,
               lu_got(L, -1));
  }
}
