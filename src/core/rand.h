/*
 * core/rand.h - the list's random numbers: xorshift64* on l->rng, inline,
 * so that a strategy draws from the block without calling into the list.
 * The C tests replay this generator: changing it changes their picks.
 */
#ifndef UL_RAND_H
#define UL_RAND_H

#include "core.h"

__extension__ typedef unsigned __int128 ul_u128;

/* One step of the generator's state. */
static inline uint64_t ulr_step(uint64_t x) {
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  return x;
}

/* The state's output. */
static inline uint64_t ulr_out(uint64_t x) {
  return x * 0x2545F4914F6CDD1DULL;
}

/* On a block whose picks may draw without the lock (a shared random
 * list, random.c's ul_pick_lockfree_random), a lock holder's draw moves
 * the state with a CAS too: a lock-free pick's CAS and this one never
 * both take the same state, so the draws stay one sequence, a private
 * list's. */
static inline uint64_t ulr_next_shared(ul_list *l) {
  uint64_t o = __atomic_load_n(&l->rng, __ATOMIC_RELAXED), x;
  do x = ulr_step(o);
  while (!__atomic_compare_exchange_n(&l->rng, &o, x, 1, __ATOMIC_RELAXED,
                                      __ATOMIC_RELAXED));
  return ulr_out(x);
}

/* The next 64 random bits; l->rng is never 0. */
static inline uint64_t ulr_next(ul_list *l) {
  uint64_t x;
  if (l->lockfree) return ulr_next_shared(l);
  x = ulr_step(l->rng);
  l->rng = x;
  return ulr_out(x);
}

/* Uniform double in [0, 1): the top 53 bits. */
static inline double ulr_unit(ul_list *l) {
  return (double)(ulr_next(l) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform in [0, n) from 64 random bits r, by a 64x64 -> 128-bit
 * multiply (Lemire): no modulo. */
static inline int64_t ulr_scale(uint64_t r, int64_t n) {
  return (int64_t)(((ul_u128)r * (uint64_t)n) >> 64);
}

/* Uniform in [0, n). */
static inline int64_t ulr_below(ul_list *l, int64_t n) {
  return ulr_scale(ulr_next(l), n);
}

#endif
