/*
 * lua/backends.c - what upstream.new() and list:reconcile() both check
 * and derive from the backends they are given: the sequence itself,
 * whether a backend gets an active check, its hash (the hash strategy),
 * its weight, and a core block to hold them.
 */
#include <math.h>
#include <stdio.h>

#include "binding.h"

/* Pushes and returns the value at idx as an error message echoes it,
 * "(got ...)": a string quoted and named, so "2" is not taken for 2; a
 * number as Lua prints it, but NaN and infinities as nan, inf and -inf on
 * every runtime (printf says -nan for some NaNs); anything else as
 * tostring does (which may run its __tostring: only on the way to an
 * error). */
const char *lu_got(lua_State *L, int idx) {
  lua_Number x;
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx += lua_gettop(L) + 1;
  switch (lua_type(L, idx)) {
    case LUA_TSTRING:
      return lua_pushfstring(L, "string \"%s\"", lua_tostring(L, idx));
    case LUA_TNUMBER:
      x = lua_tonumber(L, idx);
      if (x != x) return lua_pushfstring(L, "nan");
      if (isinf(x)) return lua_pushfstring(L, x > 0 ? "inf" : "-inf");
      lua_pushvalue(L, idx);
      return lua_tostring(L, -1);
    default:
      return luaL_tolstring(L, idx, NULL);
  }
}

/* Checks that arg is a sequence of non-nil, non-NaN values; returns n. */
lua_Integer lu_check_backends(lua_State *L, int arg, const char *fn) {
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
                 fn, lu_got(L, -1));
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

/* Pushes the value of field "healthcheck" of the value at index 1. */
static int lu_get_healthcheck(lua_State *L) {
  lua_getfield(L, 1, "healthcheck");
  return 1;
}

/* Whether the value at idx (a table or userdata) has an __index to ask. */
static int lu_has_index(lua_State *L, int idx) {
  int r;
  if (!lua_getmetatable(L, idx)) return 0;
  lua_pushliteral(L, "__index");
  r = lua_rawget(L, -2) != LUA_TNIL;
  lua_pop(L, 2);
  return r;
}

/* Whether backend at idx gets an active check: always with a check
 * function, else when it has a healthcheck method (the Go Backend). The
 * lookup may run the backend's __index, user code that may raise: a
 * backend is any Lua value, so a lookup that fails means no method (a
 * strict object, a userdata without __index). It may also reconcile the
 * list: callers read nothing of the list's block across this call. */
int lu_has_check(lua_State *L, int list, int idx) {
  int t, st;
  if (idx < 0) idx += lua_gettop(L) + 1;
  if (lua_getiuservalue(L, list, LU_UV_CHECK) == LUA_TFUNCTION) {
    lua_pop(L, 1);
    return 1;
  }
  lua_pop(L, 1);
  t = lua_type(L, idx);
  if (t == LUA_TTABLE) {
    lua_pushliteral(L, "healthcheck");
    if (lua_rawget(L, idx) != LUA_TNIL || !lu_has_index(L, idx)) {
      t = lua_type(L, -1);
      lua_pop(L, 1);
      return t == LUA_TFUNCTION;
    }
    lua_pop(L, 1);
  } else if (t != LUA_TUSERDATA || !lu_has_index(L, idx)) {
    return 0;
  }
  lua_pushcfunction(L, lu_get_healthcheck);
  lua_pushvalue(L, idx);
  st = lua_pcall(L, 1, 1, 0);
  if (st == LUA_ERRMEM) lua_error(L); /* not the backend's fault */
  t = st == LUA_OK ? lua_type(L, -1) : LUA_TNIL;
  lua_pop(L, 1);
  return t == LUA_TFUNCTION;
}

/* A block for cap slots: new (for options o), or to grow from (not NULL). */
ul_list *lu_new_block(lua_State *L, uint32_t cap, const ul_opts *o,
                      const ul_list *from) {
  size_t sz = from ? ul_grow_size(from, cap) : ul_size_opts(cap, o);
  if (sz == 0) luaL_error(L, "upstream: list too large");
  return (ul_list *)lua_newuserdatauv(L, sz, 0);
}

/* Hash of the value at idx: strings and numbers by content (1 and 1.0
 * alike, as raw equality has them), other values by identity. */
uint64_t lu_hash_typed(lua_State *L, int idx, int type) {
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

uint64_t lu_hash_value(lua_State *L, int idx) {
  return lu_hash_typed(L, idx, lua_type(L, idx));
}

/* Weight of the backend at idx from the weights table at w (0: none), or
 * dflt. The table was checked by lu_check_weights. */
uint32_t lu_weight_of(lua_State *L, int w, int idx, uint32_t dflt) {
  uint32_t v = dflt;
  if (!w) return v;
  lua_pushvalue(L, idx);
  if (lua_rawget(L, w) == LUA_TNUMBER) v = (uint32_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Checks a weight value at idx: an integer in [1, UL_MAX_WEIGHT]. */
uint32_t lu_check_weight(lua_State *L, int idx, const char *fn) {
  int isint = 0;
  lua_Integer v = 0;
  if (lua_type(L, idx) == LUA_TNUMBER) v = lua_tointegerx(L, idx, &isint);
  if (!isint || v < 1 || v > UL_MAX_WEIGHT)
    luaL_error(L, "upstream.%s: a weight must be an integer in [1, %d] (got %s)",
               fn, UL_MAX_WEIGHT, lu_got(L, idx));
  return (uint32_t)v;
}

/* Whether the key on top of L is in the table at set (the udata). */
static int lu_in_set(lua_State *L, void *set) {
  int absent;
  lua_pushvalue(L, -1);
  absent = lua_rawget(L, *(int *)set) == LUA_TNIL;
  lua_pop(L, 1);
  return !absent;
}

/* Checks every entry of the weights table at w: a valid weight for a key
 * that is one of the backends, as member(L, ud) says of the key on top of
 * L (it leaves the stack as it found it). */
void lu_check_weights_by(lua_State *L, int w, const char *fn,
                         int (*member)(lua_State *, void *), void *ud) {
  lua_pushnil(L);
  while (lua_next(L, w)) {
    int absent;
    lu_check_weight(L, -1, fn);
    lua_pushvalue(L, -2);
    absent = !member(L, ud);
    lua_pop(L, 1);
    if (absent)
      luaL_error(L, "upstream.%s: weights name %s, which is not one of the "
                    "backends", fn, lu_got(L, -2));
    lua_pop(L, 1);
  }
}

/* The same, for the backends that are the keys of the table at set. */
void lu_check_weights(lua_State *L, int w, int set, const char *fn) {
  if (set < 0 && set > LUA_REGISTRYINDEX) set += lua_gettop(L) + 1;
  lu_check_weights_by(L, w, fn, lu_in_set, &set);
}
