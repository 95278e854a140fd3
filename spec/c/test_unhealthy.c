/*
 * test_unhealthy.c - unhealthy_interval (HAProxy's downinter, Envoy's
 * unhealthy_interval): a backend its check left unhealthy is checked again
 * unhealthy_interval after that check started, a healthy one interval
 * after; 0 (the default) means the same as interval; the rule that
 * ul_opts_validate applies to it.
 */
#include "helpers.h"

#include <math.h>

/* Runs the check of the only member at t with result ok; returns when
 * the next one starts. */
static double check_once(ul_list *l, double t, int ok) {
  int32_t slot;
  uint64_t gen;
  ul_collect(l, t);
  assert_int_equal(ul_take(l, &slot, &gen), UL_EV_START);
  assert_int_equal(ul_report(l, slot, gen, ok, t + 0.01, -1), 1);
  return N(l, slot)->next;
}

static void test_unhealthy_interval(void **state) {
  ul_opts o;
  ul_list *l;
  (void)state;
  ul_opts_default(&o);
  o.interval = 1;
  o.unhealthy_interval = 5;
  o.initial_score = 0;
  l = new_list(1, &o, 1);
  assert_int_equal(ul_append(l, 1, -1, 0, 1, 0, 0), 0);
  /* healthy after it (score 1): interval */
  assert_dbl_eq(check_once(l, 0, 1), 1);
  /* 1 -> 0: still healthy, interval */
  assert_dbl_eq(check_once(l, 1, 0), 2);
  /* 0 -> -1: unhealthy, unhealthy_interval from its start */
  assert_dbl_eq(check_once(l, 2, 0), 7);
  assert_dbl_eq(check_once(l, 7, 0), 12);
  /* -2 -> -1: a success that leaves it unhealthy keeps the long wait */
  assert_dbl_eq(check_once(l, 12, 1), 17);
  /* -1 -> 0: healthy again, interval */
  assert_dbl_eq(check_once(l, 17, 1), 18);
  /* a timeout that makes it unhealthy counts too */
  {
    int32_t slot;
    uint64_t gen;
    check_once(l, 18, 0); /* 0 -> -1 ... */
    ul_collect(l, 23);
    assert_int_equal(ul_take(l, &slot, &gen), UL_EV_START);
    assert_int_equal(ul_report(l, slot, gen, 1, 23.01, -1), 1); /* -> 0 */
    ul_collect(l, 24);
    assert_int_equal(ul_take(l, &slot, &gen), UL_EV_START);
    ul_collect(l, 24 + o.timeout);
    assert_int_equal(ul_take(l, &slot, &gen), UL_EV_TIMEOUT); /* -> -1 */
    assert_dbl_eq(N(l, 0)->next, 29);
  }
  check_invariants(l);
}

static void test_unhealthy_default(void **state) {
  ul_opts o;
  ul_list *l;
  (void)state;
  ul_opts_default(&o);
  assert_dbl_eq(o.unhealthy_interval, 0);
  o.interval = 2;
  o.initial_score = -1;
  l = new_list(1, &o, 1);
  assert_int_equal(ul_append(l, 1, -1, 0, 1, 0, 0), 0);
  /* 0: the same as interval, for the unhealthy too */
  assert_dbl_eq(check_once(l, 0, 0), 2);
  assert_dbl_eq(check_once(l, 2, 0), 4);
  check_invariants(l);
}

static void test_unhealthy_jitter(void **state) {
  ul_opts o;
  ul_list *l;
  double t = 0;
  int i;
  (void)state;
  ul_opts_default(&o);
  o.interval = 1;
  o.unhealthy_interval = 10;
  o.jitter = 0.5;
  o.initial_score = o.low_score;
  l = new_list(1, &o, 3);
  assert_int_equal(ul_append(l, 1, -1, 0, 1, 0, 0), 0);
  t = N(l, 0)->next;
  for (i = 0; i < 50; i++) {
    double next = check_once(l, t, 0);
    assert_dbl_in(next - t, 5, 15); /* 10 x (1 +- 0.5) */
    t = next;
  }
}

static void test_unhealthy_rule(void **state) {
  static const double bad[] = {-1, -1e-300, NAN, INFINITY, -INFINITY};
  ul_opts o;
  const char *field;
  size_t i;
  (void)state;
  ul_opts_default(&o);
  o.unhealthy_interval = 0.5;
  assert_null(ul_opts_validate(&o, &field));
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    o.unhealthy_interval = bad[i];
    assert_non_null(ul_opts_validate(&o, &field));
    assert_string_equal(field, "unhealthy_interval");
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_unhealthy_interval, teardown),
      cmocka_unit_test_teardown(test_unhealthy_default, teardown),
      cmocka_unit_test_teardown(test_unhealthy_jitter, teardown),
      cmocka_unit_test_teardown(test_unhealthy_rule, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
