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
 * (ulh_time), so this is a total order. */
static int heap_before(const ul_node *nd, int32_t a, int32_t b) {
  double ka = nd[a].key, kb = nd[b].key;
  return ka < kb || (ka == kb && a < b);
}

static void heap_place(ul_list *l, uint32_t i, int32_t s) {
  ulb_heap(l)[i] = s;
  ul_nodes(l)[s].heap = (int32_t)i;
}

static void heap_sift_up(ul_list *l, uint32_t i) {
  int32_t *h = ulb_heap(l), s = h[i];
  ul_node *nd = ul_nodes(l);
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (!heap_before(nd, s, h[p])) break;
    heap_place(l, i, h[p]);
    i = p;
  }
  heap_place(l, i, s);
}

static void heap_sift_down(ul_list *l, uint32_t i) {
  int32_t *h = ulb_heap(l), s = h[i];
  ul_node *nd = ul_nodes(l);
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= l->nheap) break;
    if (c + 1 < l->nheap && heap_before(nd, h[c + 1], h[c])) c++;
    if (!heap_before(nd, h[c], s)) break;
    heap_place(l, i, h[c]);
    i = c;
  }
  heap_place(l, i, s);
}

void ulh_remove(ul_list *l, int32_t s) {
  ul_node *nd = ul_nodes(l);
  uint32_t i = (uint32_t)nd[s].heap;
  int32_t last;
  nd[s].heap = -1;
  last = ulb_heap(l)[--l->nheap];
  if (i == l->nheap) return;
  heap_place(l, i, last);
  heap_sift_up(l, i);
  heap_sift_down(l, (uint32_t)nd[last].heap);
}

void ulh_resched(ul_list *l, int32_t s) {
  ul_node *n = &ul_nodes(l)[s];
  if (n->state == UL_RUNNING)
    n->key = (n->flags & UL_F_WAKE) && n->wake < n->deadline ? n->wake
                                                             : n->deadline;
  else
    n->key = n->next;
  if (n->flags & UL_F_READY) return; /* ul_take looks again */
  if (n->heap >= 0) {
    heap_sift_up(l, (uint32_t)n->heap);
    heap_sift_down(l, (uint32_t)n->heap);
  } else {
    heap_place(l, l->nheap++, s);
    heap_sift_up(l, (uint32_t)n->heap);
  }
}

uint32_t ulh_collect(ul_list *l, double now) {
  ul_node *nd = ul_nodes(l);
  while (l->nheap > 0 && nd[ulb_heap(l)[0]].key <= now) {
    int32_t s = ulb_heap(l)[0];
    ulh_remove(l, s);
    nd[s].flags |= UL_F_READY;
    ulb_ready(l)[(l->ready_head + l->ready_len++) % l->cap] = s;
  }
  return l->ready_len;
}

double ulh_first_key(const ul_list *l) {
  return l->nheap > 0 ? ul_nodes(l)[ulb_heap(l)[0]].key : INFINITY;
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
  memcpy(ulb_heap(dst), ulb_heap(src), (size_t)src->nheap * sizeof(int32_t));
  for (i = 0; i < src->ready_len; i++)
    ulb_ready(dst)[i] = ulb_ready(src)[(src->ready_head + i) % src->cap];
  dst->nheap = src->nheap;
  dst->ready_head = 0;
  dst->ready_len = src->ready_len;
}

void ulh_clear(ul_list *l) {
  ul_node *nd = ul_nodes(l);
  uint32_t i;
  for (i = 0; i < l->nheap; i++) nd[ulb_heap(l)[i]].heap = -1;
  for (i = 0; i < l->ready_len; i++) {
    int32_t s = ulb_ready(l)[(l->ready_head + i) % l->cap];
    nd[s].flags &= (uint8_t)~UL_F_READY;
  }
  l->nheap = 0;
  l->ready_len = 0;
}
