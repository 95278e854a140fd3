/*
 * core/pick.h - the pick strategies' interface. Internal to the core.
 *
 * The list (list.c) decides which members are eligible and with which
 * effective weight and tells the strategies, which keep their structures
 * in the block in step. On an eager list (ul_eager's) it
 * writes node.elig and node.ew: ulp_update for one member, ulp_refresh or
 * ulp_rebuild for all. On a lazy one it writes each member's class
 * (node.cls) and the flags a pick reads: ulp_class, ulp_lazy_member and
 * ulp_lazy_changed for one member, ulp_rebuild for all; a panic or tier
 * flip rewrites no member. It asks ulp_pick for a position. The strategies
 * know the block (block.h) and the generator (rand.h), never the list's
 * functions: nothing here calls back into list.c.
 */
#ifndef UL_PICK_H
#define UL_PICK_H

#include "core.h"

/* ---- the list's view (pick.c) ------------------------------------------ */

/* Lays out the strategies' arrays for cap slots and options o (the
 * strategy; weighted: the tier range) from byte offset off, filling the
 * offsets into l when not NULL. prev_m: the Maglev table size of the list
 * this one grows from (0: none). Returns the end offset, or 0 when too
 * large. */
UL_FUNC size_t ulp_layout(ul_list *l, uint32_t cap, const ul_opts *o, size_t off,
                          uint32_t prev_m);

/* Rebuilds every structure from the nodes (positions changed, or the
 * eligibility of many members). */
UL_FUNC void ulp_rebuild(ul_list *l);

/* The same but for the sets of random and least_conn, which keep their
 * order (an eager list's panic or tier flip: the order of a set is a
 * function of its own joins and leaves, on either path). */
UL_FUNC void ulp_refresh(ul_list *l);

/* The member at pos changed class (node.cls; old_cls: UL_NSETS for a new
 * member), on every list: the sets follow. */
UL_FUNC void ulp_class(ul_list *l, uint32_t pos, uint32_t old_cls);

/* Lazy lists: the member at pos leaves (on 0) or joins (1) the structures
 * of its tier (while healthy) and of all members, before and after a
 * change of its health, tier or effective weight. */
UL_FUNC void ulp_lazy_member(ul_list *l, uint32_t pos, int on);

/* Lazy lists: what ulp_update (moved 0) or ulp_rebuild (moved 1) would
 * have told a strategy that rebuilds on a change (hash). */
UL_FUNC void ulp_lazy_changed(ul_list *l, int moved);

/* The member at pos changed eligibility or effective weight; old_elig and
 * old_ew are what it had. */
UL_FUNC void ulp_update(ul_list *l, uint32_t pos, int old_elig, int64_t old_ew);

/* The position picked by the list's strategy among the eligible members
 * (l->nelig > 0, l->rr < n). key: the hash key (hash strategy). */
UL_FUNC uint32_t ulp_pick(ul_list *l, uint64_t key);

/* ---- each strategy's entry points, for pick.c ------------------------- */

/* rr.c: the eligible bitmap (every strategy keeps it; least_conn scans it)
 * and round robin over it. */
UL_FUNC void ulp_bm_rebuild(ul_list *l);
UL_FUNC void ulp_bm_update(ul_list *l, uint32_t pos, int elig);
/* lazy lists: the healthy member at pos joins (on) or leaves tier's bitmap */
UL_FUNC void ulp_bm_tier(ul_list *l, uint32_t tier, uint32_t pos, int on);
/* the position after the last pick; the first eligible position at or
 * cyclically after from (nelig > 0) */
UL_FUNC uint32_t ulp_after_rr(const ul_list *l);
UL_FUNC uint32_t ulp_next_elig(const ul_list *l, uint32_t from);
UL_FUNC uint32_t ulp_rr_pick(const ul_list *l);

/* weighted.c: smooth weighted round robin (kinetic tree, or a scan). */
UL_FUNC void ulp_kst_rebuild(ul_list *l);
UL_FUNC void ulp_kst_leaf(ul_list *l, uint32_t pos);
/* lazy lists: the member at pos leaves (on 0: its cur made plain) or joins
 * (1) the tree of its class; a flip moves no member (weighted.c) */
UL_FUNC void ulp_kst_lazy(ul_list *l, uint32_t pos, int on);
/* what a pick reads (mode: 0 eager, 1 lazy, 2 lazy in panic; pick: the
 * tree outside panic) moves: the counts that start or stop advancing
 * change form, keeping their values; O(trees), nothing else moves */
UL_FUNC void ulp_kst_state(ul_list *l, uint32_t mode, uint32_t pick);
UL_FUNC uint32_t ulp_weighted_pick(ul_list *l);
/* A shared weighted list's nodes brought up to the pick word's index
 * (weighted.c, "one period"): first in every locked section. */
UL_FUNC void ulp_ws_sync(ul_list *l);

/* random.c: random (Fenwick trees, the sets) and least_conn (the sets). */
UL_FUNC void ulp_random_rebuild(ul_list *l);
UL_FUNC void ulp_random_update(ul_list *l, uint32_t pos, int old_elig,
                               int64_t old_ew);
UL_FUNC void ulp_random_lazy(ul_list *l, uint32_t pos, int on);
UL_FUNC void ulp_sets_rebuild(ul_list *l);
UL_FUNC void ulp_sets_move(ul_list *l, uint32_t pos, uint32_t old_cls);
UL_FUNC uint32_t ulp_random_pick(ul_list *l);
UL_FUNC uint32_t ulp_least_conn_pick(ul_list *l);

/* maglev.c: hash. After a change (ulp_maglev_changed; moved: positions
 * may have moved) the picks build the next table aside, a slice each,
 * while they read the last one (ulp_maglev_slice: the slice for a table of
 * m entries, 0 for whole builds). ulp_maglev_copy gives a grown list dst
 * the table of src when both have the same M. ulp_maglev_settle finishes
 * the build under way and any pending one (tests, benchmarks). */
UL_FUNC uint64_t ulp_maglev_size(uint32_t cap, uint32_t prev);
UL_FUNC uint32_t ulp_maglev_slice(uint32_t m);
UL_FUNC void ulp_maglev_changed(ul_list *l, int moved);
UL_FUNC void ulp_maglev_copy(ul_list *dst, const ul_list *src);
UL_FUNC void ulp_maglev_settle(ul_list *l);
UL_FUNC uint32_t ulp_hash_pick(ul_list *l, uint64_t key);

#endif
