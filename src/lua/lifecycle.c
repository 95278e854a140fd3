/*
 * lua/lifecycle.c - the life of a list: upstream.new() builds the
 * userdata, liolib-style (metatable first, "empty" until complete, every
 * resource a Lua value it holds), and one idempotent function ends it as
 * list:shutdown(), __gc and __close.
 */
#include <math.h>

#include "binding.h"

static uint32_t lu_cap_for(lua_Integer n) { return n < 4 ? 4 : (uint32_t)n; }

/* Pushes the userdata, with its metatable (upvalue 1 of new, 2 for a
 * shared list) and user values but no core yet: methods refuse it until it is complete. */
lu_list *lu_new_userdata(lua_State *L, const lu_conf *c,
                                lua_Integer n) {
  static const int fn_uv[] = {LU_UV_CHECK, LU_UV_CLOCK, LU_UV_SLEEP,
                              LU_UV_ON_CHANGE};
  const int fns[] = {c->check, c->clock, c->sleep, c->on_change};
  int i, k;
  lu_list *u = (lu_list *)lua_newuserdatauv(L, sizeof *u, LU_NUV);
  u->core = NULL;
  u->driver = LU_DRIVER_NONE;
  u->latency = c->latency;
  u->lua_clock = c->clock != 0;
  u->version = 0;
  u->on_change = c->on_change != 0;
  u->sh = NULL;
  lua_pushvalue(L, lua_upvalueindex(c->shared ? 2 : 1));
  lua_setmetatable(L, -2);
  i = lua_gettop(L);
  /* an array part for every slot: reconcile then stores a backend in any
   * slot without allocating (reconcile.c) */
  lua_createtable(L, (int)lu_cap_for(n), 0);
  lua_setiuservalue(L, i, LU_UV_SLOTS);
  lua_createtable(L, 0, (int)n);
  lua_setiuservalue(L, i, LU_UV_INDEX);
  lua_newtable(L);
  lua_setiuservalue(L, i, LU_UV_THREADS);
  lua_newtable(L);
  lua_setiuservalue(L, i, LU_UV_ERRORS);
  for (k = 0; k < 4; k++) {
    if (fns[k]) lua_pushvalue(L, fns[k]);
    else lua_pushboolean(L, 0);
    lua_setiuservalue(L, i, fn_uv[k]);
  }
  lua_pushboolean(L, 0);
  lua_setiuservalue(L, i, LU_UV_SHARED);
  return u;
}

/* Whether each of the n backends (arg 1) gets a check, in checks[k - 1]
 * (a userdata at list + 3); returns whether any does. Checks the weights
 * against them, with the index table (list + 2) as a temporary set. The
 * healthcheck lookups are the calls into Lua that new() makes (with the
 * clock), so they all come before the block exists. */
static int lu_new_scan(lua_State *L, int list, int weights, lua_Integer n,
                       unsigned char *checks) {
  lua_Integer k;
  int any = 0;
  for (k = 1; k <= n; k++) {
    lua_rawgeti(L, 1, k);
    checks[k - 1] = (unsigned char)lu_has_check(L, list, -1);
    any |= checks[k - 1];
    lua_pushvalue(L, -1);
    lua_pushboolean(L, 1);
    lua_rawset(L, list + 2);
    lua_pop(L, 1);
  }
  if (weights) lu_check_weights(L, weights, list + 2, "new");
  for (k = 1; k <= n; k++) { /* the index is filled for real below */
    lua_rawgeti(L, 1, k);
    lua_pushnil(L);
    lua_rawset(L, list + 2);
  }
  return any;
}

/* Appends the n backends (arg 1) to core, filling the slot (list + 1) and
 * index (list + 2) tables; equal backends share a ring of slots. Calls no
 * Lua code. */
static void lu_new_append(lua_State *L, int list, ul_list *core, int weights,
                          lua_Integer n, const unsigned char *checks,
                          double now) {
  lua_Integer k;
  for (k = 1; k <= n; k++) {
    int32_t dup = -1, s;
    lua_rawgeti(L, 1, k);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, list + 2) == LUA_TNUMBER)
      dup = (int32_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    s = ul_append(core, checks[k - 1], dup, now,
                  lu_weight_of(L, weights, lua_gettop(L), 1),
                  lu_hash_value(L, -1), 0);
    lua_pushvalue(L, -1);
    lua_rawseti(L, list + 1, s + 1);
    if (dup < 0) {
      lua_pushinteger(L, s);
      lua_rawset(L, list + 2);
    } else {
      lua_pop(L, 1);
    }
  }
}

/* upstream.new(backends [, options]) */
int l_new(lua_State *L) {
  lu_conf c;
  lua_Integer n;
  int list;
  lu_list *u;
  ul_list *core;
  unsigned char *checks;
  double now = NAN; /* not read: no check needs it (status: since unknown) */
  lua_settop(L, 2);
  n = lu_check_backends(L, 1, "new");
  lu_read_opts(L, 2, &c);
  if (c.shared) return lu_new_shared(L, &c);
  u = lu_new_userdata(L, &c, n);
  list = lua_gettop(L);
  lua_getiuservalue(L, list, LU_UV_SLOTS); /* list + 1 */
  lua_getiuservalue(L, list, LU_UV_INDEX); /* list + 2 */
  checks = (unsigned char *)lua_newuserdatauv(L, (size_t)n + 1, 0); /* + 3 */
  if (lu_new_scan(L, list, c.weights, n, checks)) now = lu_list_now(L, list);
  core = lu_new_block(L, lu_cap_for(n), &c.o, NULL);
  ul_init(core, lu_cap_for(n), &c.o, c.seed);
  lua_setiuservalue(L, list, LU_UV_BLOCK);
  lu_new_append(L, list, core, c.weights, n, checks, now);
  lua_settop(L, list);
  u->core = core; /* complete: methods may use it */
  return 1;
}

/* list:shutdown(), __gc, __close: stops the checks (on a shared list
 * this process's only, shared.c); idempotent, and copes
 * with a list that new() did not finish. The closing coroutines run user
 * code (their to-be-closed variables), which may reconcile the list: only
 * the detached table of threads is read while they close. */
int l_shutdown(lua_State *L) {
  lu_list *u = (lu_list *)luaL_checkudata(L, 1, LU_LIST);
  if (u->core == NULL || u->core->shut) return 0;
  ul_shutdown(u->core);
  /* close every pending check, allocating nothing: this is also __gc,
   * where an allocation that fails would leave the checks suspended for
   * good (a finalizer runs once). Each entry is cleared before its
   * coroutine is closed; code a closing coroutine runs finds the list
   * shut down. */
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, LU_UV_THREADS);
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    lua_pushvalue(L, -2);
    lua_pushnil(L);
    lua_rawset(L, 2);
    if (lua_type(L, -1) == LUA_TTHREAD) lu_close_thread(L, lua_tothread(L, -1));
    lua_pop(L, 1);
  }
  return 0;
}
