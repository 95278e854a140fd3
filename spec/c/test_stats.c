/*
 * test_stats.c - what the core counts for status() and metrics (ul_stat,
 * ul_picks): picks, the times and duration of checks, timeouts, crossings
 * between healthy and unhealthy and when the last one happened; kept by
 * ul_grow and reset for a slot that ul_append reuses.
 */
#include "helpers.h"

static ul_stat *S(const ul_list *l, int32_t s) { return &ul_stats(l)[s]; }

static void test_picks(void **state) {
  ul_list *l = new_list(4, NULL, 1);
  int i;
  (void)state;
  for (i = 0; i < 3; i++) ul_append(l, 0, -1, NAN, 1, 0, 0);
  for (i = 0; i < 7; i++) ul_pick(l, 0, 0);
  assert_int_equal(ul_picks(l)[0], 3);
  assert_int_equal(ul_picks(l)[1], 2);
  assert_int_equal(ul_picks(l)[2], 2);
  ul_down(l, 1, 0);
  ul_down(l, 1, 0); /* unhealthy: never picked */
  for (i = 0; i < 4; i++) ul_pick(l, 0, 0);
  assert_int_equal(ul_picks(l)[1], 2);
  assert_int_equal(ul_picks(l)[0] + ul_picks(l)[2], 9);
  check_invariants(l);
}

static void test_checks_timed(void **state) {
  ul_list *l = new_list(4, NULL, 1);
  int32_t s;
  uint64_t gen;
  (void)state;
  ul_append(l, 1, -1, 10, 1, 0, 0);
  assert_dbl_eq(S(l, 0)->changed, 10); /* joined at 10 */
  assert_true(isnan(S(l, 0)->last_check));
  assert_true(isnan(S(l, 0)->latency));
  ul_collect(l, 10);
  assert_int_equal(ul_take(l, &s, &gen), UL_EV_START);
  assert_int_equal(ul_report(l, s, gen, 0, 10.03, -1), 1);
  assert_dbl_eq(S(l, 0)->last_check, 10.03);
  assert_dbl_near(S(l, 0)->latency, 0.03, 1e-12);
  assert_int_equal(S(l, 0)->flips, 0); /* 1 -> 0: still healthy */
  assert_dbl_eq(S(l, 0)->changed, 10);
  /* the next check times out (default timeout 0.1): 0 -> -1, a crossing */
  ul_collect(l, 11);
  assert_int_equal(ul_take(l, &s, &gen), UL_EV_START);
  ul_collect(l, 11.1);
  assert_int_equal(ul_take(l, &s, &gen), UL_EV_TIMEOUT);
  assert_int_equal(S(l, 0)->timeouts, 1);
  assert_int_equal(N(l, 0)->failures, 2);
  assert_dbl_eq(S(l, 0)->last_check, 11.1);
  assert_dbl_near(S(l, 0)->latency, 0.1, 1e-12);
  assert_int_equal(S(l, 0)->flips, 1);
  assert_dbl_eq(S(l, 0)->changed, 11.1);
  ul_up(l, 0, 12); /* -1 -> 0: back */
  assert_int_equal(S(l, 0)->flips, 2);
  assert_dbl_eq(S(l, 0)->changed, 12);
  ul_up(l, 0, 13); /* no crossing */
  assert_dbl_eq(S(l, 0)->changed, 12);
  check_invariants(l);
}

static void test_grow_and_reuse(void **state) {
  ul_list *l = new_list(2, NULL, 1), *g;
  unsigned char drop[4] = {1, 0, 0, 0};
  int i;
  (void)state;
  ul_append(l, 0, -1, 1, 1, 0, 0);
  ul_append(l, 0, -1, 2, 1, 0, 0);
  for (i = 0; i < 4; i++) ul_pick(l, 0, 0);
  ul_down(l, 1, 5);
  ul_down(l, 1, 6);
  g = (ul_list *)xmalloc(ul_grow_size(l, 4));
  ul_grow(g, 4, l);
  assert_int_equal(ul_picks(g)[0], 2);
  assert_int_equal(ul_picks(g)[1], 2);
  assert_dbl_eq(S(g, 1)->changed, 6);
  assert_int_equal(S(g, 1)->flips, 1);
  ul_remove(g, drop);
  /* slot 0 is free again: a new member there starts from nothing */
  assert_int_equal(ul_append(g, 0, -1, NAN, 1, 0, 0), 0);
  assert_int_equal(ul_picks(g)[0], 0);
  assert_int_equal(S(g, 0)->flips, 0);
  assert_true(isnan(S(g, 0)->changed));
  check_invariants(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_picks, teardown),
      cmocka_unit_test_teardown(test_checks_timed, teardown),
      cmocka_unit_test_teardown(test_grow_and_reuse, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
