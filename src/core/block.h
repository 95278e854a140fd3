/*
 * core/block.h - the layout of a list's block: where each array lives and
 * the one accessor for each. Every core file and the C tests read the
 * block through these; nothing else computes an address in it.
 *
 * A block is, in this order, each array starting 8-byte aligned
 * (ul_align8), its offset in bytes kept in the header (0: not present):
 *
 *   ul_list            the header (core.h)
 *   nodes[cap]         ul_node by slot                     ul_nodes
 *   order[cap]         slot by position, n used            ul_order
 *   heap[cap]          event heap: slot and key, nheap     ulb_heap
 *   ready[cap]         FIFO ring of slots due now          ulb_ready
 *   stats[cap]         ul_stat by slot (status, metrics)   ul_stats (core.h)
 *   picks[cap]         picks by slot (uint64_t)            ul_picks (core.h)
 *   bitmap             eligible positions, three levels    ulb_bm(l, 0..2)
 *                      of bm_words[k] words of 64 bits
 *   then by strategy:
 *   weighted, cap > UL_KST_SCAN, kst_ntree kinetic trees T of kst_size
 *   leaves s (one per tier of [tier_min, tier_max], then the members not
 *   healthy: ulb_kst_tree; an eager list uses tree 0), tree 0's first:
 *     melt[T][2s]      certificate of each tree node       ulb_kmelt_k
 *     line[T][s]       cur, ew, position of each leaf's    ulb_kline_k
 *                      member (leaves 0..kst_n[k]-1 in use)
 *     win[T][2s]       winning leaf of each node           ulb_kwin_k
 *     at[cap]          position -> its leaf in its tree,   ulb_kat
 *                      or -1
 *   weighted, every cap:
 *     ws[UL_WS_MAX]    one period of picks, slots (a       weighted.c
 *                      shared block's: ws_len used)        ws_slots
 *     val[cap]         a value per slot while one is       ws_vals
 *                      recorded (int64_t)
 *   random:
 *     fen[12][cap + 1] Fenwick trees of effective weights: ulb_fen
 *                      lazy: one per tier (its healthy
 *                      members) and UL_SET_ALL (all);
 *                      eager: 0, the eligible members
 *   random, least_conn:
 *     dense[12][cap]   the sets: positions of the healthy  ulb_dense
 *                      members of each tier, and of all
 *                      members (UL_SET_ALL), set_n[k] used
 *     dense_at[cap]    position -> index in its tier's set ulb_dense_at
 *     dense_all[cap]   position -> index in the set of all ulb_dense_all
 *   hash:
 *     magx[cap]        Maglev build state                  ulb_magx
 *     mag[maglev_m]    Maglev table: entry -> slot         ulb_mag
 *     mag2[maglev_m]   the table being built               ulb_mag2
 *                      (a finished build swaps off_mag and off_mag2)
 *
 * list.c lays out the list's part, pick.c the strategies' part.
 */
#ifndef UL_BLOCK_H
#define UL_BLOCK_H

#include "core.h"

/* Offsets in the block are kept 8-byte aligned. */
static inline size_t ul_align8(size_t x) { return (x + 7u) & ~(size_t)7u; }

#define UL_BM_BITS 64u /* bits in one bitmap word */
#define UL_KST_SCAN 8  /* weighted: up to this many slots, scan, no tree */

/* Bitmap words needed for bits bits. */
static inline uint32_t ulb_words(uint64_t bits) {
  return (uint32_t)((bits + UL_BM_BITS - 1) / UL_BM_BITS);
}

/* Leaves of the kinetic tree for cap slots: a power of 2. */
static inline uint32_t ulb_kst_leaves(uint32_t cap) {
  uint32_t s = 1;
  while (s < cap) s <<= 1;
  return s;
}

/* weighted: kinetic trees (and pick counts) for options o: one per tier
 * of the range and one for the members that are not healthy; a range
 * outside the rules gets the most. */
static inline uint32_t ulb_kst_ntree(const ul_opts *o) {
  if (o->strategy != UL_WEIGHTED) return 0;
  if (!(0 <= o->tier_min && o->tier_min <= o->tier_max && o->tier_max <= UL_MAX_TIER))
    return UL_KST_TREES;
  return (uint32_t)(o->tier_max - o->tier_min) + 2u;
}

/* weighted, lazy: the tree of a member of class cls (node.cls): its
 * tier's while healthy, the last one while not (UL_CLS_DOWN; a tier
 * outside the range, which no member has, too). */
static inline uint32_t ulb_kst_tree(const ul_list *l, uint32_t cls) {
  uint32_t k = cls - (uint32_t)l->opts.tier_min;
  return k < l->kst_ntree - 1u ? k : l->kst_ntree - 1u;
}

/* weighted: the pick count of tree k. While it advances with every pick
 * (the tree a pick reads, kst_pick, or every tree in panic) it is t minus
 * kst_c[k], so that a pick only moves t; while it stands, kst_c[k] itself.
 * A flip turns one form into the other (ulp_kst_state). */
static inline int64_t ulb_kst_count(const ul_list *l, uint32_t k) {
  return l->kst_mode == 2 || k == l->kst_pick ? l->t - l->kst_c[k] : l->kst_c[k];
}

typedef struct ul_line { /* weighted: an eligible member's line, by leaf */
  int64_t cur, ew;
  int32_t pos;  /* its position: ties go to the lower one */
  int32_t slot; /* its slot: the pick moves the node's cur too */
} ul_line;

typedef struct ul_magx { /* Maglev build state of one eligible member */
  double credit; /* entries earned, not yet claimed (credit build) */
  int32_t slot;
  uint32_t at;   /* its next preferred entry (offset + k * skip mod M) */
  uint32_t skip;
  uint32_t w;    /* its effective weight; quota build: entries to claim */
  uint32_t link; /* quota build: the next member still claiming, a ring */
  uint32_t live; /* its weight is above 0 */
} ul_magx;

#define UL_BLOCK_AT(type, l, off) ((type *)((char *)(l) + (off)))

/* An event in the heap: its slot and a copy of the slot's node.key, so
 * that sifting reads the heap's own array and not nodes all over the
 * block (heap.c). */
typedef struct ul_hent {
  double key;
  int32_t slot;
  int32_t pad;
} ul_hent;
static inline ul_hent *ulb_heap(const ul_list *l) {
  return UL_BLOCK_AT(ul_hent, l, l->off_heap);
}
static inline int32_t *ulb_ready(const ul_list *l) {
  return UL_BLOCK_AT(int32_t, l, l->off_ready);
}
static inline uint64_t *ulb_bm(const ul_list *l, int k) {
  return UL_BLOCK_AT(uint64_t, l, l->off_bm[k]);
}
/* kinetic tree k (0..kst_ntree-1): winners, certificates, lines */
static inline int32_t *ulb_kwin_k(const ul_list *l, uint32_t k) {
  return UL_BLOCK_AT(int32_t, l, l->off_kst_win) + (size_t)k * 2u * l->kst_size;
}
static inline int64_t *ulb_kmelt_k(const ul_list *l, uint32_t k) {
  return UL_BLOCK_AT(int64_t, l, l->off_kst_melt) + (size_t)k * 2u * l->kst_size;
}
static inline ul_line *ulb_kline_k(const ul_list *l, uint32_t k) {
  return UL_BLOCK_AT(ul_line, l, l->off_kst_line) + (size_t)k * l->kst_size;
}
static inline int32_t *ulb_kwin(const ul_list *l) { return ulb_kwin_k(l, 0); }
static inline int64_t *ulb_kmelt(const ul_list *l) { return ulb_kmelt_k(l, 0); }
static inline ul_line *ulb_kline(const ul_list *l) { return ulb_kline_k(l, 0); }
static inline int32_t *ulb_kat(const ul_list *l) {
  return UL_BLOCK_AT(int32_t, l, l->off_kst_at);
}
/* Fenwick tree k (0..UL_NSETS-1), cap + 1 entries */
static inline int64_t *ulb_fen(const ul_list *l, uint32_t k) {
  return UL_BLOCK_AT(int64_t, l, l->off_fen) + (size_t)k * (l->cap + 1u);
}
/* set k (0..UL_NSETS-1): set_n[k] positions */
static inline int32_t *ulb_dense(const ul_list *l, uint32_t k) {
  return UL_BLOCK_AT(int32_t, l, l->off_dense) + (size_t)k * l->cap;
}
/* the set and the tree a draw reads (set_pick, fen_pick) */
static inline int32_t *ulb_set_pick(const ul_list *l) {
  return UL_BLOCK_AT(int32_t, l, l->off_set_pick);
}
static inline int64_t *ulb_fen_pick(const ul_list *l) {
  return UL_BLOCK_AT(int64_t, l, l->off_fen_pick);
}
static inline int32_t *ulb_dense_at(const ul_list *l) {
  return ulb_dense(l, UL_NSETS);
}
static inline int32_t *ulb_dense_all(const ul_list *l) {
  return ulb_dense(l, UL_NSETS + 1);
}
static inline ul_magx *ulb_magx(const ul_list *l) {
  return UL_BLOCK_AT(ul_magx, l, l->off_magx);
}
static inline int32_t *ulb_mag(const ul_list *l) {
  return UL_BLOCK_AT(int32_t, l, l->off_mag);
}
static inline int32_t *ulb_mag2(const ul_list *l) {
  return UL_BLOCK_AT(int32_t, l, l->off_mag2);
}

#undef UL_BLOCK_AT

/* ---- the eligible bitmap (rr.c keeps it; least_conn scans it) ------- */

/* First set position >= from in the bitmap o words after tier 0's, or -1. */
static inline __attribute__((always_inline)) int64_t
ulb_bm_next(const ul_list *l, size_t o, uint32_t from) {
  const uint64_t *b0 = ulb_bm(l, 0) + o, *b1 = ulb_bm(l, 1) + o,
                 *b2 = ulb_bm(l, 2) + o;
  uint32_t w = from / UL_BM_BITS, w1;
  uint64_t m;
  if (w >= l->bm_words[0]) return -1;
  m = b0[w] & (~0ULL << (from % UL_BM_BITS));
  if (m) return (int64_t)w * UL_BM_BITS + __builtin_ctzll(m);
  w++; /* next non-empty level-0 word after w */
  w1 = w / UL_BM_BITS;
  if (w1 >= l->bm_words[1]) return -1;
  m = b1[w1] & (~0ULL << (w % UL_BM_BITS));
  if (!m) {
    uint32_t w2;
    w1++; /* next non-empty level-1 word after w1 */
    for (w2 = w1 / UL_BM_BITS; w2 < l->bm_words[2]; w2++) {
      m = b2[w2];
      if (w2 == w1 / UL_BM_BITS) m &= ~0ULL << (w1 % UL_BM_BITS);
      if (m) break;
    }
    if (!m) return -1;
    w1 = w2 * UL_BM_BITS + (uint32_t)__builtin_ctzll(m);
    m = b1[w1];
  }
  w = w1 * UL_BM_BITS + (uint32_t)__builtin_ctzll(m);
  return (int64_t)w * UL_BM_BITS + __builtin_ctzll(b0[w]);
}

/* The first set position at or cyclically after from in that bitmap
 * (one bit set at least). */
static inline __attribute__((always_inline)) uint32_t
ulb_next_in(const ul_list *l, size_t o, uint32_t from) {
  int64_t p = from < l->n ? ulb_bm_next(l, o, from) : -1;
  if (p < 0) p = ulb_bm_next(l, o, 0);
  return (uint32_t)p;
}

/* Whether member x may be picked now: on a lazy list its class against
 * the mask (list.c keeps both), else its elig byte. */
static inline int ulb_elig(const ul_list *l, const ul_node *x) {
  return l->lazy ? (int)((l->elig_mask >> x->cls) & 1u) : x->elig;
}

/* The member at position pos (< n). */
static inline ul_node *ulb_at(const ul_list *l, uint32_t pos) {
  return &ul_nodes(l)[ul_order(l)[pos]];
}

#endif
