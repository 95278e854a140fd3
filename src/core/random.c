/*
 * core/random.c - the strategies that draw from the list's generator:
 *
 *  random      a weighted draw from a Fenwick tree of effective weights
 *              (a draw in [0, total) descends to its member), or, when all
 *              eligible weights are equal, a uniform draw from the set of
 *              the eligible positions: O(1).
 *  least_conn  the fewest in flight among the eligible, scanned from after
 *              the last pick on the eligible bitmap (ties by round robin)
 *              for up to UL_LEAST_CONN_EXACT members; above that, the
 *              better of two members drawn from the set of the eligible (power of
 *              two choices).
 */
#include "pick.h"
#include "block.h"
#include "rand.h"
#include "atomic.h"
#include "lockfree.h"


/* ---- Fenwick trees over positions ------------------------------------
 * Tree k holds, at each position, the effective weight of its member if
 * the member is in k's set: on an eager list tree 0 is the only one, of
 * the eligible members; on a lazy one tree t (a tier) holds that tier's
 * healthy members and tree UL_SET_ALL every member, so that a panic or
 * tier flip only changes which tree a draw reads (fen_pick). A draw goes
 * by position order in every tree: the same member for the same draw on
 * either path. */

static void fen_add(ul_list *l, uint32_t k, uint32_t pos, int64_t d) {
  int64_t *f = ulb_fen(l, k);
  uint32_t i;
  for (i = pos + 1; i <= l->cap; i += i & (0u - i)) UL_WST(&f[i], f[i] + d);
}

/* Whether x counts in tree k. */
static int fen_in(const ul_list *l, uint32_t k, const ul_node *x) {
  if (!l->lazy) return x->elig;
  return k == UL_SET_ALL || x->cls == k;
}

static void fen_build(ul_list *l, uint32_t k) {
  int64_t *f = ulb_fen(l, k);
  uint32_t i;
  /* UL_WST: a lock-free pick may walk the tree meanwhile (atomic.h) */
  for (i = 0; i <= l->cap; i++) UL_WST(&f[i], 0);
  for (i = 1; i <= l->cap; i++) {
    uint32_t j = i + (i & (0u - i));
    if (i - 1 < l->n) {
      const ul_node *x = ulb_at(l, i - 1);
      if (fen_in(l, k, x)) UL_WST(&f[i], f[i] + x->ew);
    }
    if (j <= l->cap) UL_WST(&f[j], f[j] + f[i]);
  }
}

/* Position whose cumulative range in tree f holds r (0 <= r < total). */
static uint32_t fen_find(const ul_list *l, const int64_t *f, int64_t r) {
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

/* All of a tree's weights are equal exactly when members * sumsq ==
 * total^2 (Cauchy-Schwarz). Kept as 128 bits in l->sumsq[k][0] (low),
 * [k][1] (high), for each tree k. */
static ul_u128 sumsq_get(const ul_list *l, uint32_t k) {
  return (ul_u128)l->sumsq[k][1] << 64 | l->sumsq[k][0];
}

static void sumsq_add(ul_list *l, uint32_t k, int64_t ew, int sign) {
  ul_u128 v = sumsq_get(l, k), d = (ul_u128)(uint64_t)ew * (uint64_t)ew;
  v = sign > 0 ? v + d : v - d;
  UL_WST(&l->sumsq[k][0], (uint64_t)v);
  UL_WST(&l->sumsq[k][1], (uint64_t)(v >> 64));
}

/* ---- the sets ----------------------------------------------------------
 * Set t (a tier) holds the positions of that tier's healthy members, set
 * UL_SET_ALL those of every member, each in any order, so that a uniform
 * draw from the eligible members is O(1) at any panic state or tier:
 * dense(k)[0..set_n[k]), and DENSE_AT[pos] / DENSE_ALL[pos] where pos sits
 * in its tier's set / in the set of all. Their order is a rule of its
 * own, the same on a lazy and an eager list: a member joining a set goes
 * last, one leaving it is replaced by the last, and a rebuild (members
 * removed, a grow) lays every set out in position order. A panic or tier
 * flip changes no set. */
static void set_add(ul_list *l, uint32_t k, int32_t *at, uint32_t pos) {
  uint32_t i = l->set_n[k]++;
  UL_WST(&ulb_dense(l, k)[i], (int32_t)pos);
  at[pos] = (int32_t)i;
}

static void set_remove(ul_list *l, uint32_t k, int32_t *at, uint32_t pos) {
  int32_t *d = ulb_dense(l, k), i = at[pos], q = d[--l->set_n[k]];
  UL_WST(&d[i], q);
  at[q] = i;
}

void ulp_sets_rebuild(ul_list *l) {
  uint32_t p, k;
  for (k = 0; k < UL_NSETS; k++) l->set_n[k] = 0;
  for (p = 0; p < l->n; p++) {
    const ul_node *x = ulb_at(l, p);
    set_add(l, UL_SET_ALL, ulb_dense_all(l), p);
    if (x->cls < UL_CLS_DOWN) set_add(l, x->cls, ulb_dense_at(l), p);
  }
}

void ulp_sets_move(ul_list *l, uint32_t pos, uint32_t old_cls) {
  uint32_t c = ulb_at(l, pos)->cls;
  if (old_cls == UL_NSETS) set_add(l, UL_SET_ALL, ulb_dense_all(l), pos);
  else if (old_cls < UL_CLS_DOWN) set_remove(l, old_cls, ulb_dense_at(l), pos);
  if (c < UL_CLS_DOWN) set_add(l, c, ulb_dense_at(l), pos);
}

/* ---- random ----------------------------------------------------------- */

void ulp_random_rebuild(ul_list *l) {
  uint32_t p, k;
  for (k = 0; k < UL_NSETS; k++) {
    UL_WST(&l->sumsq[k][0], 0);
    UL_WST(&l->sumsq[k][1], 0);
  }
  if (!l->lazy) {
    fen_build(l, 0);
    for (p = 0; p < l->n; p++)
      if (ulb_at(l, p)->elig) sumsq_add(l, 0, ulb_at(l, p)->ew, 1);
    return;
  }
  /* members only ever sit in the tiers tier_min..tier_max: the other
   * trees stay as ul_init cleared them */
  for (k = (uint32_t)l->opts.tier_min; k <= (uint32_t)l->opts.tier_max; k++)
    fen_build(l, k);
  fen_build(l, UL_SET_ALL);
  for (p = 0; p < l->n; p++) {
    const ul_node *x = ulb_at(l, p);
    sumsq_add(l, UL_SET_ALL, x->ew, 1);
    if (x->cls < UL_CLS_DOWN) sumsq_add(l, x->cls, x->ew, 1);
  }
}

void ulp_random_update(ul_list *l, uint32_t pos, int old_elig,
                       int64_t old_ew) {
  const ul_node *x = ulb_at(l, pos);
  fen_add(l, 0, pos, (x->elig ? x->ew : 0) - (old_elig ? old_ew : 0));
  if (old_elig) sumsq_add(l, 0, old_ew, -1);
  if (x->elig) sumsq_add(l, 0, x->ew, 1);
}

void ulp_random_lazy(ul_list *l, uint32_t pos, int on) {
  const ul_node *x = ulb_at(l, pos);
  int sign = on ? 1 : -1;
  int64_t d = on ? x->ew : -x->ew;
  if (x->cls < UL_CLS_DOWN) {
    fen_add(l, x->cls, pos, d);
    sumsq_add(l, x->cls, x->ew, sign);
  }
  fen_add(l, UL_SET_ALL, pos, d);
  sumsq_add(l, UL_SET_ALL, x->ew, sign);
}

/* Weighted draw from the tree of the eligible members, or, when every
 * one of them has the same weight (the common case), a uniform draw from
 * their set: O(1) instead of a walk down the tree. */
uint32_t ulp_random_pick(ul_list *l) {
  uint32_t k = l->fen_pick;
  if ((ul_u128)l->nelig * sumsq_get(l, k) ==
      (ul_u128)l->total_ew * (uint64_t)l->total_ew)
    return (uint32_t)ulb_set_pick(l)[ulr_below(l, l->nelig)];
  return fen_find(l, ulb_fen_pick(l), ulr_below(l, l->total_ew));
}

/* ---- lock-free random picks (shared lists) -----------------------------
 * A sequence-lock reader of rr_word (rr.c) that draws as ulp_random_pick
 * does, from a copy of the generator's state: every header field, tree
 * entry and set entry loaded with UL_LLD, every index checked against the
 * view (offsets fixed once laid out), so that a torn read gives a wrong
 * draw the sequence check refuses, never an access out of the block. Once
 * the sequence stood, one CAS moves l->rng from the state it drew from to
 * the next: a lock holder's draws CAS too (rand.h), so a writer that came
 * in after the check and drew makes this CAS fail and the pick retries
 * (then locks); one that drew nothing changed nothing this pick read
 * before the check. The pick is then the one a locked pick would have
 * made at the check, with the next draw of the one sequence. */

/* fen_find on a tree read with UL_LLD: at most log2(cap) + 1 loads, all
 * inside the tree's cap + 1 entries. */
static uint32_t lf_fen_find(const int64_t *f, uint32_t cap, int64_t r) {
  uint32_t pos = 0, step = 1;
  while (step * 2 <= cap) step *= 2;
  for (; step; step >>= 1)
    if (pos + step <= cap) {
      int64_t x = UL_LLD(&f[pos + step]);
      if (x <= r) {
        pos += step;
        r -= x;
      }
    }
  return pos;
}

int32_t ul_pick_lockfree_random(ul_list *l, const ul_lfview *v,
                                const uint32_t *ver, uint32_t want) {
  const int32_t *order =
      (const int32_t *)(const void *)((const char *)l + v->off_order);
  uint64_t *picks = (uint64_t *)(void *)((char *)l + v->off_picks);
  int k;
  if (!v->random) return UL_PICK_LOCK;
  for (k = 0; k < UL_LF_TRIES; k++) {
    uint64_t w, r0, r1, bits;
    uint32_t n, nelig, t;
    int64_t total, p;
    ul_u128 sq;
    int32_t s;
    if (!ul_lf_enter(l, ver, want, &w)) return UL_PICK_LOCK;
    nelig = UL_LLD(&l->nelig);
    if (nelig == 0) return ul_lf_none(l, w);
    n = UL_LLD(&l->n);
    t = UL_LLD(&l->fen_pick);
    if (n == 0 || n > v->cap || nelig > n || t > UL_SET_ALL)
      continue; /* torn */
    r0 = UL_LLD(&l->rng);
    r1 = ulr_step(r0);
    bits = ulr_out(r1);
    total = UL_LLD(&l->total_ew);
    sq = (ul_u128)UL_LLD(&l->sumsq[t][1]) << 64 | UL_LLD(&l->sumsq[t][0]);
    if ((ul_u128)nelig * sq == (ul_u128)total * (uint64_t)total) {
      const int32_t *d = (const int32_t *)(const void *)((const char *)l +
                                                         v->off_dense) +
                         (size_t)t * v->cap;
      p = UL_LLD(&d[ulr_scale(bits, nelig)]); /* < nelig <= cap */
    } else {
      const int64_t *f = (const int64_t *)(const void *)((const char *)l +
                                                         v->off_fen) +
                         (size_t)t * (v->cap + 1u);
      if (total <= 0) continue; /* torn */
      p = lf_fen_find(f, v->cap, ulr_scale(bits, total));
    }
    if (p < 0 || p >= (int64_t)n) continue; /* torn */
    s = UL_LLD(&order[p]);
    if (s < 0 || (uint32_t)s >= v->cap) continue; /* torn */
    if (!ul_lf_stood(l, w)) continue; /* every read above, one state */
    if (!__atomic_compare_exchange_n(&l->rng, &r0, r1, 0, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED))
      continue; /* another draw took this state */
    UL_ADD(&picks[s], 1);
    return s;
  }
  return UL_PICK_LOCK;
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
    uint32_t p, k, o = l->bm_pick;
    best = p = ulp_after_rr(l);
    if (l->panic_on) { /* every member: the positions in turn */
      for (k = 1; k < l->nelig; k++) {
        if (++p == l->n) p = 0;
        if (ulb_at(l, p)->inflight < ulb_at(l, best)->inflight) best = p;
      }
    } else {
      best = p = ulb_next_in(l, o, p);
      for (k = 1; k < l->nelig; k++) {
        p = ulb_next_in(l, o, p + 1);
        if (ulb_at(l, p)->inflight < ulb_at(l, best)->inflight) best = p;
      }
    }
  } else { /* two distinct draws among the eligible */
    int64_t r1 = ulr_below(l, l->nelig), r2 = ulr_below(l, (int64_t)l->nelig - 1);
    const int32_t *d = ulb_set_pick(l);
    uint32_t a, b;
    if (r2 >= r1) r2++;
    a = (uint32_t)d[r1];
    b = (uint32_t)d[r2];
    best = ulb_at(l, a)->inflight < ulb_at(l, b)->inflight ? a
           : ulb_at(l, b)->inflight < ulb_at(l, a)->inflight ? b
           : lc_rr_dist(l, a) <= lc_rr_dist(l, b) ? a : b;
  }
  ulb_at(l, best)->inflight++;
  return best;
}
