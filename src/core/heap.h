/*
 * core/heap.h - the check scheduler's two queues over the block: a binary
 * heap of slots by node.key (when each slot's next event is due) and the
 * ready ring of slots already due. Internal to the core (list.c, sched.c).
 *
 * A slot is in at most one of them: node.heap >= 0 while in the heap,
 * UL_F_READY while in the ring.
 */
#ifndef UL_HEAP_H
#define UL_HEAP_H

#include "core.h"

#include <math.h>

/* The time t as the scheduler takes it: t when finite, else the time of
 * the last ul_collect (l->now, always finite). The keys a time sets must
 * be ordered: a NaN key compares false with every other, which breaks the
 * heap's order, and a NaN first key is never due, which stops ul_collect
 * for good; an infinite reading would put a check's start or deadline at
 * infinity, never due again once the clock reads finite times. */
static inline double ulh_time(const ul_list *l, double t) {
  return isfinite(t) ? t : l->now;
}

/* Recomputes the key of s from its check state (running: the wake or the
 * deadline, whichever comes first; idle: the next start) and moves s where
 * it belongs in the heap; a slot in the ready ring stays there (ul_take
 * looks at its key again). */
UL_FUNC void ulh_resched(ul_list *l, int32_t s);

/* Takes s (node.heap >= 0) out of the heap. */
UL_FUNC void ulh_remove(ul_list *l, int32_t s);

/* Moves every slot due at or before now from the heap to the end of the
 * ready ring; returns how many slots are ready. */
UL_FUNC uint32_t ulh_collect(ul_list *l, double now);

/* Key of the heap's first slot, or infinity when the heap is empty. */
UL_FUNC double ulh_first_key(const ul_list *l);

/* The latest key <= bound in the heap (-infinity when none is), and in
 * *running the earliest key <= bound of a running check (its wake-up or
 * deadline; infinity when none). Visits only the slots whose key is <=
 * bound and their children. */
UL_FUNC double ulh_window(const ul_list *l, double bound, double *running);

/* Takes the first slot of the ready ring that is still ready (UL_F_READY,
 * which it clears), skipping the others; -1 when none. */
UL_FUNC int32_t ulh_ready_take(ul_list *l);

/* Drops from the ready ring the slots no longer ready, keeping the order
 * of the others (after ul_remove cleared their flags). */
UL_FUNC void ulh_ready_prune(ul_list *l);

/* Copies the heap and the ready ring of src into dst (a grown block). */
UL_FUNC void ulh_copy(ul_list *dst, const ul_list *src);

/* Empties both queues. */
UL_FUNC void ulh_clear(ul_list *l);

#endif
