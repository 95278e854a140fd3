/*
 * core/list.c - the scored backend list: scores, tiers and weights, which
 * members are eligible for a pick, and a per-backend check scheduler on a
 * binary heap of deadlines. The pick strategies are in pick.c. No Lua,
 * no allocation: the caller owns the block.
 */
#include "block.h"
#include "pick.h"
#include "rand.h"

#include <math.h>
#include <string.h>


void ul_opts_default(ul_opts *o) {
  o->strategy = UL_ROUND_ROBIN;
  o->tier_min = o->tier_max = o->tier_init = 0;
  o->panic = 0;
  o->slow_start = 0;
  o->interval = 1.0;
  o->timeout = 0.1;
  o->jitter = 0.0;
  o->initial_score = 1.0;
  o->low_score = -3.0;
  o->high_score = 3.0;
  o->fail_delta = -1.0;
  o->success_delta = 1.0;
}

const char *ul_opts_validate(const ul_opts *o, const char **field) {
  static const char *const names[] = {"interval", "timeout", "jitter",
                                      "initial_score", "low_score",
                                      "high_score", "fail_delta",
                                      "success_delta"};
  const double v[] = {o->interval, o->timeout, o->jitter, o->initial_score,
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
  RULE(o->tier_min >= 0 && o->tier_max <= UL_MAX_TIER &&
           o->tier_min <= o->tier_init && o->tier_init <= o->tier_max,
       "tiers", "must be integers with 0 <= min <= init <= max <= 10")
#undef RULE
  *field = NULL;
  return NULL;
}

/* ---- layout ------------------------------------------------------------ */


/* Computes the offsets for cap slots into l (when not NULL); returns size. */
static size_t layout(ul_list *l, uint32_t cap, int strategy, uint32_t prev_m) {
  size_t off = ul_align8(sizeof(ul_list)), o_nodes, o_order, o_heap, o_ready;
  o_nodes = off;
  off = ul_align8(off + (size_t)cap * sizeof(ul_node));
  o_order = off;
  off = ul_align8(off + (size_t)cap * sizeof(int32_t));
  o_heap = off;
  off = ul_align8(off + (size_t)cap * sizeof(int32_t));
  o_ready = off;
  off = ul_align8(off + (size_t)cap * sizeof(int32_t));
  off = ulp_layout(l, cap, strategy, off, prev_m);
  if (off == 0 || off > UINT32_MAX) return 0; /* offsets are 32-bit */
  if (l) {
    l->cap = cap;
    l->off_nodes = (uint32_t)o_nodes;
    l->off_order = (uint32_t)o_order;
    l->off_heap = (uint32_t)o_heap;
    l->off_ready = (uint32_t)o_ready;
  }
  return off;
}

size_t ul_size(uint32_t cap, int strategy) {
  if (cap == 0 || cap > (uint32_t)INT32_MAX / 2) return 0;
  return layout(NULL, cap, strategy, 0);
}

size_t ul_grow_size(const ul_list *src, uint32_t cap) {
  if (cap == 0 || cap > (uint32_t)INT32_MAX / 2) return 0;
  return layout(NULL, cap, src->opts.strategy, src->maglev_m);
}

double ul_random(ul_list *l) { return ulr_unit(l); }

/* ---- event heap, keyed by node.key ------------------------------------- */

static int before(const ul_node *nd, int32_t a, int32_t b) {
  return nd[a].key < nd[b].key || (nd[a].key == nd[b].key && a < b);
}

static void heap_place(ul_list *l, uint32_t i, int32_t s) {
  ulb_heap(l)[i] = s;
  ul_nodes(l)[s].heap = (int32_t)i;
}

static void sift_up(ul_list *l, uint32_t i) {
  int32_t *h = ulb_heap(l), s = h[i];
  ul_node *nd = ul_nodes(l);
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (!before(nd, s, h[p])) break;
    heap_place(l, i, h[p]);
    i = p;
  }
  heap_place(l, i, s);
}

static void sift_down(ul_list *l, uint32_t i) {
  int32_t *h = ulb_heap(l), s = h[i];
  ul_node *nd = ul_nodes(l);
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= l->nheap) break;
    if (c + 1 < l->nheap && before(nd, h[c + 1], h[c])) c++;
    if (!before(nd, h[c], s)) break;
    heap_place(l, i, h[c]);
    i = c;
  }
  heap_place(l, i, s);
}

static void heap_remove(ul_list *l, int32_t s) {
  ul_node *nd = ul_nodes(l);
  uint32_t i = (uint32_t)nd[s].heap;
  int32_t last;
  nd[s].heap = -1;
  last = ulb_heap(l)[--l->nheap];
  if (i == l->nheap) return;
  heap_place(l, i, last);
  sift_up(l, i);
  sift_down(l, (uint32_t)ul_nodes(l)[last].heap);
}

/* Recomputes the key of s and puts it where it belongs. */
static void resched(ul_list *l, int32_t s) {
  ul_node *n = &ul_nodes(l)[s];
  if (n->state == UL_RUNNING)
    n->key = (n->flags & UL_F_WAKE) && n->wake < n->deadline ? n->wake
                                                             : n->deadline;
  else
    n->key = n->next;
  if (n->flags & UL_F_READY) return; /* ul_take looks again */
  if (n->heap >= 0) {
    sift_up(l, (uint32_t)n->heap);
    sift_down(l, (uint32_t)n->heap);
  } else {
    heap_place(l, l->nheap++, s);
    sift_up(l, (uint32_t)n->heap);
  }
}

/* ---- list -------------------------------------------------------------- */

static void init_with(ul_list *l, uint32_t cap, const ul_opts *o,
                      uint64_t seed, uint32_t prev_m) {
  uint32_t i;
  ul_node *nd;
  memset(l, 0, layout(NULL, cap, o->strategy, prev_m));
  layout(l, cap, o->strategy, prev_m);
  l->opts = *o;
  l->rr = -1;
  l->active_tier = -1;
  l->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
  nd = ul_nodes(l);
  for (i = 0; i < cap; i++) {
    nd[i].pos = -1;
    nd[i].heap = -1;
    nd[i].dup = i + 1 < cap ? (int32_t)(i + 1) : -1;
  }
  l->free_head = 0;
}

void ul_init(ul_list *l, uint32_t cap, const ul_opts *o, uint64_t seed) {
  init_with(l, cap, o, seed, 0);
}

/* ---- eligibility ----------------------------------------------------------- */

/* A member may be picked when healthy and in the lowest tier that has a
 * healthy member; in panic, every member may. */
static int eligible(const ul_list *l, const ul_node *n) {
  if (l->panic_on) return 1;
  return n->score >= 0 && (int32_t)n->tier == l->active_tier;
}

static int64_t eff_weight(const ul_node *n) {
  return (int64_t)n->weight * n->ramp;
}

/* Sets elig and ew of n, keeping its weighted current weight where it was
 * (see pick.c: cur is stored relative to the pick count while
 * eligible) and the totals. Returns whether anything changed. */
static int set_elig(ul_list *l, ul_node *n, int e, int64_t ew) {
  int64_t c;
  if (n->elig == e && n->ew == ew) return 0;
  c = n->elig ? n->cur + n->ew * l->t : n->cur;
  if (n->elig) {
    l->nelig--;
    l->total_ew -= n->ew;
  }
  n->elig = (uint8_t)e;
  n->ew = ew;
  if (e) {
    l->nelig++;
    l->total_ew += ew;
  }
  n->cur = e ? c - ew * l->t : c;
  return 1;
}

static void update_one(ul_list *l, int32_t s) {
  ul_node *n = &ul_nodes(l)[s];
  int old_e = n->elig;
  int64_t old_ew = n->ew;
  if (n->pos < 0) return;
  if (set_elig(l, n, eligible(l, n), eff_weight(n)))
    ulp_update(l, (uint32_t)n->pos, old_e, old_ew);
}

/* Recounts healthy members per tier and sets the eligibility of all. */
static void update_all(ul_list *l) {
  ul_node *nd = ul_nodes(l);
  uint32_t p, t;
  l->healthy = 0;
  for (t = 0; t <= UL_MAX_TIER; t++) l->tier_healthy[t] = 0;
  for (p = 0; p < l->n; p++) {
    const ul_node *n = &nd[ul_order(l)[p]];
    if (n->score >= 0) {
      l->healthy++;
      l->tier_healthy[n->tier]++;
    }
  }
  l->active_tier = -1;
  for (t = 0; t <= UL_MAX_TIER && l->active_tier < 0; t++)
    if (l->tier_healthy[t]) l->active_tier = (int32_t)t;
  l->panic_on = l->opts.panic > 0 && (double)l->healthy < l->opts.panic * l->n;
  for (p = 0; p < l->n; p++) {
    ul_node *n = &nd[ul_order(l)[p]];
    set_elig(l, n, eligible(l, n), eff_weight(n));
  }
  ulp_rebuild(l);
}

/* After s changed health or tier: one member changes, or, when the lowest
 * healthy tier or the panic state moves, all of them. */
static void refresh(ul_list *l, int32_t s) {
  int32_t at = -1;
  uint32_t t, pn;
  for (t = 0; t <= UL_MAX_TIER && at < 0; t++)
    if (l->tier_healthy[t]) at = (int32_t)t;
  pn = l->opts.panic > 0 && (double)l->healthy < l->opts.panic * l->n;
  if (at != l->active_tier || pn != l->panic_on) {
    l->active_tier = at;
    l->panic_on = pn;
    update_all(l);
  } else {
    update_one(l, s);
  }
}

/* Slow start: the member ramps from 1/10 of its weight from now on. */
static void start_ramp(ul_list *l, ul_node *n, double now) {
  if (l->opts.slow_start <= 0) return;
  n->since = now;
  n->ramp = 1;
  if (l->ramping++ == 0 || now + l->opts.slow_start / UL_RAMP_STEPS < l->ramp_next)
    l->ramp_next = now + l->opts.slow_start / UL_RAMP_STEPS;
}

/* Moves ramping members to the step their time has reached. */
void ulc_ramp_tick(ul_list *l, double now) {
  ul_node *nd = ul_nodes(l);
  double step = l->opts.slow_start / UL_RAMP_STEPS, next = INFINITY;
  uint32_t p, ramping = 0;
  for (p = 0; p < l->n; p++) {
    int32_t s = ul_order(l)[p];
    ul_node *n = &nd[s];
    double k;
    if (n->ramp >= UL_RAMP_STEPS) continue;
    k = 1 + floor((now - n->since) / step);
    n->ramp = k >= UL_RAMP_STEPS ? UL_RAMP_STEPS : k < 1 ? 1 : (uint8_t)k;
    update_one(l, s);
    if (n->ramp < UL_RAMP_STEPS) {
      double at = n->since + n->ramp * step;
      ramping++;
      if (at < next) next = at;
    }
  }
  l->ramping = ramping;
  l->ramp_next = next;
}

static void set_score(ul_list *l, int32_t s, double v, double now) {
  ul_node *n = &ul_nodes(l)[s];
  int was = n->score >= 0, is = v >= 0;
  n->score = v;
  if (was == is || n->pos < 0) return;
  if (is) {
    l->healthy++;
    l->tier_healthy[n->tier]++;
    start_ramp(l, n, now);
  } else {
    l->healthy--;
    l->tier_healthy[n->tier]--;
  }
  refresh(l, s);
}

static void set_tier(ul_list *l, int32_t s, int tier) {
  ul_node *n = &ul_nodes(l)[s];
  if (tier < l->opts.tier_min) tier = l->opts.tier_min;
  if (tier > l->opts.tier_max) tier = l->opts.tier_max;
  if (n->tier == tier) return;
  if (n->score >= 0) {
    l->tier_healthy[n->tier]--;
    l->tier_healthy[tier]++;
  }
  n->tier = (uint8_t)tier;
  refresh(l, s);
}

void ul_grow(ul_list *dst, uint32_t cap, const ul_list *src) {
  ul_node *nd;
  int32_t *tail;
  uint32_t i;
  init_with(dst, cap, &src->opts, src->rng, src->maglev_m);
  memcpy(ul_nodes(dst), ul_nodes(src), (size_t)src->cap * sizeof(ul_node));
  memcpy(ul_order(dst), ul_order(src), (size_t)src->n * sizeof(int32_t));
  memcpy(ulb_heap(dst), ulb_heap(src), (size_t)src->nheap * sizeof(int32_t));
  for (i = 0; i < src->ready_len; i++)
    ulb_ready(dst)[i] = ulb_ready(src)[(src->ready_head + i) % src->cap];
  dst->n = src->n;
  dst->rr = src->rr;
  dst->nheap = src->nheap;
  dst->ready_head = 0;
  dst->ready_len = src->ready_len;
  dst->checked = src->checked;
  dst->unchecked = src->unchecked;
  dst->healthy = src->healthy;
  memcpy(dst->tier_healthy, src->tier_healthy, sizeof dst->tier_healthy);
  dst->active_tier = src->active_tier;
  dst->panic_on = src->panic_on;
  dst->nelig = src->nelig;
  dst->total_ew = src->total_ew;
  dst->t = src->t;
  dst->ramping = src->ramping;
  dst->ramp_next = src->ramp_next;
  dst->shut = src->shut;
  dst->gen = src->gen;
  dst->now = src->now;
  /* free slots: the old free list, then the new slots */
  nd = ul_nodes(dst);
  for (i = src->cap; i < cap; i++) {
    nd[i].pos = -1;
    nd[i].heap = -1;
    nd[i].dup = i + 1 < cap ? (int32_t)(i + 1) : -1;
  }
  dst->free_head = src->free_head;
  tail = &dst->free_head;
  while (*tail >= 0) tail = &nd[*tail].dup;
  *tail = src->cap < cap ? (int32_t)src->cap : -1;
  ulp_rebuild(dst);
}

static double up_value(const ul_list *l, double v) {
  v += l->opts.success_delta;
  return v > l->opts.high_score ? l->opts.high_score : v;
}

static double down_value(const ul_list *l, double v) {
  v += l->opts.fail_delta;
  return v < l->opts.low_score ? l->opts.low_score : v;
}

static double wait_time(ul_list *l) {
  const ul_opts *o = &l->opts;
  if (o->jitter == 0) return o->interval;
  return o->interval * (1 + o->jitter * (2 * ul_random(l) - 1));
}

int32_t ul_append(ul_list *l, int checked, int32_t dup_of, double now,
                  uint32_t weight, uint64_t hash, int ramp) {
  int32_t s = l->free_head;
  ul_node *n;
  if (s < 0) return -1;
  n = &ul_nodes(l)[s];
  l->free_head = n->dup;
  memset(n, 0, sizeof *n);
  n->heap = -1;
  n->dup = s; /* a ring of one */
  n->weight = weight;
  n->hash = hash;
  n->ramp = UL_RAMP_STEPS;
  n->tier = (uint8_t)l->opts.tier_init;
  n->score = l->opts.initial_score;
  n->pos = (int32_t)l->n;
  ul_order(l)[l->n++] = s;
  n->flags = UL_F_MEMBER;
  if (n->score >= 0) {
    l->healthy++;
    l->tier_healthy[n->tier]++;
    if (ramp) start_ramp(l, n, now);
  }
  refresh(l, s);
  if (dup_of >= 0) {
    n->dup = ul_nodes(l)[dup_of].dup;
    ul_nodes(l)[dup_of].dup = s;
  }
  if (checked) {
    n->flags |= UL_F_CHECKED;
    l->checked++;
    if (!l->shut) {
      l->unchecked++;
      n->state = UL_IDLE;
      n->next = now + (l->opts.jitter > 0 ? ul_random(l) * l->opts.interval : 0);
      resched(l, s);
    }
  }
  return s;
}

void ul_remove(ul_list *l, const unsigned char *drop) {
  ul_node *nd = ul_nodes(l);
  int32_t *ord = ul_order(l), *rq = ulb_ready(l);
  uint32_t p, k, n = 0, len = 0;
  for (p = 0; p < l->n; p++) {
    int32_t s = ord[p];
    ul_node *x = &nd[s];
    if (!drop[s]) {
      x->pos = (int32_t)n;
      ord[n++] = s;
      continue;
    }
    if (x->heap >= 0) heap_remove(l, s);
    if (x->flags & UL_F_CHECKED) {
      l->checked--;
      if (x->checks == 0 && !l->shut) l->unchecked--;
    }
    set_elig(l, x, 0, 0);
    x->flags = 0;
    x->state = UL_IDLE;
    x->pos = -1;
    x->dup = l->free_head;
    l->free_head = s;
  }
  l->n = n;
  /* drop the removed slots from the ready queue, keeping FIFO order */
  for (k = 0; k < l->ready_len; k++) {
    int32_t s = rq[(l->ready_head + k) % l->cap];
    if (nd[s].flags & UL_F_READY) rq[(l->ready_head + len++) % l->cap] = s;
  }
  l->ready_len = len;
  update_all(l);
}


/* Moves every slot in s's ring up (1) or down (0), and to tier when >= 0. */
static void move_ring(ul_list *l, int32_t s, int up, double now, int tier) {
  int32_t t = s;
  do {
    double v = ul_nodes(l)[t].score;
    set_score(l, t, up ? up_value(l, v) : down_value(l, v), now);
    if (tier >= 0) set_tier(l, t, tier);
    t = ul_nodes(l)[t].dup;
  } while (t != s);
}

void ul_up(ul_list *l, int32_t s, double now) { move_ring(l, s, 1, now, -1); }

void ul_down(ul_list *l, int32_t s, double now) {
  move_ring(l, s, 0, now, -1);
}

void ul_set_weight(ul_list *l, int32_t s, uint32_t weight) {
  int32_t t = s;
  do {
    ul_nodes(l)[t].weight = weight;
    update_one(l, t);
    t = ul_nodes(l)[t].dup;
  } while (t != s);
}

int ul_release(ul_list *l, int32_t s) {
  int32_t t = s, best = -1;
  do {
    if (ul_nodes(l)[t].inflight > 0 &&
        (best < 0 || ul_nodes(l)[t].inflight > ul_nodes(l)[best].inflight))
      best = t;
    t = ul_nodes(l)[t].dup;
  } while (t != s);
  if (best < 0) return 0;
  ul_nodes(l)[best].inflight--;
  return 1;
}

int ul_latency_tier(double secs) {
  static const double bounds[] = {0.0001, 0.001, 0.01, 0.1, 1};
  int k;
  for (k = 0; k < 5; k++)
    if (secs < bounds[k]) return k;
  return 5;
}

/* Little-endian loads, whatever the machine: a key hashes alike on every
 * host of a fleet. Fixed-size memcpy compiles to one load. */
static uint64_t le64(const unsigned char *b) {
  uint64_t w;
  memcpy(&w, b, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  w = __builtin_bswap64(w);
#endif
  return w;
}

static uint64_t le32(const unsigned char *b) {
  uint32_t w;
  memcpy(&w, b, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  w = __builtin_bswap32(w);
#endif
  return w;
}

/* A word at a time, each multiplied in (the last 1..7 bytes read as two
 * overlapping halves, as wyhash does); murmur3's finaliser at the end. */
uint64_t ul_hash(const void *p, size_t len) {
  const unsigned char *b = (const unsigned char *)p;
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ (len * 0xC2B2AE3D27D4EB4FULL);
  uint64_t w;
  for (; len >= 8; len -= 8, b += 8)
    h = (h ^ (le64(b) * 0x87C37B91114253D5ULL)) * 0x4CF5AD432745937FULL;
  if (len >= 4)
    w = le32(b) << 32 | le32(b + len - 4);
  else if (len > 0)
    w = (uint64_t)b[0] << 16 | (uint64_t)b[len >> 1] << 8 | b[len - 1];
  else
    w = 0;
  h = (h ^ (w * 0x87C37B91114253D5ULL)) * 0x4CF5AD432745937FULL;
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDULL;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ULL;
  h ^= h >> 33;
  return h;
}

/* ---- scheduler ----------------------------------------------------------- */

uint32_t ul_collect(ul_list *l, double now) {
  ul_node *nd = ul_nodes(l);
  l->now = now;
  while (l->nheap > 0 && nd[ulb_heap(l)[0]].key <= now) {
    int32_t s = ulb_heap(l)[0];
    heap_remove(l, s);
    nd[s].flags |= UL_F_READY;
    ulb_ready(l)[(l->ready_head + l->ready_len++) % l->cap] = s;
  }
  return l->ready_len;
}

/* Ends the running check of s at now: score, tier, counters, next start.
 * As in the Go package, the result moves every member equal to the
 * backend. */
static void finish(ul_list *l, int32_t s, int ok, double now, int tier) {
  ul_node *n = &ul_nodes(l)[s];
  move_ring(l, s, ok, now, tier);
  if (n->checks++ == 0) l->unchecked--;
  if (!ok) n->failures++;
  n->state = UL_IDLE;
  n->flags &= (uint8_t)~UL_F_WAKE;
  n->next = n->started + wait_time(l);
  if (n->next < now) n->next = now;
  resched(l, s);
}

int ul_take(ul_list *l, int32_t *slot, uint64_t *gen) {
  ul_node *nd = ul_nodes(l);
  while (l->ready_len > 0) {
    int32_t s = ulb_ready(l)[l->ready_head];
    ul_node *n = &nd[s];
    l->ready_head = (l->ready_head + 1) % l->cap;
    l->ready_len--;
    if (!(n->flags & UL_F_READY)) continue;
    n->flags &= (uint8_t)~UL_F_READY;
    if (n->key > l->now) { /* rescheduled while it waited */
      resched(l, s);
      continue;
    }
    *slot = s;
    if (n->state == UL_IDLE) {
      n->gen = ++l->gen;
      n->state = UL_RUNNING;
      n->started = l->now;
      n->deadline = l->now + l->opts.timeout;
      n->flags &= (uint8_t)~UL_F_WAKE;
      resched(l, s);
      *gen = n->gen;
      return UL_EV_START;
    }
    *gen = n->gen;
    if (n->deadline <= l->now) {
      finish(l, s, 0, l->now, -1);
      return UL_EV_TIMEOUT;
    }
    n->flags &= (uint8_t)~UL_F_WAKE;
    resched(l, s);
    return UL_EV_WAKE;
  }
  return UL_EV_NONE;
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
  resched(l, s);
  return 1;
}

int ul_report(ul_list *l, int32_t s, uint64_t gen, int ok, double now,
              int tier) {
  if (!ul_current(l, s, gen)) return 0;
  finish(l, s, ok, now, tier);
  return 1;
}

double ul_next_time(const ul_list *l) {
  if (l->ready_len > 0) return l->now;
  if (l->nheap > 0) return ul_nodes(l)[ulb_heap(l)[0]].key;
  return INFINITY;
}

void ul_shutdown(ul_list *l) {
  ul_node *nd = ul_nodes(l);
  uint32_t p;
  if (l->shut) return;
  l->shut = 1;
  for (p = 0; p < l->n; p++) {
    ul_node *n = &nd[ul_order(l)[p]];
    n->heap = -1;
    n->state = UL_IDLE;
    n->flags &= (uint8_t)~(UL_F_READY | UL_F_WAKE);
  }
  l->nheap = 0;
  l->ready_len = 0;
  l->unchecked = 0;
}
