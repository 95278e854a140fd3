/*
 * test_panic.c - lazy eligibility against the eager rewrite. A lazy list
 * (every list but ul_eager's) never rewrites its members' eligibility
 * when the panic state or the lowest healthy tier moves; ul_eager puts a
 * twin list on the old path, which rewrites every member: the reference
 * model. Random sequences of appends (with duplicates), up, down, results
 * with a tier, set_weight, removals (reconcile), grows and picks, with
 * panic thresholds, tiers and slow start on, must give the same pick, the
 * same eligibility of every slot and the same totals on both, for every
 * strategy (weighted's lazy twin keeps a kinetic tree per tier and one for
 * the down, weighted.c). Random and
 * least_conn draw from sets whose order both paths keep by one rule
 * (random.c); hash lists large enough to build their table in slices are
 * run too, so that picks during a build after a flip are compared.
 */
#include "helpers.h"
#include "core/list.h"

typedef struct {
  ul_list *l[2]; /* 0: as built (lazy for round_robin), 1: eager */
  uint32_t cap;
} twin;

static ul_list *twin_new(uint32_t cap, const ul_opts *o, uint64_t seed,
                         int eager) {
  ul_list *l = new_list(cap, o, seed);
  if (eager) ul_eager(l);
  return l;
}

static void twin_same(const twin *w) {
  const ul_list *a = w->l[0], *b = w->l[1];
  uint32_t s;
  assert_int_equal(a->n, b->n);
  assert_int_equal(a->nelig, b->nelig);
  assert_int_equal(a->total_ew, b->total_ew);
  assert_int_equal(a->panic_on, b->panic_on);
  assert_int_equal(a->active_tier, b->active_tier);
  assert_int_equal(a->rr, b->rr);
  assert_true(a->rng == b->rng);
  for (s = 0; s < a->cap; s++) {
    if (ul_eligible(a, (int32_t)s) != ul_eligible(b, (int32_t)s))
      fail_msg("slot %u: eligible %d (lazy) vs %d (eager)", s,
               ul_eligible(a, (int32_t)s), ul_eligible(b, (int32_t)s));
    assert_true(ul_nodes(a)[s].score == ul_nodes(b)[s].score ||
                !(ul_nodes(a)[s].flags & UL_F_MEMBER));
    if (ul_nodes(a)[s].flags & UL_F_MEMBER)
      assert_int_equal(ul_nodes(a)[s].ew, ul_nodes(b)[s].ew);
  }
}

/* A random member's slot, or -1. */
static int32_t any_member(const ul_list *l, prng *r) {
  if (l->n == 0) return -1;
  return ul_order(l)[prng_below(r, l->n)];
}

static void twin_grow(twin *w) {
  uint32_t cap = w->cap * 2, k;
  for (k = 0; k < 2; k++) {
    ul_list *g = xmalloc(ul_grow_size(w->l[k], cap));
    ul_grow(g, cap, w->l[k]);
    xfree(w->l[k]);
    w->l[k] = g;
  }
  w->cap = cap;
}

/* Returns how many picks ran while the lazy twin's hash table was being
 * built in slices, a last table read meanwhile. */
static uint32_t run_sequence(int strategy, uint64_t seed, uint32_t steps,
                             uint32_t min_cap) {
  prng r = {seed};
  ul_opts o;
  twin w;
  double now = 1;
  uint32_t i, k, during = 0;
  static const double panics[] = {0, 0.25, 0.5, 0.75, 1};
  ul_opts_default(&o);
  o.strategy = strategy;
  o.panic = panics[prng_below(&r, 5)];
  o.tier_min = (int)prng_below(&r, 2);
  o.tier_max = o.tier_min + (int)prng_below(&r, 4);
  o.tier_init = o.tier_min + (int)prng_below(&r, (uint32_t)(o.tier_max - o.tier_min + 1));
  o.slow_start = prng_below(&r, 3) == 0 ? 1.0 : 0;
  o.initial_score = prng_below(&r, 2) ? 0 : -1;
  w.cap = min_cap + prng_below(&r, 40);
  w.l[0] = twin_new(w.cap, &o, seed, 0);
  w.l[1] = twin_new(w.cap, &o, seed, 1);
  assert_true(w.l[0]->lazy);
  assert_false(w.l[1]->lazy);
  for (i = 0; i < steps; i++) {
    uint32_t op = prng_below(&r, 100);
    int32_t s = any_member(w.l[0], &r);
    now += prng_unit(&r) * 0.3;
    if (op < 12 || s < 0) { /* append, sometimes an equal backend */
      int32_t dup = s >= 0 && prng_below(&r, 4) == 0 ? s : -1;
      uint32_t wt = 1 + prng_below(&r, 5);
      uint64_t h = prng_next(&r);
      int ramp = (int)prng_below(&r, 2);
      if (w.l[0]->free_head < 0) twin_grow(&w);
      assert_int_equal(ul_append(w.l[0], 0, dup, now, wt, h, ramp),
                       ul_append(w.l[1], 0, dup, now, wt, h, ramp));
    } else if (op < 32) {
      for (k = 0; k < 2; k++) ul_up(w.l[k], s, now);
    } else if (op < 52) {
      for (k = 0; k < 2; k++) ul_down(w.l[k], s, now);
    } else if (op < 62) { /* a check result with a tier */
      int up = (int)prng_below(&r, 2), tier = (int)prng_below(&r, UL_MAX_TIER + 1);
      for (k = 0; k < 2; k++) ulc_apply(w.l[k], s, up, now, tier);
    } else if (op < 67) {
      uint32_t wt = 1 + prng_below(&r, 9);
      for (k = 0; k < 2; k++) ul_set_weight(w.l[k], s, wt);
    } else if (op < 70) { /* reconcile: drop some members */
      unsigned char *drop = xcalloc(w.cap, 1);
      uint32_t p;
      for (p = 0; p < w.l[0]->n; p++)
        if (prng_below(&r, 5) == 0) { /* a whole ring of equal backends */
          int32_t t = ul_order(w.l[0])[p];
          do {
            drop[t] = 1;
            t = ul_nodes(w.l[0])[t].dup;
          } while (t != ul_order(w.l[0])[p]);
        }
      for (k = 0; k < 2; k++) ul_remove(w.l[k], drop);
      xfree(drop);
    } else { /* picks */
      uint64_t key = prng_next(&r);
      int32_t a, b;
      if (w.l[0]->maglev_valid && w.l[0]->mb_phase != 0) during++;
      a = ul_pick(w.l[0], key, now);
      b = ul_pick(w.l[1], key, now);
      if (a != b)
        fail_msg("step %u: pick %d (lazy) vs %d (eager)", i, a, b);
      if (a >= 0) {
        assert_true(ul_eligible(w.l[0], a));
        if (strategy == UL_LEAST_CONN)
          for (k = 0; k < 2; k++) ul_release(w.l[k], a);
      }
    }
    twin_same(&w);
    if (i % 16 == 0)
      for (k = 0; k < 2; k++) check_invariants(w.l[k]);
  }
  for (k = 0; k < 2; k++) check_invariants(w.l[k]);
  xfree(w.l[0]);
  xfree(w.l[1]);
  return during;
}

static void run_strategy(int strategy) {
  uint64_t seed, seeds = strategy == UL_HASH ? 8 : strategy == UL_WEIGHTED ? 25 : 150;
  for (seed = 1; seed <= seeds; seed++) run_sequence(strategy, seed, 500, 4);
}

static void test_round_robin(void **state) {
  (void)state;
  run_strategy(UL_ROUND_ROBIN);
}
static void test_weighted(void **state) {
  (void)state;
  run_strategy(UL_WEIGHTED);
}
static void test_least_conn(void **state) {
  (void)state;
  run_strategy(UL_LEAST_CONN);
}
static void test_hash(void **state) {
  (void)state;
  run_strategy(UL_HASH);
}
static void test_random(void **state) {
  (void)state;
  run_strategy(UL_RANDOM);
}
/* Lists of 330 slots and more have tables of M >= 32768, built a slice a
 * pick (maglev.c): a flip starts a build while picks read the old table. */
static void test_hash_slices(void **state) {
  uint64_t seed;
  (void)state;
  for (seed = 1; seed <= 3; seed++)
    assert_true(run_sequence(UL_HASH, 100 + seed, 3000, 330) > 100);
}

/* A lazy list's panic and tier flips touch no member: with 1000 members,
 * the down that crosses the threshold leaves every node's elig byte as it
 * was (never written); round_robin's next pick is the member after the
 * last, the others' an eligible member, in panic as after it. */
static void test_flip_writes_no_member(void **state) {
  static const int strategies[] = {UL_ROUND_ROBIN, UL_RANDOM, UL_LEAST_CONN, UL_HASH,
                                   UL_WEIGHTED};
  uint32_t i, k;
  (void)state;
  for (k = 0; k < 5; k++) {
    ul_opts o;
    ul_list *l;
    int32_t s;
    ul_opts_default(&o);
    o.strategy = strategies[k];
    o.panic = 0.5;
    o.initial_score = 0;
    o.fail_delta = -1;
    o.low_score = -1;
    l = new_list(1000, &o, 7);
    assert_true(l->lazy);
    for (i = 0; i < 1000; i++) ul_append(l, 0, -1, 0, 1, i * 0x9E3779B97F4A7C15ULL, 0);
    for (i = 0; i < 500; i++) ul_down(l, ul_order(l)[i], 0);
    assert_false(l->panic_on);
    assert_int_equal(l->nelig, 500);
    s = ul_pick(l, 0, 0);
    if (o.strategy == UL_ROUND_ROBIN) assert_int_equal(ul_nodes(l)[s].pos, 500);
    if (o.strategy == UL_LEAST_CONN) ul_release(l, s);
    ul_down(l, ul_order(l)[600], 0); /* 499 healthy < 500: panic */
    assert_true(l->panic_on);
    assert_int_equal(l->nelig, 1000);
    assert_int_equal(l->total_ew, 1000 * UL_RAMP_STEPS);
    for (i = 0; i < 1000; i++) assert_int_equal(ul_nodes(l)[i].elig, 0);
    s = ul_pick(l, 0x1234, 0);
    if (o.strategy == UL_ROUND_ROBIN) assert_int_equal(ul_nodes(l)[s].pos, 501);
    assert_true(ul_eligible(l, s));
    if (o.strategy == UL_LEAST_CONN) ul_release(l, s);
    ul_up(l, ul_order(l)[600], 0); /* out of panic */
    assert_false(l->panic_on);
    for (i = 0; i < 1000; i++) assert_int_equal(ul_nodes(l)[i].elig, 0);
    for (i = 0; i < 50; i++) {
      s = ul_pick(l, (uint64_t)i << 40, 0);
      assert_true(ul_eligible(l, s) && ul_nodes(l)[s].pos >= 500);
      if (o.strategy == UL_LEAST_CONN) ul_release(l, s);
    }
    check_invariants(l);
    xfree(l);
  }
}

/* Weighted at scale: lists of 1000-1600 members (the kinetic trees, not
 * the scan), tiers 0..3, panic 0.5, slow start in one run; bursts of downs
 * and ups that cross the threshold both ways, results that move members
 * between tiers (and so the lowest healthy tier), weight changes, whole
 * ring removals, a grow, and picks after each step: every pick, every
 * slot's eligibility and the totals equal the eager twin's. */
static void test_weighted_large(void **state) {
  uint64_t seed;
  (void)state;
  for (seed = 1; seed <= 3; seed++) {
    prng r = {seed * 7919};
    ul_opts o;
    twin w;
    double now = 1;
    uint32_t i, k, j, n, crossings = 0, tier_moves = 0, picks = 0;
    ul_opts_default(&o);
    o.strategy = UL_WEIGHTED;
    o.panic = 0.5;
    o.tier_max = 3;
    o.initial_score = 0;
    o.low_score = -1;
    o.high_score = 0;
    o.slow_start = seed == 2 ? 2.0 : 0;
    w.cap = 1000 + 200 * (uint32_t)seed;
    w.l[0] = twin_new(w.cap, &o, seed, 0);
    w.l[1] = twin_new(w.cap, &o, seed, 1);
    assert_true(w.l[0]->lazy && w.l[0]->kst_size >= 1024);
    for (i = 0; i < w.cap; i++) {
      uint32_t wt = 1 + prng_below(&r, 20);
      uint64_t h = prng_next(&r);
      for (k = 0; k < 2; k++)
        assert_int_equal(ul_append(w.l[k], 0, -1, now, wt, h, seed == 2), (int32_t)i);
    }
    for (i = 0; i < 1200; i++) {
      uint32_t op = prng_below(&r, 100), was = w.l[0]->panic_on;
      int32_t at = w.l[0]->active_tier, s;
      n = w.l[0]->n;
      now += prng_unit(&r) * 0.05;
      if (op < 30) { /* a burst around the threshold */
        int down = w.l[0]->healthy * 2 >= n;
        uint32_t m = 1 + prng_below(&r, n / 8);
        for (j = 0; j < m; j++) {
          s = ul_order(w.l[0])[prng_below(&r, n)];
          for (k = 0; k < 2; k++) {
            if (down) ul_down(w.l[k], s, now);
            else ul_up(w.l[k], s, now);
          }
        }
      } else if (op < 50) { /* results with a tier, a few members */
        uint32_t m = 1 + prng_below(&r, 20);
        for (j = 0; j < m; j++) {
          int up = prng_below(&r, 3) != 0, tier = (int)prng_below(&r, 4);
          s = ul_order(w.l[0])[prng_below(&r, n)];
          for (k = 0; k < 2; k++) ulc_apply(w.l[k], s, up, now, tier);
        }
      } else if (op < 58) {
        uint32_t wt = 1 + prng_below(&r, 50);
        s = ul_order(w.l[0])[prng_below(&r, n)];
        for (k = 0; k < 2; k++) ul_set_weight(w.l[k], s, wt);
      } else if (op < 60) { /* drop a few, append as many */
        unsigned char *drop = xcalloc(w.cap, 1);
        uint32_t m = 1 + prng_below(&r, 10);
        for (j = 0; j < m; j++) drop[ul_order(w.l[0])[prng_below(&r, n)]] = 1;
        for (k = 0; k < 2; k++) ul_remove(w.l[k], drop);
        xfree(drop);
        while (w.l[0]->free_head >= 0) {
          uint32_t wt = 1 + prng_below(&r, 20);
          uint64_t h = prng_next(&r);
          assert_int_equal(ul_append(w.l[0], 0, -1, now, wt, h, 1),
                           ul_append(w.l[1], 0, -1, now, wt, h, 1));
        }
      } else if (op < 66 && at >= 0 && at < 3) { /* the lowest tier empties */
        int to = at + 1 + (int)prng_below(&r, (uint32_t)(3 - at));
        for (j = 0; j < n; j++) {
          const ul_node *x = ulb_at(w.l[0], j);
          int up = prng_below(&r, 2) != 0;
          if (x->score >= 0 && x->tier == at)
            for (k = 0; k < 2; k++) ulc_apply(w.l[k], ul_order(w.l[0])[j], up, now, to);
        }
      } else if (i == 600) {
        twin_grow(&w);
      }
      crossings += w.l[0]->panic_on != was;
      tier_moves += w.l[0]->active_tier != at;
      for (j = prng_below(&r, 40); j > 0; j--) {
        int32_t a = ul_pick(w.l[0], 0, now), b = ul_pick(w.l[1], 0, now);
        if (a != b) fail_msg("seed %u step %u: pick %d (lazy) vs %d (eager)",
                             (unsigned)seed, i, a, b);
        picks++;
      }
      twin_same(&w);
      if (i % 100 == 0)
        for (k = 0; k < 2; k++) check_invariants(w.l[k]);
    }
    for (k = 0; k < 2; k++) check_invariants(w.l[k]);
    if (!(crossings >= 20 && tier_moves >= 5 && picks > 10000)) fail_msg("crossings %u tier moves %u picks %u", crossings, tier_moves, picks);
    xfree(w.l[0]);
    xfree(w.l[1]);
  }
}

/* ---- weighted with several tiers ----------------------------------------
 * A tree per tier of the range and one for the down (weighted.c): the
 * twin compares picks through whole-tier failovers (every healthy member
 * of the lowest tier down at once, or moved up a tier by its results), a
 * failed tier coming back, panics with members in several trees, and
 * ties between members of different trees (equal weights). */

/* The members of tier t that are healthy (up 0) or not (up 1) on l, in
 * position order, into out; returns how many. */
static uint32_t tier_members(const ul_list *l, int t, int down, int32_t *out) {
  uint32_t p, k = 0;
  for (p = 0; p < l->n; p++) {
    const ul_node *x = ulb_at(l, p);
    if (x->tier == t && (x->score < 0) == down) out[k++] = ul_order(l)[p];
  }
  return k;
}

/* In panic: whether the greatest current weight is shared by members of
 * two trees (the tie the pick breaks by position across trees). */
static int tie_across_trees(const ul_list *l) {
  int64_t best = INT64_MIN;
  uint32_t p;
  int tree = -1, across = 0;
  for (p = 0; p < l->n; p++) {
    int64_t v = true_cur(l, ul_order(l)[p]);
    if (v > best) best = v;
  }
  for (p = 0; p < l->n; p++) {
    int32_t s = ul_order(l)[p];
    if (true_cur(l, s) != best) continue;
    if (tree < 0) tree = kst_tree_of(l, s);
    else if (kst_tree_of(l, s) != tree) across = 1;
  }
  return across;
}

static void weighted_tiers_run(uint32_t cap, int tmin, int tmax, double panic,
                               int equal, uint64_t seed, uint32_t *counts) {
  prng r = {seed};
  ul_opts o;
  twin w;
  double now = 1;
  uint32_t i, j, k;
  int32_t *sl = xmalloc(cap * sizeof *sl);
  ul_opts_default(&o);
  o.strategy = UL_WEIGHTED;
  o.panic = panic;
  o.tier_min = tmin;
  o.tier_max = tmax;
  o.tier_init = tmin;
  o.initial_score = 0; /* one up or down flips health */
  o.low_score = -1;
  o.high_score = 0;
  w.cap = cap;
  w.l[0] = twin_new(cap, &o, seed, 0);
  w.l[1] = twin_new(cap, &o, seed, 1);
  assert_int_equal(w.l[0]->kst_ntree, (uint32_t)(tmax - tmin + 2));
  for (i = 0; i < cap; i++) { /* spread over the tiers, lower ones fuller */
    uint32_t wt = equal ? 1 : 1 + prng_below(&r, 7);
    int t = tmin + (int)prng_below(&r, (uint32_t)(tmax - tmin + 1));
    if (prng_below(&r, 2)) t = tmin + (t - tmin) / 2;
    for (k = 0; k < 2; k++) {
      int32_t s = ul_append(w.l[k], 0, -1, now, wt, prng_next(&r), 0);
      assert_int_equal(s, (int32_t)i);
      ulc_apply(w.l[k], s, 1, now, t);
    }
  }
  twin_same(&w);
  for (i = 0; i < 400; i++) {
    ul_list *a = w.l[0];
    uint32_t op = prng_below(&r, 100), m, was = a->panic_on;
    int at = a->active_tier;
    now += 0.01;
    if (op < 20 && at >= 0) { /* the whole lowest tier fails over: down */
      m = tier_members(a, at, 0, sl);
      for (j = 0; j < m; j++)
        for (k = 0; k < 2; k++) ul_down(w.l[k], sl[j], now);
      counts[0]++;
    } else if (op < 32 && at >= 0 && at < tmax) { /* its results move it up */
      int to = at + 1 + (int)prng_below(&r, (uint32_t)(tmax - at));
      m = tier_members(a, at, 0, sl);
      for (j = 0; j < m; j++)
        for (k = 0; k < 2; k++) ulc_apply(w.l[k], sl[j], 1, now, to);
      counts[0]++;
    } else if (op < 50) { /* a failed tier comes back (some or all of it) */
      int t = tmin + (int)prng_below(&r, (uint32_t)(tmax - tmin + 1));
      int all = (int)prng_below(&r, 2);
      m = tier_members(a, t, 1, sl);
      for (j = 0; j < m; j++)
        if (all || prng_below(&r, 3) == 0)
          for (k = 0; k < 2; k++) ul_up(w.l[k], sl[j], now);
    } else if (op < 65) { /* results with a tier, a few members */
      for (j = 1 + prng_below(&r, 4); j > 0; j--) {
        int32_t s = ul_order(a)[prng_below(&r, a->n)];
        int up = (int)prng_below(&r, 2), t = tmin - 1 + (int)prng_below(&r, (uint32_t)(tmax - tmin + 3));
        for (k = 0; k < 2; k++) ulc_apply(w.l[k], s, up, now, t);
      }
    } else if (op < 72 && panic > 0) { /* downs in every tier until panic */
      uint32_t guard = 4 * cap;
      while (!a->panic_on && a->healthy > 0 && guard-- > 0) {
        int32_t s = ul_order(a)[prng_below(&r, a->n)];
        for (k = 0; k < 2; k++) ul_down(w.l[k], s, now);
      }
    } else if (op < 76 && !equal) {
      int32_t s = ul_order(a)[prng_below(&r, a->n)];
      uint32_t wt = 1 + prng_below(&r, 9);
      for (k = 0; k < 2; k++) ul_set_weight(w.l[k], s, wt);
    } else if (op < 78) { /* one dropped, one appended (a rebuild) */
      unsigned char *drop = xcalloc(cap, 1);
      uint32_t wt = equal ? 1 : 1 + prng_below(&r, 7);
      uint64_t h = prng_next(&r);
      drop[ul_order(a)[prng_below(&r, a->n)]] = 1;
      for (k = 0; k < 2; k++) ul_remove(w.l[k], drop);
      xfree(drop);
      for (k = 0; k < 2; k++) ul_append(w.l[k], 0, -1, now, wt, h, 0);
    }
    counts[1] += w.l[0]->active_tier != at;
    counts[2] += w.l[0]->panic_on != was;
    for (j = prng_below(&r, 30); j > 0; j--) {
      int32_t pa, pb;
      if (w.l[0]->panic_on) {
        uint32_t used = 0, t;
        for (t = 0; t < w.l[0]->kst_ntree; t++) {
          uint32_t p;
          for (p = 0; p < w.l[0]->n; p++)
            if (kst_tree_of(w.l[0], ul_order(w.l[0])[p]) == (int)t) break;
          used += p < w.l[0]->n;
        }
        counts[3] += used >= 3;
        counts[4] += tie_across_trees(w.l[0]);
      }
      pa = ul_pick(w.l[0], 0, now);
      pb = ul_pick(w.l[1], 0, now);
      if (pa != pb)
        fail_msg("cap %u tiers %d..%d seed %u step %u: pick %d (lazy) vs %d (eager)", cap,
                 tmin, tmax, (unsigned)seed, i, pa, pb);
      counts[5]++;
    }
    twin_same(&w);
    if (i % 25 == 0)
      for (k = 0; k < 2; k++) check_invariants(w.l[k]);
  }
  for (k = 0; k < 2; k++) check_invariants(w.l[k]);
  xfree(sl);
  xfree(w.l[0]);
  xfree(w.l[1]);
}

static void test_weighted_tiers(void **state) {
  static const uint32_t caps[] = {6, 40, 300};
  static const int ranges[][2] = {{0, 4}, {2, 7}, {0, UL_MAX_TIER}};
  static const double panics[] = {0, 0.3, 0.6};
  uint32_t counts[6] = {0}, c, g, q;
  uint64_t seed = 1;
  (void)state;
  for (c = 0; c < 3; c++)
    for (g = 0; g < 3; g++)
      for (q = 0; q < 3; q++, seed++)
        weighted_tiers_run(caps[c], ranges[g][0], ranges[g][1], panics[q], (int)(seed % 2),
                           seed, counts);
  /* failovers, lowest tier moves, panic crossings, picks in panic with 3
   * trees in use and with a tie across trees, picks */
  if (!(counts[0] > 1400 && counts[1] > 2400 && counts[2] > 300 && counts[3] > 19000 &&
        counts[4] > 8000 && counts[5] > 78000))
    fail_msg("failovers %u tier moves %u crossings %u panic picks over 3 trees %u ties %u "
             "picks %u", counts[0], counts[1], counts[2], counts[3], counts[4], counts[5]);
}

/* The nodes of l, and the arrays of its trees but the two that member s
 * leaves and joins, are what they were in a and b. */
static void same_but(const ul_list *l, const ul_node *a, const unsigned char *b, int32_t s,
                     uint32_t k0, uint32_t k1) {
  uint32_t i, k, sz = l->kst_size;
  size_t tree = (size_t)2 * sz * 8 + (size_t)sz * sizeof(ul_line) + (size_t)2 * sz * 4;
  for (i = 0; i < l->cap; i++)
    if ((int32_t)i != s && memcmp(&ul_nodes(l)[i], &a[i], sizeof *a))
      fail_msg("slot %u written (cur %lld, was %lld)", i, (long long)ul_nodes(l)[i].cur,
               (long long)a[i].cur);
  for (k = 0; k < l->kst_ntree; k++) {
    if (k == k0 || k == k1) continue;
    if (memcmp(ulb_kmelt_k(l, k), b + k * 2 * sz * 8, (size_t)2 * sz * 8) ||
        memcmp(ulb_kline_k(l, k), b + l->kst_ntree * 2 * sz * 8 + k * sz * sizeof(ul_line),
               sz * sizeof(ul_line)) ||
        memcmp(ulb_kwin_k(l, k),
               b + l->kst_ntree * ((size_t)2 * sz * 8 + sz * sizeof(ul_line)) + k * 2 * sz * 4,
               (size_t)2 * sz * 4))
      fail_msg("tree %u written", k);
  }
  (void)tree;
}

/* Snapshot of the nodes and of every tree (melt, line, win as laid out:
 * pick.c). */
static void snap(const ul_list *l, ul_node *a, unsigned char *b) {
  size_t sz = l->kst_size;
  memcpy(a, ul_nodes(l), l->cap * sizeof *a);
  memcpy(b, ulb_kmelt_k(l, 0), l->kst_ntree * (2 * sz * 8 + sz * sizeof(ul_line) + 2 * sz * 4));
}

/* A lowest-tier flip and a panic crossing of a weighted list write no
 * member: 1000 members, 100 in tier 0, 400 in tier 1, 500 in tier 2
 * (weights 1..9), picked a while. The down of the last healthy member of
 * tier 0 moves the picks to tier 1: every other node (its current weight
 * too) and the trees of tiers 1 and 2 stay as they were, byte for byte;
 * the same when it comes back up (the picks back to tier 0), and when a
 * down makes the list panic. (The two-tree list moved tier 1's members
 * into its tree 0 at the flip, rewriting their current weights.) */
static void test_weighted_tier_flip_writes_no_member(void **state) {
  ul_opts o;
  ul_list *l;
  ul_node *a;
  unsigned char *b;
  uint32_t i;
  int32_t s;
  (void)state;
  ul_opts_default(&o);
  o.strategy = UL_WEIGHTED;
  o.tier_max = 2;
  o.panic = 0.75;
  o.initial_score = 0;
  o.low_score = -1;
  o.high_score = 0;
  l = new_list(1000, &o, 3);
  for (i = 0; i < 1000; i++) {
    s = ul_append(l, 0, -1, 0, 1 + i % 9, i, 0);
    ulc_apply(l, s, 1, 0, i < 100 ? 0 : i < 500 ? 1 : 2);
  }
  assert_int_equal(l->kst_ntree, 4);
  for (i = 0; i < 99; i++) ul_down(l, (int32_t)i, 0); /* tier 0: one left */
  for (i = 0; i < 3000; i++) assert_int_equal(ul_pick(l, 0, 0), 99);
  ul_down(l, 600, 0); /* a tier 2 member down, and picks in tier 0 */
  ul_up(l, 600, 0);
  for (i = 0; i < 10; i++) ul_pick(l, 0, 0);
  check_invariants(l);
  a = xmalloc(l->cap * sizeof *a);
  b = xmalloc(l->kst_ntree * ((size_t)2 * l->kst_size * 8 + l->kst_size * sizeof(ul_line) +
                              (size_t)2 * l->kst_size * 4));
  snap(l, a, b);
  ul_down(l, 99, 0); /* tier 0 empty: tier 1 is the lowest */
  assert_int_equal(l->active_tier, 1);
  assert_false(l->panic_on);
  same_but(l, a, b, 99, 0, 3);
  check_invariants(l);
  for (i = 0; i < 2000; i++) {
    s = ul_pick(l, 0, 0);
    assert_true(s >= 100 && s < 500);
  }
  snap(l, a, b);
  ul_up(l, 99, 0); /* back to tier 0 */
  assert_int_equal(l->active_tier, 0);
  same_but(l, a, b, 99, 0, 3);
  check_invariants(l);
  assert_int_equal(ul_pick(l, 0, 0), 99);
  for (i = 100; i < 251; i++) ul_down(l, (int32_t)i, 0); /* 750 healthy */
  assert_false(l->panic_on);
  for (i = 0; i < 100; i++) ul_pick(l, 0, 0);
  snap(l, a, b);
  ul_down(l, 251, 0); /* 749 < 0.75 x 1000: panic */
  assert_true(l->panic_on);
  same_but(l, a, b, 251, 1, 3);
  check_invariants(l);
  for (i = 0; i < 2000; i++) ul_pick(l, 0, 0);
  check_invariants(l);
  xfree(a);
  xfree(b);
  xfree(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_round_robin, teardown),
      cmocka_unit_test_teardown(test_weighted, teardown),
      cmocka_unit_test_teardown(test_least_conn, teardown),
      cmocka_unit_test_teardown(test_hash, teardown),
      cmocka_unit_test_teardown(test_random, teardown),
      cmocka_unit_test_teardown(test_hash_slices, teardown),
      cmocka_unit_test_teardown(test_flip_writes_no_member, teardown),
      cmocka_unit_test_teardown(test_weighted_large, teardown),
      cmocka_unit_test_teardown(test_weighted_tiers, teardown),
      cmocka_unit_test_teardown(test_weighted_tier_flip_writes_no_member, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
