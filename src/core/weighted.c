/*
 * core/weighted.c - the weighted strategy: nginx's smooth weighted round
 * robin. Each member's current weight grows by its weight at every pick,
 * so it is a line in the pick count t: cur + ew * t (node.cur holds cur
 * while eligible, see list.c). The greatest of n lines at a growing t is
 * kept by a kinetic tournament tree: every inner node holds its winner and
 * the first t at which that could change (when a line with a steeper slope
 * overtakes). Its leaves hold only the eligible members (see kst_p2), so
 * a pick walks log2(eligible) levels. Up to UL_KST_SCAN slots, a plain
 * scan of the lines is faster.
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

/* Winner and certificate of inner node k at pick count t: the greater
 * line, ties to the lower position, as nginx keeps the first peer. The
 * certificate (the last t at which that winner surely holds: when the
 * loser's steeper line takes over) may be early, never late: an early one
 * only costs a recomputation. The loser takes over when it comes level if
 * it has the lower position, else when it passes strictly above. */
static inline __attribute__((always_inline)) void kst_fix(int32_t *win, int64_t *melt, const ul_line *line,
                           uint32_t k, int64_t t) {
  int32_t a = win[2 * k], b = win[2 * k + 1];
  int64_t m = melt[2 * k] < melt[2 * k + 1] ? melt[2 * k] : melt[2 * k + 1];
  if (a < 0 || b < 0) {
    win[k] = a < 0 ? b : a;
  } else {
    const ul_line *x = &line[a], *y = &line[b], *w, *o;
    int64_t vx = x->cur + x->ew * t, vy = y->cur + y->ew * t, c = KST_NEVER;
    if (vx > vy || (vx == vy && x->pos < y->pos)) {
      win[k] = a;
      w = x, o = y;
    } else {
      win[k] = b;
      w = y, o = x;
    }
    if (o->ew > w->ew) { /* exact, in integers */
      int64_t d = o->ew - w->ew, dc = w->cur - o->cur;
      c = o->pos < w->pos ? kst_ceil_div(dc, d) - 1 : kst_floor_div(dc, d);
    }
    if (c <= t) c = t + 1; /* it holds at t: computed here */
    if (c < m) m = c;
  }
  melt[k] = m;
}

/* The leaves hold the eligible members, one each, packed from leaf 0
 * (at[pos] is a member's leaf): picks and updates walk only the subtree
 * of the first p2 leaves (p2 the power of 2 >= kst_n), rooted at
 * kst_root = kst_size / p2: log2(eligible) levels, not log2(cap), and
 * arrays that stay in the cache. Nodes above kst_root go stale until the
 * root climbs back, which needs only its own node fixed: the subtree it
 * gains holds cleared leaves, whose paths were fixed when they were
 * cleared. */
static inline uint32_t kst_p2(const ul_list *l) {
  return l->kst_size / l->kst_root;
}

/* Fixes the path from leaf d up to the root. */
static void kst_path(ul_list *l, uint32_t d) {
  int32_t *win = ulb_kwin(l);
  int64_t *melt = ulb_kmelt(l), t = l->t;
  const ul_line *line = ulb_kline(l);
  uint32_t k, root = l->kst_root;
  for (k = (l->kst_size + d) >> 1; k >= root; k >>= 1)
    kst_fix(win, melt, line, k, t);
}

/* Leaf d holds the member at pos (NULL: cleared). */
static void kst_set_leaf(ul_list *l, uint32_t d, const ul_node *x, uint32_t pos) {
  uint32_t k = l->kst_size + d;
  ulb_kmelt(l)[k] = KST_NEVER;
  ulb_kwin(l)[k] = x ? (int32_t)d : -1;
  if (x) {
    ul_line *y = &ulb_kline(l)[d];
    y->cur = x->cur;
    y->ew = x->ew;
    y->pos = (int32_t)pos;
    y->slot = ul_order(l)[pos];
  }
}

void ulp_kst_leaf(ul_list *l, uint32_t pos) {
  int32_t *at, d;
  const ul_node *x;
  if (!l->kst_size) return;
  at = ulb_kat(l);
  x = ulb_at(l, pos);
  d = at[pos];
  if (x->elig) {
    if (d < 0) { /* joins: the next leaf, the root climbs when it must */
      d = (int32_t)l->kst_n++;
      at[pos] = d;
      if (l->kst_n > kst_p2(l)) l->kst_root >>= 1;
    }
    kst_set_leaf(l, (uint32_t)d, x, pos);
    kst_path(l, (uint32_t)d);
  } else if (d >= 0) { /* leaves: the last leaf moves into its place */
    uint32_t last = --l->kst_n;
    at[pos] = -1;
    if ((uint32_t)d != last) {
      uint32_t q = (uint32_t)ulb_kline(l)[last].pos;
      at[q] = d;
      kst_set_leaf(l, (uint32_t)d, ulb_at(l, q), q);
      kst_path(l, (uint32_t)d);
    }
    kst_set_leaf(l, last, NULL, 0);
    kst_path(l, last);
    if (l->kst_n <= kst_p2(l) / 2 && kst_p2(l) > 1) l->kst_root <<= 1;
  }
}

/* Brings every winner up to pick count t. */
static void kst_advance(ul_list *l, uint32_t k, int64_t t) {
  if (ulb_kmelt(l)[k] > t || k >= l->kst_size) return;
  kst_advance(l, 2 * k, t);
  kst_advance(l, 2 * k + 1, t);
  kst_fix(ulb_kwin(l), ulb_kmelt(l), ulb_kline(l), k, t);
}

/* The leaves anew, in position order, and every node of the tree. */
void ulp_kst_rebuild(ul_list *l) {
  uint32_t k, s = l->kst_size, p, n = 0, p2 = 1;
  int32_t *at;
  if (!s) return;
  at = ulb_kat(l);
  for (p = 0; p < l->cap; p++) at[p] = -1;
  for (p = 0; p < l->n; p++) {
    const ul_node *x = ulb_at(l, p);
    if (!x->elig) continue;
    at[p] = (int32_t)n;
    kst_set_leaf(l, n++, x, p);
  }
  l->kst_n = n;
  for (k = n; k < s; k++) kst_set_leaf(l, k, NULL, 0);
  while (p2 < n) p2 <<= 1;
  l->kst_root = s / p2;
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
    uint32_t root = l->kst_root, d;
    ul_line *y;
    if (ulb_kmelt(l)[root] <= l->t) kst_advance(l, root, l->t);
    d = (uint32_t)ulb_kwin(l)[root];
    /* the winner's leaf is known: its line moves down by the total */
    y = &ulb_kline(l)[d];
    pos = (uint32_t)y->pos;
    ul_nodes(l)[y->slot].cur -= l->total_ew;
    y->cur -= l->total_ew;
    kst_path(l, d);
  } else {
    pos = swrr_scan(l);
    ulb_at(l, pos)->cur -= l->total_ew;
  }
  return pos;
}

#undef KST_NEVER
#undef KST_REBASE
