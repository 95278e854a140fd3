/*
 * core/rr.c - round robin over a three-level bitmap of the eligible
 * positions: the next set bit after the last pick is a few word scans
 * away, at any n. Every strategy keeps the bitmap (pick.c); least_conn
 * scans it too.
 */
#include "pick.h"
#include "block.h"
#include "atomic.h"
#include "lockfree.h"

#define BITS UL_BM_BITS

/* Bitmap t: tier t's on a lazy list, else 0, the eligible members'. The
 * stores are UL_WST: a lock-free pick may read the words meanwhile. */
static void bm_set(ul_list *l, uint32_t t, uint32_t pos) {
  size_t o = (size_t)t * l->bm_stride;
  uint64_t *b0 = ulb_bm(l, 0) + o, *b1 = ulb_bm(l, 1) + o, *b2 = ulb_bm(l, 2) + o;
  uint32_t w = pos / BITS, w1 = w / BITS;
  if (b0[w] == 0) {
    if (b1[w1] == 0) UL_WST(&b2[w1 / BITS], b2[w1 / BITS] | 1ULL << (w1 % BITS));
    UL_WST(&b1[w1], b1[w1] | 1ULL << (w % BITS));
  }
  UL_WST(&b0[w], b0[w] | 1ULL << (pos % BITS));
}

static void bm_clear(ul_list *l, uint32_t t, uint32_t pos) {
  size_t o = (size_t)t * l->bm_stride;
  uint64_t *b0 = ulb_bm(l, 0) + o, *b1 = ulb_bm(l, 1) + o, *b2 = ulb_bm(l, 2) + o;
  uint32_t w = pos / BITS, w1 = w / BITS;
  UL_WST(&b0[w], b0[w] & ~(1ULL << (pos % BITS)));
  if (b0[w] == 0) {
    UL_WST(&b1[w1], b1[w1] & ~(1ULL << (w % BITS)));
    if (b1[w1] == 0) UL_WST(&b2[w1 / BITS], b2[w1 / BITS] & ~(1ULL << (w1 % BITS)));
  }
}

/* words of zeros, one store each (not memset: see bm_set) */
static void bm_zero(uint64_t *b, size_t words) {
  size_t i;
  for (i = 0; i < words; i++) UL_WST(&b[i], 0);
}

void ulp_bm_rebuild(ul_list *l) {
  uint32_t k, p, nt = l->lazy ? UL_MAX_TIER + 1 : 1;
  for (k = 0; k < 3; k++) bm_zero(ulb_bm(l, (int)k), l->bm_words[k]);
  if (l->lazy) /* the other tiers' bitmaps follow tier 0's */
    bm_zero(ulb_bm(l, 0) + l->bm_stride, (size_t)(nt - 1) * l->bm_stride);
  for (p = 0; p < l->n; p++) {
    const ul_node *x = ulb_at(l, p);
    if (l->lazy ? x->score >= 0 : x->elig)
      bm_set(l, l->lazy ? x->tier : 0, p);
  }
}

void ulp_bm_update(ul_list *l, uint32_t pos, int elig) {
  if (elig) bm_set(l, 0, pos);
  else bm_clear(l, 0, pos);
}

void ulp_bm_tier(ul_list *l, uint32_t tier, uint32_t pos, int on) {
  if (on) bm_set(l, tier, pos);
  else bm_clear(l, tier, pos);
}

uint32_t ulp_after_rr(const ul_list *l) {
  uint32_t from = (uint32_t)(l->rr + 1);
  return from >= l->n ? 0 : from;
}

/* In panic every member is eligible (on an eager list every bit is set
 * then; a lazy one has no bitmap of them): from itself. */
uint32_t ulp_next_elig(const ul_list *l, uint32_t from) {
  if (l->panic_on) return from < l->n ? from : 0;
  return ulb_next_in(l, l->bm_pick, from);
}

/* In panic every member is eligible: the next position is the pick (the
 * eager bitmap has every bit set then); else the next set bit of the
 * eligible bitmap, or on a lazy list of the lowest healthy tier's
 * (bm_pick: its offset, list.c). */
uint32_t ulp_rr_pick(const ul_list *l) {
  uint32_t from = ulp_after_rr(l);
  if (l->panic_on) return from;
  return ulb_next_in(l, l->bm_pick, from);
}

/* ---- lock-free picks (shared lists) -------------------------------------
 * rr_word is a sequence lock and the round-robin position in one word:
 * sequence << 32 | (uint32_t)rr. A lock holder makes the sequence odd
 * before it changes anything (ul_write_begin) and even after
 * (ul_write_end); between the two, l->rr is the position. A lock-free pick
 * loads the word, reads what it needs with UL_LLD, and moves the position
 * with one CAS of the word, which fails when a writer began meanwhile (the
 * sequence moved) or another picker took the position. */

void ul_lf_view(ul_lfview *v, const ul_list *l) {
  int k;
  for (k = 0; k < 3; k++) {
    v->off_bm[k] = l->off_bm[k];
    v->bm_words[k] = l->bm_words[k];
  }
  v->off_order = l->off_order;
  v->off_picks = l->off_picks;
  v->cap = l->cap;
  v->ok = l->lockfree && l->lazy && l->opts.strategy == UL_ROUND_ROBIN;
  v->hash = l->lockfree && l->lazy && l->opts.strategy == UL_HASH;
  v->off_nodes = l->off_nodes;
  v->off_mag_a = l->off_mag;
  v->off_mag_b = l->off_mag2;
  v->mag_m = l->maglev_m;
  v->random = l->lockfree && l->lazy && l->opts.strategy == UL_RANDOM;
  v->off_fen = l->off_fen;
  v->off_dense = l->off_dense;
  v->weighted = l->lockfree && l->lazy && l->opts.strategy == UL_WEIGHTED;
  v->off_ws = l->off_ws;
}

void ul_write_begin(ul_list *l) {
  uint64_t w;
  if (!l->lockfree) return; /* no lock-free picker to keep out */
  w = __atomic_load_n(&l->rr_word, __ATOMIC_RELAXED);
  if (w & UL_SEQ_ONE) return; /* a holder died inside: its l->rr stands */
  w = __atomic_fetch_add(&l->rr_word, UL_SEQ_ONE, __ATOMIC_RELAXED);
  UL_FENCE_WRITER(); /* the odd sequence before any store of the section */
  if (l->opts.strategy == UL_WEIGHTED) { /* its period's index */
    l->ws_i = (uint32_t)w;
    ulp_ws_sync(l); /* weighted.c */
  } else {
    l->rr = (int32_t)(uint32_t)w;
  }
}

void ul_write_end(ul_list *l) {
  uint64_t w, seq;
  if (!l->lockfree) return;
  w = __atomic_load_n(&l->rr_word, __ATOMIC_RELAXED);
  seq = ((w >> 32) | 1u) + 1u; /* even again */
  __atomic_store_n(&l->rr_word,
                   seq << 32 | (l->opts.strategy == UL_WEIGHTED ? l->ws_i : (uint32_t)l->rr),
                   __ATOMIC_RELEASE);
}

/* ulb_bm_next with every word read by UL_LLD and every index checked: a
 * torn read (a writer is in) gives a wrong answer the CAS refuses, never
 * an access out of the bitmap; -1 when nothing is found. */
static int64_t lf_next(const ul_list *l, const ul_lfview *v, size_t o,
                       uint32_t from) {
  const uint64_t *b0 = (const uint64_t *)(const void *)((const char *)l + v->off_bm[0]) + o,
                 *b1 = (const uint64_t *)(const void *)((const char *)l + v->off_bm[1]) + o,
                 *b2 = (const uint64_t *)(const void *)((const char *)l + v->off_bm[2]) + o;
  uint32_t w = from / BITS, w1, w2;
  uint64_t m;
  if (w >= v->bm_words[0]) return -1;
  m = UL_LLD(&b0[w]) & (~0ULL << (from % BITS));
  if (m) return (int64_t)w * BITS + __builtin_ctzll(m);
  w++;
  w1 = w / BITS;
  if (w1 >= v->bm_words[1]) return -1;
  m = UL_LLD(&b1[w1]) & (~0ULL << (w % BITS));
  if (!m) {
    w1++;
    for (w2 = w1 / BITS; w2 < v->bm_words[2]; w2++) {
      m = UL_LLD(&b2[w2]);
      if (w2 == w1 / BITS) m &= ~0ULL << (w1 % BITS);
      if (m) break;
    }
    if (!m) return -1;
    w1 = w2 * BITS + (uint32_t)__builtin_ctzll(m);
    if (w1 >= v->bm_words[1] || (m = UL_LLD(&b1[w1])) == 0) return -1;
  }
  w = w1 * BITS + (uint32_t)__builtin_ctzll(m);
  if (w >= v->bm_words[0] || (m = UL_LLD(&b0[w])) == 0) return -1;
  return (int64_t)w * BITS + __builtin_ctzll(m);
}

int32_t ul_pick_lockfree(ul_list *l, const ul_lfview *v, const uint32_t *ver,
                         uint32_t want) {
  const int32_t *order =
      (const int32_t *)(const void *)((const char *)l + v->off_order);
  uint64_t *picks = (uint64_t *)(void *)((char *)l + v->off_picks);
  int k;
  if (!v->ok) return UL_PICK_LOCK;
  for (k = 0; k < UL_LF_TRIES; k++) {
    uint64_t w;
    uint32_t n, from;
    int64_t p;
    int32_t s;
    if (!ul_lf_enter(l, ver, want, &w)) return UL_PICK_LOCK;
    if (UL_LLD(&l->nelig) == 0) return ul_lf_none(l, w);
    n = UL_LLD(&l->n);
    if (n == 0 || n > v->cap) continue; /* torn */
    /* ul_pick: the first eligible position after rr, rr kept below n */
    from = (uint32_t)w + 1u;
    if (from >= n) from %= n;
    if (UL_LLD(&l->panic_on)) {
      p = from;
    } else {
      size_t o = UL_LLD(&l->bm_pick);
      p = lf_next(l, v, o, from);
      if (p < 0) p = lf_next(l, v, o, 0);
      if (p < 0 || p >= (int64_t)n) continue; /* torn */
    }
    s = UL_LLD(&order[p]);
    if (s < 0 || (uint32_t)s >= v->cap) continue; /* torn */
    UL_FENCE_READER(); /* every read above before the CAS */
    if (__atomic_compare_exchange_n(&l->rr_word, &w,
                                    (w & ~0xFFFFFFFFULL) | (uint32_t)p, 0,
                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
      UL_ADD(&picks[s], 1);
      return s;
    }
  }
  return UL_PICK_LOCK;
}

#undef BITS
