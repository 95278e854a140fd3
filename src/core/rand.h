/*
 * core/rand.h - the list's random numbers: xorshift64* on l->rng, inline,
 * so that a strategy draws from the block without calling into the list.
 * The C tests replay this generator: changing it changes their picks.
 */
#ifndef UL_RAND_H
#define UL_RAND_H

#include "core.h"

__extension__ typedef unsigned __int128 ul_u128;

/* The next 64 random bits; l->rng is never 0. */
static inline uint64_t ulr_next(ul_list *l) {
  uint64_t x = l->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  l->rng = x;
  return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform double in [0, 1): the top 53 bits. */
static inline double ulr_unit(ul_list *l) {
  return (double)(ulr_next(l) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform in [0, n) by a 64x64 -> 128-bit multiply (Lemire): no modulo. */
static inline int64_t ulr_below(ul_list *l, int64_t n) {
  return (int64_t)(((ul_u128)ulr_next(l) * (uint64_t)n) >> 64);
}

#endif
