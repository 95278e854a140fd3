/* bench/scale_slices.c (make bench-scale): the CPU time (thread clock, so
 * that preemption does not count) of each hash pick while a Maglev table
 * is built: first a new list's first table (built a slice a pick since
 * issue 9's last cliffs; whole at the first pick before), then the next
 * one after one of n backends goes down. For each: the picks until the
 * build ends, their total, mean, 99.9th percentile and worst. The core
 * alone, no Lua.
 *   build/scale_slices N [slice]   (slice: build units per pick) */
#include "core/core.h"
#include "core/block.h"
#include "core/pick.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Picks until the build under way ends (at least one), each timed. */
static void build(ul_list *l, const char *what, double *d, size_t cap) {
  size_t k = 0;
  double sum = 0, t0;
  do {
    t0 = now();
    ul_pick(l, (uint64_t)(k + 1) * 0x9E3779B97F4A7C15ULL, 0);
    d[k] = now() - t0;
    sum += d[k++];
  } while (l->maglev_busy && k < cap);
  qsort(d, k, sizeof *d, cmp);
  printf("  %-8s %8zu picks, %.3f s, mean %.1f us, p99.9 %.1f us, worst %.1f us%s\n",
         what, k, sum, sum / (double)k * 1e6, d[(size_t)((double)k * 0.999)] * 1e6,
         d[k - 1] * 1e6, l->maglev_busy ? " (not done)" : "");
}

int main(int argc, char **argv) {
  uint32_t n = argc > 1 ? (uint32_t)atoi(argv[1]) : 100000, i;
  size_t cap = (size_t)1 << 23;
  double *d = malloc(cap * sizeof *d);
  ul_opts o;
  ul_list *l;
  ul_opts_default(&o);
  o.strategy = UL_HASH;
  l = malloc(ul_size(n, UL_HASH));
  if (!l || !d) return 1;
  ul_init(l, n, &o, 1);
  for (i = 0; i < n; i++) ul_append(l, 0, -1, 0, 1, ul_hash(&i, 4), 0);
  if (argc > 2) l->maglev_slice = (uint32_t)atoi(argv[2]);
  printf("n=%u M=%u slice=%u\n", n, l->maglev_m, l->maglev_slice);
  build(l, "first", d, cap);
  ul_down(l, 5, 0);
  ul_down(l, 5, 0);
  build(l, "rebuild", d, cap);
  free(d);
  free(l);
  return 0;
}
