/*
 * core/maglev.c - the hash strategy: a Maglev lookup table of M >= 100
 * entries per slot, each entry a slot, members weighted by their effective
 * weight. A key is one multiply away from its entry.
 *
 * No pick stalls on a change. After the eligible set or a weight changed
 * (l->maglev_dirty, set by pick.c), the picks build the next table into a
 * second one (mag2), a bounded slice of work each (l->maglev_slice), while
 * they read the last complete table; a finished build swaps the two
 * offsets. An entry whose member is not eligible now falls through to the
 * next eligible entry (up to UL_MAGLEV_FALL of them, then the eligible
 * bitmap from a position the key gives), so a key keeps its member while
 * that member stays eligible, and a build that began before a change is
 * finished, then followed by another. A panic or tier flip on a lazy list
 * (list.c) is such a change: the table over the newly eligible members is
 * built the same way, in slices, while picks read the last table and fall
 * through its entries that are not eligible now. Small tables (M <
 * UL_MAGLEV_SYNC_M) are still built whole on the first pick after a
 * change: such a build costs less than a slice would be worth. A list's
 * first table (or the first after it outgrew M) is built in slices too:
 * until it is done, a pick is the eligible bitmap's first member at or
 * after a position the key gives (maglev_none), deterministic and O(1).
 */
#include "pick.h"
#include "block.h"
#include "atomic.h"
#include "lockfree.h"

#include <string.h>

static int maglev_is_prime(uint64_t m) {
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
 * still gives 20 entries per slot: only outgrowing it remaps the keys.
 * A test build may shrink both (spec/c/test_shared_threads.c's small-table
 * TSan build: a rebuild per change, affordable at 8 x 1M operations). */
#ifndef UL_MAGLEV_PER_SLOT
#define UL_MAGLEV_PER_SLOT 100u
#endif
#ifndef UL_MAGLEV_MIN_M
#define UL_MAGLEV_MIN_M 16381u
#endif
uint64_t ulp_maglev_size(uint32_t cap, uint32_t prev) {
  uint64_t m = (uint64_t)cap * UL_MAGLEV_PER_SLOT;
  if (prev && prev >= (uint64_t)cap * 20) return prev;
  if (m < UL_MAGLEV_MIN_M) m = UL_MAGLEV_MIN_M;
  while (!maglev_is_prime(m)) m++;
  return m;
}

static uint64_t maglev_mix64(uint64_t x) { /* splitmix64's finaliser */
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

/* Tables of fewer entries are built whole (about 0.3 ms at M = 16381). */
#define UL_MAGLEV_SYNC_M 32768u
/* Build work per pick: one unit is a member collected or counted, a probe
 * of the table, or 8 entries cleared. A table past the L2 cache (M >=
 * 2^18, 1 MB) makes most units a cache miss: a smaller slice there.
 * Measured in docs/BENCHMARKS.md (bench/scale_core.lua). */
#define UL_MAGLEV_SLICE 1024u
#define UL_MAGLEV_SLICE_BIG 512u
/* Entries a pick tries after its own before it asks the bitmap. */
#define UL_MAGLEV_FALL 32u

enum { MB_IDLE = 0, MB_COLLECT, MB_QUOTA, MB_RING, MB_CLEAR, MB_FILL, MB_CREDIT };

/* The credit build is kept while it costs at most this many visits of a
 * member per entry: the heaviest effective weight at most this many times
 * the mean. */
#define UL_MAGLEV_CREDIT_SPAN 8u

uint32_t ulp_maglev_slice(uint32_t m) {
  return m < UL_MAGLEV_SYNC_M ? 0
         : m < (1u << 18)     ? UL_MAGLEV_SLICE
                              : UL_MAGLEV_SLICE_BIG;
}

/* maglev_busy, maglev_valid, off_mag/off_mag2 and every table entry are
 * stored with UL_WST: a lock-free pick (ul_pick_lockfree_hash) may read
 * them meanwhile. After a swap the next build writes the table a slow
 * reader may still be reading, so every entry store counts, not only the
 * live table's. */
void ulp_maglev_changed(ul_list *l, int moved) {
  l->maglev_dirty = 1;
  UL_WST(&l->maglev_busy, 1u);
  /* the members are collected by position: start that over */
  if (moved && l->mb_phase == MB_COLLECT) l->mb_phase = MB_IDLE;
}

void ulp_maglev_copy(ul_list *dst, const ul_list *src) {
  if (dst->opts.strategy != UL_HASH || !src->maglev_valid ||
      dst->maglev_m != src->maglev_m)
    return;
  {
    int32_t *d = ulb_mag(dst);
    const int32_t *t = ulb_mag(src);
    uint32_t e;
    for (e = 0; e < src->maglev_m; e++) UL_WST(&d[e], t[e]); /* not memcpy */
  }
  UL_WST(&dst->maglev_valid, 1u);
}

/* One probe of y's preferences: claims the entry if it is free; either
 * way the next probe is at its next preference. */
static inline int maglev_probe(int32_t *tab, ul_magx *y, uint32_t m) {
  int claimed = tab[y->at] < 0;
  if (claimed) UL_WST(&tab[y->at], y->slot);
  y->at += y->skip;
  if (y->at >= m) y->at -= m;
  return claimed;
}

/* The build, in phases, each resumable at its cursor:
 *  COLLECT  each eligible member's preferences (offset, skip) from its
 *           hash, and its effective weight: the snapshot the build uses;
 *  CLEAR    mag2 to free (-1);
 * then one of two ways to fill it. Both give each member its share of the
 * table by its effective weight (equal shares when every weight is 0), and
 * with equal weights both are Maglev's own build: every member claims its
 * next preferred free entry once a round, the first M mod n once more.
 *  CREDIT   the build of earlier releases, whose tables sessions rely on:
 *           rounds in which every member earns w / wmax and claims an
 *           entry per whole credit. Its work is one visit of every member
 *           per round, about M * wmax / mean weight visits in all: it is
 *           used while wmax is at most UL_MAGLEV_CREDIT_SPAN times the mean
 *           weight, so that it stays O(M).
 *  QUOTA, RING, FILL  otherwise (one weight of 1e6 among 3000 made the
 *           credit build take 1.5 s): each member's share floor(M * w /
 *           total), the M - sum left over one each to the first members of
 *           weight > 0, then turns round a ring of the members still
 *           claiming, each turn claiming an entry: O(M + n) turns.
 * A member's probes visit every entry once in its first M (M prime,
 * 1 <= skip < M), so each finds a free one, and every probe counts in the
 * budget. Returns whether the build is done; *budget: the work left. */
static int maglev_run(ul_list *l, uint32_t *budget) {
  ul_magx *mx = ulb_magx(l);
  int32_t *tab = ulb_mag2(l);
  uint32_t m = l->maglev_m, b = *budget;
  for (;;) {
    switch (l->mb_phase) {
      case MB_COLLECT:
        for (; l->mb_i < l->n && b; l->mb_i++, b--) {
          const ul_node *x = ulb_at(l, l->mb_i);
          ul_magx *y;
          if (!ulb_elig(l, x)) continue;
          y = &mx[l->mb_e++];
          y->slot = ul_order(l)[l->mb_i];
          y->at = (uint32_t)(x->hash % m);
          y->skip = (uint32_t)(maglev_mix64(x->hash) % (m - 1)) + 1;
          y->w = (uint32_t)x->ew;
          y->live = x->ew > 0;
          y->credit = 0;
          if (y->w > l->mb_wmax) l->mb_wmax = y->w;
          l->mb_total += (uint64_t)x->ew;
        }
        if (l->mb_i < l->n) break;
        l->mb_credit = (uint64_t)l->mb_wmax * l->mb_e <=
                       (uint64_t)UL_MAGLEV_CREDIT_SPAN * l->mb_total;
        l->mb_phase = l->mb_e && !l->mb_credit ? MB_QUOTA : MB_CLEAR;
        l->mb_i = 0;
        continue;
      case MB_QUOTA:
        for (; l->mb_i < l->mb_e && b; l->mb_i++, b--) {
          ul_magx *y = &mx[l->mb_i];
          y->w = (uint32_t)((uint64_t)m * y->w / l->mb_total);
          l->mb_filled += y->w;
        }
        if (l->mb_i < l->mb_e) break;
        l->mb_total = m - l->mb_filled; /* now: the entries left over */
        l->mb_filled = 0;
        l->mb_cur = l->mb_prev = UINT32_MAX; /* the ring's head and tail */
        l->mb_phase = MB_RING;
        l->mb_i = 0;
        continue;
      case MB_RING:
        for (; l->mb_i < l->mb_e && b; l->mb_i++, b--) {
          ul_magx *y = &mx[l->mb_i];
          if (l->mb_total && y->live) {
            y->w++;
            l->mb_total--;
          }
          if (!y->w) continue;
          if (l->mb_cur == UINT32_MAX) l->mb_cur = l->mb_i;
          else mx[l->mb_prev].link = l->mb_i;
          l->mb_prev = l->mb_i;
        }
        if (l->mb_i < l->mb_e) break;
        mx[l->mb_prev].link = l->mb_cur; /* closed: the tail before the head */
        l->mb_phase = MB_CLEAR;
        l->mb_i = 0;
        continue;
      case MB_CLEAR:
        for (; l->mb_i < m && b; b--) {
          uint32_t end = m - l->mb_i < 8 ? m : l->mb_i + 8;
          for (; l->mb_i < end; l->mb_i++) UL_WST(&tab[l->mb_i], -1);
        }
        if (l->mb_i < m) break;
        if (!l->mb_e) { /* none eligible: all free */
          l->mb_phase = MB_IDLE;
          *budget = b;
          return 1;
        }
        l->mb_phase = l->mb_credit ? MB_CREDIT : MB_FILL;
        l->mb_cur = 0;    /* credit: the member visited */
        l->mb_prev = 0;   /* credit: whether it earned this round's credit */
        continue;
      case MB_FILL:
        while (b) {
          uint32_t c = l->mb_cur;
          ul_magx *y = &mx[c];
          b--;
          if (!maglev_probe(tab, y, m)) continue;
          if (++l->mb_filled == m) {
            l->mb_phase = MB_IDLE;
            *budget = b;
            return 1;
          }
          if (--y->w == 0) mx[l->mb_prev].link = y->link; /* leaves */
          else l->mb_prev = c;
          l->mb_cur = y->link;
        }
        break;
      case MB_CREDIT:
        while (b) {
          ul_magx *y = &mx[l->mb_cur];
          if (!l->mb_prev) {
            y->credit += l->mb_wmax > 0 ? (double)y->w / (double)l->mb_wmax
                                        : 1.0;
            l->mb_prev = 1;
            b--;
          }
          while (y->credit >= 1 && b) {
            b--;
            if (maglev_probe(tab, y, m)) {
              y->credit -= 1;
              if (++l->mb_filled == m) {
                l->mb_phase = MB_IDLE;
                *budget = b;
                return 1;
              }
            }
          }
          if (y->credit >= 1) break; /* out of budget mid-claim */
          l->mb_prev = 0;
          if (++l->mb_cur == l->mb_e) l->mb_cur = 0;
        }
        break;
      default:
        break;
    }
    *budget = b;
    return 0;
  }
}

/* A build begins from the list as it is now: later changes leave it dirty
 * again, for the next build. */
static void maglev_begin(ul_list *l) {
  l->maglev_dirty = 0;
  l->mb_phase = MB_COLLECT;
  l->mb_i = l->mb_e = l->mb_filled = l->mb_wmax = 0;
  l->mb_total = 0;
}

static void maglev_finish(ul_list *l) {
  uint32_t t = l->off_mag;
  UL_WST(&l->off_mag, l->off_mag2);
  UL_WST(&l->off_mag2, t);
  UL_WST(&l->maglev_valid, 1u);
}

static void maglev_busy_set(ul_list *l) {
  UL_WST(&l->maglev_busy, (uint32_t)(l->maglev_dirty || l->mb_phase != MB_IDLE ||
                                      !l->maglev_valid));
}

/* A slice of the build (the whole build when the list builds whole
 * tables). Kept out of line: inlined into ul_pick it cost the hash pick
 * registers (2 instructions a pick). */
static __attribute__((noinline)) void maglev_advance(ul_list *l) {
  uint32_t budget = l->maglev_slice ? l->maglev_slice : UINT32_MAX;
  if (l->mb_phase == MB_IDLE) maglev_begin(l);
  if (maglev_run(l, &budget)) maglev_finish(l);
  if (!l->maglev_slice) /* whole: until done */
    while (l->mb_phase != MB_IDLE) {
      budget = UINT32_MAX;
      if (maglev_run(l, &budget)) maglev_finish(l);
    }
  maglev_busy_set(l);
}

void ulp_maglev_settle(ul_list *l) {
  uint32_t budget;
  if (l->opts.strategy != UL_HASH) return;
  while (l->maglev_dirty || l->mb_phase != MB_IDLE || !l->maglev_valid) {
    if (l->mb_phase == MB_IDLE) maglev_begin(l);
    budget = UINT32_MAX;
    if (maglev_run(l, &budget)) maglev_finish(l);
  }
  maglev_busy_set(l);
}

/* No table yet (a list's first, or the first after outgrowing M), built
 * in slices meanwhile: the first eligible position at or after the one
 * the key gives (its low 32 bits scaled onto [0, n)), on the eligible
 * bitmap. The same key gets the same member while the members and their
 * eligibility stay; a member's keys go to the next eligible one when it
 * is not. */
static __attribute__((noinline)) uint32_t maglev_none(const ul_list *l,
                                                      uint64_t key) {
  return ulp_next_elig(l, (uint32_t)(((key & 0xFFFFFFFFu) * l->n) >> 32));
}

/* The key's entry's member is not eligible now: the next entries', then
 * the first eligible position at or after one the key gives. The same key
 * falls through alike while the table and the eligible set stay. */
static __attribute__((noinline)) uint32_t maglev_fall(const ul_list *l,
                                                      uint64_t key,
                                                      uint32_t e) {
  const int32_t *tab = ulb_mag(l);
  const ul_node *nd = ul_nodes(l);
  uint32_t m = l->maglev_m, k;
  for (k = 0; k < UL_MAGLEV_FALL; k++) {
    int32_t s;
    if (++e == m) e = 0;
    s = tab[e];
    if (s >= 0 && ulb_elig(l, &nd[s])) return (uint32_t)nd[s].pos;
  }
  return maglev_none(l, key);
}

/* The key's entry: key (already a mixed hash) mapped onto [0, M) by a
 * multiply (Lemire's range reduction) rather than a division. */
uint32_t ulp_hash_pick(ul_list *l, uint64_t key) {
  uint64_t e = ((key >> 32) * (uint64_t)l->maglev_m) >> 32;
  const ul_node *nd;
  int32_t s;
  if (l->maglev_busy) {
    maglev_advance(l);
    if (!l->maglev_valid) return maglev_none(l, key);
  }
  s = ulb_mag(l)[e];
  nd = ul_nodes(l);
  if (s >= 0 && ulb_elig(l, &nd[s])) return (uint32_t)nd[s].pos;
  return maglev_fall(l, key, (uint32_t)e);
}

/* ---- lock-free hash picks (shared lists) ------------------------------
 * A pure sequence-lock reader of rr_word (rr.c): no CAS, since a hash pick
 * moves nothing but the pick counter while the table is complete. It
 * leaves l->rr alone: no hash path reads it (ulp_hash_pick, maglev_none
 * and maglev_fall start from the key; ul_pick's rr is for the other
 * strategies), and a locked pick's l->rr store goes back into the word at
 * ul_write_end as before. Every header field, entry and node field it
 * reads is loaded with UL_LLD and every index checked against the view
 * (constant offsets read under the lock): a torn read gives a wrong slot
 * the sequence check refuses, never an access out of the block.
 *
 * The fall-through (maglev_fall, maglev_none) is not here: it cannot be
 * needed on a complete table. Every change of a member's eligibility or
 * effective weight, a flip and a panic set maglev_busy (ulp_maglev_changed),
 * and the build that clears it collected only the members eligible then:
 * while maglev_busy is 0 every entry names an eligible member. An entry
 * that does not was read torn (the sequence moved), and the lock decides. */

/* Where the answer would be the lock, ul_lf_none asks first whether none
 * is eligible: with none eligible no locked pick advances a build (ul_pick
 * returns first), so maglev_busy stays, and every pick would lock. */
int32_t ul_pick_lockfree_hash(ul_list *l, const ul_lfview *v,
                              const uint32_t *ver, uint32_t want,
                              uint64_t key) {
  const ul_node *nd =
      (const ul_node *)(const void *)((const char *)l + v->off_nodes);
  uint64_t *picks = (uint64_t *)(void *)((char *)l + v->off_picks);
  uint32_t e = (uint32_t)(((key >> 32) * (uint64_t)v->mag_m) >> 32);
  int k;
  if (!v->hash) return UL_PICK_LOCK;
  for (k = 0; k < UL_LF_TRIES; k++) {
    uint64_t w;
    uint32_t off, cls;
    const int32_t *tab;
    int32_t s;
    if (!ul_lf_enter(l, ver, want, &w)) return UL_PICK_LOCK;
    if (UL_LLD(&l->maglev_busy) || !UL_LLD(&l->maglev_valid))
      return ul_lf_none(l, w); /* a build to advance, or no table yet */
    off = UL_LLD(&l->off_mag);
    if ((off != v->off_mag_a && off != v->off_mag_b) ||
        UL_LLD(&l->maglev_m) != v->mag_m)
      continue; /* torn */
    tab = (const int32_t *)(const void *)((const char *)l + off);
    s = UL_LLD(&tab[e]);
    if (s < 0 || (uint32_t)s >= v->cap)
      return ul_lf_none(l, w); /* an empty table, or torn */
    cls = UL_LLD(&nd[s].cls);
    if (cls >= 32 || !((UL_LLD(&l->elig_mask) >> cls) & 1u))
      return ul_lf_none(l, w); /* ulb_elig, lazy: torn (see above) */
    if (ul_lf_stood(l, w)) { /* every read above, one state */
      UL_ADD(&picks[s], 1);
      return s;
    }
  }
  return UL_PICK_LOCK;
}

#undef UL_MAGLEV_SYNC_M
#undef UL_MAGLEV_PER_SLOT
#undef UL_MAGLEV_MIN_M
#undef UL_MAGLEV_SLICE
#undef UL_MAGLEV_SLICE_BIG
#undef UL_MAGLEV_FALL
#undef UL_MAGLEV_CREDIT_SPAN
