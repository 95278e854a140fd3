/*
 * lua/list.c - the Lua binding: upstream.new() returns an upstream.list
 * userdata over the C core (ul_core.h), and runs health checks as Lua
 * coroutines.
 *
 * Two layers drive the checks:
 *  - low level, for a host event loop (the nginx driver): list:due() hands
 *    out the checks to start as jobs, list:report(job, ok, err) takes the
 *    results; the core applies deadlines itself.
 *  - the built-in coroutine scheduler: list:step() / run() / wait_initial()
 *    start each check in its own coroutine, resume it after yields and
 *    upstream.sleep(), and close it at its deadline.
 *
 * Memory: the core's flat block lives in a Lua userdata held as a user
 * value, so nothing malloc'd is ever held across a Lua call that can raise;
 * reconcile builds the new block and tables aside and swaps them in only
 * when nothing can fail any more.
 */
#include <math.h>
#include <string.h>
#include <time.h>

#include "compat.h"
#include "../core/core.h"

#define LU_LIST "upstream.list"
#define NO_UPSTREAMS "no upstreams available"
#define TIMED_OUT "health check timed out"

#if defined(__GNUC__)
#define LU_EXPORT __attribute__((visibility("default")))
#else
#define LU_EXPORT
#endif

/* user values of a list */
enum {
  UV_BLOCK = 1, /* userdata holding the core block */
  UV_SLOTS,     /* slot+1 -> backend */
  UV_INDEX,     /* backend -> first slot holding it */
  UV_THREADS,   /* slot+1 -> coroutine of the running check (scheduler) */
  UV_ERRORS,    /* slot+1 -> last check error */
  UV_CHECK,     /* check function, or false (healthcheck methods) */
  UV_CLOCK,     /* clock function or false */
  UV_SLEEP,     /* sleep function or false */
  NUV = UV_SLEEP
};

enum { DRIVER_NONE, DRIVER_STEP, DRIVER_DUE };

typedef struct lu_list {
  ul_list *core; /* NULL until fully built */
  int driver;
  int latency;      /* tier_by_latency: a check's duration sets its tier */
  int lua_clock;    /* opts.clock is a Lua function */
  uint32_t version; /* bumped when the slot table is replaced (reconcile) */
} lu_list;

static char sleep_token; /* first value upstream.sleep yields */

/* ---- helpers ------------------------------------------------------------ */

/* Methods carry the metatable as upvalue 1: one pointer compare per call
 * (lua_topointer on both costs fewer instructions than lua_rawequal with an
 * upvalue index, and compares the same thing for tables).
 * to_list leaves the metatable on the stack: the pop is a measurable share
 * of a pick, the hottest call. */
static lu_list *to_list(lua_State *L) {
  lu_list *u = (lu_list *)lua_touserdata(L, 1);
  if (u == NULL || !lua_getmetatable(L, 1) ||
      lua_topointer(L, -1) != lua_topointer(L, lua_upvalueindex(1)))
    luaL_typeerror(L, 1, LU_LIST);
  if (u->core == NULL) luaL_error(L, "upstream.list: list is not initialised");
  return u;
}

static lu_list *check_list(lua_State *L) {
  lu_list *u = to_list(L);
  lua_pop(L, 1);
  return u;
}

static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double list_now(lua_State *L, int idx) {
  double t;
  if (lua_getiuservalue(L, idx, UV_CLOCK) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    return mono_now();
  }
  lua_call(L, 0, 1);
  if (lua_type(L, -1) != LUA_TNUMBER)
    luaL_error(L, "upstream: clock() must return a number (got %s)",
               luaL_typename(L, -1));
  t = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (isnan(t)) luaL_error(L, "upstream: clock() returned NaN");
  return t;
}

static void list_sleep(lua_State *L, int idx, double s) {
  if (lua_getiuservalue(L, idx, UV_SLEEP) == LUA_TFUNCTION) {
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

/* Checks that arg is a sequence of non-nil, non-NaN values; returns n. */
static lua_Integer check_backends(lua_State *L, int arg, const char *fn) {
  lua_Integer n, keys = 0;
  if (lua_type(L, arg) != LUA_TTABLE)
    luaL_error(L, "upstream.%s: backends must be a sequence (a table), got %s",
               fn, luaL_typename(L, arg));
  n = (lua_Integer)lua_rawlen(L, arg);
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    lua_Integer k;
    int isint = lua_type(L, -2) == LUA_TNUMBER;
    k = isint ? lua_tointegerx(L, -2, &isint) : 0;
    if (!isint || k < 1 || k > n) {
      lua_pop(L, 1);
      luaL_error(L,
                 "upstream.%s: backends must be a sequence (keys 1..n without "
                 "holes); found key %s",
                 fn, luaL_tolstring(L, -1, NULL));
    }
    if (lua_type(L, -1) == LUA_TNUMBER && isnan(lua_tonumber(L, -1)))
      luaL_error(L, "upstream.%s: backends[%d] is NaN", fn, (int)k);
    keys++;
    lua_pop(L, 1);
  }
  if (keys != n)
    luaL_error(L,
               "upstream.%s: backends must be a sequence (keys 1..n without "
               "holes)",
               fn);
  if (n > INT32_MAX / 4)
    luaL_error(L, "upstream.%s: too many backends (%d)", fn, (int)n);
  return n;
}

/* Whether backend at idx gets an active check: always with a check
 * function, else when it has a healthcheck method (the Go Backend). */
static int has_check(lua_State *L, int list, int idx) {
  int t, r;
  if (lua_getiuservalue(L, list, UV_CHECK) == LUA_TFUNCTION) {
    lua_pop(L, 1);
    return 1;
  }
  lua_pop(L, 1);
  t = lua_type(L, idx);
  if (t != LUA_TTABLE && t != LUA_TUSERDATA) return 0;
  lua_getfield(L, idx, "healthcheck");
  r = lua_type(L, -1) == LUA_TFUNCTION;
  lua_pop(L, 1);
  return r;
}

/* ---- upstream.new ---------------------------------------------------------- */

static const char *const opt_names[] = {
    "interval",   "timeout",    "jitter",     "initial_score", "low_score",
    "high_score", "fail_delta", "success_delta", "panic",      "slow_start",
    "check",      "clock",      "sleep",      "seed",          "strategy",
    "weights",    "tiers",      "tier_by_latency", NULL};
enum {
  OPT_NUMBERS = 10, OPT_CHECK = 10, OPT_CLOCK, OPT_SLEEP, OPT_SEED,
  OPT_STRATEGY, OPT_WEIGHTS, OPT_TIERS, OPT_LATENCY
};
static const char *const strategies[] = {"round_robin", "weighted",
                                         "least_conn", "hash", "random", NULL};

typedef struct lu_conf {
  ul_opts o;
  int fns[3];   /* stack indices of check, clock, sleep (0: absent) */
  int weights;  /* stack index of the weights table (0: absent) */
  int latency;  /* tier_by_latency */
  uint64_t seed;
} lu_conf;

/* Reads tiers = { min =, max =, init = } at the top of the stack. */
static void read_tiers(lua_State *L, ul_opts *o) {
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
static void read_opts(lua_State *L, int idx, lu_conf *c) {
  double *field[OPT_NUMBERS];
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
    for (i = 0; opt_names[i]; i++)
      if (strcmp(k, opt_names[i]) == 0) break;
    if (!opt_names[i]) luaL_error(L, "upstream.new: unknown option '%s'", k);
    lua_pop(L, 1);
  }
  for (i = 0; opt_names[i]; i++) {
    int t = lua_getfield(L, idx, opt_names[i]);
    if (t == LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    if (i < OPT_NUMBERS || i == OPT_SEED) {
      if (t != LUA_TNUMBER)
        luaL_error(L, "upstream.new: option '%s' must be a number (got %s)",
                   opt_names[i], lua_typename(L, t));
      if (i == OPT_SEED) {
        int isint;
        lua_Integer sd = lua_tointegerx(L, -1, &isint);
        if (!isint)
          luaL_error(L, "upstream.new: option 'seed' must be an integer");
        c->seed = (uint64_t)sd;
      } else {
        *field[i] = lua_tonumber(L, -1);
      }
      lua_pop(L, 1);
    } else if (i == OPT_STRATEGY) {
      int k;
      for (k = 0; strategies[k]; k++)
        if (t == LUA_TSTRING && strcmp(lua_tostring(L, -1), strategies[k]) == 0)
          break;
      if (!strategies[k])
        luaL_error(L, "upstream.new: option 'strategy' must be one of "
                      "round_robin, weighted, least_conn, hash, random (got %s)",
                   luaL_tolstring(L, -1, NULL));
      o->strategy = k;
      lua_pop(L, 1);
    } else if (i == OPT_WEIGHTS) {
      if (t != LUA_TTABLE)
        luaL_error(L, "upstream.new: option 'weights' must be a table "
                      "{ [backend] = weight } (got %s)", lua_typename(L, t));
      c->weights = lua_gettop(L); /* stays on the stack */
    } else if (i == OPT_TIERS) {
      read_tiers(L, o);
      tiers = 1;
      lua_pop(L, 1);
    } else if (i == OPT_LATENCY) {
      if (t != LUA_TBOOLEAN)
        luaL_error(L, "upstream.new: option 'tier_by_latency' must be a "
                      "boolean (got %s)", lua_typename(L, t));
      c->latency = lua_toboolean(L, -1);
      lua_pop(L, 1);
    } else {
      if (t != LUA_TFUNCTION)
        luaL_error(L, "upstream.new: option '%s' must be a function (got %s)",
                   opt_names[i], lua_typename(L, t));
      c->fns[i - OPT_CHECK] = lua_gettop(L); /* stays on the stack */
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

/* A block for cap slots: new, or to grow from (not NULL). */
static ul_list *new_block(lua_State *L, uint32_t cap, int strategy,
                          const ul_list *from) {
  size_t sz = from ? ul_grow_size(from, cap) : ul_size(cap, strategy);
  if (sz == 0) luaL_error(L, "upstream: list too large");
  return (ul_list *)lua_newuserdatauv(L, sz, 0);
}

/* Hash of the value at idx: strings and numbers by content (1 and 1.0
 * alike, as raw equality has them), other values by identity. */
static uint64_t hash_typed(lua_State *L, int idx, int type) {
  size_t len;
  const char *p;
  char buf[64];
  const void *ptr;
  switch (type) {
    case LUA_TSTRING:
      p = lua_tolstring(L, idx, &len);
      return ul_hash(p, len);
    case LUA_TNUMBER: {
      lua_Number x = lua_tonumber(L, idx);
      if (x == floor(x) && fabs(x) < 9.2e18)
        len = (size_t)snprintf(buf, sizeof buf, "%lld", (long long)x);
      else
        len = (size_t)snprintf(buf, sizeof buf, "%.17g", (double)x);
      return ul_hash(buf, len);
    }
    case LUA_TBOOLEAN:
      return ul_hash(lua_toboolean(L, idx) ? "true" : "false",
                     lua_toboolean(L, idx) ? 4 : 5);
    default:
      ptr = lua_topointer(L, idx);
      return ul_hash(&ptr, sizeof ptr);
  }
}

static uint64_t hash_value(lua_State *L, int idx) {
  return hash_typed(L, idx, lua_type(L, idx));
}

/* Weight of the backend at idx from the weights table at w (0: none), or
 * dflt. The table was checked by check_weights. */
static uint32_t weight_of(lua_State *L, int w, int idx, uint32_t dflt) {
  uint32_t v = dflt;
  if (!w) return v;
  lua_pushvalue(L, idx);
  if (lua_rawget(L, w) == LUA_TNUMBER) v = (uint32_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Checks a weight value at idx: an integer in [1, UL_MAX_WEIGHT]. */
static uint32_t check_weight(lua_State *L, int idx, const char *fn) {
  int isint = 0;
  lua_Integer v = 0;
  if (lua_type(L, idx) == LUA_TNUMBER) v = lua_tointegerx(L, idx, &isint);
  if (!isint || v < 1 || v > UL_MAX_WEIGHT)
    luaL_error(L, "upstream.%s: a weight must be an integer in [1, %d] (got %s)",
               fn, UL_MAX_WEIGHT, luaL_tolstring(L, idx, NULL));
  return (uint32_t)v;
}

/* Checks every entry of the weights table at w: a valid weight for a key
 * present in the table at set. */
static void check_weights(lua_State *L, int w, int set, const char *fn) {
  lua_pushnil(L);
  while (lua_next(L, w)) {
    int absent;
    check_weight(L, -1, fn);
    lua_pushvalue(L, -2);
    absent = lua_rawget(L, set) == LUA_TNIL;
    lua_pop(L, 1);
    if (absent)
      luaL_error(L, "upstream.%s: weights name %s, which is not one of the "
                    "backends", fn, luaL_tolstring(L, -2, NULL));
    lua_pop(L, 1);
  }
}

static uint32_t cap_for(lua_Integer n) { return n < 4 ? 4 : (uint32_t)n; }

static int l_new(lua_State *L) {
  lu_conf c;
  int i, checks;
  lua_Integer n, k;
  lu_list *u;
  ul_list *core;
  double now = 0;
  lua_settop(L, 2);
  n = check_backends(L, 1, "new");
  read_opts(L, 2, &c);
  if (c.seed == 0) c.seed = (uint64_t)(mono_now() * 1e9) ^ (uint64_t)(size_t)&c;

  u = (lu_list *)lua_newuserdatauv(L, sizeof *u, NUV);
  u->core = NULL;
  u->driver = DRIVER_NONE;
  u->latency = c.latency;
  u->lua_clock = c.fns[1] != 0;
  u->version = 0;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setmetatable(L, -2);
  i = lua_gettop(L); /* the list */
  lua_createtable(L, (int)n, 0);
  lua_setiuservalue(L, i, UV_SLOTS);
  lua_createtable(L, 0, (int)n);
  lua_setiuservalue(L, i, UV_INDEX);
  lua_newtable(L);
  lua_setiuservalue(L, i, UV_THREADS);
  lua_newtable(L);
  lua_setiuservalue(L, i, UV_ERRORS);
  for (k = 0; k < 3; k++) {
    if (c.fns[k]) lua_pushvalue(L, c.fns[k]);
    else lua_pushboolean(L, 0);
    lua_setiuservalue(L, i, UV_CHECK + (int)k);
  }
  core = new_block(L, cap_for(n), c.o.strategy, NULL);
  ul_init(core, cap_for(n), &c.o, c.seed);
  lua_setiuservalue(L, i, UV_BLOCK);

  lua_getiuservalue(L, i, UV_SLOTS); /* i + 1 */
  lua_getiuservalue(L, i, UV_INDEX); /* i + 2 */
  checks = 0;
  for (k = 1; k <= n; k++) {
    lua_rawgeti(L, 1, k);
    if (has_check(L, i, -1)) checks = 1;
    lua_pushvalue(L, -1);
    lua_pushboolean(L, 1);
    lua_rawset(L, i + 2); /* a set of the backends, for check_weights */
    lua_pop(L, 1);
  }
  if (c.weights) check_weights(L, c.weights, i + 2, "new");
  for (k = 1; k <= n; k++) { /* the index is filled for real below */
    lua_rawgeti(L, 1, k);
    lua_pushnil(L);
    lua_rawset(L, i + 2);
  }
  if (checks) now = list_now(L, i);
  for (k = 1; k <= n; k++) {
    int32_t dup = -1, s;
    lua_rawgeti(L, 1, k);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, i + 2) == LUA_TNUMBER) dup = (int32_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    s = ul_append(core, has_check(L, i, -1), dup, now,
                  weight_of(L, c.weights, lua_gettop(L), 1),
                  hash_value(L, -1), 0);
    lua_pushvalue(L, -1);
    lua_rawseti(L, i + 1, s + 1);
    if (dup < 0) {
      lua_pushinteger(L, s);
      lua_rawset(L, i + 2);
    } else {
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 2);
  u->core = core; /* complete: methods may use it */
  return 1;
}

/* ---- pick, up, down, score ------------------------------------------------ */

/* pick([key]): the key matters to the hash strategy only, but is checked
 * for every strategy so that switching strategies needs no code change. */
static int l_pick(lua_State *L) {
  int top = lua_gettop(L);
  lu_list *u = to_list(L);
  ul_list *c = u->core;
  uint64_t key = 0;
  double now = 0;
  int32_t s;
  if (top >= 2 && !lua_isnil(L, 2)) {
    int t = lua_type(L, 2);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      luaL_argerror(L, 2, "key must be a string or number");
    if (c->opts.strategy == UL_HASH) key = hash_typed(L, 2, t);
  } else if (c->opts.strategy == UL_HASH) {
    luaL_argerror(L, 2, "the 'hash' strategy needs a key (string or number)");
  }
  if (c->ramping) now = list_now(L, 1);
  s = ul_pick(c, key, now);
  if (s < 0) {
    lua_pushnil(L);
    lua_pushliteral(L, NO_UPSTREAMS);
    return 2;
  }
  lua_getiuservalue(L, 1, UV_SLOTS);
  lua_rawgeti(L, -1, (lua_Integer)s + 1);
  return 1;
}

/* First slot holding the value at arg 2, or -1. */
static int32_t find_slot(lua_State *L) {
  int32_t s = -1;
  lua_getiuservalue(L, 1, UV_INDEX);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, -2) == LUA_TNUMBER) s = (int32_t)lua_tointeger(L, -1);
  lua_pop(L, 2);
  return s;
}

/* The clock, when slow start needs to know when a backend turned healthy. */
static double ramp_now(lua_State *L, const lu_list *u) {
  return u->core->opts.slow_start > 0 ? list_now(L, 1) : 0;
}

/* The common start of the methods taking a backend (arg 2): the list, and
 * the first slot holding the backend in *s (-1: not in the list). */
static lu_list *list_and_slot(lua_State *L, int nargs, int32_t *s) {
  lu_list *u;
  lua_settop(L, nargs);
  u = check_list(L);
  *s = find_slot(L);
  return u;
}

static int l_up(lua_State *L) {
  int32_t s;
  lu_list *u = list_and_slot(L, 2, &s);
  if (s >= 0) ul_up(u->core, s, ramp_now(L, u));
  return 0;
}

static int l_down(lua_State *L) {
  int32_t s;
  lu_list *u = list_and_slot(L, 2, &s);
  if (s >= 0) ul_down(u->core, s, ramp_now(L, u));
  return 0;
}

static int l_score(lua_State *L) {
  int32_t s;
  lu_list *u = list_and_slot(L, 2, &s);
  if (s < 0) lua_pushnil(L);
  else lua_pushnumber(L, ul_nodes(u->core)[s].score);
  return 1;
}

static int l_weight(lua_State *L) {
  int32_t s;
  lu_list *u = list_and_slot(L, 2, &s);
  if (s < 0) lua_pushnil(L);
  else lua_pushinteger(L, (lua_Integer)ul_nodes(u->core)[s].weight);
  return 1;
}

static int l_set_weight(lua_State *L) {
  int32_t s;
  lu_list *u = list_and_slot(L, 3, &s);
  uint32_t w = check_weight(L, 3, "set_weight");
  if (s >= 0) ul_set_weight(u->core, s, w);
  lua_pushboolean(L, s >= 0);
  return 1;
}

static int l_release(lua_State *L) {
  int32_t s;
  lu_list *u = list_and_slot(L, 2, &s);
  lua_pushboolean(L, s >= 0 && ul_release(u->core, s));
  return 1;
}

/* In-flight picks of every member equal to b (least_conn). */
static int l_inflight(lua_State *L) {
  int32_t s, t;
  lua_Integer k = 0;
  lu_list *u = list_and_slot(L, 2, &s);
  if (s < 0) {
    lua_pushnil(L);
    return 1;
  }
  t = s;
  do {
    k += ul_nodes(u->core)[t].inflight;
    t = ul_nodes(u->core)[t].dup;
  } while (t != s);
  lua_pushinteger(L, k);
  return 1;
}

static int l_len(lua_State *L) {
  lu_list *u = check_list(L);
  lua_pushinteger(L, (lua_Integer)u->core->n);
  return 1;
}

/* The list's clock: for a host loop that computes time left to a deadline. */
static int l_now(lua_State *L) {
  lua_settop(L, 1);
  check_list(L);
  lua_pushnumber(L, list_now(L, 1));
  return 1;
}

static void push_wait(lua_State *L, double next, double now) {
  if (isinf(next)) lua_pushnil(L);
  else lua_pushnumber(L, next > now ? next - now : 0);
}

/* Seconds until the next check event (0: due now), nil when nothing is
 * scheduled: a host loop sleeps exactly that long between due() calls. */
static int l_next_due(lua_State *L) {
  lu_list *u;
  double next;
  lua_settop(L, 1);
  u = check_list(L);
  next = u->core->shut ? INFINITY : ul_next_time(u->core);
  if (isinf(next)) lua_pushnil(L);
  else push_wait(L, next, list_now(L, 1));
  return 1;
}

/* Members with an active check (0: a passive list, moved by up/down only). */
static int l_checked(lua_State *L) {
  lu_list *u = check_list(L);
  lua_pushinteger(L, (lua_Integer)u->core->checked);
  return 1;
}

static int l_tostring(lua_State *L) {
  lua_pushfstring(L, LU_LIST ": %p", lua_touserdata(L, 1));
  return 1;
}

static int l_status(lua_State *L) {
  lu_list *u = check_list(L);
  const ul_list *c = u->core;
  const ul_node *nd = ul_nodes(c);
  const int32_t *ord = ul_order(c);
  uint32_t p;
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, UV_SLOTS);
  lua_getiuservalue(L, 1, UV_ERRORS);
  lua_createtable(L, (int)c->n, 0);
  for (p = 0; p < c->n; p++) {
    const ul_node *x = &nd[ord[p]];
    lua_createtable(L, 0, 9);
    lua_rawgeti(L, 2, (lua_Integer)ord[p] + 1);
    lua_setfield(L, -2, "backend");
    lua_pushnumber(L, x->score);
    lua_setfield(L, -2, "score");
    lua_pushboolean(L, x->score >= 0);
    lua_setfield(L, -2, "healthy");
    lua_rawgeti(L, 3, (lua_Integer)ord[p] + 1);
    lua_setfield(L, -2, "last_error");
    lua_pushinteger(L, (lua_Integer)x->checks);
    lua_setfield(L, -2, "checks");
    lua_pushinteger(L, (lua_Integer)x->failures);
    lua_setfield(L, -2, "failures");
    lua_pushinteger(L, (lua_Integer)x->weight);
    lua_setfield(L, -2, "weight");
    lua_pushinteger(L, (lua_Integer)x->tier);
    lua_setfield(L, -2, "tier");
    lua_pushinteger(L, (lua_Integer)x->inflight);
    lua_setfield(L, -2, "inflight");
    lua_rawseti(L, 4, (lua_Integer)p + 1);
  }
  return 1;
}

/* ---- coroutines ------------------------------------------------------------- */

/* Closes co when it is suspended or dead by error: its to-be-closed
 * variables run (5.4; older versions only drop it, see lu_compat.h). A
 * running coroutine is left alone: whoever resumed it sees its check is
 * stale when it comes back. */
static void close_thread(lua_State *L, lua_State *co) {
  if (lua_status(co) != LUA_OK) lu_closethread(co, L);
}

/* threads[slot+1] = nil if it still holds the coroutine at top of L. */
static void forget_thread(lua_State *L, int list, int32_t s) {
  lua_getiuservalue(L, list, UV_THREADS);
  if (lua_rawgeti(L, -1, (lua_Integer)s + 1) == LUA_TTHREAD &&
      lua_rawequal(L, -1, -3)) {
    lua_pushnil(L);
    lua_rawseti(L, -3, (lua_Integer)s + 1);
  }
  lua_pop(L, 2);
}

/* Records the check's error (string at top of L, or nil) for slot. */
static void set_error(lua_State *L, int list, int32_t s) {
  lua_getiuservalue(L, list, UV_ERRORS);
  lua_insert(L, -2);
  lua_rawseti(L, -2, (lua_Integer)s + 1);
  lua_pop(L, 1);
}

/* Pushes onto L a message for a failed check from the values on co. */
static void push_failure(lua_State *L, lua_State *co, int idx, int raised) {
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
static int result_tier(const lu_list *u, lua_State *co, int idx, int ok,
                       int32_t s, double now) {
  lua_Number t;
  if (u->latency)
    return ok ? ul_latency_tier(now - ul_nodes(u->core)[s].started) : -1;
  if (!idx || lua_type(co, idx) != LUA_TNUMBER) return -1;
  t = lua_tonumber(co, idx);
  if (t != t) return -1;
  return t < 0 ? 0 : t > UL_MAX_TIER ? UL_MAX_TIER : (int)t;
}

/* Resumes the check coroutine at top of L (slot s, check gen) with nargs
 * arguments already on co, and handles what it did. Pops the coroutine. */
static void resume_check(lua_State *L, lua_State *co, int nargs, int32_t s,
                         uint64_t gen, double now) {
  lu_list *u = (lu_list *)lua_touserdata(L, 1);
  int nres = 0, st;
  st = lua_resume(co, L, nargs, &nres);
  if (st == LUA_YIELD) {
    double wake = now;
    if (nres >= 2 && lua_touserdata(co, -nres) == &sleep_token)
      wake = now + lua_tonumber(co, -nres + 1);
    lua_pop(co, nres);
    if (!ul_sleep(u->core, s, gen, wake)) { /* stale: removed or shut down */
      forget_thread(L, 1, s);
      close_thread(L, co);
      lua_pop(L, 1);
    } else {
      lua_pop(L, 1);
    }
    return;
  }
  forget_thread(L, 1, s);
  if (st == LUA_OK) {
    int ok = nres >= 1 && lua_toboolean(co, -nres), tier;
    /* the tier: the first result on success, the third on failure */
    tier = result_tier(u, co, ok ? -nres : nres >= 3 ? -nres + 2 : 0, ok, s,
                       now);
    if (ok) lua_pushnil(L);
    else if (nres >= 2) push_failure(L, co, -nres + 1, 0);
    else lua_pushliteral(L, "health check failed");
    lua_pop(co, nres);
    if (ul_report(u->core, s, gen, ok, now, tier)) set_error(L, 1, s);
    else lua_pop(L, 1);
  } else {
    push_failure(L, co, -1, 1);
    close_thread(L, co);
    if (ul_report(u->core, s, gen, 0, now, -1)) set_error(L, 1, s);
    else lua_pop(L, 1);
  }
  lua_pop(L, 1); /* the coroutine */
}

/* Starts the check of slot s in a new coroutine. */
static void start_check(lua_State *L, int32_t s, uint64_t gen, double now) {
  lua_State *co;
  lua_getiuservalue(L, 1, UV_THREADS);
  co = lua_newthread(L);
  lua_pushvalue(L, -1);
  lua_rawseti(L, -3, (lua_Integer)s + 1);
  lua_remove(L, -2); /* threads table; the coroutine stays on top */
  lua_getiuservalue(L, 1, UV_SLOTS);
  lua_rawgeti(L, -1, (lua_Integer)s + 1); /* backend */
  lua_remove(L, -2);
  if (lua_getiuservalue(L, 1, UV_CHECK) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    lua_getfield(L, -1, "healthcheck");
  }
  lua_insert(L, -2); /* fn, backend */
  lua_xmove(L, co, 2);
  resume_check(L, co, 1, s, gen, now);
}

static void timeout_check(lua_State *L, int32_t s) {
  lua_State *co;
  lua_pushliteral(L, TIMED_OUT);
  set_error(L, 1, s);
  lua_getiuservalue(L, 1, UV_THREADS);
  if (lua_rawgeti(L, -1, (lua_Integer)s + 1) == LUA_TTHREAD) {
    co = lua_tothread(L, -1);
    lua_pushnil(L);
    lua_rawseti(L, -3, (lua_Integer)s + 1);
    close_thread(L, co);
  }
  lua_pop(L, 2);
}

static void use_driver(lua_State *L, lu_list *u, int d) {
  if (u->driver != DRIVER_NONE && u->driver != d)
    luaL_error(L, d == DRIVER_STEP
                      ? "upstream.list: checks are driven by due()/report(); "
                        "step(), run() and wait_initial() are not available"
                      : "upstream.list: checks are driven by step(); due() "
                        "and report() are not available");
  u->driver = d;
}

/* Runs every event due at now. Returns the time of the next event. */
static double do_step(lua_State *L, lu_list *u, double now) {
  int32_t s;
  uint64_t gen;
  int ev;
  use_driver(L, u, DRIVER_STEP);
  ul_collect(u->core, now);
  while ((ev = ul_take(u->core, &s, &gen)) != UL_EV_NONE) {
    if (ev == UL_EV_START) {
      start_check(L, s, gen, now);
    } else if (ev == UL_EV_WAKE) {
      lua_getiuservalue(L, 1, UV_THREADS);
      lua_rawgeti(L, -1, (lua_Integer)s + 1);
      lua_remove(L, -2);
      if (lua_type(L, -1) == LUA_TTHREAD &&
          lua_status(lua_tothread(L, -1)) == LUA_YIELD)
        resume_check(L, lua_tothread(L, -1), 0, s, gen, now);
      else
        lua_pop(L, 1);
    } else {
      timeout_check(L, s);
    }
  }
  return ul_next_time(u->core);
}

static int l_step(lua_State *L) {
  lu_list *u = check_list(L);
  double now, next;
  lua_settop(L, 1);
  if (u->core->shut) {
    lua_pushnil(L);
    return 1;
  }
  now = list_now(L, 1);
  next = do_step(L, u, now);
  push_wait(L, next, now);
  return 1;
}

/* Drives the scheduler until done() or the clock reaches end. Returns 1
 * when done() held. */
static int drive(lua_State *L, lu_list *u, double end,
                 int (*done)(const ul_list *)) {
  double now = list_now(L, 1);
  for (;;) {
    double next, later, wait;
    if (done && done(u->core)) return 1;
    next = u->core->shut ? INFINITY : do_step(L, u, now);
    if (done && done(u->core)) return 1;
    later = list_now(L, 1);
    if (later >= end) return 0;
    wait = (next < end ? next : end) - later;
    if (wait < 0) wait = 0;
    list_sleep(L, 1, wait);
    now = list_now(L, 1);
    if (wait > 0 && now <= later)
      luaL_error(L, "upstream.list: the clock did not move during sleep(%f);"
                    " with a fake clock, pass a 'sleep' option that advances it",
                 wait);
  }
}

static int l_run(lua_State *L) {
  lu_list *u;
  double secs;
  lua_settop(L, 2);
  u = check_list(L);
  secs = luaL_checknumber(L, 2);
  if (!(secs >= 0) || isinf(secs))
    luaL_argerror(L, 2, "seconds must be a finite number >= 0");
  lua_settop(L, 1);
  drive(L, u, list_now(L, 1) + secs, NULL);
  return 0;
}

static int first_round_done(const ul_list *c) {
  return c->unchecked == 0 || c->shut;
}

static int l_wait_initial(lua_State *L) {
  lu_list *u;
  double limit;
  lua_settop(L, 2);
  u = check_list(L);
  limit = luaL_optnumber(L, 2, HUGE_VAL);
  if (!(limit >= 0))
    luaL_argerror(L, 2, "timeout must be a number >= 0");
  lua_settop(L, 1);
  if (u->core->shut) {
    lua_pushnil(L);
    lua_pushliteral(L, "shut down");
    return 2;
  }
  if (!drive(L, u, list_now(L, 1) + limit, first_round_done)) {
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  if (u->core->shut) {
    lua_pushnil(L);
    lua_pushliteral(L, "shut down");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- low-level driver: due / report --------------------------------------- */

static int l_due(lua_State *L) {
  lu_list *u;
  double now;
  int32_t s;
  uint64_t gen;
  int ev, k = 0;
  lua_settop(L, 2);
  u = check_list(L);
  now = lua_isnoneornil(L, 2) ? list_now(L, 1) : luaL_checknumber(L, 2);
  lua_newtable(L); /* 3: jobs */
  if (u->core->shut) return 1;
  use_driver(L, u, DRIVER_DUE);
  ul_collect(u->core, now);
  while ((ev = ul_take(u->core, &s, &gen)) != UL_EV_NONE) {
    if (ev == UL_EV_TIMEOUT) {
      lua_pushliteral(L, TIMED_OUT);
      set_error(L, 1, s);
      continue;
    }
    if (ev != UL_EV_START) continue; /* no sleeps in this mode */
    lua_createtable(L, 0, 5);
    lua_getiuservalue(L, 1, UV_SLOTS);
    lua_rawgeti(L, -1, (lua_Integer)s + 1);
    lua_setfield(L, -3, "backend");
    lua_pop(L, 1);
    lua_pushinteger(L, (lua_Integer)s);
    lua_setfield(L, -2, "slot");
    lua_pushnumber(L, (lua_Number)gen);
    lua_setfield(L, -2, "gen");
    lua_pushnumber(L, ul_nodes(u->core)[s].deadline);
    lua_setfield(L, -2, "deadline");
    lua_getiuservalue(L, 1, UV_CHECK); /* the check to run, or false */
    lua_setfield(L, -2, "check");
    lua_rawseti(L, 3, ++k);
  }
  return 1;
}

/* report(job, ok [, err [, tier]]) */
static int l_report(lua_State *L) {
  lu_list *u;
  lua_Integer s;
  lua_Number gen;
  double now;
  int ok, applied, isint, tier = -1;
  lua_settop(L, 5);
  u = check_list(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  ok = lua_toboolean(L, 3);
  if (!lua_isnil(L, 5)) {
    lua_Number t = luaL_checknumber(L, 5);
    if (t == t) tier = t < 0 ? 0 : t > UL_MAX_TIER ? UL_MAX_TIER : (int)t;
  }
  lua_getfield(L, 2, "slot");
  lua_getfield(L, 2, "gen");
  s = lua_tointegerx(L, -2, &isint);
  gen = lua_tonumber(L, -1);
  if (!isint || lua_type(L, -1) != LUA_TNUMBER || s < 0 || s > INT32_MAX ||
      !(gen >= 1) || gen != floor(gen))
    luaL_argerror(L, 2, "not a job from due()");
  lua_pop(L, 2);
  now = list_now(L, 1);
  if (u->latency && ul_current(u->core, (int32_t)s, (uint64_t)gen))
    tier = ok ? ul_latency_tier(now - ul_nodes(u->core)[s].started) : -1;
  if (ok) lua_pushnil(L);
  else if (lua_type(L, 4) == LUA_TSTRING || lua_type(L, 4) == LUA_TNUMBER)
    lua_pushstring(L, lua_tostring(L, 4));
  else lua_pushliteral(L, "health check failed");
  applied = ul_report(u->core, (int32_t)s, (uint64_t)gen, ok, now, tier);
  if (applied) set_error(L, 1, (int32_t)s);
  else lua_pop(L, 1);
  lua_pushboolean(L, applied);
  return 1;
}

/* ---- reconcile --------------------------------------------------------------- */

static int l_reconcile(lua_State *L) {
  lu_list *u;
  ul_list *old, *nb;
  lua_Integer n, k, added = 0;
  uint32_t p, kept = 0, cap;
  unsigned char *drop;
  double now = 0;
  int anycheck = 0, c, w;
  lua_settop(L, 3);
  u = check_list(L);
  old = u->core;
  n = check_backends(L, 2, "reconcile");
  if (!lua_isnil(L, 3) && lua_type(L, 3) != LUA_TTABLE)
    luaL_error(L, "upstream.reconcile: weights must be a table "
                  "{ [backend] = weight } (got %s)", luaL_typename(L, 3));
  w = lua_istable(L, 3) ? 3 : 0;
  lua_getiuservalue(L, 1, UV_SLOTS);   /* 4 */
  lua_getiuservalue(L, 1, UV_INDEX);   /* 5 */
  lua_getiuservalue(L, 1, UV_THREADS); /* 6 */
  lua_getiuservalue(L, 1, UV_ERRORS);  /* 7 */
  lua_createtable(L, 0, (int)n);       /* 8: set of the new backends */
  lua_createtable(L, (int)n, 0);       /* 9: backends to append */
  lua_createtable(L, (int)n, 0);       /* 10: their check flags */
  for (k = 1; k <= n; k++) {
    lua_rawgeti(L, 2, k);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, 8) != LUA_TNIL) { /* given twice: skip */
      lua_pop(L, 2);
      continue;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_pushboolean(L, 1);
    lua_rawset(L, 8);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, 5) == LUA_TNIL) {
      c = has_check(L, 1, -2);
      anycheck |= c;
      lua_pushvalue(L, -2);
      lua_rawseti(L, 9, ++added);
      lua_pushboolean(L, c);
      lua_rawseti(L, 10, added);
    }
    lua_pop(L, 2);
  }
  if (lua_istable(L, 3)) check_weights(L, 3, 8, "reconcile");
  if (anycheck || (added && old->opts.slow_start > 0)) now = list_now(L, 1);
  /* which members stay */
  for (p = 0; p < old->n; p++) {
    lua_rawgeti(L, 4, (lua_Integer)ul_order(old)[p] + 1);
    if (lua_rawget(L, 8) != LUA_TNIL) kept++;
    lua_pop(L, 1);
  }
  cap = old->cap;
  if ((lua_Integer)kept + added > (lua_Integer)cap) {
    lua_Integer want = (lua_Integer)kept + added;
    cap = want < (lua_Integer)cap * 2 ? cap * 2 : (uint32_t)want;
  }
  /* build the new state aside: block, slot and index tables */
  nb = new_block(L, cap, old->opts.strategy, old);                                  /* 11 */
  ul_grow(nb, cap, old);
  drop = (unsigned char *)lua_newuserdatauv(L, old->cap, 0); /* 12 */
  memset(drop, 0, old->cap);
  lua_createtable(L, (int)cap, 0);                         /* 13: slots */
  lua_createtable(L, 0, (int)cap);                         /* 14: index */
  lua_createtable(L, 0, 0);                                /* 15: threads */
  lua_createtable(L, 0, 0);                                /* 16: errors */
  lua_createtable(L, 0, 0);                                /* 17: to close */
  for (p = 0; p < old->n; p++) {
    int32_t s = ul_order(old)[p];
    lua_rawgeti(L, 4, (lua_Integer)s + 1);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, 8) == LUA_TNIL) {
      drop[s] = 1;
      if (lua_rawgeti(L, 6, (lua_Integer)s + 1) == LUA_TTHREAD)
        lua_rawseti(L, 17, (lua_Integer)lua_rawlen(L, 17) + 1);
      else
        lua_pop(L, 1);
      lua_pop(L, 2);
      continue;
    }
    lua_pop(L, 1);
    lua_rawseti(L, 13, (lua_Integer)s + 1);
    lua_rawgeti(L, 6, (lua_Integer)s + 1);
    lua_rawseti(L, 15, (lua_Integer)s + 1);
    lua_rawgeti(L, 7, (lua_Integer)s + 1);
    lua_rawseti(L, 16, (lua_Integer)s + 1);
  }
  /* the index: first kept slot of each backend (chains stay intact) */
  lua_pushnil(L);
  while (lua_next(L, 5)) {
    int32_t s = (int32_t)lua_tointeger(L, -1);
    if (!drop[s]) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, 14);
    } else {
      lua_pop(L, 1);
    }
  }
  ul_remove(nb, drop);
  if (w) { /* new weights of kept backends */
    lua_pushnil(L);
    while (lua_next(L, 14)) {
      ul_set_weight(nb, (int32_t)lua_tointeger(L, -1),
                    weight_of(L, w, lua_gettop(L) - 1,
                              ul_nodes(nb)[lua_tointeger(L, -1)].weight));
      lua_pop(L, 1);
    }
  }
  for (k = 1; k <= added; k++) {
    int32_t s;
    lua_rawgeti(L, 10, k);
    c = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_rawgeti(L, 9, k);
    s = ul_append(nb, c, -1, now, weight_of(L, w, lua_gettop(L), 1),
                  hash_value(L, -1), 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, 13, (lua_Integer)s + 1);
    lua_pushinteger(L, s);
    lua_rawset(L, 14);
  }
  /* commit: nothing below can fail */
  lua_pushvalue(L, 11);
  lua_setiuservalue(L, 1, UV_BLOCK);
  lua_pushvalue(L, 13);
  lua_setiuservalue(L, 1, UV_SLOTS);
  lua_pushvalue(L, 14);
  lua_setiuservalue(L, 1, UV_INDEX);
  lua_pushvalue(L, 15);
  lua_setiuservalue(L, 1, UV_THREADS);
  lua_pushvalue(L, 16);
  lua_setiuservalue(L, 1, UV_ERRORS);
  u->core = nb;
  u->version++;
  /* checks of removed backends: their results are void; close them */
  for (k = 1; k <= (lua_Integer)lua_rawlen(L, 17); k++) {
    lua_rawgeti(L, 17, k);
    close_thread(L, lua_tothread(L, -1));
    lua_pop(L, 1);
  }
  return 0;
}

/* ---- shutdown, __gc, __close ---------------------------------------------- */

static int l_shutdown(lua_State *L) {
  lu_list *u = (lu_list *)luaL_checkudata(L, 1, LU_LIST);
  if (u->core == NULL || u->core->shut) return 0;
  ul_shutdown(u->core);
  /* close every pending check; the table is replaced first so that code
   * run by a closing coroutine sees none of them */
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, UV_THREADS);
  lua_newtable(L);
  lua_setiuservalue(L, 1, UV_THREADS);
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    close_thread(L, lua_tothread(L, -1));
    lua_pop(L, 1);
  }
  return 0;
}

/* ---- LuaJIT FFI fast path (src/upstream/ffi.lua) ---------------------------- */

/* list:_slots() -> the slot table (slot + 1 -> backend) and its version, for
 * upstream.ffi's picker, which reads backends from it directly. */
static int l_slots(lua_State *L) {
  lu_list *u;
  lua_settop(L, 1);
  u = check_list(L);
  lua_getiuservalue(L, 1, UV_SLOTS);
  lua_pushinteger(L, (lua_Integer)u->version);
  return 2;
}

/* pick() for LuaJIT's FFI, called with the list userdata's payload: the
 * common case without entering the Lua API, so a JIT-compiled caller stays
 * compiled. key: NULL or a string's bytes. Returns the slot, -1 when none
 * is eligible, -2 when the call needs list:pick() instead (a hash pick
 * without a key, slow start ramping on a Lua clock). *version gets the
 * slot table's version. */
LU_EXPORT int32_t upstream_ffi_pick(lu_list *u, const char *key, size_t len,
                                    uint32_t *version);
LU_EXPORT int32_t upstream_ffi_pick(lu_list *u, const char *key, size_t len,
                                    uint32_t *version) {
  ul_list *c = u->core;
  double now = 0;
  *version = u->version;
  if (c == NULL || (key == NULL && c->opts.strategy == UL_HASH)) return -2;
  if (c->ramping) {
    if (u->lua_clock) return -2;
    now = mono_now();
  }
  return ul_pick(c, key && c->opts.strategy == UL_HASH ? ul_hash(key, len) : 0,
                 now);
}

/* ---- module -------------------------------------------------------------------- */

static int l_sleep(lua_State *L) {
  double s = luaL_checknumber(L, 1);
  if (!(s >= 0) || isinf(s))
    luaL_argerror(L, 1, "seconds must be a finite number >= 0");
  if (!lua_isyieldable(L))
    luaL_error(L, "upstream.sleep: not inside a health check");
  lua_settop(L, 1);
  lua_pushlightuserdata(L, &sleep_token);
  lua_insert(L, 1);
  return lua_yield(L, 2);
}

static const luaL_Reg methods[] = {
    {"pick", l_pick},
    {"up", l_up},
    {"down", l_down},
    {"score", l_score},
    {"status", l_status},
    {"reconcile", l_reconcile},
    {"step", l_step},
    {"run", l_run},
    {"wait_initial", l_wait_initial},
    {"due", l_due},
    {"report", l_report},
    {"now", l_now},
    {"checked", l_checked},
    {"next_due", l_next_due},
    {"weight", l_weight},
    {"set_weight", l_set_weight},
    {"release", l_release},
    {"inflight", l_inflight},
    {"_slots", l_slots},
    {"shutdown", l_shutdown},
    {NULL, NULL}};

static const luaL_Reg metamethods[] = {{"__len", l_len},
                                       {"__tostring", l_tostring},
                                       {"__gc", l_shutdown},
                                       {"__close", l_shutdown},
                                       {NULL, NULL}};

LU_EXPORT int luaopen_upstream(lua_State *L);

LU_EXPORT int luaopen_upstream(lua_State *L) {
  luaL_newmetatable(L, LU_LIST);
  lua_pushvalue(L, -1);
  luaL_setfuncs(L, metamethods, 1);
  lua_newtable(L);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, methods, 1);
  lua_setfield(L, -2, "__index");
  lua_newtable(L); /* module */
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_new, 1);
  lua_setfield(L, -2, "new");
  lua_pushcfunction(L, l_sleep);
  lua_setfield(L, -2, "sleep");
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
