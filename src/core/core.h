/*
 * core/core.h - the scored backend list, in plain C (no Lua headers).
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
 *
 * Files, one job each; calls only go down this list, never back up:
 *   sched.c     the life of a check: collect, take, sleep, report, shutdown
 *   list.c      members, scores, tiers, eligibility, slow start, grow;
 *               ul_pick moves slow start on, then asks the strategy
 *   heap.c      the event heap and the ready ring (heap.h)
 *   pick.c      the strategies' arrays in the block, and dispatch (pick.h)
 *   weighted.c  smooth weighted round robin
 *   maglev.c    hash
 *   random.c    random, and least_conn (which scans rr.c's bitmap)
 *   rr.c        round robin on the eligible bitmap
 *   opts.c      options: defaults, validation; latency tiers
 *   hash.c      ul_hash
 * The strategies know the block's layout (block.h) and the generator
 * (rand.h), never the list's functions. sched.c reaches list.c through
 * list.h.
 */
#ifndef UL_CORE_H
#define UL_CORE_H

#include <stddef.h>
#include <stdint.h>

/* UL_FUNC marks the functions the core's files share: extern when each
 * file is compiled on its own (the C tests), static in the module, which
 * is one translation unit (src/upstream.c), so the compiler sees and can
 * inline every call, as in Lua's onelua.c. */
#ifndef UL_FUNC
#define UL_FUNC extern
#endif

enum { UL_ROUND_ROBIN = 0, UL_WEIGHTED, UL_LEAST_CONN, UL_HASH, UL_RANDOM };

#define UL_MAX_TIER 10
#define UL_MAX_WEIGHT 1000000
#define UL_RAMP_STEPS 10 /* slow start: weight x k/10, k = 1..10 */
#define UL_LEAST_CONN_EXACT 16 /* least_conn scans up to this many members */

typedef struct ul_opts {
  int strategy;         /* UL_ROUND_ROBIN ... UL_RANDOM */
  int tier_min, tier_max, tier_init; /* 0 <= min <= init <= max <= 10 */
  double panic;         /* 0..1: fail open below this share of healthy members */
  double slow_start;    /* 0: off, or >= 0.001 seconds */
  double interval;      /* seconds between check starts of one backend, > 0 */
  double unhealthy_interval; /* the same for a backend unhealthy after its
                                check (HAProxy's downinter); 0: interval */
  double timeout;       /* seconds a check may run, > 0 */
  double jitter;        /* 0..1: each wait is interval * (1 + jitter * U(-1,1)) */
  double initial_score; /* low_score..high_score */
  double low_score;     /* <= 0 */
  double high_score;    /* >= 0 */
  double fail_delta;    /* < 0 */
  double success_delta; /* > 0 */
} ul_opts;

/* Fills o with the defaults of the Go package. */
UL_FUNC void ul_opts_default(ul_opts *o);

/* NULL when o is valid; else the rule that failed, with *field set to the
 * option's name (e.g. "interval", "must be a finite number > 0"). */
UL_FUNC const char *ul_opts_validate(const ul_opts *o, const char **field);

enum { UL_IDLE = 0, UL_RUNNING = 1 };

/* node flags */
enum {
  UL_F_MEMBER = 1,  /* slot is in use */
  UL_F_CHECKED = 2, /* slot has an active check */
  UL_F_READY = 4,   /* slot sits in the ready queue */
  UL_F_WAKE = 8     /* running check asked to be woken at .wake */
};

typedef struct ul_node {
  int64_t cur;     /* weighted: current weight; stored as cur - ew * t
                      while eligible (lazy list: always, t its tree's
                      pick count), so that time moves it (weighted.c) */
  int64_t ew;      /* effective weight: weight x ramp step (counted in the
                      totals only while eligible) */
  uint64_t hash;   /* hash of the backend, for the Maglev table */
  double since;    /* slow start: when it last turned healthy */
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
  uint32_t weight;   /* configured weight, 1..UL_MAX_WEIGHT */
  uint32_t inflight; /* least_conn: picks not yet released */
  uint8_t state;   /* UL_IDLE or UL_RUNNING */
  uint8_t flags;   /* UL_F_* */
  uint8_t tier;    /* 0..10 */
  uint8_t elig;    /* may be picked now (healthy, lowest tier, or panic);
                      not kept on a lazy list (ul_list.lazy): ul_eligible */
  uint8_t ramp;    /* slow start step 1..UL_RAMP_STEPS */
  uint8_t cls;     /* its tier while healthy, else UL_CLS_DOWN (list.c);
                      UL_NSETS on a free slot */
} ul_node;

/* A member's class (ul_node.cls): its tier while healthy, this while not.
 * Random and least_conn keep one set of members per healthy tier and one
 * of all members (UL_SET_ALL); a lazy list's pick reads the set of the
 * lowest healthy tier, or the set of all in panic. */
#define UL_CLS_DOWN (UL_MAX_TIER + 1)
#define UL_SET_ALL (UL_MAX_TIER + 1)
#define UL_NSETS (UL_MAX_TIER + 2)
/* weighted: the most kinetic trees a list has (every tier, and the down) */
#define UL_KST_TREES (UL_MAX_TIER + 2)

typedef struct ul_list {
  ul_opts opts;
  uint32_t cap;       /* slots in the block */
  uint32_t n;         /* members, in order[0..n-1] */
  int32_t rr;         /* round-robin position; starts at -1 */
  int32_t free_head;  /* first free slot, -1 when full */
  uint32_t nheap;     /* events in heap[] */
  uint32_t ready_head, ready_len; /* ready[] is a FIFO ring of cap */
  uint32_t checked;   /* members with an active check (UL_F_CHECKED) */
  uint32_t unchecked; /* checked members that have not finished a first check */
  uint32_t healthy;   /* members with score >= 0 */
  uint32_t tier_healthy[UL_MAX_TIER + 1]; /* healthy members per tier */
  int32_t active_tier; /* lowest tier with a healthy member, -1 if none */
  uint32_t panic_on;  /* too few healthy: every member is eligible */
  uint32_t nelig;     /* eligible members (bitmap bits set) */
  int64_t total_ew;   /* sum of ew over eligible members */
  int64_t t;          /* weighted: picks since the last rebase */
  uint32_t ramping;   /* members that may still be ramping up */
  double ramp_next;   /* when the next ramp step is due */
  uint32_t shut;      /* 1 after ul_shutdown */
  /* hash (maglev.c): the table's size M; a change since the last build
   * began (dirty); whether mag[] is a complete table (valid); the build
   * under way into mag2[] (phase 0: none), a slice of it per pick */
  uint32_t maglev_m, maglev_dirty, maglev_valid;
  uint32_t maglev_busy;  /* dirty, building or not valid: the pick works */
  uint32_t maglev_slice; /* build work per pick; 0: whole builds */
  uint32_t mb_phase, mb_i, mb_e, mb_cur, mb_prev, mb_filled, mb_wmax, mb_credit;
  uint64_t mb_total;     /* sum of the snapshot's effective weights */
  /* weighted (weighted.c): kst_ntree pick counts and, past UL_KST_SCAN
   * slots, as many kinetic trees of kst_size leaves (a power of 2). A lazy
   * list has one per tier of [tier_min, tier_max] (its healthy members)
   * and a last one of the members that are not healthy (ulb_kst_tree);
   * count k advances at every pick while tree k is read: the lowest
   * healthy tier's outside panic (kst_pick), all in panic. A member's cur
   * is stored as cur - ew * its tree's count. An eager list uses tree 0
   * (its eligible members), whose count is t. */
  uint32_t kst_size;
  uint32_t kst_ntree;              /* tier_max - tier_min + 2 (weighted) */
  uint32_t kst_n[UL_KST_TREES];    /* leaves in use in each tree */
  uint32_t kst_root[UL_KST_TREES]; /* the node whose subtree holds them */
  uint32_t kst_pick; /* the tree a pick reads outside panic (pick_state) */
  uint32_t kst_mode; /* 0: eager, 1: lazy, 2: lazy in panic (pick_state) */
  int64_t kst_c[UL_KST_TREES]; /* tree k's count (ulb_kst_count): t - kst_c[k]
                                  while it advances, kst_c[k] while not */
  uint32_t bm_words[3]; /* words in each bitmap level */
  /* lazy eligibility (every list but ul_eager's): no member's elig is
   * rewritten when the panic state or the lowest healthy tier moves. The
   * bitmap is one per tier (stride bm_stride words) of the healthy members
   * of that tier, random's Fenwick tree one per tier and one over all
   * members; a pick honours panic_on and active_tier; nelig and total_ew
   * follow from the per-tier counts and sums (list.c) */
  uint32_t lazy, bm_stride;
  uint32_t bm_pick; /* words from tier 0's bitmap to the one a pick reads
                       (lazy: active_tier's; else 0) */
  uint32_t elig_mask; /* lazy: bit c set when class c may be picked (all
                         in panic, else active_tier's) */
  uint32_t set_pick;  /* random, least_conn: the set a draw reads (panic:
                         UL_SET_ALL, else active_tier's, on every list) */
  uint32_t fen_pick;  /* random: the Fenwick tree a draw reads (lazy: as
                         set_pick; eager: 0, the eligible members') */
  uint32_t off_set_pick, off_fen_pick; /* where set_pick's set and
                         fen_pick's tree are in the block (pick_state) */
  uint32_t set_n[UL_NSETS]; /* random, least_conn: members in each set */
  int64_t tier_ew[UL_MAX_TIER + 1]; /* lazy: sum of ew, healthy, by tier */
  int64_t all_ew;                   /* lazy: sum of ew over all members */
  uint64_t gen;       /* last check generation handed out */
  double now;         /* time of the last ul_collect */
  /* offsets in bytes from the start of the block (0: not used) */
  uint32_t off_nodes, off_order, off_heap, off_ready, off_bm[3];
  uint32_t off_kst_win, off_kst_melt, off_kst_line, off_kst_at, off_fen, off_dense;
  uint32_t off_mag, off_mag2, off_magx;
  uint64_t sumsq[UL_NSETS][2]; /* random: sum of ew^2 over each tree's
                                  members (128-bit, lo/hi) */
  uint32_t off_stats; /* stats[cap]: what status() and metrics report */
  uint32_t off_picks; /* picks[cap]: times ul_pick returned each slot */
  /* weighted on a shared block (weighted.c, "one period"): ws_len slots
   * at off_ws, one period of picks (0: none), taken from index ws_i (in
   * the pick word's low half outside the lock, where round robin keeps
   * rr: ul_write_begin/end); the nodes hold the state of index ws_base.
   * ws_wait: locked picks before the next try at a period. */
  uint32_t off_ws, ws_len, ws_base, ws_wait, ws_i, pad_ws;
  /* shared lists (issue 10): 1 when other threads or processes may pick
   * from the block without the lock (a shared list of any strategy but
   * least_conn: ul_pick then counts with an atomic add, a draw moves rng
   * with a CAS, ul_write_begin/end keep the sequence, weighted records
   * periods); then the pick word,
   * sequence << 32 | round-robin position, and rng, last (a snapshot
   * copies the header up to the pick word, those two atomically) */
  uint32_t lockfree;
  uint32_t pad_lockfree;
  uint64_t rr_word;
  /* xorshift64* state, never 0 (rand.h): after rr_word, since a shared
   * random list's lock-free picks move it with a CAS */
  uint64_t rng;
} ul_list;

/* What a member's checks did, by slot (status, metrics): kept apart from
 * ul_node, which the strategies read. Times are the list's clock; NaN
 * where not known yet. 32 bytes: one shift to index. Picks are counted in
 * an array of their own (ul_picks), one increment on the pick path. */
typedef struct ul_stat {
  double last_check; /* when the last check ended (result or timeout) */
  double latency;    /* how long the last check ran */
  double changed;    /* last crossing between healthy and unhealthy, else
                        when it joined the list (NaN: the clock was not read) */
  uint32_t timeouts; /* checks timed out (also counted in failures) */
  uint32_t flips;    /* crossings between healthy and unhealthy */
} ul_stat;

/* Bytes needed for a list of cap slots (cap >= 1) with options o (valid):
 * the layout depends on the strategy and, for weighted, on the tier
 * range (a kinetic tree per tier). 0 on overflow. */
UL_FUNC size_t ul_size_opts(uint32_t cap, const ul_opts *o);

/* Bytes enough for a list of cap slots with strategy and any other
 * options: ul_size_opts of the widest tier range [0, UL_MAX_TIER]. 0 on
 * overflow. */
UL_FUNC size_t ul_size(uint32_t cap, int strategy);

/* Initialises a block of ul_size_opts(cap, o) bytes (or more): empty
 * list, options copied (assumed valid), rng seeded with seed. */
UL_FUNC void ul_init(ul_list *l, uint32_t cap, const ul_opts *o, uint64_t seed);

/* Bytes needed to grow src to cap slots (ul_grow's dst). */
UL_FUNC size_t ul_grow_size(const ul_list *src, uint32_t cap);

/* Copies src into a block dst of ul_grow_size(src, cap) bytes (cap >=
 * src->cap), keeping slots, picks state and the hash table's size. */
UL_FUNC void ul_grow(ul_list *dst, uint32_t cap, const ul_list *src);

static inline ul_node *ul_nodes(const ul_list *l) {
  return (ul_node *)((char *)l + l->off_nodes);
}
static inline int32_t *ul_order(const ul_list *l) {
  return (int32_t *)((char *)l + l->off_order);
}
static inline ul_stat *ul_stats(const ul_list *l) {
  return (ul_stat *)((char *)l + l->off_stats);
}
static inline uint64_t *ul_picks(const ul_list *l) {
  return (uint64_t *)((char *)l + l->off_picks);
}

/* Appends a member at the end of pick order with the initial score and
 * tier, weight and backend hash, and returns its slot (-1 when the block
 * is full). When checked, its first check is due at now (jitter 0) or at
 * now + U[0, interval) (jitter > 0). dup_of: a slot holding an equal
 * backend to join the ring of, or -1. ramp: start a slow start at now.
 *
 * Times (now, t) may be any double, NaN and +-inf included: a slow start
 * that would begin at a time that is not finite does not (full weight at
 * once); the scheduler takes a time that is not finite as the time of the
 * last ul_collect. No time reaches a float-to-integer cast. */
UL_FUNC int32_t ul_append(ul_list *l, int checked, int32_t dup_of, double now,
                  uint32_t weight, uint64_t hash, int ramp);

/* Removes every member for which drop[slot] is non-zero, keeping the order
 * of the others. The round-robin position is not reset: the next pick
 * starts at (rr + 1) mod n, as in the Go package. A running check of a
 * dropped slot is forgotten: its report will be refused. Slots chained as
 * equal (dup) must be dropped together. */
UL_FUNC void ul_remove(ul_list *l, const unsigned char *drop);

/* Picks an eligible member by the list's strategy and returns its slot,
 * or -1 (state unchanged) when none is eligible. Eligible: healthy (score
 * >= 0) and in the lowest tier that has a healthy member; every member
 * while in panic. key: hash of the key (hash strategy); now: the clock,
 * read for slow start only (pass anything when slow_start is 0).
 * round_robin: the first eligible member after the last pick.
 * least_conn: the pick counts as in flight until ul_release. */
UL_FUNC int32_t ul_pick(ul_list *l, uint64_t key, double now);

/* Score changes applied to slot and every slot in its ring of equal
 * backends (as are check results). now: for slow start. */
UL_FUNC void ul_up(ul_list *l, int32_t slot, double now);
UL_FUNC void ul_down(ul_list *l, int32_t slot, double now);

/* Sets the weight (1..UL_MAX_WEIGHT) of slot and its ring. A weight of 0
 * is outside the contract but safe: every strategy still picks an
 * eligible member (while every eligible weight is 0, hash and random
 * share equally, weighted keeps the first). */
UL_FUNC void ul_set_weight(ul_list *l, int32_t slot, uint32_t weight);

/* least_conn: ends one in-flight pick of slot's ring (the member with the
 * most in flight). Returns 0 when none was in flight. */
UL_FUNC int ul_release(ul_list *l, int32_t slot);

/* Tier for a check that took secs: <0.1 ms 0, <1 ms 1, <10 ms 2,
 * <100 ms 3, <1 s 4, else 5. */
UL_FUNC int ul_latency_tier(double secs);

/* 64-bit hash of bytes (backends and hash keys). */
UL_FUNC uint64_t ul_hash(const void *p, size_t len);

/* --- the check scheduler, low level ----------------------------------- */

enum { UL_EV_NONE = 0, UL_EV_START, UL_EV_WAKE, UL_EV_TIMEOUT };

/* Moves every event due at or before now into the ready queue and returns
 * how many are ready. Events created while the ready queue is drained are
 * left for the next collect, so a check that yields is resumed once per
 * step and a step always ends. A now that is not finite is ignored (the
 * list's clock stays at the last finite one). A check's deadline and its
 * next start are always later than its start, however small the timeout
 * or interval; a sum that overflows is inf, never due. */
UL_FUNC uint32_t ul_collect(ul_list *l, double now);

/* Takes the next ready event: returns its kind and sets *slot and *gen.
 *  UL_EV_START:   a check was started (state running, deadline set);
 *                 run it and report with ul_report(slot, gen, ...).
 *  UL_EV_WAKE:    a running check asked to be woken (ul_sleep): resume it.
 *  UL_EV_TIMEOUT: the check passed its deadline; it was counted as failed
 *                 and the next one scheduled: abandon it.
 * UL_EV_NONE when the ready queue is empty. */
UL_FUNC int ul_take(ul_list *l, int32_t *slot, uint64_t *gen);

/* The kind of event the next ul_take returns, and its slot, without
 * taking it: with no other call on l in between, ul_take returns that
 * very event. A binding allocates what handling it needs first, so that
 * running out of memory leaves the event where it was (UL_EV_START: the
 * check not started; UL_EV_TIMEOUT: not counted). UL_EV_NONE when none. */
UL_FUNC int ul_peek(ul_list *l, int32_t *slot);

/* Puts the running check (slot, gen), started by ul_take but whose result
 * cannot be handled (memory ran out), back to idle and due now, without
 * counting it: the next ul_collect starts it again. Returns 0 when the
 * check is stale. */
UL_FUNC int ul_cancel(ul_list *l, int32_t slot, uint64_t gen);

/* Asks for the running check (slot, gen) to be woken at time t (UL_EV_WAKE)
 * unless its deadline comes first (as it does for a NaN t). Returns 0 when
 * the check is stale. */
UL_FUNC int ul_sleep(ul_list *l, int32_t slot, uint64_t gen, double t);

/* Reports the end of check (slot, gen) at time now: ok != 0 is Up, else
 * Down; tier >= 0 moves the ring to that tier (clamped), -1 keeps it. The
 * next check is scheduled. Returns 1 when applied, 0 when the report is
 * stale (timed out, removed, shut down, or a later check). */
UL_FUNC int ul_report(ul_list *l, int32_t slot, uint64_t gen, int ok, double now,
              int tier);

/* Time of the earliest pending event (ready ones count as l->now), or
 * infinity when nothing is scheduled. */
UL_FUNC double ul_next_time(const ul_list *l);

/* Wake-ups: a scheduler that sleeps until ul_next_wake rather than
 * ul_next_time serves the events due within the slack of the first one
 * with one wake-up. No check starts later than the slack after its time
 * (one with nothing after it within the slack starts on time), and the
 * events of running checks (a wake-up, a deadline) are served on time.
 * The slack is min(UL_SLACK_MAX, interval / 100); with jitter, at least
 * min(UL_SLACK_JITTER_MAX, interval x jitter / 5), a tenth of the window
 * jitter spreads a start over. */
#ifndef UL_SLACK_MAX
#define UL_SLACK_MAX 1e-2
#endif
#ifndef UL_SLACK_JITTER_MAX
#define UL_SLACK_JITTER_MAX 1e-1
#endif
UL_FUNC double ul_slack(const ul_list *l);

/* When to wake up next (see above): the latest event time within the
 * slack of the earliest pending one and not after the earliest event of a
 * running check; l->now when events are ready; infinity when nothing is
 * scheduled. */
UL_FUNC double ul_next_wake(const ul_list *l);

/* 1 when the running check (slot, gen) is current. */
UL_FUNC int ul_current(const ul_list *l, int32_t slot, uint64_t gen);

/* Stops every check: nothing is scheduled afterwards and every report is
 * refused. Scores, pick, up and down keep working. Idempotent. */
UL_FUNC void ul_shutdown(ul_list *l);

/* Uniform double in [0, 1) from the list's generator. */
UL_FUNC double ul_random(ul_list *l);

/* Whether the member in slot may be picked now (0 for a free slot). */
UL_FUNC int ul_eligible(const ul_list *l, int32_t slot);

/* Puts an empty list (n == 0) on the eager path: every member's elig
 * rewritten at a panic or tier flip, as before lazy eligibility. The
 * reference model of spec/c/test_panic.c; no-op on a list with members. */
UL_FUNC void ul_eager(ul_list *l);

/* --- lock-free picks on a shared block (rr.c) -------------------------- */

/* What a lock-free pick needs of the block that never changes once it is
 * laid out (a shared block never grows): read once, under the lock, so
 * that the pick reads no header field a repair rewrites. ok: the list
 * picks lock-free (l->lockfree, round_robin, lazy). */
typedef struct ul_lfview {
  uint32_t off_bm[3], bm_words[3];
  uint32_t off_order, off_picks, cap, ok;
  /* hash (maglev.c): hash set when the list picks lock-free by key
   * (l->lockfree, hash, lazy); the nodes, the two tables (off_mag and
   * off_mag2 swap, always between these two) and their size */
  uint32_t hash, off_nodes, off_mag_a, off_mag_b, mag_m;
  /* random (random.c): random set when the list draws lock-free
   * (l->lockfree, random, lazy); where the trees and the sets start */
  uint32_t random, off_fen, off_dense;
  /* weighted (weighted.c): weighted set when the list picks lock-free
   * from a period of picks (l->lockfree, weighted, lazy); where it is */
  uint32_t weighted, off_ws;
} ul_lfview;
UL_FUNC void ul_lf_view(ul_lfview *v, const ul_list *l);

/* Every locked section on a shared block begins with ul_write_begin (the
 * sequence in rr_word made odd: every lock-free pick from then on fails
 * its CAS; l->rr takes the position lock-free picks moved it to) and ends
 * with ul_write_end (the position stored back, the sequence even again).
 * A begin that finds the sequence odd (a holder died inside) keeps l->rr.
 * Both do nothing on a block without lock-free picks (l->lockfree 0). */
UL_FUNC void ul_write_begin(ul_list *l);
UL_FUNC void ul_write_end(ul_list *l);

/* A round-robin pick without the lock: the slot, -1 when none is eligible,
 * or UL_PICK_LOCK when it must be made under the lock (a writer is in, the
 * list is ramping, the strategy is not round robin, *ver != want, or it
 * lost the race for the position UL_LF_TRIES times). The same pick as
 * ul_pick's, at one moment between writers. ver: NULL, or the caller's
 * cache version to compare, read inside the sequence. */
#define UL_PICK_LOCK (-2)
#define UL_LF_TRIES 4
UL_FUNC int32_t ul_pick_lockfree(ul_list *l, const ul_lfview *v,
                                 const uint32_t *ver, uint32_t want);

/* A hash pick without the lock (maglev.c), a pure reader: the slot of the
 * key's entry in the complete table when that member is eligible, -1 when
 * none is eligible, else UL_PICK_LOCK (a writer is in, ramping, a build is
 * due or under way, no table yet, the entry's member not eligible: a torn
 * read, *ver != want, or the sequence moved UL_LF_TRIES times).
 * key: ul_hash's. It does not move l->rr: hash never reads it. */
UL_FUNC int32_t ul_pick_lockfree_hash(ul_list *l, const ul_lfview *v,
                                      const uint32_t *ver, uint32_t want,
                                      uint64_t key);

/* A random pick without the lock (random.c): the draw a locked pick
 * would make, the generator moved by one CAS of l->rng after the sequence
 * check, so that sequential picks draw exactly a private list's
 * sequence; else UL_PICK_LOCK (a writer is in, ramping, *ver != want, or
 * the sequence or the generator moved UL_LF_TRIES times). It does not move
 * l->rr: random never reads it. */
UL_FUNC int32_t ul_pick_lockfree_random(ul_list *l, const ul_lfview *v,
                                        const uint32_t *ver, uint32_t want);

/* A weighted pick without the lock (weighted.c): the next slot of the
 * period of picks a locked pick recorded (smooth weighted round robin
 * repeats itself every total / gcd picks once it is on its cycle), the
 * index moved by one CAS of rr_word as round robin's position is; -1
 * when none is eligible; else UL_PICK_LOCK (no period: a change since,
 * ramping, a state not yet on its cycle, a period over UL_WS_MAX picks;
 * a writer is in, *ver != want, or lost races UL_LF_TRIES times). */
#define UL_WS_MAX 1024u
UL_FUNC int32_t ul_pick_lockfree_weighted(ul_list *l, const ul_lfview *v,
                                          const uint32_t *ver, uint32_t want);

/* After a writer died in the middle of a change (shared lists): keeps the
 * members and their primary state, recomputes every derived field
 * (counters, tiers, panic, eligibility and its sums, bitmaps, trees, the
 * event heap and ready queue, free slots) from them. */
UL_FUNC void ul_repair(ul_list *l);

#endif
