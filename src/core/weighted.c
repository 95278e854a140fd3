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
#include "atomic.h"
#include "lockfree.h"

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

static void ws_end(ul_list *l);

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
 * tier flip, and a member's current weight grows only at the picks it
 * may take: a member is in the tree of its class (its tier's while
 * healthy, the last tree while not: ulb_kst_tree), whose lines are in
 * that tree's own count (ulb_kst_count). Count k advances at a pick that
 * may take tree k's members: outside panic only the lowest healthy
 * tier's (kst_pick), in panic every one; an advancing count is kept as t
 * minus a constant, so a pick moves t alone. Outside panic a pick reads
 * tree kst_pick; in panic every tree, the greatest winner (ties to the
 * lower position). A panic or tier flip changes only which tree a pick
 * reads and which counts advance (ulp_kst_state, O(tiers)): no member
 * moves. A member's change of health, tier, weight or ramp moves its one
 * leaf, O(log n). */
static inline uint32_t kst_p2(const ul_list *l, uint32_t k) {
  return l->kst_size / l->kst_root[k];
}

/* The pick count the lines of tree k are in. */
static inline int64_t kst_clock(const ul_list *l, uint32_t k) {
  return ulb_kst_count(l, k);
}

/* A lazy list's tree of member x. */
static inline uint32_t kst_tree(const ul_list *l, const ul_node *x) {
  return ulb_kst_tree(l, x->cls);
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
  ws_end(l);
  if (!l->kst_size) return;
  if (ulb_at(l, pos)->elig) kst_join(l, 0, pos);
  else kst_leave(l, 0, pos);
}

void ulp_kst_lazy(ul_list *l, uint32_t pos, int on) {
  ul_node *x = ulb_at(l, pos);
  uint32_t k = kst_tree(l, x);
  ws_end(l);
  if (on) {
    x->cur -= x->ew * kst_clock(l, k);
    if (l->kst_size) kst_join(l, k, pos);
  } else {
    if (l->kst_size) kst_leave(l, k, pos);
    x->cur += x->ew * kst_clock(l, k);
  }
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

/* The leaves anew, in position order, and every node of the trees. A
 * lazy member's tree follows from its class, which a rebuild does not
 * change, so its line stays in the count it is in. */
static void kst_rebuild_all(ul_list *l) {
  uint32_t s = l->kst_size, p, k, n[UL_KST_TREES] = {0};
  int32_t *at = s ? ulb_kat(l) : NULL;
  if (!s) return;
  for (p = 0; p < l->cap; p++) at[p] = -1;
  for (p = 0; p < l->n; p++) {
    const ul_node *x = ulb_at(l, p);
    if (l->lazy) k = kst_tree(l, x);
    else if (x->elig) k = 0;
    else continue;
    at[p] = (int32_t)n[k];
    kst_set_leaf(l, k, n[k]++, x, p);
  }
  kst_build(l, 0, n[0]);
  for (k = 1; k < l->kst_ntree && l->lazy; k++) kst_build(l, k, n[k]);
}

void ulp_kst_rebuild(ul_list *l) {
  ws_end(l);
  kst_rebuild_all(l);
}

/* Rebases the pick counts to 0 (see KST_REBASE): O(n) every 2^20 picks. */
static void kst_rebase(ul_list *l) {
  uint32_t p;
  for (p = 0; p < l->n; p++) {
    ul_node *x = ulb_at(l, p);
    if (l->lazy) x->cur += x->ew * kst_clock(l, kst_tree(l, x));
    else if (x->elig) x->cur += x->ew * l->t;
  }
  l->t = 0; /* every count at 0, advancing or not */
  for (p = 0; p < UL_KST_TREES; p++) l->kst_c[p] = 0;
  kst_rebuild_all(l);
}

/* nginx's own loop, for a few slots: the greatest current, first wins. */
static inline __attribute__((always_inline)) uint32_t swrr_scan(const ul_list *l) {
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

/* The same on a lazy list outside panic: the lowest healthy tier's, in
 * its count t. */
static inline __attribute__((always_inline)) uint32_t swrr_scan_tier(const ul_list *l, int64_t t) {
  int64_t best = 0;
  uint32_t p, pos = 0, a = (uint32_t)l->active_tier;
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
  uint32_t p, pos = 0;
  for (p = 0; p < l->n; p++) {
    const ul_node *x = ulb_at(l, p);
    int64_t v = x->cur + x->ew * kst_clock(l, kst_tree(l, x));
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

/* kst_take(kst_top(k)) at tree k's count t, every address read once: the
 * pick of one tree (outside panic) is the hot path. */
static inline __attribute__((always_inline)) uint32_t kst_pick_tree(ul_list *l, uint32_t k,
                                                                    int64_t t) {
  const size_t s = l->kst_size;
  const uint32_t root = l->kst_root[k];
  const int64_t total = l->total_ew;
  int32_t *const win = ulb_kwin_k(l, k);
  int64_t *const melt = ulb_kmelt_k(l, k);
  ul_line *const line = ulb_kline_k(l, k);
  ul_line *y;
  uint32_t j, d;
  if (melt[root] <= t) kst_advance(l, k, root, t);
  d = (uint32_t)win[root];
  y = &line[d];
  ul_nodes(l)[y->slot].cur -= total;
  y->cur -= total;
  for (j = (uint32_t)(s + d) >> 1; j >= root; j >>= 1) kst_fix(win, melt, line, j, t);
  return (uint32_t)y->pos;
}

/* In panic on a lazy list: the greatest of the trees' winners, ties to
 * the lower position (nelig = n > 0: a tree has a member). */
static uint32_t kst_pick_panic(ul_list *l) {
  uint32_t k, bk = 0, bd = 0;
  int64_t bv = 0;
  int32_t bpos = -1;
  for (k = 0; k < l->kst_ntree; k++) {
    uint32_t d;
    const ul_line *y;
    int64_t v;
    if (!l->kst_n[k]) continue;
    d = kst_top(l, k);
    y = &ulb_kline_k(l, k)[d];
    v = y->cur + y->ew * (l->t - l->kst_c[k]); /* all advance */
    if (bpos < 0 || v > bv || (v == bv && y->pos < bpos)) {
      bv = v;
      bpos = y->pos;
      bk = k;
      bd = d;
    }
  }
  return kst_take(l, bk, bd);
}

void ulp_kst_state(ul_list *l, uint32_t mode, uint32_t pick) {
  uint32_t k;
  if (mode == l->kst_mode && pick == l->kst_pick) return;
  ws_end(l); /* its counts move: the period is over */
  for (k = 0; k < l->kst_ntree; k++) {
    int was = l->kst_mode == 2 || k == l->kst_pick, is = mode == 2 || k == pick;
    if (was != is) l->kst_c[k] = l->t - l->kst_c[k]; /* its count stays */
  }
  l->kst_mode = mode;
  l->kst_pick = pick;
}

/* The pick itself, from the nodes' state, the counts rebased already. */
static inline __attribute__((always_inline)) uint32_t swrr_next(ul_list *l) {
  uint32_t pos, k;
  l->t++;
  if (l->kst_mode != 2) { /* eager (tree 0), or the lowest healthy tier's */
    int64_t c;
    k = l->kst_pick;
    c = l->t - l->kst_c[k];
    if (l->kst_size) return kst_pick_tree(l, k, c);
    pos = l->kst_mode ? swrr_scan_tier(l, c) : swrr_scan(l);
  } else { /* panic: every member takes part */
    if (l->kst_size) return kst_pick_panic(l);
    pos = swrr_scan_panic(l);
  }
  ulb_at(l, pos)->cur -= l->total_ew;
  return pos;
}

static uint32_t swrr_pick(ul_list *l) {
  if (l->t >= KST_REBASE) kst_rebase(l);
  return swrr_next(l);
}

/* ---- one period (shared lists) ------------------------------------------
 * A shared weighted list (l->lockfree, lazy) picks without the lock from
 * a recording of its next picks. Smooth weighted round robin, once its
 * state is on its cycle, repeats itself every L = total / g picks (g: the
 * gcd of the effective weights of the members that take part), each
 * member taken ew / g times; a state a change left off the cycle comes
 * onto it within a few periods. A locked pick with no period and nothing
 * ramping makes the next L picks (ws_try), recording their slots in ws[].
 * If every member's value came back, the state is on its cycle: ws_len =
 * L, and the picks to come are ws[i], ws[i + 1], ... cyclically (i: ws_i
 * under the lock, the pick word's low half outside it). Else the L picks
 * are undone and the next try waits 2L locked picks; a period that cannot
 * fit (UL_WS_MAX) is not tried again until a change.
 *
 * A pick from the period, locked (ws_next) or not (ul_pick_lockfree_
 * weighted, one CAS of the word), moves only the index: the nodes keep
 * the state of index ws_base. Every locked section brings them up to the
 * index first (ulp_ws_sync, from ul_write_begin), so whatever it changes
 * starts from the state a private list would be in; any change of what a
 * pick reads (a member's leaf or line, the trees' counts, a rebuild: the
 * ulp_kst_ entry points) then ends the period (ws_end). Full periods need
 * no replay: they leave the state as it was. */

#define WS_NEVER UINT32_MAX /* ws_wait: no try until a change */

static inline int32_t *ws_slots(const ul_list *l) {
  return (int32_t *)(void *)((char *)l + l->off_ws);
}

static inline int64_t *ws_vals(const ul_list *l) { /* one per slot */
  return (int64_t *)(void *)((char *)l + l->off_ws + UL_WS_MAX * 4u);
}

/* The value a pick compares (lazy): cur in its tree's count. */
static inline int64_t ws_value(const ul_list *l, const ul_node *x) {
  return x->cur + x->ew * kst_clock(l, kst_tree(l, x));
}

/* Whether member x takes part in a pick (lazy): its tree advances. */
static inline int ws_takes_part(const ul_list *l, const ul_node *x) {
  return l->kst_mode == 2 || kst_tree(l, x) == l->kst_pick;
}

/* One pick of the period made on the nodes: slot s takes it, as
 * kst_take would, when its leaf is where its position says (else only
 * its node moves; 0 then: the trees are to be rebuilt). */
static int ws_take(ul_list *l, int32_t s) {
  ul_node *x = &ul_nodes(l)[s];
  if (l->t >= KST_REBASE) kst_rebase(l);
  l->t++;
  if (l->kst_size) {
    uint32_t k = kst_tree(l, x), root = l->kst_root[k];
    int64_t t = kst_clock(l, k);
    int32_t d = x->pos >= 0 && (uint32_t)x->pos < l->n ? ulb_kat(l)[x->pos] : -1;
    if (d >= 0 && (uint32_t)d < l->kst_n[k] && ulb_kline_k(l, k)[d].slot == s) {
      if (ulb_kmelt_k(l, k)[root] <= t) kst_advance(l, k, root, t);
      kst_take(l, k, (uint32_t)d);
      return 1;
    }
  }
  x->cur -= l->total_ew;
  return !l->kst_size;
}

void ulp_ws_sync(ul_list *l) {
  uint32_t len = l->ws_len, i = l->ws_i, b = l->ws_base, k;
  int32_t *ws = ws_slots(l);
  int trees = 1;
  if (!len) return;
  if (len > UL_WS_MAX || i >= len || b >= len) { /* not ours: drop it */
    UL_WST(&l->ws_len, 0u);
    l->ws_i = 0;
    return;
  }
  for (k = b; k != i; k = k + 1 == len ? 0 : k + 1) {
    int32_t s = ws[k];
    if (s >= 0 && (uint32_t)s < l->cap) trees &= ws_take(l, s);
  }
  if (!trees) kst_rebuild_all(l);
  l->ws_base = i;
}

static void ws_end(ul_list *l) {
  if (l->ws_wait == WS_NEVER) l->ws_wait = 0; /* a change: try again */
  if (!l->ws_len) return;
  ulp_ws_sync(l);
  UL_WST(&l->ws_len, 0u);
}

static uint64_t ws_gcd(uint64_t a, uint64_t b) {
  while (b) {
    uint64_t r = a % b;
    a = b;
    b = r;
  }
  return a;
}

/* The i-th of the np members that take part in a pick (ws_part): the
 * leaves of the tree a pick reads, or every member by position (panic,
 * or no trees: a scan) of which ws_takes_part says which. */
static int32_t ws_part_slot(const ul_list *l, const ul_line *line, uint32_t i) {
  return line ? line[i].slot : ul_order(l)[i];
}

static uint32_t ws_part(const ul_list *l, const ul_line **line) {
  *line = NULL;
  if (l->kst_mode == 2 || !l->kst_size) return l->n;
  *line = ulb_kline_k(l, l->kst_pick);
  return l->kst_n[l->kst_pick];
}

/* Makes the next L picks and keeps them as the period when the state came
 * back (see above); 1 if it did. O(members taking part + L). */
static int ws_try(ul_list *l) {
  uint64_t g = 0, len;
  uint32_t i, np;
  int32_t *ws = ws_slots(l);
  int64_t *val = ws_vals(l), total = l->total_ew;
  const ul_line *line;
  ul_node *nd = ul_nodes(l);
  int back = 1;
  if (l->ws_wait) {
    if (l->ws_wait != WS_NEVER) l->ws_wait--;
    return 0;
  }
  if (!l->lazy || !l->kst_ntree || l->ramping || total <= 0) return 0;
  np = ws_part(l, &line);
  if (np > UL_WS_MAX) { /* each takes a pick at least: no period fits */
    l->ws_wait = WS_NEVER;
    return 0;
  }
  for (i = 0; i < np; i++) {
    const ul_node *x = &nd[ws_part_slot(l, line, i)];
    if (ws_takes_part(l, x) && x->ew > 0) g = ws_gcd(g, (uint64_t)x->ew);
  }
  if (g == 0 || (uint64_t)total % g || (len = (uint64_t)total / g) > UL_WS_MAX) {
    l->ws_wait = WS_NEVER; /* no period to keep until a change */
    return 0;
  }
  if (l->t + (int64_t)len >= KST_REBASE) kst_rebase(l); /* none inside */
  for (i = 0; i < np; i++) {
    int32_t s = ws_part_slot(l, line, i);
    val[s] = ws_value(l, &nd[s]);
  }
  for (i = 0; i < (uint32_t)len; i++)
    UL_WST(&ws[i], ul_order(l)[swrr_pick(l)]);
  /* the others' values stand: their counts do not advance, and no pick
   * takes them */
  for (i = 0; i < np && back; i++) {
    int32_t s = ws_part_slot(l, line, i);
    back = ws_value(l, &nd[s]) == val[s];
  }
  if (!back) { /* off its cycle yet: the picks undone */
    for (i = 0; i < (uint32_t)len; i++) nd[ws[i]].cur += total;
    l->t -= (int64_t)len;
    kst_rebuild_all(l);
    l->ws_wait = 2u * (uint32_t)len;
    return 0;
  }
  l->ws_i = 0;
  l->ws_base = 0;
  UL_WST(&l->ws_len, (uint32_t)len);
  return 1;
}

/* The period's next pick, under the lock: only the index moves. */
static uint32_t ws_next(ul_list *l) {
  uint32_t i = l->ws_i, len = l->ws_len;
  int32_t s;
  if (i >= len) i = 0;
  s = ws_slots(l)[i];
  l->ws_i = i + 1 == len ? 0 : i + 1;
  return (uint32_t)ul_nodes(l)[s].pos;
}

/* A shared list's locked pick: from the period, or one made now (out of
 * line: a private list's pick stays as small as it was). */
static __attribute__((noinline)) uint32_t ws_pick(ul_list *l) {
  if (l->ws_len || ws_try(l)) return ws_next(l);
  return swrr_pick(l);
}

/* One test on a private list's path for both rare cases (a rebase, a
 * shared block). The scans are always inlined: with the pick made in
 * three places GCC called them out of line, ~18 instructions more a
 * private pick (make bench-ir). */
uint32_t ulp_weighted_pick(ul_list *l) {
  if (__builtin_expect(l->t >= KST_REBASE || l->lockfree, 0)) {
    if (l->lockfree) return ws_pick(l);
    kst_rebase(l);
  }
  return swrr_next(l);
}

int32_t ul_pick_lockfree_weighted(ul_list *l, const ul_lfview *v,
                                  const uint32_t *ver, uint32_t want) {
  const int32_t *ws = (const int32_t *)(const void *)((const char *)l + v->off_ws);
  uint64_t *picks = (uint64_t *)(void *)((char *)l + v->off_picks);
  int k;
  if (!v->weighted) return UL_PICK_LOCK;
  for (k = 0; k < UL_LF_TRIES; k++) {
    uint64_t w;
    uint32_t len, i;
    int32_t s;
    if (!ul_lf_enter(l, ver, want, &w)) return UL_PICK_LOCK;
    len = UL_LLD(&l->ws_len);
    if (len == 0 || len > UL_WS_MAX)
      return ul_lf_none(l, w); /* no period: none eligible, or the lock */
    i = (uint32_t)w;
    if (i >= len) continue; /* torn */
    s = UL_LLD(&ws[i]);
    if (s < 0 || (uint32_t)s >= v->cap) continue; /* torn */
    UL_FENCE_READER(); /* every read above before the CAS */
    if (__atomic_compare_exchange_n(&l->rr_word, &w,
                                    (w & ~0xFFFFFFFFULL) | (i + 1 == len ? 0 : i + 1),
                                    0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
      UL_ADD(&picks[s], 1);
      return s;
    }
  }
  return UL_PICK_LOCK;
}

#undef WS_NEVER
#undef KST_NEVER
#undef KST_REBASE
