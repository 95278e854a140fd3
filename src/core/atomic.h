/*
 * core/atomic.h - the stores and loads a lock-free pick can race with
 * (shared lists, issue 10). Internal to the core; GCC/clang builtins,
 * no C11 <stdatomic.h> needed.
 *
 * A shared list's round-robin, hash, random and weighted picks run
 * without the mutex (rr.c ul_pick_lockfree, maglev.c, random.c,
 * weighted.c): they read n, nelig, panic_on, bm_pick, ramping, the bitmaps
 * and the order (and hash's table, random's trees and sets, weighted's
 * period) while a lock holder may write them. Every such
 * store is UL_WST (writers are serialized by the mutex, so a store, never
 * an RMW, except for the pick counters, UL_ADD, and the generator, which
 * every draw moves with a CAS: rand.h), every such load on the lock-free
 * side UL_LLD. On x86 both are a plain mov; on every target they
 * keep the compiler from tearing or inventing accesses, and make the race
 * one that ThreadSanitizer accepts.
 *
 * The ordering is a sequence lock's (rr.c): relaxed accesses ordered by
 * one release fence after the writer makes the sequence odd and one
 * acquire fence before the reader's CAS. ThreadSanitizer models no fence
 * (gcc warns about them, -Wtsan), so a TSan build orders the same accesses
 * with release stores and acquire loads instead, which it does model and
 * which give the same guarantee: a load that sees a store made after the
 * writer's odd sequence also sees that sequence, so the CAS fails.
 */
#ifndef UL_ATOMIC_H
#define UL_ATOMIC_H

#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(__SANITIZE_THREAD__) || __has_feature(thread_sanitizer)
#define UL_TSAN 1
#endif

#ifdef UL_TSAN
#define UL_WST(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define UL_LLD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define UL_FENCE_WRITER() ((void)0)
#define UL_FENCE_READER() ((void)0)
#else
#define UL_WST(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define UL_LLD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define UL_FENCE_WRITER() __atomic_thread_fence(__ATOMIC_RELEASE)
#define UL_FENCE_READER() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#endif
/* a pick counter: lock-free picks and locked ones add at once */
#define UL_ADD(p, v) ((void)__atomic_fetch_add((p), (v), __ATOMIC_RELAXED))
/* a relaxed load: status and metrics reading the pick counters */
#define UL_LD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

#endif
