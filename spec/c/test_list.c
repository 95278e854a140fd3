/*
 * test_list.c - the list (src/core/list.c, opts.c, hash.c): options and
 * sizes, members and their scores under round robin, duplicates, remove,
 * grow, tiers and panic, slow start; ul_latency_tier and ul_hash.
 */
#include "helpers.h"

/* ---- options, sizes, latency tiers, the hash ----------------------------- */

static void expect_invalid(ul_opts o, const char *want_field) {
  const char *field = "unset";
  const char *msg = ul_opts_validate(&o, &field);
  if (!msg) fail_msg("expected %s to be rejected", want_field);
  assert_non_null(field);
  assert_string_equal(field, want_field);
}

static void test_opts(void **state) {
  ul_opts d, o;
  const char *field = "unset";
  static const char *const names[] = {"interval", "timeout", "jitter",
                                      "initial_score", "low_score",
                                      "high_score", "fail_delta",
                                      "success_delta"};
  double bad[3];
  int f, k;
  (void)state;

  ul_opts_default(&d);
  assert_dbl_eq(d.interval, 1.0);
  assert_dbl_eq(d.timeout, 0.1);
  assert_dbl_eq(d.jitter, 0.0);
  assert_dbl_eq(d.initial_score, 1.0);
  assert_dbl_eq(d.low_score, -3.0);
  assert_dbl_eq(d.high_score, 3.0);
  assert_dbl_eq(d.fail_delta, -1.0);
  assert_dbl_eq(d.success_delta, 1.0);

  assert_null(ul_opts_validate(&d, &field));
  assert_null(field);

  /* NaN and +-inf in every field name that field */
  bad[0] = NAN;
  bad[1] = INFINITY;
  bad[2] = -INFINITY;
  for (f = 0; f < 8; f++)
    for (k = 0; k < 3; k++) {
      double *v[8];
      o = d;
      v[0] = &o.interval;
      v[1] = &o.timeout;
      v[2] = &o.jitter;
      v[3] = &o.initial_score;
      v[4] = &o.low_score;
      v[5] = &o.high_score;
      v[6] = &o.fail_delta;
      v[7] = &o.success_delta;
      *v[f] = bad[k];
      expect_invalid(o, names[f]);
    }

  o = d; o.interval = 0; expect_invalid(o, "interval");
  o = d; o.interval = -1; expect_invalid(o, "interval");
  o = d; o.timeout = 0; expect_invalid(o, "timeout");
  o = d; o.timeout = -0.5; expect_invalid(o, "timeout");
  o = d; o.jitter = -0.01; expect_invalid(o, "jitter");
  o = d; o.jitter = 1.01; expect_invalid(o, "jitter");
  o = d; o.low_score = 0.5; o.initial_score = 1; expect_invalid(o, "low_score");
  o = d; o.high_score = -0.5; o.initial_score = -1; expect_invalid(o, "high_score");
  o = d; o.fail_delta = 0; expect_invalid(o, "fail_delta");
  o = d; o.fail_delta = 1; expect_invalid(o, "fail_delta");
  o = d; o.success_delta = 0; expect_invalid(o, "success_delta");
  o = d; o.success_delta = -1; expect_invalid(o, "success_delta");
  o = d; o.initial_score = 3.5; expect_invalid(o, "initial_score");
  o = d; o.initial_score = -3.5; expect_invalid(o, "initial_score");

  /* boundaries are accepted */
  o = d; o.jitter = 0; assert_null(ul_opts_validate(&o, &field));
  o = d; o.jitter = 1; assert_null(ul_opts_validate(&o, &field));
  o = d; o.low_score = 0; o.initial_score = 0;
  assert_null(ul_opts_validate(&o, &field));
  o = d; o.high_score = 0; o.initial_score = 0;
  assert_null(ul_opts_validate(&o, &field));
  o = d; o.initial_score = -3; assert_null(ul_opts_validate(&o, &field));
  o = d; o.initial_score = 3; assert_null(ul_opts_validate(&o, &field));
  assert_null(field);
}

static void test_size(void **state) {
  (void)state;
  assert_int_equal(ul_size(0, UL_ROUND_ROBIN), 0);
  assert_true(ul_size(1, UL_ROUND_ROBIN) > sizeof(ul_list));
  assert_true(ul_size(100, UL_ROUND_ROBIN) > ul_size(10, UL_ROUND_ROBIN));
  assert_int_equal(ul_size(0xFFFFFFFFu, UL_ROUND_ROBIN), 0);
}

static void test_latency_tier(void **state) {
  (void)state;
  assert_int_equal(ul_latency_tier(0.00009), 0);
  assert_int_equal(ul_latency_tier(0.0001), 1);
  assert_int_equal(ul_latency_tier(0.0009), 1);
  assert_int_equal(ul_latency_tier(0.001), 2);
  assert_int_equal(ul_latency_tier(0.0099), 2);
  assert_int_equal(ul_latency_tier(0.01), 3);
  assert_int_equal(ul_latency_tier(0.1), 4);
  assert_int_equal(ul_latency_tier(0.999), 4);
  assert_int_equal(ul_latency_tier(1), 5);
  assert_int_equal(ul_latency_tier(100), 5);
  assert_int_equal(ul_latency_tier(0), 0);
}

static void test_hash(void **state) {
  static const unsigned char bytes[20] = {'a', 'a', 'a', 'a', 'a', 'a', 'a',
                                          'a', 'a', 'a', 'a', 'a', 'a', 'a',
                                          'a', 'a', 'a', 'a', 'a', 'a'};
  uint64_t h[21];
  unsigned char copy[20];
  int i, j;
  (void)state;
  memcpy(copy, bytes, sizeof copy);
  for (i = 0; i <= 20; i++) {
    h[i] = ul_hash(bytes, (size_t)i);
    assert_true(h[i] == ul_hash(bytes, (size_t)i));  /* deterministic */
    assert_true(h[i] == ul_hash(copy, (size_t)i));   /* by content */
    for (j = 0; j < i; j++)
      if (h[i] == h[j]) fail_msg("ul_hash: lengths %d and %d collide", i, j);
  }
  /* one byte changed anywhere changes it */
  for (i = 0; i < 20; i++) {
    copy[i] = 'b';
    assert_true(ul_hash(copy, 20) != h[20]);
    copy[i] = 'a';
  }
  assert_true(ul_hash("key-1", 5) == ul_hash("key-1", 5));
  assert_true(ul_hash("key-1", 5) != ul_hash("key-2", 5));
}

/* ---- members and scores -------------------------------------------------- */

/* An empty list, then plain round robin. */
static void test_pick_basic(void **state) {
  ul_list *l = new_list(8, NULL, 1);
  int i;
  (void)state;
  assert_int_equal(l->n, 0);
  assert_int_equal(l->rr, -1);
  assert_int_equal(ul_pick(l, 0, 0), -1);
  assert_int_equal(l->rr, -1);

  assert_int_equal(ul_append(l, 0, -1, 0, 1, 0, 0), 0);
  assert_int_equal(ul_append(l, 0, -1, 0, 1, 0, 0), 1);
  assert_int_equal(ul_append(l, 0, -1, 0, 1, 0, 0), 2);
  assert_int_equal(l->n, 3);
  assert_int_equal(l->healthy, 3);
  for (i = 0; i < 3; i++) {
    assert_dbl_eq(N(l, i)->score, 1.0);
    assert_int_equal(N(l, i)->pos, i);
    assert_int_equal(ul_order(l)[i], i);
  }
  assert_int_equal(ul_pick(l, 0, 0), 0);
  assert_int_equal(ul_pick(l, 0, 0), 1);
  assert_int_equal(ul_pick(l, 0, 0), 2);
  assert_int_equal(ul_pick(l, 0, 0), 0);
  assert_int_equal(l->rr, 0);
  check_invariants(l);
  xfree(l);
}

/* The Go package's down/up sequence. */
static void test_go_sequence(void **state) {
  ul_list *l = new_list(3, NULL, 1);
  int32_t one, two, three;
  int i;
  (void)state;
  one = ul_append(l, 0, -1, 0, 1, 0, 0);
  two = ul_append(l, 0, -1, 0, 1, 0, 0);
  three = ul_append(l, 0, -1, 0, 1, 0, 0);
  assert_int_equal(one, 0);
  assert_int_equal(two, 1);
  assert_int_equal(three, 2);

  assert_int_equal(ul_pick(l, 0, 0), one);
  ul_down(l, two, 0);
  ul_down(l, two, 0);
  ul_down(l, three, 0);
  assert_dbl_eq(N(l, two)->score, -1);
  assert_dbl_eq(N(l, three)->score, 0);
  assert_int_equal(ul_pick(l, 0, 0), three);
  assert_int_equal(ul_pick(l, 0, 0), one);
  assert_int_equal(ul_pick(l, 0, 0), three);

  ul_down(l, three, 0);
  for (i = 0; i < 5; i++) ul_up(l, two, 0);
  assert_dbl_eq(N(l, two)->score, 3); /* -1 + 5 capped at 3 */
  assert_dbl_eq(N(l, three)->score, -1);
  assert_int_equal(ul_pick(l, 0, 0), one);
  assert_int_equal(ul_pick(l, 0, 0), two);
  assert_int_equal(ul_pick(l, 0, 0), one);

  for (i = 0; i < 4; i++) ul_down(l, two, 0);
  assert_dbl_eq(N(l, two)->score, -1);
  assert_int_equal(ul_pick(l, 0, 0), one);

  for (i = 0; i < 3; i++) ul_down(l, two, 0);
  assert_dbl_eq(N(l, two)->score, -3); /* floored */
  assert_int_equal(ul_pick(l, 0, 0), one);

  for (i = 0; i < 3; i++) ul_up(l, two, 0);
  assert_dbl_eq(N(l, two)->score, 0);
  assert_int_equal(ul_pick(l, 0, 0), two);
  check_invariants(l);
  xfree(l);
}

/* ---- duplicates ---------------------------------------------------------- */

static void test_duplicates(void **state) {
  ul_list *l = new_list(8, NULL, 1);
  int32_t a, b, c, x;
  int i;
  (void)state;
  a = ul_append(l, 0, -1, 0, 1, 0, 0);
  x = ul_append(l, 0, -1, 0, 1, 0, 0);
  b = ul_append(l, 0, a, 0, 1, 0, 0);
  c = ul_append(l, 0, a, 0, 1, 0, 0);
  assert_int_equal(a, 0);
  assert_int_equal(x, 1);
  assert_int_equal(b, 2);
  assert_int_equal(c, 3);
  /* the ring from a goes through b and c and back to a; x is alone */
  {
    int seen_b = 0, seen_c = 0, len = 0;
    int32_t s = a;
    do {
      if (s == b) seen_b = 1;
      if (s == c) seen_c = 1;
      assert_int_not_equal(s, x);
      s = N(l, s)->dup;
      len++;
    } while (s != a && len < 8);
    assert_int_equal(len, 3);
    assert_true(seen_b && seen_c);
    assert_int_equal(N(l, x)->dup, x);
  }

  /* any member of the ring moves them all (Go: every equal node) */
  ul_down(l, c, 0);
  assert_dbl_eq(N(l, a)->score, 0);
  assert_dbl_eq(N(l, b)->score, 0);
  assert_dbl_eq(N(l, c)->score, 0);
  ul_up(l, b, 0);
  assert_dbl_eq(N(l, a)->score, 1);
  assert_dbl_eq(N(l, c)->score, 1);
  assert_dbl_eq(N(l, x)->score, 1);

  ul_up(l, a, 0);
  assert_dbl_eq(N(l, a)->score, 2);
  assert_dbl_eq(N(l, b)->score, 2);
  assert_dbl_eq(N(l, c)->score, 2);
  assert_dbl_eq(N(l, x)->score, 1);

  /* pick visits each position, duplicates included */
  assert_int_equal(ul_pick(l, 0, 0), a);
  assert_int_equal(ul_pick(l, 0, 0), x);
  assert_int_equal(ul_pick(l, 0, 0), b);
  assert_int_equal(ul_pick(l, 0, 0), c);
  assert_int_equal(ul_pick(l, 0, 0), a);

  for (i = 0; i < 3; i++) ul_down(l, a, 0);
  assert_dbl_eq(N(l, a)->score, -1);
  assert_dbl_eq(N(l, b)->score, -1);
  assert_dbl_eq(N(l, c)->score, -1);
  assert_int_equal(l->healthy, 1);
  assert_int_equal(ul_pick(l, 0, 0), x);
  assert_int_equal(ul_pick(l, 0, 0), x);

  for (i = 0; i < 10; i++) ul_down(l, a, 0);
  assert_dbl_eq(N(l, b)->score, -3);
  ul_down(l, x, 0);
  ul_down(l, x, 0);
  assert_int_equal(ul_pick(l, 0, 0), -1);
  assert_int_equal(l->rr, 1);
  for (i = 0; i < 3; i++) ul_up(l, a, 0);
  assert_dbl_eq(N(l, a)->score, 0);
  assert_dbl_eq(N(l, b)->score, 0);
  assert_dbl_eq(N(l, c)->score, 0);
  assert_int_equal(ul_pick(l, 0, 0), b);
  assert_int_equal(ul_pick(l, 0, 0), c);
  assert_int_equal(ul_pick(l, 0, 0), a);
  check_invariants(l);

  /* the chain is dropped together; its slots are reused */
  {
    unsigned char drop[8] = {0};
    drop[a] = drop[b] = drop[c] = 1;
    ul_remove(l, drop);
    assert_int_equal(l->n, 1);
    assert_int_equal(ul_order(l)[0], x);
    check_invariants(l);
  }
  xfree(l);
}

/* ---- remove -------------------------------------------------------------- */

static void test_remove_reconcile(void **state) {
  ul_list *l = new_list(3, NULL, 1);
  unsigned char drop[3];
  int32_t one, two, three, four, five, six;
  int i;
  (void)state;
  one = ul_append(l, 0, -1, 0, 1, 0, 0);
  two = ul_append(l, 0, -1, 0, 1, 0, 0);
  three = ul_append(l, 0, -1, 0, 1, 0, 0);
  assert_int_equal(ul_pick(l, 0, 0), one);
  /* no change */
  memset(drop, 0, sizeof drop);
  ul_remove(l, drop);
  assert_int_equal(l->n, 3);
  assert_int_equal(ul_pick(l, 0, 0), two);

  memset(drop, 0, sizeof drop);
  drop[three] = 1;
  ul_remove(l, drop);
  assert_int_equal(l->n, 2);
  assert_int_equal(N(l, three)->pos, -1);
  four = ul_append(l, 0, -1, 0, 1, 0, 0);
  assert_int_equal(four, three); /* the freed slot is reused */
  assert_int_equal(ul_order(l)[0], one);
  assert_int_equal(ul_order(l)[1], two);
  assert_int_equal(ul_order(l)[2], four);
  assert_int_equal(ul_pick(l, 0, 0), four);

  memset(drop, 0, sizeof drop);
  drop[one] = drop[two] = 1;
  ul_remove(l, drop);
  assert_int_equal(l->n, 1);
  assert_int_equal(ul_order(l)[0], four);
  assert_int_equal(N(l, four)->pos, 0);
  five = ul_append(l, 0, -1, 0, 1, 0, 0);
  six = ul_append(l, 0, -1, 0, 1, 0, 0);
  assert_true(five == one || five == two);
  assert_true(six == one || six == two);
  assert_int_not_equal(five, six);
  assert_int_equal(ul_append(l, 0, -1, 0, 1, 0, 0), -1); /* full again */
  assert_int_equal(ul_order(l)[0], four);
  assert_int_equal(ul_order(l)[1], five);
  assert_int_equal(ul_order(l)[2], six);
  assert_int_equal(ul_pick(l, 0, 0), four);
  assert_int_equal(ul_pick(l, 0, 0), five);
  assert_int_equal(ul_pick(l, 0, 0), six);

  for (i = 0; i < 4; i++) ul_down(l, four, 0);
  assert_int_equal(ul_pick(l, 0, 0), five);
  assert_int_equal(ul_pick(l, 0, 0), six);
  check_invariants(l);

  memset(drop, 1, sizeof drop);
  ul_remove(l, drop);
  assert_int_equal(l->n, 0);
  assert_int_equal(l->healthy, 0);
  assert_int_equal(ul_pick(l, 0, 0), -1);
  check_invariants(l);
  xfree(l);
}

static void test_remove_keeps_order_scores(void **state) {
  ul_list *l = new_list(10, NULL, 1);
  unsigned char drop[10] = {0};
  int32_t s;
  int i;
  (void)state;
  for (i = 0; i < 10; i++) assert_int_equal(ul_append(l, 0, -1, 0, 1, 0, 0), i);
  /* distinct scores: slot i gets score 1 + (i % 3) - 2 * (i % 2) clamped */
  for (i = 0; i < 10; i++) {
    int k;
    for (k = 0; k < i % 3; k++) ul_up(l, i, 0);
    if (i % 2) {
      ul_down(l, i, 0);
      ul_down(l, i, 0);
      ul_down(l, i, 0);
    }
  }
  /* rr at position 6 */
  for (i = 0; i < 20; i++) {
    if (l->rr == 6) break;
    ul_pick(l, 0, 0);
  }
  assert_int_equal(l->rr, 6);
  drop[1] = drop[2] = drop[5] = drop[9] = 1;
  ul_remove(l, drop);
  {
    static const int32_t want[] = {0, 3, 4, 6, 7, 8};
    double want_score[10];
    for (i = 0; i < 10; i++) {
      double v = 1 + (i % 3);
      if (v > 3) v = 3;
      if (i % 2) v -= 3;
      want_score[i] = v;
    }
    assert_int_equal(l->n, 6);
    for (i = 0; i < 6; i++) {
      assert_int_equal(ul_order(l)[i], want[i]);
      assert_int_equal(N(l, want[i])->pos, i);
      assert_dbl_eq(N(l, want[i])->score, want_score[want[i]]);
    }
    for (i = 0; i < 10; i++)
      if (drop[i]) {
        assert_int_equal(N(l, i)->pos, -1);
        assert_false(N(l, i)->flags & UL_F_MEMBER);
      }
  }
  /* rr unchanged (6); n = 6, so the next pick starts at position
   * (6 + 1) % 6 = 1 -> slot 3 (score -1, unhealthy) -> slot 4 (score 2) */
  assert_int_equal(l->rr, 6);
  assert_int_equal(ul_pick(l, 0, 0), 4);
  check_invariants(l);

  /* the four freed slots are reused, nothing else */
  {
    int got[10] = {0};
    for (i = 0; i < 4; i++) {
      s = ul_append(l, 0, -1, 0, 1, 0, 0);
      assert_true(s >= 0 && s < 10);
      assert_true(drop[s]);
      assert_false(got[s]);
      got[s] = 1;
      assert_dbl_eq(N(l, s)->score, 1); /* fresh initial score */
      assert_int_equal(N(l, s)->pos, 6 + i);
    }
    assert_int_equal(ul_append(l, 0, -1, 0, 1, 0, 0), -1);
  }
  check_invariants(l);
  xfree(l);
}

/* ---- append, remove and pick against a model ----------------------------- */

static void model_case(uint32_t cap, uint32_t ops, uint64_t seed) {
  ul_list *l = new_list(cap, NULL, seed);
  int32_t *ord = xmalloc(cap * sizeof *ord);
  double *score = xmalloc(cap * sizeof *score);
  unsigned char *member = xcalloc(cap, 1), *drop = xmalloc(cap);
  double *sc = xmalloc(cap * sizeof *sc);
  uint32_t n = 0, op, i;
  int32_t rr = -1;
  prng r;
  r.s = seed;
  assert_true(ord && score && member && drop && sc);
  for (op = 0; op < ops; op++) {
    uint32_t kind = prng_below(&r, 20);
    if (kind < 4) { /* append */
      int32_t s = ul_append(l, 0, -1, 0, 1, 0, 0);
      if (n == cap) {
        assert_int_equal(s, -1);
      } else {
        assert_true(s >= 0 && (uint32_t)s < cap);
        assert_false(member[s]);
        member[s] = 1;
        score[s] = 1;
        ord[n++] = s;
      }
    } else if (kind < 5) { /* remove some */
      uint32_t m = 0, pct = prng_below(&r, 100);
      memset(drop, 0, cap);
      for (i = 0; i < n; i++) {
        if (prng_below(&r, 100) < pct) {
          drop[ord[i]] = 1;
          member[ord[i]] = 0;
        } else {
          ord[m++] = ord[i];
        }
      }
      n = m;
      ul_remove(l, drop);
    } else if (kind < 9 && n > 0) {
      int32_t s = ord[prng_below(&r, n)];
      ul_up(l, s, 0);
      score[s] = score[s] + 1 > 3 ? 3 : score[s] + 1;
    } else if (kind < 14 && n > 0) {
      int32_t s = ord[prng_below(&r, n)];
      ul_down(l, s, 0);
      score[s] = score[s] - 1 < -3 ? -3 : score[s] - 1;
    } else {
      int32_t want = -1, got;
      if (n > 0) {
        for (i = 0; i < n; i++) sc[i] = score[ord[i]];
        want = ref_pick(sc, n, &rr);
        if (want >= 0) want = ord[want];
      }
      got = ul_pick(l, 0, 0);
      if (got != want)
        fail_msg("cap=%u op %u: pick got %d, expected %d (n=%u)", cap, op,
                 got, want, n);
      if (want >= 0) assert_int_equal(l->rr, rr);
    }
    assert_int_equal(l->n, n);
    if (op % 64 == 0 || cap < 100) {
      for (i = 0; i < n; i++) {
        assert_int_equal(ul_order(l)[i], ord[i]);
        assert_dbl_eq(N(l, ord[i])->score, score[ord[i]]);
      }
      check_invariants(l);
    }
  }
  xfree(sc);
  xfree(drop);
  xfree(member);
  xfree(score);
  xfree(ord);
  xfree(l);
}

static void test_model_random(void **state) {
  (void)state;
  model_case(10, 5000, 21);
  model_case(70, 5000, 22);
  model_case(300, 5000, 23);
  model_case(5000, 20000, 24);
}

/* ---- grow ---------------------------------------------------------------- */

static void test_grow(void **state) {
  ul_list *a = new_list(4, NULL, 5), *b;
  int32_t s, slot;
  uint64_t gen, g[4];
  int i;
  (void)state;
  for (i = 0; i < 4; i++) assert_int_equal(ul_append(a, 1, -1, 0, 1, 0, 0), i);
  assert_int_equal(ul_append(a, 1, -1, 0, 1, 0, 0), -1);
  ul_down(a, 1, 0);
  ul_down(a, 1, 0); /* slot 1 unhealthy */
  ul_up(a, 2, 0);   /* slot 2 score 2 */
  assert_int_equal(ul_pick(a, 0, 0), 0);
  assert_int_equal(ul_pick(a, 0, 0), 2);
  assert_int_equal(a->rr, 2);

  /* start three checks, leave slot 3's start in the ready queue, then let
   * the three deadlines pile up behind it so the ring wraps */
  assert_int_equal(ul_collect(a, 0), 4);
  for (i = 0; i < 3; i++) {
    assert_int_equal(ul_take(a, &slot, &g[i]), UL_EV_START);
    assert_int_equal(slot, i);
  }
  assert_int_equal(a->ready_len, 1);
  assert_int_equal(a->ready_head, 3);
  assert_int_equal(ul_collect(a, 0.1), 4);
  check_invariants(a);

  b = track(malloc(ul_grow_size(a, 100)));
  assert_non_null(b);
  ul_grow(b, 100, a);
  check_invariants(b);
  assert_int_equal(b->cap, 100);
  assert_int_equal(b->n, 4);
  assert_int_equal(b->rr, 2);
  assert_int_equal(b->healthy, 3);
  assert_int_equal(b->unchecked, 4);
  for (i = 0; i < 4; i++) {
    assert_int_equal(ul_order(b)[i], i);
    assert_int_equal(N(b, i)->pos, i);
    assert_dbl_eq(N(b, i)->score, N(a, i)->score);
  }
  xfree(a);

  assert_int_equal(ul_pick(b, 0, 0), 3);
  assert_int_equal(ul_pick(b, 0, 0), 0);
  assert_int_equal(ul_pick(b, 0, 0), 2);

  /* the ready queue survives in FIFO order: slot 3 starts, then the three
   * running checks time out */
  assert_int_equal(ul_take(b, &slot, &gen), UL_EV_START);
  assert_int_equal(slot, 3);
  g[3] = gen;
  assert_true(g[3] > g[2]);
  assert_dbl_eq(N(b, 3)->started, 0.1);
  for (i = 0; i < 3; i++) {
    assert_int_equal(ul_take(b, &slot, &gen), UL_EV_TIMEOUT);
    assert_int_equal(slot, i);
    assert_int_equal(gen, g[i]);
    assert_int_equal(N(b, i)->failures, 1);
  }
  assert_int_equal(ul_take(b, &slot, &gen), UL_EV_NONE);
  /* heap events of the old block still fire */
  assert_dbl_near(ul_next_time(b), 0.2, 1e-12);
  ul_collect(b, ul_next_time(b));
  assert_int_equal(ul_take(b, &slot, &gen), UL_EV_TIMEOUT);
  assert_int_equal(slot, 3);
  assert_int_equal(gen, g[3]);
  assert_int_equal(b->unchecked, 0);
  assert_dbl_eq(ul_next_time(b), 1.0);

  /* appending more works: new slots 4.. */
  for (i = 4; i < 100; i++) {
    s = ul_append(b, 0, -1, 1.0, 1, 0, 0);
    assert_int_equal(s, i);
  }
  assert_int_equal(ul_append(b, 0, -1, 1.0, 1, 0, 0), -1);
  check_invariants(b);
  xfree(b);

  /* a free slot of the old block is handed out before the new ones */
  a = new_list(4, NULL, 5);
  for (i = 0; i < 4; i++) ul_append(a, 0, -1, 0, 1, 0, 0);
  {
    unsigned char drop[4] = {0, 1, 0, 0};
    ul_remove(a, drop);
  }
  b = track(malloc(ul_grow_size(a, 6)));
  assert_non_null(b);
  ul_grow(b, 6, a);
  xfree(a);
  check_invariants(b);
  assert_int_equal(ul_append(b, 0, -1, 0, 1, 0, 0), 1);
  assert_int_equal(ul_append(b, 0, -1, 0, 1, 0, 0), 4);
  assert_int_equal(ul_append(b, 0, -1, 0, 1, 0, 0), 5);
  assert_int_equal(ul_append(b, 0, -1, 0, 1, 0, 0), -1);
  check_invariants(b);
  xfree(b);
}

/* ---- tiers and panic ----------------------------------------------------- */

/* Reports the running check of s, then starts its next one (timeout is
 * long: the other members' checks stay running). */
static void tier_report(ul_list *l, uint64_t *gen, int32_t s, int ok, int tier,
                        double *now) {
  int32_t slot;
  uint64_t g;
  assert_int_equal(ul_report(l, s, gen[s], ok, *now, tier), 1);
  *now = ul_next_time(l);
  assert_true(*now < 1000);
  ul_collect(l, *now);
  assert_int_equal(ul_take(l, &slot, &g), UL_EV_START);
  assert_int_equal(slot, s);
  gen[s] = g;
  check_invariants(l);
}

/* the next n picks, as a string of slot digits */
static void expect_picks(ul_list *l, const char *want) {
  char got[64];
  size_t i, n = strlen(want);
  assert_true(n < sizeof got);
  for (i = 0; i < n; i++) {
    int32_t s = ul_pick(l, 0, 0);
    got[i] = s < 0 ? '-' : (char)('0' + s);
  }
  got[n] = 0;
  if (strcmp(got, want) != 0) fail_msg("picks %s, expected %s", got, want);
}

static ul_list *tier_list(int tmin, int tmax, int tinit, uint64_t *gen,
                          double *now) {
  ul_opts o;
  ul_list *l;
  int32_t slot;
  const char *field;
  int i;
  ul_opts_default(&o);
  o.tier_min = tmin;
  o.tier_max = tmax;
  o.tier_init = tinit;
  o.timeout = 1e6;
  assert_null(ul_opts_validate(&o, &field));
  l = new_list(8, &o, 1);
  for (i = 0; i < 4; i++) assert_int_equal(ul_append(l, 1, -1, 0, 1, 0, 0), i);
  *now = 0;
  ul_collect(l, 0);
  for (i = 0; i < 4; i++) {
    assert_int_equal(ul_take(l, &slot, &gen[i]), UL_EV_START);
    assert_int_equal(slot, i);
  }
  check_invariants(l);
  return l;
}

static void test_tiers(void **state) {
  uint64_t gen[4];
  double now;
  ul_list *l = tier_list(0, 5, 1, gen, &now);
  int i;
  (void)state;
  for (i = 0; i < 4; i++) assert_int_equal(N(l, i)->tier, 1);
  assert_int_equal(l->active_tier, 1);
  assert_int_equal(l->nelig, 4);
  expect_picks(l, "0123");

  tier_report(l, gen, 0, 1, 7, &now); /* clamped to max */
  assert_int_equal(N(l, 0)->tier, 5);
  assert_dbl_eq(N(l, 0)->score, 2);
  assert_int_equal(l->active_tier, 1);
  assert_false(ul_eligible(l, 0));
  expect_picks(l, "123123");

  tier_report(l, gen, 1, 1, 0, &now);
  assert_int_equal(N(l, 1)->tier, 0);
  assert_int_equal(l->active_tier, 0);
  assert_int_equal(l->nelig, 1);
  expect_picks(l, "111");

  tier_report(l, gen, 2, 1, ul_latency_tier(0.00005), &now); /* tier 0 */
  assert_int_equal(N(l, 2)->tier, 0);
  expect_picks(l, "2121");

  tier_report(l, gen, 3, 0, -1, &now); /* a failure keeping its tier */
  assert_int_equal(N(l, 3)->tier, 1);
  assert_dbl_eq(N(l, 3)->score, 0);
  assert_int_equal(l->active_tier, 0);
  expect_picks(l, "21");

  for (i = 0; i < 3; i++) ul_down(l, 1, now); /* 2 -> -1 */
  check_invariants(l);
  assert_int_equal(l->active_tier, 0);
  expect_picks(l, "22");
  for (i = 0; i < 3; i++) ul_down(l, 2, now);
  check_invariants(l);
  assert_int_equal(l->active_tier, 1); /* slot 3, score 0 */
  expect_picks(l, "33");
  ul_down(l, 3, now);
  check_invariants(l);
  assert_int_equal(l->active_tier, 5); /* slot 0 */
  expect_picks(l, "00");
  for (i = 0; i < 3; i++) ul_down(l, 0, now);
  check_invariants(l);
  assert_int_equal(l->active_tier, -1);
  assert_int_equal(l->nelig, 0);
  assert_int_equal(l->total_ew, 0);
  expect_picks(l, "-");

  ul_up(l, 2, now); /* -1 -> 0, tier 0 */
  check_invariants(l);
  assert_int_equal(l->active_tier, 0);
  expect_picks(l, "22");
  tier_report(l, gen, 2, 1, 3, &now); /* healthy slot 2 moves to tier 3 */
  assert_int_equal(l->active_tier, 3);
  expect_picks(l, "2");
  ul_up(l, 3, now); /* slot 3 back at tier 1 */
  check_invariants(l);
  assert_int_equal(l->active_tier, 1);
  expect_picks(l, "33");
  /* an unhealthy member changes tier without moving the active tier */
  tier_report(l, gen, 1, 0, 0, &now);
  assert_int_equal(N(l, 1)->tier, 0);
  assert_int_equal(l->active_tier, 1);
  expect_picks(l, "3");
  xfree(l);

  /* clamping into [2, 4] */
  l = tier_list(2, 4, 3, gen, &now);
  tier_report(l, gen, 0, 1, 0, &now);
  assert_int_equal(N(l, 0)->tier, 2);
  tier_report(l, gen, 1, 1, 9, &now);
  assert_int_equal(N(l, 1)->tier, 4);
  assert_int_equal(l->active_tier, 2);
  expect_picks(l, "00");
  tier_report(l, gen, 0, 1, -1, &now);
  assert_int_equal(N(l, 0)->tier, 2);
  tier_report(l, gen, 0, 1, 3, &now);
  assert_int_equal(l->active_tier, 3); /* slots 0, 2, 3 */
  expect_picks(l, "2302");
  xfree(l);
}

static void test_panic(void **state) {
  ul_opts o;
  ul_list *l;
  int i, k;
  (void)state;
  ul_opts_default(&o);
  o.panic = 0.5;
  l = new_list(8, &o, 1);
  for (i = 0; i < 4; i++) assert_int_equal(ul_append(l, 0, -1, 0, 1, 0, 0), i);
  check_invariants(l);
  assert_int_equal(l->panic_on, 0);
  for (k = 0; k < 2; k++) ul_down(l, 1, 0);
  check_invariants(l);
  assert_int_equal(l->panic_on, 0);
  expect_picks(l, "0230");
  for (k = 0; k < 2; k++) ul_down(l, 2, 0);
  check_invariants(l);
  assert_int_equal(l->panic_on, 0); /* 2 healthy of 4: not below half */
  assert_int_equal(l->nelig, 2);
  expect_picks(l, "30");
  for (k = 0; k < 2; k++) ul_down(l, 3, 0);
  check_invariants(l);
  assert_int_equal(l->healthy, 1);
  assert_int_equal(l->panic_on, 1);
  assert_int_equal(l->nelig, 4);
  assert_int_equal(l->total_ew, 4 * UL_RAMP_STEPS);
  expect_picks(l, "123012301");
  ul_up(l, 3, 0); /* -1 -> 0: 2 healthy, panic over */
  check_invariants(l);
  assert_int_equal(l->panic_on, 0);
  assert_int_equal(l->nelig, 2);
  expect_picks(l, "3030");
  /* every member unhealthy: panic, all four still picked */
  for (k = 0; k < 3; k++) {
    ul_down(l, 0, 0);
    ul_down(l, 3, 0);
  }
  check_invariants(l);
  assert_int_equal(l->healthy, 0);
  assert_int_equal(l->panic_on, 1);
  expect_picks(l, "12301230");
  /* removing members recomputes panic: 1 of 2 healthy is not below half */
  ul_up(l, 1, 0);
  ul_up(l, 1, 0);
  {
    unsigned char drop[8] = {0, 0, 1, 1, 0, 0, 0, 0};
    ul_remove(l, drop);
  }
  check_invariants(l);
  assert_int_equal(l->panic_on, 0);
  expect_picks(l, "111");
  xfree(l);

  /* panic overrides tiers, and weighted sees every weight */
  ul_opts_default(&o);
  o.panic = 0.5;
  o.strategy = UL_WEIGHTED;
  o.tier_max = 3;
  l = new_list(16, &o, 1);
  for (i = 0; i < 4; i++)
    assert_int_equal(ul_append(l, 0, -1, 0, (uint32_t)(i + 1), 0, 0), i);
  for (k = 0; k < 2; k++) {
    ul_down(l, 0, 0);
    ul_down(l, 1, 0);
  }
  check_invariants(l);
  assert_int_equal(l->panic_on, 0);
  assert_int_equal(l->total_ew, (3 + 4) * UL_RAMP_STEPS);
  for (k = 0; k < 2; k++) ul_down(l, 2, 0);
  check_invariants(l);
  assert_int_equal(l->panic_on, 1);
  assert_int_equal(l->total_ew, (1 + 2 + 3 + 4) * UL_RAMP_STEPS);
  {
    uint32_t cnt[4] = {0};
    for (k = 0; k < 10; k++) {
      int32_t s = ul_pick(l, 0, 0);
      assert_true(s >= 0 && s < 4);
      cnt[s]++;
    }
    for (i = 0; i < 4; i++) assert_int_equal(cnt[i], (uint32_t)(i + 1));
  }
  check_invariants(l);
  xfree(l);
}

/* ---- slow start ---------------------------------------------------------- */

static void test_slow_start(void **state) {
  static const int strategies[] = {UL_WEIGHTED, UL_RANDOM, UL_HASH};
  size_t si;
  (void)state;
  for (si = 0; si < 3; si++) {
    ul_opts o;
    ul_list *l;
    int i, k;
    ul_opts_default(&o);
    o.strategy = strategies[si];
    o.slow_start = 10;
    l = new_list(16, &o, 3);
    for (i = 0; i < 3; i++)
      assert_int_equal(ul_append(l, 0, -1, 0, 7, (uint64_t)i * 7777, 0), i);
    for (i = 0; i < 3; i++) assert_int_equal(N(l, i)->ramp, UL_RAMP_STEPS);
    assert_int_equal(l->ramping, 0);
    ul_down(l, 1, 0);
    ul_down(l, 1, 0);
    assert_false(ul_eligible(l, 1));
    assert_int_equal(l->ramping, 0);
    ul_up(l, 1, 0); /* healthy again at 0: ramp 1 */
    assert_true(ul_eligible(l, 1));
    assert_int_equal(N(l, 1)->ramp, 1);
    assert_int_equal(N(l, 1)->ew, 7);
    assert_int_equal(l->total_ew, 7 + 2 * 70);
    assert_int_equal(l->ramping, 1);
    assert_dbl_eq(l->ramp_next, 1);
    check_invariants(l);
    ul_pick(l, 5, 0);
    ul_pick(l, 5, 0.5);
    assert_int_equal(N(l, 1)->ramp, 1);
    for (k = 2; k <= UL_RAMP_STEPS; k++) {
      ul_pick(l, 5, (double)(k - 1) - 0.25);
      if (N(l, 1)->ramp != k - 1)
        fail_msg("strategy %d at %.2f: ramp %d, expected %d", o.strategy,
                 (double)(k - 1) - 0.25, N(l, 1)->ramp, k - 1);
      ul_pick(l, 5, (double)(k - 1));
      if (N(l, 1)->ramp != k)
        fail_msg("strategy %d at %d: ramp %d, expected %d", o.strategy, k - 1,
                 N(l, 1)->ramp, k);
      assert_int_equal(N(l, 1)->ew, 7 * k);
      assert_int_equal(l->total_ew, 7 * k + 2 * 70);
      check_invariants(l);
      if (k < UL_RAMP_STEPS) {
        assert_int_equal(l->ramping, 1);
        assert_dbl_eq(l->ramp_next, k);
      }
    }
    assert_int_equal(l->ramping, 0);
    ul_pick(l, 5, 100);
    assert_int_equal(N(l, 1)->ramp, UL_RAMP_STEPS);
    assert_int_equal(l->ramping, 0);

    /* a late pick jumps straight to the step its time reached; two members
     * ramping at once; an appended member ramps from its append */
    ul_down(l, 0, 100);
    ul_down(l, 0, 100);
    ul_up(l, 0, 100);
    ul_down(l, 2, 100);
    ul_down(l, 2, 100);
    ul_up(l, 2, 103.5);
    assert_int_equal(ul_append(l, 0, -1, 104, 5, 99, 1), 3);
    assert_int_equal(N(l, 3)->ramp, 1);
    assert_int_equal(l->ramping, 3);
    assert_dbl_eq(l->ramp_next, 101);
    check_invariants(l);
    ul_pick(l, 5, 106.2);
    assert_int_equal(N(l, 0)->ramp, 7);
    assert_int_equal(N(l, 2)->ramp, 3);
    assert_int_equal(N(l, 3)->ramp, 3);
    assert_int_equal(l->ramping, 3);
    assert_dbl_eq(l->ramp_next, 106.5);
    check_invariants(l);
    ul_pick(l, 5, 1000);
    for (i = 0; i < 4; i++) assert_int_equal(N(l, i)->ramp, UL_RAMP_STEPS);
    assert_int_equal(l->ramping, 0);
    assert_int_equal(l->total_ew, 3 * 70 + 50);
    check_invariants(l);
    xfree(l);
  }
}

/* With slow start, weighted shares follow the ramped weight. */
static void test_slow_start_weighted_share(void **state) {
  ul_opts o;
  ul_list *l;
  uint32_t cnt[2] = {0}, i;
  (void)state;
  ul_opts_default(&o);
  o.strategy = UL_WEIGHTED;
  o.slow_start = 10;
  l = new_list(16, &o, 3);
  ul_append(l, 0, -1, 0, 10, 0, 0);
  ul_append(l, 0, -1, 0, 10, 0, 1); /* ramp 1: effective 10 vs 100 */
  assert_int_equal(N(l, 1)->ew, 10);
  for (i = 0; i < 110; i++) cnt[ul_pick(l, 0, 0.5)]++;
  assert_int_equal(cnt[0], 100);
  assert_int_equal(cnt[1], 10);
  check_invariants(l);
  xfree(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_opts, teardown),
      cmocka_unit_test_teardown(test_size, teardown),
      cmocka_unit_test_teardown(test_latency_tier, teardown),
      cmocka_unit_test_teardown(test_hash, teardown),
      cmocka_unit_test_teardown(test_pick_basic, teardown),
      cmocka_unit_test_teardown(test_go_sequence, teardown),
      cmocka_unit_test_teardown(test_duplicates, teardown),
      cmocka_unit_test_teardown(test_remove_reconcile, teardown),
      cmocka_unit_test_teardown(test_remove_keeps_order_scores, teardown),
      cmocka_unit_test_teardown(test_model_random, teardown),
      cmocka_unit_test_teardown(test_grow, teardown),
      cmocka_unit_test_teardown(test_tiers, teardown),
      cmocka_unit_test_teardown(test_panic, teardown),
      cmocka_unit_test_teardown(test_slow_start, teardown),
      cmocka_unit_test_teardown(test_slow_start_weighted_share, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
