/*
 * test_shm.c - the shared-memory room (src/core/shm.c): named mappings
 * across threads and forks, the robust mutex with holders killed at
 * random moments, the prober lease on a fake clock and with a holder that
 * dies, the string arena (fuzzed against a model), and an 8-thread stress
 * of all three (`make test-tsan` runs this program under ThreadSanitizer).
 *
 * What could wedge (a lock whose dead holder is not recovered) runs in a
 * forked child under alarm(): a hang fails that test only, in bounded
 * time. Children check with CHILD_CHECK, not cmocka's assertions, whose
 * longjmp would land in the child's copy of the runner. No test sleeps:
 * a child says it is ready through a pipe, and the lease's clock is a
 * number the test passes.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/shm.h"
#include "child.h"

#define CHILD_SECS 20 /* each child's budget; the slowest takes a second */

static uint64_t rnd(uint64_t *s) { /* xorshift64* */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545F4914F6CDD1DULL;
}

static ul_shm *open_ok(const char *name, uint64_t sig, size_t size, int want) {
  ul_shm *m = NULL;
  int rc = ul_shm_open(name, sig, size, &m);
  if (rc != want)
    fail_msg("ul_shm_open(%s): %d (%s), expected %d", name, rc,
             ul_shm_strerror(rc), want);
  assert_non_null(m);
  return m;
}

/* ---- named mappings ------------------------------------------------------ */

/* Mappings of this process (Linux: /proc/self/maps), -1 when unknown: a
 * failed open must not leave one behind. */
static int mappings(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  int n = 0, c;
  if (!f)
    return -1;
  while ((c = getc(f)) != EOF)
    n += c == '\n';
  fclose(f);
  return n;
}

struct opener {
  pthread_barrier_t *go;
  ul_shm *m;
  int rc;
};

static void *open_thread(void *p) {
  struct opener *o = p;
  pthread_barrier_wait(o->go);
  o->rc = ul_shm_open("threads", 7, 4096, &o->m);
  return NULL;
}

static void test_same_name_threads(void **state) {
  pthread_barrier_t go;
  pthread_t t[2];
  struct opener o[2];
  ul_shm *m;
  int i;
  (void)state;
  assert_int_equal(pthread_barrier_init(&go, NULL, 2), 0);
  for (i = 0; i < 2; i++) {
    o[i].go = &go;
    assert_int_equal(pthread_create(&t[i], NULL, open_thread, &o[i]), 0);
  }
  for (i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  pthread_barrier_destroy(&go);
  /* one made it, the other found it: the same mapping */
  assert_int_equal(o[0].rc + o[1].rc, UL_SHM_MADE + UL_SHM_FOUND);
  assert_ptr_equal(o[0].m, o[1].m);
  m = o[0].m;
  assert_int_equal(ul_shm_size(m), 4096);
  assert_true(ul_shm_sig(m) == 7);
  assert_int_equal((uintptr_t)ul_shm_data(m) % 64, 0);
  for (i = 0; i < 4096; i++)
    assert_int_equal(((unsigned char *)ul_shm_data(m))[i], 0);
  ((unsigned char *)ul_shm_data(m))[4095] = 42;
  /* another layout under the name: a distinct error, nothing changed */
  {
    ul_shm *x = NULL;
    assert_int_equal(ul_shm_open("threads", 8, 4096, &x), UL_SHM_ELAYOUT);
    assert_ptr_equal(x, m);
    assert_int_equal(ul_shm_open("threads", 7, 8192, &x), UL_SHM_ELAYOUT);
    assert_true(ul_shm_sig(m) == 7);
    assert_int_equal(ul_shm_size(m), 4096);
  }
  /* a reload: the next Lua VM of the process finds it, as it was */
  assert_ptr_equal(open_ok("threads", 7, 4096, UL_SHM_FOUND), m);
  assert_int_equal(((unsigned char *)ul_shm_data(m))[4095], 42);
  /* another name: another mapping */
  assert_ptr_not_equal(open_ok("threads2", 7, 4096, UL_SHM_MADE), m);
}

static void test_open_bad(void **state) {
  char longname[UL_SHM_NAME_MAX + 2];
  ul_shm *m = (ul_shm *)&m;
  (void)state;
  memset(longname, 'n', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  assert_int_equal(ul_shm_open(NULL, 1, 64, &m), UL_SHM_EINVAL);
  assert_null(m);
  assert_int_equal(ul_shm_open("", 1, 64, &m), UL_SHM_EINVAL);
  assert_int_equal(ul_shm_open(longname, 1, 64, &m), UL_SHM_EINVAL);
  longname[UL_SHM_NAME_MAX] = 0; /* the longest name is fine */
  open_ok(longname, 1, 64, UL_SHM_MADE);
  assert_int_equal(ul_shm_open("bad", 1, 0, &m), UL_SHM_EINVAL);
  assert_int_equal(ul_shm_open("bad", 1, SIZE_MAX, &m), UL_SHM_EINVAL);
  assert_null(m);
  /* more than the address space: mmap refuses, nothing is registered */
  errno = 0;
  assert_int_equal(ul_shm_open("bad", 1, (size_t)1 << 50, &m), UL_SHM_ENOMAP);
  assert_int_equal(errno, ENOMEM);
  assert_null(m);
  /* the injected failures: the mmap, then the registry's entry */
  ul_shm_fail_at(1);
  assert_int_equal(ul_shm_open("bad", 1, 64, &m), UL_SHM_ENOMAP);
  assert_null(m);
  {
    int before = mappings();
    ul_shm_fail_at(2);
    assert_int_equal(ul_shm_open("bad", 1, 64, &m), UL_SHM_ENOMAP);
    assert_null(m);
    assert_int_equal(mappings(), before); /* the mmap was undone */
  }
  ul_shm_fail_at(0);
  /* none of them left the name behind */
  open_ok("bad", 2, 128, UL_SHM_MADE);
  assert_string_equal(ul_shm_strerror(UL_SHM_ELAYOUT),
                      "a shared mapping of this name exists with other options");
}

static int child_shares(void *arg) {
  ul_shm *parents = arg, *m = NULL, *own = NULL;
  CHILD_CHECK(ul_shm_open("fork", 3, 256, &m) == UL_SHM_FOUND);
  CHILD_CHECK(m == parents);
  CHILD_CHECK(((char *)ul_shm_data(m))[0] == 'p');
  strcpy((char *)ul_shm_data(m), "written by the child");
  /* made after the fork: the child's own */
  CHILD_CHECK(ul_shm_open("child-only", 3, 256, &own) == UL_SHM_MADE);
  strcpy((char *)ul_shm_data(own), "child");
  return 0;
}

static void test_fork_shares(void **state) {
  ul_shm *m = open_ok("fork", 3, 256, UL_SHM_MADE), *own;
  (void)state;
  strcpy((char *)ul_shm_data(m), "p");
  child_run("the child", child_shares, m, CHILD_SECS);
  assert_string_equal((char *)ul_shm_data(m), "written by the child");
  own = open_ok("child-only", 3, 256, UL_SHM_MADE);
  assert_int_equal(((char *)ul_shm_data(own))[0], 0);
}

/* ---- the robust mutex ---------------------------------------------------- */

/* The shared state of the kill tests: a is written first, b is derived
 * from it (b == a once a write is whole), and the arena holds one string
 * per live entry of the table, made from its seed. */
#define NSLOTS 64
struct kstate {
  uint64_t a, b;
  uint64_t progress;  /* whole writes, read by the parent without the lock */
  uint64_t rebuilds;  /* how many times the rebuild ran */
  uint64_t swept;     /* strings the rebuilds freed */
  struct {
    uint32_t off; /* 0: empty */
    uint32_t seed;
  } slot[NSLOTS];
  uint64_t arena[]; /* ul_arena, 8-aligned */
};
#define KARENA 4096

static ul_arena *karena(struct kstate *k) { return (ul_arena *)(void *)k->arena; }

static size_t seed_string(uint32_t seed, char *buf) {
  int n = snprintf(buf, 64, "backend-%u.example:%u", seed, seed % 65536);
  return (size_t)n + seed % 7; /* a few NULs at the end too, sometimes */
}

static int slot_live(uint32_t off, void *ud) {
  struct kstate *k = ud;
  int i;
  for (i = 0; i < NSLOTS; i++)
    if (k->slot[i].off == off)
      return 1;
  return 0;
}

static void rebuild(ul_shm *m, void *ud) {
  struct kstate *k = ul_shm_data(m);
  (void)ud;
  k->b = k->a;
  k->swept += ul_arena_recover(karena(k), slot_live, k);
  k->rebuilds++;
}

/* 0 when the state keeps every invariant, with the lock held. */
static const char *kstate_bad(struct kstate *k) {
  char buf[64];
  int i;
  if (k->a != k->b)
    return "b is not a";
  if (ul_arena_validate(karena(k)))
    return ul_arena_validate(karena(k));
  for (i = 0; i < NSLOTS; i++) {
    size_t len;
    if (!k->slot[i].off)
      continue;
    memset(buf, 0, sizeof buf);
    len = seed_string(k->slot[i].seed, buf);
    if (!ul_arena_eq(karena(k), k->slot[i].off, buf, len))
      return "a table entry's string";
  }
  {
    uint32_t live = 0;
    for (i = 0; i < NSLOTS; i++)
      live += k->slot[i].off != 0;
    if (live != karena(k)->nused)
      return "a string no table entry holds";
  }
  return NULL;
}

static ul_shm *kstate_open(const char *name, int want) {
  ul_shm *m = open_ok(name, 11, sizeof(struct kstate) + KARENA, want);
  if (want == UL_SHM_MADE)
    assert_true(ul_arena_init(karena(ul_shm_data(m)), KARENA));
  return m;
}

/* The writer: forever, under the lock, half a write, some work, the other
 * half; and arena changes in the order that never leaves the table
 * pointing at a freed string (alloc, then record; unrecord, then free). */
static void writer(ul_shm *m, uint64_t seed) {
  struct kstate *k = ul_shm_data(m);
  char buf[64];
  volatile uint64_t spin;
  for (;;) {
    int i = (int)(rnd(&seed) % NSLOTS);
    if (ul_shm_lock(m, rebuild, NULL) < 0)
      _exit(3);
    k->a++;
    for (spin = 0; spin < 200; spin++)
      ;
    if (k->slot[i].off) {
      uint32_t off = k->slot[i].off;
      k->slot[i].off = 0;
      for (spin = 0; spin < 50; spin++)
        ;
      ul_arena_free(karena(k), off);
    } else {
      uint32_t s = (uint32_t)rnd(&seed), off;
      memset(buf, 0, sizeof buf);
      off = ul_arena_alloc(karena(k), buf, seed_string(s, buf));
      for (spin = 0; spin < 50; spin++)
        ;
      if (off) {
        k->slot[i].seed = s;
        k->slot[i].off = off;
      }
    }
    for (spin = 0; spin < 200; spin++)
      ;
    k->b = k->a;
    ul_shm_unlock(m);
    __atomic_add_fetch(&k->progress, 1, __ATOMIC_RELEASE);
  }
}

/* A holder that dies holding the lock: the next locker gets it, told. */
static int child_wedge(void *arg) {
  ul_shm *m = arg;
  struct kstate *k = ul_shm_data(m);
  int status, rc;
  pid_t pid = fork();
  CHILD_CHECK(pid >= 0);
  if (pid == 0) {
    ul_shm_lock(m, NULL, NULL);
    k->a = 5; /* half a write */
    raise(SIGKILL);
    _exit(9);
  }
  CHILD_CHECK(waitpid(pid, &status, 0) == pid);
  CHILD_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  rc = ul_shm_lock(m, rebuild, NULL); /* without a robust mutex: hangs */
  CHILD_CHECK(rc == UL_LOCK_RECOVERED);
  CHILD_CHECK(k->rebuilds == 1 && k->b == 5);
  CHILD_CHECK(!ul_shm_dirty(m));
  CHILD_CHECK(ul_shm_recoveries(m) == 1);
  ul_shm_unlock(m);
  CHILD_CHECK(ul_shm_lock(m, rebuild, NULL) == UL_LOCK_OK);
  CHILD_CHECK(k->rebuilds == 1);
  ul_shm_unlock(m);
  return 0;
}

/* Locked twice by one thread: an error, not a hang; still locked once. */
static int child_relock(void *arg) {
  ul_shm *m = arg;
  CHILD_CHECK(ul_shm_lock(m, rebuild, NULL) == UL_LOCK_OK);
  CHILD_CHECK(ul_shm_lock(m, rebuild, NULL) == UL_LOCK_ERROR);
  ul_shm_unlock(m);
  CHILD_CHECK(ul_shm_lock(m, rebuild, NULL) == UL_LOCK_OK);
  ul_shm_unlock(m);
  return 0;
}

static void test_lock_twice(void **state) {
  ul_shm *m = kstate_open("relock", UL_SHM_MADE);
  (void)state;
  child_run("the child", child_relock, m, 5);
  assert_string_equal(ul_shm_strerror(UL_LOCK_ERROR),
                      "the shared mutex cannot be locked");
}

static void test_lock_dead_holder(void **state) {
  ul_shm *m = kstate_open("wedge", UL_SHM_MADE);
  (void)state;
  child_run("the child", child_wedge, m, 5);
}

/* A locker with no rebuild leaves the debt to the next that has one. */
static int child_deferred(void *arg) {
  ul_shm *m = arg;
  struct kstate *k = ul_shm_data(m);
  int status;
  pid_t pid = fork();
  CHILD_CHECK(pid >= 0);
  if (pid == 0) {
    ul_shm_lock(m, NULL, NULL);
    k->a = 9;
    raise(SIGKILL);
    _exit(9);
  }
  CHILD_CHECK(waitpid(pid, &status, 0) == pid);
  CHILD_CHECK(ul_shm_lock(m, NULL, NULL) == UL_LOCK_RECOVERED);
  CHILD_CHECK(ul_shm_dirty(m) && k->rebuilds == 0);
  ul_shm_unlock(m);
  CHILD_CHECK(ul_shm_lock(m, rebuild, NULL) == UL_LOCK_RECOVERED);
  CHILD_CHECK(!ul_shm_dirty(m) && k->rebuilds == 1 && k->b == 9);
  ul_shm_unlock(m);
  CHILD_CHECK(ul_shm_lock(m, rebuild, NULL) == UL_LOCK_OK);
  ul_shm_unlock(m);
  return 0;
}

static void test_lock_deferred_rebuild(void **state) {
  ul_shm *m = kstate_open("deferred", UL_SHM_MADE);
  (void)state;
  child_run("the child", child_deferred, m, 5);
}

/* Writers killed with SIGKILL at random moments, until ten of them died
 * holding the lock: each time the parent carries on with a whole state. */
#define KILLS_WANTED 10
#define KILL_ROUNDS 100

static int child_kills(void *arg) {
  ul_shm *m = arg;
  struct kstate *k = ul_shm_data(m);
  uint64_t seed = 12345, died = 0, before;
  const char *bad;
  int round, status, rc;
  for (round = 0; round < KILL_ROUNDS && died < KILLS_WANTED; round++) {
    uint64_t start = __atomic_load_n(&k->progress, __ATOMIC_ACQUIRE);
    uint64_t wait = rnd(&seed) % 300, spins = rnd(&seed) % 20000;
    volatile uint64_t s;
    pid_t pid;
    fflush(NULL);
    pid = fork();
    CHILD_CHECK(pid >= 0);
    if (pid == 0)
      writer(m, rnd(&seed) | 1);
    /* bounded by the alarm: the writer makes progress */
    while (__atomic_load_n(&k->progress, __ATOMIC_ACQUIRE) < start + wait)
      ;
    for (s = 0; s < spins; s++)
      ;
    kill(pid, SIGKILL);
    CHILD_CHECK(waitpid(pid, &status, 0) == pid);
    before = ul_shm_recoveries(m);
    rc = ul_shm_lock(m, rebuild, NULL);
    CHILD_CHECK(rc == UL_LOCK_OK || rc == UL_LOCK_RECOVERED);
    CHILD_CHECK((rc == UL_LOCK_RECOVERED) == (ul_shm_recoveries(m) == before + 1));
    died += rc == UL_LOCK_RECOVERED;
    bad = kstate_bad(k);
    if (bad)
      fprintf(stderr, "round %d: %s\n", round, bad);
    CHILD_CHECK(bad == NULL);
    ul_shm_unlock(m);
  }
  fprintf(stderr, "# %d writers killed, %llu holding the lock, %llu strings swept\n",
          round, (unsigned long long)died, (unsigned long long)k->swept);
  CHILD_CHECK(died >= KILLS_WANTED);
  CHILD_CHECK(k->rebuilds == died);
  return 0;
}

static void test_lock_killed_writers(void **state) {
  ul_shm *m = kstate_open("kills", UL_SHM_MADE);
  (void)state;
  child_run("the child", child_kills, m, 60);
}

/* ---- the lease ----------------------------------------------------------- */

static void assert_lease(ul_shm *m, int64_t pid, double since, double expiry,
                         uint64_t gen) {
  ul_lease st;
  ul_shm_lease_read(m, &st);
  assert_int_equal(st.pid, pid);
  if (pid) {
    assert_true(st.since == since);
    assert_true(st.expiry == expiry);
  }
  assert_int_equal(st.gen, gen);
}

static int child_not_holder(void *arg) {
  ul_shm *m = arg;
  /* a child of the holder has its generation, not its holding */
  CHILD_CHECK(ul_shm_lease_check(m, 1) == 0);
  CHILD_CHECK(ul_shm_lease_renew(m, 1, 101, 10) == 0);
  CHILD_CHECK(ul_shm_lease_release(m, 1) == 0);
  return 0;
}

static void test_lease_clock(void **state) {
  ul_shm *m = open_ok("lease", 1, 64, UL_SHM_MADE);
  int64_t me = (int64_t)getpid();
  uint64_t g = 99, g2;
  (void)state;
  assert_lease(m, 0, 0, 0, 0);
  assert_int_equal(ul_shm_lease_check(m, 0), 0);
  assert_int_equal(ul_shm_lease_acquire(m, 100, 10, &g), 1);
  assert_int_equal(g, 1);
  assert_lease(m, me, 100, 110, 1);
  assert_int_equal(ul_shm_lease_check(m, 1), 1);
  assert_int_equal(ul_shm_lease_check(m, 2), 0);
  child_run("the child", child_not_holder, m, CHILD_SECS);
  /* held and alive: refused, to this process too, until it expires */
  assert_int_equal(ul_shm_lease_acquire(m, 105, 10, &g2), 0);
  assert_int_equal(ul_shm_lease_renew(m, 1, 108, 10), 1);
  assert_int_equal(ul_shm_lease_renew(m, 2, 108, 50), 0);
  assert_lease(m, me, 100, 118, 1);
  assert_int_equal(ul_shm_lease_acquire(m, 117.99, 10, &g2), 0);
  /* bad times: refused, nothing changed */
  assert_int_equal(ul_shm_lease_acquire(m, 0.0 / 0.0, 10, &g2), UL_SHM_EINVAL);
  assert_int_equal(ul_shm_lease_acquire(m, 1e300 * 1e300, 10, &g2), UL_SHM_EINVAL);
  assert_int_equal(ul_shm_lease_acquire(m, 200, 0, &g2), UL_SHM_EINVAL);
  assert_int_equal(ul_shm_lease_acquire(m, 200, -1, &g2), UL_SHM_EINVAL);
  assert_int_equal(ul_shm_lease_renew(m, 1, 110, 0.0 / 0.0), UL_SHM_EINVAL);
  assert_lease(m, me, 100, 118, 1);
  /* expired: taken over, a new generation; the old one is fenced off */
  assert_int_equal(ul_shm_lease_acquire(m, 118, 10, &g2), 1);
  assert_int_equal(g2, 2);
  assert_lease(m, me, 118, 128, 2);
  assert_int_equal(ul_shm_lease_check(m, 1), 0);
  assert_int_equal(ul_shm_lease_check(m, 2), 1);
  assert_int_equal(ul_shm_lease_renew(m, 1, 119, 10), 0);
  assert_int_equal(ul_shm_lease_release(m, 1), 0);
  /* expired but not taken over: still the holder, renews */
  assert_int_equal(ul_shm_lease_renew(m, 2, 500, 10), 1);
  assert_lease(m, me, 118, 510, 2);
  /* released: free, refused to the old generation, the next one bumps */
  assert_int_equal(ul_shm_lease_release(m, 2), 1);
  assert_lease(m, 0, 0, 0, 2);
  assert_int_equal(ul_shm_lease_check(m, 2), 0);
  assert_int_equal(ul_shm_lease_renew(m, 2, 501, 10), 0);
  assert_int_equal(ul_shm_lease_release(m, 2), 0);
  assert_int_equal(ul_shm_lease_acquire(m, 501, 10, &g2), 1);
  assert_int_equal(g2, 3);
  assert_lease(m, me, 501, 511, 3);
}

static void test_lease_dead_holder(void **state) {
  ul_shm *m = open_ok("lease-dead", 1, 64, UL_SHM_MADE);
  uint64_t child_gen = 0, g = 0;
  int fds[2], status;
  pid_t pid;
  (void)state;
  /* an older holding first, so the child's is not the first generation */
  assert_int_equal(ul_shm_lease_acquire(m, 0, 1, &g), 1);
  assert_int_equal(ul_shm_lease_release(m, g), 1);
  assert_int_equal(pipe(fds), 0);
  fflush(NULL);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    uint64_t cg = 0;
    alarm(CHILD_SECS); /* never outlives the test */
    if (ul_shm_lease_acquire(m, 1, 1e9, &cg) != 1)
      _exit(1);
    if (write(fds[1], &cg, sizeof cg) != (ssize_t)sizeof cg)
      _exit(2);
    for (;;)
      pause();
  }
  close(fds[1]);
  assert_int_equal(read(fds[0], &child_gen, sizeof child_gen), sizeof child_gen);
  close(fds[0]);
  assert_int_equal(child_gen, 2);
  assert_lease(m, pid, 1, 1 + 1e9, 2);
  /* alive and far from expiry: refused; this process cannot report */
  assert_int_equal(ul_shm_lease_acquire(m, 2, 10, &g), 0);
  assert_int_equal(ul_shm_lease_check(m, child_gen), 0);
  kill(pid, SIGKILL);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  /* dead (and reaped): taken over long before the expiry */
  assert_int_equal(ul_shm_lease_acquire(m, 3, 10, &g), 1);
  assert_int_equal(g, child_gen + 1);
  assert_lease(m, getpid(), 3, 13, child_gen + 1);
  assert_int_equal(ul_shm_lease_check(m, child_gen), 0);
  assert_int_equal(ul_shm_lease_check(m, g), 1);
}

/* ---- the arena ----------------------------------------------------------- */

static ul_arena *arena_new(size_t size) {
  ul_arena *a = test_malloc(size);
  assert_true(ul_arena_init(a, size));
  assert_null(ul_arena_validate(a));
  return a;
}

static void test_arena_basic(void **state) {
  size_t c5 = ul_arena_cost(5), len;
  ul_arena *a = arena_new(ul_arena_size(3 * c5));
  uint32_t x, y, z, w;
  const char *s;
  (void)state;
  assert_int_equal(ul_arena_cost(0), 16);
  assert_int_equal(c5, 16);
  assert_int_equal(ul_arena_cost(7), 16);
  assert_int_equal(ul_arena_cost(8), 24);
  x = ul_arena_alloc(a, "alpha", 5);
  y = ul_arena_alloc(a, "bravo", 5);
  z = ul_arena_alloc(a, "charl", 5);
  assert_true(x && y && z && x != y && y != z);
  assert_null(ul_arena_validate(a));
  /* full: a clear 0, nothing changed */
  assert_int_equal(ul_arena_alloc(a, "delta", 5), 0);
  assert_int_equal(ul_arena_alloc(a, "", 0), 0);
  assert_int_equal(ul_arena_alloc(a, NULL, 0), 0);
  assert_null(ul_arena_validate(a));
  assert_int_equal(a->nused, 3);
  s = ul_arena_get(a, y, &len);
  assert_non_null(s);
  assert_int_equal(len, 5);
  assert_string_equal(s, "bravo");
  assert_true(ul_arena_eq(a, x, "alpha", 5));
  assert_false(ul_arena_eq(a, x, "alph", 4));
  assert_false(ul_arena_eq(a, x, "alphb", 5));
  /* offsets that are not strings */
  assert_null(ul_arena_get(a, 0, &len));
  assert_null(ul_arena_get(a, x + 1, &len));
  assert_null(ul_arena_get(a, x - 8, &len));
  assert_null(ul_arena_get(a, a->size, &len));
  assert_null(ul_arena_get(a, UINT32_MAX - 7, &len));
  assert_int_equal(ul_arena_free(a, x + 4), 0);
  /* free recycles: the same place for the same size */
  assert_int_equal(ul_arena_free(a, y), 1);
  assert_int_equal(ul_arena_free(a, y), 0); /* twice: refused */
  assert_null(ul_arena_get(a, y, &len));
  assert_null(ul_arena_validate(a));
  w = ul_arena_alloc(a, "echo", 4);
  assert_int_equal(w, y);
  assert_true(ul_arena_eq(a, w, "echo", 4));
  /* neighbours merge: three freed chunks hold one string of their size */
  assert_int_equal(ul_arena_free(a, x), 1);
  assert_int_equal(ul_arena_free(a, z), 1);
  assert_int_equal(ul_arena_free(a, w), 1);
  assert_int_equal(a->nused, 0);
  assert_int_equal(a->used, 0);
  {
    char big[39]; /* 8 + 39 + 1 = 48 bytes */
    memset(big, 'b', sizeof big);
    assert_int_equal(ul_arena_cost(sizeof big), 3 * c5);
    assert_int_equal(ul_arena_alloc(a, big, sizeof big), x);
    assert_true(ul_arena_eq(a, x, big, sizeof big));
  }
  assert_null(ul_arena_validate(a));
  /* the empty string, from no bytes at all */
  {
    ul_arena *e = arena_new(ul_arena_size(ul_arena_cost(0)));
    uint32_t off = ul_arena_alloc(e, NULL, 0);
    assert_int_not_equal(off, 0);
    assert_string_equal(ul_arena_get(e, off, &len), "");
    assert_int_equal(len, 0);
    assert_true(ul_arena_eq(e, off, "", 0));
    assert_null(ul_arena_validate(e));
    test_free(e);
  }
  /* sizes out of range */
  assert_int_equal(ul_arena_size(SIZE_MAX), 0);
  assert_false(ul_arena_init(a, 8));
  test_free(a);
}

/* One random sequence of allocs and frees against a model: returns the
 * offsets it got, hashed, so two runs can be compared. */
#define FUZZ_LIVE 300
#define FUZZ_OPS 20000

struct live {
  uint32_t off;
  uint32_t len;
  char s[48];
};

static int by_off(const void *x, const void *y) {
  uint32_t a = ((const struct live *)x)->off, b = ((const struct live *)y)->off;
  return a < b ? -1 : a > b;
}

static uint64_t arena_fuzz(uint64_t seed, size_t size) {
  ul_arena *a = arena_new(size);
  struct live *live = test_calloc(FUZZ_LIVE, sizeof *live);
  struct live *sorted = test_calloc(FUZZ_LIVE, sizeof *sorted);
  uint64_t trace = 1469598103934665603ULL;
  int n = 0, op, i, fails = 0, frees = 0;
  for (op = 0; op < FUZZ_OPS; op++) {
    const char *bad;
    if (n > 0 && (n == FUZZ_LIVE || rnd(&seed) % 100 < 45)) {
      i = (int)(rnd(&seed) % (uint64_t)n);
      assert_int_equal(ul_arena_free(a, live[i].off), 1);
      assert_null(ul_arena_get(a, live[i].off, NULL));
      live[i] = live[--n];
      frees++;
    } else {
      struct live l;
      uint32_t j;
      l.len = (uint32_t)(rnd(&seed) % sizeof l.s);
      for (j = 0; j < l.len; j++)
        l.s[j] = (char)(rnd(&seed) & 0xff);
      l.off = ul_arena_alloc(a, l.s, l.len);
      trace = (trace ^ l.off) * 1099511628211ULL;
      if (l.off) {
        for (i = 0; i < n; i++)
          assert_int_not_equal(live[i].off, l.off);
        live[n++] = l;
      } else {
        /* refused: no gap between the live strings fits it (a gap
         * counts the slack of at most 8 bytes a chunk may carry) */
        uint32_t at = (uint32_t)sizeof(ul_arena), cost = (uint32_t)ul_arena_cost(l.len);
        memcpy(sorted, live, (size_t)n * sizeof *live);
        qsort(sorted, (size_t)n, sizeof *sorted, by_off);
        for (i = 0; i <= n; i++) {
          uint32_t end = i < n ? sorted[i].off - 8 : a->size;
          assert_true(end - at < cost + 16);
          if (i < n)
            at = sorted[i].off - 8 + (uint32_t)ul_arena_cost(sorted[i].len);
        }
        fails++;
      }
    }
    bad = ul_arena_validate(a);
    if (bad)
      fail_msg("op %d: %s", op, bad);
    assert_int_equal(a->nused, n);
    if (op % 97 == 0)
      for (i = 0; i < n; i++)
        assert_true(ul_arena_eq(a, live[i].off, live[i].s, live[i].len));
  }
  /* a few of each, or the sequence tested little */
  assert_true(fails > 100 && frees > 1000);
  /* everything freed: one chunk again, the whole arena free */
  while (n > 0)
    assert_int_equal(ul_arena_free(a, live[--n].off), 1);
  assert_int_equal(ul_arena_recover(a, NULL, NULL), 0);
  assert_int_equal(a->used, 0);
  {
    size_t whole = a->size - sizeof(ul_arena) - 9;
    char *big = test_malloc(whole);
    memset(big, 'z', whole);
    assert_int_equal(ul_arena_alloc(a, big, whole), sizeof(ul_arena) + 8);
    test_free(big);
  }
  test_free(sorted);
  test_free(live);
  test_free(a);
  return trace;
}

static void test_arena_fuzz(void **state) {
  uint64_t t1, t2;
  (void)state;
  t1 = arena_fuzz(42, 4096);
  t2 = arena_fuzz(42, 4096); /* deterministic: the same offsets */
  assert_true(t1 == t2);
  assert_true(arena_fuzz(7, 4096) != t1);
  arena_fuzz(99, 1024);
}

static int keep_odd(uint32_t off, void *ud) {
  (void)ud;
  return (off / 16) % 2;
}

static void test_arena_recover(void **state) {
  ul_arena *a = arena_new(ul_arena_size(64 * 16));
  uint32_t off[64];
  int i, kept = 0;
  (void)state;
  for (i = 0; i < 64; i++)
    assert_true((off[i] = ul_arena_alloc(a, "x", 1)) != 0);
  ul_arena_free(a, off[3]);
  /* what a holder killed between a chunk's store and the counters leaves */
  a->nused = 1000;
  a->used = 7;
  a->hint = a->size;
  assert_non_null(ul_arena_validate(a));
  assert_int_equal(ul_arena_recover(a, NULL, NULL), 0);
  assert_null(ul_arena_validate(a));
  assert_int_equal(a->nused, 63);
  assert_int_equal(a->hint, off[3] - 8);
  /* the sweep frees what nobody holds */
  for (i = 0; i < 64; i++)
    kept += i != 3 && keep_odd(off[i], NULL);
  assert_int_equal(ul_arena_recover(a, keep_odd, NULL), 63 - kept);
  assert_null(ul_arena_validate(a));
  assert_int_equal(a->nused, kept);
  for (i = 0; i < 64; i++)
    assert_true((ul_arena_get(a, off[i], NULL) != NULL) ==
                (i != 3 && keep_odd(off[i], NULL)));
  test_free(a);
}

/* ---- 8 threads: the lock, the lease and the arena ------------------------ */

#define NTHREADS 8
struct stress_shared {
  uint64_t a, b;            /* b == a under the lock */
  uint32_t slot[NTHREADS][16]; /* each thread's strings (offsets) */
  uint64_t arena[];
};
#define SARENA 8192

struct stress_arg {
  pthread_barrier_t *go;
  int id;
  long iters;
  uint64_t acquired; /* holdings this thread got */
  uint64_t locked;   /* writes under the lock */
  const char *bad;
};

static uint64_t stress_clock; /* shared fake clock: ticks per lease call */

static void *stress_thread(void *p) {
  struct stress_arg *t = p;
  ul_shm *m = NULL;
  struct stress_shared *s;
  ul_arena *ar;
  uint64_t seed = 0x1234567ULL * (uint64_t)(t->id + 1), gen = 0, last_seen = 0;
  char buf[32];
  long it;
  pthread_barrier_wait(t->go);
  if (ul_shm_open("stress", 5, sizeof *s + SARENA, &m) < 0) {
    t->bad = "open";
    return NULL;
  }
  s = ul_shm_data(m);
  ar = (ul_arena *)(void *)s->arena;
  for (it = 0; it < t->iters && !t->bad; it++) {
    uint64_t r = rnd(&seed);
    if (r % 4 != 0) { /* the lock and the arena */
      int i = (int)((r >> 8) % 16);
      uint32_t *slot = &s->slot[t->id][i];
      if (ul_shm_lock(m, NULL, NULL) != UL_LOCK_OK) {
        t->bad = "lock";
        break;
      }
      if (s->a != s->b)
        t->bad = "b is not a";
      s->a++;
      if (*slot) {
        size_t len;
        const char *str = ul_arena_get(ar, *slot, &len);
        if (!str || len != 3 || str[0] != 'a' + t->id)
          t->bad = "a thread's string changed";
        ul_arena_free(ar, *slot);
        *slot = 0;
      } else {
        buf[0] = (char)('a' + t->id);
        buf[1] = (char)('a' + i);
        buf[2] = 'z';
        *slot = ul_arena_alloc(ar, buf, 3);
      }
      if (it % 64 == 0 && ul_arena_validate(ar))
        t->bad = ul_arena_validate(ar);
      s->b = s->a;
      ul_shm_unlock(m);
      t->locked++;
    } else { /* the lease, on a clock every call moves on */
      double now = (double)__atomic_add_fetch(&stress_clock, 1, __ATOMIC_RELAXED);
      ul_lease st;
      if (gen && ul_shm_lease_check(m, gen)) {
        if (r % 16 == 1)
          ul_shm_lease_release(m, gen);
        else if (ul_shm_lease_renew(m, gen, now, 20) != 1 && ul_shm_lease_check(m, gen))
          t->bad = "a holder could not renew";
      } else {
        uint64_t g;
        if (ul_shm_lease_acquire(m, now, 20, &g) == 1) {
          if (g <= gen)
            t->bad = "a generation did not grow";
          gen = g;
          t->acquired++;
        }
      }
      ul_shm_lease_read(m, &st);
      if (st.gen < last_seen)
        t->bad = "the lease's generation went back";
      last_seen = st.gen;
      if (st.pid != 0 && (st.pid != (int64_t)getpid() || !(st.since <= st.expiry)))
        t->bad = "a torn lease";
    }
  }
  return NULL;
}

static void test_stress_threads(void **state) {
  pthread_barrier_t go;
  pthread_t th[NTHREADS];
  struct stress_arg args[NTHREADS];
  const char *env = getenv("UL_SHM_STRESS");
  long iters = env ? atol(env) : 20000;
  uint64_t acquired = 0, locked = 0;
  ul_shm *m;
  ul_lease st;
  int i, j;
  (void)state;
  m = open_ok("stress", 5, sizeof(struct stress_shared) + SARENA, UL_SHM_MADE);
  assert_true(ul_arena_init((ul_arena *)(void *)((struct stress_shared *)ul_shm_data(m))->arena,
                            SARENA));
  assert_int_equal(pthread_barrier_init(&go, NULL, NTHREADS), 0);
  for (i = 0; i < NTHREADS; i++) {
    args[i].go = &go;
    args[i].id = i;
    args[i].iters = iters;
    args[i].acquired = 0;
    args[i].locked = 0;
    args[i].bad = NULL;
    assert_int_equal(pthread_create(&th[i], NULL, stress_thread, &args[i]), 0);
  }
  for (i = 0; i < NTHREADS; i++)
    pthread_join(th[i], NULL);
  pthread_barrier_destroy(&go);
  for (i = 0; i < NTHREADS; i++) {
    if (args[i].bad)
      fail_msg("thread %d: %s", i, args[i].bad);
    acquired += args[i].acquired;
    locked += args[i].locked;
  }
  {
    struct stress_shared *s = ul_shm_data(m);
    ul_arena *ar = (ul_arena *)(void *)s->arena;
    uint32_t live = 0;
    assert_null(ul_arena_validate(ar));
    for (i = 0; i < NTHREADS; i++)
      for (j = 0; j < 16; j++)
        live += s->slot[i][j] != 0;
    assert_int_equal(ar->nused, live);
    assert_true(s->a == locked && s->b == locked); /* no write lost */
  }
  /* every acquisition got its own generation */
  ul_shm_lease_read(m, &st);
  assert_true(acquired > 0);
  assert_int_equal(st.gen, acquired);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_same_name_threads),
      cmocka_unit_test(test_open_bad),
      cmocka_unit_test(test_fork_shares),
      cmocka_unit_test(test_lock_twice),
      cmocka_unit_test(test_lock_dead_holder),
      cmocka_unit_test(test_lock_deferred_rebuild),
      cmocka_unit_test(test_lock_killed_writers),
      cmocka_unit_test(test_lease_clock),
      cmocka_unit_test(test_lease_dead_holder),
      cmocka_unit_test(test_arena_basic),
      cmocka_unit_test(test_arena_fuzz),
      cmocka_unit_test(test_arena_recover),
      cmocka_unit_test(test_stress_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
