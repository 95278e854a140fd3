/*
 * lua/status.c - what a list reports of its members: status(),
 * status(into), status_of(b), and the snapshot upstream.metrics writes its
 * text from.
 *
 * Every read of the block these make is one call of lu_status_snapshot:
 * plain C (no Lua API), it copies the members' numbers, in pick order,
 * into memory the caller made beforehand, and reads nothing of the block
 * before or after. A list whose block is shared between processes takes
 * its lock around exactly that call. The backends and errors (Lua values,
 * in the list's own tables, by slot) are copied right after it, with raw
 * reads and writes of entries that exist: nothing allocates in between, so
 * no finalizer (no Lua code) can move the list between the two copies.
 *
 * status() on Lua 5.2+ returns rows that are empty tables sharing one
 * metatable per call, whose __index reads the call's snapshot (one
 * userdata: every member's numbers, the map from a row to its member) and
 * whose __pairs walks the fields; 5.1 and LuaJIT have no __pairs, so there
 * the rows are plain tables, filled as status(into) fills them.
 * status(into) and status_of fill plain tables from a snapshot kept in a
 * scratch userdata (status(into), reused by every call) or on the C stack
 * (status_of): neither makes garbage once the rows exist.
 */
#include <string.h>

#include "binding.h"

#if LUA_VERSION_NUM >= 502
#define LU_STATUS_PROXY 1
#else
#define LU_STATUS_PROXY 0
#endif

/* Tries of a status() whose list changes size between counting and
 * copying (a finalizer run by an allocation reconciled it): each try makes
 * room for what the last one found. */
#define LU_SNAP_TRIES 32

/* ---- the snapshot: the one read of the block ---------------------------- */

static void lu_srow_copy(const ul_list *c, int32_t s, lu_srow *r) {
  const ul_node *x = &ul_nodes(c)[s];
  const ul_stat *st = &ul_stats(c)[s];
  r->score = x->score;
  r->last_check = st->last_check;
  r->latency = st->latency;
  r->since = st->changed;
  r->picks = ul_picks(c)[s];
  r->checks = x->checks;
  r->failures = x->failures;
  r->timeouts = st->timeouts;
  r->flips = st->flips;
  r->weight = x->weight;
  r->inflight = x->inflight;
  r->ref = s;
  r->tier = x->tier;
}

/* The counters of slot s summed over its ring of equal members. */
static void lu_srow_sum(const ul_list *c, int32_t s, lu_srow *r) {
  int32_t t = ul_nodes(c)[s].dup;
  while (t != s) {
    const ul_node *x = &ul_nodes(c)[t];
    const ul_stat *st = &ul_stats(c)[t];
    r->checks += x->checks;
    r->failures += x->failures;
    r->timeouts += st->timeouts;
    r->flips += st->flips;
    r->picks += ul_picks(c)[t];
    r->inflight += x->inflight;
    t = x->dup;
  }
}

uint32_t lu_status_snapshot(const ul_list *c, int32_t slot, int flags,
                            lu_srow *out, uint32_t cap, uint32_t *healthy) {
  uint32_t n = c->n, p;
  const int32_t *ord = ul_order(c);
  if (healthy) *healthy = c->healthy;
  if (slot >= 0) {
    if (out == NULL || cap < 1 || (uint32_t)slot >= c->cap ||
        ul_nodes(c)[slot].pos < 0)
      return 0;
    lu_srow_copy(c, slot, out);
    if (flags & LU_SNAP_SUMS) lu_srow_sum(c, slot, out);
    return 1;
  }
  if (n > cap || out == NULL) return n; /* out NULL: count only */
  for (p = 0; p < n; p++) {
    lu_srow_copy(c, ord[p], &out[p]);
    if (flags & LU_SNAP_SUMS) lu_srow_sum(c, ord[p], &out[p]);
  }
  return n;
}

/* Room for cap rows, with the row map when map: one userdata, pushed. */
lu_snap *lu_snap_new(lua_State *L, uint32_t cap, int map, int nuv) {
  size_t rows = ul_align8(sizeof(lu_snap)), ptrs, maps, size;
  uint32_t m = 0;
  lu_snap *sn;
  if (cap < 1) cap = 1;
  if (map) {
    m = 2;
    while (m < cap + cap / 4 + 1) m <<= 1;
  }
  ptrs = rows + ul_align8(sizeof(lu_srow) * (size_t)cap);
  maps = ptrs + (map ? sizeof(const void *) * (size_t)cap : 0);
  size = maps + sizeof(uint32_t) * (size_t)m;
  sn = (lu_snap *)lua_newuserdatauv(L, size, nuv);
  sn->n = 0;
  sn->cap = cap;
  sn->healthy = 0;
  sn->mask = m ? m - 1 : 0;
  sn->rows = (lu_srow *)((char *)sn + rows);
  sn->ptr = map ? (const void **)((char *)sn + ptrs) : NULL;
  sn->map = map ? (uint32_t *)((char *)sn + maps) : NULL;
  if (m) memset(sn->map, 0, sizeof(uint32_t) * (size_t)m);
  return sn;
}

/* ---- rows: names, plain fills ------------------------------------------- */

/* The fields of a row, in the order rows are filled and walked. */
enum {
  LU_F_BACKEND, LU_F_SCORE, LU_F_HEALTHY, LU_F_LAST_ERROR, LU_F_CHECKS,
  LU_F_FAILURES, LU_F_TIMEOUTS, LU_F_WEIGHT, LU_F_TIER, LU_F_INFLIGHT,
  LU_F_PICKS, LU_F_LAST_CHECK, LU_F_SINCE, LU_F_LATENCY, LU_ROW_FIELDS
};
static const char *const lu_row_keys[] = {
    "backend",  "score",      "healthy", "last_error", "checks",
    "failures", "timeouts",   "weight",  "tier",       "inflight",
    "picks",    "last_check", "since",   "latency",    NULL};
/* the fields that may be nil: a reused row gets them back (set to false)
 * before the snapshot, so that filling it allocates nothing */
static const int lu_row_nilable[] = {LU_F_LAST_ERROR, LU_F_LAST_CHECK,
                                     LU_F_SINCE, LU_F_LATENCY, -1};

static void lu_push_time(lua_State *L, double t) {
  if (t == t) lua_pushnumber(L, t);
  else lua_pushnil(L);
}

/* Pushes field f of r, other than the backend and last_error. */
static void lu_push_number(lua_State *L, const lu_srow *r, int f) {
  switch (f) {
    case LU_F_SCORE: lua_pushnumber(L, r->score); break;
    case LU_F_HEALTHY: lua_pushboolean(L, r->score >= 0); break;
    case LU_F_CHECKS: lua_pushinteger(L, (lua_Integer)r->checks); break;
    case LU_F_FAILURES: lua_pushinteger(L, (lua_Integer)r->failures); break;
    case LU_F_TIMEOUTS: lua_pushinteger(L, (lua_Integer)r->timeouts); break;
    case LU_F_WEIGHT: lua_pushinteger(L, (lua_Integer)r->weight); break;
    case LU_F_TIER: lua_pushinteger(L, (lua_Integer)r->tier); break;
    case LU_F_INFLIGHT: lua_pushinteger(L, (lua_Integer)r->inflight); break;
    case LU_F_PICKS: lua_pushinteger(L, (lua_Integer)r->picks); break;
    case LU_F_LAST_CHECK: lu_push_time(L, r->last_check); break;
    case LU_F_SINCE: lu_push_time(L, r->since); break;
    default: lu_push_time(L, r->latency); break;
  }
}

/* Pushes the row field names (LU_ROW_FIELDS values); returns the index of
 * the first. */
static int lu_push_row_keys(lua_State *L) {
  int k;
  luaL_checkstack(L, LU_ROW_FIELDS + 12, NULL);
  for (k = 0; lu_row_keys[k]; k++) lua_pushstring(L, lu_row_keys[k]);
  return lua_gettop(L) - LU_ROW_FIELDS + 1;
}

#if LU_STATUS_PROXY
static int l_row_index(lua_State *L);

/* A status() row of 5.2+ given back to status(into) or status_of: the
 * table at -1 loses its metatable and becomes a plain row. */
static void lu_unproxy(lua_State *L) {
  if (!lua_getmetatable(L, -1)) return;
  lua_pushliteral(L, "__index");
  lua_rawget(L, -2);
  if (lua_tocfunction(L, -1) == l_row_index) {
    lua_pop(L, 2);
    lua_pushnil(L);
    lua_setmetatable(L, -2);
    return;
  }
  lua_pop(L, 2);
}
#else
#define lu_unproxy(L) ((void)(L))
#endif

/* Makes the table at -1 ready to be filled without allocating: a row the
 * caller passed back may lack the fields that were nil, and a table this
 * module never filled (no picks) any field. */
static void lu_row_prepare(lua_State *L, int keys) {
  int k, all;
  lu_unproxy(L);
  lua_pushvalue(L, keys + LU_F_PICKS);
  all = lua_rawget(L, -2) == LUA_TNIL;
  lua_pop(L, 1);
  for (k = 0; k < LU_ROW_FIELDS; k++) {
    int f = k;
    if (!all && (f = lu_row_nilable[k]) < 0) break;
    lua_pushvalue(L, keys + f);
    lua_pushboolean(L, 0);
    lua_rawset(L, -3);
  }
}

/* Fills the plain row at -1 from r, the backend and error from the list's
 * slot and error tables (at slots, errs). Sets existing keys only (see
 * lu_row_prepare): calls no Lua code and allocates nothing. */
static void lu_fill_row(lua_State *L, const lu_srow *r, int keys, int slots,
                        int errs) {
  int f;
  for (f = 0; f < LU_ROW_FIELDS; f++) {
    lua_pushvalue(L, keys + f);
    if (f == LU_F_BACKEND) lua_rawgeti(L, slots, (lua_Integer)r->ref + 1);
    else if (f == LU_F_LAST_ERROR) lua_rawgeti(L, errs, (lua_Integer)r->ref + 1);
    else lu_push_number(L, r, f);
    lua_rawset(L, -3);
  }
}

/* The scratch snapshot of status(into), room for n rows: one userdata for
 * the whole Lua state, grown when a bigger list asks, pushed. Each call
 * uses it between its snapshot and the end of its fill only, where no Lua
 * code runs, so calls (from finalizers, or other lists) never share it. */
static char lu_scratch_key;

static lu_snap *lu_scratch(lua_State *L, uint32_t n) {
  lu_snap *sn;
  lua_pushlightuserdata(L, &lu_scratch_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  sn = (lu_snap *)lua_touserdata(L, -1);
  if (sn != NULL && sn->cap >= n) return sn;
  lua_pop(L, 1);
  sn = lu_snap_new(L, n + n / 4, 0, 0);
  lua_pushlightuserdata(L, &lu_scratch_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return sn;
}

static ul_list *lu_core(lua_State *L) {
  lu_list *u = (lu_list *)lua_touserdata(L, 1);
  if (u->core == NULL) luaL_error(L, "upstream.list: list is not initialised");
  return u->core;
}

/* status(into), and status() on 5.1/LuaJIT with a new table at 2: the
 * rows are made (or made ready) first, every allocation before the
 * snapshot; then the snapshot and the fill, which allocate nothing. A
 * list that grew meanwhile (a finalizer reconciled it) is tried again. */
static int lu_status_into(lua_State *L) {
  int keys = lu_push_row_keys(L), base = lua_gettop(L), tries;
  for (tries = 0; tries < LU_SNAP_TRIES; tries++) {
    uint32_t want = lu_status_snapshot(lu_core(L), -1, 0, NULL, 0, NULL);
    uint32_t n, p;
    lua_Integer k;
    lu_snap *sn;
    int ok = 1;
    for (p = 1; p <= want; p++) {
      if (lua_rawgeti(L, 2, (lua_Integer)p) == LUA_TTABLE) {
        lu_row_prepare(L, keys);
        lua_pop(L, 1);
        continue;
      }
      lua_pop(L, 1);
      lua_createtable(L, 0, LU_ROW_FIELDS);
      lua_rawseti(L, 2, (lua_Integer)p);
    }
    sn = lu_scratch(L, want);                /* base + 1: the last allocation */
    lua_getiuservalue(L, 1, LU_UV_SLOTS);  /* base + 2 */
    lua_getiuservalue(L, 1, LU_UV_ERRORS); /* base + 3 */
    n = lu_status_snapshot(lu_core(L), -1, 0, sn->rows, want, NULL);
    if (n > want) ok = 0;
    for (p = 0; ok && p < n; p++) {
      if (lua_rawgeti(L, 2, (lua_Integer)p + 1) != LUA_TTABLE) ok = 0;
      else lu_fill_row(L, &sn->rows[p], keys, base + 2, base + 3);
      lua_pop(L, 1);
    }
    if (!ok) {
      lua_settop(L, base);
      continue;
    }
    for (k = (lua_Integer)lua_rawlen(L, 2); k > (lua_Integer)n; k--) {
      lua_pushnil(L);
      lua_rawseti(L, 2, k);
    }
    lua_settop(L, 2);
    return 1;
  }
  return luaL_error(L, "upstream.list: status: the list kept changing");
}

/* ---- status() rows on 5.2+: views of one snapshot ----------------------- */

#if LU_STATUS_PROXY

/* The field named by the string k (len bytes), or -1. */
static int lu_field(const char *k, size_t len) {
  int f;
  if (len < 4 || len > 10) return -1;
  for (f = 0; f < LU_ROW_FIELDS; f++)
    if (lu_row_keys[f][0] == k[0] && strlen(lu_row_keys[f]) == len &&
        memcmp(lu_row_keys[f], k, len) == 0)
      return f;
  return -1;
}

static int lu_field_at(lua_State *L, int idx) {
  size_t len;
  const char *k;
  if (lua_type(L, idx) != LUA_TSTRING) return -1;
  k = lua_tolstring(L, idx, &len);
  return lu_field(k, len);
}

static uint32_t lu_map_hash(const void *p, uint32_t mask) {
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 29;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 32;
  return (uint32_t)x & mask;
}

static void lu_map_put(lu_snap *sn, const void *row, uint32_t p) {
  uint32_t h = lu_map_hash(row, sn->mask);
  while (sn->map[h]) h = (h + 1) & sn->mask;
  sn->map[h] = p + 1;
  sn->ptr[p] = row;
}

/* The member whose row is the table at idx, or -1. */
static int64_t lu_map_get(lua_State *L, const lu_snap *sn, int idx) {
  const void *row = lua_topointer(L, idx);
  uint32_t h = lu_map_hash(row, sn->mask), v;
  while ((v = sn->map[h]) != 0) {
    if (sn->ptr[v - 1] == row) return (int64_t)v - 1;
    h = (h + 1) & sn->mask;
  }
  return -1;
}

/* Pushes field f of member p of the snapshot (upvalue 1); its values
 * table (user value 1) holds the backends at 1..n, the errors after. */
static void lu_push_field(lua_State *L, const lu_snap *sn, uint32_t p, int f) {
  const lu_srow *r = &sn->rows[p];
  if (f != LU_F_BACKEND && f != LU_F_LAST_ERROR) {
    lu_push_number(L, r, f);
    return;
  }
  if (f == LU_F_LAST_ERROR && r->ref == 0) {
    lua_pushnil(L);
    return;
  }
  lua_getiuservalue(L, lua_upvalueindex(1), 1);
  lua_rawgeti(L, -1, f == LU_F_BACKEND ? (lua_Integer)p + 1
                                       : (lua_Integer)sn->n + r->ref);
  lua_remove(L, -2);
}

/* __index(row, key) */
static int l_row_index(lua_State *L) {
  const lu_snap *sn = (const lu_snap *)lua_touserdata(L, lua_upvalueindex(1));
  int f = lu_field_at(L, 2);
  int64_t p;
  if (f < 0 || (p = lu_map_get(L, sn, 1)) < 0) return 0;
  lu_push_field(L, sn, (uint32_t)p, f);
  return 1;
}

/* The iterator __pairs returns: the fields that are not nil, in order (a
 * field the caller set on the row shows its value), then the row's other
 * keys. */
static int l_row_next(lua_State *L) {
  const lu_snap *sn = (const lu_snap *)lua_touserdata(L, lua_upvalueindex(1));
  int64_t p = lu_map_get(L, sn, 1);
  int f = 0;
  lua_settop(L, 2);
  if (!lua_isnil(L, 2)) {
    f = lu_field_at(L, 2);
    if (f < 0) goto raw;
    f++;
  }
  for (; p >= 0 && f < LU_ROW_FIELDS; f++) {
    lua_pushstring(L, lu_row_keys[f]);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, 1) != LUA_TNIL) return 2;
    lua_pop(L, 1);
    lu_push_field(L, sn, (uint32_t)p, f);
    if (!lua_isnil(L, -1)) return 2;
    lua_pop(L, 2);
  }
  lua_settop(L, 1);
  lua_pushnil(L);
raw:
  while (lua_next(L, 1)) {
    if (lu_field_at(L, -2) < 0) return 2;
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  return 1;
}

/* __pairs(row): the iterator is upvalue 1 */
static int l_row_pairs(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* Entries of the error table (an upper bound of the errors to copy). */
static uint32_t lu_count_errors(lua_State *L) {
  uint32_t k = 0;
  lua_getiuservalue(L, 1, LU_UV_ERRORS);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    k++;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return k;
}

/* Right after the snapshot of sn (n rows): its backends and errors, by
 * slot from the list's tables (at slots, errs), into its values table at
 * vals (room for n + ne): backends at 1..n, each error after them, its
 * index in the row's ref. Raw reads, and writes into the array part made
 * for them: allocates nothing. 0 when there are more than ne errors. */
static int lu_copy_values(lua_State *L, lu_snap *sn, int vals, int slots,
                          int errs, uint32_t ne) {
  uint32_t p, k = 0, n = sn->n;
  for (p = 0; p < n; p++) {
    lu_srow *r = &sn->rows[p];
    lua_rawgeti(L, slots, (lua_Integer)r->ref + 1);
    lua_rawseti(L, vals, (lua_Integer)p + 1);
    if (lua_rawgeti(L, errs, (lua_Integer)r->ref + 1) == LUA_TNIL) {
      lua_pop(L, 1);
      r->ref = 0;
      continue;
    }
    if (k == ne) {
      lua_pop(L, 1);
      return 0;
    }
    lua_rawseti(L, vals, (lua_Integer)(n + ++k));
    r->ref = (int32_t)k;
  }
  return 1;
}

/* status() on 5.2+: the snapshot, then one empty table per member with
 * the call's metatable. The rows are made after the snapshot: what the
 * finalizers their allocations run do to the list no longer matters. */
static int lu_status_proxies(lua_State *L) {
  int base = lua_gettop(L), tries, mt;
  uint32_t p, n = 0;
  lu_snap *sn = NULL;
  for (tries = 0;; tries++) {
    uint32_t want, ne;
    if (tries == LU_SNAP_TRIES)
      return luaL_error(L, "upstream.list: status: the list kept changing");
    want = lu_status_snapshot(lu_core(L), -1, 0, NULL, 0, NULL);
    ne = lu_count_errors(L);
    sn = lu_snap_new(L, want, 1, 1); /* base + 1 */
    lua_createtable(L, (int)(want + ne), 0);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, base + 1, 1);     /* base + 2: the values */
    lua_getiuservalue(L, 1, LU_UV_SLOTS);  /* base + 3 */
    lua_getiuservalue(L, 1, LU_UV_ERRORS); /* base + 4 */
    n = lu_status_snapshot(lu_core(L), -1, 0, sn->rows, want, NULL);
    sn->n = n;
    if (n <= want && lu_copy_values(L, sn, base + 2, base + 3, base + 4, ne))
      break;
    lua_settop(L, base);
  }
  lua_settop(L, base + 1);
  lua_createtable(L, (int)n, 0); /* base + 2: the rows */
  lua_createtable(L, 0, 2);      /* base + 3: their metatable */
  mt = base + 3;
  lua_pushvalue(L, base + 1);
  lua_pushcclosure(L, l_row_index, 1);
  lua_setfield(L, mt, "__index");
  lua_pushvalue(L, base + 1);
  lua_pushcclosure(L, l_row_next, 1);
  lua_pushcclosure(L, l_row_pairs, 1);
  lua_setfield(L, mt, "__pairs");
  for (p = 0; p < n; p++) {
    lua_createtable(L, 0, 0);
    lua_pushvalue(L, mt);
    lua_setmetatable(L, -2);
    lu_map_put(sn, lua_topointer(L, -1), p);
    lua_rawseti(L, base + 2, (lua_Integer)p + 1);
  }
  lua_settop(L, base + 2);
  return 1;
}
#endif

/* status([into]): a snapshot of one moment, in pick order. into: a table
 * to refill, its rows reused (a row that is not a table is replaced),
 * entries past the members removed; what a big list can poll without
 * making garbage. */
int l_status(lua_State *L) {
  lua_settop(L, 2);
  lu_check_list(L);
  if (!lua_isnil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    return lu_status_into(L);
  }
#if LU_STATUS_PROXY
  return lu_status_proxies(L);
#else
  lua_createtable(L, (int)lu_status_snapshot(lu_core(L), -1, 0, NULL, 0, NULL), 0);
  lua_replace(L, 2);
  return lu_status_into(L);
#endif
}

/* status_of(b [, into]): the row of the first member equal to b (into
 * refilled when given), nil when b is not a member; O(1). The row is made
 * ready first; the index lookup, the snapshot of the one slot (on the C
 * stack) and the fill allocate nothing. */
int l_status_of(lua_State *L) {
  lu_srow r;
  int32_t s = -1;
  int keys;
  lua_settop(L, 3);
  lu_check_list(L);
  if (!lua_isnil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  keys = lu_push_row_keys(L); /* 4 .. */
  if (lua_isnil(L, 3)) {
    lua_createtable(L, 0, LU_ROW_FIELDS);
  } else {
    lua_pushvalue(L, 3);
    lu_row_prepare(L, keys);
  }
  lua_replace(L, 3);
  lua_getiuservalue(L, 1, LU_UV_SLOTS);  /* keys + LU_ROW_FIELDS */
  lua_getiuservalue(L, 1, LU_UV_ERRORS); /* keys + LU_ROW_FIELDS + 1 */
  lua_getiuservalue(L, 1, LU_UV_INDEX);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, -2) == LUA_TNUMBER) s = (int32_t)lua_tointeger(L, -1);
  lua_pop(L, 2);
  if (s < 0 || !lu_status_snapshot(lu_core(L), s, 0, &r, 1, NULL)) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushvalue(L, 3);
  lu_fill_row(L, &r, keys, keys + LU_ROW_FIELDS, keys + LU_ROW_FIELDS + 1);
  return 1;
}
