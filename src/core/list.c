/*
 * core/list.c - the scored backend list: its members (append, remove,
 * grow), their scores, tiers and weights, which of them are eligible for
 * a pick and with which effective weight (slow start), and ul_pick, the
 * entry of a pick. It tells the strategies (pick.h) what changed and the
 * event heap (heap.h) when a check is due; the check lifecycle is in
 * sched.c. No Lua, no allocation: the caller owns the block.
 */
#include "list.h"
#include "block.h"
#include "heap.h"
#include "pick.h"
#include "rand.h"
#include "atomic.h"

#include <math.h>
#include <string.h>

/* ---- the block --------------------------------------------------------- */

/* The list's part of the block (block.h), then the strategies' part:
 * offsets for cap slots and options o into l (when not NULL); returns the
 * size. */
static size_t block_layout(ul_list *l, uint32_t cap, const ul_opts *o,
                           uint32_t prev_m) {
  size_t off = ul_align8(sizeof(ul_list)), o_nodes, o_order, o_heap, o_ready;
  size_t o_stats, o_picks;
  o_nodes = off;
  off = ul_align8(off + (size_t)cap * sizeof(ul_node));
  o_order = off;
  off = ul_align8(off + (size_t)cap * sizeof(int32_t));
  o_heap = off;
  off = ul_align8(off + (size_t)cap * sizeof(ul_hent));
  o_ready = off;
  off = ul_align8(off + (size_t)cap * sizeof(int32_t));
  o_stats = off;
  off = ul_align8(off + (size_t)cap * sizeof(ul_stat));
  o_picks = off;
  off = ul_align8(off + (size_t)cap * sizeof(uint64_t));
  off = ulp_layout(l, cap, o, off, prev_m);
  if (off == 0 || off > UINT32_MAX) return 0; /* offsets are 32-bit */
  if (l) {
    l->cap = cap;
    l->off_nodes = (uint32_t)o_nodes;
    l->off_order = (uint32_t)o_order;
    l->off_heap = (uint32_t)o_heap;
    l->off_ready = (uint32_t)o_ready;
    l->off_stats = (uint32_t)o_stats;
    l->off_picks = (uint32_t)o_picks;
  }
  return off;
}

size_t ul_size_opts(uint32_t cap, const ul_opts *o) {
  if (cap == 0 || cap > (uint32_t)INT32_MAX / 2) return 0;
  return block_layout(NULL, cap, o, 0);
}

size_t ul_size(uint32_t cap, int strategy) {
  ul_opts o;
  ul_opts_default(&o);
  o.strategy = strategy;
  o.tier_max = UL_MAX_TIER; /* weighted: the most trees */
  return ul_size_opts(cap, &o);
}

size_t ul_grow_size(const ul_list *src, uint32_t cap) {
  if (cap == 0 || cap > (uint32_t)INT32_MAX / 2) return 0;
  return block_layout(NULL, cap, &src->opts, src->maglev_m);
}

/* Slots first..cap-1 as free, each pointing at the next. */
static void block_free_slots(ul_list *l, uint32_t first, uint32_t cap) {
  ul_node *nd = ul_nodes(l);
  uint32_t i;
  for (i = first; i < cap; i++) {
    nd[i].pos = -1;
    nd[i].heap = -1;
    UL_WST(&nd[i].cls, (uint8_t)UL_NSETS); /* in no class: never eligible (ulb_elig) */
    nd[i].dup = i + 1 < cap ? (int32_t)(i + 1) : -1;
  }
}

static void pick_state(ul_list *l);

static void block_init(ul_list *l, uint32_t cap, const ul_opts *o,
                       uint64_t seed, uint32_t prev_m) {
  memset(l, 0, block_layout(NULL, cap, o, prev_m));
  block_layout(l, cap, o, prev_m);
  l->opts = *o;
  l->lazy = 1;
  l->rr = -1;
  l->rr_word = (uint32_t)l->rr; /* sequence 0, the same position */
  l->active_tier = -1;
  l->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
  block_free_slots(l, 0, cap);
  l->free_head = 0;
  pick_state(l);
  ulp_rebuild(l); /* the strategies' empty state: not all zeros (kst) */
}

void ul_init(ul_list *l, uint32_t cap, const ul_opts *o, uint64_t seed) {
  block_init(l, cap, o, seed, 0);
}

double ul_random(ul_list *l) { return ulr_unit(l); }

void ul_eager(ul_list *l) {
  if (l->n != 0) return;
  l->lazy = 0;
  pick_state(l);
  ulp_rebuild(l);
}

/* ---- eligibility ------------------------------------------------------- */

/* A member may be picked when healthy and in the lowest tier that has a
 * healthy member; in panic, every member may. */
static int member_eligible(const ul_list *l, const ul_node *n) {
  if (l->panic_on) return 1;
  return n->score >= 0 && (int32_t)n->tier == l->active_tier;
}

static int64_t member_ew(const ul_node *n) {
  return (int64_t)n->weight * n->ramp;
}

/* Sets elig and ew of n, keeping its weighted current weight where it was
 * (see weighted.c: cur is stored relative to the pick count while
 * eligible) and the totals. Returns whether anything changed. */
static int member_set_elig(ul_list *l, ul_node *n, int e, int64_t ew) {
  int64_t c;
  if (n->elig == e && n->ew == ew) return 0;
  c = n->elig ? n->cur + n->ew * l->t : n->cur;
  if (n->elig) {
    UL_WST(&l->nelig, l->nelig - 1);
    UL_WST(&l->total_ew, l->total_ew - n->ew);
  }
  n->elig = (uint8_t)e;
  n->ew = ew;
  if (e) {
    UL_WST(&l->nelig, l->nelig + 1);
    UL_WST(&l->total_ew, l->total_ew + ew);
  }
  n->cur = e ? c - ew * l->t : c;
  return 1;
}

/* ---- lazy eligibility --------------------------------------------------
 * A lazy list (every strategy; ul_eager makes an eager one) never rewrites
 * elig: a member counts in the structures of its tier while healthy (rr.c's
 * bitmap, random.c's Fenwick tree, weighted.c's tree 0 while its tier is
 * the lowest healthy one) and in those of all members, and in the
 * per-tier sums; a pick reads panic_on and active_tier (through bm_pick,
 * elig_mask, set_pick, fen_pick: pick_state). A change to a member's
 * health, tier, weight or ramp is member_out before it and member_in after
 * it: O(1), or O(log n) for random's trees. nelig and total_ew are
 * derived (pick_state). Every list keeps node.cls (its tier while healthy)
 * and, for random and least_conn, the sets it names (random.c). */

static uint32_t member_cls(const ul_node *n) {
  return n->score >= 0 ? n->tier : UL_CLS_DOWN;
}

static void member_out(ul_list *l, ul_node *n) {
  if (!l->lazy) return;
  l->all_ew -= n->ew;
  if (n->score >= 0) l->tier_ew[n->tier] -= n->ew;
  ulp_lazy_member(l, (uint32_t)n->pos, 0);
}

static void member_in(ul_list *l, ul_node *n) {
  uint32_t c = member_cls(n);
  if (c != n->cls) {
    uint32_t old = n->cls;
    UL_WST(&n->cls, (uint8_t)c); /* a lock-free hash pick reads it */
    ulp_class(l, (uint32_t)n->pos, old);
  }
  if (!l->lazy) return;
  n->ew = member_ew(n);
  l->all_ew += n->ew;
  if (n->score >= 0) l->tier_ew[n->tier] += n->ew;
  ulp_lazy_member(l, (uint32_t)n->pos, 1);
}

/* What a pick reads of the panic state and the lowest healthy tier. */
static void pick_state(ul_list *l) {
  l->set_pick = l->panic_on           ? UL_SET_ALL
                : l->active_tier >= 0 ? (uint32_t)l->active_tier
                                      : 0;
  UL_WST(&l->fen_pick, l->lazy ? l->set_pick : 0);
  l->off_set_pick = l->off_dense + (uint32_t)(l->set_pick * l->cap * 4u);
  l->off_fen_pick = l->off_fen + (uint32_t)(l->fen_pick * (l->cap + 1u) * 8u);
  ulp_kst_state(l, !l->lazy ? 0 : l->panic_on ? 2 : 1,
                l->lazy && l->kst_ntree && l->active_tier >= 0
                    ? ulb_kst_tree(l, (uint32_t)l->active_tier) : 0);
  if (!l->lazy) return;
  /* bm_pick, nelig, elig_mask, total_ew, fen_pick: UL_WST, a lock-free
   * pick reads them (atomic.h) */
  UL_WST(&l->bm_pick,
         l->active_tier > 0 ? (uint32_t)l->active_tier * l->bm_stride : 0);
  if (l->panic_on) {
    UL_WST(&l->elig_mask, (1u << UL_NSETS) - 1); /* every class, down too */
    UL_WST(&l->nelig, l->n);
    UL_WST(&l->total_ew, l->all_ew);
  } else if (l->active_tier >= 0) {
    UL_WST(&l->elig_mask, 1u << l->active_tier);
    UL_WST(&l->nelig, l->tier_healthy[l->active_tier]);
    UL_WST(&l->total_ew, l->tier_ew[l->active_tier]);
  } else {
    UL_WST(&l->elig_mask, 0u);
    UL_WST(&l->nelig, 0);
    UL_WST(&l->total_ew, 0);
  }
}

int ul_eligible(const ul_list *l, int32_t s) {
  const ul_node *n = &ul_nodes(l)[s];
  if (!(n->flags & UL_F_MEMBER) || n->pos < 0) return 0;
  if (l->lazy) return member_eligible(l, n);
  return n->elig;
}

static void member_update(ul_list *l, int32_t s) {
  ul_node *n = &ul_nodes(l)[s];
  int old_e = n->elig;
  int64_t old_ew = n->ew;
  if (n->pos < 0 || l->lazy) return;
  if (member_set_elig(l, n, member_eligible(l, n), member_ew(n)))
    ulp_update(l, (uint32_t)n->pos, old_e, old_ew);
}

/* Lazy lists: member n had eligibility e0 and effective weight w0 before
 * a change that moved no flag: tell the strategies what member_update
 * tells them on an eager list (hash rebuilds its table). */
static void lazy_changed(ul_list *l, const ul_node *n, int e0, int64_t w0) {
  if (ulb_elig(l, n) != e0 || n->ew != w0) ulp_lazy_changed(l, 0);
}

/* Eager lists: every member's elig and ew anew. */
static void members_elig(ul_list *l) {
  uint32_t p;
  for (p = 0; p < l->n; p++) {
    ul_node *n = ulb_at(l, p);
    member_set_elig(l, n, member_eligible(l, n), member_ew(n));
  }
}

/* Recounts healthy members per tier and sets the eligibility of all. */
static void members_update(ul_list *l) {
  uint32_t p, t;
  l->healthy = 0;
  for (t = 0; t <= UL_MAX_TIER; t++) l->tier_healthy[t] = 0;
  for (p = 0; p < l->n; p++) {
    const ul_node *n = ulb_at(l, p);
    if (n->score >= 0) {
      l->healthy++;
      l->tier_healthy[n->tier]++;
    }
  }
  l->active_tier = -1;
  for (t = 0; t <= UL_MAX_TIER && l->active_tier < 0; t++)
    if (l->tier_healthy[t]) l->active_tier = (int32_t)t;
  UL_WST(&l->panic_on,
         (uint32_t)(l->opts.panic > 0 && (double)l->healthy < l->opts.panic * l->n));
  for (p = 0; p < l->n; p++) UL_WST(&ulb_at(l, p)->cls, (uint8_t)member_cls(ulb_at(l, p)));
  if (l->lazy) {
    l->all_ew = 0;
    for (t = 0; t <= UL_MAX_TIER; t++) l->tier_ew[t] = 0;
    for (p = 0; p < l->n; p++) {
      ul_node *n = ulb_at(l, p);
      n->elig = 0;
      n->ew = member_ew(n);
      l->all_ew += n->ew;
      if (n->score >= 0) l->tier_ew[n->tier] += n->ew;
    }
  } else {
    members_elig(l);
  }
  pick_state(l);
  ulp_rebuild(l);
}

/* After s changed health or tier (it had eligibility e0 and effective
 * weight w0 before): one member changes, or, when the lowest healthy tier
 * or the panic state moves, all of them (eager lists; a lazy one only
 * moves the flag and the tier, its totals follow). */
static void tiers_refresh(ul_list *l, int32_t s, int e0, int64_t w0) {
  int32_t at = -1;
  uint32_t t, pn;
  int flip;
  for (t = 0; t <= UL_MAX_TIER && at < 0; t++)
    if (l->tier_healthy[t]) at = (int32_t)t;
  pn = l->opts.panic > 0 && (double)l->healthy < l->opts.panic * l->n;
  flip = at != l->active_tier || pn != l->panic_on;
  l->active_tier = at;
  UL_WST(&l->panic_on, pn);
  if (l->lazy || flip) pick_state(l);
  if (l->lazy) {
    if (flip) ulp_lazy_changed(l, 1);
    else lazy_changed(l, &ul_nodes(l)[s], e0, w0);
  } else if (flip) {
    members_elig(l);
    ulp_refresh(l);
  } else {
    member_update(l, s);
  }
}

/* ---- slow start -------------------------------------------------------- */

/* due when it is later than t, else the next double after t: a tiny step
 * vanishes into t's magnitude (t + step == t), or underflowed to 0. Being
 * later than the time it was set at, ramp_next keeps a clock that stands
 * still from running ramp_tick on every pick. */
static double ramp_after(double t, double due) {
  return due > t ? due : nextafter(t, INFINITY);
}

/* The slow start step 1..UL_RAMP_STEPS at elapsed seconds after turning
 * healthy: 1 + floor(elapsed / step), range-checked before the cast
 * (uint8_t of NaN or of a value past 255 is undefined). Past the last step
 * (elapsed inf when the clock reads inf, or anything over a step of 0)
 * the ramp is over; below the first (the clock went back) or NaN (0/0:
 * no time passed over a step of 0; inf/inf) it is at the first, which
 * keeps the weight above 0 and is what any step > 0 gives at elapsed 0. */
static uint8_t ramp_step(double elapsed, double step) {
  double q = elapsed / step;
  if (q >= UL_RAMP_STEPS - 1) return UL_RAMP_STEPS;
  if (!(q >= 0)) return 1;
  return (uint8_t)(1 + floor(q)); /* q in [0, 9): 1..9 */
}

/* The member ramps from 1/10 of its weight from now on. A now that is not
 * finite cannot time a ramp: since would be NaN or inf, ramp_next NaN
 * (which no pick's now reaches: every later ramp would stall) or inf; the
 * member gets its full weight at once, as without slow start. */
static void ramp_start(ul_list *l, ul_node *n, double now) {
  double at;
  if (!(l->opts.slow_start > 0)) return;
  if (!isfinite(now)) {
    n->ramp = UL_RAMP_STEPS;
    return;
  }
  n->since = now;
  n->ramp = 1;
  at = ramp_after(now, now + l->opts.slow_start / UL_RAMP_STEPS);
  UL_WST(&l->ramping, l->ramping + 1); /* a lock-free pick reads it */
  if (l->ramping == 1 || at < l->ramp_next) l->ramp_next = at;
}

/* Moves ramping members to the step their time has reached. ul_pick calls
 * it only when now >= ramp_next: never at a NaN now. */
static void ramp_tick(ul_list *l, double now) {
  double step = l->opts.slow_start / UL_RAMP_STEPS, next = INFINITY;
  uint32_t p, ramping = 0;
  for (p = 0; p < l->n; p++) {
    int32_t s = ul_order(l)[p];
    ul_node *n = &ul_nodes(l)[s];
    int64_t w0 = n->ew;
    if (n->ramp >= UL_RAMP_STEPS) continue;
    member_out(l, n);
    n->ramp = ramp_step(now - n->since, step);
    member_in(l, n);
    if (l->lazy) lazy_changed(l, n, ulb_elig(l, n), w0);
    else member_update(l, s);
    if (n->ramp < UL_RAMP_STEPS) {
      double at = ramp_after(now, n->since + n->ramp * step);
      ramping++;
      if (at < next) next = at;
    }
  }
  UL_WST(&l->ramping, ramping);
  l->ramp_next = next;
  if (l->lazy) pick_state(l);
}

/* ---- scores and tiers -------------------------------------------------- */

static void score_set(ul_list *l, int32_t s, double v, double now) {
  ul_node *n = &ul_nodes(l)[s];
  int was = n->score >= 0, is = v >= 0, e0;
  int64_t w0 = n->ew;
  if (was == is || n->pos < 0) {
    n->score = v;
    return;
  }
  e0 = ulb_elig(l, n);
  member_out(l, n);
  n->score = v;
  ul_stats(l)[s].changed = now;
  ul_stats(l)[s].flips++;
  if (is) {
    l->healthy++;
    l->tier_healthy[n->tier]++;
    ramp_start(l, n, now);
  } else {
    l->healthy--;
    l->tier_healthy[n->tier]--;
  }
  member_in(l, n);
  tiers_refresh(l, s, e0, w0);
}

static void tier_set(ul_list *l, int32_t s, int tier) {
  ul_node *n = &ul_nodes(l)[s];
  int e0;
  int64_t w0 = n->ew;
  if (tier < l->opts.tier_min) tier = l->opts.tier_min;
  if (tier > l->opts.tier_max) tier = l->opts.tier_max;
  if (n->tier == tier) return;
  e0 = ulb_elig(l, n);
  if (n->pos >= 0) member_out(l, n);
  if (n->score >= 0) {
    l->tier_healthy[n->tier]--;
    l->tier_healthy[tier]++;
  }
  n->tier = (uint8_t)tier;
  if (n->pos >= 0) member_in(l, n);
  tiers_refresh(l, s, e0, w0);
}

static double score_up(const ul_list *l, double v) {
  v += l->opts.success_delta;
  return v > l->opts.high_score ? l->opts.high_score : v;
}

static double score_down(const ul_list *l, double v) {
  v += l->opts.fail_delta;
  return v < l->opts.low_score ? l->opts.low_score : v;
}

void ulc_apply(ul_list *l, int32_t s, int up, double now, int tier) {
  int32_t t = s;
  do {
    double v = ul_nodes(l)[t].score;
    score_set(l, t, up ? score_up(l, v) : score_down(l, v), now);
    if (tier >= 0) tier_set(l, t, tier);
    t = ul_nodes(l)[t].dup;
  } while (t != s);
}

void ul_up(ul_list *l, int32_t s, double now) { ulc_apply(l, s, 1, now, -1); }

void ul_down(ul_list *l, int32_t s, double now) {
  ulc_apply(l, s, 0, now, -1);
}

void ul_set_weight(ul_list *l, int32_t s, uint32_t weight) {
  int32_t t = s;
  do {
    ul_node *n = &ul_nodes(l)[t];
    int64_t w0 = n->ew;
    if (n->pos >= 0) member_out(l, n);
    n->weight = weight;
    if (n->pos >= 0) member_in(l, n);
    if (!l->lazy) member_update(l, t);
    else if (n->pos >= 0) lazy_changed(l, n, ulb_elig(l, n), w0);
    t = n->dup;
  } while (t != s);
  if (l->lazy) pick_state(l);
}

int ul_release(ul_list *l, int32_t s) {
  ul_node *nd = ul_nodes(l);
  int32_t t = s, best = -1;
  do {
    if (nd[t].inflight > 0 && (best < 0 || nd[t].inflight > nd[best].inflight))
      best = t;
    t = nd[t].dup;
  } while (t != s);
  if (best < 0) return 0;
  nd[best].inflight--;
  return 1;
}

/* ---- members ----------------------------------------------------------- */

/* The new member n (slot s) joins the check schedule: its first check is
 * due at now (the last collect's time when now is not finite: ulh_time),
 * spread over an interval when jittered. */
static void member_schedule(ul_list *l, ul_node *n, int32_t s, double now) {
  n->flags |= UL_F_CHECKED;
  l->checked++;
  if (l->shut) return;
  l->unchecked++;
  n->state = UL_IDLE;
  n->next = ulh_time(l, now) +
            (l->opts.jitter > 0 ? ulr_unit(l) * l->opts.interval : 0);
  ulh_resched(l, s);
}

int32_t ul_append(ul_list *l, int checked, int32_t dup_of, double now,
                  uint32_t weight, uint64_t hash, int ramp) {
  int32_t s = l->free_head;
  ul_node *n;
  if (s < 0) return -1;
  n = &ul_nodes(l)[s];
  l->free_head = n->dup;
  /* all but cls, which a lock-free hash pick may read through a table
   * entry still naming the slot: stored once, below */
  memset(n, 0, offsetof(ul_node, cls));
  memset(&n->cls + 1, 0, sizeof *n - offsetof(ul_node, cls) - 1);
  n->heap = -1;
  n->dup = s; /* a ring of one */
  n->weight = weight;
  n->hash = hash;
  n->ramp = UL_RAMP_STEPS;
  n->tier = (uint8_t)l->opts.tier_init;
  n->score = l->opts.initial_score;
  n->pos = (int32_t)l->n;
  UL_WST(&n->cls, (uint8_t)UL_NSETS); /* in no set yet: member_in puts it in */
  UL_WST(&ul_order(l)[l->n], s); /* order, n, picks: read lock-free */
  UL_WST(&l->n, l->n + 1);
  n->flags = UL_F_MEMBER;
  memset(&ul_stats(l)[s], 0, sizeof(ul_stat));
  UL_WST(&ul_picks(l)[s], 0);
  ul_stats(l)[s].last_check = ul_stats(l)[s].latency = NAN;
  ul_stats(l)[s].changed = now;
  if (n->score >= 0) {
    l->healthy++;
    l->tier_healthy[n->tier]++;
    if (ramp) ramp_start(l, n, now);
  }
  member_in(l, n);
  tiers_refresh(l, s, 0, 0);
  if (dup_of >= 0) {
    n->dup = ul_nodes(l)[dup_of].dup;
    ul_nodes(l)[dup_of].dup = s;
  }
  if (checked) member_schedule(l, n, s, now);
  return s;
}

/* Frees slot s, a member being dropped: out of the heap, the counters and
 * the eligible set. */
static void member_drop(ul_list *l, int32_t s) {
  ul_node *x = &ul_nodes(l)[s];
  if (x->heap >= 0) ulh_remove(l, s);
  if (x->flags & UL_F_CHECKED) {
    l->checked--;
    if (x->checks == 0 && !l->shut) l->unchecked--;
  }
  if (l->lazy) x->ew = 0; /* the totals are recounted (members_update) */
  else member_set_elig(l, x, 0, 0);
  x->flags = 0;
  x->state = UL_IDLE;
  x->pos = -1;
  UL_WST(&x->cls, (uint8_t)UL_NSETS); /* a table entry still naming it is not eligible */
  x->dup = l->free_head;
  l->free_head = s;
}

void ul_remove(ul_list *l, const unsigned char *drop) {
  int32_t *ord = ul_order(l);
  uint32_t p, n = 0;
  for (p = 0; p < l->n; p++) {
    int32_t s = ord[p];
    if (drop[s]) {
      member_drop(l, s);
    } else {
      ul_nodes(l)[s].pos = (int32_t)n;
      UL_WST(&ord[n++], s);
    }
  }
  UL_WST(&l->n, n);
  ulh_ready_prune(l); /* the dropped slots' flags are cleared */
  members_update(l);
}

void ul_grow(ul_list *dst, uint32_t cap, const ul_list *src) {
  int32_t *tail;
  block_init(dst, cap, &src->opts, src->rng, src->maglev_m);
  memcpy(ul_nodes(dst), ul_nodes(src), (size_t)src->cap * sizeof(ul_node));
  memcpy(ul_order(dst), ul_order(src), (size_t)src->n * sizeof(int32_t));
  memcpy(ul_stats(dst), ul_stats(src), (size_t)src->cap * sizeof(ul_stat));
  memcpy(ul_picks(dst), ul_picks(src), (size_t)src->cap * sizeof(uint64_t));
  ulh_copy(dst, src);
  dst->n = src->n;
  dst->rr = src->rr;
  dst->checked = src->checked;
  dst->unchecked = src->unchecked;
  dst->healthy = src->healthy;
  memcpy(dst->tier_healthy, src->tier_healthy, sizeof dst->tier_healthy);
  dst->active_tier = src->active_tier;
  dst->panic_on = src->panic_on;
  dst->lazy = src->lazy;
  /* bm_pick follows from dst's stride: pick_state, below */
  memcpy(dst->tier_ew, src->tier_ew, sizeof dst->tier_ew);
  dst->all_ew = src->all_ew;
  dst->nelig = src->nelig;
  dst->total_ew = src->total_ew;
  dst->t = src->t;
  /* weighted: the counts in src's form (pick_state keeps it); the trees
   * are rebuilt below */
  memcpy(dst->kst_c, src->kst_c, sizeof dst->kst_c);
  dst->kst_mode = src->kst_mode;
  dst->kst_pick = src->kst_pick;
  dst->ramping = src->ramping;
  dst->ramp_next = src->ramp_next;
  dst->shut = src->shut;
  dst->gen = src->gen;
  dst->now = src->now;
  /* free slots: the old free list, then the new slots */
  block_free_slots(dst, src->cap, cap);
  dst->free_head = src->free_head;
  tail = &dst->free_head;
  while (*tail >= 0) tail = &ul_nodes(dst)[*tail].dup;
  *tail = src->cap < cap ? (int32_t)src->cap : -1;
  pick_state(dst);
  ulp_rebuild(dst);
  ulp_maglev_copy(dst, src); /* picks read it while the next one builds */
}

/* ---- pick -------------------------------------------------------------- */

/* Slow start moves on here, before the strategy runs, so that the
 * strategies never call back into the list. */
int32_t ul_pick(ul_list *l, uint64_t key, double now) {
  uint32_t pos;
  int32_t s;
  if (l->ramping && now >= l->ramp_next) ramp_tick(l, now);
  if (l->nelig == 0) return -1;
  /* reconcile keeps rr as it was (the Go package): the next pick starts at
   * (rr + 1) mod n, which this rr gives as rr + 1 */
  if (l->rr >= (int32_t)l->n) l->rr = (int32_t)(((uint32_t)l->rr + 1) % l->n) - 1;
  pos = ulp_pick(l, key);
  l->rr = (int32_t)pos;
  s = ul_order(l)[pos];
  if (l->lockfree) UL_ADD(&ul_picks(l)[s], 1); /* lock-free picks add too */
  else ul_picks(l)[s]++;
  return s;
}

/* ---- repair (shared lists) ----------------------------------------------
 * A process that died in the middle of any change leaves the primary state
 * (the member flags, the nodes' scores, weights, tiers and check state,
 * pick order) about right and the derived state anything. ul_repair keeps
 * the members (a slot flagged UL_F_MEMBER; order first, then the others in
 * slot order), cuts rings of equal backends that do not close through
 * members, and recomputes everything else from them. */
void ul_repair(ul_list *l) {
  ul_node *nd = ul_nodes(l);
  int32_t *ord = ul_order(l);
  uint32_t s, p, n = 0, oldn = l->n < l->cap ? l->n : l->cap;
  uint32_t ramping = 0;
  int32_t *tail;
  /* offsets as laid out (a hash table swap may be half done), the hash
   * table to be built whole again; weighted: no period (its state is not
   * to be trusted: ulp_ws_sync must not replay it) */
  block_layout(l, l->cap, &l->opts, l->maglev_m);
  UL_WST(&l->ws_len, 0u);
  l->ws_base = l->ws_wait = l->ws_i = 0;
  for (s = 0; s < l->cap; s++) {
    ul_node *x = &nd[s];
    /* weighted: plain cur (in wrapping arithmetic: the state may be
     * anything), then no elig and the pick counts at 0 */
    uint64_t c = 0;
    if (!l->lazy) {
      if (x->elig) c = (uint64_t)l->t;
    } else if (x->cls < UL_NSETS && l->kst_ntree) { /* ulb_kst_count */
      uint32_t k = ulb_kst_tree(l, x->cls);
      c = (uint64_t)l->kst_c[k];
      if (l->kst_mode == 2 || k == l->kst_pick) c = (uint64_t)l->t - c;
    }
    x->cur = (int64_t)((uint64_t)x->cur + (uint64_t)x->ew * c);
    x->elig = 0;
    x->pos = -1;
    x->heap = -1;
    x->flags &= (uint8_t)~UL_F_READY;
    if (!(x->flags & UL_F_MEMBER)) x->flags = 0;
  }
  for (p = 0; p < oldn; p++) {
    int32_t t = ord[p];
    if (t >= 0 && (uint32_t)t < l->cap && (nd[t].flags & UL_F_MEMBER) &&
        nd[t].pos < 0) {
      nd[t].pos = (int32_t)n;
      UL_WST(&ord[n++], t);
    }
  }
  for (s = 0; s < l->cap; s++)
    if ((nd[s].flags & UL_F_MEMBER) && nd[s].pos < 0) {
      nd[s].pos = (int32_t)n;
      UL_WST(&ord[n++], (int32_t)s);
    }
  UL_WST(&l->n, n);
  for (s = 0; s < l->cap; s++) { /* a ring must come back through members */
    int32_t t;
    uint32_t k = 0;
    if (!(nd[s].flags & UL_F_MEMBER)) continue;
    t = nd[s].dup;
    while (k++ <= l->cap && t >= 0 && (uint32_t)t < l->cap &&
           (nd[t].flags & UL_F_MEMBER) && t != (int32_t)s)
      t = nd[t].dup;
    if (t != (int32_t)s) nd[s].dup = (int32_t)s;
  }
  tail = &l->free_head;
  for (s = 0; s < l->cap; s++) {
    if (nd[s].flags & UL_F_MEMBER) continue;
    nd[s].state = UL_IDLE;
    nd[s].ew = 0;
    *tail = (int32_t)s;
    tail = &nd[s].dup;
  }
  *tail = -1;
  l->checked = l->unchecked = 0;
  l->t = 0;
  memset(l->kst_c, 0, sizeof l->kst_c);
  UL_WST(&l->nelig, 0);
  UL_WST(&l->total_ew, 0);
  if (l->rr < -1) l->rr = -1;
  l->nheap = l->ready_len = l->ready_head = 0; /* every node's heap is -1 */
  for (p = 0; p < n; p++) {
    int32_t t = ord[p];
    ul_node *x = &nd[t];
    if (x->weight == 0 || x->weight > UL_MAX_WEIGHT) x->weight = 1;
    /* in the options' range: a weighted list has a tree for each tier of
     * it only */
    if (x->tier > l->opts.tier_max) x->tier = (uint8_t)l->opts.tier_max;
    if (x->tier < l->opts.tier_min) x->tier = (uint8_t)l->opts.tier_min;
    if (x->ramp < 1 || x->ramp > UL_RAMP_STEPS) x->ramp = UL_RAMP_STEPS;
    if (x->ramp < UL_RAMP_STEPS) ramping++;
    if (!(x->flags & UL_F_CHECKED)) continue;
    l->checked++;
    if (l->shut) continue;
    if (x->checks == 0) l->unchecked++;
    ulh_resched(l, t);
  }
  UL_WST(&l->ramping, ramping);
  l->ramp_next = ramping ? -INFINITY : INFINITY; /* the next pick recounts */
  members_update(l);
}
