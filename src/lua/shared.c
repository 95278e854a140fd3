/*
 * lua/shared.c - shared lists (issue 10): upstream.new(backends,
 * {shared = name, capacity = N, ...}) and upstream.attach(name). The
 * list's block lives in a named shared mapping (core/shm.h), the same in
 * every process forked after it was made and in every lua_State of the
 * process; backends are strings, kept in an arena in the mapping.
 *
 * The mapping's user area: the header (lu_shdr: magic, layout signature,
 * membership version, the offset in the arena of each slot's string),
 * the core block (ul_size(cap, strategy)), the string arena. Nothing in it
 * is a pointer.
 *
 * Lock rules: every core call on the shared block is made under the
 * mapping's robust mutex (ul_shm_lock, with lu_sh_rebuild as the rebuild
 * after a holder died), and the lock is never held across anything that
 * can call Lua, raise or allocate: what a method needs from Lua (the
 * clock, the arguments, room on the stack, scratch userdata) is got
 * before it locks; under the lock only raw table reads are made, and Lua
 * values are built after it unlocks.
 *
 * Each process keeps, per list, the slot table (slot+1 -> backend) and
 * the index (backend -> slot) as a cache of the arena, valid for one
 * membership version (u->version). Every method locks, compares the
 * shared version with the cache's, and on a difference unlocks, resyncs
 * the cache (lu_sh_sync) and tries again (bounded): a pick right after
 * another process's reconcile returns the right backend.
 *
 * u->core is this process's snapshot of the block (LU_UV_BLOCK), copied
 * under the lock for status()/status_of(), which then run on it
 * unchanged; nothing else reads it.
 *
 * Test hooks (documented in README, "Shared lists"): upstream._fork,
 * _wait, _exit, _kill, _getpid, _in_new_state and list:_validate().
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lualib.h"

#include "binding.h"
#include "../core/block.h"
#include "../core/shm.h"

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
  char name[UL_SHM_NAME_MAX + 1];
} lu_shared;

static size_t lu_al64(size_t x) { return (x + 63u) & ~(size_t)63u; }

static size_t lu_sh_hsize(uint32_t cap) {
  return lu_al64(sizeof(lu_shdr) + (size_t)cap * sizeof(uint32_t));
}

/* The layout signature: what two makers must agree on. */
static uint64_t lu_sh_sig(int strategy, uint32_t cap, const ul_opts *o) {
  struct {
    uint64_t magic;
    int32_t strategy;
    uint32_t cap;
    ul_opts o;
  } k;
  memset(&k, 0, sizeof k);
  k.magic = LU_SH_MAGIC;
  k.strategy = strategy;
  k.cap = cap;
  k.o = *o;
  return ul_hash(&k, sizeof k);
}

static int lu_sh_member(const lu_shared *sh, uint32_t s) {
  return (ul_nodes(sh->b)[s].flags & UL_F_MEMBER) != 0;
}

/* --- the lock ------------------------------------------------------------ */

/* The arena's live strings after a holder died: those a member's slot
 * holds (O(cap) per string: recovery only). */
static int lu_sh_live(uint32_t off, void *ud) {
  const lu_shared *sh = (const lu_shared *)ud;
  uint32_t s;
  for (s = 0; s < sh->cap; s++)
    if (sh->h->off_str[s] == off && lu_sh_member(sh, s)) return 1;
  return 0;
}

/* Run by ul_shm_lock, lock held, after a holder died: the derived state
 * of the block recomputed, the slots' string offsets cleaned, the strings
 * nobody holds freed, the version bumped (every process resyncs). A
 * member left without a valid string (cannot happen in the order the
 * writers use, but costs nothing to cover) is taken out. */
static void lu_sh_rebuild(ul_shm *m, void *ud) {
  lu_shared *sh = (lu_shared *)ud;
  uint32_t s;
  (void)m;
  if (!sh->h->init) return;
  ul_repair(sh->b);
  for (s = 0; s < sh->cap; s++) {
    size_t len;
    if (!lu_sh_member(sh, s)) {
      sh->h->off_str[s] = 0;
    } else if (ul_arena_get(sh->a, sh->h->off_str[s], &len) == NULL) {
      ul_node *x = &ul_nodes(sh->b)[s];
      x->flags = 0; /* no longer a member: repaired again below */
      sh->h->off_str[s] = 0;
    }
  }
  ul_repair(sh->b);
  ul_arena_recover(sh->a, lu_sh_live, sh);
  sh->h->version++;
}

static void lu_sh_lock(lua_State *L, lu_shared *sh) {
  if (ul_shm_lock(sh->m, lu_sh_rebuild, sh) < 0)
    luaL_error(L, "upstream.list: shared list '%s': %s", sh->name,
               ul_shm_strerror(UL_LOCK_ERROR));
}

static void lu_sh_unlock(lu_shared *sh) { ul_shm_unlock(sh->m); }

/* --- the local cache ------------------------------------------------------ */

/* Slot s (0-based) of the tables at slots (slots, errors, threads, the
 * threads to close) holds another backend or none: its last error goes,
 * and its running check, which is another backend's, is closed. */
static void lu_sh_changed(lua_State *L, int slots, uint32_t s) {
  lua_pushnil(L);
  lua_rawseti(L, slots + 1, (lua_Integer)s + 1);
  if (lua_rawgeti(L, slots + 2, (lua_Integer)s + 1) == LUA_TTHREAD) {
    lua_rawseti(L, slots + 3, (lua_Integer)lua_rawlen(L, slots + 3) + 1);
    lua_pushnil(L);
    lua_rawseti(L, slots + 2, (lua_Integer)s + 1);
  } else {
    lua_pop(L, 1);
  }
}

/* Resyncs the slot and index tables of the list at idx from the arena.
 * The strings are copied under the lock into a userdata made before it;
 * the tables are built after. */
static void lu_sh_sync(lua_State *L, int idx) {
  lu_list *u = (lu_list *)lua_touserdata(L, idx);
  lu_shared *sh = u->sh;
  uint32_t s, ver, *offs, cap = sh->cap;
  char *abuf;
  int buf, slots, index;
  size_t asz = sh->h->arena_size; /* fixed at init */
  luaL_checkstack(L, 8, NULL);
  offs = (uint32_t *)lua_newuserdatauv(L, (size_t)cap * 4 + asz + 8, 0);
  buf = lua_gettop(L);
  abuf = (char *)(offs + cap) + ((8 - ((size_t)cap * 4) % 8) % 8);
  lu_sh_lock(L, sh);
  ver = sh->h->version;
  for (s = 0; s < cap; s++) offs[s] = lu_sh_member(sh, s) ? sh->h->off_str[s] : 0;
  memcpy(abuf, sh->a, asz);
  lu_sh_unlock(sh);
  lua_getiuservalue(L, idx, LU_UV_SLOTS);
  slots = lua_gettop(L);
  lua_getiuservalue(L, idx, LU_UV_ERRORS);
  lua_getiuservalue(L, idx, LU_UV_THREADS); /* slots + 2 */
  lua_newtable(L);                          /* slots + 3: to close */
  lua_createtable(L, 0, (int)cap);
  index = lua_gettop(L);
  for (s = 0; s < cap; s++) {
    size_t len = 0, have;
    const char *str = offs[s] ? ul_arena_get((const ul_arena *)abuf, offs[s], &len)
                              : NULL;
    const char *old;
    int t = lua_rawgeti(L, slots, (lua_Integer)s + 1);
    old = t == LUA_TSTRING ? lua_tolstring(L, -1, &have) : NULL;
    if (str == NULL) {
      lua_pop(L, 1);
      if (t != LUA_TNIL) {
        lua_pushnil(L);
        lua_rawseti(L, slots, (lua_Integer)s + 1);
        lu_sh_changed(L, slots, s);
      }
      continue;
    }
    if (old == NULL || have != len || memcmp(old, str, len) != 0) {
      lua_pop(L, 1);
      lua_pushlstring(L, str, len);
      lua_pushvalue(L, -1);
      lua_rawseti(L, slots, (lua_Integer)s + 1);
      lu_sh_changed(L, slots, s);
    }
    lua_pushvalue(L, -1);
    if (lua_rawget(L, index) == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushinteger(L, (lua_Integer)s);
      lua_rawset(L, index);
    } else {
      lua_pop(L, 2);
    }
  }
  lua_setiuservalue(L, idx, LU_UV_INDEX);
  u->version = ver;
  for (s = 1; s <= (uint32_t)lua_rawlen(L, slots + 3); s++) {
    lua_rawgeti(L, slots + 3, (lua_Integer)s);
    lu_close_thread(L, lua_tothread(L, -1));
    lua_pop(L, 1);
  }
  lua_settop(L, buf - 1);
}

/* Locks the shared list at index 1 with its cache in step: returns with
 * the lock held. */
static void lu_sh_begin(lua_State *L, lu_list *u) {
  int k;
  for (k = 0; k < LU_SH_TRIES; k++) {
    lu_sh_lock(L, u->sh);
    if (u->sh->h->version == u->version) return;
    lu_sh_unlock(u->sh);
    lu_sh_sync(L, 1);
  }
  luaL_error(L, "upstream.list: shared list '%s' changed %d times during "
                "one call", u->sh->name, LU_SH_TRIES);
}

/* The shared list at index 1 (metatable compared with upvalue 1). */
static lu_list *lu_sh_check(lua_State *L) {
  lu_list *u = lu_check_list(L);
  if (u->sh == NULL) luaL_typeerror(L, 1, "shared upstream.list");
  return u;
}

/* First slot holding the value at arg 2 in the cache, or -1: raw reads. */
static int32_t lu_sh_find(lua_State *L) {
  int32_t s = -1;
  lua_getiuservalue(L, 1, LU_UV_INDEX);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, -2) == LUA_TNUMBER) s = (int32_t)lua_tointeger(L, -1);
  lua_pop(L, 2);
  return s;
}

/* --- making and attaching --------------------------------------------------- */

/* Names the first thing that differs between two layouts. */
/* Names the first thing that differs between two layouts. */
/* Pushes the message. */
static const char *lu_sh_differs(lua_State *L, const char *fn, const char *name,
                          const lu_shdr *h, int strategy, uint32_t cap,
                          const ul_opts *o) {
  static const char *const strat[] = {"round_robin", "weighted", "least_conn",
                                      "hash", "random"};
  static const struct {
    const char *name;
    size_t off;
  } nums[] = {{"interval", offsetof(ul_opts, interval)},
              {"unhealthy_interval", offsetof(ul_opts, unhealthy_interval)},
              {"timeout", offsetof(ul_opts, timeout)},
              {"jitter", offsetof(ul_opts, jitter)},
              {"initial_score", offsetof(ul_opts, initial_score)},
              {"low_score", offsetof(ul_opts, low_score)},
              {"high_score", offsetof(ul_opts, high_score)},
              {"fail_delta", offsetof(ul_opts, fail_delta)},
              {"success_delta", offsetof(ul_opts, success_delta)},
              {"panic", offsetof(ul_opts, panic)},
              {"slow_start", offsetof(ul_opts, slow_start)},
              {NULL, 0}};
  int k;
  if (h->strategy != strategy)
    return lua_pushfstring(L, "upstream.%s: shared list '%s' exists with other options: "
                  "strategy %s, not %s", fn, name,
               strat[h->strategy < 0 || h->strategy > 4 ? 0 : h->strategy],
               strat[strategy]);
  if (h->cap != cap)
    return lua_pushfstring(L, "upstream.%s: shared list '%s' exists with other options: "
                  "capacity %d, not %d", fn, name, (int)h->cap, (int)cap);
  for (k = 0; nums[k].name; k++) {
    double a = *(const double *)(const void *)((const char *)&h->opts + nums[k].off);
    double b = *(const double *)(const void *)((const char *)o + nums[k].off);
    if (a != b && !(a != a && b != b))
      return lua_pushfstring(L, "upstream.%s: shared list '%s' exists with other options: "
                    "%s %f, not %f", fn, name, nums[k].name, a, b);
  }
  if (h->opts.tier_min != o->tier_min || h->opts.tier_max != o->tier_max ||
      h->opts.tier_init != o->tier_init)
    return lua_pushfstring(L, "upstream.%s: shared list '%s' exists with other options: "
                  "tiers {min = %d, max = %d, init = %d}", fn, name,
               h->opts.tier_min, h->opts.tier_max, h->opts.tier_init);
  return lua_pushfstring(L, "upstream.%s: shared list '%s' exists with another layout",
             fn, name);
}

/* In nginx's init phase (the master, at start or reload)? Asks
 * ngx.get_phase(), protected. */
static int lu_sh_get_phase_p(lua_State *L) {
  lua_getglobal(L, "ngx");
  if (!lua_istable(L, -1)) return 0;
  lua_getfield(L, -1, "get_phase");
  if (!lua_isfunction(L, -1)) return 0;
  lua_call(L, 0, 1);
  return 1;
}

static int lu_sh_nginx_init(lua_State *L) {
  int init;
  lua_pushcfunction(L, lu_sh_get_phase_p);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    return 0;
  }
  init = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "init") == 0;
  lua_pop(L, 1);
  return init;
}

/* A reload gave an existing name another layout (the message at top):
 * the name starts fresh in a mapping of its own (named after the layout,
 * so a reload back to it finds that one), the name points at it from now
 * on, and the error log says so once. The old workers keep the old one
 * until they exit. */
static int lu_sh_fresh(lua_State *L, const char *name, uint64_t sig,
                       size_t size, ul_shm **m) {
  char alt[UL_SHM_NAME_MAX + 1];
  int rc;
  snprintf(alt, sizeof alt, "%.200s\001%016llx", name, (unsigned long long)sig);
  rc = ul_shm_open(alt, sig, size, m);
  if (rc == UL_SHM_ELAYOUT && *m != NULL && ul_shm_sig(*m) == sig)
    rc = UL_SHM_FOUND;
  if (rc < 0) return rc;
  ul_shm_alias(name, *m);
  lua_getglobal(L, "ngx"); /* known to be a table with get_phase */
  lua_getfield(L, -1, "log");
  lua_getfield(L, -2, "WARN");
  lua_pushfstring(L, "%s: it starts fresh with the new layout",
                  lua_tostring(L, -4));
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) lua_pop(L, 1);
  lua_pop(L, 2); /* ngx, the message */
  return rc;
}

/* Fills sh for mapping m. */
static void lu_sh_bind(lu_shared *sh, ul_shm *m, const char *name) {
  sh->m = m;
  sh->h = (lu_shdr *)ul_shm_data(m);
  sh->cap = sh->h->cap;
  sh->b = (ul_list *)(void *)((char *)sh->h + sh->h->off_list);
  sh->a = (ul_arena *)(void *)((char *)sh->h + sh->h->off_arena);
  sh->bsize = ul_size(sh->cap, sh->h->strategy);
  sh->shut = 0;
  sh->gen = 0;
  snprintf(sh->name, sizeof sh->name, "%s", name);
}

/* The list userdata at top: its shared view, snapshot block and slot
 * table (an array part for every slot), for mapping m. */
static void lu_sh_finish(lua_State *L, lu_list *u, ul_shm *m, const char *name) {
  int list = lua_gettop(L);
  lu_shared *sh = (lu_shared *)lua_newuserdatauv(L, sizeof *sh, 0);
  ul_list *snap;
  lu_sh_bind(sh, m, name);
  lua_setiuservalue(L, list, LU_UV_SHARED);
  lua_createtable(L, (int)sh->cap, 0);
  lua_setiuservalue(L, list, LU_UV_SLOTS);
  snap = (ul_list *)lua_newuserdatauv(L, sh->bsize, 0);
  lua_setiuservalue(L, list, LU_UV_BLOCK);
  lu_sh_lock(L, sh);
  memcpy(snap, sh->b, sh->bsize);
  lu_sh_unlock(sh);
  u->sh = sh;
  u->version = 0; /* the shared one is >= 1: the first call resyncs */
  u->core = snap;
}

/* Copies the shared block into this process's snapshot (lock held). */
static void lu_sh_snap(lu_list *u) { memcpy(u->core, u->sh->b, u->sh->bsize); }

/* The backends at idx, as a sequence of distinct strings (pushed) and a
 * set of them (pushed); returns how many and their total length. */
static lua_Integer lu_sh_strings(lua_State *L, int idx, const char *fn,
                                 size_t *total) {
  lua_Integer k, n = (lua_Integer)lua_rawlen(L, idx), m = 0;
  int seq, set;
  lua_createtable(L, (int)n, 0);
  seq = lua_gettop(L);
  lua_createtable(L, 0, (int)n);
  set = lua_gettop(L);
  *total = 0;
  for (k = 1; k <= n; k++) {
    if (lua_rawgeti(L, idx, k) != LUA_TSTRING)
      luaL_error(L, "upstream.%s: backends of a shared list must be strings; "
                    "backends[%d] is %s", fn, (int)k, lu_got(L, -1));
    lua_pushvalue(L, -1);
    if (lua_rawget(L, set) != LUA_TNIL) {
      lua_pop(L, 2);
      continue;
    }
    lua_pop(L, 1);
    *total += lua_rawlen(L, -1);
    lua_pushvalue(L, -1);
    lua_pushboolean(L, 1);
    lua_rawset(L, set);
    lua_rawseti(L, seq, ++m);
  }
  return m;
}

/* What a reconcile of the shared list at 1 adds and keeps, per backend k
 * of the sequence seq: found before the lock, from the cache. */
typedef struct lu_plan {
  int32_t slot;   /* the member's slot, -1: to add */
  uint32_t weight; /* 0: not named (a kept member keeps its own) */
  uint32_t off;    /* the added's string, once stored */
  uint32_t pad;
  uint64_t hash;
} lu_plan;

/* The set (the n strings of the sequence at seq) becomes the members of
 * the shared list at 1: kept members keep their slot and state, the
 * others leave, the new join (ramp: slow start for them). w: the weights
 * table or 0. Returns the number added; the added are pushed, in order,
 * as a sequence (for on_change). Nothing changes on an error. */
static lua_Integer lu_sh_reconcile(lua_State *L, lua_Integer n, int seq, int w,
                                   int ramp, const char *fn) {
  lu_list *u = (lu_list *)lua_touserdata(L, 1);
  lu_shared *sh = u->sh;
  lu_plan *plan;
  unsigned char *drop;
  double now = NAN;
  int checked, tries, added_t, top;
  lua_Integer k, added = 0;
  uint32_t s, ndrop;
  if (n > (lua_Integer)sh->cap)
    luaL_error(L, "upstream.%s: shared list '%s': %d backends are over its "
                  "capacity %d", fn, sh->name, (int)n, (int)sh->cap);
  lua_getiuservalue(L, 1, LU_UV_CHECK);
  checked = lua_type(L, -1) == LUA_TFUNCTION;
  lua_pop(L, 1);
  if (!checked && ramp && u->core->opts.slow_start > 0) { /* added ones ramp */
    lua_getiuservalue(L, 1, LU_UV_INDEX);
    for (k = 1; k <= n && !checked; k++) {
      lua_rawgeti(L, seq, k);
      checked = lua_rawget(L, -2) == LUA_TNIL; /* as far as the cache knows */
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (checked) now = lu_list_now(L, 1);
    lua_getiuservalue(L, 1, LU_UV_CHECK);
    checked = lua_type(L, -1) == LUA_TFUNCTION;
    lua_pop(L, 1);
  }
  if (checked) now = lu_list_now(L, 1);
  plan = (lu_plan *)lua_newuserdatauv(L, sizeof(lu_plan) * ((size_t)n + 1), 0);
  drop = (unsigned char *)lua_newuserdatauv(L, sh->cap, 0);
  lua_createtable(L, (int)n, 0);
  added_t = lua_gettop(L);
  luaL_checkstack(L, 8, NULL);
  for (k = 1; k <= n; k++) { /* what does not depend on the cache */
    size_t len;
    const char *str;
    lua_rawgeti(L, seq, k);
    str = lua_tolstring(L, -1, &len);
    plan[k - 1].hash = ul_hash(str, len);
    plan[k - 1].weight = w ? lu_weight_of(L, w, lua_gettop(L), 0) : 0;
    lua_pop(L, 1);
  }
  top = lua_gettop(L);
  for (tries = 0;; tries++) {
    if (tries == LU_SH_TRIES)
      luaL_error(L, "upstream.%s: shared list '%s' changed %d times during "
                    "one call", fn, sh->name, LU_SH_TRIES);
    lua_getiuservalue(L, 1, LU_UV_INDEX);
    for (k = 1; k <= n; k++) {
      lua_rawgeti(L, seq, k);
      plan[k - 1].slot = lua_rawget(L, -2) == LUA_TNUMBER
                             ? (int32_t)lua_tointeger(L, -1) : -1;
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lu_sh_lock(L, sh);
    if (sh->h->version == u->version) break;
    lu_sh_unlock(sh);
    lu_sh_sync(L, 1);
  }
  /* locked, the cache in step: no Lua, no raise, no allocation from here
   * to the unlock. The strings first: an arena that is full fails the
   * reconcile before anything changed */
  for (k = 1; k <= n; k++) {
    size_t len;
    const char *str;
    if (plan[k - 1].slot >= 0) continue;
    lua_rawgeti(L, seq, k);
    str = lua_tolstring(L, -1, &len);
    lua_pop(L, 1); /* the sequence holds it */
    plan[k - 1].off = ul_arena_alloc(sh->a, str, len);
    if (plan[k - 1].off == 0) {
      lua_Integer j;
      for (j = 1; j < k; j++)
        if (plan[j - 1].slot < 0) ul_arena_free(sh->a, plan[j - 1].off);
      lu_sh_unlock(sh);
      luaL_error(L, "upstream.%s: shared list '%s': no room left for the "
                    "backends' strings (its arena holds %d bytes)", fn,
                 sh->name, (int)sh->h->arena_size);
    }
  }
  memset(drop, 0, sh->cap);
  for (s = 0; s < sh->cap; s++) drop[s] = (unsigned char)lu_sh_member(sh, s);
  for (k = 1; k <= n; k++)
    if (plan[k - 1].slot >= 0) drop[plan[k - 1].slot] = 0;
  for (s = 0, ndrop = 0; s < sh->cap; s++) ndrop += drop[s];
  sh->h->version++;
  if (ndrop) {
    ul_remove(sh->b, drop);
    for (s = 0; s < sh->cap; s++)
      if (drop[s]) {
        ul_arena_free(sh->a, sh->h->off_str[s]);
        sh->h->off_str[s] = 0;
      }
  }
  for (k = 1; k <= n; k++) {
    lu_plan *p = &plan[k - 1];
    if (p->slot >= 0) {
      if (p->weight && ul_nodes(sh->b)[p->slot].weight != p->weight)
        ul_set_weight(sh->b, p->slot, p->weight);
      continue;
    }
    /* the string's offset first: a writer that dies here leaves a free
     * slot with an offset (cleaned) or a member with its string */
    sh->h->off_str[sh->b->free_head] = p->off;
    ul_append(sh->b, checked, -1, now, p->weight ? p->weight : 1, p->hash,
              ramp);
    added++;
  }
  lu_sh_snap(u);
  lu_sh_unlock(sh);
  lua_settop(L, top);
  for (k = 1, added = 0; k <= n; k++)
    if (plan[k - 1].slot < 0) {
      lua_rawgeti(L, seq, k);
      lua_rawseti(L, added_t, ++added);
    }
  lu_sh_sync(L, 1);
  lua_pushvalue(L, added_t);
  return added;
}

/* upstream.new(backends, {shared = name, ...}): c read, backends at 1,
 * options at 2; the private and shared metatables at upvalues 1 and 2. */
int lu_new_shared(lua_State *L, lu_conf *c) {
  const char *name = lua_tostring(L, c->shared);
  size_t nlen = lua_rawlen(L, c->shared), total, per, asz, bsize, hsize;
  lua_Integer n, cap;
  uint64_t sig;
  int seq, list, rc, w = c->weights;
  ul_shm *m = NULL;
  lu_list *u;
  lu_shared *sh;
  if (nlen < 1 || nlen > UL_SHM_NAME_MAX || strlen(name) != nlen)
    luaL_error(L, "upstream.new: option 'shared' must be a name of 1 to %d "
                  "bytes without NUL (got %d bytes)", UL_SHM_NAME_MAX,
               (int)nlen);
  n = lu_sh_strings(L, 1, "new", &total);
  seq = lua_gettop(L) - 1;
  cap = c->capacity ? c->capacity : (2 * n > 64 ? 2 * n : 64);
  if (!c->capacity && (m = ul_shm_find(name)) != NULL &&
      ul_shm_lock(m, NULL, NULL) >= 0) { /* an existing list's, if it fits */
    lu_shdr *h = (lu_shdr *)ul_shm_data(m);
    if (h->init && h->magic == LU_SH_MAGIC && (lua_Integer)h->cap >= n)
      cap = h->cap;
    ul_shm_unlock(m);
  }
  m = NULL;
  if (n > cap)
    luaL_error(L, "upstream.new: shared list '%s': %d backends are over its "
                  "capacity %d", name, (int)n, (int)cap);
  if (w) lu_check_weights(L, w, seq + 1, "new");
  per = n ? 2 * ((total + (size_t)n - 1) / (size_t)n) : 0;
  if (per < LU_SH_MIN_STR) per = LU_SH_MIN_STR;
  asz = ul_arena_size((size_t)cap * ul_arena_cost(per));
  bsize = ul_size((uint32_t)cap, c->o.strategy);
  hsize = lu_sh_hsize((uint32_t)cap);
  if (asz == 0 || asz > UINT32_MAX || bsize == 0)
    luaL_error(L, "upstream.new: shared list '%s': capacity %d is too large",
               name, (int)cap);
  sig = lu_sh_sig(c->o.strategy, (uint32_t)cap, &c->o);
  u = lu_new_userdata(L, c, n);
  list = lua_gettop(L);
  rc = ul_shm_open(name, sig, hsize + lu_al64(bsize) + asz, &m);
  if (rc == UL_SHM_ELAYOUT && m != NULL && ul_shm_sig(m) == sig)
    rc = UL_SHM_FOUND; /* the same list, made from another initial set */
  if (rc == UL_SHM_ELAYOUT) {
    lu_shdr *h = (lu_shdr *)ul_shm_data(m);
    const char *why = NULL;
    if (ul_shm_lock(m, NULL, NULL) >= 0) {
      lu_shdr copy = *h;
      ul_shm_unlock(m);
      if (copy.init && copy.magic == LU_SH_MAGIC)
        why = lu_sh_differs(L, "new", name, &copy, c->o.strategy,
                            (uint32_t)cap, &c->o);
    }
    if (why == NULL)
      why = lua_pushfstring(L, "upstream.new: shared list '%s': %s", name,
                            ul_shm_strerror(rc));
    if (!lu_sh_nginx_init(L)) lua_error(L);
    rc = lu_sh_fresh(L, name, sig, hsize + lu_al64(bsize) + asz, &m);
    if (rc < 0)
      luaL_error(L, "upstream.new: shared list '%s': %s (%s)", name,
                 ul_shm_strerror(rc), strerror(errno));
  }
  if (rc < 0)
    luaL_error(L, "upstream.new: shared list '%s': %s (%s)", name,
               ul_shm_strerror(rc), strerror(errno));
  {
    lu_shdr *h = (lu_shdr *)ul_shm_data(m);
    if (ul_shm_lock(m, NULL, NULL) < 0)
      luaL_error(L, "upstream.new: shared list '%s': %s", name,
                 ul_shm_strerror(UL_LOCK_ERROR));
    if (!h->init) { /* the first to lock lays it out */
      h->magic = LU_SH_MAGIC;
      h->sig = sig;
      h->cap = (uint32_t)cap;
      h->strategy = c->o.strategy;
      h->off_list = (uint32_t)hsize;
      h->off_arena = (uint32_t)(hsize + lu_al64(bsize));
      h->arena_size = (uint32_t)(ul_shm_size(m) - h->off_arena);
      h->opts = c->o;
      ul_init((ul_list *)(void *)((char *)h + h->off_list), (uint32_t)cap,
              &c->o, c->seed);
      ul_arena_init((ul_arena *)(void *)((char *)h + h->off_arena),
                    h->arena_size);
      h->version = 1;
      h->init = 1;
      rc = UL_SHM_MADE;
    }
    ul_shm_unlock(m);
  }
  lu_sh_finish(L, u, m, name);
  sh = u->sh;
  (void)sh;
  /* the list to index 1 for the reconcile, the rest kept */
  lua_pushvalue(L, list);
  lua_replace(L, 1);
  lu_sh_reconcile(L, n, seq, w, rc != UL_SHM_MADE, "new");
  lua_pushvalue(L, 1);
  return 1;
}

/* upstream.attach(name [, options]): the shared list called name, made
 * by upstream.new in this process or a parent; options: only those of
 * this process's view (check, clock, sleep, on_change). */
int l_attach(lua_State *L) {
  static const char *const allowed[] = {"check", "clock", "sleep", "on_change",
                                        NULL};
  const char *name = luaL_checkstring(L, 1);
  ul_shm *m;
  lu_shdr copy;
  lu_conf c;
  lu_list *u;
  lua_settop(L, 2);
  if (!lua_isnil(L, 2)) {
    int k;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      lua_pop(L, 1);
      for (k = 0; allowed[k]; k++)
        if (lua_type(L, -1) == LUA_TSTRING &&
            strcmp(lua_tostring(L, -1), allowed[k]) == 0)
          break;
      if (!allowed[k])
        luaL_error(L, "upstream.attach: option %s is not allowed (allowed: "
                      "check, clock, sleep, on_change; the others are the "
                      "list's own)", lu_got(L, -1));
    }
  }
  m = ul_shm_find(name);
  if (m == NULL)
    luaL_error(L, "upstream.attach: no shared list named '%s' in this process "
                  "family", name);
  if (ul_shm_lock(m, NULL, NULL) < 0)
    luaL_error(L, "upstream.attach: shared list '%s': %s", name,
               ul_shm_strerror(UL_LOCK_ERROR));
  copy = *(lu_shdr *)ul_shm_data(m);
  ul_shm_unlock(m);
  if (!copy.init || copy.magic != LU_SH_MAGIC)
    luaL_error(L, "upstream.attach: '%s' is not a shared list (yet)", name);
  lu_read_opts(L, 2, &c);
  c.o = copy.opts;
  c.shared = 1;
  u = lu_new_userdata(L, &c, copy.cap);
  lu_sh_finish(L, u, m, name);
  lua_replace(L, 1);
  lua_settop(L, 1);
  lu_sh_sync(L, 1);
  return 1;
}

/* --- methods ---------------------------------------------------------------- */

static int ls_pick(lua_State *L) {
  int top = lua_gettop(L);
  lu_list *u = lu_to_list(L);
  const ul_list *c = u->core; /* the snapshot: its options never change */
  uint64_t key = 0;
  double now = 0;
  int32_t s;
  if (top >= 2 && !lua_isnil(L, 2)) {
    int t = lua_type(L, 2);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      luaL_argerror(L, 2, "key must be a string or number");
    if (c->opts.strategy == UL_HASH) key = lu_hash_typed(L, 2, t);
  } else if (c->opts.strategy == UL_HASH) {
    luaL_argerror(L, 2, "the 'hash' strategy needs a key (string or number)");
  }
  if (u->sh == NULL) luaL_typeerror(L, 1, "shared upstream.list");
  if (c->opts.slow_start > 0) now = lu_list_now(L, 1);
  lu_sh_begin(L, u);
  s = ul_pick(u->sh->b, key, now);
  lu_sh_unlock(u->sh);
  if (s < 0) {
    lua_pushnil(L);
    lua_pushliteral(L, LU_NO_UPSTREAMS);
    return 2;
  }
  lua_getiuservalue(L, 1, LU_UV_SLOTS);
  lua_rawgeti(L, -1, (lua_Integer)s + 1);
  return 1;
}

int32_t lu_sh_ffi_pick(lu_list *u, const char *key, size_t len,
                       uint32_t *version) {
  lu_shared *sh = u->sh;
  const ul_list *c = u->core;
  double now = 0;
  int32_t s;
  if (key == NULL && c->opts.strategy == UL_HASH) return -2;
  if (c->opts.slow_start > 0) {
    if (u->lua_clock) return -2;
    now = lu_mono_now();
  }
  if (ul_shm_lock(sh->m, lu_sh_rebuild, sh) < 0) return -2;
  if (sh->h->version != u->version) {
    ul_shm_unlock(sh->m);
    return -2;
  }
  s = ul_pick(sh->b, key && c->opts.strategy == UL_HASH ? ul_hash(key, len) : 0,
              now);
  ul_shm_unlock(sh->m);
  *version = u->version;
  return s;
}

/* up(b), down(b): the move under the lock, on_change after it. The clock
 * (it may run Lua) is read before locking, when slow start needs it or
 * when a first look under the lock saw the move cross (status's since). */
static void ls_move(lua_State *L, int up) {
  lu_list *u;
  double now;
  int32_t s;
  int cross;
  const ul_node *x;
  int have;
  lua_settop(L, 2);
  u = lu_sh_check(L);
  have = u->core->opts.slow_start > 0;
  now = have ? lu_list_now(L, 1) : 0;
  luaL_checkstack(L, 4, NULL);
  for (;;) { /* at most twice: the clock is read for a crossing only */
    lu_sh_begin(L, u);
    if ((s = lu_sh_find(L)) < 0) {
      lu_sh_unlock(u->sh);
      return;
    }
    x = &ul_nodes(u->sh->b)[s];
    cross = up ? x->score < 0 && x->score + u->core->opts.success_delta >= 0
               : x->score >= 0 && x->score + u->core->opts.fail_delta < 0 &&
                     u->core->opts.low_score < 0;
    if (!cross || have) break;
    lu_sh_unlock(u->sh);
    now = lu_list_now(L, 1); /* may run Lua: looked up again */
    have = 1;
  }
  if (up) ul_up(u->sh->b, s, now);
  else ul_down(u->sh->b, s, now);
  ul_nodes(u->core)[s].score = x->score; /* what on_change reads */
  lu_sh_unlock(u->sh);
  if (cross) lu_changed(L, u, s, !up, 0);
}

static int ls_up(lua_State *L) {
  ls_move(L, 1);
  return 0;
}

static int ls_down(lua_State *L) {
  ls_move(L, 0);
  return 0;
}

enum { LS_SCORE, LS_WEIGHT, LS_INFLIGHT, LS_RELEASE };

/* The methods reading or moving one member, under the lock. */
static int ls_member(lua_State *L, int what) {
  lu_list *u;
  int32_t s, t;
  lua_Number v = 0;
  lua_settop(L, 2);
  u = lu_sh_check(L);
  luaL_checkstack(L, 4, NULL);
  lu_sh_begin(L, u);
  s = lu_sh_find(L);
  if (s >= 0) {
    const ul_node *nd = ul_nodes(u->sh->b);
    switch (what) {
      case LS_SCORE: v = nd[s].score; break;
      case LS_WEIGHT: v = nd[s].weight; break;
      case LS_INFLIGHT:
        t = s;
        do {
          v += nd[t].inflight;
          t = nd[t].dup;
        } while (t != s);
        break;
      default: v = ul_release(u->sh->b, s); break;
    }
  }
  lu_sh_unlock(u->sh);
  if (what == LS_RELEASE) lua_pushboolean(L, s >= 0 && v != 0);
  else if (s < 0) lua_pushnil(L);
  else if (what == LS_SCORE) lua_pushnumber(L, v);
  else lua_pushinteger(L, (lua_Integer)v);
  return 1;
}

static int ls_score(lua_State *L) { return ls_member(L, LS_SCORE); }
static int ls_weight(lua_State *L) { return ls_member(L, LS_WEIGHT); }
static int ls_inflight(lua_State *L) { return ls_member(L, LS_INFLIGHT); }
static int ls_release(lua_State *L) { return ls_member(L, LS_RELEASE); }

static int ls_set_weight(lua_State *L) {
  lu_list *u;
  int32_t s;
  uint32_t w;
  lua_settop(L, 3);
  u = lu_sh_check(L);
  w = lu_check_weight(L, 3, "set_weight");
  luaL_checkstack(L, 4, NULL);
  lu_sh_begin(L, u);
  s = lu_sh_find(L);
  if (s >= 0) ul_set_weight(u->sh->b, s, w);
  lu_sh_unlock(u->sh);
  lua_pushboolean(L, s >= 0);
  return 1;
}

static int ls_len(lua_State *L) {
  lu_list *u = lu_sh_check(L);
  uint32_t n;
  lu_sh_lock(L, u->sh);
  n = u->sh->b->n;
  lu_sh_unlock(u->sh);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int ls_checked(lua_State *L) {
  lu_list *u = lu_sh_check(L);
  uint32_t n;
  lu_sh_lock(L, u->sh);
  n = u->sh->b->checked;
  lu_sh_unlock(u->sh);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* status() and status_of() read this process's snapshot, refreshed under
 * the lock with the cache in step. */
static void ls_refresh(lua_State *L) {
  lu_list *u;
  int top = lua_gettop(L);
  u = lu_sh_check(L);
  lu_sh_begin(L, u);
  lu_sh_snap(u);
  lu_sh_unlock(u->sh);
  lua_settop(L, top);
}

static int ls_status(lua_State *L) {
  ls_refresh(L);
  return l_status(L);
}

static int ls_status_of(lua_State *L) {
  ls_refresh(L);
  return l_status_of(L);
}

static int ls_reconcile(lua_State *L) {
  lu_list *u;
  lua_Integer n, added;
  size_t total;
  int seq, w;
  lua_settop(L, 3);
  u = lu_sh_check(L);
  lu_check_backends(L, 2, "reconcile");
  if (!lua_isnil(L, 3) && lua_type(L, 3) != LUA_TTABLE)
    luaL_error(L, "upstream.reconcile: weights must be a table "
                  "{ [backend] = weight } (got %s)", luaL_typename(L, 3));
  w = lua_istable(L, 3) ? 3 : 0;
  n = lu_sh_strings(L, 2, "reconcile", &total);
  seq = lua_gettop(L) - 1;
  if (w) lu_check_weights(L, w, seq + 1, "reconcile");
  added = lu_sh_reconcile(L, n, seq, w, 1, "reconcile");
  if (u->on_change) lu_added(L, lua_gettop(L), added);
  return 0;
}

/* shutdown, __gc, __close: this process's view only (the shared core
 * goes on for the others). */
static int ls_shutdown(lua_State *L) {
  lu_list *u = (lu_list *)lua_touserdata(L, 1);
  if (u == NULL || u->sh == NULL) return 0;
  if (u->sh->gen) ul_shm_lease_release(u->sh->m, u->sh->gen);
  u->sh->gen = 0;
  u->sh->shut = 1;
  return 0;
}

static int ls_tostring(lua_State *L) {
  lu_list *u = (lu_list *)lua_touserdata(L, 1);
  lua_pushfstring(L, LU_LIST ": %p (shared '%s')", (void *)u,
                  u && u->sh ? u->sh->name : "?");
  return 1;
}

/* list:_validate() (test hook) -> true, or false and the first broken
 * invariant: the block as it is must equal its own repair in every
 * counter, the order and the eligible set; every member holds a string
 * of its own; the arena keeps its invariants; scores within their range. */
static int ls_validate(lua_State *L) {
  lu_list *u = lu_sh_check(L);
  lu_shared *sh = u->sh;
  ul_list *a = (ul_list *)lua_newuserdatauv(L, sh->bsize, 0);
  ul_list *b = (ul_list *)lua_newuserdatauv(L, sh->bsize, 0);
  const char *bad = NULL;
  uint32_t s, p;
  lu_sh_lock(L, sh);
  memcpy(a, sh->b, sh->bsize);
  bad = ul_arena_validate(sh->a);
  for (s = 0; s < sh->cap && !bad; s++) {
    size_t len;
    uint32_t t;
    if (!lu_sh_member(sh, s)) continue;
    if (ul_arena_get(sh->a, sh->h->off_str[s], &len) == NULL)
      bad = "a member without a string";
    for (t = s + 1; t < sh->cap && !bad; t++)
      if (lu_sh_member(sh, t) && sh->h->off_str[t] == sh->h->off_str[s])
        bad = "two members with one string";
  }
  lu_sh_unlock(sh);
  memcpy(b, a, sh->bsize);
  ul_repair(b);
#define LS_SAME(f) \
  if (!bad && a->f != b->f) bad = #f " differs from a recount"
  LS_SAME(n);
  LS_SAME(healthy);
  LS_SAME(active_tier);
  LS_SAME(panic_on);
  LS_SAME(nelig);
  LS_SAME(total_ew);
  LS_SAME(checked);
  LS_SAME(unchecked);
  LS_SAME(all_ew);
#undef LS_SAME
  if (!bad && memcmp(a->tier_healthy, b->tier_healthy, sizeof a->tier_healthy))
    bad = "tier_healthy differs from a recount";
  for (p = 0; p < a->n && !bad; p++)
    if (ul_order(a)[p] != ul_order(b)[p]) bad = "order differs from a recount";
  for (s = 0; s < a->cap && !bad; s++) {
    const ul_node *x = &ul_nodes(a)[s];
    if (ul_eligible(a, (int32_t)s) != ul_eligible(b, (int32_t)s))
      bad = "eligibility differs from a recount";
    else if ((x->flags & UL_F_MEMBER) &&
             (x->score < a->opts.low_score || x->score > a->opts.high_score))
      bad = "a score out of [low_score, high_score]";
    else if ((x->flags & UL_F_MEMBER) && ul_order(a)[x->pos] != (int32_t)s)
      bad = "a member's position is not its place in order";
  }
  if (bad) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, bad);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* list:_shm() (test hook) -> { version =, recoveries =, arena_used = } */
static int ls_shm(lua_State *L) {
  lu_list *u = lu_sh_check(L);
  uint32_t ver, used;
  uint64_t rec;
  lua_createtable(L, 0, 3);
  lu_sh_lock(L, u->sh);
  ver = u->sh->h->version;
  rec = ul_shm_recoveries(u->sh->m);
  used = u->sh->a->nused;
  lu_sh_unlock(u->sh);
  lua_pushinteger(L, (lua_Integer)ver);
  lua_setfield(L, -2, "version");
  lua_pushinteger(L, (lua_Integer)rec);
  lua_setfield(L, -2, "recoveries");
  lua_pushinteger(L, (lua_Integer)used);
  lua_setfield(L, -2, "strings");
  return 1;
}

/* list:_die_writing() (test hook): exits this process holding the lock
 * in the middle of a write, as a SIGKILL can: the derived state scrambled
 * (counters, eligibility, bitmaps, the event heap), a member's flags
 * cleared without its removal, a string stored that no slot holds. The
 * next locker must repair it all. */
static int ls_die_writing(lua_State *L) {
  lu_list *u = lu_sh_check(L);
  ul_list *b = u->sh->b;
  uint32_t k;
  lu_sh_lock(L, u->sh);
  b->healthy += 3;
  b->nelig = b->n ? b->n - 1 : 7;
  b->total_ew = -5;
  b->tier_healthy[2] += 9;
  b->active_tier = 4;
  b->checked += 2;
  b->nheap = b->nheap ? b->nheap - 1 : 0;
  for (k = 0; k < b->bm_words[0]; k++) ulb_bm(b, 0)[k] ^= 0x5555555555555555ULL;
  if (b->n > 1) ul_nodes(b)[ul_order(b)[1]].flags = 0;
  ul_arena_alloc(u->sh->a, "orphan", 6);
  fflush(NULL);
  _exit(0);
  return 0;
}

/* --- one prober: the lease (M2) --------------------------------------------
 * Only the view holding the mapping's lease runs checks: due() and
 * report() (the host-driven layer). A holding lasts interval + timeout +
 * 1 s on the list's clock and every due() renews it; a view that is not
 * the holder tries to take it at each due(). A takeover puts every check
 * still running (the last holder's, in flight when it died or stalled)
 * back to due now, uncounted (ul_cancel). */

static double lu_sh_ttl(const lu_list *u) {
  return u->core->opts.interval + u->core->opts.timeout + 1;
}

/* Whether this view holds the lease at now, after renewing or taking it. */
static int lu_sh_hold(lua_State *L, lu_list *u, double now) {
  lu_shared *sh = u->sh;
  uint64_t gen;
  uint32_t s;
  double ttl = lu_sh_ttl(u);
  if (sh->shut) return 0;
  if (sh->gen && ul_shm_lease_renew(sh->m, sh->gen, now, ttl) == 1) return 1;
  sh->gen = 0;
  if (ul_shm_lease_acquire(sh->m, now, ttl, &gen) != 1) return 0;
  lu_sh_lock(L, sh);
  for (s = 0; s < sh->cap; s++) {
    const ul_node *x = &ul_nodes(sh->b)[s];
    if (lu_sh_member(sh, s) && x->state == UL_RUNNING)
      ul_cancel(sh->b, (int32_t)s, x->gen);
  }
  lu_sh_unlock(sh);
  sh->gen = gen;
  return 1;
}

/* due([now]) -> the jobs to start now: none unless this view holds the
 * lease. Each event is taken under the lock with the cache in step, its
 * job filled after; the jobs table has room for every slot, so storing a
 * job allocates nothing between the take and the store. */
static int ls_due(lua_State *L) {
  lu_list *u;
  double now;
  int first = 1;
  uint32_t k = 0, guard;
  lua_settop(L, 2);
  u = lu_sh_check(L);
  now = lua_isnoneornil(L, 2) ? lu_list_now(L, 1) : luaL_checknumber(L, 2);
  lua_createtable(L, (int)u->sh->cap, 0); /* 3: jobs */
  if (u->sh->shut || !lu_sh_hold(L, u, now)) return 1;
  lu_use_driver(L, u, LU_DRIVER_DUE);
  luaL_checkstack(L, 8, NULL);
  for (guard = 0; guard < 4 * u->sh->cap + 4; guard++) {
    int32_t s;
    uint64_t gen;
    int ev, was = 0;
    double deadline = 0;
    lua_createtable(L, 0, 6); /* the job, made before the take */
    lu_sh_begin(L, u);
    if (first) ul_collect(u->sh->b, now);
    first = 0;
    if (ul_peek(u->sh->b, &s) == UL_EV_TIMEOUT)
      was = ul_nodes(u->sh->b)[s].score >= 0;
    ev = ul_take(u->sh->b, &s, &gen);
    if (ev != UL_EV_NONE) {
      deadline = ul_nodes(u->sh->b)[s].deadline;
      ul_nodes(u->core)[s] = ul_nodes(u->sh->b)[s]; /* for on_change */
    }
    lu_sh_unlock(u->sh);
    if (ev == UL_EV_NONE) break;
    if (ev == UL_EV_START) {
      lua_pushvalue(L, 1);
      lua_setfield(L, -2, "list");
      lua_getiuservalue(L, 1, LU_UV_SLOTS);
      lua_rawgeti(L, -1, (lua_Integer)s + 1);
      lua_setfield(L, -3, "backend");
      lua_pop(L, 1);
      lua_pushinteger(L, (lua_Integer)s);
      lua_setfield(L, -2, "slot");
      lua_pushnumber(L, (lua_Number)gen);
      lua_setfield(L, -2, "gen");
      lua_pushnumber(L, deadline);
      lua_setfield(L, -2, "deadline");
      lua_getiuservalue(L, 1, LU_UV_CHECK);
      lua_setfield(L, -2, "check");
      lua_rawseti(L, 3, (lua_Integer)++k);
    } else {
      lua_pop(L, 1);
      if (ev == UL_EV_TIMEOUT) {
        lu_check_timed_out(L, s);
        lu_changed(L, u, s, was, 1);
      }
    }
  }
  lua_settop(L, 3);
  return 1;
}

/* report(job, ok [, err [, tier]]) -> whether the result was applied;
 * false, "lease lost" when this view no longer holds the lease. */
static int ls_report(lua_State *L) {
  lu_list *u;
  lua_Integer s;
  lua_Number gen, tier = NAN;
  double now;
  int ok, isint;
  lua_settop(L, 5);
  u = lu_sh_check(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  ok = lua_toboolean(L, 3);
  if (!lua_isnil(L, 5)) tier = luaL_checknumber(L, 5);
  lua_pushliteral(L, "list");
  lua_rawget(L, 2);
  lua_pushliteral(L, "slot");
  lua_rawget(L, 2);
  lua_pushliteral(L, "gen");
  lua_rawget(L, 2);
  s = lua_tointegerx(L, -2, &isint);
  gen = lua_tonumber(L, -1);
  if (!lua_rawequal(L, -3, 1) || !isint || lua_type(L, -1) != LUA_TNUMBER ||
      s < 0 || s >= (lua_Integer)u->sh->cap || !(gen >= 1) || gen != floor(gen))
    luaL_argerror(L, 2, "not a job from this list's due()");
  lua_settop(L, 5);
  if (!u->sh->gen || !ul_shm_lease_check(u->sh->m, u->sh->gen)) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "lease lost");
    return 2;
  }
  now = lu_list_now(L, 1);
  if (ok) lua_pushnil(L);
  else lu_push_failure(L, L, 4, 0);
  lua_pushboolean(L, lu_sh_result(L, u, (int32_t)s, (uint64_t)gen, ok, now,
                                  tier, 0));
  return 1;
}

int lu_sh_result(lua_State *L, lu_list *u, int32_t s, uint64_t gen, int ok,
                 double now, lua_Number tier, int timed_out) {
  lu_shared *sh = u->sh;
  int msg = lua_gettop(L), t, was, applied;
  luaL_checkstack(L, 6, NULL);
  if (!sh->gen || !ul_shm_lease_check(sh->m, sh->gen)) {
    lua_settop(L, msg - 1);
    return 0;
  }
  lua_getiuservalue(L, 1, LU_UV_ERRORS);          /* msg + 1 */
  lua_rawgeti(L, msg + 1, (lua_Integer)s + 1);   /* msg + 2: the old one */
  lua_pushvalue(L, msg);
  lua_rawseti(L, msg + 1, (lua_Integer)s + 1); /* may raise: nothing applied */
  t = tier != tier ? -1 : tier < 0 ? 0 : tier > UL_MAX_TIER ? UL_MAX_TIER : (int)tier;
  lu_sh_lock(L, sh); /* a check's gen is never reused: no resync needed */
  if (u->latency)
    t = ok && ul_current(sh->b, s, gen)
            ? ul_latency_tier(now - ul_nodes(sh->b)[s].started) : -1;
  was = ul_nodes(sh->b)[s].score >= 0;
  applied = ul_shm_lease_check(sh->m, sh->gen) &&
            ul_report(sh->b, s, gen, ok, now, t);
  if (applied && timed_out) ul_stats(sh->b)[s].timeouts++;
  ul_nodes(u->core)[s] = ul_nodes(sh->b)[s]; /* what on_change reads */
  lu_sh_unlock(sh);
  if (!applied) {
    lua_pushvalue(L, msg + 2);
    lua_rawseti(L, msg + 1, (lua_Integer)s + 1); /* the key exists */
    lua_settop(L, msg - 1);
    return 0;
  }
  lua_settop(L, msg - 1);
  lu_changed(L, u, s, was, 1);
  return 1;
}

/* --- the scheduler's core calls (scheduler.c) ------------------------------ */

int lu_sh_collect(lua_State *L, lu_list *u, double now, double *wait) {
  if (!lu_sh_hold(L, u, now)) {
    ul_lease le;
    ul_shm_lease_read(u->sh->m, &le);
    *wait = le.pid && le.expiry > now ? le.expiry : now;
    return 0;
  }
  lu_sh_begin(L, u);
  ul_collect(u->sh->b, now);
  lu_sh_unlock(u->sh);
  return 1;
}

int lu_sh_peek(lua_State *L, lu_list *u, int32_t *s) {
  int ev;
  lu_sh_begin(L, u);
  ev = ul_peek(u->sh->b, s);
  if (ev != UL_EV_NONE) ul_nodes(u->core)[*s] = ul_nodes(u->sh->b)[*s];
  lu_sh_unlock(u->sh);
  return ev;
}

int lu_sh_take(lua_State *L, lu_list *u, int32_t *s, uint64_t *gen) {
  int ev;
  lu_sh_begin(L, u);
  ev = ul_take(u->sh->b, s, gen);
  if (ev != UL_EV_NONE) ul_nodes(u->core)[*s] = ul_nodes(u->sh->b)[*s];
  lu_sh_unlock(u->sh);
  return ev;
}

int lu_sh_sleep(lua_State *L, lu_list *u, int32_t s, uint64_t gen, double t) {
  int r;
  lu_sh_lock(L, u->sh);
  r = ul_sleep(u->sh->b, s, gen, t);
  lu_sh_unlock(u->sh);
  return r;
}

void lu_sh_cancel(lua_State *L, lu_list *u, int32_t s, uint64_t gen) {
  lu_sh_lock(L, u->sh);
  ul_cancel(u->sh->b, s, gen);
  lu_sh_unlock(u->sh);
}

double lu_sh_deadline(lua_State *L, const lu_list *u, int32_t s, uint64_t gen,
                      double now) {
  double d;
  lu_sh_lock(L, u->sh);
  d = ul_current(u->sh->b, s, gen) ? ul_nodes(u->sh->b)[s].deadline : now;
  lu_sh_unlock(u->sh);
  return d;
}

/* The next wake-up, and no later than a second before the lease expires:
 * the step that renews it comes in time. */
double lu_sh_next_wake(lua_State *L, lu_list *u) {
  double t;
  ul_lease le;
  lu_sh_lock(L, u->sh);
  t = ul_next_wake(u->sh->b);
  lu_sh_unlock(u->sh);
  ul_shm_lease_read(u->sh->m, &le);
  if (u->sh->gen && le.gen == u->sh->gen && t > le.expiry - 1)
    t = le.expiry - 1;
  return t;
}

int lu_sh_shut(const lu_list *u) { return u->sh->shut; }

int lu_sh_first_round_done(lua_State *L, const lu_list *u) {
  int done;
  lu_sh_lock(L, u->sh);
  done = u->sh->b->unchecked == 0;
  lu_sh_unlock(u->sh);
  return done || u->sh->shut;
}

/* next_due() -> seconds until due() has something to do: the next check
 * event for the holder; for another view, until the holding expires (it
 * may take over then); nil when nothing is scheduled. */
static int ls_next_due(lua_State *L) {
  lu_list *u;
  double next, now;
  ul_lease le;
  lua_settop(L, 1);
  u = lu_sh_check(L);
  now = lu_list_now(L, 1);
  ul_shm_lease_read(u->sh->m, &le);
  if (u->sh->shut) {
    next = INFINITY;
  } else if (u->sh->gen && ul_shm_lease_check(u->sh->m, u->sh->gen)) {
    lu_sh_lock(L, u->sh);
    next = u->sh->b->shut ? INFINITY : ul_next_time(u->sh->b);
    lu_sh_unlock(u->sh);
    if (next > le.expiry - 1) next = le.expiry - 1; /* renew in time */
  } else {
    next = le.pid ? le.expiry : now;
  }
  if (isinf(next)) lua_pushnil(L);
  else lu_push_wait(L, next, now);
  return 1;
}

/* lease() -> { pid =, since =, expiry =, generation =, mine = } (pid 0:
 * free) */
static int ls_lease(lua_State *L) {
  lu_list *u = lu_sh_check(L);
  ul_lease le;
  ul_shm_lease_read(u->sh->m, &le);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)le.pid);
  lua_setfield(L, -2, "pid");
  lua_pushnumber(L, le.since);
  lua_setfield(L, -2, "since");
  lua_pushnumber(L, le.expiry);
  lua_setfield(L, -2, "expiry");
  lua_pushnumber(L, (lua_Number)le.gen);
  lua_setfield(L, -2, "generation");
  lua_pushboolean(L, u->sh->gen != 0 && ul_shm_lease_check(u->sh->m, u->sh->gen));
  lua_setfield(L, -2, "mine");
  return 1;
}

/* --- test hooks (module functions) ------------------------------------------ */

static int ls_fork(lua_State *L) {
  pid_t pid;
  fflush(NULL);
  pid = fork();
  if (pid < 0) luaL_error(L, "upstream._fork: %s", strerror(errno));
  lua_pushinteger(L, (lua_Integer)pid);
  return 1;
}

/* _wait(pid) -> "exit", code | "signal", number */
static int ls_wait(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int st = 0;
  pid_t r;
  do r = waitpid(pid, &st, 0);
  while (r < 0 && errno == EINTR);
  if (r < 0) luaL_error(L, "upstream._wait: %s", strerror(errno));
  if (WIFSIGNALED(st)) {
    lua_pushliteral(L, "signal");
    lua_pushinteger(L, WTERMSIG(st));
  } else {
    lua_pushliteral(L, "exit");
    lua_pushinteger(L, WEXITSTATUS(st));
  }
  return 2;
}

static int ls_exit(lua_State *L) {
  int code = (int)luaL_optinteger(L, 1, 0);
  fflush(NULL);
  _exit(code);
  return 0;
}

static int ls_kill(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int sig = (int)luaL_optinteger(L, 2, SIGKILL);
  lua_pushboolean(L, kill(pid, sig) == 0);
  return 1;
}

static int ls_fail_at(lua_State *L) {
  ul_shm_fail_at((int)luaL_checkinteger(L, 1));
  return 0;
}

static int ls_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

/* _in_new_state(chunk) -> what the chunk returned (as a string), run in a
 * new lua_State of this process with the standard libraries and this
 * state's package.path/cpath: a second lua_State sharing the lists. */
static int ls_in_new_state(lua_State *L) {
  size_t len;
  const char *chunk = luaL_checklstring(L, 1, &len);
  lua_State *L2;
  int st;
  lua_settop(L, 1);
  lua_getglobal(L, "package");
  lua_getfield(L, 2, "path");
  lua_getfield(L, 2, "cpath");
  L2 = luaL_newstate();
  if (L2 == NULL) luaL_error(L, "upstream._in_new_state: no memory");
  luaL_openlibs(L2);
  lua_getglobal(L2, "package");
  lua_pushstring(L2, lua_tostring(L, 3) ? lua_tostring(L, 3) : "");
  lua_setfield(L2, -2, "path");
  lua_pushstring(L2, lua_tostring(L, 4) ? lua_tostring(L, 4) : "");
  lua_setfield(L2, -2, "cpath");
  lua_pop(L2, 1);
  st = luaL_loadbuffer(L2, chunk, len, "=in_new_state");
  if (st == LUA_OK) st = lua_pcall(L2, 0, 1, 0);
  lua_pushstring(L, lua_tostring(L2, -1) ? lua_tostring(L2, -1) : "(nil)");
  lua_pushboolean(L, st == LUA_OK);
  lua_close(L2);
  lua_insert(L, -2);
  return 2;
}

/* _in_threads(n, chunk) -> the n results (strings) of chunk run at once
 * in n threads, each in a new lua_State as _in_new_state makes it, with
 * its index 1..n as argument ("error: ..." when it raised). */
typedef struct lu_thr {
  const char *chunk, *path, *cpath;
  size_t len;
  int i;
  char out[256];
} lu_thr;

static void *lu_thr_run(void *arg) {
  lu_thr *t = (lu_thr *)arg;
  lua_State *L2 = luaL_newstate();
  int st;
  if (L2 == NULL) {
    snprintf(t->out, sizeof t->out, "error: no memory");
    return NULL;
  }
  luaL_openlibs(L2);
  lua_getglobal(L2, "package");
  lua_pushstring(L2, t->path);
  lua_setfield(L2, -2, "path");
  lua_pushstring(L2, t->cpath);
  lua_setfield(L2, -2, "cpath");
  lua_pop(L2, 1);
  st = luaL_loadbuffer(L2, t->chunk, t->len, "=in_threads");
  if (st == LUA_OK) {
    lua_pushinteger(L2, t->i);
    st = lua_pcall(L2, 1, 1, 0);
  }
  snprintf(t->out, sizeof t->out, "%s%s", st == LUA_OK ? "" : "error: ",
           lua_tostring(L2, -1) ? lua_tostring(L2, -1) : "(nil)");
  lua_close(L2);
  return NULL;
}

static int ls_in_threads(lua_State *L) {
  int n = (int)luaL_checkinteger(L, 1), i, made;
  size_t len;
  const char *chunk = luaL_checklstring(L, 2, &len);
  lu_thr *t;
  pthread_t *th;
  if (n < 1 || n > 64) luaL_argerror(L, 1, "1 to 64 threads");
  lua_settop(L, 2);
  lua_getglobal(L, "package");
  lua_getfield(L, 3, "path");
  lua_getfield(L, 3, "cpath");
  t = (lu_thr *)lua_newuserdatauv(L, sizeof *t * (size_t)n, 0);
  th = (pthread_t *)lua_newuserdatauv(L, sizeof *th * (size_t)n, 0);
  for (i = 0; i < n; i++) {
    t[i].chunk = chunk;
    t[i].len = len;
    t[i].path = lua_tostring(L, 4) ? lua_tostring(L, 4) : "";
    t[i].cpath = lua_tostring(L, 5) ? lua_tostring(L, 5) : "";
    t[i].i = i + 1;
    t[i].out[0] = 0;
  }
  for (made = 0; made < n; made++)
    if (pthread_create(&th[made], NULL, lu_thr_run, &t[made]) != 0) break;
  for (i = 0; i < made; i++) pthread_join(th[i], NULL);
  if (made < n) luaL_error(L, "upstream._in_threads: cannot make a thread");
  luaL_checkstack(L, n, NULL);
  for (i = 0; i < n; i++) lua_pushstring(L, t[i].out);
  return n;
}

/* --- the metatable -------------------------------------------------------------- */

static const luaL_Reg ls_methods[] = {
    {"pick", ls_pick},
    {"up", ls_up},
    {"down", ls_down},
    {"score", ls_score},
    {"weight", ls_weight},
    {"set_weight", ls_set_weight},
    {"release", ls_release},
    {"inflight", ls_inflight},
    {"status", ls_status},
    {"status_of", ls_status_of},
    {"reconcile", ls_reconcile},
    {"now", l_now},
    {"checked", ls_checked},
    {"shutdown", ls_shutdown},
    {"due", ls_due},
    {"step", l_step},
    {"run", l_run},
    {"wait_initial", l_wait_initial},
    {"report", ls_report},
    {"next_due", ls_next_due},
    {"lease", ls_lease},
    {"_slots", l_slots},
    {"_validate", ls_validate},
    {"_shm", ls_shm},
    {"_die_writing", ls_die_writing},
    {NULL, NULL}};

static const luaL_Reg ls_metamethods[] = {{"__len", ls_len},
                                          {"__tostring", ls_tostring},
                                          {"__gc", ls_shutdown},
                                          {"__close", ls_shutdown},
                                          {NULL, NULL}};

static const luaL_Reg ls_hooks[] = {{"_fork", ls_fork},
                                    {"_wait", ls_wait},
                                    {"_exit", ls_exit},
                                    {"_kill", ls_kill},
                                    {"_getpid", ls_getpid},
                                    {"_shm_fail_at", ls_fail_at},
                                    {"_in_new_state", ls_in_new_state},
                                    {"_in_threads", ls_in_threads},
                                    {NULL, NULL}};

/* The module table at -1: pushes the shared metatable (its methods with
 * it as upvalue 1) and sets the test hooks in the module. */
void lu_shared_open(lua_State *L) {
  luaL_setfuncs(L, ls_hooks, 0);
  lua_newtable(L);
  lua_pushliteral(L, LU_LIST);
  lua_setfield(L, -2, "__name");
  lua_pushvalue(L, -1);
  luaL_setfuncs(L, ls_metamethods, 1);
  lua_newtable(L);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, ls_methods, 1);
  lua_setfield(L, -2, "__index");
}
