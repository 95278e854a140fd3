/*
 * bench/atomic.c - what one atomic read-modify-write costs on this
 * machine, against a plain increment: the floor of a shared pick that
 * must move one word every process sees (round robin's position, random's
 * generator: docs/BENCHMARKS.md, "The floor of a global pick"). One
 * thread, uncontended; ns per operation, the best of 5 runs of N.
 *   make bench-atomic        (build/atomic [N])
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static volatile uint64_t plain;
static uint64_t word, counter;

static void inc(void) { plain++; }
static void xadd(void) { __atomic_fetch_add(&word, 1, __ATOMIC_RELAXED); }
static void cas(void) {
  uint64_t o = __atomic_load_n(&word, __ATOMIC_RELAXED);
  __atomic_compare_exchange_n(&word, &o, o + 1, 0, __ATOMIC_RELAXED,
                              __ATOMIC_RELAXED);
}
static void cas_xadd(void) { /* a shared round-robin pick's two */
  cas();
  __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 50000000L;
  static const struct {
    const char *name;
    void (*op)(void);
  } ops[] = {{"plain increment (volatile)", inc},
             {"lock xadd", xadd},
             {"load + lock cmpxchg", cas},
             {"cmpxchg + xadd (two words)", cas_xadd}};
  size_t k;
  if (n < 1) n = 1;
  for (k = 0; k < sizeof ops / sizeof ops[0]; k++) {
    double best = 1e9;
    int r;
    for (r = 0; r < 5; r++) {
      double t0 = now(), dt;
      long i;
      for (i = 0; i < n; i++) ops[k].op();
      dt = (now() - t0) / (double)n * 1e9;
      if (dt < best) best = dt;
    }
    printf("%-28s %6.2f ns\n", ops[k].name, best);
  }
  return 0;
}
