/*
 * lua/reconcile.c - list:reconcile(backends [, weights]): the list becomes
 * the given set. Kept backends keep their slot, score, running check and
 * last error; new ones are appended; removed ones leave, and their checks
 * are closed. The new block and tables are built aside and swapped in
 * only when nothing can fail any more, so a failing reconcile (a bad
 * weight, a clock that raises) leaves the list as it was.
 */
#include <string.h>

#include "binding.h"

int l_reconcile(lua_State *L) {
  lu_list *u;
  ul_list *old, *nb;
  lua_Integer n, k, added = 0;
  uint32_t p, kept = 0, cap;
  unsigned char *drop;
  double now = 0;
  int anycheck = 0, c, w;
  lua_settop(L, 3);
  u = lu_check_list(L);
  old = u->core;
  n = lu_check_backends(L, 2, "reconcile");
  if (!lua_isnil(L, 3) && lua_type(L, 3) != LUA_TTABLE)
    luaL_error(L, "upstream.reconcile: weights must be a table "
                  "{ [backend] = weight } (got %s)", luaL_typename(L, 3));
  w = lua_istable(L, 3) ? 3 : 0;
  lua_getiuservalue(L, 1, LU_UV_SLOTS);   /* 4 */
  lua_getiuservalue(L, 1, LU_UV_INDEX);   /* 5 */
  lua_getiuservalue(L, 1, LU_UV_THREADS); /* 6 */
  lua_getiuservalue(L, 1, LU_UV_ERRORS);  /* 7 */
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
      c = lu_has_check(L, 1, -2);
      anycheck |= c;
      lua_pushvalue(L, -2);
      lua_rawseti(L, 9, ++added);
      lua_pushboolean(L, c);
      lua_rawseti(L, 10, added);
    }
    lua_pop(L, 2);
  }
  if (lua_istable(L, 3)) lu_check_weights(L, 3, 8, "reconcile");
  if (anycheck || (added && old->opts.slow_start > 0)) now = lu_list_now(L, 1);
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
  nb = lu_new_block(L, cap, old->opts.strategy, old);                                  /* 11 */
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
                    lu_weight_of(L, w, lua_gettop(L) - 1,
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
    s = ul_append(nb, c, -1, now, lu_weight_of(L, w, lua_gettop(L), 1),
                  lu_hash_value(L, -1), 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, 13, (lua_Integer)s + 1);
    lua_pushinteger(L, s);
    lua_rawset(L, 14);
  }
  /* commit: nothing below can fail */
  lua_pushvalue(L, 11);
  lua_setiuservalue(L, 1, LU_UV_BLOCK);
  lua_pushvalue(L, 13);
  lua_setiuservalue(L, 1, LU_UV_SLOTS);
  lua_pushvalue(L, 14);
  lua_setiuservalue(L, 1, LU_UV_INDEX);
  lua_pushvalue(L, 15);
  lua_setiuservalue(L, 1, LU_UV_THREADS);
  lua_pushvalue(L, 16);
  lua_setiuservalue(L, 1, LU_UV_ERRORS);
  u->core = nb;
  u->version++;
  /* checks of removed backends: their results are void; close them */
  for (k = 1; k <= (lua_Integer)lua_rawlen(L, 17); k++) {
    lua_rawgeti(L, 17, k);
    lu_close_thread(L, lua_tothread(L, -1));
    lua_pop(L, 1);
  }
  return 0;
}
