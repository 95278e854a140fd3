/*
 * test_panic.c - lazy eligibility against the eager rewrite. A lazy list
 * (every list but ul_eager's) never rewrites its members' eligibility
 * when the panic state or the lowest healthy tier moves; ul_eager puts a
 * twin list on the old path, which rewrites every member: the reference
 * model. Random sequences of appends (with duplicates), up, down, results
 * with a tier, set_weight, removals (reconcile), grows and picks, with
 * panic thresholds, tiers and slow start on, must give the same pick, the
 * same eligibility of every slot and the same totals on both, for every
 * strategy (weighted's lazy twin keeps two kinetic trees, weighted.c). Random and
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
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
