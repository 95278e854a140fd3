/*
 * lua/metrics.c - upstream.metrics(lists): the members of every list in
 * the Prometheus text exposition format (version 0.0.4), read straight
 * from the blocks into one luaL_Buffer, with no table per member.
 *
 * What is read of a list is one lu_status_snapshot (status.c), taken
 * before any backend's __tostring runs. Each family comes once, with its HELP and TYPE lines, followed by its
 * samples for every list (in the order of the list names) and member (in
 * pick order). Labels: list, and backend (tostring of the backend), with
 * \, " and newline escaped as the format requires. Members equal to each
 * other (one backend given twice) make one series, their counters summed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

/* What one list brings to the stack, from its base index. */
enum {
  LU_MX_SNAP = 0, /* its snapshot (lu_snap, counters summed over equals) */
  LU_MX_LABELS,   /* position + 1 -> 'list="..",backend=".."', or false
                     for a member equal to an earlier one */
  LU_MX_LIST,     /* 'list=".."' */
  LU_MX_SLOTS     /* per list */
};

typedef struct lu_mx_name {
  const char *s;
  size_t len;
  int key; /* index in the names table */
} lu_mx_name;

static int lu_mx_cmp(const void *a, const void *b) {
  const lu_mx_name *x = (const lu_mx_name *)a, *y = (const lu_mx_name *)b;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = memcmp(x->s, y->s, n);
  if (c) return c;
  return x->len < y->len ? -1 : x->len > y->len;
}

/* Writes s (len bytes) escaped as a label value into out (room for 2 *
 * len); returns the length written. */
static size_t lu_mx_escape(char *out, const char *s, size_t len) {
  size_t i, k = 0;
  for (i = 0; i < len; i++) {
    char ch = s[i];
    if (ch == '\\' || ch == '"') {
      out[k++] = '\\';
      out[k++] = ch;
    } else if (ch == '\n') {
      out[k++] = '\\';
      out[k++] = 'n';
    } else {
      out[k++] = ch;
    }
  }
  return k;
}

/* Pushes 'list="name"' and, with the value at idx, ',backend="value"'
 * (the value made a string by luaL_tolstring: its __tostring may run).
 * Put together in a userdata of the worst-case size, escaped, then made
 * one string. */
static void lu_mx_label(lua_State *L, const char *name, size_t nlen, int idx) {
  const char *v = NULL;
  size_t vlen = 0, k;
  char *out;
  if (idx) v = luaL_tolstring(L, idx, &vlen);
  if (nlen > ((size_t)-1) / 4 || vlen > ((size_t)-1) / 4)
    luaL_error(L, "upstream.metrics: label too long");
  out = (char *)lua_newuserdatauv(L, 2 * nlen + 2 * vlen + 20, 0);
  memcpy(out, "list=\"", 6);
  k = 6 + lu_mx_escape(out + 6, name, nlen);
  out[k++] = '"';
  if (idx) {
    memcpy(out + k, ",backend=\"", 10);
    k += 10;
    k += lu_mx_escape(out + k, v, vlen);
    out[k++] = '"';
  }
  lua_pushlstring(L, out, k);
  lua_remove(L, -2);
  if (idx) lua_remove(L, -2);
}

/* Pushes the snapshot of the list at idx (named name) and the labels of
 * its members (LU_MX_*). The snapshot (lu_status_snapshot) comes first,
 * with each member's backend copied into the labels table right after it
 * (a member equal to an earlier one marked, its label false), allocating nothing in
 * between; then each backend is made a label: its __tostring runs here and
 * may reconcile the list or move its scores, which no longer matters. */
static void lu_mx_prepare(lua_State *L, int idx, const char *name,
                          size_t nlen) {
  int base = lua_gettop(L) + 1, tries;
  uint32_t p, n = 0;
  lu_snap *sn = NULL;
  for (tries = 0;; tries++) {
    lu_list *u = (lu_list *)lua_touserdata(L, idx);
    uint32_t want = lu_status_snapshot(u->core, -1, 0, NULL, 0, NULL);
    if (tries == 32) luaL_error(L, "upstream.metrics: a list kept changing");
    sn = lu_snap_new(L, want, 0, 0); /* base + LU_MX_SNAP */
    lua_createtable(L, (int)want, 0); /* base + LU_MX_LABELS */
    lua_getiuservalue(L, idx, LU_UV_SLOTS);
    lua_getiuservalue(L, idx, LU_UV_INDEX);
    u = (lu_list *)lua_touserdata(L, idx);
    n = lu_status_snapshot(u->core, -1, LU_SNAP_SUMS, sn->rows, want,
                           &sn->healthy);
    if (n <= want) break;
    lua_settop(L, base - 1);
  }
  sn->n = n;
  for (p = 0; p < n; p++) { /* raw, into the array made for them */
    int32_t s = sn->rows[p].ref;
    int first;
    lua_rawgeti(L, base + 2, (lua_Integer)s + 1);
    lua_pushvalue(L, -1);
    first = lua_rawget(L, base + 3) == LUA_TNUMBER && lua_tointeger(L, -1) == s;
    lua_pop(L, 1);
    if (!first) sn->rows[p].ref = -1;
    lua_rawseti(L, base + LU_MX_LABELS, (lua_Integer)p + 1);
  }
  lua_settop(L, base + LU_MX_LABELS);
  lu_mx_label(L, name, nlen, 0); /* base + LU_MX_LIST */
  for (p = 0; p < n; p++) {
    if (sn->rows[p].ref < 0) { /* its series is the earlier member's */
      lua_pushboolean(L, 0);
      lua_rawseti(L, base + LU_MX_LABELS, (lua_Integer)p + 1);
      continue;
    }
    lua_rawgeti(L, base + LU_MX_LABELS, (lua_Integer)p + 1);
    lu_mx_label(L, name, nlen, lua_gettop(L));
    lua_rawseti(L, base + LU_MX_LABELS, (lua_Integer)p + 1);
    lua_pop(L, 1);
  }
  lua_settop(L, base + LU_MX_SLOTS - 1);
}

/* The decimal digits of v at the end of buf[24]; returns where they
 * start (snprintf costs more than the rest of a sample line). */
static char *lu_mx_digits(char *end, uint64_t v) {
  do {
    *--end = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return end;
}

/* Writes v into buf[64], as Prometheus reads floats: an integer as one,
 * else the shortest of %.15g and %.17g that reads back the same; NaN,
 * +Inf, -Inf. Returns the length. */
static size_t lu_mx_number(char *buf, double v) {
  if (v != v) return (size_t)snprintf(buf, 64, "NaN");
  if (isinf(v)) return (size_t)snprintf(buf, 64, v > 0 ? "+Inf" : "-Inf");
  if (v > -1e15 && v < 1e15 && v == (double)(int64_t)v) {
    char digits[24], *d = lu_mx_digits(digits + sizeof digits,
                                       (uint64_t)(v < 0 ? -v : v));
    size_t n = (size_t)(digits + sizeof digits - d), k = 0;
    if (v < 0) buf[k++] = '-';
    memcpy(buf + k, d, n);
    return k + n;
  }
  snprintf(buf, 64, "%.15g", v);
  if (strtod(buf, NULL) != v) snprintf(buf, 64, "%.17g", v);
  return strlen(buf);
}

static size_t lu_mx_count(char *buf, uint64_t v) {
  char digits[24], *d = lu_mx_digits(digits + sizeof digits, v);
  size_t n = (size_t)(digits + sizeof digits - d);
  memcpy(buf, d, n);
  return n;
}

/* Adds one sample line, name{labels extra} value, put together in one
 * piece when it fits (one luaL_addlstring a line). */
static void lu_mx_line(luaL_Buffer *b, const char *name, const char *lab,
                       size_t llen, const char *extra, const char *val,
                       size_t vlen) {
  char line[512];
  size_t nl = strlen(name), el = extra ? strlen(extra) : 0, k = 0;
  if (nl + llen + el + vlen + 4 > sizeof line) {
    luaL_addlstring(b, name, nl);
    luaL_addchar(b, '{');
    luaL_addlstring(b, lab, llen);
    if (el) luaL_addlstring(b, extra, el);
    luaL_addstring(b, "} ");
    luaL_addlstring(b, val, vlen);
    luaL_addchar(b, '\n');
    return;
  }
  memcpy(line, name, nl);
  k = nl;
  line[k++] = '{';
  memcpy(line + k, lab, llen);
  k += llen;
  if (el) memcpy(line + k, extra, el);
  k += el;
  line[k++] = '}';
  line[k++] = ' ';
  memcpy(line + k, val, vlen);
  k += vlen;
  line[k++] = '\n';
  luaL_addlstring(b, line, k);
}

/* The families: per list, then per member. */
enum {
  LU_MX_MEMBERS, LU_MX_HEALTHY_MEMBERS, LU_MX_SCORE, LU_MX_HEALTHY,
  LU_MX_WEIGHT, LU_MX_TIER, LU_MX_INFLIGHT, LU_MX_CHECKS, LU_MX_PICKS,
  LU_MX_CHANGES, LU_MX_LATENCY
};

static const struct {
  const char *name, *type, *help;
} lu_mx_families[] = {
    {"upstream_backends", "gauge", "Members of the list."},
    {"upstream_healthy_backends", "gauge", "Members with a score >= 0."},
    {"upstream_score", "gauge", "Health score of the backend."},
    {"upstream_healthy", "gauge", "1 when the backend is healthy (score >= 0), else 0."},
    {"upstream_weight", "gauge", "Configured weight of the backend."},
    {"upstream_tier", "gauge", "Tier of the backend (lower tiers are picked first)."},
    {"upstream_inflight", "gauge", "Picks not yet released (least_conn)."},
    {"upstream_checks_total", "counter", "Completed health checks, by result."},
    {"upstream_picks_total", "counter", "Times the backend was picked."},
    {"upstream_health_changes_total", "counter",
     "Crossings between healthy and unhealthy."},
    {"upstream_check_latency_seconds", "gauge",
     "Duration of the backend's last health check."},
    {NULL, NULL, NULL}};

/* One member family's samples for the list at base. The label strings
 * stay in the labels table, which anchors them: their pointers hold while
 * the buffer grows (and a collection runs). */
static void lu_mx_members(luaL_Buffer *b, lua_State *L, int f, int base) {
  const char *name = lu_mx_families[f].name;
  const lu_snap *sn = (const lu_snap *)lua_touserdata(L, base + LU_MX_SNAP);
  int labels = base + LU_MX_LABELS;
  uint32_t p;
  for (p = 0; p < sn->n; p++) {
    const lu_srow *m = &sn->rows[p];
    const char *lab;
    char val[64];
    size_t llen, vlen = 0;
    lua_rawgeti(L, labels, (lua_Integer)p + 1);
    lab = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &llen) : NULL;
    lua_pop(L, 1);
    if (lab == NULL) continue; /* equal to an earlier member */
    if (f == LU_MX_LATENCY && m->latency != m->latency)
      continue; /* no check finished yet */
    if (f == LU_MX_CHECKS) {
      static const char *const res[] = {",result=\"success\"",
                                        ",result=\"failure\"",
                                        ",result=\"timeout\""};
      uint64_t v[3];
      int r;
      v[0] = (uint64_t)m->checks - m->failures;
      v[1] = (uint64_t)m->failures - m->timeouts;
      v[2] = m->timeouts;
      for (r = 0; r < 3; r++) {
        vlen = lu_mx_count(val, v[r]);
        lu_mx_line(b, name, lab, llen, res[r], val, vlen);
      }
      continue;
    }
    switch (f) {
      case LU_MX_SCORE: vlen = lu_mx_number(val, m->score); break;
      case LU_MX_HEALTHY: vlen = lu_mx_count(val, m->score >= 0); break;
      case LU_MX_WEIGHT: vlen = lu_mx_count(val, m->weight); break;
      case LU_MX_TIER: vlen = lu_mx_count(val, m->tier); break;
      case LU_MX_INFLIGHT: vlen = lu_mx_count(val, m->inflight); break;
      case LU_MX_PICKS: vlen = lu_mx_count(val, m->picks); break;
      case LU_MX_CHANGES: vlen = lu_mx_count(val, m->flips); break;
      default: vlen = lu_mx_number(val, m->latency); break;
    }
    lu_mx_line(b, name, lab, llen, NULL, val, vlen);
  }
}

/* upstream.metrics(lists): lists = { name = list, ... }. */
int l_metrics(lua_State *L) {
  lu_mx_name *names;
  int nl = 0, i, f, first, ok;
  luaL_Buffer b;
  lua_settop(L, 1);
  if (lua_type(L, 1) != LUA_TTABLE)
    luaL_error(L, "upstream.metrics: lists must be a table { name = list } "
                  "(got %s)", luaL_typename(L, 1));
  lua_newtable(L); /* 2: the names */
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "upstream.metrics: list names must be strings (got %s)",
                 lu_got(L, -2));
    ok = 0;
    if (lua_type(L, -1) == LUA_TUSERDATA && lua_getmetatable(L, -1)) {
      ok = lua_rawequal(L, -1, lua_upvalueindex(1)) ? 1
           : lua_rawequal(L, -1, lua_upvalueindex(2)) ? 2 : 0;
      lua_pop(L, 1);
    }
    if (!ok) {
      const char *nm = lua_tostring(L, -2);
      luaL_error(L, "upstream.metrics: lists.%s must be an upstream.list "
                    "(got %s)", nm, lu_got(L, -1));
    }
    if (((lu_list *)lua_touserdata(L, -1))->core == NULL)
      luaL_error(L, "upstream.metrics: lists.%s is not initialised",
                 lua_tostring(L, -2));
    if (ok == 2) { /* shared: this process's copy of the block, refreshed
                      under the lock (shared.c), is what is read below */
      lua_pushvalue(L, lua_upvalueindex(2)); /* its methods' upvalue 1 */
      lua_pushcclosure(L, lu_sh_refresh, 1);
      lua_pushvalue(L, -2);
      lua_call(L, 1, 0);
    }
    lua_rawseti(L, 2, -(nl + 1)); /* the list, kept here (at -k) */
    lua_pushvalue(L, -1);
    lua_rawseti(L, 2, ++nl);
  }
  names = (lu_mx_name *)lua_newuserdatauv(L, sizeof *names * (size_t)(nl + 1), 0); /* 3 */
  for (i = 0; i < nl; i++) {
    lua_rawgeti(L, 2, i + 1);
    names[i].s = lua_tolstring(L, -1, &names[i].len); /* kept in table 2 */
    names[i].key = i + 1;
    lua_pop(L, 1);
  }
  qsort(names, (size_t)nl, sizeof *names, lu_mx_cmp);
  luaL_checkstack(L, LU_MX_SLOTS * nl + 16, "upstream.metrics: too many lists");
  for (i = 0; i < nl; i++) { /* list i at 4 + LU_MX_SLOTS * i */
    int top;
    lua_rawgeti(L, 2, -names[i].key);
    top = lua_gettop(L);
    lu_mx_prepare(L, top, names[i].s, names[i].len);
    lua_remove(L, top);
  }
  luaL_buffinit(L, &b);
  for (f = 0; lu_mx_families[f].name; f++) {
    luaL_addstring(&b, "# HELP ");
    luaL_addstring(&b, lu_mx_families[f].name);
    luaL_addchar(&b, ' ');
    luaL_addstring(&b, lu_mx_families[f].help);
    luaL_addstring(&b, "\n# TYPE ");
    luaL_addstring(&b, lu_mx_families[f].name);
    luaL_addchar(&b, ' ');
    luaL_addstring(&b, lu_mx_families[f].type);
    luaL_addchar(&b, '\n');
    for (i = 0; i < nl; i++) {
      int base = 4 + LU_MX_SLOTS * i;
      const lu_snap *sn = (const lu_snap *)lua_touserdata(L, base + LU_MX_SNAP);
      first = f == LU_MX_MEMBERS || f == LU_MX_HEALTHY_MEMBERS;
      if (!first) {
        lu_mx_members(&b, L, f, base);
        continue;
      }
      {
        char val[64];
        size_t llen, vlen = lu_mx_count(val, f == LU_MX_MEMBERS ? sn->n : sn->healthy);
        const char *lab = lua_tolstring(L, base + LU_MX_LIST, &llen);
        lu_mx_line(&b, lu_mx_families[f].name, lab, llen, NULL, val, vlen);
      }
    }
  }
  luaL_pushresult(&b);
  return 1;
}
