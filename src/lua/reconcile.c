/*
 * lua/reconcile.c - list:reconcile(backends [, weights]): the list becomes
 * the given set. Kept backends keep their slot, score, running check and
 * last error; new ones are appended; removed ones leave, and their checks
 * are closed. A failing reconcile (a bad weight, a clock that raises, no
 * memory) leaves the list as it was. Two ways to get there:
 *
 * In place (lu_rf_*), when the kept and added members fit in the block's
 * slots: the common case of a service-discovery push, where nothing or a
 * few backends changed. One raw pass over the backends finds, through the
 * index, which members stay and which backends are new, without a set of
 * the new backends or new tables; then the calls into Lua (the new
 * backends' healthcheck lookups, the clock) and every allocation; then,
 * once nothing can fail or run Lua code any more, the block and the tables
 * are edited in place: the dropped members removed, the new appended. Its
 * cost is a table lookup per backend plus the core's O(n) removal when a
 * member leaves; it allocates a byte per slot. What makes the last stage
 * allocation-free: the slot table has an array part for every slot (new()
 * and the build below make it so), and the index gets the new backends'
 * keys beforehand (a placeholder, true, that every reader takes for
 * "absent"), under a pcall that takes them out again if memory runs out.
 *
 * Built aside (lu_rc_*), when the block must grow: a new block grown from
 * the old one and new tables, swapped in only when nothing can fail. In place
 * relies on no reader holding the block across an allocation: status()
 * and metrics copy what they report in one lu_status_snapshot (status.c).
 *
 * Calls into Lua: the backends' healthcheck lookups (their __index), the
 * clock, and any finalizer run by an allocation, all before anything of
 * the list is changed. The old block and tables are anchored on the
 * stack, so none of them is freed under the call; but a callback that
 * reconciled the list made them stale: the reconcile then raises
 * (LU_RC_STALE) and the list stays as the callback left it.
 */
#include <math.h>
#include <string.h>

#include "binding.h"

/* --- built aside ------------------------------------------------------ */

/* The stack of a reconcile built aside, slot by slot, as the steps below
 * push it. */
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
    if (lua_rawget(L, LU_RC_INDEX) != LUA_TNUMBER) {
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
  ul_list *nb = lu_new_block(L, cap, &old->opts, old);
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
    int32_t s = lua_type(L, -1) == LUA_TNUMBER ? (int32_t)lua_tointeger(L, -1)
                                                : -1;
    if (s >= 0 && !drop[s]) {
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

/* Step 8: the checks of removed backends (the table at t): their results
 * are void. */
static void lu_rc_close_at(lua_State *L, int t) {
  lua_Integer k;
  for (k = 1; k <= (lua_Integer)lua_rawlen(L, t); k++) {
    lua_rawgeti(L, t, k);
    lu_close_thread(L, lua_tothread(L, -1));
    lua_pop(L, 1);
  }
}

static void lu_rc_close(lua_State *L) { lu_rc_close_at(L, LU_RC_CLOSE); }

/* The whole reconcile built aside (the list, backends and weights at 1..3,
 * n backends, w: the weights' index or 0). */
static void lu_rc_aside(lua_State *L, lu_list *u, lua_Integer n, int w) {
  ul_list *nb;
  unsigned char *drop;
  lua_Integer added;
  double now = NAN; /* not read: nothing added needs it */
  uint32_t version = u->version; /* that of the state step 1 anchors */
  int anycheck = 0;
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
}

/* --- in place ---------------------------------------------------------- */

/* The stack of a reconcile in place, above the arguments. */
enum {
  LU_RF_BLOCK = LU_RC_WEIGHTS + 1, /* the list's block, anchored */
  LU_RF_SLOTS,                     /* and its tables */
  LU_RF_INDEX,
  LU_RF_THREADS,
  LU_RF_ERRORS,
  LU_RF_SEEN,      /* seen[slot]: the member stays (later: drop[slot]) */
  LU_RF_ADDED,     /* backends to append, in order */
  LU_RF_ADDED_SET, /* the same, as a set: duplicates among them */
  LU_RF_CHECKS,    /* checks[k - 1]: the k-th added gets a check */
  LU_RF_CLOSE      /* checks of removed backends, to close */
};

/* What the raw pass found. */
typedef struct lu_rf {
  ul_list *c;           /* the block (anchored at LU_RF_BLOCK) */
  unsigned char *seen;  /* at LU_RF_SEEN, c->cap bytes */
  unsigned char *checks;
  uint32_t kept;        /* members that stay (slots, rings counted whole) */
  lua_Integer added;    /* backends to append */
} lu_rf;

/* Marks slot s's ring of equal backends (members) as staying, once. */
static void lu_rf_keep(lu_rf *f, const ul_node *nd, int32_t s) {
  int32_t t = s;
  uint32_t guard = f->c->cap + 1;
  if (f->seen[s]) return;
  do {
    f->seen[t] = 1;
    f->kept++;
    t = nd[t].dup;
  } while (t != s && --guard > 0);
}

/* Step 1, raw: no Lua code runs and nothing of the list changes. Each of
 * the n backends is a member (its ring of equal slots stays), a new
 * backend, or given twice (skipped). A push mostly lists the members in
 * their order: a cursor walks the pick order alongside, and a backend that
 * is the member under the cursor (raw equality, a pointer compare for
 * strings) needs no lookup in the index. Any other is looked up, and the
 * cursor moves past the member found. */
static void lu_rf_scan(lua_State *L, lu_rf *f, lua_Integer n) {
  const ul_node *nd;
  const int32_t *ord;
  uint32_t cur = 0;
  lua_Integer k;
  lua_getiuservalue(L, LU_RC_LIST, LU_UV_BLOCK);
  lua_getiuservalue(L, LU_RC_LIST, LU_UV_SLOTS);
  lua_getiuservalue(L, LU_RC_LIST, LU_UV_INDEX);
  lua_getiuservalue(L, LU_RC_LIST, LU_UV_THREADS);
  lua_getiuservalue(L, LU_RC_LIST, LU_UV_ERRORS);
  f->c = (ul_list *)lua_touserdata(L, LU_RF_BLOCK);
  f->seen = (unsigned char *)lua_newuserdatauv(L, f->c->cap, 0);
  lua_newtable(L);
  lua_newtable(L);
  /* the allocations above may have run a finalizer: read the block now */
  memset(f->seen, 0, f->c->cap);
  nd = ul_nodes(f->c);
  ord = ul_order(f->c);
  f->kept = 0;
  f->added = 0;
  for (k = 1; k <= n; k++) {
    lua_rawgeti(L, LU_RC_BACKENDS, k);
    if (cur < f->c->n) {
      int32_t s = ord[cur];
      lua_rawgeti(L, LU_RF_SLOTS, (lua_Integer)s + 1);
      if (lua_rawequal(L, -1, -2)) {
        lu_rf_keep(f, nd, s);
        cur++;
        lua_pop(L, 2);
        continue;
      }
      lua_pop(L, 1);
    }
    lua_pushvalue(L, -1);
    if (lua_rawget(L, LU_RF_INDEX) == LUA_TNUMBER) {
      int32_t s = (int32_t)lua_tointeger(L, -1);
      lu_rf_keep(f, nd, s);
      if (nd[s].pos >= 0) cur = (uint32_t)nd[s].pos + 1;
      lua_pop(L, 2);
      continue;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, LU_RF_ADDED_SET) != LUA_TNIL) { /* given twice */
      lua_pop(L, 2);
      continue;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_pushboolean(L, 1);
    lua_rawset(L, LU_RF_ADDED_SET);
    lua_rawseti(L, LU_RF_ADDED, ++f->added);
  }
}

/* Whether the key on top of L is one of the new backends. */
static int lu_rf_member(lua_State *L, void *ud) {
  const lu_rf *f = (const lu_rf *)ud;
  int in;
  lua_pushvalue(L, -1);
  if (lua_rawget(L, LU_RF_INDEX) == LUA_TNUMBER) {
    in = f->seen[lua_tointeger(L, -1)];
  } else {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    in = lua_rawget(L, LU_RF_ADDED_SET) != LUA_TNIL;
  }
  lua_pop(L, 1);
  return in;
}

/* Step 2, the calls into Lua: who of the added gets a check (their
 * healthcheck lookups), then the clock when a check or a slow start needs
 * it. Returns the time. */
static double lu_rf_lookups(lua_State *L, lu_rf *f) {
  lua_Integer k;
  int anycheck = 0;
  f->checks = (unsigned char *)lua_newuserdatauv(L, (size_t)f->added + 1, 0);
  for (k = 1; k <= f->added; k++) {
    lua_rawgeti(L, LU_RF_ADDED, k);
    f->checks[k - 1] = (unsigned char)lu_has_check(L, LU_RC_LIST, -1);
    anycheck |= f->checks[k - 1];
    lua_pop(L, 1);
  }
  if (anycheck || (f->added && f->c->opts.slow_start > 0))
    return lu_list_now(L, LU_RC_LIST);
  return NAN; /* not read: nothing added needs it */
}

/* The placeholders in the index (arg 1) for the added (arg 2), under a
 * pcall: a key may make the index grow. */
static int lu_rf_reserve_p(lua_State *L) {
  lua_Integer k, added = (lua_Integer)lua_rawlen(L, 2);
  for (k = 1; k <= added; k++) {
    lua_rawgeti(L, 2, k);
    lua_pushboolean(L, 1);
    lua_rawset(L, 1);
  }
  return 0;
}

/* Takes the placeholders out again: each key is there, or was never put
 * (setting an existing key to nil allocates nothing). */
static void lu_rf_unreserve(lua_State *L, lua_Integer added) {
  lua_Integer k;
  for (k = 1; k <= added; k++) {
    lua_rawgeti(L, LU_RF_ADDED, k);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, LU_RF_INDEX) == LUA_TBOOLEAN) {
      lua_pop(L, 1);
      lua_pushnil(L);
      lua_rawset(L, LU_RF_INDEX);
    } else {
      lua_pop(L, 2);
    }
  }
}

/* Step 3: every allocation the edit needs, then the check that no
 * callback reconciled the list since step 1 (version). From here on no
 * Lua code runs and nothing can fail. */
static void lu_rf_prepare(lua_State *L, lu_list *u, lu_rf *f, uint32_t version) {
  int st;
  /* a callback's reconcile may have edited this very block: what step 1
   * counted in it holds only while the version does */
  if (u->version != version) luaL_error(L, LU_RC_STALE);
  lua_createtable(L, (int)(f->c->n - f->kept), 0); /* LU_RF_CLOSE */
  luaL_checkstack(L, LUA_MINSTACK + 8, NULL); /* the pcall grows nothing */
  lua_pushcfunction(L, lu_rf_reserve_p);
  if (u->version != version) luaL_error(L, LU_RC_STALE);
  lua_pushvalue(L, LU_RF_INDEX);
  lua_pushvalue(L, LU_RF_ADDED);
  st = lua_pcall(L, 2, 0, 0);
  if (st != LUA_OK) {
    lu_rf_unreserve(L, f->added);
    lua_error(L);
  }
}

/* threads, errors or slots (the table at t) [s1] = nil, if set. */
static void lu_rf_clear(lua_State *L, int t, lua_Integer s1) {
  int was = lua_rawgeti(L, t, s1);
  lua_pop(L, 1);
  if (was == LUA_TNIL) return;
  lua_pushnil(L);
  lua_rawseti(L, t, s1);
}

/* Step 4: the members that leave, out of the tables and the block; their
 * checks go to LU_RF_CLOSE (its array part has room for each). */
static void lu_rf_remove(lua_State *L, lu_rf *f) {
  unsigned char *drop = f->seen;
  const int32_t *ord = ul_order(f->c);
  uint32_t p, nclose = 0;
  for (p = 0; p < f->c->n; p++) {
    int32_t s = ord[p];
    lua_Integer s1 = (lua_Integer)s + 1;
    drop[s] = !drop[s];
    if (!drop[s]) continue;
    if (lua_rawgeti(L, LU_RF_THREADS, s1) == LUA_TTHREAD) {
      lua_rawseti(L, LU_RF_CLOSE, ++nclose);
      lua_pushnil(L);
      lua_rawseti(L, LU_RF_THREADS, s1);
    } else {
      lua_pop(L, 1);
    }
    lu_rf_clear(L, LU_RF_ERRORS, s1);
    lua_rawgeti(L, LU_RF_SLOTS, s1);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, LU_RF_INDEX) != LUA_TNIL) { /* the ring's first slot */
      lua_pop(L, 1);
      lua_pushnil(L);
      lua_rawset(L, LU_RF_INDEX);
    } else {
      lua_pop(L, 2);
    }
    lua_pushnil(L);
    lua_rawseti(L, LU_RF_SLOTS, s1);
  }
  ul_remove(f->c, drop);
}

/* Step 5: the weights (table at w) of the kept backends named in it. */
static void lu_rf_weights(lua_State *L, lu_rf *f, int w) {
  lua_pushnil(L);
  while (lua_next(L, w)) {
    lua_pushvalue(L, -2);
    if (lua_rawget(L, LU_RF_INDEX) == LUA_TNUMBER)
      ul_set_weight(f->c, (int32_t)lua_tointeger(L, -1),
                    (uint32_t)lua_tointeger(L, -2));
    lua_pop(L, 2);
  }
}

/* Step 6: the added backends join, in order: their slot in the slot table
 * (its array part) and the index (over the placeholder). */
static void lu_rf_append(lua_State *L, lu_rf *f, int w, double now) {
  lua_Integer k;
  for (k = 1; k <= f->added; k++) {
    int32_t s;
    lua_rawgeti(L, LU_RF_ADDED, k);
    s = ul_append(f->c, f->checks[k - 1], -1, now,
                  lu_weight_of(L, w, lua_gettop(L), 1), lu_hash_value(L, -1),
                  1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, LU_RF_SLOTS, (lua_Integer)s + 1);
    lua_pushinteger(L, s);
    lua_rawset(L, LU_RF_INDEX);
  }
}

/* The reconcile in place; returns 0, with the stack as it found it, when
 * it must be built aside instead. */
static int lu_rf_inplace(lua_State *L, lu_list *u, lua_Integer n, int w) {
  lu_rf f;
  uint32_t version = u->version;
  double now;
  lu_rf_scan(L, &f, n);
  if ((lua_Integer)f.kept + f.added > (lua_Integer)f.c->cap) {
    lua_settop(L, LU_RC_WEIGHTS);
    return 0;
  }
  if (w) lu_check_weights_by(L, w, "reconcile", lu_rf_member, &f);
  now = lu_rf_lookups(L, &f);
  lu_rf_prepare(L, u, &f, version);
  /* no Lua code, no allocation, nothing that fails from here to the end */
  if (f.kept < f.c->n) lu_rf_remove(L, &f);
  if (w) lu_rf_weights(L, &f, w);
  lu_rf_append(L, &f, w, now);
  u->version++;
  if (u->on_change) lu_added(L, LU_RF_ADDED, f.added);
  lu_rc_close_at(L, LU_RF_CLOSE);
  return 1;
}

int l_reconcile(lua_State *L) {
  lu_list *u;
  lua_Integer n;
  int w;
  lua_settop(L, LU_RC_WEIGHTS);
  u = lu_check_list(L);
  n = lu_check_backends(L, LU_RC_BACKENDS, "reconcile");
  if (!lua_isnil(L, LU_RC_WEIGHTS) && lua_type(L, LU_RC_WEIGHTS) != LUA_TTABLE)
    luaL_error(L, "upstream.reconcile: weights must be a table "
                  "{ [backend] = weight } (got %s)",
               luaL_typename(L, LU_RC_WEIGHTS));
  w = lua_istable(L, LU_RC_WEIGHTS) ? LU_RC_WEIGHTS : 0;
  if (!lu_rf_inplace(L, u, n, w)) lu_rc_aside(L, u, n, w);
  return 0;
}
