/*
 * lua/methods.c - the methods of a built list that read or move its
 * members: pick (the hot path), up/down, score, weights, in-flight counts,
 * and what a list reports of itself (len, now, checked, tostring; status
 * is in status.c).
 */
#include "binding.h"

/* pick([key]): the key matters to the hash strategy only (lu_pick_key). */
int l_pick(lua_State *L) {
  int top = lua_gettop(L);
  lu_list *u = lu_to_list(L);
  ul_list *c = u->core;
  uint64_t key = lu_pick_key(L, top, c);
  double now = 0;
  if (c->ramping) { /* the clock may reconcile: the block is read after */
    now = lu_list_now(L, 1);
    c = u->core;
  }
  return lu_push_picked(L, ul_pick(c, key, now));
}

/* First slot holding the value at arg 2, or -1 (binding.h). */
int32_t lu_find_slot(lua_State *L) {
  int32_t s = -1;
  lua_getiuservalue(L, 1, LU_UV_INDEX);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, -2) == LUA_TNUMBER) s = (int32_t)lua_tointeger(L, -1);
  lua_pop(L, 2);
  return s;
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

/* up() and down() are hot on a passive list (every proxied request): what
 * they share is inlined into each (LU_INLINE, binding.h).
 *
 * Whether moving slot s up or down makes it cross between healthy and
 * unhealthy: the core's arithmetic (list.c), clamps included (high >= 0,
 * low <= 0). Members equal to each other have one score: they move
 * together from the start. */
LU_INLINE int lu_would_cross(const ul_list *c, int32_t s, int up) {
  double v = ul_nodes(c)[s].score;
  if (up) return v < 0 && v + c->opts.success_delta >= 0;
  return v >= 0 && v + c->opts.fail_delta < 0 && c->opts.low_score < 0;
}

/* up(b), down(b). The clock is read when slow start needs it, or when the
 * move will make b cross (status's since), before anything changes: it
 * may reconcile the list (or raise), so the slot is looked up after it,
 * in the list as the clock left it. Then on_change, last, with nothing of
 * the block held. */
LU_INLINE void lu_move(lua_State *L, int up) {
  lu_list *u;
  double now = 0;
  int32_t s;
  int cross;
  lua_settop(L, 2);
  u = lu_check_list(L);
  if (u->core->opts.slow_start > 0) {
    now = lu_list_now(L, 1);
    if ((s = lu_find_slot(L)) < 0) return;
  } else {
    if ((s = lu_find_slot(L)) < 0) return;
    if (lu_would_cross(u->core, s, up)) {
      now = lu_list_now(L, 1);
      if ((s = lu_find_slot(L)) < 0) return;
    }
  }
  cross = lu_would_cross(u->core, s, up);
  if (up) ul_up(u->core, s, now);
  else ul_down(u->core, s, now);
  if (cross) lu_changed(L, u, s, !up, 0);
}

int l_up(lua_State *L) {
  lu_move(L, 1);
  return 0;
}

int l_down(lua_State *L) {
  lu_move(L, 0);
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
