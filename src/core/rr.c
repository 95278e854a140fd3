/*
 * core/rr.c - round robin over a three-level bitmap of the eligible
 * positions: the next set bit after the last pick is a few word scans
 * away, at any n. Every strategy keeps the bitmap (pick.c); least_conn
 * scans it too.
 */
#include "pick.h"
#include "block.h"

#include <string.h>

#define BITS UL_BM_BITS

/* Bitmap t: tier t's on a lazy list, else 0, the eligible members'. */
static void bm_set(ul_list *l, uint32_t t, uint32_t pos) {
  size_t o = (size_t)t * l->bm_stride;
  uint64_t *b0 = ulb_bm(l, 0) + o, *b1 = ulb_bm(l, 1) + o, *b2 = ulb_bm(l, 2) + o;
  uint32_t w = pos / BITS, w1 = w / BITS;
  if (b0[w] == 0) {
    if (b1[w1] == 0) b2[w1 / BITS] |= 1ULL << (w1 % BITS);
    b1[w1] |= 1ULL << (w % BITS);
  }
  b0[w] |= 1ULL << (pos % BITS);
}

static void bm_clear(ul_list *l, uint32_t t, uint32_t pos) {
  size_t o = (size_t)t * l->bm_stride;
  uint64_t *b0 = ulb_bm(l, 0) + o, *b1 = ulb_bm(l, 1) + o, *b2 = ulb_bm(l, 2) + o;
  uint32_t w = pos / BITS, w1 = w / BITS;
  b0[w] &= ~(1ULL << (pos % BITS));
  if (b0[w] == 0) {
    b1[w1] &= ~(1ULL << (w % BITS));
    if (b1[w1] == 0) b2[w1 / BITS] &= ~(1ULL << (w1 % BITS));
  }
}

#undef BITS

void ulp_bm_rebuild(ul_list *l) {
  uint32_t k, p, nt = l->lazy ? UL_MAX_TIER + 1 : 1;
  for (k = 0; k < 3; k++)
    memset(ulb_bm(l, (int)k), 0, (size_t)l->bm_words[k] * 8u);
  if (l->lazy) /* the other tiers' bitmaps follow tier 0's */
    memset(ulb_bm(l, 0) + l->bm_stride, 0,
           (size_t)(nt - 1) * l->bm_stride * 8u);
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
