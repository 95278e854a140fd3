/*
 * lua/binding.h - what the binding's files share: the upstream.list
 * userdata, its user values, the messages more than one file gives, and
 * the helpers the files call in one another. Not installed.
 *
 * upstream.new() returns an upstream.list userdata over the C core
 * (core/core.h) and runs health checks as Lua coroutines. Two layers drive
 * the checks:
 *  - low level, for a host event loop (the nginx driver): list:due() hands
 *    out the checks to start as jobs, list:report(job, ok, err) takes the
 *    results; the core applies deadlines itself (host.c).
 *  - the built-in coroutine scheduler: list:step() / run() / wait_initial()
 *    start each check in its own coroutine, resume it after yields and
 *    upstream.sleep(), and close it at its deadline (scheduler.c).
 * Both hand a check's result to the one path in result.c.
 *
 * Memory: the core's flat block lives in a Lua userdata held as a user
 * value, so nothing malloc'd is ever held across a Lua call that can raise;
 * reconcile builds the new block and tables aside and swaps them in only
 * when nothing can fail any more (reconcile.c).
 *
 * Names: l_NAME is the C function behind the Lua function or method NAME;
 * everything else of the binding starts with lu_ (LU_ for constants), so
 * nothing collides with the core's statics in the one translation unit.
 */
#ifndef LU_BINDING_H
#define LU_BINDING_H

#include <sys/socket.h>

#include "compat.h"
#include "../core/core.h"

/* LU_FUNC marks the functions the binding's files share, as UL_FUNC does
 * the core's: extern when each file is compiled on its own, static in the
 * module, which is one translation unit (src/upstream.c). */
#ifndef LU_FUNC
#define LU_FUNC extern
#endif

#if defined(__GNUC__)
#define LU_EXPORT __attribute__((visibility("default")))
#else
#define LU_EXPORT
#endif

/* What hot methods (pick, up, down) share is inlined into each, where gcc
 * -O2 would make calls. */
#if defined(__GNUC__)
#define LU_INLINE static inline __attribute__((always_inline))
#else
#define LU_INLINE static inline
#endif

#define LU_LIST "upstream.list"
#define LU_NO_UPSTREAMS "no upstreams available"
#define LU_TIMED_OUT "health check timed out"
#define LU_CHECK_FAILED "health check failed"

/* user values of a list */
enum {
  LU_UV_BLOCK = 1, /* userdata holding the core block */
  LU_UV_SLOTS,     /* slot+1 -> backend */
  LU_UV_INDEX,     /* backend -> first slot holding it */
  LU_UV_THREADS,   /* slot+1 -> coroutine of the running check (scheduler) */
  LU_UV_ERRORS,    /* slot+1 -> last check error */
  LU_UV_CHECK,     /* check function, or false (healthcheck methods) */
  LU_UV_CLOCK,     /* clock function or false */
  LU_UV_SLEEP,     /* sleep function or false */
  LU_UV_ON_CHANGE, /* on_change function or false */
  LU_UV_SHARED,    /* shared lists: the lu_shared userdata; else false */
  LU_NUV = LU_UV_SHARED
};

/* Which layer drives the checks: the first to run claims the list. */
enum { LU_DRIVER_NONE, LU_DRIVER_STEP, LU_DRIVER_DUE };

typedef struct lu_list {
  ul_list *core; /* NULL until fully built */
  int driver;
  int latency;      /* tier_by_latency: a check's duration sets its tier */
  int lua_clock;    /* opts.clock is a Lua function */
  uint32_t version; /* bumped by every reconcile (the slots may move) */
  int on_change;    /* opts.on_change is set (LU_UV_ON_CHANGE) */
  /* shared lists (shared.c): NULL on a private one. core is then this
   * process's snapshot of the shared block (what status() reads), and
   * version the membership version the slot and index tables are of */
  struct lu_shared *sh;
} lu_list;

/* upstream.new's options, read by lu_read_opts. The functions and the
 * weights table stay on the stack; these are their indices (0: absent). */
typedef struct lu_conf {
  ul_opts o;
  int check, clock, sleep;
  int weights;
  int latency; /* tier_by_latency */
  int tiers;   /* the tiers option was given */
  uint64_t seed;
  int on_change; /* its index on the stack, 0: absent */
  int shared;    /* index of the shared option (a name), 0: absent */
  lua_Integer capacity; /* 0: absent */
} lu_conf;

/* Methods carry the metatable as upvalue 1: one pointer compare per call
 * (lua_topointer on both costs fewer instructions than lua_rawequal with an
 * upvalue index, and compares the same thing for tables).
 * lu_to_list leaves the metatable on the stack: the pop is a measurable
 * share of a pick, the hottest call. */
static inline lu_list *lu_to_list(lua_State *L) {
  lu_list *u = (lu_list *)lua_touserdata(L, 1);
  if (u == NULL || !lua_getmetatable(L, 1) ||
      lua_topointer(L, -1) != lua_topointer(L, lua_upvalueindex(1)))
    luaL_typeerror(L, 1, LU_LIST);
  if (u->core == NULL) luaL_error(L, "upstream.list: list is not initialised");
  return u;
}

static inline lu_list *lu_check_list(lua_State *L) {
  lu_list *u = lu_to_list(L);
  lua_pop(L, 1);
  return u;
}

/* --- clock.c: the list's time --------------------------------------------- */

/* CLOCK_MONOTONIC in seconds. */
LU_FUNC double lu_mono_now(void);
/* The clock of the list at idx: its clock option, else lu_mono_now(). */
LU_FUNC double lu_list_now(lua_State *L, int idx);
/* Calls the clock function on top of L (popped); raises unless it returns
 * a finite number, which it returns. */
LU_FUNC double lu_call_clock(lua_State *L);
/* Sleeps s seconds with the list's sleep option, else nanosleep. */
LU_FUNC void lu_list_sleep(lua_State *L, int idx, double s);
/* Pushes the seconds from now to next (0 if past), nil when next is inf. */
LU_FUNC void lu_push_wait(lua_State *L, double next, double now);

/* --- backends.c: what new() and reconcile() check and derive ------------ */

LU_FUNC const char *lu_got(lua_State *L, int idx);
LU_FUNC lua_Integer lu_check_backends(lua_State *L, int arg, const char *fn);
LU_FUNC int lu_has_check(lua_State *L, int list, int idx);
LU_FUNC ul_list *lu_new_block(lua_State *L, uint32_t cap, const ul_opts *o,
                              const ul_list *from);
LU_FUNC uint64_t lu_hash_typed(lua_State *L, int idx, int type);
LU_FUNC uint64_t lu_hash_value(lua_State *L, int idx);
LU_FUNC uint32_t lu_weight_of(lua_State *L, int w, int idx, uint32_t dflt);
LU_FUNC uint32_t lu_check_weight(lua_State *L, int idx, const char *fn);
LU_FUNC void lu_check_weights(lua_State *L, int w, int set, const char *fn);
LU_FUNC void lu_check_weights_by(lua_State *L, int w, const char *fn,
                                 int (*member)(lua_State *, void *), void *ud);

/* --- methods.c, shared.c: what the private and the shared methods share --- */

/* First slot holding the value at arg 2 in the index of the list at 1 (a
 * shared list's: this process's cache), or -1: raw reads, no Lua code. */
LU_FUNC int32_t lu_find_slot(lua_State *L);

/* pick([key]) */

/* The key at 2 (top: the stack's top) for a pick from c, checked for every
 * strategy so that switching strategies needs no code change; hashed for
 * the hash strategy only, 0 for the others. c, not its strategy: gcc then
 * reads the strategy where it is tested, one instruction a pick fewer
 * (callgrind). */
LU_INLINE uint64_t lu_pick_key(lua_State *L, int top, const ul_list *c) {
  uint64_t key = 0;
  if (top >= 2 && !lua_isnil(L, 2)) {
    int t = lua_type(L, 2);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      luaL_argerror(L, 2, "key must be a string or number");
    if (c->opts.strategy == UL_HASH) key = lu_hash_typed(L, 2, t);
  } else if (c->opts.strategy == UL_HASH) {
    luaL_argerror(L, 2, "the 'hash' strategy needs a key (string or number)");
  }
  return key;
}

/* pick's results for the slot picked: its backend, or nil and
 * LU_NO_UPSTREAMS when s < 0. */
LU_INLINE int lu_push_picked(lua_State *L, int32_t s) {
  if (s < 0) {
    lua_pushnil(L);
    lua_pushliteral(L, LU_NO_UPSTREAMS);
    return 2;
  }
  lua_getiuservalue(L, 1, LU_UV_SLOTS);
  lua_rawgeti(L, -1, (lua_Integer)s + 1);
  return 1;
}

/* --- options.c ------------------------------------------------------------ */

LU_FUNC void lu_read_opts(lua_State *L, int idx, lu_conf *c);

/* --- result.c: the end of a check, from either driver --------------------- */

LU_FUNC void lu_push_failure(lua_State *L, lua_State *from, int idx,
                             int raised);
LU_FUNC int lu_check_result(lua_State *L, lu_list *u, int32_t s, uint64_t gen,
                            int ok, double now, lua_Number tier);
LU_FUNC void lu_check_timed_out(lua_State *L, int32_t s);
LU_FUNC int lu_check_stopped(lua_State *L, lu_list *u, int32_t s, uint64_t gen,
                             double now);
LU_FUNC int lu_healthy(const lu_list *u, int32_t s);
LU_FUNC int lu_push_change(lua_State *L, const lu_list *u, int32_t s, int was,
                           int err);
LU_FUNC void lu_call_change(lua_State *L);
LU_FUNC void lu_changed(lua_State *L, const lu_list *u, int32_t s, int was,
                        int err);
LU_FUNC void lu_added(lua_State *L, int added, lua_Integer n);

/* --- scheduler.c ------------------------------------------------------------ */

LU_FUNC void lu_close_thread(lua_State *L, lua_State *co);
LU_FUNC void lu_use_driver(lua_State *L, lu_list *u, int d);

/* --- host.c: due()'s jobs and report()'s arguments (shared_checks.c too) --- */

/* report(job, ok [, err [, tier]])'s arguments, as lu_report_args reads
 * them. */
typedef struct lu_report {
  int32_t s;
  uint64_t gen;
  int ok;
  lua_Number tier; /* NAN: none given */
} lu_report;

LU_FUNC void lu_fill_job(lua_State *L, int32_t s, uint64_t gen,
                         double deadline);
LU_FUNC void lu_report_args(lua_State *L, lua_Integer max, lu_report *r);

/* --- net.c, http.c, checks.c: the built-in checks -------------------------- */

/* What the scheduler knows of a check waiting on a socket: the fd and the
 * poll events it waits for (0: not waiting), and whose check it is (the
 * list, as an identity only, and the check's slot and generation), set
 * when the check yields it. */
typedef struct lu_wait {
  int fd;       /* -1: closed */
  int events;   /* POLLIN or POLLOUT; 0 when not waiting */
  int revents;  /* what poll() last saw */
  const void *owner;
  int32_t slot;
  uint64_t gen;
} lu_wait;

#define LU_NET_ADDRS 4    /* addresses of a name tried in turn */
#define LU_NET_REQ 2048   /* the longest request */
#define LU_HTTP_HEAD 4096 /* the longest response header */
#define LU_HTTP_BODY 4096 /* the body's first bytes kept for 'body' */
#define LU_NET_BUF (LU_HTTP_HEAD + LU_HTTP_BODY)

enum { LU_S_CONNECT, LU_S_SEND, LU_S_RECV, LU_S_DONE };
enum { LU_IO_OK, LU_IO_WAIT, LU_IO_FAIL };

/* An upstream.socket: one check's connection and buffers, in the
 * userdata (nothing malloc'd). */
typedef struct lu_sock {
  lu_wait w; /* first: the waits table's values are read as lu_wait */
  int state; /* LU_S_* */
  int http, want_body, eof;
  int naddr, cur; /* addresses resolved, the one being tried */
  struct sockaddr_storage addr[LU_NET_ADDRS];
  socklen_t alen[LU_NET_ADDRS];
  size_t reqlen, sent, len;
  size_t bufcap; /* the reply buffer: 0 (tcp), LU_HTTP_HEAD, LU_NET_BUF
                    (with 'body'): the less a check allocates, the less
                    collector work it costs */
  char *req, *buf; /* in the same userdata, after the struct */
  char err[160];
} lu_sock;

/* A response's head as lu_http_parse read it. */
typedef struct lu_http {
  int status;
  const char *body; /* the body's first bytes (decoded when chunked) */
  size_t body_len;
} lu_http;

/* http.c: parses the len bytes of buf (all there will be when final):
 * 1 done (h filled; with want_body once the body is complete or capped),
 * 0 more bytes needed, -1 not a valid response (why in err). May decode
 * a chunked body in place. */
LU_FUNC int lu_http_parse(char *buf, size_t len, int final, int want_body,
                          lu_http *h, char *err, size_t errlen);
/* net.c */
LU_FUNC void lu_net_open(lua_State *L);
LU_FUNC void lu_push_sock_functions(lua_State *L);
LU_FUNC lu_wait *lu_yielded_wait(lua_State *co, int nres);
LU_FUNC void lu_close_wait(lua_State *L, lua_State *co);
LU_FUNC int lu_poll_waits(lua_State *L, int list, double secs);
/* scheduler.c: L is the coroutine of a check this scheduler resumed */
LU_FUNC int lu_in_own_check(lua_State *L);
/* checks.c */
LU_FUNC void lu_checks_open(lua_State *L);

/* --- status.c: the members' snapshot (status, status_of, metrics) --------- */

/* One member as lu_status_snapshot copied it. */
typedef struct lu_srow {
  double score, last_check, latency, since; /* NaN: not known */
  uint64_t picks;
  uint32_t checks, failures, timeouts, flips;
  uint32_t weight, inflight;
  int32_t ref;  /* its slot; in status() rows, the index of its error in the
                   snapshot's values table after the backends (0: none) */
  uint8_t tier;
} lu_srow;

/* A snapshot in a userdata: rows[cap], n used; with a map, the status()
 * rows (ptr[p]: the row table of member p; map: open addressing, row
 * pointer -> p + 1). */
typedef struct lu_snap {
  uint32_t n, cap, healthy, mask;
  lu_srow *rows;
  const void **ptr;
  uint32_t *map;
} lu_snap;

enum { LU_SNAP_SUMS = 1 }; /* counters summed over the ring of equal members */

/* The only read of the block status(), status_of() and upstream.metrics()
 * make: no Lua API inside, so that a list shared between processes can
 * hold its lock around exactly this call. slot < 0: the n members in pick
 * order into out when n <= cap, returns n (nothing copied when n > cap);
 * slot >= 0: that slot alone, returns 1 (0 when it holds no member).
 * *healthy (when not NULL): the list's healthy members. */
LU_FUNC uint32_t lu_status_snapshot(const ul_list *c, int32_t slot, int flags,
                                    lu_srow *out, uint32_t cap,
                                    uint32_t *healthy);
/* Pushes a snapshot userdata with room for cap rows (a row map with map),
 * nuv user values. */
LU_FUNC lu_snap *lu_snap_new(lua_State *L, uint32_t cap, int map, int nuv);

/* --- shared.c: shared lists (issue 10) ------------------------------------ */

/* upstream.new with the shared option (the shared metatable at upvalue 2
 * of new), and upstream.attach (it at upvalue 1). */
LU_FUNC int lu_new_shared(lua_State *L, lu_conf *c);
LU_FUNC int l_attach(lua_State *L);
/* Pushes the shared lists' metatable with its methods (module.c). */
LU_FUNC void lu_shared_open(lua_State *L);
/* lu_sh_refresh(list): refreshes this process's copy of a shared list's
 * block (u->core) and its slot cache under the lock, as status() does
 * first; for upstream.metrics, which then reads the copy. */
LU_FUNC int lu_sh_refresh(lua_State *L);
/* The scheduler's core calls on a shared list (the list at index 1 of L),
 * each under the lock with the slot cache in step (scheduler.c). collect
 * returns 0, with the time to try again in *wait, when this view does not
 * hold the lease (it renews or takes it). result applies a check's result
 * (its message on top of L, popped) as lu_check_result does, refused once
 * the lease is lost. */
LU_FUNC int lu_sh_collect(lua_State *L, lu_list *u, double now, double *wait);
LU_FUNC int lu_sh_peek(lua_State *L, lu_list *u, int32_t *s);
LU_FUNC int lu_sh_take(lua_State *L, lu_list *u, int32_t *s, uint64_t *gen);
LU_FUNC int lu_sh_sleep(lua_State *L, lu_list *u, int32_t s, uint64_t gen,
                        double t);
LU_FUNC void lu_sh_cancel(lua_State *L, lu_list *u, int32_t s, uint64_t gen);
LU_FUNC int lu_sh_current(lua_State *L, const lu_list *u, int32_t s,
                          uint64_t gen);
LU_FUNC double lu_sh_deadline(lua_State *L, const lu_list *u, int32_t s,
                              uint64_t gen, double now);
LU_FUNC double lu_sh_next_wake(lua_State *L, lu_list *u);
LU_FUNC int lu_sh_result(lua_State *L, lu_list *u, int32_t s, uint64_t gen,
                         int ok, double now, lua_Number tier, int timed_out);
LU_FUNC int lu_sh_shut(const lu_list *u);
LU_FUNC int lu_sh_first_round_done(lua_State *L, const lu_list *u);
/* upstream_ffi_pick on a shared list (ffi.c): -2 when the slot table is
 * behind the shared version (list:pick() resyncs it) or the lock fails. */
LU_FUNC int32_t lu_sh_ffi_pick(lu_list *u, const char *key, size_t len,
                               uint32_t *version);

/* --- the Lua functions and methods (module.c registers them) -------------- */

/* lifecycle.c */
LU_FUNC lu_list *lu_new_userdata(lua_State *L, const lu_conf *c,
                                 lua_Integer n);
LU_FUNC int l_new(lua_State *L);
LU_FUNC int l_shutdown(lua_State *L);
/* methods.c */
LU_FUNC int l_pick(lua_State *L);
LU_FUNC int l_up(lua_State *L);
LU_FUNC int l_down(lua_State *L);
LU_FUNC int l_score(lua_State *L);
LU_FUNC int l_weight(lua_State *L);
LU_FUNC int l_set_weight(lua_State *L);
LU_FUNC int l_release(lua_State *L);
LU_FUNC int l_inflight(lua_State *L);
LU_FUNC int l_len(lua_State *L);
LU_FUNC int l_now(lua_State *L);
LU_FUNC int l_checked(lua_State *L);
LU_FUNC int l_tostring(lua_State *L);
/* status.c */
LU_FUNC int l_status(lua_State *L);
LU_FUNC int l_status_of(lua_State *L);
/* reconcile.c */
LU_FUNC int l_reconcile(lua_State *L);
/* scheduler.c */
LU_FUNC int l_step(lua_State *L);
LU_FUNC int l_run(lua_State *L);
LU_FUNC int l_wait_initial(lua_State *L);
LU_FUNC int l_sleep(lua_State *L);
/* host.c */
LU_FUNC int l_due(lua_State *L);
LU_FUNC int l_report(lua_State *L);
LU_FUNC int l_next_due(lua_State *L);
/* ffi.c */
LU_FUNC int l_slots(lua_State *L);
/* metrics.c */
LU_FUNC int l_metrics(lua_State *L);

/* The module's only exported symbols (module.c, ffi.c). */
LU_EXPORT int luaopen_upstream(lua_State *L);
LU_EXPORT int32_t upstream_ffi_pick(lu_list *u, const char *key, size_t len,
                                    uint32_t *version);

#endif
