/*
 * lua/shared.c - shared lists (issue 10): upstream.new(backends,
 * {shared = name, capacity = N, ...}) and upstream.attach(name). The
 * list's block lives in a named shared mapping (core/shm.h), the same in
 * every process forked after it was made and in every lua_State of the
 * process; backends are strings, kept in an arena in the mapping.
 *
 * The mapping's user area: the header (lu_shdr: magic, layout signature,
 * membership version, the offset in the arena of each slot's string),
 * the core block (ul_size_opts(cap, options)), the string arena. Nothing in it
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
 * The lease and the checks are in shared_checks.c, the test hooks
 * (README, "Shared lists") in shared_hooks.c.
 */
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "shared.h"


static size_t lu_al64(size_t x) { return (x + 63u) & ~(size_t)63u; }

/* Keeps this module loaded for the life of the process once it made a
 * shared mapping (dlopen RTLD_NODELETE of the file it was loaded from,
 * found in /proc/self/maps): closing a lua_State dlcloses its C modules,
 * which would take the process-wide registry of names (shm.c) with it,
 * so that a later lua_State's upstream.new or attach of a name would no
 * longer find its mapping. Where there is no /proc, nothing is pinned. */
static const char lu_sh_anchor = 0;
static void lu_sh_pin(void) {
  static int pinned; /* once per load; a repeated pin is harmless */
  uintptr_t a = (uintptr_t)&lu_sh_anchor;
  char line[4352];
  FILE *f;
  if (pinned) return;
  pinned = 1;
  f = fopen("/proc/self/maps", "r");
  if (f == NULL) return;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    int at = 0;
    char *path, *end;
    if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &at) < 2 || at == 0)
      continue;
    if (a < (uintptr_t)lo || a >= (uintptr_t)hi) continue;
    path = line + at;
    end = path + strcspn(path, "\n");
    *end = '\0';
    if (path[0] == '/') (void)dlopen(path, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    break;
  }
  fclose(f);
}

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

int lu_sh_member(const lu_shared *sh, uint32_t s) {
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
  /* a weighted period is dropped unreplayed: ul_write_begin would replay
   * it on the state the dead holder left (ul_repair drops it too) */
  UL_WST(&sh->b->ws_len, 0u);
  ul_write_begin(sh->b); /* lock-free picks wait for the repair */
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
  UL_WST(&sh->h->version, sh->h->version + 1); /* read by lock-free picks */
}

/* Every locked section is a write section of the block's sequence lock
 * (ul_write_begin/end): a lock-free pick made during it fails its CAS and
 * tries again, or takes the lock. */
void lu_sh_lock(lua_State *L, lu_shared *sh) {
  if (ul_shm_lock(sh->m, lu_sh_rebuild, sh) < 0)
    luaL_error(L, "upstream.list: shared list '%s': %s", sh->name,
               ul_shm_strerror(UL_LOCK_ERROR));
  ul_write_begin(sh->b);
}

void lu_sh_unlock(lu_shared *sh) {
  ul_write_end(sh->b);
  ul_shm_unlock(sh->m);
}

/* The shared block into dst (lock held): the pick word, the generator
 * and the pick counters, which lock-free picks change meanwhile, with
 * atomic loads (the header's last two fields). */
void lu_sh_copy(ul_list *dst, const lu_shared *sh) {
  const ul_list *b = sh->b;
  size_t head = offsetof(ul_list, rr_word), op = b->off_picks, s;
  const uint64_t *pk = ul_picks(b);
  uint64_t *dk;
  memcpy(dst, b, head);
  dst->rr_word = __atomic_load_n(&b->rr_word, __ATOMIC_RELAXED);
  dst->rng = __atomic_load_n(&b->rng, __ATOMIC_RELAXED);
  memcpy((char *)dst + sizeof(ul_list), (const char *)b + sizeof(ul_list),
         op - sizeof(ul_list));
  dk = ul_picks(dst);
  for (s = 0; s < sh->cap; s++) dk[s] = UL_LD(&pk[s]);
  op += (size_t)sh->cap * sizeof(uint64_t);
  memcpy((char *)dst + op, (const char *)b + op, sh->bsize - op);
}

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
void lu_sh_sync(lua_State *L, int idx) {
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
void lu_sh_begin(lua_State *L, lu_list *u) {
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
lu_list *lu_sh_check(lua_State *L) {
  lu_list *u = lu_check_list(L);
  if (u->sh == NULL) luaL_typeerror(L, 1, "shared upstream.list");
  return u;
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
  sh->bsize = ul_size_opts(sh->cap, &sh->h->opts); /* as made */
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
  lu_sh_copy(snap, sh);
  ul_lf_view(&sh->lf, sh->b);
  lu_sh_unlock(sh);
  u->sh = sh;
  u->version = 0; /* the shared one is >= 1: the first call resyncs */
  u->core = snap;
}

/* Copies the shared block into this process's snapshot (lock held). */
static void lu_sh_snap(lu_list *u) { lu_sh_copy(u->core, u->sh); }

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
  UL_WST(&sh->h->version, sh->h->version + 1); /* read by lock-free picks */
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
  bsize = ul_size_opts((uint32_t)cap, &c->o);
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
      /* round robin (rr.c), hash (maglev.c), random (random.c) and
       * weighted (weighted.c, from a period) pick without the lock;
       * least_conn locks */
      ((ul_list *)(void *)((char *)h + h->off_list))->lockfree =
          c->o.strategy != UL_LEAST_CONN;
      ul_arena_init((ul_arena *)(void *)((char *)h + h->off_arena),
                    h->arena_size);
      h->version = 1;
      h->init = 1;
      rc = UL_SHM_MADE;
    }
    ul_shm_unlock(m);
  }
  lu_sh_pin();
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

/* A pick without the lock, by strategy: round robin (rr.c), hash on a
 * complete table (maglev.c), random (random.c), weighted from a period
 * (weighted.c); UL_PICK_LOCK for least_conn, or when the pick must be
 * made under the lock. */
static int32_t ls_pick_lockfree(lu_shared *sh, const ul_list *c,
                                uint32_t version, uint64_t key) {
  switch (c->opts.strategy) {
    case UL_HASH:
      return ul_pick_lockfree_hash(sh->b, &sh->lf, &sh->h->version, version,
                                   key);
    case UL_RANDOM:
      return ul_pick_lockfree_random(sh->b, &sh->lf, &sh->h->version,
                                     version);
    case UL_WEIGHTED:
      return ul_pick_lockfree_weighted(sh->b, &sh->lf, &sh->h->version,
                                       version);
    default:
      return ul_pick_lockfree(sh->b, &sh->lf, &sh->h->version, version);
  }
}

static int ls_pick(lua_State *L) {
  int top = lua_gettop(L);
  lu_list *u = lu_to_list(L);
  const ul_list *c = u->core; /* the snapshot: its options never change */
  uint64_t key = lu_pick_key(L, top, c);
  double now = 0;
  int32_t s;
  if (u->sh == NULL) luaL_typeerror(L, 1, "shared upstream.list");
  /* lock-free when the cache is in step and nothing ramps; else, or
   * after lost races, the clock then the lock */
  s = ls_pick_lockfree(u->sh, c, u->version, key);
  if (s == UL_PICK_LOCK) {
    if (c->opts.slow_start > 0) now = lu_list_now(L, 1);
    lu_sh_begin(L, u);
    s = ul_pick(u->sh->b, key, now);
    lu_sh_unlock(u->sh);
  }
  return lu_push_picked(L, s);
}

int32_t lu_sh_ffi_pick(lu_list *u, const char *key, size_t len,
                       uint32_t *version) {
  lu_shared *sh = u->sh;
  const ul_list *c = u->core;
  double now = 0;
  int32_t s;
  uint64_t hk = 0;
  if (c->opts.strategy == UL_HASH) {
    if (key == NULL) return -2;
    hk = ul_hash(key, len);
  }
  s = ls_pick_lockfree(sh, c, u->version, hk);
  if (s != UL_PICK_LOCK) return s; /* *version: u->version, set above */
  if (c->opts.slow_start > 0) {
    if (u->lua_clock) return -2;
    now = lu_mono_now();
  }
  if (ul_shm_lock(sh->m, lu_sh_rebuild, sh) < 0) return -2;
  ul_write_begin(sh->b);
  if (sh->h->version != u->version) {
    ul_write_end(sh->b);
    ul_shm_unlock(sh->m);
    return -2;
  }
  s = ul_pick(sh->b, hk, now);
  ul_write_end(sh->b);
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
    if ((s = lu_find_slot(L)) < 0) {
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
  s = lu_find_slot(L);
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
  s = lu_find_slot(L);
  if (s >= 0) ul_set_weight(u->sh->b, s, w);
  lu_sh_unlock(u->sh);
  lua_pushboolean(L, s >= 0);
  return 1;
}

/* len() and checked(): a count of the shared block's, read under the lock */
static int ls_count(lua_State *L, int checked) {
  lu_list *u = lu_sh_check(L);
  uint32_t n;
  lu_sh_lock(L, u->sh);
  n = checked ? u->sh->b->checked : u->sh->b->n;
  lu_sh_unlock(u->sh);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int ls_len(lua_State *L) { return ls_count(L, 0); }
static int ls_checked(lua_State *L) { return ls_count(L, 1); }

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

/* The same as a Lua function of the list (upstream.metrics calls it). */
int lu_sh_refresh(lua_State *L) {
  ls_refresh(L);
  return 0;
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


/* The module table at -1: pushes the shared metatable (its methods with
 * it as upvalue 1) and sets the test hooks in the module. */
void lu_shared_open(lua_State *L) {
  lu_shared_hooks(L);
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

