/*
 * core/heap.c - the event heap and the ready ring (heap.h): a data
 * structure over the block's heap[] and ready[] arrays and the nodes' key,
 * heap index and UL_F_READY flag. It decides nothing about checks: sched.c
 * and list.c say when a slot's key changed.
 */
#include "heap.h"
#include "block.h"

#include <math.h>
#include <string.h>

/* Heap order: the earlier key, ties by the lower slot. Keys are never NaN
 * (ulh_time), so this is a total order. An entry's key is its slot's
 * node.key, copied by ulh_resched, the one place a key is set. */
static int heap_before(const ul_hent *a, const ul_hent *b) {
  return a->key < b->key || (a->key == b->key && a->slot < b->slot);
}

static void heap_place(ul_list *l, uint32_t i, ul_hent e) {
  ulb_heap(l)[i] = e;
  ul_nodes(l)[e.slot].heap = (int32_t)i;
}

static void heap_sift_up(ul_list *l, uint32_t i) {
  ul_hent *h = ulb_heap(l), e = h[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (!heap_before(&e, &h[p])) break;
    heap_place(l, i, h[p]);
    i = p;
  }
  heap_place(l, i, e);
}

static void heap_sift_down(ul_list *l, uint32_t i) {
  ul_hent *h = ulb_heap(l), e = h[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= l->nheap) break;
    if (c + 1 < l->nheap && heap_before(&h[c + 1], &h[c])) c++;
    if (!heap_before(&h[c], &e)) break;
    heap_place(l, i, h[c]);
    i = c;
  }
  heap_place(l, i, e);
}

void ulh_remove(ul_list *l, int32_t s) {
  ul_node *nd = ul_nodes(l);
  uint32_t i = (uint32_t)nd[s].heap;
  ul_hent last;
  nd[s].heap = -1;
  last = ulb_heap(l)[--l->nheap];
  if (i == l->nheap) return;
  heap_place(l, i, last);
  heap_sift_up(l, i);
  heap_sift_down(l, (uint32_t)nd[last.slot].heap);
}

void ulh_resched(ul_list *l, int32_t s) {
  ul_node *n = &ul_nodes(l)[s];
  ul_hent e;
  if (n->state == UL_RUNNING)
    n->key = (n->flags & UL_F_WAKE) && n->wake < n->deadline ? n->wake
                                                             : n->deadline;
  else
    n->key = n->next;
  if (n->flags & UL_F_READY) return; /* ul_take looks again */
  e.key = n->key;
  e.slot = s;
  e.pad = 0;
  if (n->heap >= 0) {
    ulb_heap(l)[n->heap] = e;
    heap_sift_up(l, (uint32_t)n->heap);
    heap_sift_down(l, (uint32_t)n->heap);
  } else {
    heap_place(l, l->nheap++, e);
    heap_sift_up(l, (uint32_t)n->heap);
  }
}

uint32_t ulh_collect(ul_list *l, double now) {
  ul_node *nd = ul_nodes(l);
  while (l->nheap > 0 && ulb_heap(l)[0].key <= now) {
    int32_t s = ulb_heap(l)[0].slot;
    ulh_remove(l, s);
    nd[s].flags |= UL_F_READY;
    ulb_ready(l)[(l->ready_head + l->ready_len++) % l->cap] = s;
  }
  return l->ready_len;
}

double ulh_first_key(const ul_list *l) {
  return l->nheap > 0 ? ulb_heap(l)[0].key : INFINITY;
}

/* A depth-first walk from the root that goes down only through keys <=
 * bound: a heap's children are never earlier than their parent, so it
 * visits the keys <= bound and their children, no others. Going down the
 * left child and keeping the right one on the stack, the stack holds at
 * most one slot per level, the deepest on top. */
double ulh_window(const ul_list *l, double bound, double *running) {
  const ul_node *nd = ul_nodes(l);
  const ul_hent *h = ulb_heap(l);
  uint32_t stack[64], top = 0, i;
  double latest = -INFINITY;
  *running = INFINITY;
  if (l->nheap == 0) return latest;
  stack[top++] = 0;
  while (top > 0) {
    i = stack[--top];
    for (;;) {
      double k = h[i].key;
      uint32_t c = 2 * i + 1;
      if (!(k <= bound)) break;
      if (k > latest) latest = k;
      if (nd[h[i].slot].state == UL_RUNNING && k < *running) *running = k;
      if (c >= l->nheap) break;
      if (c + 1 < l->nheap && top < 64) stack[top++] = c + 1;
      i = c;
    }
  }
  return latest;
}

int32_t ulh_ready_take(ul_list *l) {
  while (l->ready_len > 0) {
    int32_t s = ulb_ready(l)[l->ready_head];
    ul_node *n = &ul_nodes(l)[s];
    l->ready_head = (l->ready_head + 1) % l->cap;
    l->ready_len--;
    if (!(n->flags & UL_F_READY)) continue;
    n->flags &= (uint8_t)~UL_F_READY;
    return s;
  }
  return -1;
}

void ulh_ready_prune(ul_list *l) {
  ul_node *nd = ul_nodes(l);
  int32_t *rq = ulb_ready(l);
  uint32_t k, len = 0;
  for (k = 0; k < l->ready_len; k++) {
    int32_t s = rq[(l->ready_head + k) % l->cap];
    if (nd[s].flags & UL_F_READY) rq[(l->ready_head + len++) % l->cap] = s;
  }
  l->ready_len = len;
}

void ulh_copy(ul_list *dst, const ul_list *src) {
  uint32_t i;
  memcpy(ulb_heap(dst), ulb_heap(src), (size_t)src->nheap * sizeof(ul_hent));
  for (i = 0; i < src->ready_len; i++)
    ulb_ready(dst)[i] = ulb_ready(src)[(src->ready_head + i) % src->cap];
  dst->nheap = src->nheap;
  dst->ready_head = 0;
  dst->ready_len = src->ready_len;
}

void ulh_clear(ul_list *l) {
  ul_node *nd = ul_nodes(l);
  uint32_t i;
  for (i = 0; i < l->nheap; i++) nd[ulb_heap(l)[i].slot].heap = -1;
  for (i = 0; i < l->ready_len; i++) {
    int32_t s = ulb_ready(l)[(l->ready_head + i) % l->cap];
    nd[s].flags &= (uint8_t)~UL_F_READY;
  }
  l->nheap = 0;
  l->ready_len = 0;
}
