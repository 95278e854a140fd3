/*
 * spec/fuzz/invariants.h - structural invariants of a core list block,
 * recounted from the members, shared by core_fuzz.c and api_fuzz.c.
 *
 * Only what src/core/core.h documents is checked (nodes, order, dup rings,
 * free list, counters, event heap keyed by node.key, ready FIFO), never the
 * strategies' private arrays, so the harnesses survive changes inside
 * src/core/. Include after core.h. A failed invariant prints a line
 * starting "INVARIANT" and aborts, which libFuzzer reports as a crash.
 */
#ifndef UL_FUZZ_INVARIANTS_H
#define UL_FUZZ_INVARIANTS_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void inv_fail(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));
static void inv_fail(const char *fmt, ...) {
  va_list ap;
  fputs("INVARIANT violated: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

#define INV(cond, ...)              \
  do {                              \
    if (!(cond)) inv_fail(__VA_ARGS__); \
  } while (0)

/* An event heap entry (src/core/block.h, ul_hent): a copy of the slot's
 * key, then the slot. */
typedef struct inv_hent {
  double key;
  int32_t slot, pad;
} inv_hent;
static inline const inv_hent *inv_heap(const ul_list *l) {
  return (const inv_hent *)((const char *)l + l->off_heap);
}
static inline const int32_t *inv_ready(const ul_list *l) {
  return (const int32_t *)((const char *)l + l->off_ready);
}

/* Eligibility by the documented rule, from scores, tiers and panic only:
 * healthy = score >= 0; eligible = healthy and in the lowest tier that has
 * a healthy member; every member while in panic (fewer than panic x n
 * healthy). Fills elig[slot] (cap entries) and returns how many. */
static uint32_t inv_eligibility(const ul_list *l, unsigned char *elig) {
  const ul_node *nd = ul_nodes(l);
  const int32_t *ord = ul_order(l);
  uint32_t p, healthy = 0, k = 0;
  int lowest = -1, panic;
  memset(elig, 0, l->cap);
  for (p = 0; p < l->n; p++) {
    const ul_node *x = &nd[ord[p]];
    if (x->score >= 0) {
      healthy++;
      if (lowest < 0 || x->tier < lowest) lowest = x->tier;
    }
  }
  panic = l->opts.panic > 0 && (double)healthy < l->opts.panic * l->n;
  for (p = 0; p < l->n; p++) {
    const ul_node *x = &nd[ord[p]];
    if (panic || (x->score >= 0 && x->tier == lowest)) {
      elig[ord[p]] = 1;
      k++;
    }
  }
  return k;
}

static int inv_before(const ul_node *nd, int32_t a, int32_t b) {
  return nd[a].key < nd[b].key || (nd[a].key == nd[b].key && a < b);
}

/* Checks the whole block; scratch needs 3 * cap bytes. */
static void inv_check(const ul_list *l, unsigned char *scratch) {
  const ul_node *nd = ul_nodes(l);
  const int32_t *ord = ul_order(l), *rq = inv_ready(l);
  const inv_hent *heap = inv_heap(l);
  unsigned char *elig = scratch, *seen = scratch + l->cap,
                *pred = scratch + 2 * (size_t)l->cap;
  uint32_t s, p, i, members = 0, healthy = 0, checked = 0, unchecked = 0,
                    nelig = 0, nready = 0, tier_h[UL_MAX_TIER + 1];
  int64_t total_ew = 0;
  int at = -1;
  int32_t f;
  const ul_opts *o = &l->opts;

  INV(l->n <= l->cap, "n %u > cap %u", l->n, l->cap);
  INV(l->nheap <= l->cap, "nheap %u > cap %u", l->nheap, l->cap);
  INV(l->ready_len <= l->cap, "ready_len %u > cap %u", l->ready_len, l->cap);
  INV(l->ready_len == 0 || l->ready_head < l->cap, "ready_head %u", l->ready_head);
  memset(tier_h, 0, sizeof tier_h);
  memset(seen, 0, l->cap);
  memset(pred, 0, l->cap);

  /* order <-> pos */
  for (p = 0; p < l->n; p++) {
    int32_t x = ord[p];
    INV(x >= 0 && (uint32_t)x < l->cap, "order[%u] = %d out of [0, cap %u)", p, x, l->cap);
    INV(!seen[x], "slot %d twice in order", x);
    seen[x] = 1;
    INV(nd[x].pos == (int32_t)p, "slot %d at position %u has pos %d", x, p, nd[x].pos);
    INV(nd[x].flags & UL_F_MEMBER, "slot %d in order is not a member", x);
  }
  for (s = 0; s < l->cap; s++) {
    const ul_node *x = &nd[s];
    if (!(x->flags & UL_F_MEMBER)) {
      INV(x->pos == -1, "free slot %u has pos %d", s, x->pos);
      INV(x->heap == -1, "free slot %u is in the heap at %d", s, x->heap);
      continue;
    }
    members++;
    INV(seen[s], "member slot %u is not in order", s);
    INV(x->score >= o->low_score && x->score <= o->high_score,
        "slot %u score %.17g outside [%.17g, %.17g]", s, x->score, o->low_score,
        o->high_score);
    INV(x->tier >= o->tier_min && x->tier <= o->tier_max,
        "slot %u tier %u outside [%d, %d]", s, x->tier, o->tier_min, o->tier_max);
    INV(x->weight >= 1 && x->weight <= UL_MAX_WEIGHT, "slot %u weight %u", s, x->weight);
    INV(x->ramp >= 1 && x->ramp <= UL_RAMP_STEPS, "slot %u ramp %u", s, x->ramp);
    INV(x->ew == (int64_t)x->weight * x->ramp,
        "slot %u ew %lld != weight %u x ramp %u", s, (long long)x->ew, x->weight, x->ramp);
    INV(x->state == UL_IDLE || x->state == UL_RUNNING, "slot %u state %u", s, x->state);
    INV(x->dup >= 0 && (uint32_t)x->dup < l->cap, "slot %u dup %d", s, x->dup);
    INV(nd[x->dup].flags & UL_F_MEMBER, "slot %u dup %d is not a member", s, x->dup);
    INV(!pred[x->dup], "slot %d is the dup of two slots", x->dup);
    pred[x->dup] = 1;
    INV(x->failures <= x->checks, "slot %u failures %u > checks %u", s, x->failures, x->checks);
    if (x->score >= 0) {
      healthy++;
      tier_h[x->tier]++;
    }
    if (x->flags & UL_F_CHECKED) {
      checked++;
      if (x->checks == 0) unchecked++;
    }
    if (ul_eligible(l, (int32_t)s)) { /* a lazy list writes no elig */
      nelig++;
      total_ew += x->ew;
    }
    if (l->shut) {
      INV(x->heap == -1 && !(x->flags & (UL_F_READY | UL_F_WAKE)),
          "shut down, yet slot %u is scheduled (heap %d flags %u)", s, x->heap, x->flags);
      INV(x->state == UL_IDLE, "shut down, yet slot %u is running", s);
    } else if (x->flags & UL_F_CHECKED) {
      INV((x->heap >= 0) != !!(x->flags & UL_F_READY),
          "checked slot %u: heap %d, ready flag %u: must be in exactly one", s,
          x->heap, x->flags & UL_F_READY);
    } else {
      INV(x->heap == -1 && !(x->flags & UL_F_READY) && x->state == UL_IDLE,
          "passive slot %u is scheduled (heap %d flags %u state %u)", s, x->heap,
          x->flags, x->state);
    }
    if (x->flags & UL_F_READY) nready++;
  }
  INV(members == l->n, "%u member flags, n = %u", members, l->n);
  /* dup rings: a permutation of the members (checked above: each member
   * is the dup of exactly one member); each ring is a cycle */
  /* free list */
  i = 0;
  for (f = l->free_head; f >= 0; f = nd[f].dup) {
    INV((uint32_t)f < l->cap, "free list holds %d (cap %u)", f, l->cap);
    INV(!(nd[f].flags & UL_F_MEMBER), "free list holds member %d", f);
    INV(++i <= l->cap, "free list has a cycle");
  }
  INV(i == l->cap - l->n, "free list has %u slots, cap - n = %u", i, l->cap - l->n);

  /* counters */
  INV(healthy == l->healthy, "healthy %u, recount %u", l->healthy, healthy);
  for (i = 0; i <= UL_MAX_TIER; i++) {
    INV(tier_h[i] == l->tier_healthy[i], "tier_healthy[%u] %u, recount %u", i,
        l->tier_healthy[i], tier_h[i]);
    if (at < 0 && tier_h[i]) at = (int)i;
  }
  INV(at == l->active_tier, "active_tier %d, recount %d", l->active_tier, at);
  INV(checked == l->checked, "checked %u, recount %u", l->checked, checked);
  INV(l->unchecked == (l->shut ? 0 : unchecked), "unchecked %u, recount %u (shut %u)",
      l->unchecked, unchecked, l->shut);
  INV(nelig == l->nelig, "nelig %u, recount %u", l->nelig, nelig);
  INV(total_ew == l->total_ew, "total_ew %lld, recount %lld", (long long)l->total_ew,
      (long long)total_ew);
  {
    uint32_t k = inv_eligibility(l, elig);
    INV(k == nelig, "%u members flagged eligible, the documented rule gives %u", nelig, k);
    for (s = 0; s < l->cap; s++)
      if (nd[s].flags & UL_F_MEMBER)
        INV(!!ul_eligible(l, (int32_t)s) == elig[s],
            "slot %u elig %u, the rule says %u (score %.17g tier %u active %d panic %u)",
            s, (unsigned)ul_eligible(l, (int32_t)s), elig[s], nd[s].score, nd[s].tier, l->active_tier, l->panic_on);
  }

  /* event heap */
  for (i = 0; i < l->nheap; i++) {
    int32_t x = heap[i].slot;
    INV(x >= 0 && (uint32_t)x < l->cap, "heap[%u] = %d", i, x);
    INV(heap[i].key == nd[x].key, "heap[%u] = %d keeps key %.17g, its node %.17g", i, x,
        heap[i].key, nd[x].key);
    INV(nd[x].heap == (int32_t)i, "heap[%u] = %d whose heap index is %d", i, x, nd[x].heap);
    INV(nd[x].flags & UL_F_MEMBER, "heap[%u] = %d is not a member", i, x);
    INV(!(nd[x].flags & UL_F_READY), "heap[%u] = %d is also ready", i, x);
    if (i > 0)
      INV(!inv_before(nd, x, heap[(i - 1) / 2].slot),
          "heap order: heap[%u] (slot %d key %.17g) before its parent (slot %d key %.17g)",
          i, x, nd[x].key, heap[(i - 1) / 2].slot, nd[heap[(i - 1) / 2].slot].key);
    {
      const ul_node *y = &nd[x];
      double want = y->state == UL_RUNNING
                        ? ((y->flags & UL_F_WAKE) && y->wake < y->deadline ? y->wake
                                                                          : y->deadline)
                        : y->next;
      INV(y->key == want || (isnan(y->key) && isnan(want)),
          "slot %d key %.17g, its state says %.17g", x, y->key, want);
    }
  }
  for (s = 0, i = 0; s < l->cap; s++)
    if (nd[s].heap >= 0) i++;
  INV(i == l->nheap, "%u slots with a heap index, nheap %u", i, l->nheap);

  /* ready FIFO: exactly the slots flagged ready, each once */
  memset(seen, 0, l->cap);
  for (i = 0; i < l->ready_len; i++) {
    int32_t x = rq[(l->ready_head + i) % l->cap];
    INV(x >= 0 && (uint32_t)x < l->cap, "ready[%u] = %d", i, x);
    INV(nd[x].flags & UL_F_READY, "ready[%u] = %d is not flagged ready", i, x);
    INV(!seen[x], "slot %d twice in the ready queue", x);
    seen[x] = 1;
  }
  INV(nready == l->ready_len, "%u slots flagged ready, ready_len %u", nready, l->ready_len);

  /* ul_next_time */
  {
    double want = l->ready_len ? l->now : l->nheap ? nd[heap[0].slot].key : INFINITY;
    double got = ul_next_time(l);
    INV(got == want || (isnan(got) && isnan(want)), "ul_next_time %.17g, expected %.17g",
        got, want);
  }
}

#endif
