/*
 * lua/reconcile.c - list:reconcile(backends [, weights]): the list becomes
 * the given set. Kept backends keep their slot, score, running check and
 * last error; new ones are appended; removed ones leave, and their checks
 * are closed. The new block and tables are built aside and swapped in
 * only when nothing can fail any more, so a failing reconcile (a bad
 * weight, a clock that raises) leaves the list as it was.
 *
 * Calls into Lua: the backends' healthcheck lookups (their __index), the
 * clock, and any finalizer run by an allocation, all before the new block
 * is copied from the old one (step 3). The old block and tables are
 * anchored on the stack, so none of them is freed under the build; but a
 * callback that reconciled the list made them stale: the swap then
 * refuses (LU_RC_STALE) and the list stays as the callback left it.
 */
#include <math.h>
#include <string.h>

#include "binding.h"

/* The stack of a reconcile, slot by slot, as the steps below push it. */
enum {
  LU_RC_LIST = 1,    /* the list */
  LU_RC_BACKENDS,    /* the new backends */
  LU_RC_WEIGHTS,     /* their weights, or nil */
  LU_RC_OLD,         /* lu_rc_read: the list's block as it was, anchored */
  LU_RC_SLOTS,       /*   and its tables */
  LU_RC_INDEX,
  LU_RC_THREADS,
  LU_RC_ERRORS,
  LU_RC_SET,         /*   the set of the new backends */
  LU_RC_ADDED,       /*   backends to append, in order */
  LU_RC_ADDED_CHECK, /*   whether each gets a check */
  LU_RC_BLOCK,       /* lu_rc_build: the new block */
  LU_RC_DROP,        /*   drop[slot]: the slot leaves */
  LU_RC_NEW_SLOTS,   /*   the new tables */
  LU_RC_NEW_INDEX,
  LU_RC_NEW_THREADS,
  LU_RC_NEW_ERRORS,
  LU_RC_CLOSE        /*   checks of removed backends, to close */
};

#define LU_RC_STALE                                                      \
  "upstream.list: reconcile: the list was reconciled by a callback during " \
  "the call"

static const ul_list *lu_rc_old(lua_State *L) {
  return (const ul_list *)lua_touserdata(L, LU_RC_OLD);
}

/* Step 1: reads the new set. Pushes the list's block and tables, then the
 * set of the n new backends and, in order, those the list lacks (each
 * once) with whether each gets a check (*anycheck: one does). Returns how
 * many are added. */
static lua_Integer lu_rc_read(lua_State *L, lua_Integer n, int *anycheck) {
  lua_Integer k, added = 0;
  lua_getiuservalue(L, LU_RC_LIST, LU_UV_BLOCK);
  lua_getiuservalue(L, LU_RC_LIST, LU_UV_SLOTS);
  lua_getiuservalue(L, LU_RC_LIST, LU_UV_INDEX);
  lua_getiuservalue(L, LU_RC_LIST, LU_UV_THREADS);
  lua_getiuservalue(L, LU_RC_LIST, LU_UV_ERRORS);
  lua_createtable(L, 0, (int)n);
  lua_createtable(L, (int)n, 0);
  lua_createtable(L, (int)n, 0);
  for (k = 1; k <= n; k++) {
    lua_rawgeti(L, LU_RC_BACKENDS, k);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, LU_RC_SET) != LUA_TNIL) { /* given twice: skip */
      lua_pop(L, 2);
      continue;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_pushboolean(L, 1);
    lua_rawset(L, LU_RC_SET);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, LU_RC_INDEX) == LUA_TNIL) {
      int c = lu_has_check(L, LU_RC_LIST, -2);
      *anycheck |= c;
      lua_pushvalue(L, -2);
      lua_rawseti(L, LU_RC_ADDED, ++added);
      lua_pushboolean(L, c);
      lua_rawseti(L, LU_RC_ADDED_CHECK, added);
    }
    lua_pop(L, 2);
  }
  return added;
}

/* Step 2: the capacity for the members kept and the added ones; a block
 * that must grow at least doubles. */
static uint32_t lu_rc_cap(lua_State *L, lua_Integer added) {
  const ul_list *old = lu_rc_old(L);
  uint32_t p, kept = 0, cap = old->cap;
  lua_Integer want;
  for (p = 0; p < old->n; p++) {
    lua_rawgeti(L, LU_RC_SLOTS, (lua_Integer)ul_order(old)[p] + 1);
    if (lua_rawget(L, LU_RC_SET) != LUA_TNIL) kept++;
    lua_pop(L, 1);
  }
  want = (lua_Integer)kept + added;
  if (want > (lua_Integer)cap)
    cap = want < (lua_Integer)cap * 2 ? cap * 2 : (uint32_t)want;
  return cap;
}

/* Step 3: builds aside the new block (the old one grown to cap), the drop
 * marks and the new tables, with the kept members' entries; queues the
 * checks of the removed ones for closing. Everything is allocated before
 * the old block is copied: from the copy to the swap no Lua code runs, so
 * nothing a callback does to the old block (a down(), a shutdown) is
 * lost. */
static ul_list *lu_rc_build(lua_State *L, uint32_t cap, unsigned char **dropp) {
  const ul_list *old = lu_rc_old(L);
  ul_list *nb = lu_new_block(L, cap, old->opts.strategy, old);
  unsigned char *drop;
  uint32_t p;
  drop = (unsigned char *)lua_newuserdatauv(L, old->cap, 0);
  lua_createtable(L, (int)cap, 0);
  lua_createtable(L, 0, (int)cap);
  lua_createtable(L, 0, 0);
  lua_createtable(L, 0, 0);
  lua_createtable(L, 0, 0);
  ul_grow(nb, cap, old);
  memset(drop, 0, old->cap);
  for (p = 0; p < old->n; p++) {
    lua_Integer s1 = (lua_Integer)ul_order(old)[p] + 1;
    lua_rawgeti(L, LU_RC_SLOTS, s1);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, LU_RC_SET) == LUA_TNIL) {
      drop[s1 - 1] = 1;
      if (lua_rawgeti(L, LU_RC_THREADS, s1) == LUA_TTHREAD)
        lua_rawseti(L, LU_RC_CLOSE, (lua_Integer)lua_rawlen(L, LU_RC_CLOSE) + 1);
      else
        lua_pop(L, 1);
      lua_pop(L, 2);
      continue;
    }
    lua_pop(L, 1);
    lua_rawseti(L, LU_RC_NEW_SLOTS, s1);
    lua_rawgeti(L, LU_RC_THREADS, s1);
    lua_rawseti(L, LU_RC_NEW_THREADS, s1);
    lua_rawgeti(L, LU_RC_ERRORS, s1);
    lua_rawseti(L, LU_RC_NEW_ERRORS, s1);
  }
  *dropp = drop;
  return nb;
}

/* Step 4: the new index: the first kept slot of each backend (rings of
 * equal backends stay intact). */
static void lu_rc_index(lua_State *L, const unsigned char *drop) {
  lua_pushnil(L);
  while (lua_next(L, LU_RC_INDEX)) {
    int32_t s = (int32_t)lua_tointeger(L, -1);
    if (!drop[s]) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, LU_RC_NEW_INDEX);
    } else {
      lua_pop(L, 1);
    }
  }
}

/* Step 5: the new weights (table at w) of the kept backends. */
static void lu_rc_weights(lua_State *L, ul_list *nb, int w) {
  lua_pushnil(L);
  while (lua_next(L, LU_RC_NEW_INDEX)) {
    int32_t s = (int32_t)lua_tointeger(L, -1);
    ul_set_weight(nb, s,
                  lu_weight_of(L, w, lua_gettop(L) - 1, ul_nodes(nb)[s].weight));
    lua_pop(L, 1);
  }
}

/* Step 6: appends the added backends. w: the weights table or 0. */
static void lu_rc_append(lua_State *L, ul_list *nb, lua_Integer added, int w,
                         double now) {
  lua_Integer k;
  for (k = 1; k <= added; k++) {
    int32_t s;
    int c;
    lua_rawgeti(L, LU_RC_ADDED_CHECK, k);
    c = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_rawgeti(L, LU_RC_ADDED, k);
    s = ul_append(nb, c, -1, now, lu_weight_of(L, w, lua_gettop(L), 1),
                  lu_hash_value(L, -1), 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, LU_RC_NEW_SLOTS, (lua_Integer)s + 1);
    lua_pushinteger(L, s);
    lua_rawset(L, LU_RC_NEW_INDEX);
  }
}

/* Step 7: the swap, unless a callback reconciled the list since step 1
 * (version). Nothing here can fail otherwise. A list that a callback shut
 * down has no check left: its (emptied) table of threads stays. */
static void lu_rc_commit(lua_State *L, lu_list *u, ul_list *nb,
                         uint32_t version) {
  if (u->version != version) luaL_error(L, LU_RC_STALE);
  lua_pushvalue(L, LU_RC_BLOCK);
  lua_setiuservalue(L, LU_RC_LIST, LU_UV_BLOCK);
  lua_pushvalue(L, LU_RC_NEW_SLOTS);
  lua_setiuservalue(L, LU_RC_LIST, LU_UV_SLOTS);
  lua_pushvalue(L, LU_RC_NEW_INDEX);
  lua_setiuservalue(L, LU_RC_LIST, LU_UV_INDEX);
  if (!nb->shut) {
    lua_pushvalue(L, LU_RC_NEW_THREADS);
    lua_setiuservalue(L, LU_RC_LIST, LU_UV_THREADS);
  }
  lua_pushvalue(L, LU_RC_NEW_ERRORS);
  lua_setiuservalue(L, LU_RC_LIST, LU_UV_ERRORS);
  u->core = nb;
  u->version++;
}

/* Step 8: the checks of removed backends: their results are void. */
static void lu_rc_close(lua_State *L) {
  lua_Integer k;
  for (k = 1; k <= (lua_Integer)lua_rawlen(L, LU_RC_CLOSE); k++) {
    lua_rawgeti(L, LU_RC_CLOSE, k);
    lu_close_thread(L, lua_tothread(L, -1));
    lua_pop(L, 1);
  }
}

int l_reconcile(lua_State *L) {
  lu_list *u;
  ul_list *nb;
  unsigned char *drop;
  lua_Integer n, added;
  double now = NAN; /* not read: nothing added needs it */
  uint32_t version;
  int anycheck = 0, w;
  lua_settop(L, LU_RC_WEIGHTS);
  u = lu_check_list(L);
  n = lu_check_backends(L, LU_RC_BACKENDS, "reconcile");
  if (!lua_isnil(L, LU_RC_WEIGHTS) && lua_type(L, LU_RC_WEIGHTS) != LUA_TTABLE)
    luaL_error(L, "upstream.reconcile: weights must be a table "
                  "{ [backend] = weight } (got %s)",
               luaL_typename(L, LU_RC_WEIGHTS));
  w = lua_istable(L, LU_RC_WEIGHTS) ? LU_RC_WEIGHTS : 0;
  version = u->version; /* that of the state step 1 anchors */
  added = lu_rc_read(L, n, &anycheck);
  if (w) lu_check_weights(L, w, LU_RC_SET, "reconcile");
  if (anycheck || (added && lu_rc_old(L)->opts.slow_start > 0))
    now = lu_list_now(L, LU_RC_LIST);
  nb = lu_rc_build(L, lu_rc_cap(L, added), &drop);
  lu_rc_index(L, drop);
  ul_remove(nb, drop);
  if (w) lu_rc_weights(L, nb, w);
  lu_rc_append(L, nb, added, w, now);
  lu_rc_commit(L, u, nb, version);
  if (u->on_change) lu_added(L, LU_RC_ADDED, added);
  lu_rc_close(L);
  return 0;
}
