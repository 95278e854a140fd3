/*
 * lua/scheduler.c - the built-in check scheduler: each check runs in its
 * own coroutine, started when due, resumed after a yield or an
 * upstream.sleep(), closed at its deadline; step(), run() and
 * wait_initial() drive it on the list's clock. A count hook, set on a
 * check's coroutine only while it runs, stops a check that runs past its
 * deadline without yielding.
 */
#include <math.h>

#include "binding.h"

/* On a shared list every core call goes through shared.c, which makes it
 * under the mapping's lock with the slot cache in step, and only the
 * lease holder runs checks; a private list calls the core directly. */
static int lu_core_sleep(lua_State *L, lu_list *u, int32_t s, uint64_t gen,
                         double t) {
  return u->sh ? lu_sh_sleep(L, u, s, gen, t) : ul_sleep(u->core, s, gen, t);
}

static void lu_core_cancel(lua_State *L, lu_list *u, int32_t s, uint64_t gen) {
  if (u->sh) lu_sh_cancel(L, u, s, gen);
  else ul_cancel(u->core, s, gen);
}

static int lu_core_shut(const lu_list *u) {
  return u->sh ? lu_sh_shut(u) : (int)u->core->shut;
}

/* LU_CHECK_HOOK=0 builds the module without the runaway-check hook, for
 * bench/hook.lua to measure what the hook costs. */
#ifndef LU_CHECK_HOOK
#define LU_CHECK_HOOK 1
#endif

/* run() and wait_initial() resume a check that yielded (coroutine.yield()
 * or upstream.sleep(s) with s < LU_TICK) no sooner than LU_TICK later on
 * the list's clock: with a fake clock, which only their sleeps move, a
 * check that keeps yielding would otherwise be resumed at the same time
 * forever, and its deadline never come. 0.1 ms is the bound of the finest
 * latency tier, so tier_by_latency still tells a check that yields once
 * from a slower one. step() resumes it at the next step. */
#define LU_TICK 1e-4

/* run() and wait_initial() raise when the clock has not moved over sleeps
 * adding up to LU_STILL seconds: a clock with a coarse resolution (ngx.now()
 * and many event loops: 1 ms) stands still over short sleeps, a fake
 * clock without a sleep that advances it over any. */
#define LU_STILL 1.0

/* The hook reads the clock every LU_HOOK_EVERY VM instructions of a
 * running check. A check of typical size (tens to hundreds of instructions
 * around its I/O) never gets there: it pays for setting and clearing the
 * hook, ~250 instructions a resume, and for the interpreter's per-
 * instruction test that any count hook turns on, whatever the count (~20
 * instructions per VM instruction on 5.4, bench/hook.lua). A long check
 * pays ~0.4 more per VM instruction for the clock readings, and is stopped
 * within ~10 us of its deadline. */
#ifndef LU_HOOK_EVERY
#define LU_HOOK_EVERY 1000
#endif

static char lu_sleep_token; /* first value upstream.sleep yields */
static char lu_runs_key;    /* registry: the state's lu_runs */

/* A check being resumed, from lua_resume until it gives control back: what
 * its count hook and upstream.sleep need to know. It lives on the C stack
 * of lu_resume_check, linked from the state's lu_runs only for the time of
 * the resume; a check that resumes another list's check (a nested step())
 * links its run above. */
typedef struct lu_run {
  struct lu_run *outer; /* the run this one was resumed from, or NULL */
  lua_State *co;        /* the check's coroutine */
  lua_State *from;      /* the thread resuming it, the list at its index 1 */
  double deadline;      /* of the check, read before the resume */
  double stopped_at;    /* the hook's clock reading past the deadline */
  int stopped;          /* the hook stopped the check */
  lua_Hook hook;        /* co's hook before ours (LuaJIT: the global one) */
  int mask, count;
} lu_run;

/* One per Lua state, in the registry (a check can be resumed from any
 * list, and the hook has no upvalues): the innermost run. */
typedef struct lu_runs {
  lu_run *top;
} lu_runs;

/* The state's lu_runs, NULL before the first check. */
static lu_runs *lu_find_runs(lua_State *L) {
  lu_runs *r;
  lua_pushlightuserdata(L, &lu_runs_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  r = (lu_runs *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return r;
}

/* Pushes the state's lu_runs userdata, made on first use. */
static lu_runs *lu_push_runs(lua_State *L) {
  lu_runs *r;
  lua_pushlightuserdata(L, &lu_runs_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if ((r = (lu_runs *)lua_touserdata(L, -1)) != NULL) return r;
  lua_pop(L, 1);
  r = (lu_runs *)lua_newuserdatauv(L, sizeof *r, 0);
  r->top = NULL;
  lua_pushlightuserdata(L, &lu_runs_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return r;
}

/* The innermost check being resumed, or NULL. */
static lu_run *lu_running(lua_State *L) {
  lu_runs *r = lu_find_runs(L);
  return r ? r->top : NULL;
}

#if LU_CHECK_HOOK
/* The clock of run's list, read from inside its hook on L. The list is at
 * index 1 of run->from, which waits in lua_resume with room on its stack
 * (lu_run_enter): the clock function is fetched there and moved to L, as
 * coroutine.resume moves values, rather than stored for each resume. */
static double lu_run_clock(lua_State *L, const lu_run *run) {
  if (lua_getiuservalue(run->from, 1, LU_UV_CLOCK) != LUA_TFUNCTION) {
    lua_pop(run->from, 1);
    return lu_mono_now();
  }
  lua_xmove(run->from, L, 1);
  return lu_call_clock(L);
}

/* The count hook of a running check, every LU_HOOK_EVERY instructions (on
 * PUC Lua also in the coroutines the check creates, which inherit it; on
 * LuaJIT hooks are global). Past the deadline it stops the check: from a
 * hook, lua_yield escapes even a pcall inside the check, and the
 * scheduler, seeing run->stopped, counts the check as timed out and closes
 * it. Where it cannot yield (a helper coroutine, a C call in between, a
 * pcall on PUC 5.1) it raises instead, and from then on at every
 * instruction, so that no pcall keeps the check alive. Another hook that
 * was set before is called for its events. */
static void lu_check_hook(lua_State *L, lua_Debug *ar) {
  lu_run *run = lu_running(L);
  if (run == NULL) return; /* a coroutine a check left behind */
  if (run->hook != NULL && run->hook != lu_check_hook &&
      (ar->event != LUA_HOOKCOUNT || (run->mask & LUA_MASKCOUNT)))
    run->hook(L, ar);
  if (ar->event != LUA_HOOKCOUNT) return;
  if (!run->stopped) {
    double now = lu_run_clock(L, run);
    if (now < run->deadline) return;
    run->stopped = 1;
    run->stopped_at = now;
  }
  lua_sethook(L, lu_check_hook, lua_gethookmask(L) | LUA_MASKCOUNT, 1);
  if (L == run->co && lua_isyieldable(L)) {
    lua_yield(L, 0);
    return;
  }
  lua_pushliteral(L, LU_TIMED_OUT);
  lua_error(L);
}
#endif

/* Links run (for co, resumed from L, the list at index 1 of L) before co
 * is resumed, and sets co's hook. Nothing here raises once the hook is
 * set. */
static void lu_run_enter(lua_State *L, lu_runs *r, lu_run *run, lua_State *co,
                         double deadline) {
  run->outer = r->top;
  run->co = co;
  run->from = L;
  run->deadline = deadline;
  run->stopped = 0;
  run->stopped_at = deadline;
#if LU_CHECK_HOOK
  luaL_checkstack(L, 2, NULL); /* for lu_run_clock */
  run->hook = lua_gethook(co);
  run->mask = lua_gethookmask(co);
  run->count = lua_gethookcount(co);
  lua_sethook(co, lu_check_hook, run->mask | LUA_MASKCOUNT, LU_HOOK_EVERY);
#endif
  r->top = run;
}

/* Unlinks run after its resume returned, co's hook as it was. */
static void lu_run_leave(lu_runs *r, lu_run *run) {
  r->top = run->outer;
#if LU_CHECK_HOOK
  lua_sethook(run->co, run->hook, run->mask, run->count);
#endif
}

/* Is L the coroutine of the innermost check this scheduler resumed? */
int lu_in_own_check(lua_State *L) {
  lu_run *run = lu_running(L);
  return run != NULL && run->co == L;
}

/* Closes co when it is suspended or dead by error: the socket of a
 * built-in check waiting in it is closed, its to-be-closed variables run
 * (5.4; older versions only drop it, see compat.h). A running coroutine
 * is left alone: whoever resumed it sees its check is stale when it comes
 * back. */
void lu_close_thread(lua_State *L, lua_State *co) {
  if (lua_status(co) != LUA_OK) {
    lu_close_wait(L, co);
    lu_closethread(co, L);
  }
}

/* A list's checks are driven by one layer: the first one used. */
void lu_use_driver(lua_State *L, lu_list *u, int d) {
  if (u->driver != LU_DRIVER_NONE && u->driver != d)
    luaL_error(L, d == LU_DRIVER_STEP
                      ? "upstream.list: checks are driven by due()/report(); "
                        "step(), run() and wait_initial() are not available"
                      : "upstream.list: checks are driven by step(); due() "
                        "and report() are not available");
  u->driver = d;
}

/* threads[slot+1] = nil if it still holds the coroutine at top of L. */
static void lu_forget_thread(lua_State *L, int32_t s) {
  lua_getiuservalue(L, 1, LU_UV_THREADS);
  if (lua_rawgeti(L, -1, (lua_Integer)s + 1) == LUA_TTHREAD &&
      lua_rawequal(L, -1, -3)) {
    lua_pushnil(L);
    lua_rawseti(L, -3, (lua_Integer)s + 1);
  }
  lua_pop(L, 2);
}

/* The check yielded nres values: upstream.sleep(secs) asks to be woken
 * then, any other yield at the next step; while run() or wait_initial()
 * drive, no sooner than tick. A wake past the deadline is the deadline.
 * A built-in check waiting on its socket sleeps until its deadline, and
 * the poll of the socket (lu_poll_waits) wakes it sooner. */
static void lu_check_yielded(lua_State *L, lua_State *co, int nres, int32_t s,
                             uint64_t gen, double now, double tick,
                             double deadline) {
  lu_list *u = (lu_list *)lua_touserdata(L, 1);
  double secs = 0, wake;
  lu_wait *w = lu_yielded_wait(co, nres);
  if (w != NULL) {
    w->owner = u;
    w->slot = s;
    w->gen = gen;
    lua_pop(co, nres); /* the socket stays in the waits table */
    if (!lu_core_sleep(L, u, s, gen, deadline)) {
      lu_forget_thread(L, s);
      lu_close_thread(L, co);
    }
    return;
  }
  if (nres >= 2 && lua_touserdata(co, -nres) == &lu_sleep_token)
    secs = lua_tonumber(co, -nres + 1);
  lua_pop(co, nres);
  if (secs < tick) secs = tick;
  wake = secs < deadline - now ? now + secs : deadline;
  if (!lu_core_sleep(L, u, s, gen, wake)) { /* stale: removed or shut down */
    lu_forget_thread(L, s);
    lu_close_thread(L, co);
  }
}

/* The check returned nres values: ok [, err [, tier]], where a number as
 * ok is a success asking for that tier. */
static void lu_check_returned(lua_State *L, lua_State *co, int nres, int32_t s,
                              uint64_t gen, double now) {
  int ok = nres >= 1 && lua_toboolean(co, -nres);
  /* the tier: the first result on success, the third on failure */
  int at = ok ? -nres : nres >= 3 ? -nres + 2 : 0;
  lua_Number tier = NAN;
  if (at && lua_type(co, at) == LUA_TNUMBER) tier = lua_tonumber(co, at);
  if (ok) lua_pushnil(L);
  else lu_push_failure(L, co, nres >= 2 ? -nres + 1 : 0, 0);
  lua_pop(co, nres);
  lu_list *u = (lu_list *)lua_touserdata(L, 1);
  if (u->sh) lu_sh_result(L, u, s, gen, ok, now, tier, 0);
  else lu_check_result(L, u, s, gen, ok, now, tier);
}

/* The deadline of check (s, gen); for a stale one, now: the hook stops it
 * at its next count (a check is never started stale: lu_start_check). */
static double lu_deadline(lua_State *L, const lu_list *u, int32_t s,
                          uint64_t gen, double now) {
  if (u->sh) return lu_sh_deadline(L, u, s, gen, now);
  return ul_current(u->core, s, gen) ? ul_nodes(u->core)[s].deadline : now;
}

/* How a resumed check ended, for lu_finish_check. */
typedef struct lu_fin {
  lua_State *co;
  int st, nres, stopped;
  int32_t s;
  uint64_t gen;
  double now, stopped_at;
} lu_fin;

/* lu_finish_check's protected part: the list at 1, the lu_fin at 2. */
static int lu_finish_p(lua_State *L) {
  lu_fin *f = (lu_fin *)lua_touserdata(L, 2);
  lu_list *u = (lu_list *)lua_touserdata(L, 1);
  /* a built-in check whose loop was cut short (an error between its
   * wait and its close: a yield across pcall on 5.1) left its socket */
  lu_close_wait(L, f->co);
  if (f->stopped) { /* by the hook, whatever the check did after */
    lu_close_thread(L, f->co);
    lua_pushliteral(L, LU_TIMED_OUT);
    if (u->sh) lu_sh_result(L, u, f->s, f->gen, 0, f->stopped_at, NAN, 1);
    else lu_check_stopped(L, u, f->s, f->gen, f->stopped_at);
  } else if (f->st == LUA_OK) {
    lu_check_returned(L, f->co, f->nres, f->s, f->gen, f->now);
  } else { /* raised: the error object is on top of co */
    lu_push_failure(L, f->co, -1, 1);
    lu_close_thread(L, f->co);
    if (u->sh) lu_sh_result(L, u, f->s, f->gen, 0, f->now, NAN, 0);
    else lu_check_result(L, u, f->s, f->gen, 0, f->now, NAN);
  }
  return 0;
}

/* Applies the result of a check that ended (its coroutine, forgotten, at
 * the top of L). Making the message or storing it can run out of memory:
 * the check is then put back, not counted (ul_cancel), and runs again at
 * the next step; the error escapes. */
static void lu_finish_check(lua_State *L, lu_list *u, lu_fin *f) {
  lua_pushcfunction(L, lu_finish_p);
  lua_pushvalue(L, 1);
  lua_pushlightuserdata(L, f);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    lu_core_cancel(L, u, f->s, f->gen);
    lu_close_thread(L, f->co);
    lua_error(L);
  }
}

/* Resumes the check coroutine at top of L (slot s, check gen) with nargs
 * arguments already on co, and handles what it did. Pops the coroutine. */
static void lu_resume_check(lua_State *L, lua_State *co, int nargs, int32_t s,
                            uint64_t gen, double now, double tick) {
  lu_list *u = (lu_list *)lua_touserdata(L, 1);
  lu_run run;
  lu_runs *r = lu_push_runs(L); /* above the coroutine, till the end */
  int nres = 0, st;
  lu_run_enter(L, r, &run, co, lu_deadline(L, u, s, gen, now));
  st = lua_resume(co, L, nargs, &nres);
  lu_run_leave(r, &run);
  lua_pop(L, 1); /* the lu_runs */
  if (!run.stopped && st == LUA_YIELD) {
    lu_check_yielded(L, co, nres, s, gen, now, tick, run.deadline);
  } else {
    lu_fin f;
    f.co = co;
    f.st = st;
    f.nres = nres;
    f.stopped = run.stopped;
    f.s = s;
    f.gen = gen;
    f.now = now;
    f.stopped_at = run.stopped_at;
    lu_forget_thread(L, s);
    lu_finish_check(L, u, &f);
  }
  lua_pop(L, 1); /* the coroutine */
}

/* The backend's healthcheck field (the backend at 1), looked up protected. */
static int lu_lookup_p(lua_State *L) {
  lua_getfield(L, 1, "healthcheck");
  return 1;
}

/* The body of a check whose healthcheck lookup raised: raises the lookup's
 * error (its argument), so the check fails as one that raises does. */
static int lu_reraise(lua_State *L) {
  lua_settop(L, 1);
  return lua_error(L);
}

/* Pushes backend:healthcheck's function and the backend's place (the
 * backend at top, replaced): the lookup runs the backend's __index, user
 * code that may raise (a strict object, a userdata whose __index is gone):
 * then the check is lu_reraise of that error, one failed check, and the
 * scheduler goes on. Out of memory is not the backend's fault: it raises. */
static void lu_push_method(lua_State *L) {
  int st;
  lua_pushcfunction(L, lu_lookup_p);
  lua_pushvalue(L, -2);
  st = lua_pcall(L, 1, 1, 0);
  if (st == LUA_ERRMEM) lua_error(L);
  if (st != LUA_OK) { /* backend, err: lu_reraise, err */
    lua_pushcfunction(L, lu_reraise);
    lua_replace(L, -3);
  } else {
    lua_insert(L, -2); /* fn, backend */
  }
}

/* lu_start_check's protected part (the list at 1, the slot at 2): pushes
 * the new coroutine, the check function and its argument (the backend) on
 * it, stored in the threads table last. */
static int lu_prepare_p(lua_State *L) {
  lua_Integer s1 = lua_tointeger(L, 2) + 1;
  lua_State *co;
  lua_settop(L, 1);
  lu_push_runs(L); /* made now, for lu_resume_check */
  lua_pop(L, 1);
  lua_getiuservalue(L, 1, LU_UV_SLOTS);
  lua_rawgeti(L, -1, s1); /* backend */
  lua_remove(L, -2);
  if (lua_getiuservalue(L, 1, LU_UV_CHECK) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    lu_push_method(L);
  } else {
    lua_insert(L, -2); /* fn, backend */
  }
  co = lua_newthread(L);
  lua_insert(L, -3);
  lua_xmove(L, co, 2);
  lua_getiuservalue(L, 1, LU_UV_THREADS);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, s1);
  lua_pop(L, 1);
  return 1;
}

/* Starts the check of slot s (just taken, UL_EV_START) in a new coroutine.
 * Running out of memory before it runs puts the check back (ul_cancel). */
static void lu_start_check(lua_State *L, int32_t s, uint64_t gen, double now,
                           double tick) {
  lu_list *u = (lu_list *)lua_touserdata(L, 1);
  lua_pushcfunction(L, lu_prepare_p);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, (lua_Integer)s);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
    lu_core_cancel(L, u, s, gen);
    lua_error(L);
  }
  /* the preparation ran user code (the backend's __index, finalizers of
   * what it allocated), which may have made the check stale: removed the
   * backend, or timed the check out through a run() of its own. A stale
   * check's function never runs: its coroutine goes unstarted. */
  if (!(u->sh ? lu_sh_current(L, u, s, gen) : ul_current(u->core, s, gen))) {
    lua_State *co = lua_tothread(L, -1);
    lu_forget_thread(L, s);
    lu_close_thread(L, co);
    lua_pop(L, 1);
    return;
  }
  lu_resume_check(L, lua_tothread(L, -1), 1, s, gen, now, tick);
}

/* Resumes the check of slot s that asked to be woken. */
static void lu_wake_check(lua_State *L, int32_t s, uint64_t gen, double now,
                          double tick) {
  lua_getiuservalue(L, 1, LU_UV_THREADS);
  lua_rawgeti(L, -1, (lua_Integer)s + 1);
  lua_remove(L, -2);
  if (lua_type(L, -1) == LUA_TTHREAD &&
      lua_status(lua_tothread(L, -1)) == LUA_YIELD)
    lu_resume_check(L, lua_tothread(L, -1), 0, s, gen, now, tick);
  else
    lua_pop(L, 1);
}

/* The core timed out slot s's check (its message already stored): it is
 * closed, never resumed. */
static void lu_timeout_check(lua_State *L, int32_t s) {
  lua_State *co;
  lua_getiuservalue(L, 1, LU_UV_THREADS);
  if (lua_rawgeti(L, -1, (lua_Integer)s + 1) == LUA_TTHREAD) {
    co = lua_tothread(L, -1);
    lua_pushnil(L);
    lua_rawseti(L, -3, (lua_Integer)s + 1);
    lu_close_thread(L, co);
  }
  lua_pop(L, 2);
}

/* Runs every event due at now; a check that yields is resumed tick later
 * at the soonest. Returns the time of the next event. */
static double lu_do_step(lua_State *L, lu_list *u, double now, double tick) {
  int32_t s;
  uint64_t gen;
  int ev;
  lu_use_driver(L, u, LU_DRIVER_STEP);
  if (u->sh) {
    double wait_lease;
    if (!lu_sh_collect(L, u, now, &wait_lease)) return wait_lease;
  } else {
    ul_collect(u->core, now);
  }
  /* made before any check is taken: nothing in the loop grows L's stack */
  luaL_checkstack(L, 16, NULL);
  /* a timeout's message is stored before ul_take counts it */
  while ((ev = u->sh ? lu_sh_peek(L, u, &s) : ul_peek(u->core, &s)) !=
         UL_EV_NONE) {
    int was = 0;
    if (ev == UL_EV_TIMEOUT) {
      lu_check_timed_out(L, s);
      was = lu_healthy(u, s);
    }
    ev = u->sh ? lu_sh_take(L, u, &s, &gen) : ul_take(u->core, &s, &gen);
    if (ev == UL_EV_START) {
      lu_start_check(L, s, gen, now, tick);
    } else if (ev == UL_EV_WAKE) {
      lu_wake_check(L, s, gen, now, tick);
    } else if (ev == UL_EV_TIMEOUT) { /* on_change after the close */
      int changed = lu_push_change(L, u, s, was, 1);
      lu_timeout_check(L, s);
      if (changed) lu_call_change(L);
    }
  }
  return u->sh ? lu_sh_next_wake(L, u) : ul_next_wake(u->core);
}

int l_step(lua_State *L) {
  lu_list *u = lu_check_list(L);
  double now, next;
  lua_settop(L, 1);
  if (lu_core_shut(u)) {
    lua_pushnil(L);
    return 1;
  }
  lu_poll_waits(L, 1, 0); /* the sockets ready now: never blocks */
  now = lu_list_now(L, 1);
  next = lu_do_step(L, u, now, 0);
  /* the checks took time (a real clock moves while they run, a fake one
   * may be moved by them): the wait counts from after them */
  if (!isinf(next)) now = lu_list_now(L, 1);
  lu_push_wait(L, next, now);
  return 1;
}

/* The clock stood still over sleeps adding up to slept seconds. */
static void lu_clock_stands_still(lua_State *L, double slept) {
  if (lua_getiuservalue(L, 1, LU_UV_SLEEP) == LUA_TFUNCTION)
    luaL_error(L, "upstream.list: the clock did not move during sleeps adding"
                  " up to %f s; the 'sleep' option must advance the 'clock'",
               slept);
  luaL_error(L, "upstream.list: the clock did not move during sleeps adding up"
                " to %f s; with a fake clock, pass a 'sleep' option that "
                "advances it", slept);
}

/* Waits secs for the next event of the list at 1: in poll() on the
 * sockets of its waiting built-in checks, if any, else with the list's
 * sleep. With a sleep option the sockets are polled without waiting after
 * it returns: the list's sleep is the one that waits. */
static void lu_wait_events(lua_State *L, double secs) {
  if (lua_getiuservalue(L, 1, LU_UV_SLEEP) == LUA_TFUNCTION) {
    lua_pop(L, 1);
    lu_list_sleep(L, 1, secs);
    lu_poll_waits(L, 1, 0);
    return;
  }
  lua_pop(L, 1);
  if (lu_poll_waits(L, 1, secs) < 0) lu_list_sleep(L, 1, secs);
}

/* Drives the scheduler until done() or the clock reaches end. Returns 1
 * when done() held. Each pass runs the events due, then sleeps towards the
 * next event or end, at least LU_TICK: a shorter sleep (a rounding
 * residue, an event between two readings of a coarse clock) would spin on
 * a clock that moves in larger steps, forever when it is a fake one moved
 * by the sleeps alone. With a check that yields resumed LU_TICK later at
 * the soonest, the list's clock always moves on. */
static int lu_drive(lua_State *L, lu_list *u, double end,
                    int (*done)(lua_State *, const lu_list *)) {
  double now = lu_list_now(L, 1), still = 0;
  for (;;) {
    double next, later, wait;
    if (done && done(L, u)) return 1;
    next = lu_core_shut(u) ? INFINITY : lu_do_step(L, u, now, LU_TICK);
    if (done && done(L, u)) return 1;
    later = lu_list_now(L, 1);
    if (later >= end) return 0;
    wait = (next < end ? next : end) - later;
    if (wait <= 0) wait = 0;
    else if (wait < LU_TICK) wait = LU_TICK;
    lu_wait_events(L, wait);
    now = lu_list_now(L, 1);
    if (now > later) still = 0;
    else if ((still += wait) >= LU_STILL) lu_clock_stands_still(L, still);
  }
}

int l_run(lua_State *L) {
  lu_list *u;
  double secs;
  lua_settop(L, 2);
  u = lu_check_list(L);
  secs = luaL_checknumber(L, 2);
  if (!(secs >= 0) || isinf(secs))
    luaL_argerror(L, 2, "seconds must be a finite number >= 0");
  lua_settop(L, 1);
  lu_drive(L, u, lu_list_now(L, 1) + secs, NULL);
  return 0;
}

static int lu_first_round_done(lua_State *L, const lu_list *u) {
  if (u->sh) return lu_sh_first_round_done(L, u);
  return u->core->unchecked == 0 || u->core->shut;
}

static int lu_push_fail(lua_State *L, const char *why) {
  lua_pushnil(L);
  lua_pushstring(L, why);
  return 2;
}

int l_wait_initial(lua_State *L) {
  lu_list *u;
  double limit;
  lua_settop(L, 2);
  u = lu_check_list(L);
  limit = luaL_optnumber(L, 2, HUGE_VAL);
  if (!(limit >= 0))
    luaL_argerror(L, 2, "timeout must be a number >= 0");
  lua_settop(L, 1);
  if (lu_core_shut(u)) return lu_push_fail(L, "shut down");
  if (!lu_drive(L, u, lu_list_now(L, 1) + limit, lu_first_round_done))
    return lu_push_fail(L, "timeout");
  if (lu_core_shut(u)) return lu_push_fail(L, "shut down");
  lua_pushboolean(L, 1);
  return 1;
}

/* upstream.sleep(secs), inside a check run by this scheduler: yields to
 * it, which resumes the check secs later (see lu_check_yielded). Only the
 * check's own coroutine may: in any other the yield would go to whoever
 * resumed it, neither sleeping nor failing. Where the check cannot yield
 * (a C call in between; a pcall on PUC 5.1) lua_yield says so. */
int l_sleep(lua_State *L) {
  double s = luaL_checknumber(L, 1);
  lu_run *run;
  if (!(s >= 0) || isinf(s))
    luaL_argerror(L, 1, "seconds must be a finite number >= 0");
  run = lu_running(L);
  if (run == NULL || run->co != L)
    luaL_error(L, "upstream.sleep: not inside a health check");
  lua_settop(L, 1);
  lua_pushlightuserdata(L, &lu_sleep_token);
  lua_insert(L, 1);
  return lua_yield(L, 2);
}
