/*
 * core/sched.c - the life of a health check: due (ul_collect), started,
 * woken or timed out (ul_take), put to sleep (ul_sleep), reported
 * (ul_report), and stopped for good (ul_shutdown). A result goes to the
 * list (list.h), which moves the scores; the next start goes to the event
 * heap (heap.h).
 */
#include "list.h"
#include "block.h"
#include "heap.h"
#include "rand.h"

#include <math.h>

/* Seconds from one check's start to the next: interval, or
 * unhealthy_interval for a backend its check left unhealthy; jittered. */
static double sched_wait(ul_list *l, const ul_node *n) {
  const ul_opts *o = &l->opts;
  double w = n->score < 0 && o->unhealthy_interval > 0 ? o->unhealthy_interval
                                                       : o->interval;
  if (o->jitter == 0) return w;
  return w * (1 + o->jitter * (2 * ulr_unit(l) - 1));
}

/* A NaN or infinite reading is ignored (ulh_time): l->now stays finite. */
uint32_t ul_collect(ul_list *l, double now) {
  l->now = ulh_time(l, now);
  return ulh_collect(l, l->now);
}

/* The time d seconds (>= 0) after t, strictly later than t: when d is too
 * small for t's magnitude (t + d == t), the next double after t. Were a
 * check's next start or deadline equal to its start, a host loop on a
 * clock that stands still until it sleeps would find it due again at
 * once, sleep 0, and spin. An overflow gives inf: never due, which is
 * what a wait of 1e308 s means. */
static double sched_after(double t, double d) {
  double at = t + d;
  return at > t ? at : nextafter(t, INFINITY);
}

/* Ends the running check of s at now: score, tier, counters, next start.
 * As in the Go package, the result moves every member equal to the
 * backend. */
static void sched_finish(ul_list *l, int32_t s, int ok, double now, int tier) {
  ul_node *n = &ul_nodes(l)[s];
  now = ulh_time(l, now);
  ul_stats(l)[s].last_check = now;
  ul_stats(l)[s].latency = now - n->started;
  ulc_apply(l, s, ok, now, tier);
  if (n->checks++ == 0) l->unchecked--;
  if (!ok) n->failures++;
  n->state = UL_IDLE;
  n->flags &= (uint8_t)~UL_F_WAKE;
  n->next = sched_after(n->started, sched_wait(l, n));
  if (n->next < now) n->next = now;
  ulh_resched(l, s);
}

/* Starts the check of idle slot s now. */
static void sched_start(ul_list *l, ul_node *n, int32_t s) {
  n->gen = ++l->gen;
  n->state = UL_RUNNING;
  n->started = l->now;
  n->deadline = sched_after(l->now, l->opts.timeout);
  n->flags &= (uint8_t)~UL_F_WAKE;
  ulh_resched(l, s);
}

int ul_take(ul_list *l, int32_t *slot, uint64_t *gen) {
  int32_t s;
  while ((s = ulh_ready_take(l)) >= 0) {
    ul_node *n = &ul_nodes(l)[s];
    if (n->key > l->now) { /* rescheduled while it waited */
      ulh_resched(l, s);
      continue;
    }
    *slot = s;
    if (n->state == UL_IDLE) {
      sched_start(l, n, s);
      *gen = n->gen;
      return UL_EV_START;
    }
    *gen = n->gen;
    if (n->deadline <= l->now) {
      ul_stats(l)[s].timeouts++;
      sched_finish(l, s, 0, l->now, -1);
      return UL_EV_TIMEOUT;
    }
    n->flags &= (uint8_t)~UL_F_WAKE;
    ulh_resched(l, s);
    return UL_EV_WAKE;
  }
  return UL_EV_NONE;
}

int ul_peek(ul_list *l, int32_t *slot) {
  ul_node *nd = ul_nodes(l);
  for (;;) {
    int32_t s;
    ul_node *n;
    while (l->ready_len > 0 &&
           !(nd[ulb_ready(l)[l->ready_head]].flags & UL_F_READY)) {
      l->ready_head = (l->ready_head + 1) % l->cap;
      l->ready_len--;
    }
    if (l->ready_len == 0) return UL_EV_NONE;
    s = ulb_ready(l)[l->ready_head];
    n = &nd[s];
    if (n->key > l->now) { /* rescheduled while it waited: as ul_take */
      ulh_ready_take(l);
      ulh_resched(l, s);
      continue;
    }
    *slot = s;
    if (n->state == UL_IDLE) return UL_EV_START;
    if (n->deadline <= l->now) return UL_EV_TIMEOUT;
    return UL_EV_WAKE;
  }
}

int ul_cancel(ul_list *l, int32_t s, uint64_t gen) {
  ul_node *n;
  if (!ul_current(l, s, gen)) return 0;
  n = &ul_nodes(l)[s];
  n->state = UL_IDLE;
  n->flags &= (uint8_t)~UL_F_WAKE;
  n->next = l->now;
  ulh_resched(l, s);
  return 1;
}

int ul_current(const ul_list *l, int32_t s, uint64_t gen) {
  const ul_node *n;
  if (l->shut || s < 0 || (uint32_t)s >= l->cap) return 0;
  n = &ul_nodes(l)[s];
  return (n->flags & UL_F_MEMBER) && n->state == UL_RUNNING && n->gen == gen;
}

int ul_sleep(ul_list *l, int32_t s, uint64_t gen, double t) {
  ul_node *n;
  if (!ul_current(l, s, gen)) return 0;
  n = &ul_nodes(l)[s];
  n->wake = t;
  n->flags |= UL_F_WAKE;
  ulh_resched(l, s);
  return 1;
}

int ul_report(ul_list *l, int32_t s, uint64_t gen, int ok, double now,
              int tier) {
  if (!ul_current(l, s, gen)) return 0;
  sched_finish(l, s, ok, now, tier);
  return 1;
}

double ul_next_time(const ul_list *l) {
  if (l->ready_len > 0) return l->now;
  return ulh_first_key(l);
}

/* With jitter, a start's time is random over a window of 2 x jitter x
 * interval already: moving it by a tenth of that window more keeps the
 * spread and lets far fewer wake-ups serve the starts (issue 11's idle
 * and busy CPU; docs/BENCHMARKS.md). */
double ul_slack(const ul_list *l) {
  double s = l->opts.interval / 100, j = l->opts.interval * l->opts.jitter / 5;
  if (s > UL_SLACK_MAX) s = UL_SLACK_MAX;
  if (j > UL_SLACK_JITTER_MAX) j = UL_SLACK_JITTER_MAX;
  return j > s ? j : s;
}

/* As the kernel's timer slack and HAProxy's timers: a check's start may
 * wait up to the slack for the events just after it, so that one wake-up
 * serves them all. It waits only as long as there is one to wait for (the
 * wake-up is at the latest event within the slack of the first), and
 * never past an event of a running check: a check's wake-up and deadline
 * are served on time, so that a check that sleeps is not measured slower
 * (tier_by_latency) nor timed out late. */
double ul_next_wake(const ul_list *l) {
  double first, bound, running, latest;
  if (l->ready_len > 0) return l->now;
  first = ulh_first_key(l);
  if (isinf(first)) return first;
  bound = first + ul_slack(l);
  latest = ulh_window(l, bound, &running);
  if (running < bound) latest = ulh_window(l, running, &running);
  return latest > first ? latest : first;
}

void ul_shutdown(ul_list *l) {
  uint32_t p;
  if (l->shut) return;
  l->shut = 1;
  ulh_clear(l);
  for (p = 0; p < l->n; p++) {
    ul_node *n = ulb_at(l, p);
    n->state = UL_IDLE;
    n->flags &= (uint8_t)~UL_F_WAKE;
  }
  l->unchecked = 0;
}
