/*
 * lua/shared_checks.c - one prober for a shared list (issue 10): the
 * mapping's lease, due()/report()/next_due()/lease(), and the core calls
 * the scheduler (scheduler.c) makes on a shared list. The rules are
 * shared.c's: the lock is never held across a call into Lua.
 */
#include <math.h>
#include <string.h>

#include "shared.h"

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
int ls_due(lua_State *L) {
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
      lu_fill_job(L, s, gen, deadline);
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
int ls_report(lua_State *L) {
  lu_list *u;
  lu_report r;
  double now;
  lua_settop(L, 5);
  u = lu_sh_check(L);
  lu_report_args(L, (lua_Integer)u->sh->cap - 1, &r);
  if (!u->sh->gen || !ul_shm_lease_check(u->sh->m, u->sh->gen)) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "lease lost");
    return 2;
  }
  now = lu_list_now(L, 1);
  if (r.ok) lua_pushnil(L);
  else lu_push_failure(L, L, 4, 0);
  lua_pushboolean(L, lu_sh_result(L, u, r.s, r.gen, r.ok, now, r.tier, 0));
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

int lu_sh_current(lua_State *L, const lu_list *u, int32_t s, uint64_t gen) {
  int c;
  lu_sh_lock(L, u->sh);
  c = ul_current(u->sh->b, s, gen);
  lu_sh_unlock(u->sh);
  return c;
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
int ls_next_due(lua_State *L) {
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
int ls_lease(lua_State *L) {
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

