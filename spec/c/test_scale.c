/*
 * test_scale.c - the core without its scale cliffs (issue 9): the Maglev
 * table rebuilt aside a slice per pick (maglev.c), picks during a build
 * returning only eligible members and keeping the keys of the others, the
 * finished table equal to a whole build, the weighted build's shares;
 * the weighted tree over the eligible members only, against nginx's loop.
 */
#include "helpers.h"
#include "core/pick.h"

enum { CAP = 400, MEMBERS = 300, NKEYS = 20000, MAX_PICKS = 100000 };

static uint64_t key_of(int i) { return ul_hash(&i, sizeof i); }

static uint64_t backend_hash(int i) {
  char buf[32];
  int len = snprintf(buf, sizeof buf, "backend-%d", i);
  return ul_hash(buf, (size_t)len);
}

/* A hash list of MEMBERS with weight w(i) (NULL: 1 each). */
static ul_list *hashed(uint32_t cap, int members, uint32_t (*w)(int)) {
  ul_list *l = new_list_strat(cap, UL_HASH, 1);
  int i;
  for (i = 0; i < members; i++)
    assert_int_equal(ul_append(l, 0, -1, 0, w ? w(i) : 1, backend_hash(i), 0), i);
  return l;
}

static void down_twice(ul_list *l, int32_t s) {
  ul_down(l, s, 0);
  ul_down(l, s, 0);
}

static int32_t *table_copy(const ul_list *l) {
  int32_t *t = xmalloc((size_t)l->maglev_m * sizeof *t);
  memcpy(t, ulb_mag(l), (size_t)l->maglev_m * sizeof *t);
  return t;
}

static void assert_same_table(const ul_list *l, const int32_t *want) {
  uint32_t k;
  for (k = 0; k < l->maglev_m; k++)
    if (ulb_mag(l)[k] != want[k])
      fail_msg("entry %u: slot %d, a whole build has %d", k, ulb_mag(l)[k], want[k]);
}

static int32_t pick_ok(ul_list *l, uint64_t key) {
  int32_t s = ul_pick(l, key, 0);
  if (!(s >= 0 && (uint32_t)s < l->cap && ul_eligible(l, s)))
    fail_msg("pick returned slot %d, not an eligible member", s);
  return s;
}

static uint32_t weights_mixed(int i) { return 1 + (uint32_t)(i % 3); }

/* Before a list's first table is done, a pick is the first eligible
 * position at or cyclically after (key's low 32 bits * n) >> 32. */
static int32_t no_table_pick(const ul_list *l, uint64_t key) {
  uint32_t p0 = (uint32_t)(((key & 0xFFFFFFFFu) * l->n) >> 32), k;
  for (k = 0; k < l->n; k++) {
    int32_t s = ul_order(l)[(p0 + k) % l->n];
    if (ul_eligible(l, s)) return s;
  }
  return -1;
}

/* Picks until the table under way is done: each pick an eligible member,
 * by the rule above while there is no table yet. Returns the picks. */
static int build_by_picks(ul_list *l) {
  int i, picks = 0;
  for (i = 0; l->maglev_busy; i++) {
    int valid = l->maglev_valid;
    int32_t s = pick_ok(l, key_of(i));
    assert_true(++picks < 4 * MAX_PICKS);
    if (!valid && !l->maglev_valid && s != no_table_pick(l, key_of(i)))
      fail_msg("pick %d before the first table: slot %d, expected %d", i, s,
               no_table_pick(l, key_of(i)));
  }
  return picks;
}

/* The first table is built a slice a pick, as is the next after a change:
 * meanwhile every pick returns an eligible member, the keys of every other
 * member stay where they were, and the finished table is the one a whole
 * build makes. The table after the member is back is the first one
 * again. */
static void incremental_case(uint32_t (*w)(int)) {
  ul_list *l = hashed(CAP, MEMBERS, w), *ref;
  int32_t *a = xmalloc(NKEYS * sizeof *a), *t0;
  int i, picks = 0;
  assert_true(l->maglev_m >= 32768);
  assert_true(l->maglev_slice > 0);
  assert_true(l->maglev_busy);
  assert_true(build_by_picks(l) > 1);
  for (i = 0; i < NKEYS; i++) a[i] = pick_ok(l, key_of(i));
  assert_false(l->maglev_busy);
  check_invariants(l);
  t0 = table_copy(l);

  down_twice(l, 7);
  assert_true(l->maglev_busy);
  for (i = 0; l->maglev_busy; i = (i + 1) % NKEYS) {
    int32_t s = pick_ok(l, key_of(i));
    assert_true(++picks < MAX_PICKS);
    if (!l->maglev_busy) break; /* this pick finished the build */
    if (a[i] == 7) assert_int_not_equal(s, 7);
    else if (s != a[i]) fail_msg("key %d moved from slot %d to %d during the build", i, a[i], s);
  }
  assert_true(picks > 1); /* a slice at a time */
  check_invariants(l);

  ref = hashed(CAP, MEMBERS, w);
  down_twice(ref, 7);
  ulp_maglev_settle(ref);
  assert_false(ref->maglev_busy);
  assert_same_table(l, ulb_mag(ref));

  ul_up(l, 7, 0);
  ulp_maglev_settle(l);
  assert_same_table(l, t0);
  for (i = 0; i < NKEYS; i++) assert_int_equal(pick_ok(l, key_of(i)), a[i]);
  xfree(t0);
  xfree(a);
  xfree(ref);
  xfree(l);
}

static void test_incremental_equal(void **state) {
  (void)state;
  incremental_case(NULL);
}

static void test_incremental_weighted(void **state) {
  (void)state;
  incremental_case(weights_mixed);
}

/* Changes during a build: it finishes with what it began with, the next
 * follows, and the table it leaves is a whole build of the list as it is. */
static void test_change_during_build(void **state) {
  ul_list *l = hashed(CAP, MEMBERS, NULL), *ref;
  int i, picks = 0;
  (void)state;
  ulp_maglev_settle(l);
  down_twice(l, 7);
  pick_ok(l, 2);
  assert_true(l->maglev_busy && l->mb_phase != 0);
  down_twice(l, 9);
  ul_set_weight(l, 11, 3);
  for (i = 0; l->maglev_busy; i++) {
    int32_t s = pick_ok(l, key_of(i));
    assert_true(s != 7 && s != 9);
    assert_true(++picks < 2 * MAX_PICKS);
  }
  ref = hashed(CAP, MEMBERS, NULL);
  down_twice(ref, 7);
  down_twice(ref, 9);
  ul_set_weight(ref, 11, 3);
  ulp_maglev_settle(ref);
  assert_same_table(l, ulb_mag(ref));
  check_invariants(l);
  xfree(ref);
  xfree(l);
}

/* Every entry of the table being read names a member that is not eligible
 * now: the picks fall through to the bitmap and still pick the one that is. */
static void test_fall_through_to_bitmap(void **state) {
  ul_list *l = hashed(CAP, MEMBERS, NULL);
  int i;
  (void)state;
  ulp_maglev_settle(l);
  for (i = 0; i < MEMBERS; i++)
    if (i != 250) down_twice(l, i);
  assert_int_equal(l->nelig, 1);
  for (i = 0; i < 2000; i++) assert_int_equal(pick_ok(l, key_of(i)), 250);
  /* and deterministic: the same key, the same member, at any moment */
  xfree(l);
}

/* A grown list with the same M reads the old table while it builds. */
static void test_grow_keeps_table(void **state) {
  ul_list *l = hashed(CAP, MEMBERS, NULL), *g;
  int32_t *a = xmalloc(NKEYS * sizeof *a);
  int i;
  (void)state;
  ulp_maglev_settle(l);
  for (i = 0; i < NKEYS; i++) a[i] = pick_ok(l, key_of(i));
  g = xmalloc(ul_grow_size(l, 2 * CAP));
  ul_grow(g, 2 * CAP, l);
  assert_int_equal(g->maglev_m, l->maglev_m);
  assert_true(g->maglev_valid && g->maglev_busy);
  assert_int_equal(ul_append(g, 0, -1, 0, 1, backend_hash(MEMBERS), 0), MEMBERS);
  /* the first picks after the grow: the old table, every key where it was */
  assert_int_equal(pick_ok(g, key_of(0)), a[0]);
  assert_true(g->maglev_busy);
  for (i = 0; i < 100; i++) assert_int_equal(pick_ok(g, key_of(i)), a[i]);
  xfree(g);
  xfree(a);
  xfree(l);
}

/* A list's first table is built a slice a pick, however large: no pick
 * does the whole build. Meanwhile the picks follow the rule of
 * no_table_pick, members that go down are never picked, and the table the
 * last slice leaves is a whole build's, of the list as the build began;
 * the changes made during it are built next. A list grown past its M has
 * no table either: the same again. */
static void test_first_table_sliced(void **state) {
  ul_list *l = hashed(1200, 1000, weights_mixed), *ref, *g;
  uint32_t budget = l->maglev_slice;
  int i, picks;
  (void)state;
  assert_true(l->maglev_m >= 100000 && budget > 0);
  assert_false(l->maglev_valid);
  for (i = 0; i < 100; i++) pick_ok(l, key_of(i));
  assert_false(l->maglev_valid); /* 100 slices: far from done */
  down_twice(l, 5);
  down_twice(l, 6);
  for (i = 0; i < 2000; i++) {
    int32_t s = pick_ok(l, key_of(i));
    assert_true(s != 5 && s != 6);
  }
  picks = build_by_picks(l);
  assert_true(picks > 100);
  ref = hashed(1200, 1000, weights_mixed);
  down_twice(ref, 5);
  down_twice(ref, 6);
  ulp_maglev_settle(ref);
  assert_same_table(l, ulb_mag(ref));
  check_invariants(l);
  /* grown to a larger M: no table to read, the rule again */
  g = xmalloc(ul_grow_size(l, 12000));
  ul_grow(g, 12000, l);
  assert_true(g->maglev_m > l->maglev_m);
  assert_false(g->maglev_valid);
  assert_true(build_by_picks(g) > 100);
  check_invariants(g);
  xfree(g);
  xfree(ref);
  xfree(l);
}

/* One weight of 1e6 among 3000 (the credit build took 1.5 s): each member
 * gets floor(M * w / total) entries, and one more for the first M - sum of
 * them in pick order; built a slice a pick after a change, it equals a
 * whole build. */
static uint32_t weights_huge(int i) { return i == 0 ? UL_MAX_WEIGHT : 1; }

static void test_huge_weight_shares(void **state) {
  enum { BIG = 3000 };
  ul_list *l = hashed(BIG, BIG, NULL), *ref;
  uint32_t *count = xcalloc(BIG, sizeof *count), k, m, sum = 0, left;
  uint64_t total = UL_MAX_WEIGHT + (BIG - 1);
  int i, picks = 0;
  (void)state;
  pick_ok(l, 1);
  ul_set_weight(l, 0, UL_MAX_WEIGHT);
  for (i = 0; l->maglev_busy; i++) {
    pick_ok(l, key_of(i));
    assert_true(++picks < 40 * MAX_PICKS);
  }
  m = l->maglev_m;
  for (k = 0; k < m; k++) {
    int32_t s = ulb_mag(l)[k];
    assert_true(s >= 0 && s < BIG);
    count[s]++;
  }
  for (i = 0; i < BIG; i++) sum += (uint32_t)((uint64_t)m * weights_huge(i) / total);
  left = m - sum;
  for (i = 0; i < BIG; i++) {
    uint32_t want = (uint32_t)((uint64_t)m * weights_huge(i) / total) + ((uint32_t)i < left);
    if (count[i] != want) fail_msg("slot %d: %u entries, its share is %u", i, count[i], want);
  }
  ref = hashed(BIG, BIG, weights_huge);
  ulp_maglev_settle(ref);
  assert_same_table(l, ulb_mag(ref));
  xfree(ref);
  xfree(count);
  xfree(l);
}

/* Small tables are still built whole on the first pick after a change. */
static void test_small_tables_whole(void **state) {
  ul_list *l = hashed(8, 5, NULL);
  (void)state;
  assert_int_equal(l->maglev_m, 16381);
  assert_int_equal(l->maglev_slice, 0);
  pick_ok(l, 1);
  down_twice(l, 2);
  assert_true(l->maglev_busy);
  pick_ok(l, 2);
  assert_false(l->maglev_busy);
  check_invariants(l);
  xfree(l);
}

/* ---- weighted: the tree over the eligible members ------------------------ */

/* nginx's smooth weighted round robin, naively: every eligible member's
 * current weight grows by its weight, the greatest (the first of equals)
 * is picked and loses the total; an ineligible member's is frozen. */
typedef struct {
  int64_t cur[1200];
  uint32_t w[1200];
} swrr;

static int32_t swrr_pick(const ul_list *l, swrr *m) {
  int64_t total = 0;
  int32_t best = -1;
  uint32_t p;
  for (p = 0; p < l->n; p++) {
    int32_t s = ul_order(l)[p];
    if (!ul_eligible(l, s)) continue;
    m->cur[s] += m->w[s];
    total += m->w[s];
    if (best < 0 || m->cur[s] > m->cur[best]) best = s;
  }
  if (best >= 0) m->cur[best] -= total;
  return best;
}

/* Members come and go at random (the tree's root climbs and falls, leaves
 * move), weights 1 and 2 (many ties, broken by position): every pick is
 * nginx's, and a list of 10000 with 100 eligible walks 7 levels. */
static void test_weighted_packed_leaves(void **state) {
  enum { CAPW = 1200, MW = 1000, OPS = 60000 };
  ul_list *l = new_list_strat(CAPW, UL_WEIGHTED, 1), *big;
  swrr *m = xcalloc(1, sizeof *m);
  prng r;
  int i;
  (void)state;
  r.s = 12345;
  for (i = 0; i < MW; i++) {
    m->w[i] = 1 + (uint32_t)(i % 5 == 0);
    assert_int_equal(ul_append(l, 0, -1, 0, m->w[i], 0, 0), i);
  }
  for (i = 0; i < OPS; i++) {
    uint32_t k = prng_below(&r, 100);
    /* a drift towards few eligible, then back: the root moves */
    int down = (i / 10000) % 2 == 0 ? k < 30 : k < 8;
    if (k < 50) {
      int32_t want = swrr_pick(l, m), got = ul_pick(l, 0, 0);
      if (got != want) fail_msg("op %d: picked %d, nginx picks %d", i, got, want);
    } else if (down) {
      ul_down(l, (int32_t)prng_below(&r, MW), 0);
    } else {
      ul_up(l, (int32_t)prng_below(&r, MW), 0);
    }
    if (i % 5000 == 0) check_invariants(l);
  }
  check_invariants(l);
  xfree(m);
  xfree(l);

  big = new_list_strat(10000, UL_WEIGHTED, 1);
  for (i = 0; i < 10000; i++) ul_append(big, 0, -1, 0, 1, 0, 0);
  assert_int_equal(big->kst_root[0], 1);
  for (i = 0; i < 10000; i++)
    if (i % 100 != 0) down_twice(big, i);
  assert_int_equal(big->kst_n[0], 100);
  assert_int_equal(big->kst_size / big->kst_root[0], 128); /* 7 levels */
  for (i = 0; i < 300; i++) assert_int_equal(ul_pick(big, 0, 0), (i % 100) * 100);
  check_invariants(big);
  xfree(big);
}

/* A fresh list's tree is empty, not all zeros: appending a member that is
 * not eligible (an initial score below 0) leaves it out of the tree
 * (found by core_fuzz: the zeroed block read as "position 0 at leaf 0"). */
static void test_weighted_fresh_tree(void **state) {
  ul_opts o;
  ul_list *l;
  int i;
  (void)state;
  ul_opts_default(&o);
  o.strategy = UL_WEIGHTED;
  o.initial_score = -3;
  l = new_list(24, &o, 1);
  for (i = 0; i < 20; i++) {
    assert_int_equal(ul_append(l, 0, -1, 0, 1 + (uint32_t)i, 0, 0), i);
    assert_int_equal(l->kst_n[0], 0);
    check_invariants(l);
  }
  for (i = 0; i < 3; i++) ul_up(l, 7, 0); /* -3 -> 0: healthy */
  assert_int_equal(l->kst_n[0], 1);
  assert_int_equal(ul_pick(l, 0, 0), 7);
  check_invariants(l);
  xfree(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_incremental_equal, teardown),
      cmocka_unit_test_teardown(test_incremental_weighted, teardown),
      cmocka_unit_test_teardown(test_change_during_build, teardown),
      cmocka_unit_test_teardown(test_fall_through_to_bitmap, teardown),
      cmocka_unit_test_teardown(test_grow_keeps_table, teardown),
      cmocka_unit_test_teardown(test_huge_weight_shares, teardown),
      cmocka_unit_test_teardown(test_first_table_sliced, teardown),
      cmocka_unit_test_teardown(test_small_tables_whole, teardown),
      cmocka_unit_test_teardown(test_weighted_packed_leaves, teardown),
      cmocka_unit_test_teardown(test_weighted_fresh_tree, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
