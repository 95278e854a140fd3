/*
 * core/pick.c - the pick strategies over the eligible members, each O(1) or
 * O(log n) per pick, all in the list's flat block:
 *
 *  round_robin  a three-level bitmap of eligible positions: the next set
 *               bit after the last pick is a few word scans away.
 *  weighted     nginx's smooth weighted round robin. Each member's current
 *               weight grows by its weight at every pick, so it is a line
 *               in the pick count t: cur + ew * t. The greatest of n lines
 *               at a growing t is kept by a kinetic tournament tree: every
 *               inner node holds its winner and the first t at which that
 *               could change (when a line with a steeper slope overtakes).
 *               Up to UL_KST_SCAN slots, a plain scan of the lines is faster.
 *  random       a Fenwick tree of effective weights: a draw in [0, total)
 *               descends to its member.
 *  least_conn   the fewest in flight among the eligible, scanned from after
 *               the last pick (ties by round robin) for up to
 *               UL_LEAST_CONN_EXACT members; above that, the better of two
 *               members drawn from a dense array of the eligible positions
 *               (power of two choices).
 *  hash         a Maglev lookup table of M >= 100 entries per slot,
 *               rebuilt when the eligible set or a weight changed.
 */
#include "pick.h"
#include "block.h"
#include "rand.h"

#include <math.h>
#include <string.h>

#define BITS UL_BM_BITS
#define NEVER INT64_MAX
/* weighted: the pick count is rebased to 0 every 2^20 picks, so that
 * cur + ew * t stays below 2^53 (|cur| < 2 * total weight, ew <= 10^7) */
#define KST_REBASE (INT64_C(1) << 20)

static int is_prime(uint64_t m) {
  uint64_t d;
  if (m < 2) return 0;
  for (d = 2; d * d <= m; d++)
    if (m % d == 0) return 0;
  return 1;
}

/* Maglev table size: a prime >= 100 entries per slot and >= 16381. Balance
 * and stability both improve with M/n: the keys a change moves beyond its
 * own share were 1.3% at M/n = 200 and 0.25% at 3000 (n = 5). Every key's
 * entry depends on M, so a growing list keeps its M (prev) while that
 * still gives 20 entries per slot: only outgrowing it remaps the keys. */
static uint64_t maglev_size(uint32_t cap, uint32_t prev) {
  uint64_t m = (uint64_t)cap * 100;
  if (prev && prev >= (uint64_t)cap * 20) return prev;
  if (m < 16381) m = 16381;
  while (!is_prime(m)) m++;
  return m;
}

size_t ulp_layout(ul_list *l, uint32_t cap, int strategy, size_t off,
                  uint32_t prev_m) {
  uint32_t w0 = ulb_words(cap), w1 = ulb_words(w0), w2 = ulb_words(w1), k;
  size_t o_bm[3];
  size_t o_win = 0, o_melt = 0, o_line = 0, o_fen = 0, o_dense = 0, o_mag = 0,
         o_magx = 0;
  uint64_t m = 0;
  off = ul_align8(off);
  o_bm[0] = off;
  off += (size_t)w0 * 8u;
  o_bm[1] = off;
  off += (size_t)w1 * 8u;
  o_bm[2] = off;
  off += (size_t)w2 * 8u;
  if (strategy == UL_WEIGHTED && cap > UL_KST_SCAN) {
    uint32_t s = ulb_kst_leaves(cap);
    o_melt = off;
    off += (size_t)2 * s * sizeof(int64_t);
    o_line = off;
    off += (size_t)s * sizeof(ul_line);
    o_win = off;
    off = ul_align8(off + (size_t)2 * s * sizeof(int32_t));
  } else if (strategy == UL_RANDOM || strategy == UL_LEAST_CONN) {
    if (strategy == UL_RANDOM) {
      o_fen = off;
      off += ((size_t)cap + 1) * sizeof(int64_t);
    }
    o_dense = off;
    off = ul_align8(off + (size_t)2 * cap * sizeof(int32_t));
  } else if (strategy == UL_HASH) {
    m = maglev_size(cap, prev_m);
    if (m > INT32_MAX) return 0;
    o_magx = off;
    off += (size_t)cap * sizeof(ul_magx);
    o_mag = off;
    off = ul_align8(off + (size_t)m * sizeof(int32_t));
  }
  if (off > UINT32_MAX) return 0; /* offsets are 32-bit */
  if (l) {
    l->bm_words[0] = w0;
    l->bm_words[1] = w1;
    l->bm_words[2] = w2;
    for (k = 0; k < 3; k++) l->off_bm[k] = (uint32_t)o_bm[k];
    l->off_kst_win = (uint32_t)o_win;
    l->off_kst_melt = (uint32_t)o_melt;
    l->off_kst_line = (uint32_t)o_line;
    l->kst_size = strategy == UL_WEIGHTED && cap > UL_KST_SCAN ? ulb_kst_leaves(cap) : 0;
    l->off_fen = (uint32_t)o_fen;
    l->off_dense = (uint32_t)o_dense;
    l->off_mag = (uint32_t)o_mag;
    l->off_magx = (uint32_t)o_magx;
    l->maglev_m = (uint32_t)m;
    l->maglev_dirty = 1;
  }
  return off;
}

/* ---- eligible bitmap, by position ---------------------------------------- */

static void bm_set(ul_list *l, uint32_t pos) {
  uint64_t *b0 = ulb_bm(l, 0), *b1 = ulb_bm(l, 1), *b2 = ulb_bm(l, 2);
  uint32_t w = pos / BITS, w1 = w / BITS;
  if (b0[w] == 0) {
    if (b1[w1] == 0) b2[w1 / BITS] |= 1ULL << (w1 % BITS);
    b1[w1] |= 1ULL << (w % BITS);
  }
  b0[w] |= 1ULL << (pos % BITS);
}

static void bm_clear(ul_list *l, uint32_t pos) {
  uint64_t *b0 = ulb_bm(l, 0), *b1 = ulb_bm(l, 1), *b2 = ulb_bm(l, 2);
  uint32_t w = pos / BITS, w1 = w / BITS;
  b0[w] &= ~(1ULL << (pos % BITS));
  if (b0[w] == 0) {
    b1[w1] &= ~(1ULL << (w % BITS));
    if (b1[w1] == 0) b2[w1 / BITS] &= ~(1ULL << (w1 % BITS));
  }
}

/* First set position >= from, or -1. */
static int64_t bm_next(const ul_list *l, uint32_t from) {
  const uint64_t *b0 = ulb_bm(l, 0), *b1 = ulb_bm(l, 1), *b2 = ulb_bm(l, 2);
  uint32_t w = from / BITS, w1, w2;
  uint64_t m;
  if (w >= l->bm_words[0]) return -1;
  m = b0[w] & (~0ULL << (from % BITS));
  if (m) return (int64_t)w * BITS + __builtin_ctzll(m);
  w++; /* next non-empty level-0 word after w */
  w1 = w / BITS;
  if (w1 >= l->bm_words[1]) return -1;
  m = b1[w1] & (~0ULL << (w % BITS));
  if (!m) {
    w1++; /* next non-empty level-1 word after w1 */
    for (w2 = w1 / BITS; w2 < l->bm_words[2]; w2++) {
      m = b2[w2];
      if (w2 == w1 / BITS) m &= ~0ULL << (w1 % BITS);
      if (m) break;
    }
    if (!m) return -1;
    w1 = w2 * BITS + (uint32_t)__builtin_ctzll(m);
    m = b1[w1];
  }
  w = w1 * BITS + (uint32_t)__builtin_ctzll(m);
  return (int64_t)w * BITS + __builtin_ctzll(b0[w]);
}

/* First eligible position at or cyclically after from (nelig > 0). */
static uint32_t next_elig(const ul_list *l, uint32_t from) {
  int64_t p = from < l->n ? bm_next(l, from) : -1;
  if (p < 0) p = bm_next(l, 0);
  return (uint32_t)p;
}

/* Position after the last pick; ul_pick keeps rr below n. */
static uint32_t after_rr(const ul_list *l) {
  uint32_t from = (uint32_t)(l->rr + 1);
  return from >= l->n ? 0 : from;
}

/* ---- weighted: kinetic tournament tree ------------------------------------ */

/* Winner and certificate of inner node k at pick count t. The left child
 * holds lower positions and wins ties, as nginx keeps the first peer. The
 * certificate (when the loser's steeper line could take over) may be early,
 * never late: an early one only costs a recomputation, so it is computed
 * in doubles, which are exact for the values kept below 2^53 by rebasing
 * (KST_REBASE), and then rounded down. */
static inline void kst_fix(int32_t *win, int64_t *melt, const ul_line *line,
                           uint32_t k, int64_t t) {
  int32_t a = win[2 * k], b = win[2 * k + 1];
  int64_t m = melt[2 * k] < melt[2 * k + 1] ? melt[2 * k] : melt[2 * k + 1];
  if (a < 0 || b < 0) {
    win[k] = a < 0 ? b : a;
  } else {
    const ul_line *x = &line[a], *y = &line[b];
    int64_t vx = x->cur + x->ew * t, vy = y->cur + y->ew * t, c = NEVER;
    if (vx >= vy) { /* a wins until y's line passes strictly above */
      win[k] = a;
      if (y->ew > x->ew) /* exact: floor((x-y)/d) + 1 */
        c = (int64_t)floor((double)(x->cur - y->cur) / (double)(y->ew - x->ew));
    } else { /* b wins until x's line comes level */
      win[k] = b;
      if (x->ew > y->ew) /* exact: ceil((y-x)/d) */
        c = (int64_t)ceil((double)(y->cur - x->cur) / (double)(x->ew - y->ew)) - 1;
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
  ulb_kmelt(l)[k] = NEVER;
  if (x && x->elig) {
    ulb_kline(l)[pos].cur = x->cur;
    ulb_kline(l)[pos].ew = x->ew;
  }
}

static void kst_leaf(ul_list *l, uint32_t pos) {
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

static void kst_rebuild(ul_list *l) {
  uint32_t k, s = l->kst_size;
  if (!s) return;
  for (k = 0; k < s; k++) kst_set_leaf(l, k);
  for (k = s - 1; k >= 1; k--) kst_fix(ulb_kwin(l), ulb_kmelt(l), ulb_kline(l), k, l->t);
}

/* Rebases the pick count to 0 (see KST_REBASE): O(n) every 2^20 picks. */
static void kst_rebase(ul_list *l) {
  ul_node *nd = ul_nodes(l);
  uint32_t p;
  for (p = 0; p < l->n; p++) {
    ul_node *x = &nd[ul_order(l)[p]];
    if (x->elig) x->cur += x->ew * l->t;
  }
  l->t = 0;
  kst_rebuild(l);
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

static uint32_t pick_weighted(ul_list *l) {
  uint32_t pos;
  ul_node *x;
  if (l->t >= KST_REBASE) kst_rebase(l);
  l->t++;
  if (l->kst_size) {
    kst_advance(l, 1, l->t);
    pos = (uint32_t)ulb_kwin(l)[1];
  } else {
    pos = swrr_scan(l);
  }
  x = &ul_nodes(l)[ul_order(l)[pos]];
  x->cur -= l->total_ew;
  kst_leaf(l, pos);
  return pos;
}

/* ---- random and least_conn: Fenwick tree over positions -------------------- */

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

/* random's sum of squared effective weights: all eligible weights are equal
 * exactly when nelig * sumsq == total^2 (Cauchy-Schwarz). */
static ul_u128 sumsq(const ul_list *l) {
  return (ul_u128)l->sumsq[1] << 64 | l->sumsq[0];
}

static void sumsq_add(ul_list *l, int64_t ew, int sign) {
  ul_u128 v = sumsq(l), d = (ul_u128)(uint64_t)ew * (uint64_t)ew;
  v = sign > 0 ? v + d : v - d;
  l->sumsq[0] = (uint64_t)v;
  l->sumsq[1] = (uint64_t)(v >> 64);
}

/* Weighted draw from the Fenwick tree, or, when every eligible member has
 * the same weight (the common case), a uniform draw from the dense array:
 * O(1) instead of a walk down the tree. */
static uint32_t pick_random(ul_list *l) {
  if ((ul_u128)l->nelig * sumsq(l) ==
      (ul_u128)l->total_ew * (uint64_t)l->total_ew)
    return (uint32_t)ulb_dense(l)[ulr_below(l, l->nelig)];
  return fen_find(l, ulr_below(l, l->total_ew));
}

/* least_conn's and random's dense array of eligible positions:
 * DENSE[0..nelig) holds them in any order, DENSE_AT[pos] is where pos sits.
 * O(1) add, remove and
 * uniform draw. */
static void dense_add(ul_list *l, uint32_t pos) {
  uint32_t k = l->nelig - 1; /* nelig already counts it */
  ulb_dense(l)[k] = (int32_t)pos;
  ulb_dense_at(l)[pos] = (int32_t)k;
}

static void dense_remove(ul_list *l, uint32_t pos) {
  int32_t k = ulb_dense_at(l)[pos], last = ulb_dense(l)[l->nelig]; /* nelig: after */
  ulb_dense(l)[k] = last;
  ulb_dense_at(l)[last] = k;
}

static void dense_rebuild(ul_list *l) {
  uint32_t p, k = 0;
  for (p = 0; p < l->n; p++)
    if (ulb_at(l, p)->elig) {
      ulb_dense(l)[k] = (int32_t)p;
      ulb_dense_at(l)[p] = (int32_t)k++;
    }
}

/* Cyclic distance from the position after the last pick: ties go to the
 * member round robin would reach first. */
static uint32_t rr_dist(const ul_list *l, uint32_t pos) {
  uint32_t from = after_rr(l);
  return pos >= from ? pos - from : pos + l->n - from;
}

static uint32_t pick_least_conn(ul_list *l) {
  uint32_t best, p, k;
  if (l->nelig <= UL_LEAST_CONN_EXACT) {
    best = p = next_elig(l, after_rr(l));
    for (k = 1; k < l->nelig; k++) {
      p = next_elig(l, p + 1);
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
           : rr_dist(l, a) <= rr_dist(l, b) ? a : b;
  }
  ul_nodes(l)[ul_order(l)[best]].inflight++;
  return best;
}

/* ---- hash: Maglev ------------------------------------------------------------ */

static uint64_t mix64(uint64_t x) { /* splitmix64's finaliser */
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

/* Fills the table: members take turns claiming their next preferred free
 * entry, each as often as its share of the greatest effective weight. */
static void maglev_build(ul_list *l) {
  ul_magx *mx = ulb_magx(l);
  int32_t *tab = ulb_mag(l);
  uint32_t m = l->maglev_m, e = 0, filled = 0, i, p;
  int64_t wmax = 0;
  for (p = 0; p < l->n; p++) {
    const ul_node *x = ulb_at(l, p);
    if (!x->elig) continue;
    mx[e].slot = ul_order(l)[p];
    mx[e].offset = (uint32_t)(x->hash % m);
    mx[e].skip = (uint32_t)(mix64(x->hash) % (m - 1)) + 1;
    mx[e].next = 0;
    mx[e].credit = 0;
    if (x->ew > wmax) wmax = x->ew;
    e++;
  }
  for (i = 0; i < m; i++) tab[i] = -1;
  l->maglev_dirty = 0;
  if (e == 0) return;
  while (filled < m) {
    for (i = 0; i < e && filled < m; i++) {
      ul_magx *x = &mx[i];
      x->credit += (double)ul_nodes(l)[x->slot].ew / (double)wmax;
      while (x->credit >= 1 && filled < m) {
        uint32_t c;
        do {
          c = (uint32_t)((x->offset + (uint64_t)x->next++ * x->skip) % m);
        } while (tab[c] >= 0);
        tab[c] = x->slot;
        filled++;
        x->credit -= 1;
      }
    }
  }
}

/* The key's entry: key (already a mixed hash) mapped onto [0, M) by a
 * multiply (Lemire's range reduction) rather than a division. */
static uint32_t pick_hash(ul_list *l, uint64_t key) {
  uint64_t e = ((key >> 32) * (uint64_t)l->maglev_m) >> 32;
  if (l->maglev_dirty) maglev_build(l);
  return (uint32_t)ul_nodes(l)[ulb_mag(l)[e]].pos;
}

/* ---- dispatch ------------------------------------------------------------------- */

void ulp_rebuild(ul_list *l) {
  uint32_t k, p;
  for (k = 0; k < 3; k++) memset(ulb_bm(l, k), 0, (size_t)l->bm_words[k] * 8u);
  for (p = 0; p < l->n; p++)
    if (ulb_at(l, p)->elig) bm_set(l, p);
  switch (l->opts.strategy) {
    case UL_WEIGHTED: kst_rebuild(l); break;
    case UL_RANDOM:
      fen_rebuild(l);
      dense_rebuild(l);
      l->sumsq[0] = l->sumsq[1] = 0;
      for (p = 0; p < l->n; p++)
        if (ulb_at(l, p)->elig) sumsq_add(l, ulb_at(l, p)->ew, 1);
      break;
    case UL_LEAST_CONN: dense_rebuild(l); break;
    case UL_HASH: l->maglev_dirty = 1; break;
    default: break;
  }
}

void ulp_update(ul_list *l, uint32_t pos, int old_elig, int64_t old_ew) {
  const ul_node *x = ulb_at(l, pos);
  if (x->elig != old_elig) {
    if (x->elig) bm_set(l, pos);
    else bm_clear(l, pos);
  }
  switch (l->opts.strategy) {
    case UL_WEIGHTED: kst_leaf(l, pos); break;
    case UL_RANDOM:
      fen_add(l, pos, (x->elig ? x->ew : 0) - (old_elig ? old_ew : 0));
      if (old_elig) sumsq_add(l, old_ew, -1);
      if (x->elig) sumsq_add(l, x->ew, 1);
      if (x->elig != old_elig) {
        if (x->elig) dense_add(l, pos);
        else dense_remove(l, pos);
      }
      break;
    case UL_LEAST_CONN:
      if (x->elig != old_elig) {
        if (x->elig) dense_add(l, pos);
        else dense_remove(l, pos);
      }
      break;
    case UL_HASH: l->maglev_dirty = 1; break;
    default: break;
  }
}

/* By strategy, among eligible members (l->nelig > 0): the position. */
static uint32_t pick_by_strategy(ul_list *l, uint64_t key) {
  switch (l->opts.strategy) {
    case UL_WEIGHTED: return pick_weighted(l);
    case UL_RANDOM: return pick_random(l);
    case UL_LEAST_CONN: return pick_least_conn(l);
    case UL_HASH: return pick_hash(l, key);
    default: return next_elig(l, after_rr(l));
  }
}

/* ul_pick lives here, next to the strategies, so that the compiler can
 * inline the round-robin path of the hottest call into one function. */
int32_t ul_pick(ul_list *l, uint64_t key, double now) {
  uint32_t pos;
  if (l->ramping && now >= l->ramp_next) ulc_ramp_tick(l, now);
  if (l->nelig == 0) return -1;
  /* reconcile keeps rr as it was (the Go package): the next pick starts at
   * (rr + 1) mod n, which this rr gives as rr + 1 */
  if (l->rr >= (int32_t)l->n) l->rr = (int32_t)(((uint32_t)l->rr + 1) % l->n) - 1;
  pos = pick_by_strategy(l, key);
  l->rr = (int32_t)pos;
  return ul_order(l)[pos];
}
