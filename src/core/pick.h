/*
 * core/pick.h - internal interface between the list (list.c) and the pick
 * strategies' structures (pick.c). Not installed, not part of the API.
 *
 * The list decides which members are eligible and with which effective
 * weight (node.elig, node.ew); the strategies keep their structures in step
 * through ulp_update (one member) and ulp_rebuild (all of them).
 */
#ifndef UL_PICK_H
#define UL_PICK_H

#include "core.h"

/* Lays out the strategies' arrays for cap slots from byte offset off,
 * filling the offsets into l when not NULL. prev_m: the Maglev table size
 * of the list this one grows from (0: none). Returns the end offset, or 0
 * when too large. */
UL_FUNC size_t ulp_layout(ul_list *l, uint32_t cap, int strategy, size_t off,
                  uint32_t prev_m);

/* Rebuilds every structure from the nodes (positions changed, or the
 * eligibility of many members). */
UL_FUNC void ulp_rebuild(ul_list *l);

/* The member at pos changed eligibility or effective weight; old_elig and
 * old_ew are what it had. */
UL_FUNC void ulp_update(ul_list *l, uint32_t pos, int old_elig, int64_t old_ew);

/* Moves ramping members to the slow-start step their time has reached
 * (list.c). */
UL_FUNC void ulc_ramp_tick(ul_list *l, double now);

#endif
