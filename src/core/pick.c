/*
 * core/pick.c - the strategies' side of the block and the dispatch: lays
 * out each strategy's arrays (block.h), keeps them in step when the list
 * changes a member, and sends a pick to the list's strategy. Each pick is
 * O(1) or O(log n):
 *
 *   round_robin  rr.c        the next eligible bit after the last pick
 *   weighted     weighted.c  nginx's smooth weighted round robin
 *   random       random.c    a weighted draw
 *   least_conn   random.c    the fewest in flight (two choices above 16)
 *   hash         maglev.c    a Maglev table
 */
#include "pick.h"
#include "block.h"
#include "atomic.h"

/* The offsets of the strategies' arrays, as block.h draws them. */
typedef struct {
  size_t bm[3], win, melt, line, kat, fen, dense, mag, mag2, magx, ws;
  uint64_t m;
} pick_offsets;

/* Lays out strategy's arrays after the bitmap from off into *o; returns
 * the end offset, 0 when too large. */
static size_t pick_arrays(pick_offsets *o, uint32_t cap, const ul_opts *op,
                          size_t off, uint32_t prev_m) {
  int strategy = op->strategy;
  if (strategy == UL_WEIGHTED && cap > UL_KST_SCAN) {
    size_t s = ulb_kst_leaves(cap), nt = ulb_kst_ntree(op);
    o->melt = off; /* a tree per tier and one (weighted.c) */
    off += nt * 2 * s * sizeof(int64_t);
    o->line = off;
    off += nt * s * sizeof(ul_line);
    o->win = off;
    off = ul_align8(off + nt * 2 * s * sizeof(int32_t));
    o->kat = off;
    off = ul_align8(off + (size_t)cap * sizeof(int32_t));
  }
  if (strategy == UL_WEIGHTED) { /* one period, then a value per slot */
    o->ws = off;
    off += (size_t)UL_WS_MAX * sizeof(int32_t) + (size_t)cap * sizeof(int64_t);
  } else if (strategy == UL_RANDOM || strategy == UL_LEAST_CONN) {
    if (strategy == UL_RANDOM) { /* a tree per set (lazy), or one (eager) */
      o->fen = off;
      off += (size_t)UL_NSETS * ((size_t)cap + 1) * sizeof(int64_t);
    }
    o->dense = off; /* the sets, then the two position indexes */
    off = ul_align8(off + (size_t)(UL_NSETS + 2) * cap * sizeof(int32_t));
  } else if (strategy == UL_HASH) {
    o->m = ulp_maglev_size(cap, prev_m);
    if (o->m > INT32_MAX) return 0;
    o->magx = off;
    off += (size_t)cap * sizeof(ul_magx);
    o->mag = off;
    off = ul_align8(off + (size_t)o->m * sizeof(int32_t));
    o->mag2 = off;
    off = ul_align8(off + (size_t)o->m * sizeof(int32_t));
  }
  return off;
}

size_t ulp_layout(ul_list *l, uint32_t cap, const ul_opts *op, size_t off,
                  uint32_t prev_m) {
  int strategy = op->strategy;
  uint32_t w[3], k;
  pick_offsets o = {{0, 0, 0}, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  w[0] = ulb_words(cap);
  w[1] = ulb_words(w[0]);
  w[2] = ulb_words(w[1]);
  off = ul_align8(off);
  for (k = 0; k < 3; k++) {
    o.bm[k] = off;
    off += (size_t)w[k] * 8u;
  }
  /* lazy eligibility: one bitmap per tier, tier 0's first */
  off += (size_t)UL_MAX_TIER * ((size_t)w[0] + w[1] + w[2]) * 8u;
  off = pick_arrays(&o, cap, op, off, prev_m);
  if (off == 0 || off > UINT32_MAX) return 0; /* offsets are 32-bit */
  if (l) {
    for (k = 0; k < 3; k++) {
      l->bm_words[k] = w[k];
      l->off_bm[k] = (uint32_t)o.bm[k];
    }
    l->bm_stride = w[0] + w[1] + w[2];
    l->off_kst_win = (uint32_t)o.win;
    l->off_kst_melt = (uint32_t)o.melt;
    l->off_kst_line = (uint32_t)o.line;
    l->off_kst_at = (uint32_t)o.kat;
    l->kst_size =
        strategy == UL_WEIGHTED && cap > UL_KST_SCAN ? ulb_kst_leaves(cap) : 0;
    l->kst_ntree = ulb_kst_ntree(op);
    l->off_fen = (uint32_t)o.fen;
    l->off_dense = (uint32_t)o.dense;
    l->off_ws = (uint32_t)o.ws;
    /* UL_WST: a lock-free hash pick reads these (maglev.c); a repair
     * lays the block out again under the sequence */
    UL_WST(&l->off_mag, (uint32_t)o.mag);
    UL_WST(&l->off_mag2, (uint32_t)o.mag2);
    l->off_magx = (uint32_t)o.magx;
    UL_WST(&l->maglev_m, (uint32_t)o.m);
    l->maglev_dirty = 1;
    UL_WST(&l->maglev_busy, 1u);
    UL_WST(&l->maglev_valid, 0u);
    l->mb_phase = 0;
    l->maglev_slice = ulp_maglev_slice(l->maglev_m);
  }
  return off;
}

void ulp_refresh(ul_list *l) {
  ulp_bm_rebuild(l);
  switch (l->opts.strategy) {
    case UL_WEIGHTED: ulp_kst_rebuild(l); break;
    case UL_RANDOM: ulp_random_rebuild(l); break;
    case UL_HASH: ulp_maglev_changed(l, 1); break;
    default: break;
  }
}

void ulp_rebuild(ul_list *l) {
  ulp_refresh(l);
  if (l->opts.strategy == UL_RANDOM || l->opts.strategy == UL_LEAST_CONN)
    ulp_sets_rebuild(l);
}

void ulp_update(ul_list *l, uint32_t pos, int old_elig, int64_t old_ew) {
  int e = ulb_at(l, pos)->elig;
  if (e != old_elig) ulp_bm_update(l, pos, e);
  switch (l->opts.strategy) {
    case UL_WEIGHTED: ulp_kst_leaf(l, pos); break;
    case UL_RANDOM: ulp_random_update(l, pos, old_elig, old_ew); break;
    case UL_HASH: ulp_maglev_changed(l, 0); break;
    default: break;
  }
}

void ulp_class(ul_list *l, uint32_t pos, uint32_t old_cls) {
  if (l->opts.strategy == UL_RANDOM || l->opts.strategy == UL_LEAST_CONN)
    ulp_sets_move(l, pos, old_cls);
}

void ulp_lazy_member(ul_list *l, uint32_t pos, int on) {
  const ul_node *x = ulb_at(l, pos);
  if (x->score >= 0) ulp_bm_tier(l, x->tier, pos, on);
  if (l->opts.strategy == UL_RANDOM) ulp_random_lazy(l, pos, on);
  else if (l->opts.strategy == UL_WEIGHTED) ulp_kst_lazy(l, pos, on);
}

void ulp_lazy_changed(ul_list *l, int moved) {
  if (l->opts.strategy == UL_HASH) ulp_maglev_changed(l, moved);
}

uint32_t ulp_pick(ul_list *l, uint64_t key) {
  switch (l->opts.strategy) {
    case UL_WEIGHTED: return ulp_weighted_pick(l);
    case UL_RANDOM: return ulp_random_pick(l);
    case UL_LEAST_CONN: return ulp_least_conn_pick(l);
    case UL_HASH: return ulp_hash_pick(l, key);
    default: return ulp_rr_pick(l);
  }
}
