/*
 * test_core.c - cmocka unit tests for src/ul_core.c (the scored backend
 * list: options, scores, round-robin pick over the healthy bitmap, remove,
 * grow, and the check scheduler).
 *
 * Build (from the repository root):
 *   gcc -std=c99 -Wall -Wextra -Wshadow -pedantic -g \
 *       -fsanitize=address,undefined -Isrc src/ul_core.c spec/c/test_core.c \
 *       -lcmocka -lm -o /tmp/test_core && /tmp/test_core
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"

/* ---- helpers -------------------------------------------------------------- */

#define assert_dbl_eq(a, b)                                                  \
  do {                                                                       \
    double a_ = (a), b_ = (b);                                               \
    if (!(a_ == b_))                                                         \
      fail_msg("%s == %s: got %.17g, expected %.17g", #a, #b, a_, b_);       \
  } while (0)

#define assert_dbl_near(a, b, eps)                                           \
  do {                                                                       \
    double a_ = (a), b_ = (b);                                               \
    if (!(fabs(a_ - b_) <= (eps)))                                           \
      fail_msg("%s ~= %s: got %.17g, expected %.17g", #a, #b, a_, b_);       \
  } while (0)

#define assert_dbl_in(v, lo, hi)                                             \
  do {                                                                       \
    double v_ = (v), lo_ = (lo), hi_ = (hi);                                 \
    if (!(v_ >= lo_ && v_ <= hi_))                                           \
      fail_msg("%s = %.17g not in [%.17g, %.17g]", #v, v_, lo_, hi_);        \
  } while (0)

/* Every block a test allocates is tracked, so that a failing assertion
 * (which leaves the test by longjmp) does not leak: the group teardown
 * frees whatever is still live. */
#define MAX_LIVE 64
static void *g_live[MAX_LIVE];

static void *track(void *p) {
  int i;
  assert_non_null(p);
  for (i = 0; i < MAX_LIVE; i++)
    if (!g_live[i]) {
      g_live[i] = p;
      return p;
    }
  fail_msg("more than %d live blocks", MAX_LIVE);
  return p;
}

static void *xmalloc(size_t n) { return track(malloc(n)); }
static void *xcalloc(size_t n, size_t sz) { return track(calloc(n, sz)); }

static void xfree(void *p) {
  int i;
  for (i = 0; i < MAX_LIVE; i++)
    if (g_live[i] == p) g_live[i] = NULL;
  free(p);
}

static int teardown(void **state) {
  int i;
  (void)state;
  for (i = 0; i < MAX_LIVE; i++) {
    free(g_live[i]);
    g_live[i] = NULL;
  }
  return 0;
}

/* Small deterministic PRNG (splitmix64), independent of the library's. */
typedef struct {
  uint64_t s;
} prng;

static uint64_t prng_next(prng *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static uint32_t prng_below(prng *r, uint32_t n) {
  return (uint32_t)(prng_next(r) % n);
}

static double prng_unit(prng *r) {
  return (double)(prng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* A list of cap slots; the block is sized for o's strategy. */
static ul_list *new_list(uint32_t cap, const ul_opts *o, uint64_t seed) {
  ul_opts d;
  size_t sz;
  ul_list *l;
  if (!o) {
    ul_opts_default(&d);
    o = &d;
  }
  sz = ul_size(cap, o->strategy);
  assert_true(sz > 0);
  l = track(malloc(sz));
  assert_non_null(l);
  ul_init(l, cap, o, seed);
  return l;
}

/* A list with default options but for the strategy. */
static ul_list *new_list_strat(uint32_t cap, int strategy, uint64_t seed) {
  ul_opts o;
  ul_opts_default(&o);
  o.strategy = strategy;
  return new_list(cap, &o, seed);
}

static ul_node *N(const ul_list *l, int32_t s) { return &ul_nodes(l)[s]; }

static int32_t *heap_of(const ul_list *l) {
  return (int32_t *)((char *)l + l->off_heap);
}
static int32_t *ready_of(const ul_list *l) {
  return (int32_t *)((char *)l + l->off_ready);
}
static uint64_t *bm_of(const ul_list *l, int k) {
  return (uint64_t *)((char *)l + l->off_bm[k]);
}
/* the strategies' arrays (see ul_pick.c) */
static int32_t *kwin_of(const ul_list *l) {
  return (int32_t *)((char *)l + l->off_kst_win);
}
static int64_t *kmelt_of(const ul_list *l) {
  return (int64_t *)((char *)l + l->off_kst_melt);
}
static int64_t *fen_of(const ul_list *l) {
  return (int64_t *)((char *)l + l->off_fen);
}
static int32_t *dense_of(const ul_list *l) {
  return (int32_t *)((char *)l + l->off_dense);
}
static int32_t *mag_of(const ul_list *l) {
  return (int32_t *)((char *)l + l->off_mag);
}

/* weighted: the true (nginx) current weight of s */
static int64_t true_cur(const ul_list *l, int32_t s) {
  const ul_node *x = &ul_nodes(l)[s];
  return x->elig ? x->cur + x->ew * l->t : x->cur;
}

/* The pick strategy's own structure agrees with the nodes. */
static void check_strategy(const ul_list *l) {
  ul_node *nd = ul_nodes(l);
  int32_t *ord = ul_order(l);
  uint32_t p, k;
  switch (l->opts.strategy) {
    case UL_WEIGHTED:
      if (l->cap <= 8) {
        assert_int_equal(l->kst_size, 0);
      } else {
        int32_t *win = kwin_of(l);
        int64_t *melt = kmelt_of(l);
        uint32_t s = l->kst_size;
        assert_true(s >= l->cap && s / 2 < l->cap);
        for (k = 0; k < s; k++) {
          int32_t want = k < l->n && nd[ord[k]].elig ? (int32_t)k : -1;
          if (win[s + k] != want)
            fail_msg("kst leaf %u: %d, expected %d", k, win[s + k], want);
        }
        /* between picks every inner node holds the winner at t and a
         * certificate later than t */
        for (k = s - 1; k >= 1; k--) {
          int32_t a = win[2 * k], b = win[2 * k + 1], want;
          if (a < 0 || b < 0) {
            want = a < 0 ? b : a;
          } else {
            int64_t va = true_cur(l, ord[a]), vb = true_cur(l, ord[b]);
            want = va >= vb ? a : b;
          }
          if (win[k] != want)
            fail_msg("kst node %u: winner %d, expected %d (t=%lld)", k,
                     win[k], want, (long long)l->t);
          if (!(melt[k] > l->t))
            fail_msg("kst node %u: certificate %lld <= t %lld", k,
                     (long long)melt[k], (long long)l->t);
        }
      }
      break;
    case UL_RANDOM: {
      int64_t *f = fen_of(l), *pre = xcalloc((size_t)l->cap + 1, sizeof *pre);
      for (p = 0; p < l->cap; p++) {
        int64_t w = p < l->n && nd[ord[p]].elig ? nd[ord[p]].ew : 0;
        pre[p + 1] = pre[p] + w;
      }
      assert_int_equal(pre[l->cap], l->total_ew);
      for (k = 1; k <= l->cap; k++)
        if (f[k] != pre[k] - pre[k - (k & (0u - k))])
          fail_msg("fenwick[%u] = %lld, expected %lld", k, (long long)f[k],
                   (long long)(pre[k] - pre[k - (k & (0u - k))]));
      xfree(pre);
      { /* and the dense array of eligible positions */
        int32_t *dense = dense_of(l), *dat = dense + l->cap;
        for (k = 0; k < l->nelig; k++) {
          int32_t q = dense[k];
          assert_true(q >= 0 && (uint32_t)q < l->n);
          assert_true(nd[ord[q]].elig);
          assert_int_equal(dat[q], (int32_t)k);
        }
      }
      break;
    }
    case UL_LEAST_CONN: {
      int32_t *dense = dense_of(l), *dat = dense + l->cap;
      for (k = 0; k < l->nelig; k++) {
        int32_t q = dense[k];
        assert_true(q >= 0 && (uint32_t)q < l->n);
        assert_true(nd[ord[q]].elig);
        assert_int_equal(dat[q], (int32_t)k); /* so all distinct */
      }
      break;
    }
    case UL_HASH:
      if (!l->maglev_dirty && l->nelig > 0) {
        int32_t *tab = mag_of(l);
        for (k = 0; k < l->maglev_m; k++) {
          int32_t s = tab[k];
          if (!(s >= 0 && (uint32_t)s < l->cap &&
                (nd[s].flags & UL_F_MEMBER) && nd[s].elig))
            fail_msg("maglev entry %u: slot %d not an eligible member", k, s);
        }
      }
      break;
    default:
      break;
  }
}

/* Checks every internal invariant the header implies. */
static void check_invariants(const ul_list *l) {
  ul_node *nd = ul_nodes(l);
  int32_t *ord = ul_order(l), *h = heap_of(l), *rq = ready_of(l);
  uint64_t *b0 = bm_of(l, 0), *b1 = bm_of(l, 1), *b2 = bm_of(l, 2);
  uint32_t p, i, healthy = 0, unchecked = 0, checked = 0, members = 0, nfree = 0;
  int32_t s;

  assert_true(l->n <= l->cap);
  for (p = 0; p < l->n; p++) {
    s = ord[p];
    assert_true(s >= 0 && (uint32_t)s < l->cap);
    assert_int_equal(nd[s].pos, (int32_t)p);
    assert_true(nd[s].flags & UL_F_MEMBER);
    if (nd[s].score >= 0) healthy++;
    if (!l->shut && (nd[s].flags & UL_F_CHECKED) && nd[s].checks == 0)
      unchecked++;
    if (nd[s].flags & UL_F_CHECKED) checked++;
    /* level-0 bit p mirrors eligibility (health, without tiers or panic) */
    assert_int_equal((b0[p / 64] >> (p % 64)) & 1u, nd[s].elig ? 1 : 0);
  }
  assert_int_equal(l->healthy, healthy);
  /* tiers, panic, eligibility and the totals, recounted */
  {
    uint32_t th[UL_MAX_TIER + 1] = {0}, nelig = 0, t;
    int32_t at = -1;
    int pn;
    int64_t total = 0;
    for (p = 0; p < l->n; p++) {
      const ul_node *x = &nd[ord[p]];
      assert_true(x->tier >= l->opts.tier_min && x->tier <= l->opts.tier_max);
      assert_true(x->ramp >= 1 && x->ramp <= UL_RAMP_STEPS);
      if (x->score >= 0) th[x->tier]++;
    }
    for (t = 0; t <= UL_MAX_TIER; t++) {
      assert_int_equal(l->tier_healthy[t], th[t]);
      if (at < 0 && th[t]) at = (int32_t)t;
    }
    assert_int_equal(l->active_tier, at);
    pn = l->opts.panic > 0 && (double)healthy < l->opts.panic * l->n;
    assert_int_equal(l->panic_on, pn);
    for (p = 0; p < l->n; p++) {
      const ul_node *x = &nd[ord[p]];
      int want = pn || (x->score >= 0 && (int32_t)x->tier == at);
      if (x->elig != want)
        fail_msg("slot %d: elig %d, expected %d", ord[p], x->elig, want);
      assert_int_equal(x->ew, (int64_t)x->weight * x->ramp);
      if (x->elig) {
        nelig++;
        total += x->ew;
      }
    }
    assert_int_equal(l->nelig, nelig);
    assert_int_equal(l->total_ew, total);
  }
  check_strategy(l);
  assert_int_equal(l->unchecked, unchecked);
  assert_int_equal(l->checked, checked);
  /* no bits past n */
  for (p = l->n; p < l->bm_words[0] * 64u; p++)
    assert_int_equal((b0[p / 64] >> (p % 64)) & 1u, 0);
  for (i = 0; i < l->bm_words[1] * 64u; i++) {
    int want = i < l->bm_words[0] && b0[i] != 0;
    assert_int_equal((b1[i / 64] >> (i % 64)) & 1u, want);
  }
  for (i = 0; i < l->bm_words[2] * 64u; i++) {
    int want = i < l->bm_words[1] && b1[i] != 0;
    assert_int_equal((b2[i / 64] >> (i % 64)) & 1u, want);
  }
  /* members vs free list */
  for (i = 0; i < l->cap; i++)
    if (nd[i].flags & UL_F_MEMBER) members++;
  assert_int_equal(members, l->n);
  for (s = l->free_head; s >= 0; s = nd[s].dup) {
    assert_true((uint32_t)s < l->cap);
    assert_false(nd[s].flags & UL_F_MEMBER);
    nfree++;
    assert_true(nfree <= l->cap);
  }
  assert_int_equal(nfree + l->n, l->cap);
  /* heap */
  assert_true(l->nheap <= l->cap);
  for (i = 0; i < l->nheap; i++) {
    s = h[i];
    assert_int_equal(nd[s].heap, (int32_t)i);
    assert_true(nd[s].flags & UL_F_MEMBER);
    assert_false(nd[s].flags & UL_F_READY);
    if (i > 0) assert_true(nd[h[(i - 1) / 2]].key <= nd[s].key);
  }
  for (i = 0; i < l->cap; i++)
    if (nd[i].heap >= 0) assert_true((uint32_t)nd[i].heap < l->nheap);
  /* ready queue */
  assert_true(l->ready_len <= l->cap);
  for (i = 0; i < l->ready_len; i++) {
    s = rq[(l->ready_head + i) % l->cap];
    assert_true(nd[s].flags & UL_F_READY);
    assert_int_equal(nd[s].heap, -1);
  }
  if (l->shut) {
    assert_int_equal(l->nheap, 0);
    assert_int_equal(l->ready_len, 0);
  }
}

/* ---- 1. options ------------------------------------------------------------ */

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

/* ---- 2. empty list, plain round robin --------------------------------------- */

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

/* ---- 3. the Go package's down/up sequence ---------------------------------- */

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

/* ---- 4. bitmap at scale ------------------------------------------------------ */

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

/* Naive reference of the pick. */
static int32_t ref_pick(const double *score, uint32_t n, int32_t *rr) {
  uint32_t j;
  for (j = 0; j < n; j++) {
    uint32_t i = (uint32_t)(((int64_t)*rr + 1 + j) % n);
    if (score[i] >= 0) {
      *rr = (int32_t)i;
      return (int32_t)i;
    }
  }
  return -1;
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

/* ---- 5. duplicates ------------------------------------------------------------ */

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

/* ---- 6. remove ---------------------------------------------------------------- */

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

/* ---- 7. grow ------------------------------------------------------------------ */

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

/* ---- 8. scheduler ----------------------------------------------------------- */

static void test_sched_basic(void **state) {
  ul_list *l = new_list(8, NULL, 1);
  int32_t slot;
  uint64_t gen, g[3];
  int i;
  (void)state;
  assert_dbl_eq(ul_next_time(l), INFINITY);
  for (i = 0; i < 3; i++) assert_int_equal(ul_append(l, 1, -1, 0, 1, 0, 0), i);
  assert_int_equal(l->unchecked, 3);
  assert_dbl_eq(ul_next_time(l), 0);
  check_invariants(l);

  assert_int_equal(ul_collect(l, 0), 3);
  for (i = 0; i < 3; i++) {
    assert_int_equal(ul_take(l, &slot, &g[i]), UL_EV_START);
    assert_int_equal(slot, i);
    assert_int_equal(N(l, i)->state, UL_RUNNING);
    assert_dbl_eq(N(l, i)->started, 0);
    assert_dbl_eq(N(l, i)->deadline, 0.1);
    assert_true(ul_current(l, i, g[i]));
    if (i > 0) assert_true(g[i] > g[i - 1]);
  }
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  assert_dbl_eq(ul_next_time(l), 0.1);
  check_invariants(l);

  /* slot 0 succeeds */
  assert_int_equal(ul_report(l, 0, g[0], 1, 0.05, -1), 1);
  assert_dbl_eq(N(l, 0)->score, 2);
  assert_int_equal(N(l, 0)->checks, 1);
  assert_int_equal(N(l, 0)->failures, 0);
  assert_int_equal(N(l, 0)->state, UL_IDLE);
  assert_dbl_eq(N(l, 0)->next, 1.0);
  assert_int_equal(l->unchecked, 2);
  assert_int_equal(ul_report(l, 0, g[0], 1, 0.06, -1), 0); /* twice: stale */
  assert_dbl_eq(N(l, 0)->score, 2);

  /* slot 1 fails */
  assert_int_equal(ul_report(l, 1, g[1], 0, 0.07, -1), 1);
  assert_dbl_eq(N(l, 1)->score, 0);
  assert_int_equal(N(l, 1)->checks, 1);
  assert_int_equal(N(l, 1)->failures, 1);
  assert_dbl_eq(N(l, 1)->next, 1.0);
  assert_int_equal(l->unchecked, 1);

  /* slot 2 never reports: timed out at its deadline */
  assert_dbl_eq(ul_next_time(l), 0.1);
  assert_int_equal(ul_collect(l, 0.09), 0);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  assert_int_equal(ul_collect(l, 0.1), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_TIMEOUT);
  assert_int_equal(slot, 2);
  assert_int_equal(gen, g[2]);
  assert_int_equal(N(l, 2)->failures, 1);
  assert_int_equal(N(l, 2)->checks, 1);
  assert_dbl_eq(N(l, 2)->score, 0);
  assert_int_equal(N(l, 2)->state, UL_IDLE);
  assert_dbl_eq(N(l, 2)->next, 1.0);
  assert_int_equal(l->unchecked, 0);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  assert_int_equal(ul_report(l, 2, g[2], 1, 0.11, -1), 0); /* late */
  assert_dbl_eq(N(l, 2)->score, 0);
  assert_int_equal(N(l, 2)->checks, 1);
  check_invariants(l);

  /* next round at 1.0; slot 0 goes 2 -> 3 -> 3 over two rounds */
  assert_dbl_eq(ul_next_time(l), 1.0);
  {
    int round;
    uint64_t last = g[2];
    for (round = 1; round <= 2; round++) {
      double t = (double)round;
      assert_dbl_eq(ul_next_time(l), t);
      assert_int_equal(ul_collect(l, t), 3);
      for (i = 0; i < 3; i++) {
        assert_int_equal(ul_take(l, &slot, &g[i]), UL_EV_START);
        assert_int_equal(slot, i);
        assert_true(g[i] > last);
        last = g[i];
      }
      for (i = 0; i < 3; i++)
        assert_int_equal(ul_report(l, i, g[i], 1, t + 0.01, -1), 1);
      assert_dbl_eq(N(l, 0)->next, t + 1);
      check_invariants(l);
    }
  }
  assert_dbl_eq(N(l, 0)->score, 3);
  assert_dbl_eq(N(l, 1)->score, 2);
  assert_dbl_eq(N(l, 2)->score, 2);
  assert_int_equal(N(l, 0)->checks, 3);
  assert_int_equal(N(l, 0)->failures, 0);

  /* a report after the next start time: the next check starts at once */
  assert_int_equal(ul_collect(l, 3.0), 3);
  for (i = 0; i < 3; i++)
    assert_int_equal(ul_take(l, &slot, &g[i]), UL_EV_START);
  /* report slot 0 late (past its deadline but before the timeout is
   * collected): still current, so accepted; next = max(3 + 1, 4.5) */
  assert_int_equal(ul_report(l, 0, g[0], 0, 4.5, -1), 1);
  assert_dbl_eq(N(l, 0)->next, 4.5);
  xfree(l);
}

static void test_sched_sleep(void **state) {
  ul_list *l = new_list(4, NULL, 1);
  int32_t slot;
  uint64_t gen, a, b;
  (void)state;
  ul_append(l, 1, -1, 0, 1, 0, 0);
  ul_append(l, 1, -1, 0, 1, 0, 0);
  assert_int_equal(ul_collect(l, 0), 2);
  assert_int_equal(ul_take(l, &slot, &a), UL_EV_START);
  assert_int_equal(slot, 0);
  assert_int_equal(ul_take(l, &slot, &b), UL_EV_START);
  assert_int_equal(slot, 1);

  /* stale generations are refused */
  assert_int_equal(ul_sleep(l, 0, a + 100, 0.02), 0);
  assert_int_equal(ul_sleep(l, 0, b, 0.02), 0);
  assert_int_equal(ul_report(l, 1, a, 1, 0.02, -1), 0);
  assert_int_equal(ul_report(l, 0, 0, 1, 0.02, -1), 0);
  assert_int_equal(ul_sleep(l, -1, a, 0.02), 0);
  assert_int_equal(ul_sleep(l, 4, a, 0.02), 0);
  assert_int_equal(ul_report(l, 2, a, 1, 0.02, -1), 0); /* free slot */
  assert_int_equal(ul_report(l, 1000, a, 1, 0.02, -1), 0);
  assert_int_equal(N(l, 0)->state, UL_RUNNING);

  assert_int_equal(ul_sleep(l, 0, a, 0.04), 1);
  assert_int_equal(ul_sleep(l, 1, b, 0.5), 1); /* past its deadline */
  assert_dbl_eq(ul_next_time(l), 0.04);
  check_invariants(l);
  assert_int_equal(ul_collect(l, 0.039), 0);
  assert_int_equal(ul_collect(l, 0.04), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_WAKE);
  assert_int_equal(slot, 0);
  assert_int_equal(gen, a);
  assert_true(ul_current(l, 0, a));
  assert_int_equal(N(l, 0)->state, UL_RUNNING);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  assert_dbl_eq(ul_next_time(l), 0.1);

  /* sleep again, then report before waking: the wake is cancelled */
  assert_int_equal(ul_sleep(l, 0, a, 0.06), 1);
  assert_dbl_eq(ul_next_time(l), 0.06);
  assert_int_equal(ul_report(l, 0, a, 1, 0.05, -1), 1);
  assert_dbl_eq(N(l, 0)->score, 2);
  assert_dbl_eq(ul_next_time(l), 0.1); /* slot 1's deadline */
  assert_int_equal(ul_sleep(l, 0, a, 0.07), 0); /* finished: stale */

  /* slot 1 slept past its deadline: times out at the deadline */
  assert_int_equal(ul_collect(l, 0.1), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_TIMEOUT);
  assert_int_equal(slot, 1);
  assert_int_equal(gen, b);
  assert_int_equal(N(l, 1)->failures, 1);
  assert_dbl_eq(N(l, 1)->score, 0);
  assert_int_equal(ul_report(l, 1, b, 1, 0.2, -1), 0);
  assert_int_equal(ul_sleep(l, 1, b, 0.2), 0);
  assert_dbl_eq(ul_next_time(l), 1.0);
  assert_int_equal(ul_collect(l, 0.5), 0); /* nothing left at 0.5 */
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  check_invariants(l);
  xfree(l);
}

static void test_sched_ready_resched(void **state) {
  ul_list *l = new_list(2, NULL, 1);
  int32_t slot;
  uint64_t g, gen;
  (void)state;
  ul_append(l, 1, -1, 0, 1, 0, 0);
  ul_collect(l, 0);
  assert_int_equal(ul_take(l, &slot, &g), UL_EV_START);

  /* a wake moved later while in the ready queue */
  assert_int_equal(ul_sleep(l, 0, g, 0.03), 1);
  assert_int_equal(ul_collect(l, 0.03), 1);
  assert_int_equal(ul_sleep(l, 0, g, 0.07), 1);
  check_invariants(l);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  check_invariants(l);
  assert_dbl_eq(ul_next_time(l), 0.07);
  assert_int_equal(ul_collect(l, 0.05), 0);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  assert_int_equal(ul_collect(l, 0.07), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_WAKE);
  assert_int_equal(slot, 0);
  assert_int_equal(gen, g);

  /* a report while its wake sits in the ready queue */
  assert_int_equal(ul_sleep(l, 0, g, 0.08), 1);
  assert_int_equal(ul_collect(l, 0.08), 1);
  assert_int_equal(ul_report(l, 0, g, 1, 0.08, -1), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  assert_dbl_eq(ul_next_time(l), 1.0);
  check_invariants(l);
  assert_int_equal(ul_collect(l, 0.99), 0);
  assert_int_equal(ul_collect(l, 1.0), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_START);
  assert_true(gen > g);

  /* a wake moved earlier while in the ready queue is still returned */
  assert_int_equal(ul_sleep(l, 0, gen, 1.05), 1);
  assert_int_equal(ul_collect(l, 1.05), 1);
  assert_int_equal(ul_sleep(l, 0, gen, 1.04), 1);
  assert_int_equal(ul_take(l, &slot, &g), UL_EV_WAKE);
  assert_int_equal(g, gen);
  check_invariants(l);
  xfree(l);
}

static void test_sched_remove_running(void **state) {
  ul_list *l = new_list(4, NULL, 1);
  unsigned char drop[4] = {0};
  int32_t slot, s;
  uint64_t g[3], gen;
  int i;
  (void)state;
  for (i = 0; i < 3; i++) ul_append(l, 1, -1, 0, 1, 0, 0);
  ul_collect(l, 0);
  for (i = 0; i < 3; i++)
    assert_int_equal(ul_take(l, &slot, &g[i]), UL_EV_START);
  drop[1] = 1;
  ul_remove(l, drop);
  assert_int_equal(l->unchecked, 2);
  assert_false(ul_current(l, 1, g[1]));
  assert_int_equal(ul_report(l, 1, g[1], 1, 0.05, -1), 0);
  assert_int_equal(ul_sleep(l, 1, g[1], 0.05), 0);
  check_invariants(l);
  assert_int_equal(ul_collect(l, 0.1), 2);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_TIMEOUT);
  assert_int_equal(slot, 0);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_TIMEOUT);
  assert_int_equal(slot, 2);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  assert_int_equal(l->unchecked, 0);

  /* reuse slot 1 for a new checked member: old gen still refused */
  s = ul_append(l, 1, -1, 0.5, 1, 0, 0);
  assert_int_equal(s, 1);
  assert_int_equal(l->unchecked, 1);
  assert_int_equal(ul_report(l, 1, g[1], 1, 0.5, -1), 0);
  assert_dbl_eq(ul_next_time(l), 0.5);
  assert_int_equal(ul_collect(l, 0.5), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_START);
  assert_int_equal(slot, 1);
  assert_true(gen > g[2]);
  assert_int_equal(ul_report(l, 1, g[1], 1, 0.55, -1), 0);
  assert_int_equal(ul_report(l, 1, gen, 1, 0.55, -1), 1);
  assert_dbl_eq(N(l, 1)->score, 2);

  /* removing a slot while it waits in the ready queue */
  assert_int_equal(ul_collect(l, 1.0), 2); /* slots 0 and 2 */
  memset(drop, 0, sizeof drop);
  drop[0] = 1;
  ul_remove(l, drop);
  check_invariants(l);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_START);
  assert_int_equal(slot, 2);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  check_invariants(l);
  xfree(l);
}

static void test_sched_shutdown(void **state) {
  ul_list *l = new_list(4, NULL, 1);
  int32_t slot;
  uint64_t g0, g1, gen;
  (void)state;
  ul_append(l, 1, -1, 0, 1, 0, 0);
  ul_append(l, 1, -1, 0, 1, 0, 0);
  ul_append(l, 1, -1, 5, 1, 0, 0); /* not yet due */
  ul_collect(l, 0);
  assert_int_equal(ul_take(l, &slot, &g0), UL_EV_START);
  ul_sleep(l, 0, g0, 0.05);
  assert_int_equal(ul_take(l, &slot, &g1), UL_EV_START);
  ul_shutdown(l);
  check_invariants(l);
  assert_dbl_eq(ul_next_time(l), INFINITY);
  assert_int_equal(ul_collect(l, 0.05), 0);
  assert_int_equal(ul_collect(l, 100), 0);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  assert_int_equal(ul_report(l, 0, g0, 1, 0.06, -1), 0);
  assert_int_equal(ul_report(l, 1, g1, 0, 0.06, -1), 0);
  assert_int_equal(ul_sleep(l, 1, g1, 0.07), 0);
  assert_false(ul_current(l, 0, g0));
  assert_int_equal(l->unchecked, 0);
  assert_dbl_eq(N(l, 0)->score, 1);

  /* scores and pick still work */
  assert_int_equal(ul_pick(l, 0, 0), 0);
  ul_down(l, 1, 0);
  ul_down(l, 1, 0);
  assert_dbl_eq(N(l, 1)->score, -1);
  assert_int_equal(ul_pick(l, 0, 0), 2);
  assert_int_equal(ul_pick(l, 0, 0), 0);
  ul_up(l, 1, 0);
  assert_int_equal(ul_pick(l, 0, 0), 1);

  /* appending a checked member schedules nothing; shutdown is idempotent */
  assert_int_equal(ul_append(l, 1, -1, 100, 1, 0, 0), 3);
  assert_dbl_eq(ul_next_time(l), INFINITY);
  assert_int_equal(l->unchecked, 0);
  ul_shutdown(l);
  assert_int_equal(ul_collect(l, 200), 0);
  check_invariants(l);
  {
    unsigned char drop[4] = {1, 0, 0, 1};
    ul_remove(l, drop);
    assert_int_equal(l->unchecked, 0);
    check_invariants(l);
  }
  xfree(l);
}

/* A check result is Up or Down (ul_report: "ok != 0 is Up, else Down"),
 * and Up/Down apply to the slot and every slot chained to it as equal. So
 * the result of the check of a backend must reach its duplicates too,
 * otherwise a duplicate position keeps serving a backend known to fail. */
static void test_sched_report_dup(void **state) {
  ul_list *l = new_list(4, NULL, 1);
  int32_t a, b, slot;
  uint64_t g;
  (void)state;
  a = ul_append(l, 1, -1, 0, 1, 0, 0);
  b = ul_append(l, 0, a, 0, 1, 0, 0); /* same backend, checked through a */
  assert_int_equal(N(l, a)->dup, b);
  assert_int_equal(ul_collect(l, 0), 1);
  assert_int_equal(ul_take(l, &slot, &g), UL_EV_START);
  assert_int_equal(slot, a);
  assert_int_equal(ul_report(l, a, g, 0, 0.05, -1), 1);
  assert_dbl_eq(N(l, a)->score, 0);
  assert_dbl_eq(N(l, b)->score, 0); /* Down reaches the duplicate */
  ul_collect(l, 1.0);
  assert_int_equal(ul_take(l, &slot, &g), UL_EV_START);
  assert_int_equal(ul_report(l, a, g, 0, 1.05, -1), 1);
  assert_dbl_eq(N(l, a)->score, -1);
  assert_dbl_eq(N(l, b)->score, -1);
  assert_int_equal(l->healthy, 0);
  assert_int_equal(ul_pick(l, 0, 0), -1);
  xfree(l);
}

static void test_sched_timeout_dup(void **state) {
  ul_list *l = new_list(4, NULL, 1);
  int32_t a, b, slot;
  uint64_t g;
  (void)state;
  a = ul_append(l, 1, -1, 0, 1, 0, 0);
  b = ul_append(l, 0, a, 0, 1, 0, 0);
  ul_collect(l, 0);
  assert_int_equal(ul_take(l, &slot, &g), UL_EV_START);
  ul_collect(l, 0.1);
  assert_int_equal(ul_take(l, &slot, &g), UL_EV_TIMEOUT);
  assert_int_equal(slot, a);
  assert_dbl_eq(N(l, a)->score, 0);
  assert_dbl_eq(N(l, b)->score, 0); /* a timeout is a Down of the chain */
  xfree(l);
}

/* ---- 9. jitter -------------------------------------------------------------- */

static void test_jitter(void **state) {
  enum { M = 1000 };
  ul_opts o;
  ul_list *l;
  int32_t slot;
  uint64_t gen;
  double first0, wmin = 1e9, wmax = -1e9;
  int i, all_equal = 1, events = 0;
  (void)state;
  ul_opts_default(&o);
  o.jitter = 0.5;
  l = new_list(M, &o, 42);
  for (i = 0; i < M; i++) assert_int_equal(ul_append(l, 1, -1, 10, 1, 0, 0), i);
  first0 = N(l, 0)->next;
  for (i = 0; i < M; i++) {
    double t = N(l, i)->next;
    if (!(t >= 10 && t < 11))
      fail_msg("first due time of slot %d: %.17g not in [10, 11)", i, t);
    if (t != first0) all_equal = 0;
  }
  assert_false(all_equal);
  check_invariants(l);

  /* every check succeeds at once; waits lie in [0.5, 1.5] */
  while (events < 5 * M) {
    double t = ul_next_time(l);
    int kind;
    assert_true(isfinite(t));
    ul_collect(l, t);
    while ((kind = ul_take(l, &slot, &gen)) != UL_EV_NONE) {
      double w;
      assert_int_equal(kind, UL_EV_START);
      assert_int_equal(ul_report(l, slot, gen, 1, t, -1), 1);
      w = N(l, slot)->next - N(l, slot)->started;
      if (!(w >= 0.5 - 1e-9 && w <= 1.5 + 1e-9))
        fail_msg("wait %.17g not in [0.5, 1.5]", w);
      if (w < wmin) wmin = w;
      if (w > wmax) wmax = w;
      events++;
    }
  }
  /* the waits are spread out, not constant */
  assert_true(wmin < 0.6);
  assert_true(wmax > 1.4);
  check_invariants(l);
  xfree(l);
}

/* ---- 10. heap order ---------------------------------------------------------- */

static void test_heap_order(void **state) {
  enum { M = 500 };
  ul_opts o;
  ul_list *l;
  prng r;
  int32_t slot;
  uint64_t gen;
  double last_t = -1, *due;
  int events = 0, starts = 0, steps = 0, kind;
  (void)state;
  r.s = 99;
  ul_opts_default(&o);
  o.interval = 0.05; /* shorter than timeout: report times decide starts */
  o.timeout = 0.1;
  o.jitter = 0.3;
  l = new_list(M, &o, 77);
  due = xmalloc(M * sizeof *due);
  assert_non_null(due);
  for (int i = 0; i < M; i++) {
    assert_int_equal(ul_append(l, 1, -1, prng_unit(&r), 1, 0, 0), i);
    due[i] = N(l, i)->next;
  }
  while (starts < 20000 && steps < 200000) {
    double t = ul_next_time(l);
    assert_true(isfinite(t));
    assert_true(t >= last_t);
    last_t = t;
    ul_collect(l, t);
    while ((kind = ul_take(l, &slot, &gen)) != UL_EV_NONE) {
      events++;
      assert_true(slot >= 0 && slot < M);
      if (kind == UL_EV_START) {
        double d = prng_unit(&r) * 0.12;
        starts++;
        /* starts exactly when it was due, in time order */
        assert_dbl_eq(N(l, slot)->started, t);
        assert_dbl_eq(due[slot], t);
        /* report by waking up at a random time (some past the deadline) */
        assert_int_equal(ul_sleep(l, slot, gen, t + d), 1);
      } else if (kind == UL_EV_WAKE) {
        assert_true(t < N(l, slot)->deadline);
        assert_int_equal(ul_report(l, slot, gen, (int)prng_below(&r, 2), t, -1),
                         1);
        due[slot] = N(l, slot)->next;
        assert_true(due[slot] >= t);
      } else {
        assert_int_equal(kind, UL_EV_TIMEOUT);
        assert_dbl_eq(N(l, slot)->deadline, t);
        due[slot] = N(l, slot)->next;
        assert_true(due[slot] >= t);
      }
    }
    if (++steps % 997 == 0) check_invariants(l);
  }
  assert_true(starts >= 20000);
  check_invariants(l);
  xfree(due);
  xfree(l);
}

/* ---- extra: random model test with append/remove ------------------------------ */

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

/* ---- extra: scheduler fuzz with remove/append/grow -------------------------- */

static void test_sched_fuzz(void **state) {
  enum { CAP0 = 16 };
  ul_list *l;
  ul_opts o;
  prng r;
  uint64_t *gen_of;
  unsigned char *running;
  uint32_t cap = CAP0;
  int step;
  (void)state;
  r.s = 5;
  ul_opts_default(&o);
  o.jitter = 0.2;
  o.interval = 0.3;
  o.timeout = 0.2;
  l = new_list(cap, &o, 9);
  gen_of = xcalloc(1024, sizeof *gen_of);
  running = xcalloc(1024, 1);
  assert_true(gen_of && running);
  for (step = 0; step < 4000; step++) {
    uint32_t k = prng_below(&r, 12);
    double t = ul_next_time(l);
    int32_t slot;
    uint64_t gen;
    int kind;
    if (k == 0 && cap < 1024) { /* grow */
      ul_list *b = track(malloc(ul_grow_size(l, cap * 2)));
      assert_non_null(b);
      ul_grow(b, cap * 2, l);
      xfree(l);
      l = b;
      cap *= 2;
    } else if (k <= 3) {
      if (ul_append(l, (int)prng_below(&r, 2), -1, l->now, 1, 0, 0) < 0) continue;
    } else if (k == 4 && l->n > 0) {
      unsigned char *drop = xcalloc(cap, 1);
      uint32_t i;
      assert_non_null(drop);
      for (i = 0; i < l->n; i++)
        if (prng_below(&r, 4) == 0) drop[ul_order(l)[i]] = 1;
      ul_remove(l, drop);
      for (i = 0; i < cap; i++)
        if (drop[i] && running[i]) {
          assert_int_equal(ul_report(l, (int32_t)i, gen_of[i], 1, l->now, -1), 0);
          running[i] = 0;
        }
      xfree(drop);
    } else if (k <= 7) {
      /* report or sleep some running check */
      uint32_t i, start = prng_below(&r, cap);
      for (i = 0; i < cap; i++) {
        uint32_t s = (start + i) % cap;
        if (!running[s]) continue;
        assert_true(ul_current(l, (int32_t)s, gen_of[s]));
        if (prng_below(&r, 2)) {
          assert_int_equal(ul_report(l, (int32_t)s, gen_of[s],
                                     (int)prng_below(&r, 2), l->now, -1), 1);
          running[s] = 0;
        } else {
          assert_int_equal(ul_sleep(l, (int32_t)s, gen_of[s],
                                    l->now + prng_unit(&r) * 0.3), 1);
        }
        break;
      }
    } else if (isfinite(t)) {
      assert_true(t >= l->now);
      ul_collect(l, t);
      while ((kind = ul_take(l, &slot, &gen)) != UL_EV_NONE) {
        assert_true(slot >= 0 && (uint32_t)slot < cap);
        assert_true(N(l, slot)->flags & UL_F_CHECKED);
        if (kind == UL_EV_START) {
          assert_false(running[slot]);
          running[slot] = 1;
          gen_of[slot] = gen;
        } else if (kind == UL_EV_WAKE) {
          assert_true(running[slot]);
          assert_int_equal(gen, gen_of[slot]);
        } else {
          assert_int_equal(kind, UL_EV_TIMEOUT);
          assert_true(running[slot]);
          assert_int_equal(gen, gen_of[slot]);
          running[slot] = 0;
          assert_false(ul_current(l, slot, gen));
        }
      }
    }
    check_invariants(l);
  }
  xfree(running);
  xfree(gen_of);
  xfree(l);
}

/* ---- size --------------------------------------------------------------------- */

static void test_size(void **state) {
  (void)state;
  assert_int_equal(ul_size(0, UL_ROUND_ROBIN), 0);
  assert_true(ul_size(1, UL_ROUND_ROBIN) > sizeof(ul_list));
  assert_true(ul_size(100, UL_ROUND_ROBIN) > ul_size(10, UL_ROUND_ROBIN));
  assert_int_equal(ul_size(0xFFFFFFFFu, UL_ROUND_ROBIN), 0);
}

/* ==== pick strategies ========================================================= */

#define T32 (INT64_C(1) << 32)

/* ---- weighted: nginx smooth weighted round robin, naive ------------------- */

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
    ul_node *x = N(l, ul_order(l)[p]);
    if (x->elig) x->cur -= x->ew * (T - l->t);
  }
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

/* ---- random ---------------------------------------------------------------- */

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
    assert_true(N(l, s)->elig);
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
  assert_false(N(l, 2)->elig);
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
  assert_true(N(l, 2)->elig);
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
      else assert_true(got >= 0 && N(l, got)->elig);
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

/* ---- least_conn ------------------------------------------------------------- */

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
 * the two members the list's generator draws from its dense array (ties:
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
    const int32_t *dense = dense_of(l);
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
      if (!N(l, s)->elig) fail_msg("round %u: ineligible slot %d picked", round, s);
      cnt[s]++;
    }
    for (i = 0; i < M; i++) {
      if (N(l, (int32_t)i)->elig && i != 0 && cnt[i] == 0)
        fail_msg("round %u: eligible slot %u never picked", round, i);
      if (!N(l, (int32_t)i)->elig) assert_int_equal(cnt[i], 0);
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

/* ---- hash: Maglev ------------------------------------------------------------ */

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
    if (!(s >= 0 && (uint32_t)s < l->cap && N(l, s)->elig))
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
  assert_false(N(l, 2)->elig);
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
    int32_t s = mag_of(l)[k];
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

/* ---- tiers and panic ------------------------------------------------------- */

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
  assert_false(N(l, 0)->elig);
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

/* ---- slow start -------------------------------------------------------------- */

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
    assert_false(N(l, 1)->elig);
    assert_int_equal(l->ramping, 0);
    ul_up(l, 1, 0); /* healthy again at 0: ramp 1 */
    assert_true(N(l, 1)->elig);
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

/* ---- latency tiers and the hash ------------------------------------------------ */

static void test_latency_tier_and_hash(void **state) {
  static const unsigned char bytes[20] = {'a', 'a', 'a', 'a', 'a', 'a', 'a',
                                          'a', 'a', 'a', 'a', 'a', 'a', 'a',
                                          'a', 'a', 'a', 'a', 'a', 'a'};
  uint64_t h[21];
  unsigned char copy[20];
  int i, j;
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

/* ---- size and grow ------------------------------------------------------------- */

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

static ul_list *copy_list(const ul_list *src, int strategy) {
  size_t sz = ul_size(src->cap, strategy);
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
      cmocka_unit_test_teardown(test_opts, teardown),
      cmocka_unit_test_teardown(test_pick_basic, teardown),
      cmocka_unit_test_teardown(test_go_sequence, teardown),
      cmocka_unit_test_teardown(test_bitmap_scale, teardown),
      cmocka_unit_test_teardown(test_bitmap_random, teardown),
      cmocka_unit_test_teardown(test_duplicates, teardown),
      cmocka_unit_test_teardown(test_remove_reconcile, teardown),
      cmocka_unit_test_teardown(test_remove_keeps_order_scores, teardown),
      cmocka_unit_test_teardown(test_grow, teardown),
      cmocka_unit_test_teardown(test_sched_basic, teardown),
      cmocka_unit_test_teardown(test_sched_sleep, teardown),
      cmocka_unit_test_teardown(test_sched_ready_resched, teardown),
      cmocka_unit_test_teardown(test_sched_remove_running, teardown),
      cmocka_unit_test_teardown(test_sched_shutdown, teardown),
      cmocka_unit_test_teardown(test_sched_report_dup, teardown),
      cmocka_unit_test_teardown(test_sched_timeout_dup, teardown),
      cmocka_unit_test_teardown(test_jitter, teardown),
      cmocka_unit_test_teardown(test_heap_order, teardown),
      cmocka_unit_test_teardown(test_model_random, teardown),
      cmocka_unit_test_teardown(test_sched_fuzz, teardown),
      cmocka_unit_test_teardown(test_size, teardown),
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
      cmocka_unit_test_teardown(test_tiers, teardown),
      cmocka_unit_test_teardown(test_panic, teardown),
      cmocka_unit_test_teardown(test_slow_start, teardown),
      cmocka_unit_test_teardown(test_slow_start_weighted_share, teardown),
      cmocka_unit_test_teardown(test_latency_tier_and_hash, teardown),
      cmocka_unit_test_teardown(test_size_strategies, teardown),
      cmocka_unit_test_teardown(test_grow_weighted_random, teardown),
      cmocka_unit_test_teardown(test_grow_hash, teardown),
      cmocka_unit_test_teardown(test_grow_hash_large, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
