/*
 * core/opts.c - a list's options: the defaults (those of the Go package),
 * the rules a valid set obeys, and the latency tier of a check's duration.
 */
#include "core.h"

#include <math.h>

void ul_opts_default(ul_opts *o) {
  o->strategy = UL_ROUND_ROBIN;
  o->tier_min = o->tier_max = o->tier_init = 0;
  o->panic = 0;
  o->slow_start = 0;
  o->interval = 1.0;
  o->unhealthy_interval = 0; /* the same as interval */
  o->timeout = 0.1;
  o->jitter = 0.0;
  o->initial_score = 1.0;
  o->low_score = -3.0;
  o->high_score = 3.0;
  o->fail_delta = -1.0;
  o->success_delta = 1.0;
}

const char *ul_opts_validate(const ul_opts *o, const char **field) {
  static const char *const names[] = {"interval", "unhealthy_interval",
                                      "timeout", "jitter",
                                      "initial_score", "low_score",
                                      "high_score", "fail_delta",
                                      "success_delta"};
  const double v[] = {o->interval, o->unhealthy_interval, o->timeout, o->jitter, o->initial_score,
                      o->low_score, o->high_score, o->fail_delta,
                      o->success_delta};
  size_t i;
  for (i = 0; i < sizeof v / sizeof v[0]; i++)
    if (!isfinite(v[i])) {
      *field = names[i];
      return "must be a finite number";
    }
#define RULE(cond, name, msg) \
  if (!(cond)) {              \
    *field = name;            \
    return msg;               \
  }
  RULE(o->interval > 0, "interval", "must be > 0")
  RULE(o->unhealthy_interval >= 0, "unhealthy_interval",
       "must be > 0 (or 0: the same as interval)")
  RULE(o->timeout > 0, "timeout", "must be > 0")
  RULE(o->jitter >= 0 && o->jitter <= 1, "jitter", "must be in [0, 1]")
  RULE(o->low_score <= 0, "low_score", "must be <= 0")
  RULE(o->high_score >= 0, "high_score", "must be >= 0")
  RULE(o->fail_delta < 0, "fail_delta", "must be < 0")
  RULE(o->success_delta > 0, "success_delta", "must be > 0")
  RULE(o->initial_score >= o->low_score && o->initial_score <= o->high_score,
       "initial_score", "must be in [low_score, high_score]")
  RULE(o->strategy >= UL_ROUND_ROBIN && o->strategy <= UL_RANDOM, "strategy",
       "is unknown")
  RULE(isfinite(o->panic) && o->panic >= 0 && o->panic <= 1, "panic",
       "must be in [0, 1]")
  RULE(isfinite(o->slow_start) && o->slow_start >= 0, "slow_start",
       "must be a finite number >= 0")
  /* Its steps are slow_start / 10: from 0.001 on a step is >= 1e-4 s,
   * which neither underflows nor vanishes into any clock below 4e11 s
   * (2^52 * 1e-4); a smaller ramp is no ramp, and near 1e-323 the step
   * is 0. */
  RULE(o->slow_start == 0 || o->slow_start >= 0.001, "slow_start",
       "must be 0 (off) or a finite number >= 0.001")
  RULE(o->tier_min >= 0 && o->tier_max <= UL_MAX_TIER &&
           o->tier_min <= o->tier_init && o->tier_init <= o->tier_max,
       "tiers", "must be integers with 0 <= min <= init <= max <= 10")
#undef RULE
  *field = NULL;
  return NULL;
}

int ul_latency_tier(double secs) {
  static const double bounds[] = {0.0001, 0.001, 0.01, 0.1, 1};
  int k;
  for (k = 0; k < 5; k++)
    if (secs < bounds[k]) return k;
  return 5;
}
