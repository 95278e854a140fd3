/*
 * lua/methods.c - the methods of a built list that read or move its
 * members: pick (the hot path), up/down, score, weights, in-flight counts,
 * and what a list reports of itself (len, now, checked, status, tostring).
 */
#include "binding.h"

/* pick([key]): the key matters to the hash strategy only, but is checked
 * for every strategy so that switching strategies needs no code change. */
int l_pick(lua_State *L) {
  int top = lua_gettop(L);
  lu_list *u = lu_to_list(L);
  ul_list *c = u->core;
  uint64_t key = 0;
  double now = 0;
  int32_t s;
  if (top >= 2 && !lua_isnil(L, 2)) {
    int t = lua_type(L, 2);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      luaL_argerror(L, 2, "key must be a string or number");
    if (c->opts.strategy == UL_HASH) key = lu_hash_typed(L, 2, t);
  } else if (c->opts.strategy == UL_HASH) {
    luaL_argerror(L, 2, "the 'hash' strategy needs a key (string or number)");
  }
  if (c->ramping) { /* the clock may reconcile: the block is read after */
    now = lu_list_now(L, 1);
    c = u->core;
  }
  s = ul_pick(c, key, now);
  if (s < 0) {
    lua_pushnil(L);
    lua_pushliteral(L, LU_NO_UPSTREAMS);
    return 2;
  }
  lua_getiuservalue(L, 1, LU_UV_SLOTS);
  lua_rawgeti(L, -1, (lua_Integer)s + 1);
  return 1;
}

/* First slot holding the value at arg 2, or -1. */
static int32_t lu_find_slot(lua_State *L) {
  int32_t s = -1;
  lua_getiuservalue(L, 1, LU_UV_INDEX);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, -2) == LUA_TNUMBER) s = (int32_t)lua_tointeger(L, -1);
  lua_pop(L, 2);
  return s;
}

/* The clock, when slow start needs to know when a backend turned healthy.
 * The option is the same in every block of the list. */
static double lu_ramp_now(lua_State *L, const lu_list *u) {
  return u->core->opts.slow_start > 0 ? lu_list_now(L, 1) : 0;
}

/* The common start of the methods taking a backend (arg 2): the list, and
 * the first slot holding the backend in *s (-1: not in the list). */
static lu_list *lu_list_and_slot(lua_State *L, int nargs, int32_t *s) {
  lu_list *u;
  lua_settop(L, nargs);
  u = lu_check_list(L);
  *s = lu_find_slot(L);
  return u;
}

/* up(b), down(b): the clock first, since it may reconcile the list; the
 * slot is looked up after it, in the list as the clock left it. */
static void lu_move(lua_State *L,
                    void (*move)(ul_list *, int32_t, double)) {
  lu_list *u;
  double now;
  int32_t s;
  lua_settop(L, 2);
  u = lu_check_list(L);
  now = lu_ramp_now(L, u);
  s = lu_find_slot(L);
  if (s >= 0) move(u->core, s, now);
}

int l_up(lua_State *L) {
  lu_move(L, ul_up);
  return 0;
}

int l_down(lua_State *L) {
  lu_move(L, ul_down);
  return 0;
}

int l_score(lua_State *L) {
  int32_t s;
  lu_list *u = lu_list_and_slot(L, 2, &s);
  if (s < 0) lua_pushnil(L);
  else lua_pushnumber(L, ul_nodes(u->core)[s].score);
  return 1;
}

int l_weight(lua_State *L) {
  int32_t s;
  lu_list *u = lu_list_and_slot(L, 2, &s);
  if (s < 0) lua_pushnil(L);
  else lua_pushinteger(L, (lua_Integer)ul_nodes(u->core)[s].weight);
  return 1;
}

int l_set_weight(lua_State *L) {
  int32_t s;
  lu_list *u = lu_list_and_slot(L, 3, &s);
  uint32_t w = lu_check_weight(L, 3, "set_weight"); /* Lua only to raise */
  if (s >= 0) ul_set_weight(u->core, s, w);
  lua_pushboolean(L, s >= 0);
  return 1;
}

int l_release(lua_State *L) {
  int32_t s;
  lu_list *u = lu_list_and_slot(L, 2, &s);
  lua_pushboolean(L, s >= 0 && ul_release(u->core, s));
  return 1;
}

/* In-flight picks of every member equal to b (least_conn). */
int l_inflight(lua_State *L) {
  int32_t s, t;
  lua_Integer k = 0;
  lu_list *u = lu_list_and_slot(L, 2, &s);
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

int l_len(lua_State *L) {
  lu_list *u = lu_check_list(L);
  lua_pushinteger(L, (lua_Integer)u->core->n);
  return 1;
}

/* The list's clock: for a host loop that computes time left to a deadline. */
int l_now(lua_State *L) {
  lua_settop(L, 1);
  lu_check_list(L);
  lua_pushnumber(L, lu_list_now(L, 1));
  return 1;
}

/* Members with an active check (0: a passive list, moved by up/down only). */
int l_checked(lua_State *L) {
  lu_list *u = lu_check_list(L);
  lua_pushinteger(L, (lua_Integer)u->core->checked);
  return 1;
}

int l_tostring(lua_State *L) {
  lua_pushfstring(L, LU_LIST ": %p", lua_touserdata(L, 1));
  return 1;
}

/* Fills one member's row of status() (a table at -1, made with room for
 * the fields) from x, slot s; the slot and error tables at 3 and 4. Calls
 * no Lua code and makes no object a collection could start at. */
static void lu_fill_member(lua_State *L, const ul_node *x, int32_t s) {
  lua_rawgeti(L, 3, (lua_Integer)s + 1);
  lua_setfield(L, -2, "backend");
  lua_pushnumber(L, x->score);
  lua_setfield(L, -2, "score");
  lua_pushboolean(L, x->score >= 0);
  lua_setfield(L, -2, "healthy");
  lua_rawgeti(L, 4, (lua_Integer)s + 1);
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
}

/* A snapshot of one moment. The block and its tables are anchored on the
 * stack first: a finalizer run by an allocation here may reconcile the
 * list (and the old block would be freed) or move its scores, so every
 * table is made before the block is read, and the rows are then filled
 * with no allocation that could run one. */
int l_status(lua_State *L) {
  const ul_list *c;
  const ul_node *nd;
  const int32_t *ord;
  uint32_t p, n;
  lu_list *u;
  lua_settop(L, 1);
  u = lu_check_list(L);
  u->readers++; /* reconcile builds aside meanwhile (reconcile.c) */
  lua_getiuservalue(L, 1, LU_UV_BLOCK);  /* 2 */
  lua_getiuservalue(L, 1, LU_UV_SLOTS);  /* 3 */
  lua_getiuservalue(L, 1, LU_UV_ERRORS); /* 4 */
  c = (const ul_list *)lua_touserdata(L, 2);
  n = c->n; /* members change only by reconcile, which replaces the block */
  lua_createtable(L, (int)n, 0); /* 5 */
  for (p = 1; p <= n; p++) {
    lua_createtable(L, 0, 9);
    lua_rawseti(L, 5, (lua_Integer)p);
  }
  nd = ul_nodes(c);
  ord = ul_order(c);
  for (p = 0; p < n; p++) {
    lua_rawgeti(L, 5, (lua_Integer)p + 1);
    lu_fill_member(L, &nd[ord[p]], ord[p]);
    lua_pop(L, 1);
  }
  u->readers--; /* an error above leaves it set: reconcile is then slower */
  return 1;
}
