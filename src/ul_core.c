/*
 * ul_core.c - the scored backend list: scores, round-robin pick over a
 * hierarchical bitmap of healthy positions (O(1) in list size and in the
 * share of unhealthy members), and a per-backend check scheduler on a
 * binary heap of deadlines. No Lua, no allocation: the caller owns the block.
 */
#include "ul_core.h"

#include <math.h>
#include <string.h>

#define BITS 64u

static uint32_t words_for(uint32_t bits) { return (bits + BITS - 1) / BITS; }

void ul_opts_default(ul_opts *o) {
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
#undef RULE
  *field = NULL;
  return NULL;
}

/* ---- layout ------------------------------------------------------------ */

static size_t align8(size_t x) { return (x + 7u) & ~(size_t)7u; }

/* Computes the offsets for cap slots into l (when not NULL); returns size. */
static size_t layout(ul_list *l, uint32_t cap) {
  uint32_t w0 = words_for(cap), w1 = words_for(w0), w2 = words_for(w1);
  size_t off = align8(sizeof(ul_list)), o_nodes, o_order, o_heap, o_ready,
         o_bm0, o_bm1, o_bm2;
  o_nodes = off;
  off = align8(off + (size_t)cap * sizeof(ul_node));
  o_order = off;
  off = align8(off + (size_t)cap * sizeof(int32_t));
  o_heap = off;
  off = align8(off + (size_t)cap * sizeof(int32_t));
  o_ready = off;
  off = align8(off + (size_t)cap * sizeof(int32_t));
  o_bm0 = off;
  off += (size_t)w0 * 8u;
  o_bm1 = off;
  off += (size_t)w1 * 8u;
  o_bm2 = off;
  off += (size_t)w2 * 8u;
  if (off > UINT32_MAX) return 0; /* offsets are 32-bit */
  if (l) {
    l->cap = cap;
    l->bm_words[0] = w0;
    l->bm_words[1] = w1;
    l->bm_words[2] = w2;
    l->off_nodes = (uint32_t)o_nodes;
    l->off_order = (uint32_t)o_order;
    l->off_heap = (uint32_t)o_heap;
    l->off_ready = (uint32_t)o_ready;
    l->off_bm[0] = (uint32_t)o_bm0;
    l->off_bm[1] = (uint32_t)o_bm1;
    l->off_bm[2] = (uint32_t)o_bm2;
  }
  return off;
}

size_t ul_size(uint32_t cap) {
  if (cap == 0 || cap > (uint32_t)INT32_MAX / 2) return 0;
  return layout(NULL, cap);
}

#define NODES(l) ul_nodes(l)
#define ORDER(l) ul_order(l)
#define HEAP(l) ((int32_t *)((char *)(l) + (l)->off_heap))
#define READY(l) ((int32_t *)((char *)(l) + (l)->off_ready))
#define BM(l, k) ((uint64_t *)((char *)(l) + (l)->off_bm[k]))

/* ---- random ------------------------------------------------------------ */

static uint64_t next_rand(ul_list *l) { /* xorshift64* */
  uint64_t x = l->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  l->rng = x;
  return x * 0x2545F4914F6CDD1DULL;
}

double ul_random(ul_list *l) {
  return (double)(next_rand(l) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- healthy bitmap, by position ---------------------------------------- */

static void bm_set(ul_list *l, uint32_t pos) {
  uint64_t *b0 = BM(l, 0), *b1 = BM(l, 1), *b2 = BM(l, 2);
  uint32_t w = pos / BITS, w1 = w / BITS;
  if (b0[w] == 0) {
    if (b1[w1] == 0) b2[w1 / BITS] |= 1ULL << (w1 % BITS);
    b1[w1] |= 1ULL << (w % BITS);
  }
  b0[w] |= 1ULL << (pos % BITS);
}

static void bm_clear(ul_list *l, uint32_t pos) {
  uint64_t *b0 = BM(l, 0), *b1 = BM(l, 1), *b2 = BM(l, 2);
  uint32_t w = pos / BITS, w1 = w / BITS;
  b0[w] &= ~(1ULL << (pos % BITS));
  if (b0[w] == 0) {
    b1[w1] &= ~(1ULL << (w % BITS));
    if (b1[w1] == 0) b2[w1 / BITS] &= ~(1ULL << (w1 % BITS));
  }
}

/* First set position >= from, or -1. */
static int64_t bm_next(const ul_list *l, uint32_t from) {
  const uint64_t *b0 = BM(l, 0), *b1 = BM(l, 1), *b2 = BM(l, 2);
  uint32_t w = from / BITS, w1, w2;
  uint64_t m;
  if (w >= l->bm_words[0]) return -1;
  m = b0[w] & (~0ULL << (from % BITS));
  if (m) return (int64_t)w * BITS + __builtin_ctzll(m);
  w++; /* next non-empty level-0 word after w */
  w1 = w / BITS;
  if (w1 >= l->bm_words[1]) return -1;
  m = b1[w1] & (~0ULL << (w % BITS));
  if (!m) {
    w1++; /* next non-empty level-1 word after w1 */
    for (w2 = w1 / BITS; w2 < l->bm_words[2]; w2++) {
      m = b2[w2];
      if (w2 == w1 / BITS) m &= ~0ULL << (w1 % BITS);
      if (m) break;
    }
    if (!m) return -1;
    w1 = w2 * BITS + (uint32_t)__builtin_ctzll(m);
    m = b1[w1];
  }
  w = w1 * BITS + (uint32_t)__builtin_ctzll(m);
  return (int64_t)w * BITS + __builtin_ctzll(b0[w]);
}

static void bm_rebuild(ul_list *l) {
  ul_node *nd = NODES(l);
  int32_t *ord = ORDER(l);
  uint32_t k, p;
  for (k = 0; k < 3; k++) memset(BM(l, k), 0, (size_t)l->bm_words[k] * 8u);
  l->healthy = 0;
  for (p = 0; p < l->n; p++)
    if (nd[ord[p]].score >= 0) {
      bm_set(l, p);
      l->healthy++;
    }
}

/* ---- event heap, keyed by node.key ------------------------------------- */

static int before(const ul_node *nd, int32_t a, int32_t b) {
  return nd[a].key < nd[b].key || (nd[a].key == nd[b].key && a < b);
}

static void heap_place(ul_list *l, uint32_t i, int32_t s) {
  HEAP(l)[i] = s;
  NODES(l)[s].heap = (int32_t)i;
}

static void sift_up(ul_list *l, uint32_t i) {
  int32_t *h = HEAP(l), s = h[i];
  ul_node *nd = NODES(l);
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (!before(nd, s, h[p])) break;
    heap_place(l, i, h[p]);
    i = p;
  }
  heap_place(l, i, s);
}

static void sift_down(ul_list *l, uint32_t i) {
  int32_t *h = HEAP(l), s = h[i];
  ul_node *nd = NODES(l);
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
  ul_node *nd = NODES(l);
  uint32_t i = (uint32_t)nd[s].heap;
  int32_t last;
  nd[s].heap = -1;
  last = HEAP(l)[--l->nheap];
  if (i == l->nheap) return;
  heap_place(l, i, last);
  sift_up(l, i);
  sift_down(l, (uint32_t)NODES(l)[last].heap);
}

/* Recomputes the key of s and puts it where it belongs. */
static void resched(ul_list *l, int32_t s) {
  ul_node *n = &NODES(l)[s];
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

void ul_init(ul_list *l, uint32_t cap, const ul_opts *o, uint64_t seed) {
  uint32_t i;
  ul_node *nd;
  memset(l, 0, ul_size(cap));
  layout(l, cap);
  l->opts = *o;
  l->rr = -1;
  l->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
  nd = NODES(l);
  for (i = 0; i < cap; i++) {
    nd[i].pos = -1;
    nd[i].heap = -1;
    nd[i].dup = i + 1 < cap ? (int32_t)(i + 1) : -1;
  }
  l->free_head = 0;
}

void ul_grow(ul_list *dst, uint32_t cap, const ul_list *src) {
  ul_node *nd;
  int32_t *tail;
  uint32_t i;
  ul_init(dst, cap, &src->opts, src->rng);
  memcpy(NODES(dst), NODES(src), (size_t)src->cap * sizeof(ul_node));
  memcpy(ORDER(dst), ORDER(src), (size_t)src->n * sizeof(int32_t));
  memcpy(HEAP(dst), HEAP(src), (size_t)src->nheap * sizeof(int32_t));
  for (i = 0; i < src->ready_len; i++)
    READY(dst)[i] = READY(src)[(src->ready_head + i) % src->cap];
  dst->n = src->n;
  dst->rr = src->rr;
  dst->nheap = src->nheap;
  dst->ready_head = 0;
  dst->ready_len = src->ready_len;
  dst->unchecked = src->unchecked;
  dst->shut = src->shut;
  dst->gen = src->gen;
  dst->now = src->now;
  /* free slots: the old free list, then the new slots */
  nd = NODES(dst);
  for (i = src->cap; i < cap; i++) {
    nd[i].pos = -1;
    nd[i].heap = -1;
    nd[i].dup = i + 1 < cap ? (int32_t)(i + 1) : -1;
  }
  dst->free_head = src->free_head;
  tail = &dst->free_head;
  while (*tail >= 0) tail = &nd[*tail].dup;
  *tail = src->cap < cap ? (int32_t)src->cap : -1;
  bm_rebuild(dst);
}

static void set_score(ul_list *l, int32_t s, double v) {
  ul_node *n = &NODES(l)[s];
  int was = n->score >= 0, is = v >= 0;
  n->score = v;
  if (was == is || n->pos < 0) return;
  if (is) {
    bm_set(l, (uint32_t)n->pos);
    l->healthy++;
  } else {
    bm_clear(l, (uint32_t)n->pos);
    l->healthy--;
  }
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

int32_t ul_append(ul_list *l, int checked, int32_t dup_of, double now) {
  int32_t s = l->free_head;
  ul_node *n;
  if (s < 0) return -1;
  n = &NODES(l)[s];
  l->free_head = n->dup;
  memset(n, 0, sizeof *n);
  n->heap = -1;
  n->dup = s; /* a ring of one */
  n->score = -1; /* set_score below flips it to healthy when it is */
  n->pos = (int32_t)l->n;
  ORDER(l)[l->n++] = s;
  n->flags = UL_F_MEMBER;
  set_score(l, s, l->opts.initial_score);
  if (dup_of >= 0) {
    n->dup = NODES(l)[dup_of].dup;
    NODES(l)[dup_of].dup = s;
  }
  if (checked) {
    n->flags |= UL_F_CHECKED;
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
  ul_node *nd = NODES(l);
  int32_t *ord = ORDER(l), *rq = READY(l);
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
    if ((x->flags & UL_F_CHECKED) && x->checks == 0 && !l->shut)
      l->unchecked--;
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
  bm_rebuild(l);
}

int32_t ul_pick(ul_list *l) {
  uint32_t from;
  int64_t p;
  if (l->healthy == 0) return -1;
  from = (uint32_t)(((int64_t)l->rr + 1) % (int64_t)l->n);
  p = bm_next(l, from);
  if (p < 0) p = bm_next(l, 0);
  l->rr = (int32_t)p;
  return ORDER(l)[p];
}

/* Adds delta-direction up (1) or down (0) to every slot in s's ring. */
static void move_ring(ul_list *l, int32_t s, int up) {
  int32_t t = s;
  do {
    double v = NODES(l)[t].score;
    set_score(l, t, up ? up_value(l, v) : down_value(l, v));
    t = NODES(l)[t].dup;
  } while (t != s);
}

void ul_up(ul_list *l, int32_t s) { move_ring(l, s, 1); }

void ul_down(ul_list *l, int32_t s) { move_ring(l, s, 0); }

/* ---- scheduler ----------------------------------------------------------- */

uint32_t ul_collect(ul_list *l, double now) {
  ul_node *nd = NODES(l);
  l->now = now;
  while (l->nheap > 0 && nd[HEAP(l)[0]].key <= now) {
    int32_t s = HEAP(l)[0];
    heap_remove(l, s);
    nd[s].flags |= UL_F_READY;
    READY(l)[(l->ready_head + l->ready_len++) % l->cap] = s;
  }
  return l->ready_len;
}

/* Ends the running check of s at now: score, counters, next start. As in
 * the Go package, the result moves every member equal to the backend. */
static void finish(ul_list *l, int32_t s, int ok, double now) {
  ul_node *n = &NODES(l)[s];
  move_ring(l, s, ok);
  if (n->checks++ == 0) l->unchecked--;
  if (!ok) n->failures++;
  n->state = UL_IDLE;
  n->flags &= (uint8_t)~UL_F_WAKE;
  n->next = n->started + wait_time(l);
  if (n->next < now) n->next = now;
  resched(l, s);
}

int ul_take(ul_list *l, int32_t *slot, uint64_t *gen) {
  ul_node *nd = NODES(l);
  while (l->ready_len > 0) {
    int32_t s = READY(l)[l->ready_head];
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
      finish(l, s, 0, l->now);
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
  n = &NODES(l)[s];
  return (n->flags & UL_F_MEMBER) && n->state == UL_RUNNING && n->gen == gen;
}

int ul_sleep(ul_list *l, int32_t s, uint64_t gen, double t) {
  ul_node *n;
  if (!ul_current(l, s, gen)) return 0;
  n = &NODES(l)[s];
  n->wake = t;
  n->flags |= UL_F_WAKE;
  resched(l, s);
  return 1;
}

int ul_report(ul_list *l, int32_t s, uint64_t gen, int ok, double now) {
  if (!ul_current(l, s, gen)) return 0;
  finish(l, s, ok, now);
  return 1;
}

double ul_next_time(const ul_list *l) {
  if (l->ready_len > 0) return l->now;
  if (l->nheap > 0) return NODES(l)[HEAP(l)[0]].key;
  return INFINITY;
}

void ul_shutdown(ul_list *l) {
  ul_node *nd = NODES(l);
  uint32_t p;
  if (l->shut) return;
  l->shut = 1;
  for (p = 0; p < l->n; p++) {
    ul_node *n = &nd[ORDER(l)[p]];
    n->heap = -1;
    n->state = UL_IDLE;
    n->flags &= (uint8_t)~(UL_F_READY | UL_F_WAKE);
  }
  l->nheap = 0;
  l->ready_len = 0;
  l->unchecked = 0;
}
