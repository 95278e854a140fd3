/*
 * spec/fuzz/api_fuzz.c - libFuzzer harness of the whole Lua API.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined,float-cast-overflow \
 *       -I/usr/include/lua5.4 spec/fuzz/api_fuzz.c -llua5.4 -lm
 *
 * It embeds Lua 5.4 and compiles the module into itself (src/upstream.c,
 * the one translation unit, included below), calls luaopen_upstream, and
 * decodes the input into a sequence of API calls, each under lua_pcall:
 * upstream.new with backends lists (duplicates, odd types, holes) and
 * options tables (valid and not), every list method with arguments of
 * every type (nil, booleans, integers, floats with NaN/inf/huge, strings,
 * tables, functions, userdata, threads, lists), upstream.sleep, the FFI
 * pick entry point, the collector in several modes, and allocation
 * failures.
 *
 * The callbacks read the same input when they run, so the fuzzer decides
 * what they do at each call: a fake clock (stands still, moves, goes back,
 * returns junk, raises), a fake sleep, check functions that succeed, fail,
 * raise, yield, call upstream.sleep, hold to-be-closed variables, and
 * REENTER: a clock, a check, a sleep, a backend's __index (the healthcheck
 * lookup), __tostring (error messages), __close or a finalizer may run any
 * API call on any list, the same one included, or collect garbage.
 *
 * Errors are expected; crashes, sanitizer reports, invariant failures and
 * hangs are bugs. After every call each live list's core block is checked
 * (invariants.h) along with the binding's slot and index tables, and a
 * pick with no reentrant call in between must return an eligible backend.
 *
 * Bounds: at most MAX_TOP top-level and MAX_ALL calls in all, reentrancy
 * MAX_DEPTH deep, a Lua instruction budget (count hook) and a clock-call
 * budget after which every callback raises, backends lists of at most a
 * few hundred, a memory cap. A clock called HANG_CALLS times in a row with
 * the same value while nothing else moves time is a hang: the harness
 * aborts with "HANG" (the scheduler loops without end).
 *
 * Environment: UPSTREAM_FUZZ_AVOID_KNOWN=1 steers away from the bugs
 * recorded in spec/fuzz/crashers/ (no reconcile from inside a clock,
 * __index or finalizer; no clock at infinity or beyond 1e9 s, no tiny
 * slow_start, interval or timeout; no check that yields for ever; no job
 * gen >= 2^64; no thread-table check after a failed allocation), to look
 * for others while those are open.
 * UPSTREAM_FUZZ_TRACE=1 prints one line per call, with the input offset.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/upstream.c"

#include "lualib.h"
#include "invariants.h"
#include "harness.h" /* avoid_known, trace, LLVMFuzzerInitialize */

const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) {
  return "halt_on_error=1:print_stacktrace=1";
}

#define MAX_TOP 160
#define MAX_ALL 500
#define MAX_DEPTH 4
#define MAX_LISTS 4
#define POOL 16
#define MAX_JOBS 16
#define INSN_BUDGET 5000000L /* Lua instructions per input */
#define HOOK_EVERY 1000
#define CLOCK_BUDGET 100000L /* clock calls per input */
#define HANG_CALLS 50000L    /* same clock value, calls in a row */
#define MEM_LIMIT ((size_t)512 << 20)
#define WALL_BUDGET 1.0 /* seconds per input, well below libFuzzer's -timeout */

/* ---- input ----------------------------------------------------------------- */

static const uint8_t *in_p;
static size_t in_n, in_size;
static int closing; /* lua_close: callbacks do nothing */
static const char *const ctx_names[] = {"top", "check", "clock", "sleep", "__index", "__gc",
                                        "__tostring", "__close", "coroutine", "on_change"};
static int cur_ctx;

static uint8_t b8(void) {
  if (closing || !in_n) return 0;
  in_n--;
  return *in_p++;
}
static uint32_t b16(void) { return (uint32_t)b8() | (uint32_t)b8() << 8; }
static uint32_t b32(void) { return b16() | b16() << 16; }
static uint64_t b64(void) { return (uint64_t)b32() | (uint64_t)b32() << 32; }
static double braw(void) {
  uint64_t b = b64();
  double d;
  memcpy(&d, &b, sizeof d);
  return d;
}

/* ---- state of one run ------------------------------------------------------ */

static int R_ref; /* registry ref of the harness table R */
enum {
  R_POOL = 1, R_LISTS, R_JOBS, R_CHECK, R_FLAGS, R_METHODS, R_MODULE,
  R_MT_UD, R_MT_T, R_MT_CLOSE, R_F, R_LISTMT, R_ARG
};
static int depth, restricted; /* reentrancy; inside clock/__index/__gc */
static unsigned top_ops, all_ops;
static double fz_now;
static double last_clock;
static long same_clock, clock_calls, hook_ticks;
static int exhausted;
static size_t mem_used;
static long alloc_countdown = -1; /* allocations until failures start */
static int alloc_failing, alloc_failed; /* failing now; failed in this input */
static unsigned char *scratch;
static size_t scratch_cap;

enum { CTX_TOP, CTX_CHECK, CTX_CLOCK, CTX_SLEEP, CTX_INDEX, CTX_GC, CTX_TOSTRING,
       CTX_CLOSE, CTX_CORO, CTX_CHANGE };

static void *fz_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  size_t old = ptr ? osize : 0;
  (void)ud;
  if (nsize == 0) {
    free(ptr);
    mem_used -= old;
    return NULL;
  }
  if (nsize > old) { /* Lua never expects a shrink to fail */
    if (alloc_countdown >= 0 && alloc_countdown-- == 0) alloc_failing = 1;
    if (alloc_failing) {
      alloc_failed = 1;
      return NULL;
    }
    if (mem_used - old + nsize > MEM_LIMIT) return NULL;
  }
  {
    void *p = realloc(ptr, nsize);
    if (!p) return NULL;
    mem_used = mem_used - old + nsize;
    return p;
  }
}

/* Avoiding the known bugs: the clock stays within +-1e9 s (where a
 * microsecond still moves it) and never returns infinity. */
static int clock_ok(double t) {
  if (isnan(t)) return 0;
  return !avoid_known || (t >= -1e9 && t <= 1e9);
}

static double wall_start;

static void hang(double v) {
  fprintf(stderr, "HANG: the clock was called %ld times in a row and read %.17g each "
                  "time: the scheduler loops without end\n", same_clock, v);
  abort();
}

/* Over budget: long but legitimate work (a run of many seconds at a tiny
 * interval, say) ends with an error from every callback; but a clock that
 * read the same for the last 2000 calls within one top-level call means a
 * loop that makes no progress: a hang. */
static void exhaust(lua_State *L) {
  if (!exhausted && same_clock > 2000) hang(last_clock);
  exhausted = 1;
  luaL_error(L, "fuzz: budget exhausted");
}

static int over_budget(void) {
  return exhausted || hook_ticks > INSN_BUDGET || clock_calls > CLOCK_BUDGET ||
         lu_mono_now() - wall_start > WALL_BUDGET;
}

static void hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (closing) return;
  hook_ticks += HOOK_EVERY;
  if (over_budget()) exhaust(L);
}

static void push_R(lua_State *L, int field) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, R_ref);
  lua_rawgeti(L, -1, field);
  lua_remove(L, -2);
}

static void run_op(lua_State *L, int ctx);
static void fz_check_lists(lua_State *L);

/* ---- values ------------------------------------------------------------------ */

static double special_double(void) {
  static const double v[] = {0.0,    -0.0,   0.5,     1.0,     1.5,      NAN,
                             INFINITY, -INFINITY, 1e308, -1e308, 5e-324, 9007199254740992.0,
                             9223372036854775808.0, -9223372036854775808.0, 1e-300, 3.0,
                             0.1,    1e6,    1e6 + 0.5, 10.0,   -1.0,     2.0};
  return v[b8() % (sizeof v / sizeof v[0])];
}

static void push_number(lua_State *L) {
  uint8_t k = b8();
  switch (k % 8) {
    case 0: case 1: lua_pushinteger(L, (lua_Integer)(b8() % 12) - 2); break;
    case 2: lua_pushnumber(L, special_double()); break;
    case 3: {
      static const lua_Integer v[] = {LUA_MAXINTEGER, LUA_MININTEGER, 0, 1000000, 1000001,
                                      10, 11, -1, 1, 5, 4};
      lua_pushinteger(L, v[b8() % (sizeof v / sizeof v[0])]);
      break;
    }
    case 4: lua_pushnumber(L, braw()); break;
    case 5: lua_pushnumber(L, (b8() % 64) * 0.05); break;
    case 6: lua_pushnumber(L, fz_now + (b8() % 16) * 0.1); break;
    default: lua_pushinteger(L, (lua_Integer)b8()); break;
  }
}

static void push_string(lua_State *L) {
  static const char *const dict[] = {
      "a", "b", "c", "10.0.0.1:80", "healthcheck", "interval", "timeout", "round_robin",
      "hash", "weighted", "least_conn", "random", "min", "max", "init", "", "slot", "gen",
      "backend", "1", "0x10", "1e400", "nan", "check", "clock", "sleep", "weights", "tiers"};
  uint8_t k = b8();
  if (k < 160) {
    lua_pushstring(L, dict[k % (sizeof dict / sizeof dict[0])]);
  } else {
    char buf[16];
    size_t n = b8() % sizeof buf, i;
    for (i = 0; i < n; i++) buf[i] = (char)b8();
    lua_pushlstring(L, buf, n);
  }
}

static void gen_value(lua_State *L, int d);
static int fz_on_change(lua_State *L);

/* The depth of a value generated inside one at depth d: d + 1, or at
 * least lo. Each generator passes its nested values a depth above its own
 * (gen_value makes only scalars past depth 3), so that every chain of
 * nested generators ends after a few levels. Their pushes go to Lua's
 * stack, written by liblua, which ASan does not see: a chain that ran as
 * long as the input (weights tables keyed by weights tables, each reset to
 * depth 3) wrote past the end of the stack into the heap
 * (crashers/api-stack-deep-weights). */
static int nest(int d, int lo) { return d + 1 > lo ? d + 1 : lo; }
static int new_slot = -1; /* the list slot op_new fills, for on_change */
static struct {
  int active, slot, which; /* the next do_op is op_target(slot, which) */
} forced;

static void push_pool(lua_State *L) {
  push_R(L, R_POOL);
  lua_rawgeti(L, -1, 1 + b8() % POOL);
  lua_remove(L, -2);
}

static void push_list(lua_State *L, int k) {
  push_R(L, R_LISTS);
  lua_rawgeti(L, -1, 1 + k % MAX_LISTS);
  lua_remove(L, -2);
}

/* A backend: mostly from the pool (so that duplicates and shared
 * identities are common), else any value. */
static void push_backend(lua_State *L, int d) {
  if (b8() < 200) push_pool(L);
  else gen_value(L, d + 1);
}

/* ud: a userdata, else a table; hc: the table has a healthcheck field
 * (-1: as the input says) */
static void new_backend_obj(lua_State *L, int ud, int hc) {
  if (ud) {
    lua_newuserdatauv(L, 8, 1);
    push_R(L, R_MT_UD);
  } else {
    lua_newtable(L);
    if (hc < 0 ? b8() & 1 : hc) {
      push_R(L, R_CHECK);
      lua_setfield(L, -2, "healthcheck");
    }
    push_R(L, R_MT_T);
  }
  lua_setmetatable(L, -2);
}

static void gen_backends(lua_State *L, int d) {
  uint8_t k = b8();
  int n = k < 160 ? k % 9 : k < 230 ? k % 40 : k < 250 ? k % 130 : 150 + k % 100, i;
  lua_createtable(L, n, 0);
  for (i = 1; i <= n; i++) {
    push_backend(L, d);
    lua_rawseti(L, -2, i); /* nil: a hole */
  }
  if (b8() == 77) { /* a key that is not 1..n */
    gen_value(L, nest(d, 3));
    if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER && isnan(lua_tonumber(L, -1))))
      lua_pop(L, 1);
    else {
      lua_pushboolean(L, 1);
      lua_rawset(L, -3);
    }
  }
}

/* { [backend] = weight } with valid or invalid weights or keys; d: the
 * depth of the table. */
static void gen_weights(lua_State *L, int d) {
  int n = b8() % 6, i;
  lua_newtable(L);
  for (i = 0; i < n; i++) {
    push_backend(L, nest(d, 2));
    if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER && isnan(lua_tonumber(L, -1)))) {
      lua_pop(L, 1);
      continue;
    }
    if (b8() < 200) lua_pushinteger(L, 1 + (lua_Integer)(b8() < 128 ? b8() % 10 : b32() % 1000000));
    else push_number(L);
    lua_rawset(L, -3);
  }
}

static double pos_double(void) {
  static const double v[] = {1, 0.1, 0.5, 0.01, 1e-6, 2, 10, 0.001, 1e-300, 5e-324, 1e300,
                             DBL_MAX, 3, 0.25, 1e9, 0, -1};
  return v[b8() % (sizeof v / sizeof v[0])];
}

static void gen_opts(lua_State *L, int d) {
  static const char *const names[] = {"interval", "timeout", "jitter", "initial_score",
                                      "low_score", "high_score", "fail_delta",
                                      "success_delta", "panic", "slow_start", "check",
                                      "clock", "sleep", "seed", "strategy", "weights",
                                      "tiers", "tier_by_latency", "unhealthy_interval",
                                      "on_change"};
  static const char *const strategies[] = {"round_robin", "weighted", "least_conn", "hash",
                                           "random", "rr"};
  uint8_t mode = b8(), f;
  int i;
  luaL_checkstack(L, 4, "fuzz: generated options");
  if (mode < 8) {
    lua_pushnil(L);
    return;
  }
  if (mode < 12) {
    gen_value(L, d + 1);
    return;
  }
  lua_newtable(L);
  /* the usual: a fake clock and sleep, and a check */
  f = b8();
  if (!(f & 1)) {
    push_R(L, R_F);
    lua_getfield(L, -1, "clock");
    lua_setfield(L, -3, "clock");
    lua_getfield(L, -1, "sleep");
    lua_setfield(L, -3, "sleep");
    lua_pop(L, 1);
  }
  if (!(f & 2)) {
    push_R(L, R_CHECK);
    lua_setfield(L, -2, "check");
  }
  if (!(f & 4)) {
    lua_pushstring(L, strategies[b8() % 5]);
    lua_setfield(L, -2, "strategy");
  }
  if (f & 8) {
    lua_pushinteger(L, (lua_Integer)b64());
    lua_setfield(L, -2, "seed");
  }
  /* numbers */
  for (i = 0; i < 10; i++) {
    uint8_t c = b8();
    double v;
    if (c < 180) continue;
    switch (i) {
      case 0: case 1: v = pos_double(); break;            /* interval, timeout */
      case 2: case 8: v = (b8() % 5) / 4.0; break;        /* jitter, panic */
      case 3: v = (double)((int)(b8() % 9) - 4); break;   /* initial_score */
      case 4: v = -(double)(b8() % 5); break;             /* low_score */
      case 5: v = (double)(b8() % 5); break;              /* high_score */
      case 6: v = -pos_double(); break;                   /* fail_delta */
      case 7: v = pos_double(); break;                    /* success_delta */
      default: { /* slow_start */
        static const double s[] = {0, 0.5, 1, 10, 0.01, 1e-9, 5e-324, 1e-320, 1e300, 2};
        v = s[b8() % (sizeof s / sizeof s[0])];
        if (avoid_known && v > 0 && v < 1e-6) v = 1;
        break;
      }
    }
    if (c >= 250) v = braw();
    if (avoid_known && i == 9 && !(v >= 1e-6 && isfinite(v))) v = 0;
    /* a new hang (crashers/api-hang-run-tiny-interval): an interval the
     * clock cannot resolve */
    if (avoid_known && i < 2 && v > 0 && v < 1e-6) v = 1e-6;
    lua_pushnumber(L, v);
    lua_setfield(L, -2, names[i]);
  }
  if (f & 16) {
    lua_newtable(L);
    if (b8() < 220) {
      int mn = b8() % 11, mx = mn + b8() % (11 - mn), in = mn + b8() % (mx - mn + 1);
      lua_pushinteger(L, mn);
      lua_setfield(L, -2, "min");
      lua_pushinteger(L, mx);
      lua_setfield(L, -2, "max");
      lua_pushinteger(L, in);
      lua_setfield(L, -2, "init");
    } else {
      int k;
      for (k = 0; k < 3; k++) {
        push_string(L);
        gen_value(L, nest(d, 3));
        if (lua_isnil(L, -2) || lua_isnil(L, -1)) lua_pop(L, 2);
        else lua_rawset(L, -3);
      }
    }
    lua_setfield(L, -2, "tiers");
  }
  if (f & 32) {
    lua_pushboolean(L, b8() & 1);
    lua_setfield(L, -2, "tier_by_latency");
  }
  { /* unhealthy_interval, from its extremes; on_change, a callback bound to
     * the list slot the list will take (op_new) */
    uint8_t c = b8();
    if (c >= 176) {
      static const double v[] = {0, 1e-9, 5e-324, 1e-3, 0.05, 0.5, 1, 10, 1e300, -1};
      double x;
      if (c < 240) x = v[b8() % (sizeof v / sizeof v[0])];
      else if (c < 248) x = pos_double();
      else if (c < 252) x = c & 1 ? INFINITY : NAN;
      else x = braw();
      if (avoid_known && x > 0 && x < 1e-6) x = 1e-6;
      lua_pushnumber(L, x);
      lua_setfield(L, -2, "unhealthy_interval");
    }
    c = b8();
    if (c >= 128) {
      lua_pushinteger(L, new_slot >= 0 ? new_slot : (lua_Integer)(b8() % MAX_LISTS));
      lua_pushcclosure(L, fz_on_change, 1);
      lua_setfield(L, -2, "on_change");
    }
  }
  if (f & 64) {
    gen_weights(L, d);
    lua_setfield(L, -2, "weights");
  }
  if (f & 128) { /* anything at any option, or a key that is not one */
    uint8_t c = b8();
    if (c < 128) {
      gen_value(L, d + 1);
      lua_setfield(L, -2, names[c % (sizeof names / sizeof names[0])]);
    } else if (c < 160) {
      push_string(L);
      gen_value(L, d + 1);
      if (lua_isnil(L, -1) || lua_type(L, -2) != LUA_TSTRING) lua_pop(L, 2);
      else lua_rawset(L, -3);
    } else if (c < 170) {
      lua_pushinteger(L, 1);
      lua_pushinteger(L, 2);
      lua_rawset(L, -3);
    } else if (c < 180) { /* options read through __index */
      push_R(L, R_MT_T);
      lua_setmetatable(L, -2);
    }
  }
}

/* A job for report(): one due() handed out, or made up. */
static void push_job(lua_State *L) {
  uint8_t k = b8();
  if (k < 200) {
    push_R(L, R_JOBS);
    lua_rawgeti(L, -1, 1 + k % MAX_JOBS);
    lua_remove(L, -2);
    if (!lua_isnil(L, -1)) return;
    lua_pop(L, 1);
  }
  lua_createtable(L, 0, 2);
  push_number(L);
  lua_setfield(L, -2, "slot");
  push_number(L);
  /* a new bug (crashers/api-ub-report-huge-gen): gen >= 2^64 */
  if (avoid_known && lua_type(L, -1) == LUA_TNUMBER && !(lua_tonumber(L, -1) < 1e18)) {
    lua_pop(L, 1);
    lua_pushinteger(L, 1);
  }
  lua_setfield(L, -2, "gen");
  if (k == 255) {
    push_R(L, R_MT_T);
    lua_setmetatable(L, -2);
  }
}

static void gen_value(lua_State *L, int d) {
  uint8_t k = b8();
  /* room for this level's pushes (a table, a key, a value), as the C API
   * asks of any code that pushes more than LUA_MINSTACK values */
  luaL_checkstack(L, 4, "fuzz: generated value");
  if (d > 3) k %= 9; /* scalars only */
  switch (k % 21) {
    case 0: lua_pushnil(L); break;
    case 1: lua_pushboolean(L, b8() & 1); break;
    case 2: case 3: push_number(L); break;
    case 4: case 5: push_string(L); break;
    case 6: case 7: case 8: push_pool(L); break;
    case 9: gen_backends(L, d + 1); break;
    case 10: {
      static const int fields[] = {R_CHECK, 0, 0, R_METHODS};
      int fi = fields[b8() % 4];
      if (fi) push_R(L, fi);
      else {
        push_R(L, R_F);
        lua_getfield(L, -1, (b8() & 1) ? "clock" : "sleep");
        lua_remove(L, -2);
      }
      if (lua_type(L, -1) == LUA_TTABLE) { /* a method */
        lua_getfield(L, -1, "step");
        lua_remove(L, -2);
      }
      break;
    }
    case 11: new_backend_obj(L, 1, -1); break;
    case 12: new_backend_obj(L, 0, -1); break;
    case 13: push_list(L, b8()); break;
    case 14: gen_opts(L, d + 1); break;
    case 15: push_job(L); break;
    case 16: lua_newthread(L); break;
    case 17: lua_pushlightuserdata(L, (void *)&in_p); break;
    case 18: gen_weights(L, d); break;
    case 19: { /* a table with a healthcheck that is not a function */
      lua_newtable(L);
      gen_value(L, 4);
      lua_setfield(L, -2, "healthcheck");
      break;
    }
    default: lua_pushnumber(L, special_double()); break;
  }
}

/* ---- callbacks ---------------------------------------------------------------- */

static int is_restricted_ctx(int ctx) {
  return ctx == CTX_CLOCK || ctx == CTX_INDEX || ctx == CTX_GC;
}

/* Runs one API call from inside a callback. */
static void reenter(lua_State *L, int ctx) {
  int r = is_restricted_ctx(ctx);
  restricted += r;
  run_op(L, ctx);
  if (b8() % 4 == 3) run_op(L, ctx); /* e.g. a reconcile, then a collection */
  restricted -= r;
}

static int fz_clock(lua_State *L) {
  uint8_t b;
  double v;
  ++clock_calls;
  if ((clock_calls & 63) == 0 && over_budget()) exhaust(L);
  if (exhausted) exhaust(L);
  b = b8();
  if (b >= 176) switch (b) {
      case 192: lua_pushnil(L); return 1;
      case 193: lua_pushnumber(L, NAN); return 1;
      case 194: lua_pushliteral(L, "1"); return 1;
      case 195: if (!avoid_known) { lua_pushnumber(L, HUGE_VAL); return 1; } break;
      case 196: lua_pushnumber(L, -HUGE_VAL); return 1;
      case 197: return luaL_error(L, "clock raised");
      case 198: case 199: case 200: case 201: case 202: case 203: case 204: case 205:
      case 206: case 207:
        reenter(L, CTX_CLOCK);
        break;
      case 208: lua_gc(L, LUA_GCCOLLECT); break;
      case 209: if (!avoid_known) { lua_pushnumber(L, 1e300); return 1; } break;
      case 210: if (clock_ok(fz_now - 1)) fz_now -= 1; break;
      case 211: lua_pushinteger(L, (lua_Integer)(fz_now > -1e18 && fz_now < 1e18 ? fz_now : 0)); return 1;
      case 212: return lua_yield(L, 0); /* raises: not yieldable */
      default:
        if (b < 192 && clock_ok(fz_now + (b - 175) * 0.01)) fz_now += (b - 175) * 0.01;
        break;
    }
  v = fz_now;
  if (v == last_clock) {
    if (++same_clock > HANG_CALLS) hang(v);
  } else {
    same_clock = 0;
    last_clock = v;
  }
  lua_pushnumber(L, v);
  return 1;
}

static int fz_sleep(lua_State *L) {
  double s = lua_tonumber(L, 1), adv = s, t;
  uint8_t b;
  if (over_budget()) exhaust(L);
  b = b8();
  if (b >= 128) {
    if (b < 160) adv = s * 2 + 1e-3;
    else if (b < 170) adv = 0;
    else if (b < 180) adv = s / 2;
    else if (b == 180) return luaL_error(L, "sleep raised");
    else if (b < 191) reenter(L, CTX_SLEEP);
    else if (b == 191) lua_gc(L, LUA_GCCOLLECT);
    else if (b == 192) adv = -1;
    else if (b == 193) adv = 1e300;
  }
  t = fz_now + adv;
  if (clock_ok(t)) fz_now = t;
  return 0;
}

static int fz_index(lua_State *L) {
  uint8_t b = b8();
  if (b >= 128) {
    if (b < 160) {
      lua_pushnil(L);
      return 1;
    }
    if (b < 176) {
      gen_value(L, 3);
      return 1;
    }
    if (b == 176) return luaL_error(L, "__index raised");
    if (b < 192) reenter(L, CTX_INDEX);
    else if (b == 192) lua_gc(L, LUA_GCCOLLECT);
    else if (b == 193) return lua_yield(L, 0);
  }
  push_R(L, R_CHECK);
  return 1;
}

static int fz_gc(lua_State *L) {
  uint8_t b = b8();
  if (b < 200) return 0;
  if (b < 232) reenter(L, CTX_GC);
  else if (b == 232) return luaL_error(L, "__gc raised");
  else if (b == 233) { /* resurrect into the pool */
    push_R(L, R_POOL);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1 + b8() % POOL);
  }
  return 0;
}

static int fz_tostring(lua_State *L) {
  uint8_t b = b8();
  if (b >= 128) {
    if (b < 160) reenter(L, CTX_TOSTRING);
    else if (b == 160) {
      lua_pushinteger(L, 1);
      return 1;
    } else if (b == 161)
      return luaL_error(L, "__tostring raised");
  }
  lua_pushliteral(L, "fuzz-backend");
  return 1;
}

static int fz_close(lua_State *L) {
  uint8_t b = b8();
  if (b < 160) return 0;
  if (b < 200) reenter(L, CTX_CLOSE);
  else if (b == 200) return luaL_error(L, "__close raised");
  else if (b == 201) lua_gc(L, LUA_GCCOLLECT);
  return 0;
}

/* on_change(backend, healthy, score, err), bound to a list slot (upvalue
 * 1): its arguments follow the rule (healthy exactly when score >= 0);
 * then, as the input says, nothing, any API call, a call on its own list
 * (reconcile, shutdown, status, status_of, up, down, metrics, step: see
 * op_target), an error or a collection. */
static int fz_on_change(lua_State *L) {
  int slot = (int)lua_tointeger(L, lua_upvalueindex(1));
  uint8_t b;
  INV(lua_gettop(L) == 4, "on_change got %d arguments", lua_gettop(L));
  INV(lua_type(L, 2) == LUA_TBOOLEAN && lua_type(L, 3) == LUA_TNUMBER,
      "on_change got healthy %s, score %s", luaL_typename(L, 2), luaL_typename(L, 3));
  INV(lua_toboolean(L, 2) == (lua_tonumber(L, 3) >= 0),
      "on_change: healthy %d with score %g", lua_toboolean(L, 2), lua_tonumber(L, 3));
  INV(!lua_isnil(L, 1), "on_change without a backend");
  if (over_budget()) exhaust(L);
  b = b8();
  if (b < 80) return 0;
  if (b < 112) {
    reenter(L, CTX_CHANGE);
  } else if (b < 208) {
    push_R(L, R_F);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, R_ARG); /* the backend, for status_of/up/down */
    lua_pop(L, 1);
    forced.active = 1;
    forced.slot = slot;
    forced.which = (b - 112) % 8;
    run_op(L, CTX_CHANGE);
    forced.active = 0;
    if (b8() % 4 == 3) reenter(L, CTX_CHANGE);
  } else if (b == 208) {
    return luaL_error(L, "on_change raised");
  } else if (b == 209) {
    lua_gc(L, LUA_GCCOLLECT);
  } else if (b == 210) {
    return lua_yield(L, 0); /* raises: not yieldable */
  }
  return 0;
}

/* F.* for the check function */
static int F_byte(lua_State *L) {
  if (over_budget()) exhaust(L);
  lua_pushinteger(L, b8());
  return 1;
}
static int F_num(lua_State *L) {
  push_number(L);
  return 1;
}
static int F_val(lua_State *L) {
  gen_value(L, 2);
  return 1;
}
static int F_call(lua_State *L) {
  reenter(L, CTX_CHECK);
  return 0;
}
static int F_now(lua_State *L) {
  lua_pushnumber(L, fz_now);
  return 1;
}
static int F_closer(lua_State *L) {
  lua_newtable(L);
  push_R(L, R_MT_CLOSE);
  lua_setmetatable(L, -2);
  return 1;
}

static const char PRELUDE[] =
    "local F, upstream = ...\n"
    "local byte, num, val, call = F.byte, F.num, F.val, F.call\n"
    "local yield, huge = coroutine.yield, math.huge\n"
    "local body\n"
    "body = function(b, d, ...)\n"
    "  for _ = 1, 32 do\n"
    "    local a = byte()\n"
    "    if a < 48 then return true\n"
    "    elseif a < 56 then return num()\n"
    "    elseif a < 60 then return val(), val()\n"
    "    elseif a < 68 then return false, val()\n"
    "    elseif a < 72 then return nil, 'down', num()\n"
    "    elseif a < 76 then return false\n"
    "    elseif a < 84 then error(val())\n"
    "    elseif a < 88 then error('check raised', byte() % 3)\n"
    "    elseif a < 100 then yield(val(), val())\n"
    "    elseif a < 108 then upstream.sleep(num())\n"
    "    elseif a < 112 then pcall(upstream.sleep, num())\n"
    "    elseif a < 120 then call()\n"
    "    elseif a < 122 then collectgarbage()\n"
    "    elseif a < 124 then collectgarbage('step')\n"
    "    elseif a < 128 then\n"
    "      if d < 4 then\n"
    "        local c <close> = F.closer()\n"
    "        return body(b, d + 1, ...)\n"
    "      end\n"
    "    elseif a < 132 then\n" /* yield n times; 255: for ever */
    "      local n = byte()\n"
    "      if n == 255 and not F.avoid then n = huge elseif n > 64 then n = 64 end\n"
    "      for _ = 1, n do yield() end\n"
    "    elseif a < 136 then\n"
    "      local co = coroutine.wrap(function() upstream.sleep(num()) return 1 end)\n"
    "      co()\n"
    "    elseif a < 140 then return b\n"
    "    elseif a < 144 then return true, nil, num()\n"
    "    elseif a < 148 then\n"
    "      if d < 4 then return pcall(body, b, d + 1, ...) end\n"
    "    elseif a < 152 then return F.now()\n"
    "    elseif a < 156 then local _ = tostring(b)\n"
    "    else return true\n"
    "    end\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "return function(b, ...) return body(b, 0, ...) end\n";

/* ---- invariants of the lists ---------------------------------------------- */

static lu_list *as_list(lua_State *L, int idx) {
  lu_list *u;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return NULL;
  push_R(L, R_LISTMT);
  u = lua_rawequal(L, -1, -2) ? (lu_list *)lua_touserdata(L, idx) : NULL;
  lua_pop(L, 2);
  return u;
}

static void fz_check_list(lua_State *L, int idx) {
  lu_list *u = as_list(L, idx);
  ul_list *c;
  uint32_t s;
  int slots, index, threads;
  if (!u || !u->core) return;
  c = u->core;
  if (scratch_cap < 3 * (size_t)c->cap) {
    free(scratch);
    scratch_cap = 3 * (size_t)c->cap;
    scratch = (unsigned char *)malloc(scratch_cap);
  }
  inv_check(c, scratch);
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, idx, LU_UV_SLOTS);
  slots = lua_gettop(L);
  lua_getiuservalue(L, idx, LU_UV_INDEX);
  index = lua_gettop(L);
  lua_getiuservalue(L, idx, LU_UV_THREADS);
  threads = lua_gettop(L);
  INV(lua_type(L, slots) == LUA_TTABLE && lua_type(L, index) == LUA_TTABLE &&
          lua_type(L, threads) == LUA_TTABLE,
      "a list's slot, index or thread table is missing");
  for (s = 0; s < c->cap; s++) {
    const ul_node *x = &ul_nodes(c)[s];
    int t = lua_rawgeti(L, slots, (lua_Integer)s + 1);
    if (!(x->flags & UL_F_MEMBER)) {
      INV(t == LUA_TNIL, "free slot %u holds a backend (%s)", s, lua_typename(L, t));
    } else {
      int32_t first, r;
      unsigned i = 0;
      INV(t != LUA_TNIL, "member slot %u has no backend", s);
      lua_pushvalue(L, -1);
      INV(lua_rawget(L, index) == LUA_TNUMBER, "member slot %u's backend is not indexed", s);
      first = (int32_t)lua_tointeger(L, -1);
      lua_pop(L, 1);
      INV(first >= 0 && (uint32_t)first < c->cap && (ul_nodes(c)[first].flags & UL_F_MEMBER),
          "index of slot %u's backend is %d, not a member", s, first);
      lua_rawgeti(L, slots, (lua_Integer)first + 1);
      INV(lua_rawequal(L, -1, -2), "index of slot %u names slot %d, another backend", s, first);
      lua_pop(L, 1);
      for (r = (int32_t)s; r != first; r = ul_nodes(c)[r].dup)
        INV(++i <= c->cap, "slot %u and its index slot %d are not in one ring", s, first);
    }
    lua_pop(L, 1);
    /* a new bug (crashers/api-oom-timeout-keeps-check-coroutine): after a
     * failed allocation a timed-out check's coroutine may stay. While a
     * shutdown closes the coroutines one by one (l_shutdown: each entry
     * cleared before its close), code a closing one runs (depth > 0) sees
     * the others still there (crashers/api-coroutine-during-shutdown);
     * after every top-level call (depth 0) none may stay. */
    if (lua_rawgeti(L, threads, (lua_Integer)s + 1) == LUA_TTHREAD &&
        !(avoid_known && alloc_failed) && !(c->shut && depth > 0))
      INV((x->flags & UL_F_MEMBER) && x->state == UL_RUNNING && !c->shut,
          "slot %u has a check coroutine but no running check (flags %u state %u shut %u)",
          s, x->flags, x->state, c->shut);
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  while (lua_next(L, index)) {
    lua_Integer t = lua_tointeger(L, -1);
    INV(lua_type(L, -1) == LUA_TNUMBER && t >= 0 && (uint64_t)t < c->cap &&
            (ul_nodes(c)[t].flags & UL_F_MEMBER),
        "index entry names slot %lld, not a member", (long long)t);
    lua_rawgeti(L, slots, t + 1);
    INV(lua_rawequal(L, -1, -3), "index entry for slot %lld holds another backend",
        (long long)t);
    lua_pop(L, 2);
  }
  lua_settop(L, slots - 1);
}

static void fz_check_lists(lua_State *L) {
  int k, top = lua_gettop(L);
  long saved = alloc_countdown;
  int failing = alloc_failing;
  if (!lua_checkstack(L, 24)) return;
  alloc_countdown = -1; /* the checks never allocate; be sure */
  alloc_failing = 0;
  push_R(L, R_LISTS);
  for (k = 1; k <= MAX_LISTS; k++) {
    lua_rawgeti(L, -1, k);
    fz_check_list(L, -1);
    lua_pop(L, 1);
  }
  lua_settop(L, top);
  alloc_countdown = saved;
  alloc_failing = failing;
}

/* ---- operations ------------------------------------------------------------ */

/* The list at idx may be driven for `seconds` only when both its clock and
 * its sleep are fakes (functions): the default sleep really sleeps. */
static int safe_drive(lua_State *L, int idx) {
  int r;
  idx = lua_absindex(L, idx);
  push_R(L, R_FLAGS);
  lua_pushvalue(L, idx);
  r = lua_rawget(L, -2) == LUA_TBOOLEAN && lua_toboolean(L, -1);
  lua_pop(L, 2);
  return r;
}

/* The list at idx has a clock of its own but the real sleep: its clock
 * may stand still over the sleeps (the fake one does), and then run() and
 * wait_initial() sleep LU_STILL (1 s) of real time before they raise
 * "the clock did not move", as long as WALL_BUDGET: the harness would call
 * that a hang. */
static int still_drive(lua_State *L, int idx) {
  int top = lua_gettop(L), r;
  idx = lua_absindex(L, idx);
  r = lua_getiuservalue(L, idx, LU_UV_CLOCK) == LUA_TFUNCTION &&
      lua_getiuservalue(L, idx, LU_UV_SLEEP) != LUA_TFUNCTION;
  lua_settop(L, top);
  return r;
}

/* A duration for run()/wait_initial(): long ones only with a fake clock
 * and sleep (safe); on a list whose clock may stand still over real
 * sleeps (still), none above 0. */
static void push_seconds(lua_State *L, int safe, int still, int allow_nil) {
  uint8_t k = b8();
  if (safe) {
    static const double v[] = {0, 0.001, 0.1, 0.5, 1, 2, 5, 10, 30, 0.05, -1, NAN, 1e3};
    if (k < 200) lua_pushnumber(L, v[k % (sizeof v / sizeof v[0])]);
    else if (k < 210 && allow_nil) lua_pushnil(L);
    else if (k < 215) lua_pushnumber(L, INFINITY);
    else if (k < 220) lua_pushliteral(L, "x");
    else if (k < 222) lua_pushnumber(L, 1e9);
    else lua_pushnumber(L, (b8() % 100) * 0.01);
  } else { /* a real sleep: never more than 0.1 ms a call */
    static const double v[] = {0, 1e-6, 1e-4, -1, NAN};
    double x = v[k % (sizeof v / sizeof v[0])];
    if (k < 240) lua_pushnumber(L, still && x > 0 ? 0 : x);
    else lua_pushliteral(L, "x");
  }
}

/* An into table for status(): a sequence of rows of every kind (empty
 * tables, rows with stale fields, non-tables, a table with metatables);
 * *checkable: its rows are distinct tables or values status() replaces,
 * so that the result can be checked row by row. */
static void gen_into(lua_State *L, int *checkable) {
  uint8_t k = b8();
  int n = k % 12, i, t;
  *checkable = 1;
  lua_createtable(L, n, 0);
  t = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    switch (b8() % 9) {
      case 0: case 1: lua_newtable(L); break;
      case 2:
        lua_newtable(L);
        lua_pushliteral(L, "stale");
        lua_setfield(L, -2, "last_error");
        lua_pushliteral(L, "x");
        lua_setfield(L, -2, "since");
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "latency");
        lua_pushliteral(L, "s");
        lua_setfield(L, -2, "score");
        gen_value(L, 3);
        lua_setfield(L, -2, "backend");
        break;
      case 3: push_number(L); break;
      case 4: push_string(L); break;
      case 5: lua_pushboolean(L, 0); break;
      case 6: new_backend_obj(L, 0, 0); break; /* __index, __gc, __tostring */
      case 7: lua_pushvalue(L, t); *checkable = 0; break; /* itself */
      default: push_pool(L); *checkable = 0; break;
    }
    lua_rawseti(L, t, i);
  }
  if (b8() < 12) { /* past a hole */
    lua_pushliteral(L, "past");
    lua_rawseti(L, t, n + 2);
    *checkable = 0;
  }
}

/* After status(into) or status_of(b, into) with no reentrant call: row p
 * of the table at idx is member p's (its backend and score). */
static void check_row(lua_State *L, lu_list *u, int self, int row, int32_t s) {
  lua_getiuservalue(L, self, LU_UV_SLOTS);
  lua_rawgeti(L, -1, (lua_Integer)s + 1);
  lua_pushliteral(L, "backend");
  lua_rawget(L, row);
  INV(lua_rawequal(L, -1, -2), "status row of slot %d has another backend", s);
  lua_pushliteral(L, "score");
  INV(lua_rawget(L, row) == LUA_TNUMBER && lua_tonumber(L, -1) == ul_nodes(u->core)[s].score,
      "status row of slot %d: score differs", s);
  lua_pop(L, 4);
}

/* The argument of upstream.metrics: a table { name = list } with names
 * that need escaping, lists or not, or any value. */
static void gen_lists(lua_State *L, int self) {
  static const char *const names[] = {"web", "a\"b", "c\\d", "e\nf", "", "web2", "x"};
  uint8_t k = b8();
  int n, i;
  if (k < 16) {
    gen_value(L, 2);
    return;
  }
  lua_newtable(L);
  if (self && lua_type(L, self) == LUA_TUSERDATA) {
    lua_pushvalue(L, self);
    lua_setfield(L, -2, names[b8() % (sizeof names / sizeof names[0])]);
  }
  n = k % 5;
  for (i = 0; i < n; i++) {
    uint8_t c = b8();
    if (c < 200) lua_pushstring(L, names[c % (sizeof names / sizeof names[0])]);
    else if (c < 230) push_string(L);
    else push_number(L);
    if (b8() < 230) push_list(L, b8());
    else gen_value(L, 3);
    if (lua_isnil(L, -1) || lua_isnil(L, -2) ||
        (lua_type(L, -2) == LUA_TNUMBER && isnan(lua_tonumber(L, -2))))
      lua_pop(L, 2);
    else
      lua_rawset(L, -3);
  }
}

/* An options table for upstream.http_check (tcp: for tcp_check) of random
 * shape; returns the number of arguments pushed (0 or 1). */
static int gen_check_opts(lua_State *L, int tcp) {
  uint8_t k = b8(), f;
  if (k < 24) return 0;
  if (k < 48) {
    gen_value(L, 2);
    return 1;
  }
  lua_newtable(L);
  if (tcp) {
    if (k < 96) {
      push_string(L);
      gen_value(L, 3);
      if (lua_isnil(L, -1) || lua_type(L, -2) != LUA_TSTRING) lua_pop(L, 2);
      else lua_rawset(L, -3);
    }
    return 1;
  }
  f = b8();
  if (f & 1) {
    static const char *const v[] = {"/", "/health", "health", "/a b", "/\x01", "", "/%s"};
    uint8_t c = b8();
    if (c < 200) lua_pushstring(L, v[c % (sizeof v / sizeof v[0])]);
    else if (c < 220) { /* long: the request's limit */
      luaL_Buffer bb;
      int i, n = 1 + b8() * 8;
      luaL_buffinit(L, &bb);
      luaL_addchar(&bb, '/');
      for (i = 0; i < n; i++) luaL_addchar(&bb, 'p');
      luaL_pushresult(&bb);
    } else gen_value(L, 3);
    lua_setfield(L, -2, "path");
  }
  if (f & 2) {
    uint8_t c = b8();
    switch (c % 9) {
      case 0: lua_pushinteger(L, 200); break;
      case 1: lua_pushinteger(L, 99 + (lua_Integer)(b8() % 3) * 250); break;
      case 2: lua_pushnumber(L, 200.5); break;
      case 3: case 4: {
        int n = b8() % 4, i;
        lua_newtable(L);
        for (i = 1; i <= n; i++) {
          if (b8() < 220) lua_pushinteger(L, 100 + (lua_Integer)(b8() % 2) * 100 + b8() % 5);
          else gen_value(L, 3);
          lua_rawseti(L, -2, i);
        }
        if (c % 9 == 4) {
          lua_pushinteger(L, 1);
          lua_setfield(L, -2, "x");
        }
        break;
      }
      case 5: push_string(L); break;
      default: gen_value(L, 3); break;
    }
    lua_setfield(L, -2, "expect");
  }
  if (f & 4) {
    static const char *const v[] = {"h", "example.org", "", "a b", "h\r\n", "[::1]"};
    uint8_t c = b8();
    if (c < 220) lua_pushstring(L, v[c % (sizeof v / sizeof v[0])]);
    else gen_value(L, 3);
    lua_setfield(L, -2, "host");
  }
  if (f & 8) {
    static const char *const v[] = {"GET", "HEAD", "get", "", "G T", "OPTIONS"};
    uint8_t c = b8();
    if (c < 220) lua_pushstring(L, v[c % (sizeof v / sizeof v[0])]);
    else gen_value(L, 3);
    lua_setfield(L, -2, "method");
  }
  if (f & 16) {
    static const char *const names[] = {"X-A", "Accept", "Host", "connection", "A B",
                                        "", "X:Y", "host"};
    static const char *const vals[] = {"1", "*/*", "a\r\nb", "", "v\x7f", "x y"};
    int n = b8() % 5, i;
    if (b8() < 240) {
      lua_newtable(L);
      for (i = 0; i < n; i++) {
        uint8_t c = b8();
        if (c < 200) lua_pushstring(L, names[c % (sizeof names / sizeof names[0])]);
        else if (c < 230) push_string(L);
        else push_number(L);
        c = b8();
        if (c < 200) lua_pushstring(L, vals[c % (sizeof vals / sizeof vals[0])]);
        else if (c < 210) { /* big: the request's limit */
          luaL_Buffer bb;
          int j, m = 1 + b8() * 8;
          luaL_buffinit(L, &bb);
          for (j = 0; j < m; j++) luaL_addchar(&bb, 'v');
          luaL_pushresult(&bb);
        } else gen_value(L, 3);
        if (lua_isnil(L, -1) || lua_isnil(L, -2) ||
            (lua_type(L, -2) == LUA_TNUMBER && isnan(lua_tonumber(L, -2))))
          lua_pop(L, 2);
        else
          lua_rawset(L, -3);
      }
    } else {
      gen_value(L, 3);
    }
    lua_setfield(L, -2, "headers");
  }
  if (f & 32) {
    static const char *const v[] = {"ok", "[a", "%", "\"ok\"", "^OK$", "(()"};
    uint8_t c = b8();
    if (c < 220) lua_pushstring(L, v[c % (sizeof v / sizeof v[0])]);
    else gen_value(L, 3);
    lua_setfield(L, -2, "body");
  }
  if (f & 64) { /* a key that is not an option */
    uint8_t c = b8();
    if (c < 128) {
      push_string(L);
      gen_value(L, 3);
      if (lua_isnil(L, -1) || lua_type(L, -2) != LUA_TSTRING) lua_pop(L, 2);
      else lua_rawset(L, -3);
    } else {
      lua_pushinteger(L, 1);
      lua_rawseti(L, -2, 1);
    }
  }
  if (f & 128) { /* options read through __index */
    push_R(L, R_MT_T);
    lua_setmetatable(L, -2);
  }
  return 1;
}

static const char *const method_names[] = {
    "pick", "up", "down", "score", "status", "reconcile", "step", "run", "wait_initial",
    "due", "report", "now", "checked", "next_due", "weight", "set_weight", "release",
    "inflight", "_slots", "shutdown", "status_of", "metrics", "http_check", "tcp_check",
    "__len", "__tostring", "__gc", "__close"};
enum { M_PICK, M_UP, M_DOWN, M_SCORE, M_STATUS, M_RECONCILE, M_STEP, M_RUN, M_WAIT,
       M_DUE, M_REPORT, M_NOW, M_CHECKED, M_NEXT_DUE, M_WEIGHT, M_SET_WEIGHT, M_RELEASE,
       M_INFLIGHT, M_SLOTS, M_SHUTDOWN, M_STATUS_OF, M_METRICS, M_HTTP_CHECK, M_TCP_CHECK,
       M_LEN, M_TOSTRING, M_GC, M_CLOSE, NMETHODS };
/* the module's functions among them: no list as the first argument */
#define IS_MODULE_FN(m) ((m) == M_METRICS || (m) == M_HTTP_CHECK || (m) == M_TCP_CHECK)

static void store_jobs(lua_State *L, int res) {
  lua_Integer i, n;
  if (lua_type(L, res) != LUA_TTABLE) return;
  n = (lua_Integer)lua_rawlen(L, res);
  push_R(L, R_JOBS);
  for (i = 1; i <= n && i <= MAX_JOBS; i++) {
    lua_rawgeti(L, res, i);
    lua_rawseti(L, -2, 1 + (lua_Integer)(b8() % MAX_JOBS));
  }
  lua_pop(L, 1);
}

/* A copy of the argument just pushed, kept below the function at base (so
 * that it outlives the call); its index. */
#define KEEP() (lua_pushvalue(L, -1), lua_insert(L, base), base++, base - 1)

/* Calls a method of a list (or of anything, to see it refused). */
static void op_method(lua_State *L) {
  int m = b8() % NMETHODS, self, nargs = 0, base, safe, still, k;
  /* known bug: a reconcile from inside a clock, __index or finalizer */
  if (avoid_known && restricted && m == M_RECONCILE) m = M_PICK;
  uint8_t sel = b8();
  lu_list *u;
  unsigned char elig[512];
  int check_pick = 0, nelig = 0, into = 0, arg = 0, checkable = 0, protect = 0;
  unsigned ops_before;
  if (sel < 240) push_list(L, sel);
  else gen_value(L, 2);
  self = lua_gettop(L);
  u = as_list(L, self);
  safe = u && safe_drive(L, self);
  still = u && !safe && still_drive(L, self);
  if (m >= M_LEN) {
    push_R(L, R_LISTMT);
    lua_getfield(L, -1, method_names[m]);
    lua_remove(L, -2);
  } else if (IS_MODULE_FN(m)) {
    push_R(L, R_MODULE);
    lua_getfield(L, -1, method_names[m]);
    lua_remove(L, -2);
  } else {
    push_R(L, R_METHODS);
    lua_getfield(L, -1, method_names[m]);
    lua_remove(L, -2);
  }
  base = lua_gettop(L);
  if (IS_MODULE_FN(m)) { /* the first argument instead of self; nargs counts the rest */
    protect = 1;
    if (m == M_METRICS) gen_lists(L, self);
    else if (!gen_check_opts(L, m == M_TCP_CHECK)) lua_pushnil(L);
  } else {
    lua_pushvalue(L, self);
  }
  switch (m) {
    case M_PICK:
      k = b8();
      if (k < 100) nargs = 0;
      else if (k < 200) { push_string(L); nargs = 1; }
      else if (k < 230) { push_number(L); nargs = 1; }
      else { gen_value(L, 2); nargs = 1; }
      if (u && u->core && u->core->cap <= sizeof elig &&
          (nargs == 1 || u->core->opts.strategy != UL_HASH)) {
        nelig = (int)inv_eligibility(u->core, elig);
        check_pick = 1;
      }
      break;
    case M_UP: case M_DOWN: case M_SCORE: case M_WEIGHT: case M_RELEASE: case M_INFLIGHT:
      push_backend(L, 1);
      nargs = 1;
      break;
    case M_SET_WEIGHT:
      push_backend(L, 1);
      if (b8() < 200) lua_pushinteger(L, 1 + (lua_Integer)(b8() % 12));
      else gen_value(L, 2);
      nargs = 2;
      break;
    case M_RECONCILE:
      if (b8() < 240) gen_backends(L, 1);
      else gen_value(L, 1);
      k = b8();
      if (k < 160) nargs = 1;
      else if (k < 230) { gen_weights(L, 1); nargs = 2; }
      else { gen_value(L, 2); nargs = 2; }
      break;
    case M_RUN:
      push_seconds(L, safe, still, 0);
      nargs = 1;
      break;
    case M_WAIT:
      if (safe && b8() < 40) nargs = 0;
      else {
        push_seconds(L, safe, still, 1);
        nargs = 1;
      }
      break;
    case M_DUE:
      k = b8();
      if (k < 128) nargs = 0;
      else if (k < 200) { lua_pushnumber(L, fz_now + (k % 8) * 0.1); nargs = 1; }
      else { gen_value(L, 3); nargs = 1; }
      break;
    case M_REPORT:
      push_job(L);
      lua_pushboolean(L, b8() & 1);
      nargs = 2;
      if (b8() < 128) {
        gen_value(L, 3);
        nargs++;
        if (b8() < 128) {
          if (b8() < 128) push_number(L);
          else gen_value(L, 3);
          nargs++;
        }
      }
      break;
    case M_STATUS:
      k = b8();
      if (k < 64) break;
      if (k < 240) gen_into(L, &checkable);
      else gen_value(L, 3);
      into = KEEP();
      nargs = 1;
      break;
    case M_STATUS_OF:
      push_backend(L, 1);
      arg = KEEP();
      nargs = 1;
      k = b8();
      if (k >= 96) {
        if (k < 200) lua_newtable(L);
        else if (k < 240) gen_into(L, &checkable);
        else gen_value(L, 3);
        into = KEEP();
        nargs = 2;
      }
      break;
    case M_METRICS: case M_HTTP_CHECK: case M_TCP_CHECK:
      break;
    default:
      if (b8() == 99) { /* junk arguments */
        gen_value(L, 3);
        nargs = 1;
      }
      break;
  }
  ops_before = all_ops;
  if (trace)
    fprintf(stderr, "@%-4zu%*s[%s] %s list%d:%s(%d args)%s\n", in_size - in_n, 2 * depth, "", ctx_names[cur_ctx],
            u ? "" : "non-list", sel % MAX_LISTS + 1, method_names[m], nargs,
            alloc_countdown >= 0 ? " with failing allocations" : "");
  if (protect) {
    /* a module function raises a clean error (a string: the option and its
     * rule, or what a callback raised) or returns what it documents */
    if (lua_pcall(L, nargs + 1, LUA_MULTRET, 0) != LUA_OK) {
      INV(lua_type(L, -1) == LUA_TSTRING, "%s raised a %s", method_names[m], luaL_typename(L, -1));
      if (trace) fprintf(stderr, "%*s  -> error: %s\n", 2 * depth, "", lua_tostring(L, -1));
      return;
    }
    if (m == M_METRICS)
      INV(lua_type(L, base) == LUA_TSTRING, "metrics returned a %s", luaL_typename(L, base));
    else
      INV(lua_type(L, base) == LUA_TFUNCTION, "%s returned a %s", method_names[m],
          luaL_typename(L, base));
    if (trace) fprintf(stderr, "%*s  -> returned\n", 2 * depth, "");
    return;
  }
  lua_call(L, nargs + 1, LUA_MULTRET);
  if (trace) fprintf(stderr, "%*s  -> returned\n", 2 * depth, "");
  /* results from base */
  if (m == M_DUE) store_jobs(L, base);
  if (check_pick && all_ops == ops_before && u->core) {
    /* no reentrant call ran: the pick follows the documented rule */
    int nres = lua_gettop(L) - base + 1;
    INV(nres >= 1, "pick returned nothing");
    if (nelig == 0) {
      INV(lua_isnil(L, base), "pick returned a backend with nothing eligible");
    } else {
      uint32_t s;
      int found = 0;
      INV(!lua_isnil(L, base), "pick returned nil with %d eligible", nelig);
      lua_getiuservalue(L, self, LU_UV_SLOTS);
      for (s = 0; s < u->core->cap && !found; s++) {
        if (!elig[s]) continue;
        lua_rawgeti(L, -1, (lua_Integer)s + 1);
        found = lua_rawequal(L, -1, base);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
      INV(found, "pick returned a value that is no eligible member's backend");
    }
  }
  if (m == M_LEN && u && u->core && all_ops == ops_before)
    INV(lua_tointeger(L, base) == (lua_Integer)u->core->n, "#list differs from n");
  if (m == M_STATUS && u && u->core && all_ops == ops_before && (!into || checkable))
    INV(lua_rawlen(L, base) == u->core->n, "status() length differs from n");
  if (m == M_STATUS && into && lua_type(L, into) == LUA_TTABLE)
    INV(lua_rawequal(L, base, into), "status(into) did not return into");
  if (m == M_STATUS && checkable && u && u->core && all_ops == ops_before) {
    uint32_t p;
    const int32_t *ord = ul_order(u->core);
    for (p = 0; p < u->core->n; p++) {
      INV(lua_rawgeti(L, base, (lua_Integer)p + 1) == LUA_TTABLE, "status(into) row %u", p + 1);
      check_row(L, u, self, lua_gettop(L), ord[p]);
      lua_pop(L, 1);
    }
  }
  if (m == M_STATUS_OF && u && u->core && all_ops == ops_before && !lua_isnil(L, base)) {
    int32_t s;
    INV(lua_type(L, base) == LUA_TTABLE, "status_of returned a %s", luaL_typename(L, base));
    if (into && lua_type(L, into) == LUA_TTABLE)
      INV(lua_rawequal(L, base, into), "status_of(b, into) did not return into");
    lua_getiuservalue(L, self, LU_UV_INDEX);
    lua_pushvalue(L, arg);
    s = lua_rawget(L, -2) == LUA_TNUMBER ? (int32_t)lua_tointeger(L, -1) : -1;
    lua_pop(L, 2);
    INV(s >= 0, "status_of returned a row for a backend that is not a member");
    check_row(L, u, self, base, s);
  }
}

/* A call on the list in slot forced.slot from its on_change (fz_on_change):
 * 0 reconcile, 1 shutdown, 2 status(into), 3 status_of(b), 4 up(b),
 * 5 down(b), 6 metrics{ list and others }, 7 step(). */
static void op_target(lua_State *L) {
  static const char *const names[] = {"reconcile", "shutdown", "status", "status_of",
                                      "up", "down", "metrics", "step"};
  int which = forced.which, self, nargs = 0, ck;
  if (avoid_known && restricted && which == 0) which = 2;
  push_list(L, forced.slot);
  self = lua_gettop(L);
  if (trace)
    fprintf(stderr, "@%-4zu%*s[%s] list%d:%s from its on_change\n", in_size - in_n, 2 * depth, "",
            ctx_names[cur_ctx], forced.slot % MAX_LISTS + 1, names[which]);
  if (which == 6) {
    push_R(L, R_MODULE);
    lua_getfield(L, -1, "metrics");
    lua_remove(L, -2);
    gen_lists(L, self);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK)
      INV(lua_type(L, -1) == LUA_TSTRING, "metrics returned a %s", luaL_typename(L, -1));
    else
      INV(lua_type(L, -1) == LUA_TSTRING, "metrics raised a %s", luaL_typename(L, -1));
    return;
  }
  push_R(L, R_METHODS);
  lua_getfield(L, -1, names[which]);
  lua_remove(L, -2);
  lua_pushvalue(L, self);
  switch (which) {
    case 0:
      gen_backends(L, 1);
      nargs = 1;
      break;
    case 2:
      if (b8() & 1) {
        gen_into(L, &ck);
        nargs = 1;
      }
      break;
    case 3: case 4: case 5:
      push_R(L, R_F);
      lua_rawgeti(L, -1, R_ARG);
      lua_remove(L, -2);
      nargs = 1;
      break;
    default: break;
  }
  lua_call(L, nargs + 1, 0);
}

static void op_new(lua_State *L) {
  int slot = b8() % MAX_LISTS, opts, saved_slot = new_slot;
  push_R(L, R_MODULE);
  lua_getfield(L, -1, "new");
  lua_remove(L, -2);
  if (b8() < 250) gen_backends(L, 1);
  else gen_value(L, 1);
  new_slot = slot;
  gen_opts(L, 1);
  new_slot = saved_slot;
  opts = lua_gettop(L);
  /* may it be driven by run/wait_initial? only with a fake clock and sleep */
  {
    int safe = 0;
    if (lua_type(L, opts) == LUA_TTABLE) {
      lua_pushliteral(L, "clock");
      safe = lua_rawget(L, opts) == LUA_TFUNCTION;
      lua_pushliteral(L, "sleep");
      safe = safe && lua_rawget(L, opts) == LUA_TFUNCTION;
      lua_pop(L, 2);
    }
    lua_pushboolean(L, safe);
    lua_insert(L, opts - 2);
  }
  if (trace)
    fprintf(stderr, "@%-4zu%*s[%s] new -> list%d\n", in_size - in_n, 2 * depth, "", ctx_names[cur_ctx], slot + 1);
  lua_call(L, 2, 1);
  if (trace) {
    lu_list *t = as_list(L, -1);
    if (t && t->core) {
      const ul_opts *q = &t->core->opts;
      fprintf(stderr, "%*s  -> list: n %u checked %u, strategy %d interval %.17g timeout %.17g "
              "jitter %.17g slow_start %.17g panic %.17g tiers %d..%d, fake clock+sleep %d\n",
              2 * depth, "", t->core->n, t->core->checked, q->strategy, q->interval,
              q->timeout, q->jitter, q->slow_start, q->panic, q->tier_min, q->tier_max,
              lua_toboolean(L, -2));
    } else {
      fprintf(stderr, "%*s  -> %s\n", 2 * depth, "", luaL_typename(L, -1));
    }
  }
  if (as_list(L, -1)) {
    push_R(L, R_FLAGS);
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -4);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    push_R(L, R_LISTS);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, slot + 1);
  }
}

/* The FFI entry point on a list: no Lua runs, so the result must be an
 * eligible member's slot, -1 exactly when none is eligible, or -2. */
static void op_ffi(lua_State *L) {
  lu_list *u;
  unsigned char elig[512];
  uint32_t ver = 0, k = 0;
  int32_t s;
  char key[8];
  size_t len = b8() % sizeof key, i;
  push_list(L, b8());
  u = as_list(L, -1);
  if (!u) return;
  for (i = 0; i < len; i++) key[i] = (char)b8();
  if (u->core && u->core->cap <= sizeof elig) k = inv_eligibility(u->core, elig);
  else if (u->core) return;
  s = upstream_ffi_pick(u, b8() < 200 ? key : NULL, len, &ver);
  INV(ver == u->version, "ffi pick: version %u, list %u", ver, u->version);
  if (s == -2) return;
  if (k == 0) INV(s == -1, "ffi pick returned %d with nothing eligible", s);
  else INV(s >= 0 && elig[s], "ffi pick returned %d, not eligible", s);
}

static void op_gc(lua_State *L) {
  switch (b8() % 8) {
    case 0: lua_gc(L, LUA_GCCOLLECT); break;
    case 1: lua_gc(L, LUA_GCSTEP, (int)(b8() % 64)); break;
    case 2: /* generational; minor collections (which run pending finalizers)
             * after as little as 1% more memory */
      lua_gc(L, LUA_GCGEN, 1 + (int)(b8() % 20), 0);
      break;
    case 3: lua_gc(L, LUA_GCINC, 0, 0, 0); break;
    case 4: lua_gc(L, LUA_GCINC, 1, 1000, 0); break; /* collect all the time */
    case 5: { /* garbage with finalizers, to be run at some later allocation */
      int n = 1 + b8() % 64, i;
      for (i = 0; i < n; i++) {
        new_backend_obj(L, b8() & 1, -1);
        lua_pop(L, 1);
      }
      break;
    }
    case 6: lua_gc(L, LUA_GCSTOP); break;
    default: lua_gc(L, LUA_GCRESTART); break;
  }
}

static int op_thunk(lua_State *L);

static void do_op(lua_State *L) {
  uint8_t op;
  if (forced.active) {
    forced.active = 0;
    op_target(L);
    return;
  }
  op = b8();
  if (trace && (op % 16 == 9 || op % 16 == 10 || op % 16 == 11 || op % 16 == 13 || op % 16 == 14))
    fprintf(stderr, "@%-4zu%*s[%s] op %s\n", in_size - in_n, 2 * depth, "", ctx_names[cur_ctx],
            op % 16 == 9 ? "clock" : op % 16 == 10 ? "gc" : op % 16 == 11 ? "drop list"
            : op % 16 == 13 ? "ffi pick" : "sleep/coroutine");
  switch (op % 16) {
    case 0: case 1: op_new(L); break;
    case 2: case 3: case 4: case 5: case 6: case 7: case 8: op_method(L); break;
    case 9: { /* the fake clock */
      static const double d[] = {0, 0.001, 0.05, 0.1, 0.5, 1, 2, 10, 100, 1e6, -1, 1e300};
      uint8_t k = b8();
      if (k == 255 && !avoid_known) fz_now = HUGE_VAL;
      else if (k == 254) fz_now = clock_ok(-fz_now) ? -fz_now : fz_now;
      else {
        double t = fz_now + d[k % (sizeof d / sizeof d[0])];
        if (clock_ok(t)) fz_now = t;
      }
      break;
    }
    case 10: op_gc(L); break;
    case 11: { /* drop a list (its __gc shuts it down when collected) */
      push_R(L, R_LISTS);
      lua_pushnil(L);
      lua_rawseti(L, -2, 1 + b8() % MAX_LISTS);
      break;
    }
    case 12: { /* a new pool value */
      push_R(L, R_POOL);
      gen_value(L, 1);
      lua_rawseti(L, -2, 1 + b8() % POOL);
      break;
    }
    case 13: op_ffi(L); break;
    case 14: { /* upstream.sleep outside a check, or a call in a coroutine */
      if (b8() < 64) {
        push_R(L, R_MODULE);
        lua_getfield(L, -1, "sleep");
        push_number(L);
        lua_call(L, 1, 0);
      } else {
        lua_State *co = lua_newthread(L);
        int nres, i, st = LUA_YIELD;
        for (i = 0; i < 3 && st == LUA_YIELD; i++) {
          if (i == 0) lua_pushcfunction(co, op_thunk);
          st = lua_resume(co, L, 0, &nres);
          if (st == LUA_YIELD) lua_pop(co, nres);
        }
      }
      break;
    }
    default: /* failing allocations from the next allocation on, for this call */
      if (depth == 1 && alloc_countdown < 0) alloc_countdown = (long)b16() % 2000;
      op_method(L);
      break;
  }
}

static int op_thunk(lua_State *L) {
  do_op(L);
  return 0;
}

static void run_op(lua_State *L, int ctx) {
  int saved_ctx = cur_ctx;
  if (closing || exhausted || depth >= MAX_DEPTH || all_ops >= MAX_ALL) return;
  if (!lua_checkstack(L, 40)) return;
  cur_ctx = ctx;
  if (ctx == CTX_TOP) {
    top_ops++;
    same_clock = 0; /* a hang is a loop within one call */
  }
  all_ops++;
  depth++;
  lua_pushcfunction(L, op_thunk);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    if (trace)
      fprintf(stderr, "%*s  -> error: %s\n", 2 * depth, "",
              lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  depth--;
  cur_ctx = saved_ctx;
  if (depth == 0) {
    alloc_countdown = -1;
    alloc_failing = 0;
  }
  fz_check_lists(L);
}

/* ---- setup and one run ------------------------------------------------------ */

static int setup(lua_State *L) {
  static const luaL_Reg F_fns[] = {{"byte", F_byte}, {"num", F_num},     {"val", F_val},
                                   {"call", F_call}, {"now", F_now},     {"closer", F_closer},
                                   {"clock", fz_clock}, {"sleep", fz_sleep}, {NULL, NULL}};
  int R, i;
  luaL_openlibs(L);
  lua_newtable(L);
  R = lua_gettop(L);
  lua_pushvalue(L, R);
  R_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  luaL_requiref(L, "upstream", luaopen_upstream, 1);
  lua_rawseti(L, R, R_MODULE);
  luaL_getmetatable(L, LU_LIST);
  lua_getfield(L, -1, "__index");
  lua_rawseti(L, R, R_METHODS);
  lua_rawseti(L, R, R_LISTMT);

  lua_newtable(L); /* F */
  luaL_setfuncs(L, F_fns, 0);
  lua_pushboolean(L, avoid_known);
  lua_setfield(L, -2, "avoid");
  lua_pushvalue(L, -1);
  lua_rawseti(L, R, R_F);
  if (luaL_loadbuffer(L, PRELUDE, sizeof PRELUDE - 1, "=prelude") != LUA_OK) lua_error(L);
  lua_insert(L, -2);
  lua_rawgeti(L, R, R_MODULE);
  lua_call(L, 2, 1);
  lua_rawseti(L, R, R_CHECK);

  /* metatables of backends: userdata and tables with __index, __gc,
   * __tostring; closers with __close */
  for (i = 0; i < 2; i++) {
    lua_newtable(L);
    lua_pushcfunction(L, fz_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, fz_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, fz_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_rawseti(L, R, i ? R_MT_T : R_MT_UD);
  }
  lua_newtable(L);
  lua_pushcfunction(L, fz_close);
  lua_setfield(L, -2, "__close");
  lua_rawseti(L, R, R_MT_CLOSE);

  lua_newtable(L);
  lua_rawseti(L, R, R_LISTS);
  lua_newtable(L);
  lua_rawseti(L, R, R_JOBS);
  lua_newtable(L); /* flags: weak keys, so dropped lists are collected */
  lua_newtable(L);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawseti(L, R, R_FLAGS);

  /* the pool: strings, numbers (1 and 1.0 are one backend), objects */
  lua_createtable(L, POOL, 0);
  for (i = 1; i <= POOL; i++) {
    switch (i) {
      case 1: lua_pushliteral(L, "a"); break;
      case 2: lua_pushliteral(L, "b"); break;
      case 3: lua_pushliteral(L, "c"); break;
      case 4: lua_pushliteral(L, "10.0.0.1:80"); break;
      case 5: lua_pushinteger(L, 1); break;
      case 6: lua_pushnumber(L, 1.0); break;
      case 7: lua_pushnumber(L, 2.5); break;
      case 8: lua_pushboolean(L, 1); break;
      case 9: case 10: new_backend_obj(L, 0, i == 9); break;
      case 11: case 12: new_backend_obj(L, 1, 0); break;
      case 13: lua_rawgeti(L, R, R_CHECK); break;
      case 14: lua_pushboolean(L, 0); break;
      case 15: lua_newtable(L); break;
      default: lua_pushinteger(L, 0); break;
    }
    lua_rawseti(L, -2, i);
  }
  lua_rawseti(L, R, R_POOL);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L;
  in_p = data;
  in_n = in_size = size;
  closing = exhausted = 0;
  depth = restricted = 0;
  top_ops = all_ops = 0;
  fz_now = 0;
  last_clock = NAN;
  same_clock = clock_calls = hook_ticks = 0;
  alloc_countdown = -1;
  alloc_failing = alloc_failed = 0;
  forced.active = 0;
  new_slot = -1;
  mem_used = 0;
  wall_start = lu_mono_now();
  L = lua_newstate(fz_alloc, NULL);
  if (!L) return 0;
  lua_pushcfunction(L, setup);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    fprintf(stderr, "setup failed: %s\n", lua_tostring(L, -1));
    abort();
  }
  switch (b8() % 4) {
    case 0: fz_now = 0; break;
    case 1: fz_now = 1000; break;
    case 2: fz_now = -50; break;
    default: fz_now = (double)b32(); break;
  }
  if (!clock_ok(fz_now)) fz_now = 1e9;
  lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_EVERY);
  while (in_n > 0 && top_ops < MAX_TOP && all_ops < MAX_ALL && !exhausted) {
    run_op(L, CTX_TOP);
    lua_settop(L, 0);
  }
  /* close: finalizers and __close handlers run, doing nothing more */
  closing = 1;
  alloc_countdown = -1;
  alloc_failing = 0;
  exhausted = 0;
  lua_sethook(L, NULL, 0, 0);
  lua_close(L);
  return 0;
}
