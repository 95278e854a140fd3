/*
 * lua/shared.h - what the files of shared lists share (issue 10):
 * shared.c (the mapping, the cache, making, attaching, the methods),
 * shared_checks.c (the lease, due/report, the scheduler's core calls),
 * shared_hooks.c (test hooks). Not installed.
 */
#ifndef LU_SHARED_H
#define LU_SHARED_H

#include "binding.h"
#include "../core/block.h"
#include "../core/shm.h"
#include "../core/atomic.h"

#define LU_SH_MAGIC 0x75707368726c3031ULL /* "upshrl01" */
#define LU_SH_TRIES 64 /* resyncs one call makes at most */
#define LU_SH_MIN_STR 64 /* arena bytes per slot at least */

/* The header of a shared list's mapping. Written under the lock. */
typedef struct lu_shdr {
  uint64_t magic;
  uint64_t sig;
  uint32_t init;      /* 1 once the block and the arena are laid out */
  uint32_t version;   /* membership: bumped by every change of slots */
  uint32_t cap;
  int32_t strategy;
  uint32_t off_list;  /* from the header: the core block */
  uint32_t off_arena; /* from the header: the arena */
  uint32_t arena_size;
  uint32_t pad;
  ul_opts opts;       /* the maker's: errors name what differs */
  uint32_t off_str[]; /* [cap]: offset in the arena of slot s's string */
} lu_shdr;

/* This process's view of a shared list (a userdata at LU_UV_SHARED). */
typedef struct lu_shared {
  ul_shm *m;
  lu_shdr *h;
  ul_list *b;  /* the shared block */
  ul_arena *a;
  uint32_t cap;
  size_t bsize; /* bytes of the block */
  int shut;     /* this process shut its view down */
  uint64_t gen; /* the lease holding of this view, 0: none */
  ul_lfview lf; /* what a lock-free pick reads of the layout (core.h) */
  char name[UL_SHM_NAME_MAX + 1];
} lu_shared;

/* The lock, and the shared list at index 1 locked with its cache in step
 * (shared.c). */
LU_FUNC void lu_sh_lock(lua_State *L, lu_shared *sh);
LU_FUNC void lu_sh_unlock(lu_shared *sh);
LU_FUNC void lu_sh_begin(lua_State *L, lu_list *u);
LU_FUNC void lu_sh_sync(lua_State *L, int idx);
LU_FUNC lu_list *lu_sh_check(lua_State *L);
LU_FUNC int lu_sh_member(const lu_shared *sh, uint32_t s);
LU_FUNC void lu_sh_copy(ul_list *dst, const lu_shared *sh);

/* shared_checks.c: the methods of the lease holder's checks */
LU_FUNC int ls_due(lua_State *L);
LU_FUNC int ls_report(lua_State *L);
LU_FUNC int ls_next_due(lua_State *L);
LU_FUNC int ls_lease(lua_State *L);

/* shared_hooks.c: test hooks */
LU_FUNC int ls_validate(lua_State *L);
LU_FUNC int ls_shm(lua_State *L);
LU_FUNC int ls_die_writing(lua_State *L);
LU_FUNC void lu_shared_hooks(lua_State *L);

#endif
