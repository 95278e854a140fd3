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
 * cleared.
 *
 * An eager list has one tree (0) of its eligible members, its lines in
 * the pick count t. A lazy list (list.c) rewrites no member at a panic or
 * tier flip, and a member's current weight grows only while it may be
 * picked: tree 0 holds the healthy members of tier kst_tier (the lowest
 * healthy tier: eligible at every pick) in t, tree 1 all others (the down
 * and the healthy of higher tiers: eligible only in panic) in kst_tp, the
 * picks made in panic. Outside panic a pick reads tree 0; in panic both,
 * the greater winner (ties to the lower position). A panic flip changes
 * nothing here. A tier flip moves the members m of the two tiers between
 * the trees: O(m log n), or one O(n) rebuild when m > n / 8. */
static inline uint32_t kst_p2(const ul_list *l, uint32_t k) {
  return l->kst_size / l->kst_root[k];
}

/* The pick count the lines of tree k are in. */
static inline int64_t kst_clock(const ul_list *l, uint32_t k) {
  return k ? l->kst_tp : l->t;
}

/* A lazy list's tree of member x. */
static inline uint32_t kst_tree(const ul_list *l, const ul_node *x) {
  return (int32_t)x->cls == l->kst_tier ? 0 : 1;
}

/* Fixes the path from leaf d of tree k up to its root. */
static inline __attribute__((always_inline)) void kst_path(ul_list *l, uint32_t k, uint32_t d) {
  int32_t *win = ulb_kwin_k(l, k);
  int64_t *melt = ulb_kmelt_k(l, k), t = kst_clock(l, k);
  const ul_line *line = ulb_kline_k(l, k);
  uint32_t j, root = l->kst_root[k];
  for (j = (l->kst_size + d) >> 1; j >= root; j >>= 1)
    kst_fix(win, melt, line, j, t);
}

/* Leaf d of tree k holds the member at pos (NULL: cleared). */
static void kst_set_leaf(ul_list *l, uint32_t k, uint32_t d, const ul_node *x,
                         uint32_t pos) {
  uint32_t j = l->kst_size + d;
  ulb_kmelt_k(l, k)[j] = KST_NEVER;
  ulb_kwin_k(l, k)[j] = x ? (int32_t)d : -1;
  if (x) {
    ul_line *y = &ulb_kline_k(l, k)[d];
    y->cur = x->cur;
    y->ew = x->ew;
    y->pos = (int32_t)pos;
    y->slot = ul_order(l)[pos];
  }
}

/* The member at pos joins tree k (or, in it, its line is set anew). */
static void kst_join(ul_list *l, uint32_t k, uint32_t pos) {
  int32_t *at = ulb_kat(l), d = at[pos];
  if (d < 0) { /* joins: the next leaf, the root climbs when it must */
    d = (int32_t)l->kst_n[k]++;
    at[pos] = d;
    if (l->kst_n[k] > kst_p2(l, k)) l->kst_root[k] >>= 1;
  }
  kst_set_leaf(l, k, (uint32_t)d, ulb_at(l, pos), pos);
  kst_path(l, k, (uint32_t)d);
}

/* The member at pos leaves tree k: the last leaf moves into its place. */
static void kst_leave(ul_list *l, uint32_t k, uint32_t pos) {
  int32_t *at = ulb_kat(l), d = at[pos];
  uint32_t last;
  if (d < 0) return;
  last = --l->kst_n[k];
  at[pos] = -1;
  if ((uint32_t)d != last) {
    uint32_t q = (uint32_t)ulb_kline_k(l, k)[last].pos;
    at[q] = d;
    kst_set_leaf(l, k, (uint32_t)d, ulb_at(l, q), q);
    kst_path(l, k, (uint32_t)d);
  }
  kst_set_leaf(l, k, last, NULL, 0);
  kst_path(l, k, last);
  if (l->kst_n[k] <= kst_p2(l, k) / 2 && kst_p2(l, k) > 1) l->kst_root[k] <<= 1;
}

void ulp_kst_leaf(ul_list *l, uint32_t pos) {
  if (!l->kst_size) return;
  if (ulb_at(l, pos)->elig) kst_join(l, 0, pos);
  else kst_leave(l, 0, pos);
}

void ulp_kst_lazy(ul_list *l, uint32_t pos, int on) {
  ul_node *x = ulb_at(l, pos);
  uint32_t k = kst_tree(l, x);
  if (on) {
    x->cur -= x->ew * kst_clock(l, k);
    if (l->kst_size) kst_join(l, k, pos);
  } else {
    if (l->kst_size) kst_leave(l, k, pos);
    x->cur += x->ew * kst_clock(l, k);
  }
}

/* The healthy members of tier (bitmap tier's) move from tree from to the
 * other, their lines from one count to the other. */
static void kst_move(ul_list *l, int32_t tier, uint32_t from) {
  size_t o;
  int64_t p, dt = kst_clock(l, from) - kst_clock(l, !from);
  if (tier < 0) return;
  o = (size_t)tier * l->bm_stride;
  for (p = ulb_bm_next(l, o, 0); p >= 0; p = ulb_bm_next(l, o, (uint32_t)p + 1)) {
    ul_node *x = ulb_at(l, (uint32_t)p);
    if (l->kst_size) kst_leave(l, from, (uint32_t)p);
    x->cur += x->ew * dt;
    if (l->kst_size) kst_join(l, !from, (uint32_t)p);
  }
}

/* Past an eighth of the members, moving them one by one (two leaves and
 * their paths each) costs more than building both trees anew. */
void ulp_kst_tier(ul_list *l) {
  int32_t old = l->kst_tier;
  uint64_t m;
  if (old == l->active_tier) return;
  m = (uint64_t)l->kst_n[0] + (l->active_tier >= 0 ? l->tier_healthy[l->active_tier] : 0);
  if (l->kst_size && m * 8 > l->n) {
    ulp_kst_rebuild(l);
    return;
  }
  kst_move(l, old, 0);
  l->kst_tier = l->active_tier;
  kst_move(l, l->kst_tier, 1);
}

/* Brings every winner of tree k up to pick count t. */
static void kst_advance(ul_list *l, uint32_t k, uint32_t j, int64_t t) {
  if (ulb_kmelt_k(l, k)[j] > t || j >= l->kst_size) return;
  kst_advance(l, k, 2 * j, t);
  kst_advance(l, k, 2 * j + 1, t);
  kst_fix(ulb_kwin_k(l, k), ulb_kmelt_k(l, k), ulb_kline_k(l, k), j, t);
}

/* Tree k anew from at[] and the nodes: the leaves of its n members. */
static void kst_build(ul_list *l, uint32_t k, uint32_t n) {
  uint32_t j, s = l->kst_size, p2 = 1;
  for (j = n; j < s; j++) kst_set_leaf(l, k, j, NULL, 0);
  while (p2 < n) p2 <<= 1;
  l->kst_n[k] = n;
  l->kst_root[k] = s / p2;
  for (j = s - 1; j >= 1; j--)
    kst_fix(ulb_kwin_k(l, k), ulb_kmelt_k(l, k), ulb_kline_k(l, k), j,
            kst_clock(l, k));
}

/* The leaves anew, in position order, and every node of the trees. On a
 * lazy list tree 0 takes active_tier's members: every line is made plain
 * in the tree it was in and put in the count of the one it goes to. */
void ulp_kst_rebuild(ul_list *l) {
  uint32_t s = l->kst_size, p, n[2] = {0, 0};
  int32_t *at = s ? ulb_kat(l) : NULL;
  if (l->lazy) {
    for (p = 0; p < l->n; p++) {
      ul_node *x = ulb_at(l, p);
      x->cur += x->ew * kst_clock(l, kst_tree(l, x));
    }
    l->kst_tier = l->active_tier;
  }
  for (p = 0; p < l->n && l->lazy; p++) {
    ul_node *x = ulb_at(l, p);
    x->cur -= x->ew * kst_clock(l, kst_tree(l, x));
  }
  if (!s) return;
  for (p = 0; p < l->cap; p++) at[p] = -1;
  for (p = 0; p < l->n; p++) {
    const ul_node *x = ulb_at(l, p);
    uint32_t k;
    if (l->lazy) k = kst_tree(l, x);
    else if (x->elig) k = 0;
    else continue;
    at[p] = (int32_t)n[k];
    kst_set_leaf(l, k, n[k]++, x, p);
  }
  kst_build(l, 0, n[0]);
  if (l->lazy) kst_build(l, 1, n[1]);
}

/* Rebases the pick counts to 0 (see KST_REBASE): O(n) every 2^20 picks. */
static void kst_rebase(ul_list *l) {
  uint32_t p;
  for (p = 0; p < l->n; p++) {
    ul_node *x = ulb_at(l, p);
    if (l->lazy) x->cur += x->ew * kst_clock(l, kst_tree(l, x));
    else if (x->elig) x->cur += x->ew * l->t;
  }
  l->t = l->kst_tp = 0;
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

/* The same on a lazy list outside panic: tree 0's members. */
static uint32_t swrr_scan_tier(const ul_list *l) {
  int64_t best = 0, t = l->t;
  uint32_t p, pos = 0, a = (uint32_t)l->kst_tier;
  int found = 0;
  for (p = 0; p < l->n; p++) {
    const ul_node *x = ulb_at(l, p);
    int64_t v;
    if (x->cls != a) continue;
    v = x->cur + x->ew * t;
    if (!found || v > best) {
      best = v;
      pos = p;
      found = 1;
    }
  }
  return pos;
}

/* In panic: every member, each in its tree's count. */
static uint32_t swrr_scan_panic(const ul_list *l) {
  int64_t best = 0;
  uint32_t p, pos = 0, a = (uint32_t)l->kst_tier;
  for (p = 0; p < l->n; p++) {
    const ul_node *x = ulb_at(l, p);
    int64_t v = x->cur + x->ew * (x->cls == a ? l->t : l->kst_tp);
    if (p == 0 || v > best) {
      best = v;
      pos = p;
    }
  }
  return pos;
}

/* The winner of tree k at its count (kst_n[k] > 0): its leaf. */
static inline __attribute__((always_inline)) uint32_t kst_top(ul_list *l, uint32_t k) {
  uint32_t root = l->kst_root[k];
  int64_t t = kst_clock(l, k);
  if (ulb_kmelt_k(l, k)[root] <= t) kst_advance(l, k, root, t);
  return (uint32_t)ulb_kwin_k(l, k)[root];
}

/* The winner's leaf d of tree k is known: its line moves down by the
 * total. */
static inline __attribute__((always_inline)) uint32_t kst_take(ul_list *l, uint32_t k, uint32_t d) {
  ul_line *y = &ulb_kline_k(l, k)[d];
  ul_nodes(l)[y->slot].cur -= l->total_ew;
  y->cur -= l->total_ew;
  kst_path(l, k, d);
  return (uint32_t)y->pos;
}

/* In panic on a lazy list: the greater of the two trees' winners, ties to
 * the lower position. */
static uint32_t kst_pick_panic(ul_list *l) {
  uint32_t d, d1;
  const ul_line *a, *b;
  int64_t va, vb;
  l->kst_tp++;
  if (!l->kst_n[0]) return kst_take(l, 1, kst_top(l, 1));
  d = kst_top(l, 0);
  if (!l->kst_n[1]) return kst_take(l, 0, d);
  d1 = kst_top(l, 1);
  a = &ulb_kline_k(l, 0)[d];
  b = &ulb_kline_k(l, 1)[d1];
  va = a->cur + a->ew * l->t;
  vb = b->cur + b->ew * l->kst_tp;
  if (vb > va || (vb == va && b->pos < a->pos)) return kst_take(l, 1, d1);
  return kst_take(l, 0, d);
}

uint32_t ulp_weighted_pick(ul_list *l) {
  uint32_t pos;
  if (l->t >= KST_REBASE) kst_rebase(l);
  l->t++;
  if (l->kst_size) {
    if (l->kst_mode == 2) return kst_pick_panic(l);
    return kst_take(l, 0, kst_top(l, 0)); /* eager, or tree 0 */
  }
  if (l->kst_mode == 1) pos = swrr_scan_tier(l);
  else if (l->kst_mode == 0) pos = swrr_scan(l);
  else {
    l->kst_tp++;
    pos = swrr_scan_panic(l);
  }
  ulb_at(l, pos)->cur -= l->total_ew;
  return pos;
}

#undef KST_NEVER
#undef KST_REBASE
