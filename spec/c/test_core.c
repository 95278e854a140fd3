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

#include "ul_core.h"

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
  return (int32_t *)((char *)l + l->off_fen);
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
  uint32_t p, i, healthy = 0, unchecked = 0, members = 0, nfree = 0;
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

  b = track(malloc(ul_size(100, UL_ROUND_ROBIN)));
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
  b = track(malloc(ul_size(6, UL_ROUND_ROBIN)));
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
      ul_list *b = track(malloc(ul_size(cap * 2, UL_ROUND_ROBIN)));
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
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
