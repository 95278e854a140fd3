/*
 * core/list.h - what the check scheduler (sched.c) asks of the list
 * (list.c) beyond the public API. Internal to the core.
 */
#ifndef UL_LIST_H
#define UL_LIST_H

#include "core.h"

/* Applies a result to slot s and every slot in its ring of equal backends:
 * up (1) or down (0) by the score deltas, and to tier when >= 0 (clamped to
 * the options' range). now: for slow start. */
UL_FUNC void ulc_apply(ul_list *l, int32_t s, int up, double now, int tier);

#endif
