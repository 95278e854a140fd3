/*
 * test_degenerate.c - degenerate numbers reaching the core: slow start with
 * a step that underflows or vanishes, times that are NaN or infinite
 * (ul_append, ul_up, ul_pick, ul_collect, ul_report, ul_sleep), weights of
 * 0, the weighted certificates near 2^63, tiny and huge intervals and
 * timeouts, and the options that are rejected for them (issue 8, bug 2).
 *
 * What could hang or reach an undefined float-to-integer cast runs in a
 * forked child under alarm(): a hang (SIGALRM), a sanitizer's halt (the
 * tests are built with -fsanitize=float-cast-overflow and
 * -fno-sanitize-recover) or a failed check fails that test only, and the
 * others still report. The children check with CHILD_CHECK, not cmocka's
 * assertions, whose longjmp would land in the child's copy of the runner.
 */
#include "helpers.h"
#include "child.h"
#include "core/pick.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- running a check in a child ------------------------------------------ */

#define CHILD_SECS 10 /* each child's budget: a hash build takes milliseconds */

static const int all_strategies[] = {UL_ROUND_ROBIN, UL_WEIGHTED,
                                     UL_LEAST_CONN, UL_HASH, UL_RANDOM};
static const char *const strategy_names[] = {"round_robin", "weighted",
                                             "least_conn", "hash", "random"};
#define NSTRAT (sizeof all_strategies / sizeof all_strategies[0])

/* Runs fn(arg) in a child with an alarm; fails unless it returns 0. */
static void in_child(const char *what, int (*fn)(int), int arg) {
  pid_t pid;
  int st;
  fflush(stdout);
  fflush(stderr);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* cmocka's handlers would longjmp into the child's runner */
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    size_t i;
    for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], SIG_DFL);
    alarm(CHILD_SECS);
    _exit(fn(arg));
  }
  assert_int_equal(waitpid(pid, &st, 0), pid);
  if (WIFSIGNALED(st))
    fail_msg("%s (%d): killed by signal %d%s", what, arg, WTERMSIG(st),
             WTERMSIG(st) == SIGALRM ? ": hung" : "");
  if (WEXITSTATUS(st) != 0)
    fail_msg("%s (%d): exit %d (a failed check or a sanitizer's report, "
             "on stderr)", what, arg, WEXITSTATUS(st));
}

/* A list in the child (no tracking: the child ends with _exit). */
static ul_list *child_list(uint32_t cap, int strategy, double slow_start) {
  ul_opts o;
  ul_list *l;
  ul_opts_default(&o);
  o.strategy = strategy;
  o.slow_start = slow_start;
  l = malloc(ul_size(cap, strategy));
  if (l) ul_init(l, cap, &o, 11);
  return l;
}

/* A pick returned an eligible member. */
static int picked_ok(const ul_list *l, int32_t s) {
  return s >= 0 && (uint32_t)s < l->cap && (N(l, s)->flags & UL_F_MEMBER) &&
         ul_eligible(l, s);
}

/* Every member's ramp is a step, and its effective weight follows it. */
static int ramps_ok(const ul_list *l) {
  uint32_t p;
  for (p = 0; p < l->n; p++) {
    const ul_node *x = ulb_at(l, p);
    if (x->ramp < 1 || x->ramp > UL_RAMP_STEPS) return 0;
    if (x->ew != (int64_t)x->weight * x->ramp) return 0;
  }
  return !isnan(l->ramp_next);
}

/* Members 0..2 of weight 5 at time t0; member 1 down and up again at t. */
static ul_list *recovered(int strategy, double slow_start, double t0,
                          double t) {
  ul_list *l = child_list(8, strategy, slow_start);
  int i;
  if (!l) return NULL;
  for (i = 0; i < 3; i++) ul_append(l, 0, -1, t0, 5, (uint64_t)i * 7919, 0);
  ul_down(l, 1, t0);
  ul_down(l, 1, t0);
  ul_up(l, 1, t);
  return l;
}

/* ---- the sanitizer halts ---------------------------------------------------- */

static int cast_nan(int arg) {
  volatile double d = NAN;
  volatile unsigned char u = (unsigned char)d; /* undefined: must halt */
  (void)arg;
  (void)u;
  return 0;
}

/* The tests below rely on an undefined cast halting the program. */
static void test_sanitizer_halts(void **state) {
  pid_t pid;
  int st;
  (void)state;
  fflush(stdout);
  fflush(stderr);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    alarm(CHILD_SECS);
    _exit(cast_nan(0) == 0 ? 0 : 2);
  }
  assert_int_equal(waitpid(pid, &st, 0), pid);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
    fail_msg("(unsigned char)NaN went unreported: build the C tests with "
             "-fsanitize=float-cast-overflow -fno-sanitize-recover=all");
}

/* ---- slow start ------------------------------------------------------------- */

/* slow_start 1e-323: its step slow_start / 10 underflows to 0. While the
 * clock stands still the member stays at the first step (0 / 0 was NaN,
 * cast to uint8_t); once it moves, the ramp is over. */
static int ramp_step_zero(int strategy) {
  ul_list *l = recovered(strategy, 1e-323, 100, 100);
  int i;
  CHILD_CHECK(l);
  CHILD_CHECK(l->opts.slow_start / UL_RAMP_STEPS == 0);
  CHILD_CHECK(N(l, 1)->ramp == 1);
  CHILD_CHECK(ramps_ok(l));
  for (i = 0; i < 50; i++) CHILD_CHECK(picked_ok(l, ul_pick(l, 77, 100)));
  CHILD_CHECK(N(l, 1)->ramp == 1);
  CHILD_CHECK(ramps_ok(l));
  CHILD_CHECK(l->ramp_next > 100);
  for (i = 0; i < 50; i++) CHILD_CHECK(picked_ok(l, ul_pick(l, 77, 100.5)));
  CHILD_CHECK(N(l, 1)->ramp == UL_RAMP_STEPS);
  CHILD_CHECK(l->ramping == 0);
  CHILD_CHECK(ramps_ok(l));
  free(l);
  return 0;
}

static void test_ramp_step_zero(void **state) {
  size_t i;
  (void)state;
  for (i = 0; i < NSTRAT; i++)
    in_child(strategy_names[i], ramp_step_zero, all_strategies[i]);
}

/* slow_start 1e-320: a step of 1e-321 vanishes into a clock at 100 (100 +
 * 1e-321 == 100). The next step is still due after now, so that picks at
 * a clock standing still do not rescan the ramping members every time. */
static int ramp_step_tiny(int strategy) {
  ul_list *l = recovered(strategy, 1e-320, 100, 100);
  int i;
  CHILD_CHECK(l);
  CHILD_CHECK(N(l, 1)->ramp == 1);
  CHILD_CHECK(l->ramp_next > 100);
  for (i = 0; i < 20; i++) {
    CHILD_CHECK(picked_ok(l, ul_pick(l, 77, 100)));
    CHILD_CHECK(l->ramp_next > 100);
  }
  CHILD_CHECK(N(l, 1)->ramp == 1);
  CHILD_CHECK(ramps_ok(l));
  CHILD_CHECK(picked_ok(l, ul_pick(l, 77, nextafter(100, 200))));
  CHILD_CHECK(N(l, 1)->ramp == UL_RAMP_STEPS);
  CHILD_CHECK(ramps_ok(l));
  free(l);
  return 0;
}

static void test_ramp_step_tiny(void **state) {
  size_t i;
  (void)state;
  for (i = 0; i < NSTRAT; i++)
    in_child(strategy_names[i], ramp_step_tiny, all_strategies[i]);
}

/* A clock reading inf: a member turning healthy (ul_up) or appended at inf
 * gets its full weight at once (since = inf made inf - inf = NaN, cast to
 * uint8_t); a member ramping from a finite time has finished at inf. */
static int ramp_inf(int strategy) {
  ul_list *l = recovered(strategy, 10, 0, INFINITY);
  int i;
  CHILD_CHECK(l);
  CHILD_CHECK(N(l, 1)->ramp == UL_RAMP_STEPS);
  CHILD_CHECK(ramps_ok(l));
  CHILD_CHECK(ul_append(l, 0, -1, INFINITY, 5, 4242, 1) == 3);
  CHILD_CHECK(N(l, 3)->ramp == UL_RAMP_STEPS);
  ul_down(l, 2, 0);
  ul_down(l, 2, 0);
  ul_up(l, 2, 0); /* ramping from 0 */
  CHILD_CHECK(N(l, 2)->ramp == 1);
  CHILD_CHECK(ramps_ok(l));
  for (i = 0; i < 50; i++)
    CHILD_CHECK(picked_ok(l, ul_pick(l, (uint64_t)i << 40, INFINITY)));
  CHILD_CHECK(N(l, 2)->ramp == UL_RAMP_STEPS);
  CHILD_CHECK(l->ramping == 0);
  CHILD_CHECK(ramps_ok(l));
  for (i = 0; i < 50; i++)
    CHILD_CHECK(picked_ok(l, ul_pick(l, (uint64_t)i << 40, -INFINITY)));
  free(l);
  return 0;
}

static void test_ramp_inf(void **state) {
  size_t i;
  (void)state;
  for (i = 0; i < NSTRAT; i++)
    in_child(strategy_names[i], ramp_inf, all_strategies[i]);
}

/* A NaN time: the member gets its full weight (since = NaN would never
 * ramp), and ramp_next stays a number: before, a NaN ramp_next stopped
 * every later slow start at its first step. */
static int ramp_nan(int strategy) {
  ul_list *l = recovered(strategy, 10, 0, NAN);
  int i;
  CHILD_CHECK(l);
  CHILD_CHECK(N(l, 1)->ramp == UL_RAMP_STEPS);
  CHILD_CHECK(ramps_ok(l));
  CHILD_CHECK(ul_append(l, 0, -1, NAN, 5, 4242, 1) == 3);
  CHILD_CHECK(N(l, 3)->ramp == UL_RAMP_STEPS);
  CHILD_CHECK(ramps_ok(l));
  for (i = 0; i < 50; i++)
    CHILD_CHECK(picked_ok(l, ul_pick(l, (uint64_t)i << 40, NAN)));
  /* a later slow start still moves on */
  ul_down(l, 2, 100);
  ul_down(l, 2, 100);
  ul_up(l, 2, 100);
  CHILD_CHECK(N(l, 2)->ramp == 1);
  CHILD_CHECK(l->ramp_next == 101);
  CHILD_CHECK(picked_ok(l, ul_pick(l, 5, NAN)));
  CHILD_CHECK(N(l, 2)->ramp == 1); /* a NaN now moves nothing */
  CHILD_CHECK(picked_ok(l, ul_pick(l, 5, 101)));
  CHILD_CHECK(N(l, 2)->ramp == 2);
  CHILD_CHECK(picked_ok(l, ul_pick(l, 5, 200)));
  CHILD_CHECK(N(l, 2)->ramp == UL_RAMP_STEPS);
  CHILD_CHECK(ramps_ok(l));
  free(l);
  return 0;
}

static void test_ramp_nan(void **state) {
  size_t i;
  (void)state;
  for (i = 0; i < NSTRAT; i++)
    in_child(strategy_names[i], ramp_nan, all_strategies[i]);
}

/* ---- weights of 0 ------------------------------------------------------------ */

/* Every eligible weight 0 (out of ul_set_weight's contract, but not out of
 * reach of the C API): each strategy still picks a member, and the hash
 * table (whose build gave no member any credit: 0 / 0) fills. Then with
 * one member of weight > 0, the weighted strategies pick only it. */
static int zero_weights(int strategy) {
  ul_list *l = child_list(8, strategy, 0);
  uint32_t k;
  int i;
  CHILD_CHECK(l);
  for (i = 0; i < 3; i++)
    CHILD_CHECK(ul_append(l, 0, -1, 0, 0, (uint64_t)i * 7919, 0) == i);
  CHILD_CHECK(l->total_ew == 0 && l->nelig == 3);
  for (i = 0; i < 200; i++)
    CHILD_CHECK(picked_ok(l, ul_pick(l, (uint64_t)i * 0x9E3779B97F4A7C15ULL, 0)));
  if (strategy == UL_HASH)
    for (k = 0; k < l->maglev_m; k++) CHILD_CHECK(ulb_mag(l)[k] >= 0);
  ul_set_weight(l, 2, 3);
  for (i = 0; i < 200; i++) {
    int32_t s = ul_pick(l, (uint64_t)i * 0x9E3779B97F4A7C15ULL, 0);
    CHILD_CHECK(picked_ok(l, s));
    if (strategy == UL_WEIGHTED || strategy == UL_RANDOM ||
        strategy == UL_HASH)
      CHILD_CHECK(s == 2);
  }
  ul_set_weight(l, 2, 0); /* all 0 again: the table is rebuilt */
  for (i = 0; i < 200; i++)
    CHILD_CHECK(picked_ok(l, ul_pick(l, (uint64_t)i * 0x9E3779B97F4A7C15ULL, 0)));
  /* nothing eligible: -1, and no build */
  for (i = 0; i < 3; i++) {
    ul_down(l, i, 0);
    ul_down(l, i, 0);
  }
  CHILD_CHECK(ul_pick(l, 1, 0) == -1);
  free(l);
  return 0;
}

static void test_zero_weights(void **state) {
  size_t i;
  (void)state;
  for (i = 0; i < NSTRAT; i++)
    in_child(strategy_names[i], zero_weights, all_strategies[i]);
}

/* The hash pick after slow start met inf and NaN returns a member. */
static int hash_after_nonfinite(int arg) {
  ul_list *l = child_list(8, UL_HASH, arg ? 1e-323 : 10);
  int i;
  CHILD_CHECK(l);
  for (i = 0; i < 3; i++)
    CHILD_CHECK(ul_append(l, 0, -1, INFINITY, 5, (uint64_t)i * 7919, 1) == i);
  ul_down(l, 0, NAN);
  ul_down(l, 0, NAN);
  ul_up(l, 0, NAN);
  ul_down(l, 1, 3);
  ul_down(l, 1, 3);
  ul_up(l, 1, INFINITY);
  ul_down(l, 2, 3);
  ul_down(l, 2, 3);
  ul_up(l, 2, 3); /* ramping from 3 */
  CHILD_CHECK(ramps_ok(l));
  for (i = 0; i < 100; i++) {
    double now = i % 3 == 0 ? INFINITY : i % 3 == 1 ? NAN : 3;
    CHILD_CHECK(picked_ok(l, ul_pick(l, (uint64_t)i << 33, now)));
  }
  CHILD_CHECK(ramps_ok(l));
  free(l);
  return 0;
}

static void test_hash_after_nonfinite(void **state) {
  (void)state;
  in_child("slow_start 10", hash_after_nonfinite, 0);
  in_child("slow_start 1e-323", hash_after_nonfinite, 1);
}

/* ---- weighted: the certificates' casts --------------------------------------- */

/* Two lines whose crossing lies near 2^63 picks: the quotient, 2^63 as a
 * double, was cast to int64_t. Now it is divided in integers: exact, far
 * past any t before the rebase. */
static int kst_far(int arg) {
  ul_list *l = child_list(16, UL_WEIGHTED, 0);
  uint32_t k;
  CHILD_CHECK(l);
  CHILD_CHECK(l->kst_size == 16);
  CHILD_CHECK(ul_append(l, 0, -1, 0, 1, 0, 0) == 0);
  CHILD_CHECK(ul_append(l, 0, -1, 0, 1, 0, 0) == 1);
  l->t = 0;
  /* arg 0: the leader (position 0) is flat, the other climbs from far
   * below (floor); arg 1: the leader (position 1) is flat, the other
   * climbs from far below (ceil) */
  N(l, arg ? 1 : 0)->cur = INT64_MAX;
  N(l, arg ? 1 : 0)->ew = 0;
  N(l, arg ? 0 : 1)->cur = 0;
  N(l, arg ? 0 : 1)->ew = 1;
  ulp_kst_rebuild(l);
  k = (l->kst_size + 0) / 2; /* the parent of leaves 0 and 1 */
  CHILD_CHECK(ulb_kwin(l)[k] == arg);
  CHILD_CHECK(ulb_kmelt(l)[k] > (INT64_C(1) << 20));
  CHILD_CHECK(ulb_kwin(l)[1] == arg);
  free(l);
  return 0;
}

static void test_kst_far_certificate(void **state) {
  (void)state;
  in_child("floor", kst_far, 0);
  in_child("ceil", kst_far, 1);
}

/* ---- the scheduler at NaN and infinite times ----------------------------------- */

/* A NaN or infinite time never becomes a key: the heap stays ordered
 * (check_invariants) and the checks go on at finite times. */
static void test_sched_nonfinite(void **state) {
  static const double bad[] = {NAN, INFINITY, -INFINITY};
  const double dl = 60 + 0.1; /* the deadline of a check started at 60 */
  size_t b;
  (void)state;
  for (b = 0; b < 3; b++) {
    ul_list *l = new_list(8, NULL, 5);
    int32_t slot;
    uint64_t gen;
    int i;
    ul_collect(l, 50);
    for (i = 0; i < 3; i++)
      assert_int_equal(ul_append(l, 1, -1, bad[b], 1, 0, 0), i);
    for (i = 0; i < 3; i++) assert_dbl_eq(N(l, i)->next, 50);
    check_invariants(l);
    assert_int_equal(ul_collect(l, 60), 3);
    for (i = 0; i < 3; i++) {
      assert_int_equal(ul_take(l, &slot, &gen), UL_EV_START);
      assert_dbl_eq(N(l, slot)->started, 60);
      assert_dbl_eq(N(l, slot)->deadline, dl);
    }
    /* a non-finite collect is ignored */
    assert_int_equal(ul_collect(l, bad[b]), 0);
    assert_dbl_eq(l->now, 60);
    assert_dbl_eq(ul_next_time(l), dl);
    check_invariants(l);
    /* a report at a non-finite time: at the last collect's */
    assert_true(ul_report(l, 0, N(l, 0)->gen, 1, bad[b], -1));
    assert_dbl_eq(N(l, 0)->next, 61);
    /* a wake at NaN or inf is no wake: the deadline comes first; at -inf,
     * at once */
    assert_true(ul_sleep(l, 1, N(l, 1)->gen, bad[b]));
    assert_false(isnan(N(l, 1)->key));
    check_invariants(l);
    assert_int_equal(ul_collect(l, dl), 2);
    while (ul_take(l, &slot, &gen) != UL_EV_NONE) continue;
    check_invariants(l);
    assert_int_equal(N(l, 1)->failures + N(l, 2)->failures, 2);
    assert_dbl_eq(ul_next_time(l), 61);
    assert_int_equal(ul_collect(l, 61), 3);
    check_invariants(l);
    xfree(l);
  }
}

/* Tiny intervals and timeouts: the next start and the deadline are still
 * later than the start (t + 1e-320 == t), so a host loop whose clock only
 * moves when it sleeps is never told to sleep 0 for ever. Huge ones
 * overflow to inf, never due, and nothing becomes NaN. */
static void test_sched_tiny_huge(void **state) {
  const double big = 1.7976931348623157e308;
  ul_opts o;
  ul_list *l;
  int32_t slot;
  uint64_t gen;
  int i;
  (void)state;
  ul_opts_default(&o);
  o.interval = 1e-320;
  o.timeout = 1e-320;
  l = new_list(4, &o, 5);
  assert_int_equal(ul_append(l, 1, -1, 100, 1, 0, 0), 0);
  assert_int_equal(ul_collect(l, 100), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_START);
  assert_true(N(l, 0)->deadline > 100);
  assert_int_equal(ul_collect(l, 100), 0); /* not timed out at once */
  assert_true(ul_report(l, 0, gen, 1, 100, -1));
  assert_true(N(l, 0)->next > 100);
  assert_true(ul_next_time(l) > 100);
  assert_int_equal(ul_collect(l, 100), 0); /* not due again at once */
  check_invariants(l);
  xfree(l);

  ul_opts_default(&o);
  o.interval = 1.7e308;
  o.timeout = 1.7e308;
  l = new_list(4, &o, 5);
  assert_int_equal(ul_append(l, 1, -1, 1e308, 1, 0, 0), 0);
  assert_int_equal(ul_collect(l, 1e308), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_START);
  assert_dbl_eq(N(l, 0)->deadline, INFINITY); /* 1e308 + 1.7e308 */
  assert_true(ul_report(l, 0, gen, 0, big, -1));
  assert_dbl_eq(N(l, 0)->next, INFINITY);
  assert_dbl_eq(ul_next_time(l), INFINITY);
  assert_int_equal(ul_collect(l, big), 0);
  check_invariants(l);
  xfree(l);

  o.jitter = 1; /* waits up to 3.4e308: inf */
  l = new_list(4, &o, 5);
  for (i = 0; i < 4; i++) assert_int_equal(ul_append(l, 1, -1, 0, 1, 0, 0), i);
  ul_collect(l, big);
  while (ul_take(l, &slot, &gen) != UL_EV_NONE)
    assert_true(ul_report(l, slot, gen, 1, big, -1));
  for (i = 0; i < 4; i++) {
    assert_false(isnan(N(l, i)->next));
    assert_true(N(l, i)->next >= big);
  }
  assert_false(isnan(ul_next_time(l)));
  check_invariants(l);
  xfree(l);
}

/* ---- the options ------------------------------------------------------------ */

static void expect_rule(double slow_start, const char *want) {
  ul_opts o;
  const char *field = "unset", *msg;
  ul_opts_default(&o);
  o.slow_start = slow_start;
  msg = ul_opts_validate(&o, &field);
  if (!want) {
    if (msg) fail_msg("slow_start %g rejected: %s", slow_start, msg);
    return;
  }
  if (!msg) fail_msg("slow_start %g accepted", slow_start);
  assert_string_equal(field, "slow_start");
  assert_string_equal(msg, want);
}

static void test_opts_slow_start(void **state) {
  static const char *const low = "must be 0 (off) or a finite number >= 0.001";
  static const char *const bad = "must be a finite number >= 0";
  (void)state;
  expect_rule(0, NULL);
  expect_rule(-0.0, NULL);
  expect_rule(0.001, NULL);
  expect_rule(10, NULL);
  expect_rule(1e300, NULL);
  expect_rule(1e-323, low);
  expect_rule(1e-320, low);
  expect_rule(1e-9, low);
  expect_rule(0.000999, low);
  expect_rule(-1, bad);
  expect_rule(-1e-320, bad);
  expect_rule(NAN, bad);
  expect_rule(INFINITY, bad);
  expect_rule(-INFINITY, bad);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_sanitizer_halts, teardown),
      cmocka_unit_test_teardown(test_ramp_step_zero, teardown),
      cmocka_unit_test_teardown(test_ramp_step_tiny, teardown),
      cmocka_unit_test_teardown(test_ramp_inf, teardown),
      cmocka_unit_test_teardown(test_ramp_nan, teardown),
      cmocka_unit_test_teardown(test_zero_weights, teardown),
      cmocka_unit_test_teardown(test_hash_after_nonfinite, teardown),
      cmocka_unit_test_teardown(test_kst_far_certificate, teardown),
      cmocka_unit_test_teardown(test_sched_nonfinite, teardown),
      cmocka_unit_test_teardown(test_sched_tiny_huge, teardown),
      cmocka_unit_test_teardown(test_opts_slow_start, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
