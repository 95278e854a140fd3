/*
 * spec/c/test_shared_threads.c - issue 10's thread proof at the core's
 * level: one list block in a shared mapping (core/shm.h), 8 threads doing
 * mixed pick / up / down / set_weight / release / collect + take + report
 * / reconcile (a member removed, a new one appended) on it, every writer
 * under the mapping's robust mutex, as the binding's shared lists do.
 * After every operation, still under the lock, the whole block is checked
 * (spec/fuzz/invariants.h: scores within [low, high], counters against a
 * recount, the heap, the ready ring, dup rings) and a pick must return a
 * member that was eligible by the documented rule just before it.
 * At the end the picks each slot got, as the threads counted them, must
 * equal the block's pick counters.
 *
 * Picks go the binding's way: ul_pick_lockfree first (round robin picks
 * without the lock, core.h; hash: ul_pick_lockfree_hash, on a complete
 * table; random: ul_pick_lockfree_random; weighted:
 * ul_pick_lockfree_weighted, from a period), the locked ul_pick when it
 * says so; every
 * locked section is a write section of the block's sequence lock
 * (ul_write_begin/end). A lock-free pick cannot be checked against the
 * block as it was, so every locked section logs the eligible set it left
 * (state k, a bitmask by slot), and the pick, checked under the lock just
 * after, must name a slot eligible in one of the states it overlapped.
 * A pick that raced with the append of a new member into its slot may
 * count on either; the final count allows those (fuzzy[]).
 *
 * Built with -fsanitize=thread by the tsan suite (make test-tsan): a data
 * race is a failure (TSAN_OPTIONS=halt_on_error=1). Each thread runs
 * UL_SHARED_STRESS operations on each strategy's list (hash: a twentieth,
 * HASH_SHARE below): 20000 by default (the C suite), 40000 in the tsan
 * suites, 1000000 by hand for issue 10's 8 x 1M (UL_SHARED_ONLY=k: only
 * strategy k, e.g. 0 for round robin; hash: the small-table build). An
 * invariant that fails prints a line and aborts the child the test runs
 * in.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/core.h"
#include "core/shm.h"
#include "../fuzz/invariants.h"
#include "child.h"

#define NTHREADS 8
#define CAP 24     /* slots; members come and go between MIN_N and CAP */
#define MIN_N 4
#define PHASE 800 /* operations in each phase (one in four an outage) */
/* hash runs a HASH_SHARE-th of the operations: every change makes its
 * next pick build a table of M >= 16381 entries, slow under TSan; the
 * small-table build (build/tsan/test_shared_threads_smallm:
 * UL_MAGLEV_MIN_M=127, UL_MAGLEV_PER_SLOT=5, HASH_SHARE=1) runs them all,
 * and hash only */
#ifndef HASH_SHARE
#define HASH_SHARE 20
#endif
/* The child's time limit: 600 s, and 2 s more per thousand operations a
 * thread (under TSan on 2 loaded cores, 8 x 1M of random took over 600 s). */
#define CHILD_SECS(iters) (600u + (unsigned)((iters) / 500))
#define NLOG 4096 /* states kept: a lock-free pick spanning more is not checked */

typedef struct shared_area {
  uint64_t next_hash;       /* backends appended so far (their identity) */
  uint64_t picks[CAP];      /* picks of each slot since it was appended */
  uint64_t fuzzy[CAP];      /* lock-free picks that raced with its append */
  uint64_t appended[CAP];   /* the state its append made */
  uint64_t ops, picked, none, lockfree, unchecked;
  uint64_t lfnone;          /* lock-free picks that found none eligible */
  uint64_t state;           /* locked sections done (atomic: read lock-free) */
  uint32_t log[NLOG];       /* state k's eligible slots, bit s: at k % NLOG */
  /* the list block follows, 64-byte aligned */
} shared_area;

static size_t area_head(void) { return (sizeof(shared_area) + 63u) & ~(size_t)63u; }

typedef struct targ {
  ul_shm *m;
  ul_lfview v;
  int strategy;
  long iters;
  uint64_t seed;
  int failed;
} targ;

static uint64_t xs(uint64_t *s) { /* xorshift64* */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545F4914F6CDD1DULL;
}

static ul_list *area_list(ul_shm *m) {
  return (ul_list *)((char *)ul_shm_data(m) + area_head());
}

/* A member's slot, chosen at random, or -1 when the list is empty. */
static int32_t some_member(const ul_list *l, uint64_t *r) {
  if (l->n == 0) return -1;
  return ul_order(l)[xs(r) % l->n];
}

/* The end of a locked section: the eligible set it leaves, logged as the
 * next state. */
static void log_state(shared_area *a, const ul_list *l, unsigned char *elig) {
  uint64_t k = a->state + 1;
  uint32_t s, mask = 0;
  inv_eligibility(l, elig);
  for (s = 0; s < l->cap; s++)
    if (elig[s]) mask |= 1u << s;
  a->log[k % NLOG] = mask;
  __atomic_store_n(&a->state, k, __ATOMIC_RELEASE);
}

/* A lock-free pick's result s (-1: none), made while the states c0..c1
 * were current, checked under the lock. */
static void check_lockfree(shared_area *a, int32_t s, uint64_t c0, uint64_t c1) {
  uint64_t k;
  int seen = 0;
  a->ops++;
  a->lockfree++;
  if (c1 - c0 >= NLOG - 1 || a->state - c0 >= NLOG - 1) {
    a->unchecked++;
  } else {
    for (k = c0; k <= c1 && !seen; k++)
      seen = s < 0 ? a->log[k % NLOG] == 0 : (a->log[k % NLOG] >> s) & 1u;
    INV(seen, "lock-free pick: slot %d was eligible in none of states %llu..%llu",
        s, (unsigned long long)c0, (unsigned long long)c1);
  }
  if (s < 0) {
    a->none++;
    a->lfnone++;
    return;
  }
  a->picked++;
  if (a->appended[s] > c0) a->fuzzy[s]++; /* old member's or new one's */
  else a->picks[s]++;
}

static void one_op(ul_shm *m, uint64_t *r, unsigned char *scratch,
                   unsigned char *elig, uint32_t op) {
  shared_area *a = (shared_area *)ul_shm_data(m);
  ul_list *l = area_list(m);
  double now = (double)a->ops * 0.01; /* one list clock, moved by every op */
  /* one phase in four is an outage: ups are downs, checks fail, so that
   * the lists without panic have nothing eligible for a while */
  int outage = (a->ops / PHASE) % 4 == 3;
  int32_t s;
  a->ops++;
  if (outage && (op == 6 || op == 7 || op >= 14)) op = 8; /* no ups, no joins */
  switch (op) {
    case 0: case 1: case 2: case 3: case 4: case 5: { /* pick */
      uint32_t k = inv_eligibility(l, elig);
      uint64_t key = xs(r);
      if (l->opts.strategy == UL_HASH && !l->maglev_busy && l->maglev_valid && k) {
        /* why the lock-free hash pick has no fall-through: a complete
         * table names only eligible members (maglev.c) */
        const int32_t *tab = (const int32_t *)(const void *)((const char *)l + l->off_mag);
        int32_t es = tab[((key >> 32) * (uint64_t)l->maglev_m) >> 32];
        INV(es >= 0 && (uint32_t)es < l->cap && elig[es],
            "hash: a complete table's entry names slot %d, not eligible", es);
      }
      s = ul_pick(l, key, now);
      if (s < 0) {
        INV(k == 0 && l->nelig == 0, "pick: none, but %u eligible", k);
        a->none++;
      } else {
        INV((uint32_t)s < l->cap && elig[s], "pick: slot %d was not eligible", s);
        a->picks[s]++;
        a->picked++;
        if (l->opts.strategy == UL_LEAST_CONN && (xs(r) & 1)) ul_release(l, s);
      }
      break;
    }
    case 6: case 7:
      if ((s = some_member(l, r)) >= 0) ul_up(l, s, now);
      break;
    case 8: case 9:
      if ((s = some_member(l, r)) >= 0) ul_down(l, s, now);
      break;
    case 10:
      if ((s = some_member(l, r)) >= 0)
        ul_set_weight(l, s, 1 + (uint32_t)(xs(r) % 10));
      break;
    case 11: case 12: { /* the scheduler: start what is due, report some */
      int32_t slot;
      uint64_t gen;
      int ev, k = 0;
      ul_collect(l, now);
      while (k++ < 4 && (ev = ul_take(l, &slot, &gen)) != UL_EV_NONE) {
        if (ev == UL_EV_START)
          ul_report(l, slot, gen, !outage && (xs(r) % 3) != 0, now,
                    (int)(xs(r) % 3) - 1);
      }
      break;
    }
    case 13: { /* reconcile: one member leaves */
      static __thread unsigned char drop[CAP];
      if (l->n <= MIN_N || (s = some_member(l, r)) < 0) break;
      memset(drop, 0, sizeof drop);
      drop[s] = 1;
      ul_remove(l, drop);
      break;
    }
    default: /* reconcile: a new member joins */
      if (l->n < l->cap) {
        uint64_t id = ++a->next_hash;
        s = ul_append(l, (int)(id & 1), -1, now, 1 + (uint32_t)(id % 5),
                      ul_hash(&id, sizeof id), (int)(xs(r) & 1));
        INV(s >= 0, "append into a list of %u < %u members failed", l->n, l->cap);
        a->picks[s] = a->fuzzy[s] = 0;
        a->appended[s] = a->state + 1;
      }
      break;
  }
  inv_check(l, scratch);
}

/* the strategies whose shared lists pick without the lock */
#define LOCKFREE(k) ((k) != UL_LEAST_CONN)

static void *worker(void *p) {
  targ *t = (targ *)p;
  unsigned char scratch[3 * CAP], elig[CAP];
  uint64_t r = t->seed | 1;
  shared_area *a = (shared_area *)ul_shm_data(t->m);
  ul_list *l = area_list(t->m);
  long i;
  for (i = 0; i < t->iters; i++) {
    uint32_t op = (uint32_t)(xs(&r) % 16);
    int32_t s = UL_PICK_LOCK;
    uint64_t c0 = 0, c1 = 0;
    if (op < 6) { /* a pick: without the lock where it can (the binding's way) */
      c0 = __atomic_load_n(&a->state, __ATOMIC_ACQUIRE);
      s = t->strategy == UL_HASH     ? ul_pick_lockfree_hash(l, &t->v, NULL, 0, xs(&r))
          : t->strategy == UL_RANDOM ? ul_pick_lockfree_random(l, &t->v, NULL, 0)
          : t->strategy == UL_WEIGHTED ? ul_pick_lockfree_weighted(l, &t->v, NULL, 0)
                                     : ul_pick_lockfree(l, &t->v, NULL, 0);
      c1 = __atomic_load_n(&a->state, __ATOMIC_ACQUIRE);
    }
    if (ul_shm_lock(t->m, NULL, NULL) != UL_LOCK_OK) {
      t->failed = 1;
      return NULL;
    }
    ul_write_begin(l);
    if (s != UL_PICK_LOCK) {
      check_lockfree(a, s, c0, c1);
      if (s >= 0 && l->opts.strategy == UL_LEAST_CONN && (xs(&r) & 1))
        ul_release(l, s);
      inv_check(l, scratch);
    } else {
      one_op(t->m, &r, scratch, elig, op);
    }
    log_state(a, l, elig);
    ul_write_end(l);
    ul_shm_unlock(t->m);
  }
  return NULL;
}

static long stress_iters(void) {
  const char *e = getenv("UL_SHARED_STRESS");
  long n = e && *e ? strtol(e, NULL, 10) : 20000;
  return n > 0 ? n : 20000;
}

/* The whole run, in a child (an invariant aborts it). 0: passed. */
static int run_stress(int strategy) {
  char name[64];
  ul_opts o;
  ul_shm *m;
  ul_list *l;
  shared_area *a;
  pthread_t th[NTHREADS];
  targ t[NTHREADS];
  size_t sz;
  uint64_t sum = 0;
  uint32_t i, p;
  /* hash rebuilds its Maglev table (M entries) after every change of
   * eligibility: a HASH_SHARE-th of the operations */
  long iters = strategy == UL_HASH ? stress_iters() / HASH_SHARE + 1 : stress_iters();
  ul_opts_default(&o);
  o.strategy = strategy;
  o.interval = 0.05;
  o.timeout = 0.03;
  o.jitter = 0.2;
  o.panic = (strategy % 2) ? 0 : 0.3; /* some lists with none eligible */
  o.tier_max = 3;
  o.slow_start = 0.5;
  sz = ul_size(CAP, strategy);
  snprintf(name, sizeof name, "threads-%d", strategy);
  if (sz == 0 || ul_shm_open(name, (uint64_t)strategy, area_head() + sz, &m) != UL_SHM_MADE) {
    fprintf(stderr, "cannot make the mapping\n");
    return 1;
  }
  a = (shared_area *)ul_shm_data(m);
  l = area_list(m);
  ul_init(l, CAP, &o, 42);
  l->lockfree = LOCKFREE(strategy); /* as the binding sets it */
  for (i = 0; i < 12; i++) {
    uint64_t id = ++a->next_hash;
    ul_append(l, (int)(id & 1), -1, 0, 1 + (uint32_t)(id % 5), ul_hash(&id, sizeof id), 0);
  }
  {
    unsigned char e[CAP];
    log_state(a, l, e);
  }
  for (i = 0; i < NTHREADS; i++) {
    t[i].m = m;
    t[i].strategy = strategy;
    t[i].iters = iters;
    t[i].seed = 0x9E3779B97F4A7C15ULL * (i + 1) + (uint64_t)strategy;
    t[i].failed = 0;
    if (i == 0) ul_lf_view(&t[0].v, l); /* before any thread runs (the
                                           binding reads it under the lock) */
    else t[i].v = t[0].v;
    if (pthread_create(&th[i], NULL, worker, &t[i]) != 0) return 2;
  }
  for (i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
  for (i = 0; i < NTHREADS; i++)
    if (t[i].failed) {
      fprintf(stderr, "thread %u could not lock\n", i);
      return 3;
    }
  if (a->ops != (uint64_t)NTHREADS * (uint64_t)iters) {
    fprintf(stderr, "ops %llu\n", (unsigned long long)a->ops);
    return 4;
  }
  for (p = 0; p < l->n; p++) {
    int32_t s = ul_order(l)[p];
    if (ul_picks(l)[s] < a->picks[s] || ul_picks(l)[s] > a->picks[s] + a->fuzzy[s]) {
      fprintf(stderr, "slot %d: %llu picks counted (+%llu raced with its append), "
              "the block says %llu\n", s, (unsigned long long)a->picks[s],
              (unsigned long long)a->fuzzy[s], (unsigned long long)ul_picks(l)[s]);
      return 5;
    }
    sum += a->picks[s];
  }
  if (getenv("UL_SHARED_VERBOSE"))
    fprintf(stderr, "strategy %d: %llu picks, %llu with none eligible, %llu "
            "lock-free (%llu of them none, %llu spanning too many states to "
            "check)\n", strategy,
            (unsigned long long)a->picked, (unsigned long long)a->none,
            (unsigned long long)a->lockfree, (unsigned long long)a->lfnone,
            (unsigned long long)a->unchecked);
  /* a short run of hash (UL_SHARED_STRESS=2000: 101 operations a thread,
   * most picks building after a change) may have no lock-free pick */
  if (LOCKFREE(strategy) ? a->lockfree == 0 && a->ops >= 4 * PHASE
                         : a->lockfree > 0) {
    fprintf(stderr, "%llu lock-free picks: every strategy but least_conn, and only "
            "they, pick without the lock\n", (unsigned long long)a->lockfree);
    return 8;
  }
  if (strategy == UL_HASH && o.panic == 0 && a->ops >= 4 * PHASE && a->lfnone == 0) {
    fprintf(stderr, "hash: no lock-free pick found none eligible in the outages\n");
    return 9;
  }
  if (o.panic == 0 && a->ops >= 4 * PHASE && a->none == 0) {
    fprintf(stderr, "no pick found nothing eligible: the outages did not bite\n");
    return 7;
  }
  if (a->picked == 0 || sum > a->picked) {
    fprintf(stderr, "picked %llu, members' picks %llu\n",
            (unsigned long long)a->picked, (unsigned long long)sum);
    return 6;
  }
  return 0;
}

static int stress_child(void *strategy) { return run_stress(*(int *)strategy); }

static void in_child(int strategy) {
  const char *only = getenv("UL_SHARED_ONLY"); /* one strategy's number */
  if (only && *only && atoi(only) != strategy) skip();
  child_run("the stress", stress_child, &strategy, CHILD_SECS(stress_iters()));
}

static void test_hash(void **st) { (void)st; in_child(UL_HASH); }
#if HASH_SHARE != 1
static void test_round_robin(void **st) { (void)st; in_child(UL_ROUND_ROBIN); }
static void test_weighted(void **st) { (void)st; in_child(UL_WEIGHTED); }
static void test_least_conn(void **st) { (void)st; in_child(UL_LEAST_CONN); }
static void test_random(void **st) { (void)st; in_child(UL_RANDOM); }
#endif

int main(void) {
#if HASH_SHARE == 1 /* the small-table build: hash only */
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_hash)};
  return cmocka_run_group_tests_name("shared_threads_smallm", tests, NULL, NULL);
#else
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_robin), cmocka_unit_test(test_weighted),
      cmocka_unit_test(test_least_conn), cmocka_unit_test(test_hash),
      cmocka_unit_test(test_random),
  };
  return cmocka_run_group_tests_name("shared_threads", tests, NULL, NULL);
#endif
}
