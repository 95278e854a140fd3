/*
 * test_shared_stress.c - a list's block in a shared mapping (issue 10),
 * driven by 8 threads at once with mixed operations, each under the
 * mapping's robust lock as the binding makes them (src/lua/shared.c):
 * pick, up, down, set_weight, check rounds (collect, take, report or
 * leave running), remove and append (a reconcile). After every operation
 * the cheap invariants hold (scores within [low, high], counters within
 * their bounds, a pick returns a member that was eligible then, and one
 * exactly when one was); every 64 operations and at the end, every
 * structural invariant (spec/fuzz/invariants.h, recounted from the
 * members). Then a thread that exits holding the lock in the middle of a
 * write: the next locker's rebuild (ul_repair) makes the block valid.
 * `make test-tsan` runs it under ThreadSanitizer (UL_SHM_STRESS: ops per
 * thread).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/core.h"
#include "core/shm.h"
#include "core/block.h"
#include "../fuzz/invariants.h"

#define THREADS 8
#define CAP 24

typedef struct {
  ul_shm *m;
  ul_list *l;
  double *clock;          /* in the mapping, written under the lock */
  unsigned char *scratch; /* for inv_check, used under the lock */
  long ops;
} stress;

typedef struct {
  stress *st;
  uint64_t seed;
} worker;

static uint64_t rnd(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

static void rebuild(ul_shm *m, void *ud) {
  (void)m;
  ul_repair((ul_list *)ud);
}

static void cheap_invariants(const ul_list *l) {
  uint32_t p;
  INV(l->n <= l->cap && l->nelig <= l->n && l->healthy <= l->n,
      "counters n %u nelig %u healthy %u", l->n, l->nelig, l->healthy);
  for (p = 0; p < l->n; p++) {
    const ul_node *x = ulb_at(l, p);
    INV(x->score >= l->opts.low_score && x->score <= l->opts.high_score,
        "score %f out of range", x->score);
  }
}

static void one_op(stress *st, uint64_t *x) {
  ul_list *l = st->l;
  double now = (*st->clock += 0.01);
  int op = (int)(rnd(x) % 10);
  int32_t s = l->n ? ul_order(l)[rnd(x) % l->n] : -1;
  switch (op) {
    case 0:
    case 1:
    case 2: {
      uint32_t ne = l->nelig;
      int32_t got = ul_pick(l, rnd(x), now);
      INV((ne > 0) == (got >= 0), "pick %d with %u eligible", got, ne);
      if (got >= 0) INV(ul_eligible(l, got), "picked %d not eligible", got);
      if (got >= 0 && l->opts.strategy == UL_LEAST_CONN) ul_release(l, got);
      break;
    }
    case 3:
      if (s >= 0) ul_up(l, s, now);
      break;
    case 4:
      if (s >= 0) ul_down(l, s, now);
      break;
    case 5:
      if (s >= 0) ul_set_weight(l, s, 1 + (uint32_t)(rnd(x) % 5));
      break;
    case 6:
    case 7: { /* a check round: some reported, some left running */
      int32_t t;
      uint64_t gen;
      int ev, k = 0;
      ul_collect(l, now);
      while ((ev = ul_take(l, &t, &gen)) != UL_EV_NONE && k++ < CAP)
        if (ev == UL_EV_START && rnd(x) % 4)
          ul_report(l, t, gen, (int)(rnd(x) % 3), now, (int)(rnd(x) % 4) - 1);
      break;
    }
    default: { /* a reconcile: one or two leave, the list refills */
      unsigned char drop[CAP];
      memset(drop, 0, sizeof drop);
      if (s >= 0) drop[s] = 1;
      if (l->n && rnd(x) % 2) drop[ul_order(l)[rnd(x) % l->n]] = 1;
      ul_remove(l, drop);
      while (l->n < CAP - 4)
        ul_append(l, (int)(rnd(x) % 2), -1, now, 1 + (uint32_t)(rnd(x) % 3),
                  rnd(x), 1);
      break;
    }
  }
  cheap_invariants(l);
}

static void *run_worker(void *arg) {
  worker *w = (worker *)arg;
  stress *st = w->st;
  uint64_t x = w->seed;
  long i;
  for (i = 0; i < st->ops; i++) {
    int rc = ul_shm_lock(st->m, rebuild, st->l);
    INV(rc >= 0, "lock %d", rc);
    one_op(st, &x);
    if (i % 64 == 0) inv_check(st->l, st->scratch);
    ul_shm_unlock(st->m);
  }
  return NULL;
}

/* Exits holding the lock, the block half written. */
static void *die_writing(void *arg) {
  stress *st = (stress *)arg;
  ul_list *l = st->l;
  ul_shm_lock(st->m, rebuild, l);
  l->healthy += 2;
  l->nelig = 0;
  l->checked += 3;
  if (l->n > 2) ul_nodes(l)[ul_order(l)[2]].flags = 0;
  pthread_exit(NULL);
  return NULL;
}

static long ops_per_thread(void) {
  const char *env = getenv("UL_SHM_STRESS");
  long n = env ? atol(env) : 0;
  return n > 0 ? n : 1500;
}

static void stress_strategy(int strategy) {
  char name[64];
  ul_opts o;
  size_t bsize;
  ul_shm *m;
  stress st;
  worker w[THREADS];
  pthread_t th[THREADS], dead;
  unsigned char *scratch;
  int i, rc;
  ul_opts_default(&o);
  o.strategy = strategy;
  o.panic = 0.4;
  o.interval = 0.05;
  o.timeout = 0.03;
  o.tier_min = 0;
  o.tier_max = 3;
  o.tier_init = 1;
  bsize = ul_size(CAP, strategy);
  snprintf(name, sizeof name, "stress-%d-%d", (int)getpid(), strategy);
  rc = ul_shm_open(name, 1, 64 + bsize, &m);
  assert_int_equal(rc, UL_SHM_MADE);
  st.m = m;
  st.clock = (double *)ul_shm_data(m);
  st.l = (ul_list *)(void *)((char *)ul_shm_data(m) + 64);
  scratch = (unsigned char *)malloc(3 * CAP + 64);
  assert_non_null(scratch);
  st.scratch = scratch;
  st.ops = ops_per_thread();
  ul_init(st.l, CAP, &o, 42);
  for (i = 0; i < CAP - 4; i++) ul_append(st.l, i % 2, -1, 0, 1, (uint64_t)i * 7919, 0);
  for (i = 0; i < THREADS; i++) {
    w[i].st = &st;
    w[i].seed = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
    assert_int_equal(pthread_create(&th[i], NULL, run_worker, &w[i]), 0);
  }
  for (i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  assert_int_equal(ul_shm_lock(m, rebuild, st.l), UL_LOCK_OK);
  inv_check(st.l, scratch);
  ul_shm_unlock(m);
  /* a writer that dies holding the lock */
  assert_int_equal(pthread_create(&dead, NULL, die_writing, &st), 0);
  pthread_join(dead, NULL);
  assert_int_equal(ul_shm_lock(m, rebuild, st.l), UL_LOCK_RECOVERED);
  inv_check(st.l, scratch);
  cheap_invariants(st.l);
  ul_shm_unlock(m);
  free(scratch);
}

static void test_round_robin(void **state) {
  (void)state;
  stress_strategy(UL_ROUND_ROBIN);
}
static void test_weighted(void **state) {
  (void)state;
  stress_strategy(UL_WEIGHTED);
}
static void test_least_conn(void **state) {
  (void)state;
  stress_strategy(UL_LEAST_CONN);
}
static void test_hash(void **state) {
  (void)state;
  stress_strategy(UL_HASH);
}
static void test_random(void **state) {
  (void)state;
  stress_strategy(UL_RANDOM);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_robin), cmocka_unit_test(test_weighted),
      cmocka_unit_test(test_least_conn), cmocka_unit_test(test_hash),
      cmocka_unit_test(test_random)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
