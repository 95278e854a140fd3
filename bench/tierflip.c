/* bench/tierflip.c (make bench-tierflip): the CPU time (thread clock, so
 * that preemption does not count) of a weighted list's lowest-tier flip,
 * the core alone, no Lua. n members (weights 1..9) in tiers 0 and 1, no
 * panic. The lowest tier fails over: every healthy member of tier 0 but
 * one goes down (not timed), then the down of the last one is timed, the
 * flip to tier 1, with the pick after it; then its up, the flip back,
 * with its pick. 200 picks between; worst of 10 of each, after a first
 * flip down and up timed apart ("first": the first picks of a tree that
 * has not been read yet also bring its certificates up to date, a cost
 * of the kinetic tree that any first picks pay). Two layouts:
 *   small  tier 0 holds 100 members, tier 1 the n - 100 others
 *   large  tier 0 holds n - 100, tier 1 the 100 others
 * and, for scale, one down and up that flips nothing (a tier 1 member).
 *   build/tierflip N
 * The same file builds against older cores (ul_size for the block when
 * ul_size_opts is not there), for before/after figures. */
#include "core/core.h"
#include "core/list.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define REPS 10

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static ul_list *make(uint32_t n, uint32_t in0) {
  ul_opts o;
  ul_list *l;
  uint32_t i;
  ul_opts_default(&o);
  o.strategy = UL_WEIGHTED;
  o.tier_max = 1;
  o.initial_score = 0; /* one down or up flips health */
  o.low_score = -1;
  o.high_score = 0;
#ifdef UL_KST_TREES
  l = malloc(ul_size_opts(n, &o));
#else
  l = malloc(ul_size(n, UL_WEIGHTED));
#endif
  if (!l) exit(1);
  ul_init(l, n, &o, 1);
  for (i = 0; i < n; i++) {
    int32_t s = ul_append(l, 0, -1, 0, 1 + i % 9, i, 0);
    ulc_apply(l, s, 1, 0, i < in0 ? 0 : 1);
  }
  return l;
}

static void picks(ul_list *l, uint32_t k) {
  while (k--)
    if (ul_pick(l, 0, 0) < 0) exit(2);
}

/* One timed change, in s: 200 picks untimed, then op(s) and a pick. */
static double timed(ul_list *l, void (*op)(ul_list *, int32_t, double), int32_t s) {
  double t0;
  picks(l, 200);
  t0 = now();
  op(l, s, 0);
  picks(l, 1);
  return now() - t0;
}

/* Worst of REPS of: down(s) + a pick, up(s) + a pick, in us (worst[0],
 * worst[1]), after a first one (first[0], first[1]). */
static void flips(ul_list *l, int32_t s, double worst[2], double first[2]) {
  uint32_t r;
  int k;
  for (r = 0; r <= REPS; r++)
    for (k = 0; k < 2; k++) {
      double d = timed(l, k == 0 ? ul_down : ul_up, s);
      if (r == 0) first[k] = d, worst[k] = 0;
      else if (d > worst[k]) worst[k] = d;
    }
  for (k = 0; k < 2; k++) {
    worst[k] *= 1e6;
    first[k] *= 1e6;
  }
}

static void run(uint32_t n, uint32_t in0, const char *what) {
  ul_list *l = make(n, in0);
  double w[2], w1[2], f[2], f1[2];
  uint32_t i;
  flips(l, (int32_t)(n - 1), w1, f1); /* tier 1: nothing flips */
  for (i = 0; i + 1 < in0; i++) ul_down(l, (int32_t)i, 0);
  if (l->active_tier != 0) exit(3);
  flips(l, (int32_t)(in0 - 1), w, f);
  printf("n=%-6u %-5s tier 0 %5u, tier 1 %5u: flip down %8.1f us, up %8.1f us"
         " (first %.1f, %.1f; no flip %.1f, %.1f)\n", n, what, in0, n - in0, w[0], w[1], f[0], f[1],
         w1[0], w1[1]);
  free(l);
}

int main(int argc, char **argv) {
  uint32_t n = argc > 1 ? (uint32_t)atoi(argv[1]) : 100000;
  if (n < 200) return 1;
  run(n, 100, "small");
  run(n, n - 100, "large");
  return 0;
}
