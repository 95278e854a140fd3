/*
 * test_strategies.c - the pick strategies (src/core/pick.c, rr.c,
 * weighted.c, random.c, maglev.c), each against a naive model or by its
 * statistics: round robin on the bitmap at word and level edges, weighted
 * (nginx's smooth weighted round robin, with rebasing), random, least_conn
 * (exact and two choices), hash (Maglev); their sizes and growth.
 */
#include "helpers.h"

/* ---- round robin: the bitmap --------------------------------------------- */

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* Keeps only the positions in keep[0..k) healthy and checks that picks cycle
 * over exactly them, in order, with wrap-around. */
static void bitmap_case(uint32_t n, const uint32_t *keep_in, uint32_t k_in) {
  ul_list *l = new_list(n, NULL, 7);
  uint32_t keep[64], k = 0, i, j, p;
  unsigned char *healthy = xcalloc(n, 1);
  assert_non_null(healthy);
  assert_true(k_in <= 64);
  for (i = 0; i < k_in; i++)
    if (keep_in[i] < n && !healthy[keep_in[i]]) {
      healthy[keep_in[i]] = 1;
      keep[k++] = keep_in[i];
    }
  qsort(keep, k, sizeof keep[0], cmp_u32);
  for (i = 0; i < n; i++) assert_int_equal(ul_append(l, 0, -1, 0, 1, 0, 0), (int32_t)i);
  assert_int_equal(ul_append(l, 0, -1, 0, 1, 0, 0), -1); /* full */
  for (p = 0; p < n; p++)
    if (!healthy[p]) {
      ul_down(l, (int32_t)p, 0);
      ul_down(l, (int32_t)p, 0);
    }
  assert_int_equal(l->healthy, k);
  check_invariants(l);
  if (k == 0) {
    assert_int_equal(ul_pick(l, 0, 0), -1);
    assert_int_equal(l->rr, -1);
  } else {
    for (j = 0; j < 3 * k + 2; j++) {
      int32_t got = ul_pick(l, 0, 0);
      if (got != (int32_t)keep[j % k])
        fail_msg("n=%u pick #%u: got %d, expected %u", n, j, got,
                 keep[j % k]);
    }
    /* start somewhere in the middle: bring the last healthy one back up
     * from below and check the next pick wraps to the first */
    if (k >= 2) {
      /* rr now at keep[(3k+1) % k]; make the very last position healthy
       * and verify it is visited right before wrapping */
      uint32_t last = n - 1;
      if (!healthy[last]) {
        ul_up(l, (int32_t)last, 0);
        ul_up(l, (int32_t)last, 0);
        assert_dbl_eq(N(l, (int32_t)last)->score, 1); /* 1-2+2 */
        healthy[last] = 1;
        keep[k++] = last;
        qsort(keep, k, sizeof keep[0], cmp_u32);
      }
      /* advance to the largest healthy below last */
      for (j = 0; j < 2 * k; j++) {
        int32_t got = ul_pick(l, 0, 0);
        if (got == (int32_t)keep[k - 2]) break;
      }
      assert_int_equal(ul_pick(l, 0, 0), (int32_t)last);
      assert_int_equal(ul_pick(l, 0, 0), (int32_t)keep[0]);
    }
  }
  check_invariants(l);
  xfree(healthy);
  xfree(l);
}

static void test_bitmap_scale(void **state) {
  static const uint32_t sizes[] = {64, 65, 4096, 4097, 10000, 262145};
  size_t si;
  (void)state;
  for (si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
    uint32_t n = sizes[si];
    uint32_t a[] = {0,    1,    62,   63,     64,     65,    127,
                    128,  4095, 4096, 4097,   n / 2,  n - 2, n - 1,
                    9999, 262143, 262144, 200000};
    uint32_t only_first[] = {0};
    uint32_t only_last[] = {n - 1};
    uint32_t mid_far[] = {n / 3, n - 1};
    uint32_t word_edges[] = {63, 64, 4095, 4096};
    bitmap_case(n, a, sizeof a / sizeof a[0]);
    bitmap_case(n, only_first, 1);
    bitmap_case(n, only_last, 1);
    bitmap_case(n, mid_far, 2);
    bitmap_case(n, word_edges, 4);
    bitmap_case(n, NULL, 0);
  }
}

static void random_vs_reference(uint32_t n, uint32_t ops, uint64_t seed) {
  ul_list *l = new_list(n, NULL, 3);
  double *ref = xmalloc(n * sizeof *ref);
  int32_t rr = -1;
  prng r;
  uint32_t i, op, healthy;
  r.s = seed;
  assert_non_null(ref);
  for (i = 0; i < n; i++) {
    ul_append(l, 0, -1, 0, 1, 0, 0);
    ref[i] = 1;
  }
  for (op = 0; op < ops; op++) {
    uint32_t kind = prng_below(&r, 10);
    uint32_t s = prng_below(&r, n);
    if (kind < 3) { /* up */
      ul_up(l, (int32_t)s, 0);
      ref[s] = ref[s] + 1 > 3 ? 3 : ref[s] + 1;
    } else if (kind < 6) { /* down */
      ul_down(l, (int32_t)s, 0);
      ref[s] = ref[s] - 1 < -3 ? -3 : ref[s] - 1;
    } else if (kind < 9) { /* pick */
      int32_t want = ref_pick(ref, n, &rr);
      int32_t got = ul_pick(l, 0, 0);
      if (got != want)
        fail_msg("n=%u op %u: pick got %d, expected %d", n, op, got, want);
      assert_int_equal(l->rr, rr);
    } else { /* a burst of downs to make most members unhealthy */
      uint32_t b;
      for (b = 0; b < n / 4; b++) {
        uint32_t t = prng_below(&r, n);
        ul_down(l, (int32_t)t, 0);
        ref[t] = ref[t] - 1 < -3 ? -3 : ref[t] - 1;
      }
    }
    assert_dbl_eq(N(l, (int32_t)s)->score, ref[s]);
  }
  healthy = 0;
  for (i = 0; i < n; i++) {
    assert_dbl_eq(N(l, (int32_t)i)->score, ref[i]);
    healthy += ref[i] >= 0;
  }
  assert_int_equal(l->healthy, healthy);
  check_invariants(l);
  xfree(ref);
  xfree(l);
}

static void test_bitmap_random(void **state) {
  (void)state;
  random_vs_reference(200, 5000, 11);
  random_vs_reference(5000, 5000, 12);
  random_vs_reference(65, 4000, 13);
}

/* ---- weighted: nginx smooth weighted round robin ------------------------- */

#define T32 (INT64_C(1) << 32)

/* The model keeps, by slot, nginx's current weight (absolute), the weight
 * and the score; by position, the slots. Default options: eligible means
 * healthy, and the effective weight is weight x 10 (no slow start). */
typedef struct {
  uint32_t cap, n;
  int32_t *ord;
  int64_t *cur;
  uint32_t *weight;
  double *score;
} wmodel;

static void wm_init(wmodel *m, uint32_t cap) {
  m->cap = cap;
  m->n = 0;
  m->ord = xmalloc(cap * sizeof *m->ord);
  m->cur = xcalloc(cap, sizeof *m->cur);
  m->weight = xcalloc(cap, sizeof *m->weight);
  m->score = xcalloc(cap, sizeof *m->score);
}

static void wm_free(wmodel *m) {
  xfree(m->ord);
  xfree(m->cur);
  xfree(m->weight);
  xfree(m->score);
}

/* one nginx pick over the eligible members: slot, or -1 */
static int32_t wm_pick(wmodel *m) {
  int64_t total = 0, best = 0;
  int32_t bs = -1;
  uint32_t p;
  for (p = 0; p < m->n; p++) {
    int32_t s = m->ord[p];
    if (m->score[s] < 0) continue;
    m->cur[s] += (int64_t)m->weight[s] * UL_RAMP_STEPS;
    total += (int64_t)m->weight[s] * UL_RAMP_STEPS;
    if (bs < 0 || m->cur[s] > best) { /* ties: the lowest position */
      best = m->cur[s];
      bs = s;
    }
  }
  if (bs >= 0) m->cur[bs] -= total;
  return bs;
}

static int32_t wm_append(ul_list *l, wmodel *m, uint32_t w) {
  int32_t s = ul_append(l, 0, -1, 0, w, 0, 0);
  if (m->n == m->cap) {
    assert_int_equal(s, -1);
    return -1;
  }
  assert_true(s >= 0 && (uint32_t)s < m->cap);
  m->ord[m->n++] = s;
  m->cur[s] = 0;
  m->weight[s] = w;
  m->score[s] = 1;
  return s;
}

static void wm_compare(const ul_list *l, const wmodel *m, uint32_t op) {
  uint32_t p;
  assert_int_equal(l->n, m->n);
  for (p = 0; p < m->n; p++) {
    int32_t s = m->ord[p];
    assert_int_equal(ul_order(l)[p], s);
    assert_int_equal(N(l, s)->weight, m->weight[s]);
    assert_dbl_eq(N(l, s)->score, m->score[s]);
    if (true_cur(l, s) != m->cur[s])
      fail_msg("op %u: slot %d current %lld, model %lld", op, s,
               (long long)true_cur(l, s), (long long)m->cur[s]);
  }
}

static uint32_t rand_weight(prng *r) {
  /* half small (many ties and parallel lines), half 1..1000 */
  return prng_below(r, 2) ? 1 + prng_below(r, 3) : 1 + prng_below(r, 1000);
}

/* Moves the pick count to T without moving any current weight, as if T
 * picks had happened; an empty remove rebuilds the tree at T. */
static void shift_t(ul_list *l, int64_t T) {
  unsigned char *none = xcalloc(l->cap, 1);
  uint32_t p;
  for (p = 0; p < l->n; p++) {
    int32_t s = ul_order(l)[p];
    ul_node *x = N(l, s);
    /* each line in its tree's count (weighted.c), which moves to T */
    if (l->lazy) x->cur -= x->ew * (T - ulb_kst_count(l, (uint32_t)kst_tree_of(l, s)));
    else if (x->elig) x->cur -= x->ew * (T - l->t);
  }
  for (p = 0; p < l->kst_ntree; p++) /* every count at T (ulb_kst_count) */
    l->kst_c[p] = l->kst_mode == 2 || p == l->kst_pick ? 0 : T;
  l->t = T;
  ul_remove(l, none);
  xfree(none);
}

/* Random picks, health flips, weights and remove/append against the
 * model. t0 > 0: the pick count starts there (before any member);
 * shift_at < ops: at that op the pick count jumps to just below 2^32. */
static void weighted_vs_model(uint32_t cap, uint32_t ops, uint64_t seed,
                              int64_t t0, uint32_t shift_at) {
  ul_list *l = new_list_strat(cap, UL_WEIGHTED, seed);
  unsigned char *drop = xmalloc(cap);
  wmodel m;
  prng r;
  uint32_t op, i, fill, every = cap > 1000 ? 97 : 1, picks = 0, rebased = 0;
  r.s = seed * 7919 + cap;
  wm_init(&m, cap);
  if (t0) l->t = t0;
  fill = cap <= 9 ? cap : cap / 2 + prng_below(&r, cap / 2);
  for (i = 0; i < fill; i++) wm_append(l, &m, rand_weight(&r));
  wm_compare(l, &m, 0);
  check_invariants(l);
  for (op = 0; op < ops; op++) {
    uint32_t kind = prng_below(&r, 100);
    int64_t before_t = l->t;
    if (op == shift_at) shift_t(l, T32 - 1 - prng_below(&r, 20));
    if (m.n == 0) kind = 99; /* empty: append */
    if (kind < 50) {
      int32_t want = wm_pick(&m), got = ul_pick(l, 0, 0);
      if (got != want)
        fail_msg("cap=%u op %u (pick %u, t=%lld): got %d, expected %d", cap,
                 op, picks, (long long)before_t, got, want);
      if (want >= 0) picks++;
      if (want >= 0 && l->t < before_t) rebased++;
    } else if (kind < 62) {
      int32_t s = m.ord[prng_below(&r, m.n)];
      ul_down(l, s, 0);
      m.score[s] = m.score[s] - 1 < -3 ? -3 : m.score[s] - 1;
    } else if (kind < 74) {
      int32_t s = m.ord[prng_below(&r, m.n)];
      ul_up(l, s, 0);
      m.score[s] = m.score[s] + 1 > 3 ? 3 : m.score[s] + 1;
    } else if (kind < 92) {
      int32_t s = m.ord[prng_below(&r, m.n)];
      uint32_t w = rand_weight(&r);
      ul_set_weight(l, s, w);
      m.weight[s] = w;
    } else if (kind < 95) { /* remove a few, keeping the others' order */
      uint32_t k = 0, ndrop = 1 + prng_below(&r, 3);
      memset(drop, 0, cap);
      for (i = 0; i < ndrop; i++) drop[m.ord[prng_below(&r, m.n)]] = 1;
      for (i = 0; i < m.n; i++)
        if (!drop[m.ord[i]]) m.ord[k++] = m.ord[i];
      m.n = k;
      ul_remove(l, drop);
    } else {
      uint32_t k = 1 + prng_below(&r, 3);
      for (i = 0; i < k; i++) wm_append(l, &m, rand_weight(&r));
    }
    if (op % every == 0) {
      wm_compare(l, &m, op);
      check_invariants(l);
    }
  }
  wm_compare(l, &m, ops);
  check_invariants(l);
  if (picks < ops / 4) fail_msg("cap %u: only %u picks found a member", cap, picks);
  if (t0 || shift_at < ops) { /* the rebase really happened */
    assert_true(rebased >= 1);
    assert_true(l->t < INT64_C(1) << 31);
  }
  wm_free(&m);
  xfree(drop);
  xfree(l);
}

static void test_weighted_model(void **state) {
  (void)state;
  weighted_vs_model(5, 6000, 1, 0, UINT32_MAX);    /* scan */
  weighted_vs_model(9, 6000, 2, 0, UINT32_MAX);    /* tree from here on */
  weighted_vs_model(64, 6000, 3, 0, UINT32_MAX);
  weighted_vs_model(300, 6000, 4, 0, UINT32_MAX);
  weighted_vs_model(5000, 6000, 5, 0, UINT32_MAX);
}

static void test_weighted_rebase(void **state) {
  (void)state;
  /* the pick count starts 3 below 2^32, before any member */
  weighted_vs_model(5, 3000, 11, T32 - 3, UINT32_MAX);
  weighted_vs_model(16, 3000, 12, T32 - 3, UINT32_MAX);
  weighted_vs_model(300, 3000, 13, T32 - 3, UINT32_MAX);
  /* a jump to just below 2^32 in the middle of a run */
  weighted_vs_model(5, 3000, 14, 0, 1500);
  weighted_vs_model(64, 3000, 15, 0, 1500);
  weighted_vs_model(300, 3000, 16, 0, 1500);
}

/* nginx's example, in a list with the tree (cap > 8) and with the scan */
static void test_weighted_511(void **state) {
  static const uint32_t caps[] = {16, 5};
  size_t ci;
  (void)state;
  for (ci = 0; ci < 2; ci++) {
    ul_list *l = new_list_strat(caps[ci], UL_WEIGHTED, 1);
    int32_t a = ul_append(l, 0, -1, 0, 5, 0, 0);
    int32_t b = ul_append(l, 0, -1, 0, 1, 0, 0);
    int32_t c = ul_append(l, 0, -1, 0, 1, 0, 0);
    const int32_t want[7] = {a, a, b, a, c, a, a};
    int round, i;
    assert_int_equal(l->kst_size, caps[ci] > 8 ? 16 : 0);
    for (round = 0; round < 3; round++) {
      for (i = 0; i < 7; i++) {
        int32_t got = ul_pick(l, 0, 0);
        if (got != want[i])
          fail_msg("cap %u round %d pick %d: got %d, expected %d", caps[ci],
                   round, i, got, want[i]);
        check_invariants(l);
      }
      /* a whole cycle brings every current weight back to 0 */
      assert_int_equal(true_cur(l, a), 0);
      assert_int_equal(true_cur(l, b), 0);
      assert_int_equal(true_cur(l, c), 0);
    }
    xfree(l);
  }
}

/* Over sum(weights) picks from a fresh list, each member exactly its
 * weight. */
static void test_weighted_exact_shares(void **state) {
  enum { M = 50 };
  ul_list *l = new_list_strat(64, UL_WEIGHTED, 1);
  uint32_t w[M], cnt[M] = {0}, sum = 0, i, round;
  prng r;
  (void)state;
  r.s = 4242;
  for (i = 0; i < M; i++) {
    w[i] = 1 + prng_below(&r, 40);
    sum += w[i];
    assert_int_equal(ul_append(l, 0, -1, 0, w[i], 0, 0), (int32_t)i);
  }
  for (round = 0; round < 2; round++) {
    memset(cnt, 0, sizeof cnt);
    for (i = 0; i < sum; i++) {
      int32_t s = ul_pick(l, 0, 0);
      assert_true(s >= 0 && s < M);
      cnt[s]++;
    }
    for (i = 0; i < M; i++) {
      if (cnt[i] != w[i])
        fail_msg("round %u slot %u: picked %u times, weight %u", round, i,
                 cnt[i], w[i]);
      assert_int_equal(true_cur(l, (int32_t)i), 0);
    }
    check_invariants(l);
  }
  xfree(l);
}

/* ---- random -------------------------------------------------------------- */

static double chi_square(const uint32_t *cnt, const double *w, int k) {
  double total = 0, wsum = 0, x = 0;
  int i;
  for (i = 0; i < k; i++) {
    total += cnt[i];
    wsum += w[i];
  }
  for (i = 0; i < k; i++) {
    double e = total * w[i] / wsum;
    x += (cnt[i] - e) * (cnt[i] - e) / e;
  }
  return x;
}

static void random_counts(ul_list *l, uint32_t picks, uint32_t *cnt,
                          uint32_t k) {
  uint32_t i;
  memset(cnt, 0, k * sizeof *cnt);
  for (i = 0; i < picks; i++) {
    int32_t s = ul_pick(l, 0, 0);
    assert_true(s >= 0 && (uint32_t)s < k);
    assert_true(ul_eligible(l, s));
    cnt[s]++;
  }
}

static void test_random(void **state) {
  ul_list *l = new_list_strat(8, UL_RANDOM, 12345);
  static const uint32_t w0[5] = {1, 1, 2, 3, 3};
  double w[5];
  uint32_t cnt[5], i;
  double x;
  (void)state;
  for (i = 0; i < 5; i++) {
    assert_int_equal(ul_append(l, 0, -1, 0, w0[i], 0, 0), (int32_t)i);
    w[i] = w0[i];
  }
  check_invariants(l);
  random_counts(l, 200000, cnt, 5);
  x = chi_square(cnt, w, 5);
  if (!(x < 20))
    fail_msg("chi-square %.3f (counts %u %u %u %u %u)", x, cnt[0], cnt[1],
             cnt[2], cnt[3], cnt[4]);

  /* slot 2 unhealthy: never picked; the others keep their shares */
  ul_down(l, 2, 0);
  ul_down(l, 2, 0);
  assert_false(ul_eligible(l, 2));
  check_invariants(l);
  random_counts(l, 100000, cnt, 5);
  assert_int_equal(cnt[2], 0);
  w[2] = 0;
  {
    uint32_t c4[4] = {cnt[0], cnt[1], cnt[3], cnt[4]};
    double w4[4] = {1, 1, 3, 3};
    x = chi_square(c4, w4, 4);
    if (!(x < 20)) fail_msg("chi-square without slot 2: %.3f", x);
  }

  /* weights change: slot 0 becomes 6, slot 3 becomes 1; slot 2 back */
  ul_set_weight(l, 0, 6);
  ul_set_weight(l, 3, 1);
  ul_up(l, 2, 0);
  assert_true(ul_eligible(l, 2));
  check_invariants(l);
  random_counts(l, 200000, cnt, 5);
  w[0] = 6;
  w[2] = 2;
  w[3] = 1;
  x = chi_square(cnt, w, 5);
  if (!(x < 20))
    fail_msg("chi-square after set_weight %.3f (counts %u %u %u %u %u)", x,
             cnt[0], cnt[1], cnt[2], cnt[3], cnt[4]);
  /* and the weight 1000 member takes about 1000/1010 of the picks */
  ul_set_weight(l, 4, 1000);
  ul_set_weight(l, 0, 1);
  ul_set_weight(l, 1, 1);
  ul_set_weight(l, 2, 1);
  ul_set_weight(l, 3, 1);
  random_counts(l, 101000, cnt, 5);
  assert_dbl_in(cnt[4] / 101000.0, 0.994, 0.998); /* 1000 / 1004 */
  for (i = 0; i < 4; i++) assert_true(cnt[i] > 0);
  check_invariants(l);
  xfree(l);
}

/* random over many members with random health and weights: only eligible
 * members are picked; the Fenwick tree follows (check_invariants) */
static void test_random_fuzz(void **state) {
  enum { CAP = 300 };
  ul_list *l = new_list_strat(CAP, UL_RANDOM, 777);
  unsigned char drop[CAP];
  prng r;
  uint32_t op, i;
  (void)state;
  r.s = 31;
  for (i = 0; i < 250; i++) ul_append(l, 0, -1, 0, 1 + prng_below(&r, 1000), 0, 0);
  for (op = 0; op < 4000; op++) {
    uint32_t kind = prng_below(&r, 10);
    int32_t s = l->n ? ul_order(l)[prng_below(&r, l->n)] : -1;
    if (s < 0) kind = 9;
    if (kind < 4) {
      int32_t got = ul_pick(l, 0, 0);
      if (l->nelig == 0) assert_int_equal(got, -1);
      else assert_true(got >= 0 && ul_eligible(l, got));
    } else if (kind < 6) {
      ul_down(l, s, 0);
    } else if (kind < 8) {
      ul_up(l, s, 0);
    } else if (kind < 9) {
      ul_set_weight(l, s, 1 + prng_below(&r, 1000));
    } else if (s >= 0 && prng_below(&r, 2)) {
      memset(drop, 0, sizeof drop);
      drop[s] = 1;
      ul_remove(l, drop);
    } else {
      ul_append(l, 0, -1, 0, 1 + prng_below(&r, 1000), 0, 0);
    }
    if (op % 7 == 0) check_invariants(l);
  }
  check_invariants(l);
  xfree(l);
}

/* ---- least_conn ---------------------------------------------------------- */

/* the list's generator (xorshift64*) and draw (Lemire), replayed */
static uint64_t xs_next(uint64_t *st) {
  uint64_t x = *st;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *st = x;
  return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t mulhi64(uint64_t a, uint64_t b) {
  uint64_t alo = (uint32_t)a, ahi = a >> 32, blo = (uint32_t)b, bhi = b >> 32;
  uint64_t p0 = alo * blo, p1 = alo * bhi, p2 = ahi * blo, p3 = ahi * bhi;
  uint64_t mid = (p0 >> 32) + (uint32_t)p1 + (uint32_t)p2;
  return p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32);
}

typedef struct {
  uint32_t cap, n;
  int32_t rr;
  int32_t *ord;
  uint32_t *inflight; /* by slot */
  double *score;      /* by slot */
} lcmodel;

/* least_conn's pick, exact for up to 16 eligible; above, the better of
 * the two members the list's generator draws from the set of the eligible (ties:
 * the one round robin reaches first). Position, or -1. */
static int32_t lc_model_pick(lcmodel *m, const ul_list *l, int *p2c) {
  uint32_t nelig = 0, j, from, best = 0;
  int found = 0;
  for (j = 0; j < m->n; j++) nelig += m->score[m->ord[j]] >= 0;
  *p2c = 0;
  if (nelig == 0) return -1;
  if (m->rr >= (int32_t)m->n) m->rr = (int32_t)(((uint32_t)m->rr + 1) % m->n) - 1;
  from = (uint32_t)(m->rr + 1);
  if (from >= m->n) from = 0;
  if (nelig <= UL_LEAST_CONN_EXACT) {
    for (j = 0; j < m->n; j++) {
      uint32_t p = (from + j) % m->n;
      int32_t s = m->ord[p];
      if (m->score[s] < 0) continue;
      if (!found || m->inflight[s] < m->inflight[m->ord[best]]) {
        best = p;
        found = 1;
      }
    }
  } else {
    uint64_t st = l->rng;
    uint64_t r1 = mulhi64(xs_next(&st), nelig);
    uint64_t r2 = mulhi64(xs_next(&st), nelig - 1);
    uint32_t a, b, da, db;
    uint32_t ia, ib;
    const int32_t *dense = ulb_dense(l, l->set_pick);
    if (r2 >= r1) r2++;
    a = (uint32_t)dense[r1];
    b = (uint32_t)dense[r2];
    ia = m->inflight[m->ord[a]];
    ib = m->inflight[m->ord[b]];
    da = a >= from ? a - from : a + m->n - from;
    db = b >= from ? b - from : b + m->n - from;
    best = ia < ib ? a : ib < ia ? b : da <= db ? a : b;
    *p2c = 1;
  }
  m->rr = (int32_t)best;
  m->inflight[m->ord[best]]++;
  return (int32_t)best;
}

static void lc_vs_model(uint32_t cap, uint32_t ops, uint64_t seed) {
  ul_list *l = new_list_strat(cap, UL_LEAST_CONN, seed);
  unsigned char *drop = xmalloc(cap);
  lcmodel m;
  prng r;
  uint32_t op, i, exact = 0, p2c_picks = 0;
  r.s = seed;
  m.cap = cap;
  m.n = 0;
  m.rr = -1;
  m.ord = xmalloc(cap * sizeof *m.ord);
  m.inflight = xcalloc(cap, sizeof *m.inflight);
  m.score = xcalloc(cap, sizeof *m.score);
  for (i = 0; i < cap; i++) {
    int32_t s = ul_append(l, 0, -1, 0, 1 + prng_below(&r, 5), 0, 0);
    m.ord[m.n++] = s;
    m.score[s] = 1;
    m.inflight[s] = 0;
  }
  for (op = 0; op < ops; op++) {
    uint32_t kind = prng_below(&r, 100);
    int32_t s = m.n ? m.ord[prng_below(&r, m.n)] : -1;
    if (s < 0) kind = 99; /* empty: append */
    if (kind < 45) {
      int p2c;
      uint32_t before_max_other = 0, j;
      int32_t want = lc_model_pick(&m, l, &p2c), got;
      got = ul_pick(l, 0, 0);
      if (want >= 0) want = m.ord[want];
      if (got != want)
        fail_msg("cap %u op %u (%s): got %d, expected %d", cap, op,
                 p2c ? "two choices" : "exact", got, want);
      if (got >= 0) {
        assert_int_equal(l->rr, m.rr);
        if (p2c) {
          /* black box: never worse than every other eligible member */
          for (j = 0; j < m.n; j++) {
            int32_t o = m.ord[j];
            if (o != got && m.score[o] >= 0 && m.inflight[o] > before_max_other)
              before_max_other = m.inflight[o];
          }
          assert_true(m.inflight[got] - 1 <= before_max_other);
          p2c_picks++;
        } else {
          exact++;
        }
      }
    } else if (kind < 70) {
      int want = m.inflight[s] > 0;
      assert_int_equal(ul_release(l, s), want);
      if (want) m.inflight[s]--;
    } else if (kind < 82) {
      ul_down(l, s, 0);
      m.score[s] = m.score[s] - 1 < -3 ? -3 : m.score[s] - 1;
    } else if (kind < 94) {
      ul_up(l, s, 0);
      m.score[s] = m.score[s] + 1 > 3 ? 3 : m.score[s] + 1;
    } else if (kind < 97) {
      uint32_t k = 0;
      memset(drop, 0, cap);
      drop[s] = 1;
      for (i = 0; i < m.n; i++)
        if (!drop[m.ord[i]]) m.ord[k++] = m.ord[i];
      m.n = k;
      ul_remove(l, drop);
    } else if (m.n < cap) {
      int32_t t = ul_append(l, 0, -1, 0, 1, 0, 0);
      assert_true(t >= 0);
      m.ord[m.n++] = t;
      m.score[t] = 1;
      m.inflight[t] = 0;
    }
    assert_int_equal(l->n, m.n);
    for (i = 0; i < m.n; i++) {
      int32_t t = m.ord[i];
      assert_int_equal(ul_order(l)[i], t);
      assert_int_equal(N(l, t)->inflight, m.inflight[t]);
    }
    check_invariants(l);
  }
  /* both regimes were exercised */
  if (exact < 200 || (cap > UL_LEAST_CONN_EXACT && p2c_picks < 200))
    fail_msg("cap %u: %u exact picks, %u two-choice picks", cap, exact,
             p2c_picks);
  xfree(m.score);
  xfree(m.inflight);
  xfree(m.ord);
  xfree(drop);
  xfree(l);
}

static void test_least_conn_model(void **state) {
  (void)state;
  lc_vs_model(10, 6000, 1);
  lc_vs_model(16, 6000, 2);
  lc_vs_model(28, 8000, 3); /* the eligible count wanders across 16 */
  lc_vs_model(40, 8000, 4);
}

/* Above 16 eligible, black box: a member with 1000 in flight is not picked
 * while the others have fewer; after health flips every eligible member
 * can be picked and an ineligible one never. */
static void test_least_conn_p2c(void **state) {
  enum { CAP = 128, M = 100 };
  ul_list *l = new_list_strat(CAP, UL_LEAST_CONN, 99);
  uint32_t cnt[CAP], i, round, maxo;
  prng r;
  (void)state;
  r.s = 5;
  for (i = 0; i < M; i++) assert_int_equal(ul_append(l, 0, -1, 0, 1, 0, 0), (int32_t)i);
  /* slot 0 alone eligible: 1000 picks go to it */
  for (i = 1; i < M; i++) {
    ul_down(l, (int32_t)i, 0);
    ul_down(l, (int32_t)i, 0);
  }
  assert_int_equal(l->nelig, 1);
  for (i = 0; i < 1000; i++) assert_int_equal(ul_pick(l, 0, 0), 0);
  assert_int_equal(N(l, 0)->inflight, 1000);
  for (i = 1; i < M; i++) ul_up(l, (int32_t)i, 0);
  assert_int_equal(l->nelig, M);
  check_invariants(l);
  memset(cnt, 0, sizeof cnt);
  for (i = 0; i < 30000; i++) {
    int32_t s = ul_pick(l, 0, 0);
    assert_true(s >= 0 && s < M);
    cnt[s]++;
  }
  assert_int_equal(cnt[0], 0);
  maxo = 0;
  for (i = 1; i < M; i++) {
    assert_true(cnt[i] > 0);
    if (N(l, (int32_t)i)->inflight > maxo) maxo = N(l, (int32_t)i)->inflight;
  }
  assert_true(maxo < 1000);
  /* two choices keep the others close: max - min small */
  {
    uint32_t mino = UINT32_MAX;
    for (i = 1; i < M; i++)
      if (N(l, (int32_t)i)->inflight < mino) mino = N(l, (int32_t)i)->inflight;
    assert_true(maxo - mino <= 10);
  }
  for (i = 1; i < M; i++) {
    while (cnt[i]) {
      assert_int_equal(ul_release(l, (int32_t)i), 1);
      cnt[i]--;
    }
    assert_int_equal(N(l, (int32_t)i)->inflight, 0);
    assert_int_equal(ul_release(l, (int32_t)i), 0);
  }
  check_invariants(l);

  /* health flips: the dense array follows */
  for (round = 0; round < 20; round++) {
    uint32_t k, picks;
    for (k = 0; k < 40; k++) {
      int32_t s = (int32_t)prng_below(&r, M);
      if (prng_below(&r, 2)) ul_down(l, s, 0);
      else ul_up(l, s, 0);
    }
    check_invariants(l);
    if (l->nelig <= UL_LEAST_CONN_EXACT) continue;
    memset(cnt, 0, sizeof cnt);
    picks = 30 * l->nelig;
    for (k = 0; k < picks; k++) {
      int32_t s = ul_pick(l, 0, 0);
      assert_true(s >= 0 && s < M);
      if (!ul_eligible(l, s)) fail_msg("round %u: ineligible slot %d picked", round, s);
      cnt[s]++;
    }
    for (i = 0; i < M; i++) {
      if (ul_eligible(l, (int32_t)i) && i != 0 && cnt[i] == 0)
        fail_msg("round %u: eligible slot %u never picked", round, i);
      if (!ul_eligible(l, (int32_t)i)) assert_int_equal(cnt[i], 0);
      while (cnt[i]) {
        assert_int_equal(ul_release(l, (int32_t)i), 1);
        cnt[i]--;
      }
    }
    check_invariants(l);
  }
  assert_int_equal(N(l, 0)->inflight, 1000);
  xfree(l);
}

/* ---- hash: Maglev -------------------------------------------------------- */

static uint64_t str_hash(const char *fmt, int i) {
  char buf[64];
  int len = snprintf(buf, sizeof buf, fmt, i);
  assert_true(len > 0 && (size_t)len < sizeof buf);
  return ul_hash(buf, (size_t)len);
}

enum { NKEYS = 100000 };

/* the slot of every key "key-%d" */
static void hash_map(ul_list *l, int32_t *out) {
  int i;
  for (i = 0; i < NKEYS; i++) {
    int32_t s = ul_pick(l, str_hash("key-%d", i), 0);
    if (!(s >= 0 && (uint32_t)s < l->cap && ul_eligible(l, s)))
      fail_msg("key %d: slot %d is not eligible", i, s);
    out[i] = s;
  }
}

static void test_hash_consistency(void **state) {
  ul_list *l = new_list_strat(8, UL_HASH, 1);
  int32_t *a = xmalloc(NKEYS * sizeof *a), *b = xmalloc(NKEYS * sizeof *b);
  uint32_t per[5] = {0}, moved_other = 0, others = 0;
  int i;
  (void)state;
  for (i = 0; i < 5; i++)
    assert_int_equal(ul_append(l, 0, -1, 0, 1, str_hash("backend-%d", i), 0), i);
  assert_int_equal(l->maglev_dirty, 1);
  assert_true(l->maglev_m >= 16381);
  hash_map(l, a);
  assert_int_equal(l->maglev_dirty, 0);
  check_invariants(l);
  for (i = 0; i < NKEYS; i++) per[a[i]]++;
  for (i = 0; i < 5; i++) assert_dbl_in(per[i] / (double)NKEYS, 0.19, 0.21);
  /* the same key, the same member, pick after pick */
  for (i = 0; i < 1000; i++)
    assert_int_equal(ul_pick(l, str_hash("key-%d", i), 0), a[i]);

  /* slot 2 ineligible: the table is rebuilt lazily, on the next pick */
  ul_down(l, 2, 0);
  assert_int_equal(l->maglev_dirty, 0); /* still healthy (score 0) */
  ul_down(l, 2, 0);
  assert_false(ul_eligible(l, 2));
  assert_int_equal(l->maglev_dirty, 1);
  check_invariants(l);
  hash_map(l, b);
  assert_int_equal(l->maglev_dirty, 0);
  check_invariants(l);
  for (i = 0; i < NKEYS; i++) {
    assert_int_not_equal(b[i], 2); /* every key of slot 2 moved */
    if (a[i] != 2) {
      others++;
      moved_other += b[i] != a[i];
    }
  }
  if (!(moved_other <= others / 50))
    fail_msg("%u of %u keys of the other members moved (> 2%%)", moved_other,
             others);

  /* back: the very same table */
  ul_up(l, 2, 0);
  assert_int_equal(l->maglev_dirty, 1);
  hash_map(l, b);
  for (i = 0; i < NKEYS; i++)
    if (b[i] != a[i]) fail_msg("key %d: %d after slot 2 came back, was %d", i, b[i], a[i]);

  /* a weight change marks the table dirty too; no pick, no rebuild */
  ul_set_weight(l, 1, 3);
  assert_int_equal(l->maglev_dirty, 1);
  ul_set_weight(l, 1, 1);
  assert_int_equal(l->maglev_dirty, 1);
  ul_pick(l, 12345, 0);
  assert_int_equal(l->maglev_dirty, 0);
  /* nothing eligible: -1, whatever the key */
  for (i = 0; i < 5; i++) {
    ul_down(l, i, 0);
    ul_down(l, i, 0);
  }
  assert_int_equal(ul_pick(l, 42, 0), -1);
  check_invariants(l);
  xfree(b);
  xfree(a);
  xfree(l);
}

static void test_hash_weights(void **state) {
  ul_list *l = new_list_strat(8, UL_HASH, 1);
  static const double want[3] = {0.25, 0.5, 0.25};
  int32_t *a = xmalloc(NKEYS * sizeof *a);
  uint32_t tab[3] = {0}, keys[3] = {0}, k;
  int i;
  (void)state;
  assert_int_equal(ul_append(l, 0, -1, 0, 1, str_hash("backend-%d", 0), 0), 0);
  assert_int_equal(ul_append(l, 0, -1, 0, 2, str_hash("backend-%d", 1), 0), 1);
  assert_int_equal(ul_append(l, 0, -1, 0, 1, str_hash("backend-%d", 2), 0), 2);
  hash_map(l, a);
  for (k = 0; k < l->maglev_m; k++) {
    int32_t s = ulb_mag(l)[k];
    assert_true(s >= 0 && s < 3);
    tab[s]++;
  }
  for (i = 0; i < NKEYS; i++) keys[a[i]]++;
  for (i = 0; i < 3; i++) {
    double ts = tab[i] / (double)l->maglev_m, ks = keys[i] / (double)NKEYS;
    if (fabs(ts - want[i]) > 0.01)
      fail_msg("slot %d: table share %.4f, weight share %.4f", i, ts, want[i]);
    if (fabs(ks - want[i]) > 0.01)
      fail_msg("slot %d: key share %.4f, weight share %.4f", i, ks, want[i]);
  }
  check_invariants(l);
  xfree(a);
  xfree(l);
}

/* ---- sizes and grow ------------------------------------------------------ */

static void test_size_strategies(void **state) {
  int s;
  (void)state;
  for (s = UL_ROUND_ROBIN; s <= UL_RANDOM; s++) {
    uint32_t cap;
    size_t last = 0;
    assert_int_equal(ul_size(0, s), 0);
    for (cap = 1; cap <= 600; cap++) {
      size_t z = ul_size(cap, s);
      if (!(z > last)) fail_msg("strategy %d: ul_size(%u) = %zu <= %zu", s, cap, z, last);
      last = z;
    }
    assert_true(ul_size(100000, s) > ul_size(10000, s));
    assert_true(ul_size(1, s) > sizeof(ul_list));
  }
  /* the strategies' structures take room */
  assert_true(ul_size(64, UL_WEIGHTED) > ul_size(64, UL_ROUND_ROBIN));
  assert_true(ul_size(64, UL_HASH) > ul_size(64, UL_ROUND_ROBIN));
  assert_true(ul_size(64, UL_RANDOM) > ul_size(64, UL_ROUND_ROBIN));
  assert_true(ul_size(64, UL_LEAST_CONN) > ul_size(64, UL_ROUND_ROBIN));
}

/* weighted: a kinetic tree per tier of the range and one, 48 B a leaf
 * each (weighted.c): the block grows by a tree a tier; ul_size (any
 * range) is the widest's; the other strategies' blocks do not depend on
 * the range. */
static void test_size_tiers(void **state) {
  static const uint32_t caps[] = {4, 9, 64, 1000, 100000};
  uint32_t i;
  (void)state;
  for (i = 0; i < sizeof caps / sizeof caps[0]; i++) {
    uint32_t cap = caps[i], leaves = 1;
    int lo, hi, st;
    ul_opts o;
    while (leaves < cap) leaves <<= 1;
    ul_opts_default(&o);
    for (st = UL_ROUND_ROBIN; st <= UL_RANDOM; st++) {
      size_t base;
      o.strategy = st;
      o.tier_min = o.tier_max = o.tier_init = 0;
      base = ul_size_opts(cap, &o);
      for (lo = 0; lo <= UL_MAX_TIER; lo++)
        for (hi = lo; hi <= UL_MAX_TIER; hi++) {
          size_t z;
          o.tier_min = o.tier_init = lo;
          o.tier_max = hi;
          z = ul_size_opts(cap, &o);
          assert_true(z > 0 && z <= ul_size(cap, st));
          if (st != UL_WEIGHTED || cap <= UL_KST_SCAN) assert_int_equal(z, base);
          else assert_int_equal(z - base, (size_t)(hi - lo) * 48u * leaves);
          if (lo == 0 && hi == UL_MAX_TIER) assert_int_equal(z, ul_size(cap, st));
        }
    }
  }
}

static ul_list *copy_list(const ul_list *src, int strategy) {
  size_t sz = ul_size_opts(src->cap, &src->opts);
  assert_int_equal(src->opts.strategy, strategy);
  ul_list *c = track(malloc(sz));
  memcpy(c, src, sz);
  return c;
}

/* The same random operations on a copy of the list and on a grown one:
 * the same picks. */
static void grow_case(int strategy, uint32_t cap0, uint32_t cap1, uint64_t seed) {
  ul_list *a = new_list_strat(cap0, strategy, seed), *b, *c;
  unsigned char *drop = xcalloc(cap0, 1);
  prng r;
  uint32_t op, i;
  r.s = seed;
  for (i = 0; i < cap0; i++) ul_append(a, 0, -1, 0, 1 + prng_below(&r, 50), 0, 0);
  for (i = 0; i < 3 * cap0; i++) ul_pick(a, 0, 0);
  ul_down(a, 0, 0);
  ul_down(a, 0, 0);
  c = copy_list(a, strategy);
  b = track(malloc(ul_grow_size(a, cap1)));
  ul_grow(b, cap1, a);
  xfree(a);
  check_invariants(b);
  check_invariants(c);
  for (op = 0; op < 3000; op++) {
    uint32_t kind = prng_below(&r, 10);
    int32_t s = c->n ? ul_order(c)[prng_below(&r, c->n)] : -1;
    if (s < 0) kind = 9; /* empty: append */
    if (kind < 6) {
      int32_t x = ul_pick(c, 0, 0), y = ul_pick(b, 0, 0);
      if (x != y) fail_msg("strategy %d op %u: grown picks %d, copy %d", strategy, op, y, x);
    } else if (kind < 7) {
      ul_down(c, s, 0);
      ul_down(b, s, 0);
    } else if (kind < 8) {
      ul_up(c, s, 0);
      ul_up(b, s, 0);
    } else if (kind < 9) {
      uint32_t w = 1 + prng_below(&r, 1000);
      ul_set_weight(c, s, w);
      ul_set_weight(b, s, w);
    } else if (c->n == c->cap && s >= 0) {
      drop[s] = 1;
      ul_remove(c, drop);
      ul_remove(b, drop);
      drop[s] = 0;
    } else {
      assert_int_equal(ul_append(c, 0, -1, 0, 3, 0, 0), ul_append(b, 0, -1, 0, 3, 0, 0));
    }
  }
  check_invariants(b);
  check_invariants(c);
  xfree(drop);
  xfree(b);
  xfree(c);
}

static void test_grow_weighted_random(void **state) {
  (void)state;
  grow_case(UL_WEIGHTED, 5, 40, 1);   /* scan -> tree */
  grow_case(UL_WEIGHTED, 8, 9, 2);    /* scan -> tree at the edge */
  grow_case(UL_WEIGHTED, 16, 64, 3);  /* tree -> bigger tree */
  grow_case(UL_WEIGHTED, 100, 1000, 4);
  grow_case(UL_RANDOM, 5, 40, 5);
  grow_case(UL_RANDOM, 100, 1000, 6);
}

/* hash: every key keeps its member across a grow */
static void grow_hash_case(uint32_t cap0, uint32_t cap1, uint32_t members) {
  ul_list *a = new_list_strat(cap0, UL_HASH, 1), *b, *c;
  int32_t *x = xmalloc(NKEYS * sizeof *x), *y = xmalloc(NKEYS * sizeof *y);
  uint32_t i, diff = 0;
  int k;
  for (i = 0; i < members; i++)
    ul_append(a, 0, -1, 0, 1 + i % 3, str_hash("backend-%d", (int)i), 0);
  ul_pick(a, 1, 0); /* the table is built */
  c = copy_list(a, UL_HASH);
  b = track(malloc(ul_grow_size(a, cap1)));
  ul_grow(b, cap1, a);
  xfree(a);
  check_invariants(b);
  hash_map(c, x);
  hash_map(b, y);
  for (k = 0; k < NKEYS; k++) diff += x[k] != y[k];
  if (diff)
    fail_msg("grow %u -> %u slots (%u members; M %u -> %u): %u of %d keys "
             "changed member",
             cap0, cap1, members, c->maglev_m, b->maglev_m, diff, NKEYS);
  xfree(y);
  xfree(x);
  xfree(b);
  xfree(c);
}

static void test_grow_hash(void **state) {
  (void)state;
  grow_hash_case(8, 32, 5);
  grow_hash_case(64, 128, 60); /* M stays 16381 */
}

/* Growing past 163 slots changes the Maglev table size M (a prime >=
 * 100 x slots): README promises "the same key gets the same backend while
 * it stays eligible", yet a grow (reconcile adding backends beyond the
 * capacity) remaps almost every key. */
static void test_grow_hash_large(void **state) {
  (void)state;
  grow_hash_case(200, 400, 200); /* reconcile doubles a full list */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_bitmap_scale, teardown),
      cmocka_unit_test_teardown(test_bitmap_random, teardown),
      cmocka_unit_test_teardown(test_weighted_511, teardown),
      cmocka_unit_test_teardown(test_weighted_exact_shares, teardown),
      cmocka_unit_test_teardown(test_weighted_model, teardown),
      cmocka_unit_test_teardown(test_weighted_rebase, teardown),
      cmocka_unit_test_teardown(test_random, teardown),
      cmocka_unit_test_teardown(test_random_fuzz, teardown),
      cmocka_unit_test_teardown(test_least_conn_model, teardown),
      cmocka_unit_test_teardown(test_least_conn_p2c, teardown),
      cmocka_unit_test_teardown(test_hash_consistency, teardown),
      cmocka_unit_test_teardown(test_hash_weights, teardown),
      cmocka_unit_test_teardown(test_size_strategies, teardown),
      cmocka_unit_test_teardown(test_size_tiers, teardown),
      cmocka_unit_test_teardown(test_grow_weighted_random, teardown),
      cmocka_unit_test_teardown(test_grow_hash, teardown),
      cmocka_unit_test_teardown(test_grow_hash_large, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
