/*
 * core/lockfree.h - what the three lock-free pickers share (rr.c
 * ul_pick_lockfree, random.c ul_pick_lockfree_random, maglev.c
 * ul_pick_lockfree_hash): the sequence word's entry test, its reload, and
 * the answer "none eligible". Internal to the core.
 *
 * rr_word is sequence << 32 | (uint32_t)rr (rr.c): the sequence is odd
 * while a lock holder is inside (ul_write_begin .. ul_write_end).
 */
#ifndef UL_LOCKFREE_H
#define UL_LOCKFREE_H

#include "core.h"
#include "atomic.h"

#define UL_SEQ_ONE (1ULL << 32) /* one step of rr_word's sequence */

/* Loads the word into *w: whether a lock-free pick may go on from it.
 * Not when a writer is in (the sequence odd), the caller's cache is stale
 * (ver: NULL, or the version to compare with want, read inside the
 * sequence), or slow start must move on (ramping): then the pick is made
 * under the lock. */
static inline __attribute__((always_inline)) int
ul_lf_enter(const ul_list *l, const uint32_t *ver, uint32_t want, uint64_t *w) {
  *w = __atomic_load_n(&l->rr_word, __ATOMIC_ACQUIRE);
  if (*w & UL_SEQ_ONE) return 0;
  if (ver && UL_LLD(ver) != want) return 0;
  return !UL_LLD(&l->ramping);
}

/* Whether the word still reads w: every load above it ordered before the
 * reload, so that what they read is one state between writers. */
static inline __attribute__((always_inline)) int ul_lf_stood(const ul_list *l,
                                                              uint64_t w) {
  UL_FENCE_READER();
  return __atomic_load_n(&l->rr_word, __ATOMIC_RELAXED) == w;
}

/* The answer when the pick found nothing: -1 (none eligible) if nelig
 * reads 0 and the word stood, else UL_PICK_LOCK (a torn read: the lock
 * decides). */
static inline int32_t ul_lf_none(const ul_list *l, uint64_t w) {
  if (UL_LLD(&l->nelig) != 0) return UL_PICK_LOCK;
  return ul_lf_stood(l, w) ? -1 : UL_PICK_LOCK;
}

#endif
