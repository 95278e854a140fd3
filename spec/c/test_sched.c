/*
 * test_sched.c - the check scheduler (src/core/sched.c over heap.c): a
 * check's life (start, wake, timeout, stale reports), removal and shutdown
 * while checks run, results reaching duplicates, jitter, heap order,
 * coalesced wake-ups, and a fuzz with remove, append and grow.
 */
#include "helpers.h"

/* ---- a check's life ------------------------------------------------------ */

static void test_sched_basic(void **state) {
  ul_list *l = new_list(8, NULL, 1);
  int32_t slot;
  uint64_t gen, g[3];
  int i;
  (void)state;
  assert_dbl_eq(ul_next_time(l), INFINITY);
  for (i = 0; i < 3; i++) assert_int_equal(ul_append(l, 1, -1, 0, 1, 0, 0), i);
  assert_int_equal(l->unchecked, 3);
  assert_dbl_eq(ul_next_time(l), 0);
  check_invariants(l);

  assert_int_equal(ul_collect(l, 0), 3);
  for (i = 0; i < 3; i++) {
    assert_int_equal(ul_take(l, &slot, &g[i]), UL_EV_START);
    assert_int_equal(slot, i);
    assert_int_equal(N(l, i)->state, UL_RUNNING);
    assert_dbl_eq(N(l, i)->started, 0);
    assert_dbl_eq(N(l, i)->deadline, 0.1);
    assert_true(ul_current(l, i, g[i]));
    if (i > 0) assert_true(g[i] > g[i - 1]);
  }
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  assert_dbl_eq(ul_next_time(l), 0.1);
  check_invariants(l);

  /* slot 0 succeeds */
  assert_int_equal(ul_report(l, 0, g[0], 1, 0.05, -1), 1);
  assert_dbl_eq(N(l, 0)->score, 2);
  assert_int_equal(N(l, 0)->checks, 1);
  assert_int_equal(N(l, 0)->failures, 0);
  assert_int_equal(N(l, 0)->state, UL_IDLE);
  assert_dbl_eq(N(l, 0)->next, 1.0);
  assert_int_equal(l->unchecked, 2);
  assert_int_equal(ul_report(l, 0, g[0], 1, 0.06, -1), 0); /* twice: stale */
  assert_dbl_eq(N(l, 0)->score, 2);

  /* slot 1 fails */
  assert_int_equal(ul_report(l, 1, g[1], 0, 0.07, -1), 1);
  assert_dbl_eq(N(l, 1)->score, 0);
  assert_int_equal(N(l, 1)->checks, 1);
  assert_int_equal(N(l, 1)->failures, 1);
  assert_dbl_eq(N(l, 1)->next, 1.0);
  assert_int_equal(l->unchecked, 1);

  /* slot 2 never reports: timed out at its deadline */
  assert_dbl_eq(ul_next_time(l), 0.1);
  assert_int_equal(ul_collect(l, 0.09), 0);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  assert_int_equal(ul_collect(l, 0.1), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_TIMEOUT);
  assert_int_equal(slot, 2);
  assert_int_equal(gen, g[2]);
  assert_int_equal(N(l, 2)->failures, 1);
  assert_int_equal(N(l, 2)->checks, 1);
  assert_dbl_eq(N(l, 2)->score, 0);
  assert_int_equal(N(l, 2)->state, UL_IDLE);
  assert_dbl_eq(N(l, 2)->next, 1.0);
  assert_int_equal(l->unchecked, 0);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  assert_int_equal(ul_report(l, 2, g[2], 1, 0.11, -1), 0); /* late */
  assert_dbl_eq(N(l, 2)->score, 0);
  assert_int_equal(N(l, 2)->checks, 1);
  check_invariants(l);

  /* next round at 1.0; slot 0 goes 2 -> 3 -> 3 over two rounds */
  assert_dbl_eq(ul_next_time(l), 1.0);
  {
    int round;
    uint64_t last = g[2];
    for (round = 1; round <= 2; round++) {
      double t = (double)round;
      assert_dbl_eq(ul_next_time(l), t);
      assert_int_equal(ul_collect(l, t), 3);
      for (i = 0; i < 3; i++) {
        assert_int_equal(ul_take(l, &slot, &g[i]), UL_EV_START);
        assert_int_equal(slot, i);
        assert_true(g[i] > last);
        last = g[i];
      }
      for (i = 0; i < 3; i++)
        assert_int_equal(ul_report(l, i, g[i], 1, t + 0.01, -1), 1);
      assert_dbl_eq(N(l, 0)->next, t + 1);
      check_invariants(l);
    }
  }
  assert_dbl_eq(N(l, 0)->score, 3);
  assert_dbl_eq(N(l, 1)->score, 2);
  assert_dbl_eq(N(l, 2)->score, 2);
  assert_int_equal(N(l, 0)->checks, 3);
  assert_int_equal(N(l, 0)->failures, 0);

  /* a report after the next start time: the next check starts at once */
  assert_int_equal(ul_collect(l, 3.0), 3);
  for (i = 0; i < 3; i++)
    assert_int_equal(ul_take(l, &slot, &g[i]), UL_EV_START);
  /* report slot 0 late (past its deadline but before the timeout is
   * collected): still current, so accepted; next = max(3 + 1, 4.5) */
  assert_int_equal(ul_report(l, 0, g[0], 0, 4.5, -1), 1);
  assert_dbl_eq(N(l, 0)->next, 4.5);
  xfree(l);
}

static void test_sched_sleep(void **state) {
  ul_list *l = new_list(4, NULL, 1);
  int32_t slot;
  uint64_t gen, a, b;
  (void)state;
  ul_append(l, 1, -1, 0, 1, 0, 0);
  ul_append(l, 1, -1, 0, 1, 0, 0);
  assert_int_equal(ul_collect(l, 0), 2);
  assert_int_equal(ul_take(l, &slot, &a), UL_EV_START);
  assert_int_equal(slot, 0);
  assert_int_equal(ul_take(l, &slot, &b), UL_EV_START);
  assert_int_equal(slot, 1);

  /* stale generations are refused */
  assert_int_equal(ul_sleep(l, 0, a + 100, 0.02), 0);
  assert_int_equal(ul_sleep(l, 0, b, 0.02), 0);
  assert_int_equal(ul_report(l, 1, a, 1, 0.02, -1), 0);
  assert_int_equal(ul_report(l, 0, 0, 1, 0.02, -1), 0);
  assert_int_equal(ul_sleep(l, -1, a, 0.02), 0);
  assert_int_equal(ul_sleep(l, 4, a, 0.02), 0);
  assert_int_equal(ul_report(l, 2, a, 1, 0.02, -1), 0); /* free slot */
  assert_int_equal(ul_report(l, 1000, a, 1, 0.02, -1), 0);
  assert_int_equal(N(l, 0)->state, UL_RUNNING);

  assert_int_equal(ul_sleep(l, 0, a, 0.04), 1);
  assert_int_equal(ul_sleep(l, 1, b, 0.5), 1); /* past its deadline */
  assert_dbl_eq(ul_next_time(l), 0.04);
  check_invariants(l);
  assert_int_equal(ul_collect(l, 0.039), 0);
  assert_int_equal(ul_collect(l, 0.04), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_WAKE);
  assert_int_equal(slot, 0);
  assert_int_equal(gen, a);
  assert_true(ul_current(l, 0, a));
  assert_int_equal(N(l, 0)->state, UL_RUNNING);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  assert_dbl_eq(ul_next_time(l), 0.1);

  /* sleep again, then report before waking: the wake is cancelled */
  assert_int_equal(ul_sleep(l, 0, a, 0.06), 1);
  assert_dbl_eq(ul_next_time(l), 0.06);
  assert_int_equal(ul_report(l, 0, a, 1, 0.05, -1), 1);
  assert_dbl_eq(N(l, 0)->score, 2);
  assert_dbl_eq(ul_next_time(l), 0.1); /* slot 1's deadline */
  assert_int_equal(ul_sleep(l, 0, a, 0.07), 0); /* finished: stale */

  /* slot 1 slept past its deadline: times out at the deadline */
  assert_int_equal(ul_collect(l, 0.1), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_TIMEOUT);
  assert_int_equal(slot, 1);
  assert_int_equal(gen, b);
  assert_int_equal(N(l, 1)->failures, 1);
  assert_dbl_eq(N(l, 1)->score, 0);
  assert_int_equal(ul_report(l, 1, b, 1, 0.2, -1), 0);
  assert_int_equal(ul_sleep(l, 1, b, 0.2), 0);
  assert_dbl_eq(ul_next_time(l), 1.0);
  assert_int_equal(ul_collect(l, 0.5), 0); /* nothing left at 0.5 */
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  check_invariants(l);
  xfree(l);
}

static void test_sched_ready_resched(void **state) {
  ul_list *l = new_list(2, NULL, 1);
  int32_t slot;
  uint64_t g, gen;
  (void)state;
  ul_append(l, 1, -1, 0, 1, 0, 0);
  ul_collect(l, 0);
  assert_int_equal(ul_take(l, &slot, &g), UL_EV_START);

  /* a wake moved later while in the ready queue */
  assert_int_equal(ul_sleep(l, 0, g, 0.03), 1);
  assert_int_equal(ul_collect(l, 0.03), 1);
  assert_int_equal(ul_sleep(l, 0, g, 0.07), 1);
  check_invariants(l);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  check_invariants(l);
  assert_dbl_eq(ul_next_time(l), 0.07);
  assert_int_equal(ul_collect(l, 0.05), 0);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  assert_int_equal(ul_collect(l, 0.07), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_WAKE);
  assert_int_equal(slot, 0);
  assert_int_equal(gen, g);

  /* a report while its wake sits in the ready queue */
  assert_int_equal(ul_sleep(l, 0, g, 0.08), 1);
  assert_int_equal(ul_collect(l, 0.08), 1);
  assert_int_equal(ul_report(l, 0, g, 1, 0.08, -1), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  assert_dbl_eq(ul_next_time(l), 1.0);
  check_invariants(l);
  assert_int_equal(ul_collect(l, 0.99), 0);
  assert_int_equal(ul_collect(l, 1.0), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_START);
  assert_true(gen > g);

  /* a wake moved earlier while in the ready queue is still returned */
  assert_int_equal(ul_sleep(l, 0, gen, 1.05), 1);
  assert_int_equal(ul_collect(l, 1.05), 1);
  assert_int_equal(ul_sleep(l, 0, gen, 1.04), 1);
  assert_int_equal(ul_take(l, &slot, &g), UL_EV_WAKE);
  assert_int_equal(g, gen);
  check_invariants(l);
  xfree(l);
}

static void test_sched_remove_running(void **state) {
  ul_list *l = new_list(4, NULL, 1);
  unsigned char drop[4] = {0};
  int32_t slot, s;
  uint64_t g[3], gen;
  int i;
  (void)state;
  for (i = 0; i < 3; i++) ul_append(l, 1, -1, 0, 1, 0, 0);
  ul_collect(l, 0);
  for (i = 0; i < 3; i++)
    assert_int_equal(ul_take(l, &slot, &g[i]), UL_EV_START);
  drop[1] = 1;
  ul_remove(l, drop);
  assert_int_equal(l->unchecked, 2);
  assert_false(ul_current(l, 1, g[1]));
  assert_int_equal(ul_report(l, 1, g[1], 1, 0.05, -1), 0);
  assert_int_equal(ul_sleep(l, 1, g[1], 0.05), 0);
  check_invariants(l);
  assert_int_equal(ul_collect(l, 0.1), 2);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_TIMEOUT);
  assert_int_equal(slot, 0);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_TIMEOUT);
  assert_int_equal(slot, 2);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  assert_int_equal(l->unchecked, 0);

  /* reuse slot 1 for a new checked member: old gen still refused */
  s = ul_append(l, 1, -1, 0.5, 1, 0, 0);
  assert_int_equal(s, 1);
  assert_int_equal(l->unchecked, 1);
  assert_int_equal(ul_report(l, 1, g[1], 1, 0.5, -1), 0);
  assert_dbl_eq(ul_next_time(l), 0.5);
  assert_int_equal(ul_collect(l, 0.5), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_START);
  assert_int_equal(slot, 1);
  assert_true(gen > g[2]);
  assert_int_equal(ul_report(l, 1, g[1], 1, 0.55, -1), 0);
  assert_int_equal(ul_report(l, 1, gen, 1, 0.55, -1), 1);
  assert_dbl_eq(N(l, 1)->score, 2);

  /* removing a slot while it waits in the ready queue */
  assert_int_equal(ul_collect(l, 1.0), 2); /* slots 0 and 2 */
  memset(drop, 0, sizeof drop);
  drop[0] = 1;
  ul_remove(l, drop);
  check_invariants(l);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_START);
  assert_int_equal(slot, 2);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  check_invariants(l);
  xfree(l);
}

static void test_sched_shutdown(void **state) {
  ul_list *l = new_list(4, NULL, 1);
  int32_t slot;
  uint64_t g0, g1, gen;
  (void)state;
  ul_append(l, 1, -1, 0, 1, 0, 0);
  ul_append(l, 1, -1, 0, 1, 0, 0);
  ul_append(l, 1, -1, 5, 1, 0, 0); /* not yet due */
  ul_collect(l, 0);
  assert_int_equal(ul_take(l, &slot, &g0), UL_EV_START);
  ul_sleep(l, 0, g0, 0.05);
  assert_int_equal(ul_take(l, &slot, &g1), UL_EV_START);
  ul_shutdown(l);
  check_invariants(l);
  assert_dbl_eq(ul_next_time(l), INFINITY);
  assert_int_equal(ul_collect(l, 0.05), 0);
  assert_int_equal(ul_collect(l, 100), 0);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_NONE);
  assert_int_equal(ul_report(l, 0, g0, 1, 0.06, -1), 0);
  assert_int_equal(ul_report(l, 1, g1, 0, 0.06, -1), 0);
  assert_int_equal(ul_sleep(l, 1, g1, 0.07), 0);
  assert_false(ul_current(l, 0, g0));
  assert_int_equal(l->unchecked, 0);
  assert_dbl_eq(N(l, 0)->score, 1);

  /* scores and pick still work */
  assert_int_equal(ul_pick(l, 0, 0), 0);
  ul_down(l, 1, 0);
  ul_down(l, 1, 0);
  assert_dbl_eq(N(l, 1)->score, -1);
  assert_int_equal(ul_pick(l, 0, 0), 2);
  assert_int_equal(ul_pick(l, 0, 0), 0);
  ul_up(l, 1, 0);
  assert_int_equal(ul_pick(l, 0, 0), 1);

  /* appending a checked member schedules nothing; shutdown is idempotent */
  assert_int_equal(ul_append(l, 1, -1, 100, 1, 0, 0), 3);
  assert_dbl_eq(ul_next_time(l), INFINITY);
  assert_int_equal(l->unchecked, 0);
  ul_shutdown(l);
  assert_int_equal(ul_collect(l, 200), 0);
  check_invariants(l);
  {
    unsigned char drop[4] = {1, 0, 0, 1};
    ul_remove(l, drop);
    assert_int_equal(l->unchecked, 0);
    check_invariants(l);
  }
  xfree(l);
}

/* ---- results reach duplicates -------------------------------------------- */

/* A check result is Up or Down (ul_report: "ok != 0 is Up, else Down"),
 * and Up/Down apply to the slot and every slot chained to it as equal. So
 * the result of the check of a backend must reach its duplicates too,
 * otherwise a duplicate position keeps serving a backend known to fail. */
/* ul_peek names the event ul_take returns next without taking it;
 * ul_cancel puts a started check back, due now, not counted. */
static void test_sched_peek_cancel(void **state) {
  ul_list *l = new_list(8, NULL, 1);
  int32_t slot, ps;
  uint64_t gen, g0;
  int i;
  (void)state;
  for (i = 0; i < 2; i++) assert_int_equal(ul_append(l, 1, -1, 0, 1, 0, 0), i);
  assert_int_equal(ul_peek(l, &ps), UL_EV_NONE);
  assert_int_equal(ul_collect(l, 0), 2);
  assert_int_equal(ul_peek(l, &ps), UL_EV_START);
  assert_int_equal(ps, 0);
  assert_int_equal(ul_peek(l, &ps), UL_EV_START); /* took nothing */
  assert_int_equal(N(l, 0)->state, UL_IDLE);
  assert_int_equal(ul_take(l, &slot, &g0), UL_EV_START);
  assert_int_equal(slot, 0);
  assert_int_equal(ul_peek(l, &ps), UL_EV_START);
  assert_int_equal(ps, 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_START);
  assert_int_equal(ul_peek(l, &ps), UL_EV_NONE);
  check_invariants(l);

  /* slot 0 put back: idle, due now, not counted; its gen is stale */
  assert_int_equal(ul_cancel(l, 0, g0), 1);
  assert_int_equal(ul_cancel(l, 0, g0), 0);
  assert_int_equal(N(l, 0)->state, UL_IDLE);
  assert_int_equal(N(l, 0)->checks, 0);
  assert_int_equal(N(l, 0)->failures, 0);
  assert_dbl_eq(N(l, 0)->score, 1);
  assert_int_equal(l->unchecked, 2);
  assert_int_equal(ul_report(l, 0, g0, 1, 0.01, -1), 0);
  assert_dbl_eq(ul_next_time(l), 0);
  check_invariants(l);
  assert_int_equal(ul_collect(l, 0.01), 1);
  assert_int_equal(ul_peek(l, &ps), UL_EV_START);
  assert_int_equal(ps, 0);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_START);
  assert_int_equal(slot, 0);
  assert_true(gen != g0);

  /* a timeout peeked is not counted until taken */
  assert_int_equal(ul_collect(l, 0.2), 2);
  assert_int_equal(ul_peek(l, &ps), UL_EV_TIMEOUT);
  assert_int_equal(N(l, ps)->checks, 0);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_TIMEOUT);
  assert_int_equal(slot, ps);
  assert_int_equal(N(l, ps)->checks, 1);
  check_invariants(l);
}

static void test_sched_report_dup(void **state) {
  ul_list *l = new_list(4, NULL, 1);
  int32_t a, b, slot;
  uint64_t g;
  (void)state;
  a = ul_append(l, 1, -1, 0, 1, 0, 0);
  b = ul_append(l, 0, a, 0, 1, 0, 0); /* same backend, checked through a */
  assert_int_equal(N(l, a)->dup, b);
  assert_int_equal(ul_collect(l, 0), 1);
  assert_int_equal(ul_take(l, &slot, &g), UL_EV_START);
  assert_int_equal(slot, a);
  assert_int_equal(ul_report(l, a, g, 0, 0.05, -1), 1);
  assert_dbl_eq(N(l, a)->score, 0);
  assert_dbl_eq(N(l, b)->score, 0); /* Down reaches the duplicate */
  ul_collect(l, 1.0);
  assert_int_equal(ul_take(l, &slot, &g), UL_EV_START);
  assert_int_equal(ul_report(l, a, g, 0, 1.05, -1), 1);
  assert_dbl_eq(N(l, a)->score, -1);
  assert_dbl_eq(N(l, b)->score, -1);
  assert_int_equal(l->healthy, 0);
  assert_int_equal(ul_pick(l, 0, 0), -1);
  xfree(l);
}

static void test_sched_timeout_dup(void **state) {
  ul_list *l = new_list(4, NULL, 1);
  int32_t a, b, slot;
  uint64_t g;
  (void)state;
  a = ul_append(l, 1, -1, 0, 1, 0, 0);
  b = ul_append(l, 0, a, 0, 1, 0, 0);
  ul_collect(l, 0);
  assert_int_equal(ul_take(l, &slot, &g), UL_EV_START);
  ul_collect(l, 0.1);
  assert_int_equal(ul_take(l, &slot, &g), UL_EV_TIMEOUT);
  assert_int_equal(slot, a);
  assert_dbl_eq(N(l, a)->score, 0);
  assert_dbl_eq(N(l, b)->score, 0); /* a timeout is a Down of the chain */
  xfree(l);
}

/* ---- jitter -------------------------------------------------------------- */

static void test_jitter(void **state) {
  enum { M = 1000 };
  ul_opts o;
  ul_list *l;
  int32_t slot;
  uint64_t gen;
  double first0, wmin = 1e9, wmax = -1e9;
  int i, all_equal = 1, events = 0;
  (void)state;
  ul_opts_default(&o);
  o.jitter = 0.5;
  l = new_list(M, &o, 42);
  for (i = 0; i < M; i++) assert_int_equal(ul_append(l, 1, -1, 10, 1, 0, 0), i);
  first0 = N(l, 0)->next;
  for (i = 0; i < M; i++) {
    double t = N(l, i)->next;
    if (!(t >= 10 && t < 11))
      fail_msg("first due time of slot %d: %.17g not in [10, 11)", i, t);
    if (t != first0) all_equal = 0;
  }
  assert_false(all_equal);
  check_invariants(l);

  /* every check succeeds at once; waits lie in [0.5, 1.5] */
  while (events < 5 * M) {
    double t = ul_next_time(l);
    int kind;
    assert_true(isfinite(t));
    ul_collect(l, t);
    while ((kind = ul_take(l, &slot, &gen)) != UL_EV_NONE) {
      double w;
      assert_int_equal(kind, UL_EV_START);
      assert_int_equal(ul_report(l, slot, gen, 1, t, -1), 1);
      w = N(l, slot)->next - N(l, slot)->started;
      if (!(w >= 0.5 - 1e-9 && w <= 1.5 + 1e-9))
        fail_msg("wait %.17g not in [0.5, 1.5]", w);
      if (w < wmin) wmin = w;
      if (w > wmax) wmax = w;
      events++;
    }
  }
  /* the waits are spread out, not constant */
  assert_true(wmin < 0.6);
  assert_true(wmax > 1.4);
  check_invariants(l);
  xfree(l);
}

/* ---- heap order ---------------------------------------------------------- */

static void test_heap_order(void **state) {
  enum { M = 500 };
  ul_opts o;
  ul_list *l;
  prng r;
  int32_t slot;
  uint64_t gen;
  double last_t = -1, *due;
  int events = 0, starts = 0, steps = 0, kind;
  (void)state;
  r.s = 99;
  ul_opts_default(&o);
  o.interval = 0.05; /* shorter than timeout: report times decide starts */
  o.timeout = 0.1;
  o.jitter = 0.3;
  l = new_list(M, &o, 77);
  due = xmalloc(M * sizeof *due);
  assert_non_null(due);
  for (int i = 0; i < M; i++) {
    assert_int_equal(ul_append(l, 1, -1, prng_unit(&r), 1, 0, 0), i);
    due[i] = N(l, i)->next;
  }
  while (starts < 20000 && steps < 200000) {
    double t = ul_next_time(l);
    assert_true(isfinite(t));
    assert_true(t >= last_t);
    last_t = t;
    ul_collect(l, t);
    while ((kind = ul_take(l, &slot, &gen)) != UL_EV_NONE) {
      events++;
      assert_true(slot >= 0 && slot < M);
      if (kind == UL_EV_START) {
        double d = prng_unit(&r) * 0.12;
        starts++;
        /* starts exactly when it was due, in time order */
        assert_dbl_eq(N(l, slot)->started, t);
        assert_dbl_eq(due[slot], t);
        /* report by waking up at a random time (some past the deadline) */
        assert_int_equal(ul_sleep(l, slot, gen, t + d), 1);
      } else if (kind == UL_EV_WAKE) {
        assert_true(t < N(l, slot)->deadline);
        assert_int_equal(ul_report(l, slot, gen, (int)prng_below(&r, 2), t, -1),
                         1);
        due[slot] = N(l, slot)->next;
        assert_true(due[slot] >= t);
      } else {
        assert_int_equal(kind, UL_EV_TIMEOUT);
        assert_dbl_eq(N(l, slot)->deadline, t);
        due[slot] = N(l, slot)->next;
        assert_true(due[slot] >= t);
      }
    }
    if (++steps % 997 == 0) check_invariants(l);
  }
  assert_true(starts >= 20000);
  check_invariants(l);
  xfree(due);
  xfree(l);
}

/* ---- fuzz with remove, append and grow ----------------------------------- */

static void test_sched_fuzz(void **state) {
  enum { CAP0 = 16 };
  ul_list *l;
  ul_opts o;
  prng r;
  uint64_t *gen_of;
  unsigned char *running;
  uint32_t cap = CAP0;
  int step;
  (void)state;
  r.s = 5;
  ul_opts_default(&o);
  o.jitter = 0.2;
  o.interval = 0.3;
  o.timeout = 0.2;
  l = new_list(cap, &o, 9);
  gen_of = xcalloc(1024, sizeof *gen_of);
  running = xcalloc(1024, 1);
  assert_true(gen_of && running);
  for (step = 0; step < 4000; step++) {
    uint32_t k = prng_below(&r, 12);
    double t = ul_next_time(l);
    int32_t slot;
    uint64_t gen;
    int kind;
    if (k == 0 && cap < 1024) { /* grow */
      ul_list *b = track(malloc(ul_grow_size(l, cap * 2)));
      assert_non_null(b);
      ul_grow(b, cap * 2, l);
      xfree(l);
      l = b;
      cap *= 2;
    } else if (k <= 3) {
      if (ul_append(l, (int)prng_below(&r, 2), -1, l->now, 1, 0, 0) < 0) continue;
    } else if (k == 4 && l->n > 0) {
      unsigned char *drop = xcalloc(cap, 1);
      uint32_t i;
      assert_non_null(drop);
      for (i = 0; i < l->n; i++)
        if (prng_below(&r, 4) == 0) drop[ul_order(l)[i]] = 1;
      ul_remove(l, drop);
      for (i = 0; i < cap; i++)
        if (drop[i] && running[i]) {
          assert_int_equal(ul_report(l, (int32_t)i, gen_of[i], 1, l->now, -1), 0);
          running[i] = 0;
        }
      xfree(drop);
    } else if (k <= 7) {
      /* report or sleep some running check */
      uint32_t i, start = prng_below(&r, cap);
      for (i = 0; i < cap; i++) {
        uint32_t s = (start + i) % cap;
        if (!running[s]) continue;
        assert_true(ul_current(l, (int32_t)s, gen_of[s]));
        if (prng_below(&r, 2)) {
          assert_int_equal(ul_report(l, (int32_t)s, gen_of[s],
                                     (int)prng_below(&r, 2), l->now, -1), 1);
          running[s] = 0;
        } else {
          assert_int_equal(ul_sleep(l, (int32_t)s, gen_of[s],
                                    l->now + prng_unit(&r) * 0.3), 1);
        }
        break;
      }
    } else if (isfinite(t)) {
      assert_true(t >= l->now);
      ul_collect(l, t);
      while ((kind = ul_take(l, &slot, &gen)) != UL_EV_NONE) {
        assert_true(slot >= 0 && (uint32_t)slot < cap);
        assert_true(N(l, slot)->flags & UL_F_CHECKED);
        if (kind == UL_EV_START) {
          assert_false(running[slot]);
          running[slot] = 1;
          gen_of[slot] = gen;
        } else if (kind == UL_EV_WAKE) {
          assert_true(running[slot]);
          assert_int_equal(gen, gen_of[slot]);
        } else {
          assert_int_equal(kind, UL_EV_TIMEOUT);
          assert_true(running[slot]);
          assert_int_equal(gen, gen_of[slot]);
          running[slot] = 0;
          assert_false(ul_current(l, slot, gen));
        }
      }
    }
    check_invariants(l);
  }
  xfree(running);
  xfree(gen_of);
  xfree(l);
}

/* ---- coalesced wake-ups -------------------------------------------------- */

/* ul_next_wake: the latest event within the slack of the first, never past
 * an event of a running check; ul_next_time is the first. */
static void test_next_wake_rules(void **state) {
  ul_opts o;
  ul_list *l;
  int32_t slot;
  uint64_t gen;
  int kind;
  (void)state;
  ul_opts_default(&o);
  o.interval = 1;
  o.timeout = 0.5;
  l = new_list(8, &o, 1);
  assert_dbl_eq(ul_slack(l), 0.01); /* min(10 ms, interval / 100) */
  assert_dbl_eq(ul_next_wake(l), INFINITY);
  /* one start alone: on time */
  assert_int_equal(ul_append(l, 1, -1, 1.0, 1, 0, 0), 0);
  assert_dbl_eq(ul_next_wake(l), 1.0);
  /* starts within the slack share the wake-up of the last of them */
  assert_int_equal(ul_append(l, 1, -1, 1.004, 1, 0, 0), 1);
  assert_int_equal(ul_append(l, 1, -1, 1.008, 1, 0, 0), 2);
  assert_int_equal(ul_append(l, 1, -1, 1.011, 1, 0, 0), 3); /* past it */
  assert_dbl_eq(ul_next_time(l), 1.0);
  assert_dbl_eq(ul_next_wake(l), 1.008);
  assert_int_equal(ul_collect(l, ul_next_wake(l)), 3);
  assert_dbl_eq(ul_next_wake(l), l->now); /* events are ready */
  while (ul_take(l, &slot, &gen) == UL_EV_START)
    if (slot == 1) assert_int_equal(ul_sleep(l, slot, gen, 1.0105), 1);
  /* slot 3's start waits for nothing: slot 1's wake-up comes first and is
   * served on time, then slot 3 on its own */
  assert_dbl_eq(ul_next_time(l), 1.0105);
  assert_dbl_eq(ul_next_wake(l), 1.0105);
  assert_int_equal(ul_collect(l, 1.0105), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_WAKE);
  assert_int_equal(slot, 1);
  assert_dbl_eq(ul_next_wake(l), 1.011);
  /* a deadline within the slack of a start bounds the wait too */
  assert_int_equal(ul_collect(l, 1.011), 1);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_START);
  assert_int_equal(ul_append(l, 1, -1, 1.505, 1, 0, 0), 4);
  assert_int_equal(ul_append(l, 1, -1, 1.509, 1, 0, 0), 5);
  /* slots 0, 1 and 2 (started at 1.008) time out at 1.508, slot 3 at
   * 1.511: slot 4's start waits for the first deadlines, not for slot 5 */
  assert_dbl_eq(ul_next_wake(l), 1.508);
  assert_int_equal(ul_collect(l, 1.508), 4);
  while ((kind = ul_take(l, &slot, &gen)) != UL_EV_NONE)
    assert_int_equal(kind, slot == 4 ? UL_EV_START : UL_EV_TIMEOUT);
  /* and slot 5's, for slot 3's deadline */
  assert_dbl_eq(ul_next_wake(l), 1.511);
  check_invariants(l);
  /* a short interval: a short slack */
  o.interval = 0.1;
  l = new_list(4, &o, 1);
  assert_dbl_eq(ul_slack(l), 0.001);
  /* with jitter: a tenth of the window (2 x jitter x interval) a start is
   * spread over, at most 100 ms, never less than without jitter */
  o.interval = 1;
  o.jitter = 0.5;
  assert_dbl_eq(ul_slack(new_list(4, &o, 1)), 0.1);
  o.jitter = 0.2;
  o.interval = 0.2;
  assert_dbl_near(ul_slack(new_list(4, &o, 1)), 0.008, 1e-15);
  o.interval = 10;
  assert_dbl_eq(ul_slack(new_list(4, &o, 1)), 0.1);
  o.jitter = 0.01;
  o.interval = 1;
  assert_dbl_eq(ul_slack(new_list(4, &o, 1)), 0.01);
}

/* Drives n checks with jitter on one clock, waking at ul_next_wake (wake
 * != 0) or ul_next_time, until time end; checks start no later than the
 * slack after they were due, and the events of running checks (wake-ups,
 * deadlines) are served exactly on time. Returns the wake-ups. */
static uint32_t drive_jittered(int wake, uint32_t n, double end) {
  ul_opts o;
  ul_list *l;
  prng r;
  double *due, slack, t = 0;
  uint32_t wakeups = 0, steps = 0, i;
  int32_t slot;
  uint64_t gen;
  int kind;
  r.s = 4242;
  ul_opts_default(&o);
  o.interval = 1;
  o.timeout = 0.1;
  o.jitter = 0.5;
  l = new_list(n, &o, 7);
  slack = ul_slack(l);
  due = xmalloc(n * sizeof *due);
  assert_non_null(due);
  for (i = 0; i < n; i++) {
    assert_int_equal(ul_append(l, 1, -1, 0, 1, 0, 0), (int32_t)i);
    due[i] = N(l, (int32_t)i)->next;
  }
  while (t < end && steps++ < 10 * n * (uint32_t)end) {
    double next = wake ? ul_next_wake(l) : ul_next_time(l);
    assert_true(isfinite(next) && next >= t);
    t = next;
    wakeups++;
    ul_collect(l, t);
    while ((kind = ul_take(l, &slot, &gen)) != UL_EV_NONE) {
      ul_node *x = N(l, slot);
      if (kind == UL_EV_START) {
        assert_true(t >= due[slot]);
        assert_true(t - due[slot] <= slack);
        if (prng_below(&r, 4) == 0) { /* sleeps; times out past 0.1 */
          assert_int_equal(ul_sleep(l, slot, gen, t + prng_unit(&r) * 0.2), 1);
        } else {
          assert_int_equal(ul_report(l, slot, gen, 1, t, -1), 1);
          due[slot] = x->next;
        }
      } else if (kind == UL_EV_WAKE) {
        assert_dbl_eq(t, x->wake);
        assert_int_equal(ul_report(l, slot, gen, 1, t, -1), 1);
        due[slot] = x->next;
      } else {
        assert_int_equal(kind, UL_EV_TIMEOUT);
        assert_dbl_eq(t, x->deadline);
        due[slot] = x->next;
      }
    }
  }
  check_invariants(l);
  xfree(due);
  return wakeups;
}

static void test_next_wake_coalesces(void **state) {
  uint32_t plain, coalesced;
  (void)state;
  plain = drive_jittered(0, 2000, 10);
  coalesced = drive_jittered(1, 2000, 10);
  /* 2000 starts a second, 1 in 4 with a wake-up or a timeout: about one
   * event every 0.4 ms, one wake-up for each; coalesced, the starts of 10
   * ms share one */
  assert_true(plain > 15000);
  assert_true(coalesced * 5 < plain);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_sched_basic, teardown),
      cmocka_unit_test_teardown(test_sched_sleep, teardown),
      cmocka_unit_test_teardown(test_sched_ready_resched, teardown),
      cmocka_unit_test_teardown(test_sched_remove_running, teardown),
      cmocka_unit_test_teardown(test_sched_shutdown, teardown),
      cmocka_unit_test_teardown(test_sched_peek_cancel, teardown),
      cmocka_unit_test_teardown(test_sched_report_dup, teardown),
      cmocka_unit_test_teardown(test_sched_timeout_dup, teardown),
      cmocka_unit_test_teardown(test_jitter, teardown),
      cmocka_unit_test_teardown(test_heap_order, teardown),
      cmocka_unit_test_teardown(test_next_wake_rules, teardown),
      cmocka_unit_test_teardown(test_next_wake_coalesces, teardown),
      cmocka_unit_test_teardown(test_sched_fuzz, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
