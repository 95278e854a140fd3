/*
 * ul_core.h - the scored backend list, in plain C (no Lua headers).
 *
 * The whole state of a list lives in one flat block: a header followed by
 * arrays addressed by index, never by pointer, so the block can be copied,
 * grown with memcpy, or later placed in memory shared between processes.
 *
 * Vocabulary
 *   slot      stable identity of a backend while it is in the list (0..cap-1);
 *             the binding keeps the Lua value of slot s at index s+1.
 *   position  place of a member in pick order (0..n-1); reconcile changes it.
 *   score     health score, a double; a member is healthy when score >= 0.
 *   check     one active health check of one slot; each check gets a fresh
 *             generation number so a late or stale report is recognised.
 *   event     what the scheduler must do for a slot at a time: start a check,
 *             wake a running check, or time it out.
 */
#ifndef UL_CORE_H
#define UL_CORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct ul_opts {
  double interval;      /* seconds between check starts of one backend, > 0 */
  double timeout;       /* seconds a check may run, > 0 */
  double jitter;        /* 0..1: each wait is interval * (1 + jitter * U(-1,1)) */
  double initial_score; /* low_score..high_score */
  double low_score;     /* <= 0 */
  double high_score;    /* >= 0 */
  double fail_delta;    /* < 0 */
  double success_delta; /* > 0 */
} ul_opts;

/* Fills o with the defaults of the Go package. */
void ul_opts_default(ul_opts *o);

/* NULL when o is valid; else the rule that failed, with *field set to the
 * option's name (e.g. "interval", "must be a finite number > 0"). */
const char *ul_opts_validate(const ul_opts *o, const char **field);

enum { UL_IDLE = 0, UL_RUNNING = 1 };

/* node flags */
enum {
  UL_F_MEMBER = 1,  /* slot is in use */
  UL_F_CHECKED = 2, /* slot has an active check */
  UL_F_READY = 4,   /* slot sits in the ready queue */
  UL_F_WAKE = 8     /* running check asked to be woken at .wake */
};

typedef struct ul_node {
  double score;
  double next;     /* idle: when the next check starts */
  double started;  /* running: when the check started */
  double deadline; /* running: started + timeout */
  double wake;     /* running with UL_F_WAKE: when to resume it */
  double key;      /* when its next event is due (heap order) */
  uint64_t gen;    /* generation of the current or last check */
  uint32_t checks;   /* completed checks (success, failure or timeout) */
  uint32_t failures; /* failed or timed-out checks */
  int32_t pos;     /* position in pick order, -1 when not a member */
  int32_t dup;     /* next slot holding an equal backend, in a ring (itself
                      when alone); on a free slot: next free slot or -1 */
  int32_t heap;    /* index in the event heap, -1 when not in it */
  uint8_t state;   /* UL_IDLE or UL_RUNNING */
  uint8_t flags;   /* UL_F_* */
} ul_node;

typedef struct ul_list {
  ul_opts opts;
  uint32_t cap;       /* slots in the block */
  uint32_t n;         /* members, in order[0..n-1] */
  int32_t rr;         /* round-robin position; starts at -1 */
  int32_t free_head;  /* first free slot, -1 when full */
  uint32_t nheap;     /* events in heap[] */
  uint32_t ready_head, ready_len; /* ready[] is a FIFO ring of cap */
  uint32_t unchecked; /* checked members that have not finished a first check */
  uint32_t healthy;   /* members with score >= 0 */
  uint32_t shut;      /* 1 after ul_shutdown */
  uint32_t bm_words[3]; /* words in each bitmap level */
  uint64_t gen;       /* last check generation handed out */
  uint64_t rng;       /* xorshift64* state, never 0 */
  double now;         /* time of the last ul_collect */
  /* offsets in bytes from the start of the block */
  uint32_t off_nodes, off_order, off_heap, off_ready, off_bm[3];
} ul_list;

/* Bytes needed for a list of cap slots (cap >= 1). 0 on overflow. */
size_t ul_size(uint32_t cap);

/* Initialises a block of ul_size(cap) bytes: empty list, options copied
 * (assumed valid), rng seeded with seed. */
void ul_init(ul_list *l, uint32_t cap, const ul_opts *o, uint64_t seed);

/* Copies src into a bigger block dst (cap >= src->cap), keeping slots. */
void ul_grow(ul_list *dst, uint32_t cap, const ul_list *src);

static inline ul_node *ul_nodes(const ul_list *l) {
  return (ul_node *)((char *)l + l->off_nodes);
}
static inline int32_t *ul_order(const ul_list *l) {
  return (int32_t *)((char *)l + l->off_order);
}

/* Appends a member at the end of pick order with the initial score and
 * returns its slot (-1 when the block is full). When checked, its first
 * check is due at now (jitter 0) or at now + U[0, interval) (jitter > 0).
 * dup_of: a slot holding an equal backend to join the ring of, or -1. */
int32_t ul_append(ul_list *l, int checked, int32_t dup_of, double now);

/* Removes every member for which drop[slot] is non-zero, keeping the order
 * of the others. The round-robin position is not reset: the next pick
 * starts at (rr + 1) mod n, as in the Go package. A running check of a
 * dropped slot is forgotten: its report will be refused. Slots chained as
 * equal (dup) must be dropped together. */
void ul_remove(ul_list *l, const unsigned char *drop);

/* Round-robin pick: the first healthy member after the last pick.
 * Returns its slot, or -1 (position unchanged) when none is healthy. */
int32_t ul_pick(ul_list *l);

/* Score changes applied to slot and every slot in its ring of equal
 * backends (as are check results). */
void ul_up(ul_list *l, int32_t slot);
void ul_down(ul_list *l, int32_t slot);

/* --- the check scheduler, low level ----------------------------------- */

enum { UL_EV_NONE = 0, UL_EV_START, UL_EV_WAKE, UL_EV_TIMEOUT };

/* Moves every event due at or before now into the ready queue and returns
 * how many are ready. Events created while the ready queue is drained are
 * left for the next collect, so a check that yields is resumed once per
 * step and a step always ends. */
uint32_t ul_collect(ul_list *l, double now);

/* Takes the next ready event: returns its kind and sets *slot and *gen.
 *  UL_EV_START:   a check was started (state running, deadline set);
 *                 run it and report with ul_report(slot, gen, ...).
 *  UL_EV_WAKE:    a running check asked to be woken (ul_sleep): resume it.
 *  UL_EV_TIMEOUT: the check passed its deadline; it was counted as failed
 *                 and the next one scheduled: abandon it.
 * UL_EV_NONE when the ready queue is empty. */
int ul_take(ul_list *l, int32_t *slot, uint64_t *gen);

/* Asks for the running check (slot, gen) to be woken at time t (UL_EV_WAKE)
 * unless its deadline comes first. Returns 0 when the check is stale. */
int ul_sleep(ul_list *l, int32_t slot, uint64_t gen, double t);

/* Reports the end of check (slot, gen) at time now: ok != 0 is Up, else
 * Down; the next check is scheduled. Returns 1 when applied, 0 when the
 * report is stale (timed out, removed, shut down, or a later check). */
int ul_report(ul_list *l, int32_t slot, uint64_t gen, int ok, double now);

/* Time of the earliest pending event (ready ones count as l->now), or
 * infinity when nothing is scheduled. */
double ul_next_time(const ul_list *l);

/* 1 when the running check (slot, gen) is current. */
int ul_current(const ul_list *l, int32_t slot, uint64_t gen);

/* Stops every check: nothing is scheduled afterwards and every report is
 * refused. Scores, pick, up and down keep working. Idempotent. */
void ul_shutdown(ul_list *l);

/* Uniform double in [0, 1) from the list's generator. */
double ul_random(ul_list *l);

#endif
