/*
 * core/shm.h - the shared-memory room of the core (issue 10's foundation):
 * named shared mappings, the process-shared robust mutex in each, the
 * prober lease, and a string arena addressed by offsets. Plain C and
 * pthreads, no Lua headers; nothing here knows the list (core.h), and the
 * list does not use it yet: docs/ARCHITECTURE.md, "Shared memory".
 *
 * A mapping is MAP_SHARED | MAP_ANONYMOUS, made once per name and kept in
 * a process-wide registry for the life of the process (never unmapped):
 * every thread and lua_State of the process that opens the name gets the
 * same mapping at the same address, and so does every process forked
 * after it was made (the registry and the mapping are inherited). Nothing
 * in the mapping is a pointer, so it means the same in every process.
 *
 * Clocks: the lease's times are on a clock the caller passes in, in
 * seconds, which every process sharing the mapping must agree on (a
 * monotonic clock does, being system-wide).
 */
#ifndef UL_SHM_H
#define UL_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "core.h" /* UL_FUNC */

/* The header at the start of a mapping (opaque; shm.c). */
typedef struct ul_shm ul_shm;

/* ul_shm_open's results. */
enum {
  UL_SHM_MADE = 0,      /* a new mapping, zero-filled, was made */
  UL_SHM_FOUND = 1,     /* the name was open already: its mapping */
  UL_SHM_EINVAL = -1,   /* bad name (empty or too long) or size (0, overflow) */
  UL_SHM_ELAYOUT = -2,  /* the name exists with another signature or size */
  UL_SHM_ENOMAP = -3,   /* the system could not make the mapping (errno set) */
  UL_SHM_EMUTEX = -4    /* the mutex could not be made process-shared/robust */
};

#define UL_SHM_NAME_MAX 255

/* Opens the mapping called name (1..UL_SHM_NAME_MAX bytes), with a user
 * area of size bytes (>= 1) laid out as sig says (an opaque summary of
 * the caller's layout: strategy, capacity...). A name not open yet in
 * this process family is made (UL_SHM_MADE); a name that is comes back
 * as it is (UL_SHM_FOUND), whatever it holds, if sig and size are the
 * same, else UL_SHM_ELAYOUT and *out is the existing mapping (to read,
 * e.g. to report its signature), or NULL on the other errors. Nothing is
 * registered on an error. Thread-safe. */
UL_FUNC int ul_shm_open(const char *name, uint64_t sig, size_t size,
                        ul_shm **out);

/* The mapping called name if this process family has it open, else NULL
 * (nothing is made). Thread-safe. */
UL_FUNC ul_shm *ul_shm_find(const char *name);

/* Points the registered name at m (a mapping registered under another
 * name) from now on: the next open of name finds m. The mapping name had
 * stays mapped (callers holding it keep it). 0 when name is not open.
 * Thread-safe. */
UL_FUNC int ul_shm_alias(const char *name, ul_shm *m);

/* A message for a result of ul_shm_open or ul_shm_lock ("..."). */
UL_FUNC const char *ul_shm_strerror(int rc);

/* The user area: 64-byte aligned, size bytes, zero-filled when made. */
UL_FUNC void *ul_shm_data(ul_shm *m);
UL_FUNC size_t ul_shm_size(const ul_shm *m);
UL_FUNC uint64_t ul_shm_sig(const ul_shm *m);

/* Testing: the k-th system resource ul_shm_open asks for from now on
 * fails, as if the system refused it (each new name asks for two: 1 the
 * mmap, 2 the malloc of its registry entry); 0 fails none. */
UL_FUNC void ul_shm_fail_at(int k);

/* --- the mutex ----------------------------------------------------------
 * Every writer of the user area holds it. It is robust: when its holder
 * dies, the next ul_shm_lock gets it and says so. What the dead holder was
 * writing may be half done; the derived state (what can be recomputed from
 * the rest: bitmaps, trees, counters) must be rebuilt before use. The
 * mapping keeps a "dirty" flag for it, set before the mutex is made
 * consistent and cleared after a rebuild, so a rebuild that dies too is
 * run again by the next locker. */

enum {
  UL_LOCK_OK = 0,        /* locked */
  UL_LOCK_RECOVERED = 1, /* locked; a holder died: see ul_shm_lock */
  UL_LOCK_ERROR = -5     /* not locked: ENOTRECOVERABLE, or this thread
                            holds it already (EDEADLK) */
};

/* Locks m. When a holder died, or a rebuild is still owed (dirty), calls
 * rebuild(m, ud) if given, with the lock held, and clears the flag, and
 * returns UL_LOCK_RECOVERED; with no rebuild the flag stays set for the
 * next locker that has one, and ul_shm_dirty tells. */
UL_FUNC int ul_shm_lock(ul_shm *m, void (*rebuild)(ul_shm *m, void *ud),
                        void *ud);
UL_FUNC void ul_shm_unlock(ul_shm *m);
/* 1 while a rebuild is owed (read with the lock held). */
UL_FUNC int ul_shm_dirty(const ul_shm *m);
/* How many times a dead holder's lock was recovered. */
UL_FUNC uint64_t ul_shm_recoveries(const ul_shm *m);
/* How many times m was locked, by any process (read with the lock held:
 * the caller's own acquisition counts). Tests: a lock-free pick takes none. */
UL_FUNC uint64_t ul_shm_locks(const ul_shm *m);

/* --- the prober lease ---------------------------------------------------
 * At most one process at a time holds it: the one that runs the shared
 * list's checks. A holding is named by its generation, which grows by one
 * at every acquisition and is never reused, so a report carrying it can
 * be refused once the holding is over (fencing). Taken under the mutex;
 * ul_shm_lease_check is lock-free. Return 1 on success, 0 when refused,
 * UL_SHM_EINVAL for a time that is not finite or a ttl <= 0. */

typedef struct ul_lease {
  int64_t pid;   /* holder, 0 when free */
  double since;  /* when it acquired */
  double expiry; /* the holding may be taken over from then on */
  uint64_t gen;  /* its generation; the last one when free */
} ul_lease;

/* Acquires the lease at time now for ttl seconds when it is free,
 * expired (now >= expiry), or held by a process that no longer exists
 * (kill(pid, 0) fails with ESRCH: a zombie still exists until reaped). A
 * holding by this very process counts as any other: renew it. On success
 * *gen is the new generation. */
UL_FUNC int ul_shm_lease_acquire(ul_shm *m, double now, double ttl,
                                 uint64_t *gen);
/* Moves the expiry of holding gen to now + ttl; refused unless gen is
 * the current holding and this process holds it. An expired holding that
 * nobody took over renews. */
UL_FUNC int ul_shm_lease_renew(ul_shm *m, uint64_t gen, double now,
                               double ttl);
/* 1 when gen is the current holding and this process holds it. */
UL_FUNC int ul_shm_lease_check(const ul_shm *m, uint64_t gen);
/* Gives holding gen up (the generation stays; the next acquire bumps it). */
UL_FUNC int ul_shm_lease_release(ul_shm *m, uint64_t gen);
/* Fills *st with the lease as it is (for status). */
UL_FUNC void ul_shm_lease_read(const ul_shm *m, ul_lease *st);

/* --- the string arena ---------------------------------------------------
 * Strings stored by offset in a block of fixed size that may sit anywhere
 * (in a mapping, at an 8-aligned place): no pointer inside, so it means
 * the same in every process, and the same operations give the same
 * offsets. Each string is a chunk: an 8-byte header (its size and
 * length), the bytes, a NUL. Freed chunks are merged with free neighbours
 * by the next allocation that walks past them. A process that dies in the
 * middle of any change leaves the chunks tiling the arena: a chunk's
 * header changes by one 8-byte store, and a split writes the new free
 * tail's header (inside the free chunk) before the chunk shrinks onto it.
 * ul_arena_recover recomputes the counters and sweeps the strings nobody
 * kept. Callers serialise (the mutex). */

typedef struct ul_arena {
  uint32_t size;  /* bytes, this header included; a multiple of 8 */
  uint32_t hint;  /* a chunk at or before the first free one */
  uint32_t nused; /* strings stored */
  uint32_t used;  /* bytes in chunks holding strings, headers included */
  uint32_t pad[2];
} ul_arena;

/* Bytes of an arena that can hold strings totalling bytes bytes, each
 * counted with its header and rounding (ul_arena_cost); 0 on overflow. */
UL_FUNC size_t ul_arena_size(size_t bytes);
/* Bytes one string of len bytes takes (header, NUL, rounding to 8). */
UL_FUNC size_t ul_arena_cost(size_t len);
/* Initialises an arena of size bytes (>= sizeof(ul_arena) + 16, <= 4 GiB,
 * rounded down to 8). Returns 0 when size is out of range. */
UL_FUNC int ul_arena_init(ul_arena *a, size_t size);
/* Stores len bytes of s and returns their offset from a (never 0), or 0
 * when no free chunk is large enough. */
UL_FUNC uint32_t ul_arena_alloc(ul_arena *a, const void *s, size_t len);
/* Frees the string at off. Returns 0 (nothing changed) when off is not a
 * stored string's offset as far as its header tells. */
UL_FUNC int ul_arena_free(ul_arena *a, uint32_t off);
/* The string at off (NUL-terminated) and its length, or NULL when off is
 * not a stored string's offset as far as its header tells. */
UL_FUNC const char *ul_arena_get(const ul_arena *a, uint32_t off,
                                 size_t *len);
/* 1 when the string at off is the len bytes of s. */
UL_FUNC int ul_arena_eq(const ul_arena *a, uint32_t off, const void *s,
                        size_t len);
/* After a holder died: recomputes hint, nused and used from the chunks,
 * then frees every string for which live(off, ud) is 0 (those stored by
 * an allocation whose caller died before keeping the offset), when live
 * is given. Returns the number freed. */
UL_FUNC uint32_t ul_arena_recover(ul_arena *a,
                                  int (*live)(uint32_t off, void *ud),
                                  void *ud);
/* NULL when the arena keeps every invariant (chunks tile it exactly,
 * sizes, counters, hint), else the first one broken. */
UL_FUNC const char *ul_arena_validate(const ul_arena *a);

#endif
