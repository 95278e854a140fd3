/*
 * core/weighted.c - the weighted strategy: nginx's smooth weighted round
 * robin. Each member's current weight grows by its weight at every pick,
 * so it is a line in the pick count t: cur + ew * t (node.cur holds cur
 * while eligible, see list.c). The greatest of n lines at a growing t is
 * kept by a kinetic tournament tree: every inner node holds its winner and
 * the first t at which that could change (when a line with a steeper slope
 * overtakes). Up to UL_KST_SCAN slots, a plain scan of the lines is faster.
 */
#include "pick.h"
#include "block.h"

#define KST_NEVER INT64_MAX
/* the pick count is rebased to 0 every 2^20 picks, so that cur + ew * t
 * stays far inside int64 (|cur| < 2 * total weight, ew <= 10^7) */
#define KST_REBASE (INT64_C(1) << 20)

/* floor(n / d) and ceil(n / d) for d > 0, in integers (C division
 * truncates toward 0; the remainder has n's sign). They were computed in
 * doubles and cast back: exact only below 2^53, and a cast of a quotient
 * from 2^63 on (a difference of int64s near 2^63 rounds to 2^63 as a
 * double) is undefined. In integers they are exact for every int64, with
 * no float-to-integer conversion; d >= 1, so the division cannot trap. */
static inline int64_t kst_floor_div(int64_t n, int64_t d) {
  return n / d - (n % d < 0);
}

static inline int64_t kst_ceil_div(int64_t n, int64_t d) {
  return n / d + (n % d > 0);
}

/* Winner and certificate of inner node k at pick count t. The left child
 * holds lower positions and wins ties, as nginx keeps the first peer. The
 * certificate (when the loser's steeper line could take over) may be early,
 * never late: an early one only costs a recomputation. */
static inline void kst_fix(int32_t *win, int64_t *melt, const ul_line *line,
                           uint32_t k, int64_t t) {
  int32_t a = win[2 * k], b = win[2 * k + 1];
  int64_t m = melt[2 * k] < melt[2 * k + 1] ? melt[2 * k] : melt[2 * k + 1];
  if (a < 0 || b < 0) {
    win[k] = a < 0 ? b : a;
  } else {
    const ul_line *x = &line[a], *y = &line[b];
    int64_t vx = x->cur + x->ew * t, vy = y->cur + y->ew * t, c = KST_NEVER;
    if (vx >= vy) { /* a wins until y's line passes strictly above */
      win[k] = a;
      if (y->ew > x->ew) /* exact: floor((x-y)/d) + 1 */
        c = kst_floor_div(x->cur - y->cur, y->ew - x->ew);
    } else { /* b wins until x's line comes level */
      win[k] = b;
      if (x->ew > y->ew) /* exact: ceil((y-x)/d) */
        c = kst_ceil_div(y->cur - x->cur, x->ew - y->ew) - 1;
    }
    if (c <= t) c = t + 1; /* it holds at t: computed here */
    if (c < m) m = c;
  }
  melt[k] = m;
}

/* Copies the line of the member at pos into the tree's leaf. */
static void kst_set_leaf(ul_list *l, uint32_t pos) {
  uint32_t k = l->kst_size + pos;
  const ul_node *x = pos < l->n ? ulb_at(l, pos) : NULL;
  ulb_kwin(l)[k] = x && x->elig ? (int32_t)pos : -1;
  ulb_kmelt(l)[k] = KST_NEVER;
  if (x && x->elig) {
    ulb_kline(l)[pos].cur = x->cur;
    ulb_kline(l)[pos].ew = x->ew;
  }
}

void ulp_kst_leaf(ul_list *l, uint32_t pos) {
  uint32_t k = l->kst_size + pos;
  if (!l->kst_size) return;
  kst_set_leaf(l, pos);
  {
    int32_t *win = ulb_kwin(l);
    int64_t *melt = ulb_kmelt(l), t = l->t;
    const ul_line *line = ulb_kline(l);
    for (k >>= 1; k >= 1; k >>= 1) kst_fix(win, melt, line, k, t);
  }
}

/* Brings every winner up to pick count t. */
static void kst_advance(ul_list *l, uint32_t k, int64_t t) {
  if (ulb_kmelt(l)[k] > t || k >= l->kst_size) return;
  kst_advance(l, 2 * k, t);
  kst_advance(l, 2 * k + 1, t);
  kst_fix(ulb_kwin(l), ulb_kmelt(l), ulb_kline(l), k, t);
}

void ulp_kst_rebuild(ul_list *l) {
  uint32_t k, s = l->kst_size;
  if (!s) return;
  for (k = 0; k < s; k++) kst_set_leaf(l, k);
  for (k = s - 1; k >= 1; k--)
    kst_fix(ulb_kwin(l), ulb_kmelt(l), ulb_kline(l), k, l->t);
}

/* Rebases the pick count to 0 (see KST_REBASE): O(n) every 2^20 picks. */
static void kst_rebase(ul_list *l) {
  uint32_t p;
  for (p = 0; p < l->n; p++) {
    ul_node *x = ulb_at(l, p);
    if (x->elig) x->cur += x->ew * l->t;
  }
  l->t = 0;
  ulp_kst_rebuild(l);
}

/* nginx's own loop, for a few slots: the greatest current, first wins. */
static uint32_t swrr_scan(const ul_list *l) {
  int64_t best = 0;
  uint32_t p, pos = 0;
  int found = 0;
  for (p = 0; p < l->n; p++) {
    const ul_node *x = ulb_at(l, p);
    int64_t v;
    if (!x->elig) continue;
    v = x->cur + x->ew * l->t;
    if (!found || v > best) {
      best = v;
      pos = p;
      found = 1;
    }
  }
  return pos;
}

uint32_t ulp_weighted_pick(ul_list *l) {
  uint32_t pos;
  if (l->t >= KST_REBASE) kst_rebase(l);
  l->t++;
  if (l->kst_size) {
    kst_advance(l, 1, l->t);
    pos = (uint32_t)ulb_kwin(l)[1];
  } else {
    pos = swrr_scan(l);
  }
  ulb_at(l, pos)->cur -= l->total_ew;
  ulp_kst_leaf(l, pos);
  return pos;
}

#undef KST_NEVER
#undef KST_REBASE
