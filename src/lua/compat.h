/*
 * lua/compat.h - the few Lua C API differences the binding meets.
 *
 * The binding is written against Lua 5.4. For 5.3, 5.2, 5.1 and LuaJIT 2.1
 * this header gives the 5.4 names the binding uses their 5.4 shape, in the
 * manner of lua-compat-5.3: a macro over a static inline helper, only where
 * a version lacks the function or gives it another signature. Under 5.4 it
 * defines lu_closethread and nothing else, so the 5.4 build is unchanged.
 *
 * What older versions do not have, and so the module does not offer there:
 *  - to-be-closed variables (5.4). lu_closethread cannot run the pending
 *    __close of a suspended check: a check that times out, whose backend is
 *    removed, or whose list is shut down is simply dropped (never resumed,
 *    left to the garbage collector). The list's own __close is unused.
 *  - yields across pcall, metamethods and iterators (PUC 5.1 only; LuaJIT
 *    and 5.2+ have them): upstream.sleep or coroutine.yield inside pcall in
 *    a check fails the check with "attempt to yield across metamethod/C-call
 *    boundary".
 *  - several user values per userdata (5.4). A userdata has one environment
 *    table (5.1, LuaJIT) or one user value (5.2, 5.3); lua_newuserdatauv
 *    with nuv > 0 puts a table there holding the values at keys 1..nuv.
 *    On 5.1 a userdata made with nuv == 0 still has an environment (the
 *    globals): do not ask it for user values.
 */
#ifndef LU_COMPAT_H
#define LU_COMPAT_H

#include <stddef.h>
#include <stdint.h>

#include "lua.h"
#include "lauxlib.h"

#if LUA_VERSION_NUM >= 504

/* Closes a suspended or errored coroutine, running its to-be-closed
 * variables. The name and arity changed in 5.4.6. */
#if LUA_VERSION_RELEASE_NUM >= 50406
#define lu_closethread(co, from) ((void)lua_closethread((co), (from)))
#else
#define lu_closethread(co, from) ((void)(from), (void)lua_resetthread(co))
#endif

#else /* 5.3, 5.2, 5.1, LuaJIT */

/* Nothing to close before 5.4: only release what the stack holds (the
 * error object of a dead coroutine). */
#define lu_closethread(co, from) ((void)(from), lua_settop((co), 0))

#ifndef LUA_OK
#define LUA_OK 0
#endif

#if LUA_VERSION_NUM == 501
#define lu_getuservalue(L, i) lua_getfenv((L), (i))
#define lu_setuservalue(L, i) ((void)lua_setfenv((L), (i)))
#define lu_resume3(co, from, narg) ((void)(from), (lua_resume)((co), (narg)))
#define lua_rawlen(L, i) lua_objlen((L), (i))
#else
#define lu_getuservalue(L, i) ((void)lua_getuservalue((L), (i)))
#define lu_setuservalue(L, i) lua_setuservalue((L), (i))
#define lu_resume3(co, from, narg) (lua_resume)((co), (from), (narg))
#endif

/* lua_isyieldable (5.3, LuaJIT): outside the main thread, assume the
 * caller can yield; lua_yield raises otherwise. */
#if LUA_VERSION_NUM == 502 || (LUA_VERSION_NUM == 501 && !defined(LUA_LJDIR))
static inline int lu_isyieldable(lua_State *L) {
  int main = lua_pushthread(L);
  lua_pop(L, 1);
  return !main;
}
#define lua_isyieldable(L) lu_isyieldable(L)
#endif

/* luaL_setfuncs (5.2, LuaJIT) */
#if LUA_VERSION_NUM == 501 && !defined(LUA_LJDIR)
static inline void lu_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#define luaL_setfuncs(L, l, nup) lu_setfuncs((L), (l), (nup))
#endif

/* luaL_tolstring (5.2), without __name */
#if LUA_VERSION_NUM == 501
static inline const char *lu_tolstring(lua_State *L, int idx, size_t *len) {
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx += lua_gettop(L) + 1;
  if (luaL_callmeta(L, idx, "__tostring")) {
    if (!lua_isstring(L, -1)) luaL_error(L, "'__tostring' must return a string");
  } else {
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
    case LUA_TSTRING: lua_pushvalue(L, idx); break;
    case LUA_TBOOLEAN:
      lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
      break;
    case LUA_TNIL: lua_pushliteral(L, "nil"); break;
    default:
      lua_pushfstring(L, "%s: %p", luaL_typename(L, idx), lua_topointer(L, idx));
    }
  }
  return lua_tolstring(L, -1, len);
}
#define luaL_tolstring(L, i, len) lu_tolstring((L), (i), (len))
#endif

/* lua_tointegerx as in 5.3: only a number (or numeric string) with an
 * exact integer value converts; lua_Integer is ptrdiff_t before 5.3. */
static inline lua_Integer lu_tointegerx(lua_State *L, int idx, int *isint) {
  int ok = lua_isnumber(L, idx);
  lua_Number n = lua_tonumber(L, idx);
  ok = ok && n >= (lua_Number)PTRDIFF_MIN && n < -(lua_Number)PTRDIFF_MIN &&
       (lua_Number)(lua_Integer)n == n;
  if (isint != NULL) *isint = ok;
  return ok ? (lua_Integer)n : 0;
}
#undef lua_tointeger
#define lua_tointegerx(L, i, isint) lu_tointegerx((L), (i), (isint))
#define lua_tointeger(L, i) lu_tointegerx((L), (i), NULL)

/* lua_getfield, lua_rawget and lua_rawgeti return the pushed type (5.3) */
#if LUA_VERSION_NUM <= 502
static inline int lu_getfield(lua_State *L, int idx, const char *k) {
  (lua_getfield)(L, idx, k);
  return lua_type(L, -1);
}
static inline int lu_rawget(lua_State *L, int idx) {
  (lua_rawget)(L, idx);
  return lua_type(L, -1);
}
static inline int lu_rawgeti(lua_State *L, int idx, lua_Integer n) {
  (lua_rawgeti)(L, idx, (int)n);
  return lua_type(L, -1);
}
#define lua_getfield(L, i, k) lu_getfield((L), (i), (k))
#define lua_rawget(L, i) lu_rawget((L), (i))
#define lua_rawgeti(L, i, n) lu_rawgeti((L), (i), (n))
#endif

/* luaL_newmetatable sets __name (5.3) */
#if LUA_VERSION_NUM <= 502
static inline int lu_newmetatable(lua_State *L, const char *tname) {
  if (!(luaL_newmetatable)(L, tname)) return 0;
  lua_pushstring(L, tname);
  lua_setfield(L, -2, "__name");
  return 1;
}
#define luaL_newmetatable(L, tname) lu_newmetatable((L), (tname))
#endif

/* luaL_typeerror (5.4) */
static inline int lu_typeerror(lua_State *L, int arg, const char *tname) {
  const char *got;
  if (luaL_getmetafield(L, arg, "__name") && lua_type(L, -1) == LUA_TSTRING)
    got = lua_tostring(L, -1);
  else if (lua_type(L, arg) == LUA_TLIGHTUSERDATA)
    got = "light userdata";
  else
    got = luaL_typename(L, arg);
  return luaL_argerror(L, arg,
                       lua_pushfstring(L, "%s expected, got %s", tname, got));
}
#define luaL_typeerror(L, arg, tname) lu_typeerror((L), (arg), (tname))

/* lua_resume with the number of results (5.4): before 5.4 the results or
 * yielded values are all the coroutine's stack holds; on error the error
 * object is on top. */
static inline int lu_resume(lua_State *co, lua_State *from, int narg,
                            int *nres) {
  int st = lu_resume3(co, from, narg);
  *nres = lua_gettop(co);
  return st;
}
#define lua_resume(co, from, narg, nres) lu_resume((co), (from), (narg), (nres))

/* Several user values (5.4), kept in one table at keys 1..nuv. */
static inline void *lu_newuserdatauv(lua_State *L, size_t size, int nuv) {
  void *p = lua_newuserdata(L, size);
  if (nuv > 0) {
    lua_createtable(L, nuv, 0);
    lu_setuservalue(L, -2);
  }
  return p;
}
static inline int lu_getiuservalue(lua_State *L, int idx, int n) {
  lu_getuservalue(L, idx);
  if (lua_type(L, -1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return LUA_TNONE;
  }
  (lua_rawgeti)(L, -1, n);
  lua_remove(L, -2);
  return lua_type(L, -1);
}
static inline int lu_setiuservalue(lua_State *L, int idx, int n) {
  lu_getuservalue(L, idx);
  if (lua_type(L, -1) != LUA_TTABLE) {
    lua_pop(L, 2);
    return 0;
  }
  lua_insert(L, -2);
  (lua_rawseti)(L, -2, n);
  lua_pop(L, 1);
  return 1;
}
#define lua_newuserdatauv(L, size, nuv) lu_newuserdatauv((L), (size), (nuv))
#define lua_getiuservalue(L, idx, n) lu_getiuservalue((L), (idx), (n))
#define lua_setiuservalue(L, idx, n) lu_setiuservalue((L), (idx), (n))

#endif /* LUA_VERSION_NUM */

#endif
