/*
 * core/random.c - the strategies that draw from the list's generator:
 *
 *  random      a weighted draw from a Fenwick tree of effective weights
 *              (a draw in [0, total) descends to its member), or, when all
 *              eligible weights are equal, a uniform draw from a dense
 *              array of the eligible positions: O(1).
 *  least_conn  the fewest in flight among the eligible, scanned from after
 *              the last pick on the eligible bitmap (ties by round robin)
 *              for up to UL_LEAST_CONN_EXACT members; above that, the
 *              better of two members drawn from the dense array (power of
 *              two choices).
 */
#include "pick.h"
#include "block.h"
#include "rand.h"

#include <string.h>

/* ---- Fenwick tree over positions -------------------------------------- */

static int64_t fen_weight(const ul_node *x) { return x->elig ? x->ew : 0; }

static void fen_add(ul_list *l, uint32_t pos, int64_t d) {
  int64_t *f = ulb_fen(l);
  uint32_t i;
  for (i = pos + 1; i <= l->cap; i += i & (0u - i)) f[i] += d;
}

static void fen_rebuild(ul_list *l) {
  int64_t *f = ulb_fen(l);
  uint32_t i;
  memset(f, 0, ((size_t)l->cap + 1) * sizeof *f);
  for (i = 1; i <= l->cap; i++) {
    uint32_t j = i + (i & (0u - i));
    if (i - 1 < l->n) f[i] += fen_weight(ulb_at(l, i - 1));
    if (j <= l->cap) f[j] += f[i];
  }
}

/* Position whose cumulative range holds r (0 <= r < total). */
static uint32_t fen_find(const ul_list *l, int64_t r) {
  const int64_t *f = ulb_fen(l);
  uint32_t pos = 0, step = 1;
  while (step * 2 <= l->cap) step *= 2;
  for (; step; step >>= 1)
    if (pos + step <= l->cap && f[pos + step] <= r) {
      pos += step;
      r -= f[pos];
    }
  return pos; /* 0-based: the 1-based index pos + 1 */
}

/* ---- sum of squared effective weights --------------------------------- */

/* All eligible weights are equal exactly when nelig * sumsq == total^2
 * (Cauchy-Schwarz). Kept as 128 bits in l->sumsq[0] (low), [1] (high). */
static ul_u128 sumsq_get(const ul_list *l) {
  return (ul_u128)l->sumsq[1] << 64 | l->sumsq[0];
}

static void sumsq_add(ul_list *l, int64_t ew, int sign) {
  ul_u128 v = sumsq_get(l), d = (ul_u128)(uint64_t)ew * (uint64_t)ew;
  v = sign > 0 ? v + d : v - d;
  l->sumsq[0] = (uint64_t)v;
  l->sumsq[1] = (uint64_t)(v >> 64);
}

/* ---- dense array of eligible positions -------------------------------- */

/* DENSE[0..nelig) holds them in any order, DENSE_AT[pos] is where pos
 * sits: O(1) add, remove and uniform draw. */
static void dense_add(ul_list *l, uint32_t pos) {
  uint32_t k = l->nelig - 1; /* nelig already counts it */
  ulb_dense(l)[k] = (int32_t)pos;
  ulb_dense_at(l)[pos] = (int32_t)k;
}

static void dense_remove(ul_list *l, uint32_t pos) {
  /* nelig already leaves it out: the last one is at nelig */
  int32_t k = ulb_dense_at(l)[pos], last = ulb_dense(l)[l->nelig];
  ulb_dense(l)[k] = last;
  ulb_dense_at(l)[last] = k;
}

void ulp_dense_rebuild(ul_list *l) {
  uint32_t p, k = 0;
  for (p = 0; p < l->n; p++)
    if (ulb_at(l, p)->elig) {
      ulb_dense(l)[k] = (int32_t)p;
      ulb_dense_at(l)[p] = (int32_t)k++;
    }
}

void ulp_dense_update(ul_list *l, uint32_t pos, int old_elig) {
  int e = ulb_at(l, pos)->elig;
  if (e == old_elig) return;
  if (e) dense_add(l, pos);
  else dense_remove(l, pos);
}

/* ---- random ----------------------------------------------------------- */

void ulp_random_rebuild(ul_list *l) {
  uint32_t p;
  fen_rebuild(l);
  ulp_dense_rebuild(l);
  l->sumsq[0] = l->sumsq[1] = 0;
  for (p = 0; p < l->n; p++)
    if (ulb_at(l, p)->elig) sumsq_add(l, ulb_at(l, p)->ew, 1);
}

void ulp_random_update(ul_list *l, uint32_t pos, int old_elig,
                       int64_t old_ew) {
  const ul_node *x = ulb_at(l, pos);
  fen_add(l, pos, (x->elig ? x->ew : 0) - (old_elig ? old_ew : 0));
  if (old_elig) sumsq_add(l, old_ew, -1);
  if (x->elig) sumsq_add(l, x->ew, 1);
  ulp_dense_update(l, pos, old_elig);
}

/* Weighted draw from the Fenwick tree, or, when every eligible member has
 * the same weight (the common case), a uniform draw from the dense array:
 * O(1) instead of a walk down the tree. */
uint32_t ulp_random_pick(ul_list *l) {
  if ((ul_u128)l->nelig * sumsq_get(l) ==
      (ul_u128)l->total_ew * (uint64_t)l->total_ew)
    return (uint32_t)ulb_dense(l)[ulr_below(l, l->nelig)];
  return fen_find(l, ulr_below(l, l->total_ew));
}

/* ---- least_conn ------------------------------------------------------- */

/* Cyclic distance from the position after the last pick: ties go to the
 * member round robin would reach first. */
static uint32_t lc_rr_dist(const ul_list *l, uint32_t pos) {
  uint32_t from = ulp_after_rr(l);
  return pos >= from ? pos - from : pos + l->n - from;
}

uint32_t ulp_least_conn_pick(ul_list *l) {
  uint32_t best;
  if (l->nelig <= UL_LEAST_CONN_EXACT) {
    uint32_t p, k;
    best = p = ulp_next_elig(l, ulp_after_rr(l));
    for (k = 1; k < l->nelig; k++) {
      p = ulp_next_elig(l, p + 1);
      if (ulb_at(l, p)->inflight < ulb_at(l, best)->inflight) best = p;
    }
  } else { /* two distinct draws among the eligible */
    int64_t r1 = ulr_below(l, l->nelig), r2 = ulr_below(l, (int64_t)l->nelig - 1);
    uint32_t a, b;
    if (r2 >= r1) r2++;
    a = (uint32_t)ulb_dense(l)[r1];
    b = (uint32_t)ulb_dense(l)[r2];
    best = ulb_at(l, a)->inflight < ulb_at(l, b)->inflight ? a
           : ulb_at(l, b)->inflight < ulb_at(l, a)->inflight ? b
           : lc_rr_dist(l, a) <= lc_rr_dist(l, b) ? a : b;
  }
  ulb_at(l, best)->inflight++;
  return best;
}
