/*
 * helpers.h - what the C test programs share: tracked allocation (a failing
 * assertion leaves a test by longjmp; the group teardown frees what is
 * left), a PRNG of their own, list fixtures, and check_invariants, which
 * recounts everything the header and the block promise. The block is read
 * through src/core/block.h, as the core reads it.
 */
#ifndef UL_TEST_HELPERS_H
#define UL_TEST_HELPERS_H

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
#include "core/block.h"

/* Each program uses some of these: static inline, so the others cost no
 * warning. */

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

static inline void *track(void *p) {
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

static inline void *xmalloc(size_t n) { return track(malloc(n)); }
static inline void *xcalloc(size_t n, size_t sz) { return track(calloc(n, sz)); }

static inline void xfree(void *p) {
  int i;
  for (i = 0; i < MAX_LIVE; i++)
    if (g_live[i] == p) g_live[i] = NULL;
  free(p);
}

static inline int teardown(void **state) {
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

static inline uint64_t prng_next(prng *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static inline uint32_t prng_below(prng *r, uint32_t n) {
  return (uint32_t)(prng_next(r) % n);
}

static inline double prng_unit(prng *r) {
  return (double)(prng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* A list of cap slots; the block is sized for o (its strategy and, for
 * weighted, its tier range), exactly, so that ASan sees a layout past it. */
static inline ul_list *new_list(uint32_t cap, const ul_opts *o, uint64_t seed) {
  ul_opts d;
  size_t sz;
  ul_list *l;
  if (!o) {
    ul_opts_default(&d);
    o = &d;
  }
  sz = ul_size_opts(cap, o);
  assert_true(sz > 0 && sz <= ul_size(cap, o->strategy));
  l = track(malloc(sz));
  assert_non_null(l);
  ul_init(l, cap, o, seed);
  return l;
}

/* A list with default options but for the strategy. */
static inline ul_list *new_list_strat(uint32_t cap, int strategy, uint64_t seed) {
  ul_opts o;
  ul_opts_default(&o);
  o.strategy = strategy;
  return new_list(cap, &o, seed);
}

static inline ul_node *N(const ul_list *l, int32_t s) { return &ul_nodes(l)[s]; }

/* weighted: the tree member s is in (-1: none): on a lazy list its
 * class's (a tree per tier of the range, the last for the down) */
static inline int kst_tree_of(const ul_list *l, int32_t s) {
  const ul_node *x = &ul_nodes(l)[s];
  if (l->lazy) {
    if (x->cls == UL_CLS_DOWN) return (int)l->kst_ntree - 1;
    assert_true(x->cls >= l->opts.tier_min && x->cls <= l->opts.tier_max);
    return x->cls - l->opts.tier_min;
  }
  return x->elig ? 0 : -1;
}

/* weighted: the true (nginx) current weight of s: cur + ew x the count of
 * its tree (lazy), of the eligible (eager) */
static inline int64_t true_cur(const ul_list *l, int32_t s) {
  const ul_node *x = &ul_nodes(l)[s];
  if (l->lazy) return x->cur + x->ew * ulb_kst_count(l, (uint32_t)kst_tree_of(l, s));
  return ul_eligible(l, s) ? x->cur + x->ew * l->t : x->cur;
}

/* The pick strategy's own structure agrees with the nodes. */
static inline void check_strategy(const ul_list *l) {
  ul_node *nd = ul_nodes(l);
  int32_t *ord = ul_order(l);
  uint32_t p, k;
  switch (l->opts.strategy) {
    case UL_WEIGHTED:
      /* a count and (past the scan) a tree per tier of the range and one;
       * a pick reads the lowest healthy tier's (all of them in panic) */
      assert_int_equal(l->kst_ntree, (uint32_t)(l->opts.tier_max - l->opts.tier_min + 2));
      if (l->lazy) {
        assert_int_equal(l->kst_mode, l->panic_on ? 2 : 1);
        if (l->active_tier >= 0)
          assert_int_equal(l->kst_pick, (uint32_t)(l->active_tier - l->opts.tier_min));
      } else {
        assert_int_equal(l->kst_mode, 0);
        assert_int_equal(l->kst_pick, 0);
        assert_true(l->kst_c[0] == 0); /* its count is t */
      }
      for (p = 0; p < l->n; p++) /* a tree for each tier a member may have */
        assert_true(ulb_at(l, p)->tier >= l->opts.tier_min &&
                    ulb_at(l, p)->tier <= l->opts.tier_max);
      for (k = 0; k < UL_KST_TREES; k++) { /* none ahead of the picks */
        int64_t c = ulb_kst_count(l, k);
        assert_true(k < l->kst_ntree ? c >= 0 && c <= l->t : !l->kst_c[k]);
      }
      if (l->cap <= UL_KST_SCAN) {
        assert_int_equal(l->kst_size, 0);
      } else {
        uint32_t s = l->kst_size, tr, ntree = l->lazy ? l->kst_ntree : 1;
        uint32_t cnt[UL_KST_TREES] = {0};
        int32_t *at = ulb_kat(l);
        assert_true(s >= l->cap && s / 2 < l->cap);
        for (p = 0; p < l->n; p++) {
          int tk = kst_tree_of(l, ord[p]);
          if (tk >= 0) cnt[tk]++;
        }
        if (!l->lazy) assert_int_equal(cnt[0], l->nelig);
        for (tr = 0; tr < ntree; tr++) {
          int32_t *win = ulb_kwin_k(l, tr);
          int64_t *melt = ulb_kmelt_k(l, tr), t = ulb_kst_count(l, tr);
          const ul_line *line = ulb_kline_k(l, tr);
          uint32_t root = l->kst_root[tr], p2, lo, hi;
          /* the leaves: one per member of the tree, packed from 0 */
          assert_int_equal(l->kst_n[tr], cnt[tr]);
          assert_true(root >= 1 && root <= s && s % root == 0);
          p2 = s / root;
          assert_true(p2 >= l->kst_n[tr] && (p2 == 1 || p2 / 2 < l->kst_n[tr]));
          for (p = 0; p < l->n; p++) {
            int32_t d = at[p];
            if (kst_tree_of(l, ord[p]) != (int)tr) continue;
            if (!(d >= 0 && (uint32_t)d < l->kst_n[tr]))
              fail_msg("kst %u: position %u has leaf %d of %u", tr, p, d, l->kst_n[tr]);
            assert_int_equal(line[d].pos, (int32_t)p);
            assert_int_equal(line[d].slot, ord[p]);
            assert_true(line[d].cur == nd[ord[p]].cur && line[d].ew == nd[ord[p]].ew);
            assert_int_equal(win[s + (uint32_t)d], d);
          }
          for (k = l->kst_n[tr]; k < s; k++) assert_int_equal(win[s + k], -1);
          /* between picks every node under the root holds the winner at t
           * (ties to the lower position) and a certificate later than t */
          for (lo = root, hi = root + 1; lo < s; lo *= 2, hi *= 2)
            for (k = lo; k < hi; k++) {
              int32_t a = win[2 * k], b = win[2 * k + 1], want;
              if (a < 0 || b < 0) {
                want = a < 0 ? b : a;
              } else {
                int64_t va = true_cur(l, ord[line[a].pos]), vb = true_cur(l, ord[line[b].pos]);
                want = va > vb || (va == vb && line[a].pos < line[b].pos) ? a : b;
              }
              if (win[k] != want)
                fail_msg("kst %u node %u: winner %d, expected %d (t=%lld)", tr, k,
                         win[k], want, (long long)t);
              if (!(melt[k] > t))
                fail_msg("kst %u node %u: certificate %lld <= t %lld", tr, k,
                         (long long)melt[k], (long long)t);
            }
        }
        for (p = 0; p < l->cap; p++)
          if ((p >= l->n || kst_tree_of(l, ord[p]) < 0) && at[p] != -1)
            fail_msg("kst: position %u (in no tree) has leaf %d", p, at[p]);
      }
      break;
    case UL_RANDOM: { /* each Fenwick tree in use: the prefix sums */
      __extension__ typedef unsigned __int128 u128;
      uint32_t t, ntree = l->lazy ? UL_NSETS : 1;
      int64_t *pre = xcalloc((size_t)l->cap + 1, sizeof *pre);
      for (t = 0; t < ntree; t++) {
        int64_t *f = ulb_fen(l, t);
        uint64_t sq_lo = 0, sq_hi = 0;
        for (p = 0; p < l->cap; p++) {
          const ul_node *x = p < l->n ? &nd[ord[p]] : NULL;
          int in = x && (l->lazy ? t == UL_SET_ALL || x->cls == t : x->elig);
          int64_t w = in ? x->ew : 0;
          u128 sq = (u128)sq_hi << 64 | sq_lo;
          sq += (u128)(uint64_t)w * (uint64_t)w;
          sq_lo = (uint64_t)sq;
          sq_hi = (uint64_t)(sq >> 64);
          pre[p + 1] = pre[p] + w;
        }
        if (t == l->fen_pick) assert_int_equal(pre[l->cap], l->total_ew);
        assert_true(l->sumsq[t][0] == sq_lo && l->sumsq[t][1] == sq_hi);
        for (k = 1; k <= l->cap; k++)
          if (f[k] != pre[k] - pre[k - (k & (0u - k))])
            fail_msg("fenwick %u [%u] = %lld, expected %lld", t, k, (long long)f[k],
                     (long long)(pre[k] - pre[k - (k & (0u - k))]));
      }
      xfree(pre);
    }
    /* random keeps least_conn's sets too */
    /* fall through */
    case UL_LEAST_CONN: { /* set t: tier t's healthy members, UL_SET_ALL:
                             all; a draw reads the eligible members' */
      int32_t *dat = ulb_dense_at(l), *dall = ulb_dense_all(l);
      uint32_t t, want;
      for (t = 0; t < UL_NSETS; t++) {
        int32_t *d = ulb_dense(l, t);
        want = t == UL_SET_ALL ? l->n : l->tier_healthy[t];
        assert_int_equal(l->set_n[t], want);
        for (k = 0; k < l->set_n[t]; k++) {
          int32_t q = d[k];
          assert_true(q >= 0 && (uint32_t)q < l->n);
          if (t == UL_SET_ALL) {
            assert_int_equal(dall[q], (int32_t)k); /* so all distinct */
          } else {
            assert_int_equal(nd[ord[q]].cls, t);
            assert_int_equal(dat[q], (int32_t)k);
          }
        }
      }
      if (l->nelig) {
        assert_int_equal(l->set_n[l->set_pick], l->nelig);
        for (k = 0; k < l->nelig; k++)
          assert_true(ul_eligible(l, ord[ulb_dense(l, l->set_pick)[k]]));
      }
      break;
    }
    case UL_HASH:
      if (!l->maglev_busy && l->nelig > 0) { /* a settled table */
        int32_t *tab = ulb_mag(l);
        for (k = 0; k < l->maglev_m; k++) {
          int32_t s = tab[k];
          if (!(s >= 0 && (uint32_t)s < l->cap &&
                ul_eligible(l, s)))
            fail_msg("maglev entry %u: slot %d not an eligible member", k, s);
        }
      }
      break;
    default:
      break;
  }
}

/* Checks every internal invariant the header implies. */
static inline void check_invariants(const ul_list *l) {
  ul_node *nd = ul_nodes(l);
  int32_t *ord = ul_order(l), *rq = ulb_ready(l);
  ul_hent *h = ulb_heap(l);
  uint64_t *b0 = ulb_bm(l, 0), *b1 = ulb_bm(l, 1), *b2 = ulb_bm(l, 2);
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
    /* its class: its tier while healthy (every list) */
    assert_int_equal(nd[s].cls, nd[s].score >= 0 ? nd[s].tier : UL_CLS_DOWN);
    if (l->lazy) { /* bit p of tier t's bitmap: healthy, of tier t */
      uint32_t t;
      for (t = 0; t <= UL_MAX_TIER; t++)
        assert_int_equal((b0[t * l->bm_stride + p / 64] >> (p % 64)) & 1u,
                         nd[s].score >= 0 && nd[s].tier == t ? 1 : 0);
      assert_int_equal(nd[s].elig, 0); /* never written */
    } else { /* level-0 bit p mirrors eligibility */
      assert_int_equal((b0[p / 64] >> (p % 64)) & 1u, nd[s].elig ? 1 : 0);
    }
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
      int e = ul_eligible(l, ord[p]);
      if (e != want)
        fail_msg("slot %d: elig %d, expected %d", ord[p], e, want);
      assert_int_equal(x->ew, (int64_t)x->weight * x->ramp);
      if (e) {
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
  { /* each bitmap (one per tier on a lazy list): no bits past n, and
     * the upper levels summarise the lower */
    uint32_t t, nt = l->lazy ? UL_MAX_TIER + 1 : 1;
    for (t = 0; t < nt; t++) {
      const uint64_t *c0 = b0 + (size_t)t * l->bm_stride,
                     *c1 = b1 + (size_t)t * l->bm_stride,
                     *c2 = b2 + (size_t)t * l->bm_stride;
      for (p = l->n; p < l->bm_words[0] * 64u; p++)
        assert_int_equal((c0[p / 64] >> (p % 64)) & 1u, 0);
      for (i = 0; i < l->bm_words[1] * 64u; i++) {
        int want = i < l->bm_words[0] && c0[i] != 0;
        assert_int_equal((c1[i / 64] >> (i % 64)) & 1u, want);
      }
      for (i = 0; i < l->bm_words[2] * 64u; i++) {
        int want = i < l->bm_words[1] && c1[i] != 0;
        assert_int_equal((c2[i / 64] >> (i % 64)) & 1u, want);
      }
    }
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
    s = h[i].slot;
    assert_true(h[i].key == nd[s].key);
    assert_int_equal(nd[s].heap, (int32_t)i);
    assert_true(nd[s].flags & UL_F_MEMBER);
    assert_false(nd[s].flags & UL_F_READY);
    if (i > 0) assert_true(nd[h[(i - 1) / 2].slot].key <= nd[s].key);
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

/* Naive round robin over the healthy: the next position after *rr. */
static inline int32_t ref_pick(const double *score, uint32_t n, int32_t *rr) {
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

#endif
