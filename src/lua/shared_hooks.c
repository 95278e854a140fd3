/*
 * lua/shared_hooks.c - test hooks of shared lists (README, "Shared
 * lists"; spec/shared_spec.lua): list:_validate(), _shm(), _die_writing();
 * upstream._fork, _wait, _exit, _kill, _getpid, _shm_fail_at,
 * _in_new_state, _in_threads. Not an API.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lualib.h"

#include "shared.h"

/* list:_validate() (test hook) -> true, or false and the first broken
 * invariant: the block as it is must equal its own repair in every
 * counter, the order and the eligible set; every member holds a string
 * of its own; the arena keeps its invariants; scores within their range. */
int ls_validate(lua_State *L) {
  lu_list *u = lu_sh_check(L);
  lu_shared *sh = u->sh;
  ul_list *a = (ul_list *)lua_newuserdatauv(L, sh->bsize, 0);
  ul_list *b = (ul_list *)lua_newuserdatauv(L, sh->bsize, 0);
  const char *bad = NULL;
  uint32_t s, p;
  lu_sh_lock(L, sh);
  lu_sh_copy(a, sh);
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

/* list:_shm() (test hook) -> { version =, recoveries =, strings =,
 * locks = } (locks: the mapping's acquisitions before this call's) */
int ls_shm(lua_State *L) {
  lu_list *u = lu_sh_check(L);
  uint32_t ver, used;
  uint64_t rec, locks;
  lua_createtable(L, 0, 4);
  lu_sh_lock(L, u->sh);
  ver = u->sh->h->version;
  rec = ul_shm_recoveries(u->sh->m);
  locks = ul_shm_locks(u->sh->m) - 1;
  used = u->sh->a->nused;
  lu_sh_unlock(u->sh);
  lua_pushinteger(L, (lua_Integer)ver);
  lua_setfield(L, -2, "version");
  lua_pushinteger(L, (lua_Integer)rec);
  lua_setfield(L, -2, "recoveries");
  lua_pushinteger(L, (lua_Integer)used);
  lua_setfield(L, -2, "strings");
  lua_pushinteger(L, (lua_Integer)locks);
  lua_setfield(L, -2, "locks");
  return 1;
}

/* list:_die_writing() (test hook): exits this process holding the lock
 * in the middle of a write, as a SIGKILL can: the derived state scrambled
 * (counters, eligibility, bitmaps, the event heap), a member's flags
 * cleared without its removal, a string stored that no slot holds. The
 * next locker must repair it all. */
int ls_die_writing(lua_State *L) {
  lu_list *u = lu_sh_check(L);
  ul_list *b = u->sh->b;
  uint32_t k;
  lu_sh_lock(L, u->sh);
  b->healthy += 3;
  UL_WST(&b->nelig, b->n ? b->n - 1 : 7);
  b->total_ew = -5;
  b->tier_healthy[2] += 9;
  b->active_tier = 4;
  b->checked += 2;
  b->nheap = b->nheap ? b->nheap - 1 : 0;
  for (k = 0; k < b->bm_words[0]; k++)
    UL_WST(&ulb_bm(b, 0)[k], ulb_bm(b, 0)[k] ^ 0x5555555555555555ULL);
  if (b->n > 1) ul_nodes(b)[ul_order(b)[1]].flags = 0;
  ul_arena_alloc(u->sh->a, "orphan", 6);
  fflush(NULL);
  _exit(0);
  return 0;
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

static const luaL_Reg ls_hooks[] = {{"_fork", ls_fork},
                                    {"_wait", ls_wait},
                                    {"_exit", ls_exit},
                                    {"_kill", ls_kill},
                                    {"_getpid", ls_getpid},
                                    {"_shm_fail_at", ls_fail_at},
                                    {"_in_new_state", ls_in_new_state},
                                    {"_in_threads", ls_in_threads},
                                    {NULL, NULL}};

/* Sets the test hooks in the module table at -1. */
void lu_shared_hooks(lua_State *L) { luaL_setfuncs(L, ls_hooks, 0); }

