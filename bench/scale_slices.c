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

/* Picks until the build under way ends (at least one), each timed; with
 * run > 0, each pick's time is the least of its time in this run and in
 * the runs before (the same picks in the same order on a list built the
 * same way: host noise seldom hits one pick in every run). Returns the
 * number of picks. */
static size_t build(ul_list *l, double *d, size_t cap, int run) {
  size_t k = 0;
  double t0, t;
  do {
    t0 = now();
    ul_pick(l, (uint64_t)(k + 1) * 0x9E3779B97F4A7C15ULL, 0);
    t = now() - t0;
    d[k] = run == 0 || t < d[k] ? t : d[k];
    k++;
  } while (l->maglev_busy && k < cap);
  return l->maglev_busy ? 0 : k;
}

static void report(const char *what, double *d, size_t k, int runs) {
  double sum = 0;
  size_t i;
  if (k == 0) {
    printf("  %-8s not done\n", what);
    return;
  }
  for (i = 0; i < k; i++) sum += d[i];
  qsort(d, k, sizeof *d, cmp);
  printf("  %-8s %8zu picks, %.3f s, mean %.1f us, p99.9 %.1f us, worst %.1f us%s\n",
         what, k, sum, sum / (double)k * 1e6, d[(size_t)((double)k * 0.999)] * 1e6,
         d[k - 1] * 1e6, runs > 1 ? " (least of the runs)" : "");
}

static ul_list *make(uint32_t n, const char *slice) {
  uint32_t i;
  ul_opts o;
  ul_list *l;
  ul_opts_default(&o);
  o.strategy = UL_HASH;
  l = malloc(ul_size(n, UL_HASH));
  if (!l) return NULL;
  ul_init(l, n, &o, 1);
  for (i = 0; i < n; i++) ul_append(l, 0, -1, 0, 1, ul_hash(&i, 4), 0);
  if (slice) l->maglev_slice = (uint32_t)atoi(slice);
  return l;
}

/*   build/scale_slices N [slice [runs]]: with runs > 1 (default 1), the
 * whole sequence (new list, first table, one down, the next table) runs
 * that many times and each pick counts at its least time. */
int main(int argc, char **argv) {
  uint32_t n = argc > 1 ? (uint32_t)atoi(argv[1]) : 100000;
  const char *slice = argc > 2 && atoi(argv[2]) > 0 ? argv[2] : NULL;
  int runs = argc > 3 ? atoi(argv[3]) : 1, r;
  size_t cap = (size_t)1 << 23, k1 = 0, k2 = 0;
  double *d1 = malloc(cap * sizeof *d1), *d2 = malloc(cap * sizeof *d2);
  if (!d1 || !d2 || runs < 1) return 1;
  for (r = 0; r < runs; r++) {
    size_t a, b;
    ul_list *l = make(n, slice);
    if (!l) return 1;
    if (r == 0)
      printf("n=%u M=%u slice=%u runs=%d\n", n, l->maglev_m, l->maglev_slice,
             runs);
    a = build(l, d1, cap, r);
    ul_down(l, 5, 0);
    ul_down(l, 5, 0);
    b = build(l, d2, cap, r);
    free(l);
    if ((r > 0 && (a != k1 || b != k2)) || a == 0 || b == 0) {
      printf("  runs differ or a build did not end (%zu/%zu, %zu/%zu picks)\n",
             a, k1, b, k2);
      return 1;
    }
    k1 = a;
    k2 = b;
  }
  report("first", d1, k1, runs);
  report("rebuild", d2, k2, runs);
  free(d1);
  free(d2);
  return 0;
}
