/*
 * spec/fuzz/core_fuzz.c - libFuzzer harness of the C core (src/core/).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined,float-cast-overflow \
 *       -Isrc src/core/[*].c spec/fuzz/core_fuzz.c -lm  (see run.sh)
 *
 * The input decodes into options (every strategy, tiers, panic, slow start,
 * jitter, scores and deltas, often degenerate; inputs whose options
 * ul_opts_validate refuses are skipped) and a sequence of operations on one
 * list: append, remove, grow, pick, up, down, set_weight, release, collect,
 * take, sleep, report, shutdown, and a clock that moves forward or stands
 * still. After every operation the block is checked (invariants.h) and the
 * operation's result against a model kept here:
 *  - pick: -1 exactly when the documented rule leaves nothing eligible,
 *    else an eligible member; round_robin's next member, least_conn's
 *    fewest in flight (exact up to 16), weighted: nginx's smooth weighted
 *    round robin replayed on absolute current weights, hash: the same key
 *    twice gives the same member;
 *  - up/down/report: every member of the ring moves by the delta, clamped;
 *  - the scheduler: one running check per slot, fresh generations,
 *    reports/sleeps accepted exactly for the current check, start and
 *    deadline times, the next start after a report, timeouts at deadlines.
 *
 * Environment: UPSTREAM_FUZZ_AVOID_KNOWN=1 steers away from the known
 * slow-start NaN (slow_start so small that a ramp step is 0 s, a clock at
 * infinity with slow start on), to look for other bugs while that one is
 * open. UPSTREAM_FUZZ_TRACE=1 prints the options and each operation.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/pick.h" /* ulp_ws_sync: the period of a shared weighted list */
#include "invariants.h"
#include "harness.h" /* avoid_known, trace, LLVMFuzzerInitialize */

/* UBSan reports (float-cast-overflow among them) stop the run: a report
 * that only prints would be lost among libFuzzer's output. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) {
  return "halt_on_error=1:print_stacktrace=1";
}

#define MAX_CAP 4200 /* > 64 x 64: every level of the pick bitmaps */
#define MAX_GROW_CAP 300
#define MAX_OPS 1500
#define MAX_BURST 64
#define MAX_JOBS 32

static const char *const op_names[] = {
    "append", "append", "append many", "remove", "grow", "pick", "picks", "up", "down",
    "set_weight", "release", "collect", "take", "collect + take all", "sleep", "report",
    "shutdown?", "clock", "clock", "misc"};

/* ---- input ----------------------------------------------------------------- */

typedef struct rd {
  const uint8_t *p;
  size_t n;
} rd;

static uint8_t u8(rd *r) {
  if (!r->n) return 0;
  r->n--;
  return *r->p++;
}
static uint32_t u16(rd *r) { return (uint32_t)u8(r) | (uint32_t)u8(r) << 8; }
static uint32_t u32(rd *r) { return u16(r) | u16(r) << 16; }
static uint64_t u64(rd *r) { return (uint64_t)u32(r) | (uint64_t)u32(r) << 32; }
static double raw_double(rd *r) {
  uint64_t b = u64(r);
  double d;
  memcpy(&d, &b, sizeof d);
  return d;
}

/* A positive duration: usual, tiny, denormal, huge, or any bit pattern. */
static double pos_value(rd *r) {
  static const double v[] = {1,     0.1,     0.5,  0.01,   1e-6, 2,      10,
                             0.001, 1e-300,  5e-324, 1e300, DBL_MAX, 3, 0.25,
                             1e9,   1e-9};
  uint8_t b = u8(r);
  if (b == 255) return raw_double(r);
  return v[b % (sizeof v / sizeof v[0])];
}

static double unit_value(rd *r) { /* in [0, 1] mostly */
  static const double v[] = {0, 0, 0.5, 1, 0.25, 0.75, 1e-300, 5e-324, 0.999999};
  uint8_t b = u8(r);
  if (b == 255) return raw_double(r);
  if (b >= 200) return (b - 200) / 54.0;
  return v[b % (sizeof v / sizeof v[0])];
}

static double slow_start_value(rd *r) {
  static const double v[] = {0,   0,    0,    0.5,   1,      10,     0.01,
                             1e-9, 5e-324, 1e-320, 1e-300, 1e300, DBL_MAX, 2e-323};
  uint8_t b = u8(r);
  double d = b == 255 ? raw_double(r) : v[b % (sizeof v / sizeof v[0])];
  if (avoid_known && d > 0 && !(d >= 1e-6)) d = 0.5;
  return d;
}

static int decode_opts(rd *r, ul_opts *o) {
  static const double lows[] = {-3, 0, -1, -1e-300, -DBL_MAX, -0.5, -1e308, -5e-324, -10};
  static const double highs[] = {3, 0, 1, DBL_MAX, 0.5, 1e-300, 1e308, 5e-324, 10};
  static const double deltas[] = {1, 0.5, DBL_MAX, 1e-300, 5e-324, 3, 1e300, 0.1, 2};
  const char *field;
  uint8_t f;
  ul_opts_default(o);
  o->strategy = u8(r) % 5;
  f = u8(r);
  if (f & 1) {
    int mn = u8(r) % (UL_MAX_TIER + 1);
    int mx = mn + u8(r) % (UL_MAX_TIER + 1 - mn);
    o->tier_min = mn;
    o->tier_max = mx;
    o->tier_init = mn + u8(r) % (mx - mn + 1);
  }
  if (f & 2) o->panic = unit_value(r);
  if (f & 4) o->slow_start = slow_start_value(r);
  if (f & 8) o->jitter = unit_value(r);
  if (f & 16) {
    o->interval = pos_value(r);
    o->timeout = pos_value(r);
  }
  if (f & 32) {
    uint8_t b = u8(r);
    o->low_score = b == 255 ? raw_double(r) : lows[b % 9];
    b = u8(r);
    o->high_score = b == 255 ? raw_double(r) : highs[b % 9];
    b = u8(r);
    switch (b % 6) {
      case 0: o->initial_score = o->low_score; break;
      case 1: o->initial_score = o->high_score; break;
      case 2: o->initial_score = 0; break;
      case 3: o->initial_score = -0.0; break;
      case 4: o->initial_score = o->low_score / 2 + o->high_score / 2; break;
      default: o->initial_score = raw_double(r); break;
    }
  }
  if (f & 64) {
    uint8_t b = u8(r);
    o->fail_delta = b == 255 ? raw_double(r) : -deltas[b % 9];
    b = u8(r);
    o->success_delta = b == 255 ? raw_double(r) : deltas[b % 9];
  }
  if (f & 128) { /* degenerate: one field from raw bits */
    double d = raw_double(r);
    switch (u8(r) % 6) {
      case 0: o->panic = d; break;
      case 1: o->slow_start = d; break;
      case 2: o->jitter = d; break;
      case 3: o->interval = d; break;
      case 4: o->timeout = d; break;
      default: o->initial_score = d; break;
    }
    if (avoid_known && o->slow_start > 0 && !(o->slow_start >= 1e-6)) o->slow_start = 1;
  }
  return ul_opts_validate(o, &field) == NULL;
}

/* ---- the model ------------------------------------------------------------- */

typedef struct fz {
  ul_list *l;
  double now;
  uint64_t last_gen;          /* greatest generation handed out */
  uint64_t run_gen[MAX_CAP];  /* running check of a slot (0: none) */
  int sleep_req[MAX_CAP];     /* ul_sleep accepted since the last resume */
  int64_t wcur[MAX_CAP];      /* weighted: absolute current weight */
  struct { int32_t slot; uint64_t gen; } jobs[MAX_JOBS]; /* recent checks */
  unsigned njobs, jobs_at;
  unsigned char scratch[3 * MAX_CAP + 8];
  unsigned char elig[MAX_CAP];
  int shared; /* a shared weighted list's block: lock-free picks on, every
                 operation a write section (the period: weighted.c) */
} fz;

static ul_node *ND(const fz *z) { return ul_nodes(z->l); }

static void check_all(fz *z) { inv_check(z->l, z->scratch); }

static int32_t member_at(fz *z, rd *r) {
  if (z->l->n == 0) return -1;
  return ul_order(z->l)[u16(r) % z->l->n];
}

static void remember_job(fz *z, int32_t s, uint64_t gen) {
  z->jobs[z->jobs_at].slot = s;
  z->jobs[z->jobs_at].gen = gen;
  z->jobs_at = (z->jobs_at + 1) % MAX_JOBS;
  if (z->njobs < MAX_JOBS) z->njobs++;
}

static int model_current(const fz *z, int32_t s, uint64_t gen) {
  if (z->l->shut || s < 0 || (uint32_t)s >= z->l->cap) return 0;
  return gen != 0 && z->run_gen[s] == gen;
}

static double time_delta(rd *r, const ul_opts *o) {
  uint8_t b = u8(r);
  switch (b % 24) {
    case 0: case 1: case 2: return 0; /* standing still */
    case 3: return 1e-9;
    case 4: return 1e-3;
    case 5: return 0.05;
    case 6: return 0.1;
    case 7: return 0.5;
    case 8: return 1;
    case 9: return 2;
    case 10: return 10;
    case 11: return 1000;
    case 12: return 1e9;
    case 13: return o->interval;
    case 14: return o->timeout;
    case 15: return o->interval * (1 + u8(r) % 4);
    case 16: return o->slow_start / UL_RAMP_STEPS;
    case 17: return o->slow_start;
    case 18: return (u8(r) + 1) * 1e-4;
    case 19: return 1e300;
    case 20: return INFINITY;
    default: return u8(r) * 0.01;
  }
}

/* Avoiding the known NaN ramp: no infinite clock while slow start is on. */
static int time_ok(const fz *z, double t) {
  return !avoid_known || isfinite(t) || z->l->opts.slow_start == 0;
}

/* The core's rules for degenerate times (src/core/sched.c, heap.h): a
 * reading that is not finite is ignored, so a call at z->now runs at the
 * last collect's time; and a check's next start or deadline is strictly
 * later than its start (the next double when d is too small for t's
 * magnitude), inf (never) only when t + d overflows. A clock that jumped to
 * inf must not push every check to "never": the list's time stands. */
static double list_time(const fz *z) {
  return isfinite(z->now) ? z->now : z->l->now;
}

static double later(double t, double d) {
  double at = t + d;
  return at > t ? at : nextafter(t, INFINITY);
}

static void advance(fz *z, rd *r) {
  double d = time_delta(r, &z->l->opts), t = z->now + d;
  if (!time_ok(z, t)) return;
  if (t >= z->now) z->now = t; /* forward only */
}

/* ---- checks of one operation ----------------------------------------------- */

static double up_v(const ul_opts *o, double v) {
  v += o->success_delta;
  return v > o->high_score ? o->high_score : v;
}
static double down_v(const ul_opts *o, double v) {
  v += o->fail_delta;
  return v < o->low_score ? o->low_score : v;
}

/* Scores (and tiers) of slot s's ring before a move, to compare after. */
typedef struct ring_snap {
  int32_t slot[MAX_CAP];
  double score[MAX_CAP];
  unsigned n;
} ring_snap;

static void snap_ring(fz *z, int32_t s, ring_snap *rs) {
  int32_t t = s;
  rs->n = 0;
  do {
    INV(rs->n < z->l->cap, "ring of slot %d longer than cap", s);
    rs->slot[rs->n] = t;
    rs->score[rs->n++] = ND(z)[t].score;
    t = ND(z)[t].dup;
  } while (t != s);
}

static void expect_ring(fz *z, const ring_snap *rs, int up, int tier, const char *what) {
  const ul_opts *o = &z->l->opts;
  unsigned i;
  for (i = 0; i < rs->n; i++) {
    const ul_node *x = &ND(z)[rs->slot[i]];
    double want = up ? up_v(o, rs->score[i]) : down_v(o, rs->score[i]);
    INV(x->score == want, "%s: slot %d score %.17g, expected %.17g (was %.17g)", what,
        rs->slot[i], x->score, want, rs->score[i]);
    if (tier >= 0) {
      int t = tier < o->tier_min ? o->tier_min : tier > o->tier_max ? o->tier_max : tier;
      INV(x->tier == t, "%s: slot %d tier %u, expected %d", what, rs->slot[i], x->tier, t);
    }
  }
}

/* The pick against the model. Eligibility is taken before the pick (the
 * pick's own slow-start tick changes weights, never eligibility). */
static int32_t do_pick(fz *z, uint64_t key) {
  ul_list *l = z->l;
  ul_node *nd = ND(z);
  const int32_t *ord = ul_order(l);
  uint32_t k = inv_eligibility(l, z->elig), p, n = l->n, start;
  int32_t rr = l->rr, s, want = -1;
  uint32_t inflight_before = 0;
  if (n) start = (uint32_t)(((int64_t)rr + 1) % (int64_t)n);
  else start = 0;
  s = ul_pick(l, key, z->now);
  if (k == 0) {
    INV(s == -1, "pick returned slot %d with nothing eligible", s);
    return s;
  }
  INV(s >= 0 && (uint32_t)s < l->cap, "pick returned %d with %u eligible", s, k);
  INV(nd[s].flags & UL_F_MEMBER, "pick returned slot %d, not a member", s);
  INV(z->elig[s], "pick returned slot %d, not eligible (score %.17g tier %u)", s,
      nd[s].score, nd[s].tier);
  INV(l->rr == nd[s].pos, "rr %d after picking position %d", l->rr, nd[s].pos);
  switch (l->opts.strategy) {
    case UL_ROUND_ROBIN:
      for (p = 0; p < n && want < 0; p++)
        if (z->elig[ord[(start + p) % n]]) want = ord[(start + p) % n];
      INV(s == want, "round_robin picked slot %d, the next eligible after rr %d is %d", s,
          rr, want);
      break;
    case UL_LEAST_CONN:
      inflight_before = nd[s].inflight - 1;
      if (k <= UL_LEAST_CONN_EXACT) {
        uint32_t best = UINT32_MAX;
        for (p = 0; p < n; p++) {
          int32_t t = ord[(start + p) % n];
          uint32_t c = t == s ? inflight_before : nd[t].inflight;
          if (z->elig[t] && c < best) {
            best = c;
            want = t;
          }
        }
        INV(s == want, "least_conn picked slot %d (%u in flight), expected %d (%u)", s,
            inflight_before, want, best);
      }
      break;
    case UL_WEIGHTED: {
      /* nginx: every eligible current weight grows by its effective
       * weight, the greatest (first on ties) is picked and loses the
       * total. Effective weights are those after the pick's ramp tick. */
      int64_t total = 0, best = 0;
      for (p = 0; p < n; p++) {
        int32_t t = ord[p];
        if (!z->elig[t]) continue;
        z->wcur[t] += nd[t].ew;
        total += nd[t].ew;
        if (want < 0 || z->wcur[t] > best) {
          best = z->wcur[t];
          want = t;
        }
      }
      INV(s == want, "weighted picked slot %d, nginx's algorithm picks %d", s, want);
      z->wcur[want] -= total;
      break;
    }
    default: break;
  }
  return s;
}

/* Absolute current weights of the core against the model. */
static void check_wcur(fz *z) {
  const ul_list *l = z->l;
  const ul_node *nd = ND(z);
  uint32_t s;
  if (z->shared) ulp_ws_sync(z->l); /* the nodes up to the period's index */
  for (s = 0; s < l->cap; s++) {
    int64_t c;
    if (!(nd[s].flags & UL_F_MEMBER)) continue;
    if (l->lazy && l->opts.strategy == UL_WEIGHTED) { /* its tree's count: weighted.c */
      uint32_t k = nd[s].cls == UL_CLS_DOWN ? l->kst_ntree - 1
                                            : (uint32_t)(nd[s].cls - l->opts.tier_min);
      INV(k < l->kst_ntree, "slot %u class %u: no tree", s, nd[s].cls);
      /* the count: t - kst_c[k] while it advances (the tree read, or all
       * in panic), else kst_c[k] */
      c = nd[s].cur + nd[s].ew * (l->kst_mode == 2 || k == l->kst_pick ? l->t - l->kst_c[k]
                                                                       : l->kst_c[k]);
    } else {
      c = ul_eligible(l, (int32_t)s) ? nd[s].cur + nd[s].ew * l->t : nd[s].cur;
    }
    INV(c == z->wcur[s], "slot %u current weight %lld, model %lld", s, (long long)c,
        (long long)z->wcur[s]);
  }
}

/* ---- operations ------------------------------------------------------------ */

static void op_append(fz *z, rd *r, unsigned salt) {
  uint8_t f = u8(r);
  int checked = f & 1, ramp = (f >> 1) & 1;
  int32_t dup = -1, s;
  double now;
  uint32_t w;
  uint64_t hash;
  uint8_t wb = u8(r);
  w = wb < 128 ? 1 : wb < 200 ? 1 + wb % 10 : wb < 250 ? 1 + u32(r) % UL_MAX_WEIGHT
                                                       : UL_MAX_WEIGHT;
  hash = u64(r) ^ (salt * 0x9E3779B97F4A7C15ULL);
  if ((f & 4) && z->l->n) {
    dup = member_at(z, r);
    if (salt) dup = ul_order(z->l)[(uint32_t)(dup >= 0 ? ND(z)[dup].pos : 0) * 7u % z->l->n];
    hash = ND(z)[dup].hash; /* equal backends hash alike */
  }
  now = list_time(z);
  s = ul_append(z->l, checked, dup, z->now, w, hash, ramp);
  if (z->l->n == z->l->cap && s < 0) return;
  INV(s >= 0, "append failed with n %u < cap %u", z->l->n, z->l->cap);
  {
    const ul_node *x = &ND(z)[s];
    const ul_opts *o = &z->l->opts;
    INV(x->score == o->initial_score && x->weight == w && x->hash == hash &&
            x->tier == o->tier_init && x->checks == 0 && x->inflight == 0,
        "appended slot %d not fresh", s);
    INV(ul_order(z->l)[z->l->n - 1] == s, "appended slot %d not last in order", s);
    if (checked && !z->l->shut) {
      if (o->jitter == 0)
        INV(x->next == now, "first check of slot %d at %.17g, expected now %.17g", s,
            x->next, now);
      else
        INV(x->next >= now && x->next <= now + o->interval,
            "first check of slot %d at %.17g outside [now, now + interval]", s, x->next);
    }
    if (dup >= 0) {
      int32_t t = dup;
      unsigned i = 0;
      while (t != s) {
        t = ND(z)[t].dup;
        INV(++i <= z->l->cap, "slot %d did not join the ring of %d", s, dup);
      }
    }
  }
  z->run_gen[s] = 0;
  z->sleep_req[s] = 0;
  z->wcur[s] = 0;
}

static void op_remove(fz *z, rd *r) {
  unsigned char drop[MAX_CAP];
  uint32_t p, cap = z->l->cap, keep_n = 0, want_n;
  int32_t keep[MAX_CAP];
  uint8_t mode = u8(r);
  memset(drop, 0, sizeof drop);
  for (p = 0; p < z->l->n; p++) {
    int32_t s = ul_order(z->l)[p];
    if (mode == 0 || (mode == 1 ? 1 : (u8(r) & 3) == 0)) drop[s] = 1;
  }
  if (mode == 0) memset(drop, 0, sizeof drop); /* drop nothing */
  /* equal backends (dup rings) go together */
  for (p = 0; p < z->l->n; p++) {
    int32_t s = ul_order(z->l)[p], t;
    if (!drop[s]) continue;
    for (t = ND(z)[s].dup; t != s; t = ND(z)[t].dup) drop[t] = 1;
  }
  for (p = 0; p < z->l->n; p++)
    if (!drop[ul_order(z->l)[p]]) keep[keep_n++] = ul_order(z->l)[p];
  want_n = keep_n;
  ul_remove(z->l, drop);
  INV(z->l->n == want_n, "remove kept %u members, expected %u", z->l->n, want_n);
  for (p = 0; p < want_n; p++)
    INV(ul_order(z->l)[p] == keep[p], "remove reordered: position %u holds %d, expected %d",
        p, ul_order(z->l)[p], keep[p]);
  for (p = 0; p < cap; p++)
    if (drop[p]) {
      INV(!(ND(z)[p].flags & UL_F_MEMBER), "dropped slot %u still a member", p);
      z->run_gen[p] = 0;
      z->sleep_req[p] = 0;
    }
}

static int op_grow(fz *z, rd *r) {
  uint32_t cap = z->l->cap + 1 + u8(r) % 32, old = z->l->cap;
  size_t sz;
  ul_list *nl;
  ul_node *before;
  if (cap > MAX_GROW_CAP) return 1;
  sz = ul_grow_size(z->l, cap);
  INV(sz > 0, "ul_grow_size(%u) = 0", cap);
  nl = (ul_list *)malloc(sz);
  if (!nl) return 0;
  if (z->shared) ulp_ws_sync(z->l); /* the copy takes the nodes' state */
  ul_grow(nl, cap, z->l);
  nl->lockfree = z->l->lockfree;
  before = ND(z);
  {
    uint32_t i;
    for (i = 0; i < old; i++) /* members as they were; free slots relink */
      if (before[i].flags & UL_F_MEMBER)
        INV(memcmp(&ul_nodes(nl)[i], &before[i], sizeof(ul_node)) == 0,
            "grow changed member slot %u", i);
  }
  INV(nl->n == z->l->n && nl->cap == cap && nl->rr == z->l->rr, "grow lost n, cap or rr");
  INV(memcmp(ul_order(nl), ul_order(z->l), (size_t)z->l->n * sizeof(int32_t)) == 0,
      "grow changed the order");
  free(z->l);
  z->l = nl;
  return 1;
}

static void op_take(fz *z, unsigned max) {
  unsigned i;
  for (i = 0; i < max; i++) {
    int32_t s = -7;
    uint64_t gen = 0;
    uint32_t ready = z->l->ready_len;
    int ev = ul_take(z->l, &s, &gen);
    if (ev == UL_EV_NONE) {
      INV(z->l->ready_len == 0, "take: none, with %u ready", z->l->ready_len);
      return;
    }
    INV(ready > 0, "take returned an event with an empty ready queue");
    INV(!z->l->shut, "take returned an event after shutdown");
    INV(s >= 0 && (uint32_t)s < z->l->cap && (ND(z)[s].flags & UL_F_MEMBER),
        "take returned slot %d, not a member", s);
    INV(ND(z)[s].flags & UL_F_CHECKED, "take returned passive slot %d", s);
    switch (ev) {
      case UL_EV_START: {
        const ul_node *x = &ND(z)[s];
        INV(z->run_gen[s] == 0, "slot %d started a check while check %llu runs", s,
            (unsigned long long)z->run_gen[s]);
        INV(gen > z->last_gen, "generation %llu not fresh (last %llu)",
            (unsigned long long)gen, (unsigned long long)z->last_gen);
        INV(x->state == UL_RUNNING && x->started == z->l->now &&
                x->deadline == later(z->l->now, z->l->opts.timeout),
            "started slot %d: state %u started %.17g deadline %.17g (now %.17g)", s,
            x->state, x->started, x->deadline, z->l->now);
        z->last_gen = gen;
        z->run_gen[s] = gen;
        z->sleep_req[s] = 0;
        remember_job(z, s, gen);
        break;
      }
      case UL_EV_WAKE:
        INV(z->run_gen[s] == gen && gen, "wake of slot %d gen %llu, running %llu", s,
            (unsigned long long)gen, (unsigned long long)z->run_gen[s]);
        INV(z->sleep_req[s], "wake of slot %d that did not sleep", s);
        INV(ND(z)[s].deadline > z->l->now, "wake of slot %d past its deadline", s);
        z->sleep_req[s] = 0;
        break;
      case UL_EV_TIMEOUT:
        INV(z->run_gen[s] == gen && gen, "timeout of slot %d gen %llu, running %llu", s,
            (unsigned long long)gen, (unsigned long long)z->run_gen[s]);
        INV(ND(z)[s].state == UL_IDLE, "timed-out slot %d still running", s);
        z->run_gen[s] = 0;
        z->sleep_req[s] = 0;
        break;
      default: inv_fail("take returned event kind %d", ev);
    }
  }
}

/* A (slot, gen) to report or sleep with: a recent check, a stale one, or
 * made up (out-of-range slots included). */
static void pick_job(fz *z, rd *r, int32_t *s, uint64_t *gen) {
  uint8_t b = u8(r);
  if (z->njobs && b < 200) {
    unsigned i = (z->jobs_at + MAX_JOBS - 1 - u8(r) % z->njobs) % MAX_JOBS;
    *s = z->jobs[i].slot;
    *gen = z->jobs[i].gen;
    if (b >= 190) *gen += 1; /* a later generation than handed out */
  } else {
    *s = (int32_t)(u16(r) % (MAX_CAP + 8)) - 4;
    *gen = u8(r) < 128 ? z->last_gen : u64(r);
  }
}

static void op_report(fz *z, rd *r) {
  int32_t s;
  uint64_t gen;
  int ok, tier, want, got;
  uint8_t b;
  ring_snap rs;
  pick_job(z, r, &s, &gen);
  b = u8(r);
  ok = b & 1;
  tier = (b >> 1) % 16 < 12 ? -1 : (int)(u8(r) % 14) - 1;
  want = model_current(z, s, gen);
  INV(ul_current(z->l, s, gen) == want, "ul_current(%d, %llu) = %d, model %d", s,
      (unsigned long long)gen, !want, want);
  if (want) snap_ring(z, s, &rs);
  {
    uint32_t checks = want ? ND(z)[s].checks : 0, fails = want ? ND(z)[s].failures : 0;
    double started = want ? ND(z)[s].started : 0, now = list_time(z);
    got = ul_report(z->l, s, gen, ok, z->now, tier);
    INV(got == want, "report(%d, %llu) returned %d, model says %d", s,
        (unsigned long long)gen, got, want);
    if (!got) return;
    expect_ring(z, &rs, ok, tier, "report");
    {
      const ul_node *x = &ND(z)[s];
      const ul_opts *o = &z->l->opts;
      INV(x->checks == checks + 1 && x->failures == fails + !ok,
          "report: slot %d checks %u failures %u", s, x->checks, x->failures);
      INV(x->state == UL_IDLE, "reported slot %d still running", s);
      if (o->jitter == 0) {
        double nx = later(started, o->interval);
        if (nx < now) nx = now;
        INV(x->next == nx, "report: slot %d next check at %.17g, expected %.17g", s,
            x->next, nx);
      } else {
        double lo = started + o->interval * (1 - o->jitter),
               hi = started + o->interval * (1 + o->jitter), eps;
        if (lo < now) lo = now;
        if (hi < now) hi = now;
        eps = 1e-9 * (fabs(lo) + fabs(hi) + o->interval);
        INV(x->next > started,
            "report: slot %d next check at %.17g not after its start %.17g", s, x->next,
            started);
        INV(x->next >= now, "report: slot %d next check at %.17g before now %.17g", s,
            x->next, now);
        if (isfinite(eps)) /* else an infinite clock or interval */
          INV(x->next >= lo - eps && x->next <= hi + eps,
              "report: slot %d next check at %.17g outside [%.17g, %.17g]", s, x->next,
              lo, hi);
      }
    }
  }
  z->run_gen[s] = 0;
  z->sleep_req[s] = 0;
}

static void op_sleep(fz *z, rd *r) {
  int32_t s;
  uint64_t gen;
  double t;
  int want, got;
  pick_job(z, r, &s, &gen);
  t = z->now + time_delta(r, &z->l->opts);
  if (u8(r) == 7) t = z->now - 1; /* in the past */
  if (!time_ok(z, t)) t = z->now;
  want = model_current(z, s, gen);
  got = ul_sleep(z->l, s, gen, t);
  INV(got == want, "sleep(%d, %llu) returned %d, model says %d", s, (unsigned long long)gen,
      got, want);
  if (got) {
    const ul_node *x = &ND(z)[s];
    INV(x->wake == t && (x->flags & UL_F_WAKE), "sleep: slot %d wake not set", s);
    z->sleep_req[s] = 1;
  }
}

static void op_collect(fz *z) {
  /* a reading that is not finite is ignored: the list keeps its time */
  double now = list_time(z);
  uint32_t k = ul_collect(z->l, z->now);
  INV(k == z->l->ready_len, "collect returned %u, ready_len %u", k, z->l->ready_len);
  INV(z->l->now == now, "collect did not set now");
  if (z->l->nheap)
    INV(ND(z)[inv_heap(z->l)[0].slot].key > now,
        "after collect at %.17g an event at %.17g is still in the heap", now,
        ND(z)[inv_heap(z->l)[0].slot].key);
}

static void op_misc(fz *z, rd *r) {
  uint8_t b = u8(r);
  switch (b % 5) {
    case 0: { /* ul_size never overflows quietly */
      uint32_t cap = u32(r);
      int st = u8(r) % 5;
      size_t sz = ul_size(cap, st);
      if (cap == 0) INV(sz == 0, "ul_size(0) = %zu", sz);
      if (sz) INV(sz >= (size_t)cap * sizeof(ul_node), "ul_size(%u) = %zu too small", cap, sz);
      break;
    }
    case 1: {
      double d = raw_double(r);
      int t = ul_latency_tier(d);
      INV(t >= 0 && t <= 5, "latency tier %d", t);
      break;
    }
    case 2: {
      uint8_t buf[64];
      size_t n = u8(r) % 64, i;
      for (i = 0; i < n; i++) buf[i] = u8(r);
      (void)ul_hash(buf, n);
      break;
    }
    case 3: {
      double u = ul_random(z->l);
      INV(u >= 0 && u < 1, "ul_random %.17g", u);
      break;
    }
    default: { /* hash: one key twice in a row gives the same member */
      uint64_t key = u64(r);
      int32_t a = do_pick(z, key), c;
      if (z->l->opts.strategy != UL_HASH) break;
      c = do_pick(z, key);
      INV(a == c, "hash: key %llx picked slot %d, then %d", (unsigned long long)key, a, c);
      break;
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  rd r = {data, size};
  ul_opts o;
  static fz z;
  uint32_t cap;
  unsigned ops;
  uint64_t seed;
  size_t sz;
  if (!decode_opts(&r, &o)) return 0;
  cap = 1 + u8(&r) % 48;
  if (cap == 48 && o.strategy != UL_HASH) cap = 4097 + u8(&r) % 64; /* big */
  seed = u64(&r);
  memset(&z, 0, sizeof z);
  sz = ul_size_opts(cap, &o); /* exact: ASan sees past the layout */
  INV(sz > 0 && sz <= ul_size(cap, o.strategy), "ul_size_opts(%u) = %zu", cap, sz);
  z.l = (ul_list *)malloc(sz);
  if (!z.l) return 0;
  ul_init(z.l, cap, &o, seed);
  if (o.strategy == UL_WEIGHTED && (seed & 1)) z.l->lockfree = z.shared = 1;
  switch (u8(&r) % 4) { /* where the clock starts */
    case 0: z.now = 0; break;
    case 1: z.now = 1e9; break;
    case 2: z.now = -1e6; break;
    default: z.now = (double)u32(&r); break;
  }
  check_all(&z);
  if (trace) {
    const ul_opts *q = &z.l->opts;
    fprintf(stderr, "cap %u strategy %d tiers %d..%d init %d panic %.17g slow_start %.17g "
            "interval %.17g timeout %.17g jitter %.17g scores %.17g [%.17g, %.17g] "
            "deltas %.17g %.17g, clock at %.17g\n", cap, q->strategy, q->tier_min,
            q->tier_max, q->tier_init, q->panic, q->slow_start, q->interval, q->timeout,
            q->jitter, q->initial_score, q->low_score, q->high_score, q->fail_delta,
            q->success_delta, z.now);
  }
  for (ops = 0; ops < MAX_OPS && r.n > 0; ops++) {
    uint8_t op = u8(&r);
    int32_t s;
    if (trace)
      fprintf(stderr, "op %u: %s (n %u, now %.17g)\n", ops, op_names[op % 20], z.l->n, z.now);
    if (z.shared) ul_write_begin(z.l);
    switch (op % 20) {
      case 0: case 1: op_append(&z, &r, 0); break;
      case 2: { /* many at once, to reach large lists quickly */
        unsigned k = 1 + u8(&r) % 64, i;
        rd same = r;
        for (i = 0; i < k && z.l->n < z.l->cap; i++) {
          rd again = same; /* each member decoded from the same bytes */
          op_append(&z, &again, i);
          if (i + 1 == k || z.l->n == z.l->cap) r = again;
          if ((i & 7) == 7) check_all(&z);
        }
        break;
      }
      case 3: op_remove(&z, &r); break;
      case 4: if (!op_grow(&z, &r)) goto out; break;
      case 5: do_pick(&z, u64(&r)); break;
      case 6: { /* a burst of picks */
        unsigned k = 1 + u8(&r) % MAX_BURST, i;
        uint64_t key = u64(&r);
        for (i = 0; i < k; i++) do_pick(&z, key + i * 0x9E3779B97F4A7C15ULL);
        break;
      }
      case 7: case 8: {
        ring_snap rs;
        if ((s = member_at(&z, &r)) < 0) break;
        snap_ring(&z, s, &rs);
        if (op % 20 == 7) ul_up(z.l, s, z.now);
        else ul_down(z.l, s, z.now);
        expect_ring(&z, &rs, op % 20 == 7, -1, op % 20 == 7 ? "up" : "down");
        break;
      }
      case 9: {
        uint8_t b;
        uint32_t w;
        int32_t t;
        if ((s = member_at(&z, &r)) < 0) break;
        b = u8(&r);
        w = b < 100 ? 1 + b % 8 : b < 250 ? 1 + u32(&r) % UL_MAX_WEIGHT : UL_MAX_WEIGHT;
        ul_set_weight(z.l, s, w);
        t = s;
        do {
          INV(ND(&z)[t].weight == w, "set_weight: slot %d weight %u, expected %u", t,
              ND(&z)[t].weight, w);
          t = ND(&z)[t].dup;
        } while (t != s);
        break;
      }
      case 10: {
        uint64_t before = 0, after = 0;
        int32_t t;
        int got;
        if ((s = member_at(&z, &r)) < 0) break;
        t = s;
        do {
          before += ND(&z)[t].inflight;
          t = ND(&z)[t].dup;
        } while (t != s);
        got = ul_release(z.l, s);
        t = s;
        do {
          after += ND(&z)[t].inflight;
          t = ND(&z)[t].dup;
        } while (t != s);
        INV(got == (before > 0) && after == before - (uint64_t)got,
            "release: returned %d, in flight %llu -> %llu", got,
            (unsigned long long)before, (unsigned long long)after);
        break;
      }
      case 11: op_collect(&z); break;
      case 12: op_take(&z, 1); break;
      case 13: /* drain: collect, then take what is ready */
        op_collect(&z);
        op_take(&z, z.l->cap + 2);
        INV(z.l->ready_len == 0, "drain left %u ready", z.l->ready_len);
        break;
      case 14: op_sleep(&z, &r); break;
      case 15: op_report(&z, &r); break;
      case 16:
        if (u8(&r) < 32) {
          ul_shutdown(z.l);
          memset(z.run_gen, 0, sizeof z.run_gen);
          memset(z.sleep_req, 0, sizeof z.sleep_req);
          INV(ul_next_time(z.l) == INFINITY, "events after shutdown");
        }
        break;
      case 17: case 18: advance(&z, &r); break;
      default: op_misc(&z, &r); break;
    }
    if (z.shared) ul_write_end(z.l);
    /* big lists (> 4096 slots, for the bitmaps' upper levels) are
     * recounted every 32 operations, the others after each */
    if (z.l->cap <= 512 || ops % 32 == 0 || r.n == 0) {
      check_all(&z);
      check_wcur(&z);
    }
  }
out:
  free(z.l);
  return 0;
}
