/*
 * alloc_test.c - failing allocations (issue 8): every scenario below runs
 * once per allocation it makes, with the k-th allocation failing, for every
 * k from 1 to the number of allocations it makes without failure.
 *
 * The Lua state gets its own lua_Alloc: once armed, it counts every growing
 * request (a new block, or a realloc to a larger size) and from the k-th on
 * returns NULL; frees and shrinks always succeed. The module is compiled in
 * (src/upstream.c) and loaded with luaL_requiref. Per k, with a fresh state:
 *  1. the scenario runs in lua_pcall, armed: it must succeed or raise a
 *     memory error (LUA_ERRMEM, or an error whose message is "not enough
 *     memory"); anything else is a failure;
 *  2. disarmed, H.after checks every list the scenario made (tracked before
 *     the failing call could run): consistent #list/status()/score/weight,
 *     scores in [low, high], the members one of the sequences the scenario
 *     allows (e.g. before or after a reconcile), picks return members, 3 s
 *     of checks on the fake clock complete and never time out unless meant
 *     to, a fresh reconcile and shutdown work; then no check coroutine is
 *     left suspended (never closed);
 *  3. lua_close; nothing may leak: under ASan the live heap is compared
 *     before and after (LeakSanitizer then shows where); under valgrind
 *     (-DALLOC_VALGRIND) its error and leak counts are read per k.
 *
 * TAP: one line per scenario, "ok N - scenario NAME: K allocation points",
 * or "not ok" with the failing k's and their errors, then the plan.
 * Environment: ALLOC_STRIDE=s runs every s-th k only (valgrind);
 * ALLOC_ONLY=name runs one scenario; ALLOC_K=k one k, and with ALLOC_STACK=1
 * prints the C stack of the failing allocation (to debug). ALLOC_ONCE=1
 * fails the k-th request and the retry Lua makes after an emergency
 * collection, no later one: the error then escapes from that very call.
 *
 * Adding a scenario is one entry in scenarios[]: Lua source that gets S,
 * the scenario's state (fake clock S.now, S.clock, S.sleep, S.check), and
 * the global H (helpers, see PRELUDE); it registers each list it makes with
 * H.track(S, list, spec) so that step 2 checks it.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>
size_t __sanitizer_get_current_allocated_bytes(void);
#define HEAP_BYTES() __sanitizer_get_current_allocated_bytes()
#else
#define HEAP_BYTES() ((size_t)0)
#endif

#if defined(ALLOC_VALGRIND)
#include <valgrind/memcheck.h>
#endif
#if !defined(__SANITIZE_ADDRESS__)
#include <execinfo.h>
#endif

int luaopen_upstream(lua_State *L);

/* ---- the failing allocator ----------------------------------------------- */

static struct {
  int armed;              /* count (and fail) growing requests */
  unsigned long count;    /* growing requests since armed */
  unsigned long fail_at;  /* the first one to fail (0: none) */
  size_t live;            /* bytes Lua holds */
  int stack;              /* ALLOC_STACK: print where the k-th one fails */
  int once;               /* ALLOC_ONCE: fail the k-th and Lua's retry only */
} A;

/* The C stack of the failing allocation (ALLOC_STACK=1, with ALLOC_K). */
static void print_stack(void) {
  fprintf(stderr, "# allocation %lu fails here:\n", A.fail_at);
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_print_stack_trace();
#else
  {
    void *frames[32];
    backtrace_symbols_fd(frames, backtrace(frames, 32), 2);
  }
#endif
}

static void *failing_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  void *q;
  size_t old = p ? osize : 0;
  (void)ud;
  if (nsize == 0) {
    free(p);
    A.live -= old;
    return NULL;
  }
  if (A.armed && nsize > old) {
    A.count++;
    if (A.fail_at && A.count >= A.fail_at &&
        (!A.once || A.count <= A.fail_at + 1)) {
      if (A.stack && A.count == A.fail_at) print_stack();
      return NULL;
    }
  }
  q = realloc(p, nsize);
  if (q) A.live = A.live - old + nsize;
  return q;
}

/* ---- Lua: the helpers and the scenarios ---------------------------------- */

static const char PRELUDE[] =
    "-- The helpers every scenario uses (run before allocations are counted).\n"
    "-- Backends are named by what their check does: ok1 succeeds, bad1 fails,\n"
    "-- raise1 raises, yield1 yields twice, sleep1 calls upstream.sleep(0.05),\n"
    "-- tier1 returns a tier, badtier1 fails with a tier, slow1 sleeps past its\n"
    "-- timeout, late1 is never reported (due/report), passive1 has no check.\n"
    "local upstream = require 'upstream'\n"
    "local H = {upstream = upstream}\n"
    "local TIMED_OUT = 'health check timed out'\n"
    "local NONE = 'no upstreams available'\n"
    "local FAILS = {bad = true, raise = true, badtier = true, slow = true, late = true}\n"
    "local LATE = {slow = true, late = true} -- the only ones that may time out\n"
    "H.STRATEGIES = {'round_robin', 'weighted', 'least_conn', 'hash', 'random'}\n"
    "\n"
    "function H.kind(b)\n"
    "  if type(b) == 'table' then b = b.name end\n"
    "  if type(b) ~= 'string' then return 'passive' end\n"
    "  return (b:match('^%a+'))\n"
    "end\n"
    "\n"
    "function H.name(b)\n"
    "  if type(b) == 'table' then return '{' .. tostring(b.name) .. '}' end\n"
    "  return tostring(b)\n"
    "end\n"
    "\n"
    "local function fail(where, fmt, ...)\n"
    "  error(where .. ': ' .. string.format(fmt, ...), 0)\n"
    "end\n"
    "\n"
    "-- The scenario's state. Its bookkeeping slots exist before the scenario\n"
    "-- runs: writing an existing field allocates nothing, so a list the scenario\n"
    "-- created is always tracked.\n"
    "function H.state()\n"
    "  local S = {now = 0, nlists = 0, lists = {}, specs = {}, cos = {},\n"
    "             opened = 0, closed = 0, quiet = false}\n"
    "  for i = 1, 16 do S.lists[i] = false; S.specs[i] = false end\n"
    "  S.closer = setmetatable({}, {__close = function() S.closed = S.closed + 1 end})\n"
    "  S.clock = function() return S.now end\n"
    "  S.sleep = function(s) S.now = S.now + s end\n"
    "  S.check = function(b)\n"
    "    S.cos[coroutine.running()] = true\n"
    "    S.opened = S.opened + 1\n"
    "    local c <close> = S.closer\n"
    "    local kind = H.kind(b)\n"
    "    if kind == 'bad' then return nil, 'boom'\n"
    "    elseif kind == 'raise' then error('kaboom')\n"
    "    elseif kind == 'badtier' then return nil, 'boom', 3\n"
    "    elseif kind == 'tier' then return 2\n"
    "    elseif kind == 'yield' then coroutine.yield(); coroutine.yield(); return true\n"
    "    elseif kind == 'sleep' then upstream.sleep(0.05); return true\n"
    "    elseif kind == 'slow' then upstream.sleep(10); return true\n"
    "    end\n"
    "    return true\n"
    "  end\n"
    "  S.hc = {__index = {healthcheck = function(self) return S.check(self) end}}\n"
    "  return S\n"
    "end\n"
    "\n"
    "-- Registers a list for the checks after the run; spec: { driver = 'step'\n"
    "-- | 'due', strategy =, sets = { members... } (the member sequences it may\n"
    "-- have), jobs = false (due: the jobs handed out), fresh = a backend for\n"
    "-- the fresh reconcile, low =, high = }.\n"
    "function H.track(S, list, spec)\n"
    "  local i = S.nlists + 1\n"
    "  S.specs[i] = spec\n"
    "  S.lists[i] = list\n"
    "  S.nlists = i\n"
    "  return list\n"
    "end\n"
    "\n"
    "function H.tick(S, list, n)\n"
    "  for _ = 1, n or 1 do\n"
    "    S.now = S.now + 0.05\n"
    "    list:step()\n"
    "  end\n"
    "end\n"
    "\n"
    "-- What reconcile(given) makes of the members old: kept ones in their order,\n"
    "-- then the new ones in the given order, duplicates skipped.\n"
    "function H.reconciled(old, given)\n"
    "  local want, out, have = {}, {}, {}\n"
    "  for _, b in ipairs(given) do want[b] = true end\n"
    "  for _, b in ipairs(old) do\n"
    "    if want[b] then out[#out + 1] = b; have[b] = true end\n"
    "  end\n"
    "  for _, b in ipairs(given) do\n"
    "    if not have[b] then out[#out + 1] = b; have[b] = true end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "\n"
    "function H.members(list)\n"
    "  local m = {}\n"
    "  for i, e in ipairs(list:status()) do m[i] = e.backend end\n"
    "  return m\n"
    "end\n"
    "\n"
    "-- reconcile that records the member sets the list may have if it fails\n"
    "function H.reconcile(list, spec, given, weights)\n"
    "  local old = H.members(list)\n"
    "  local want = H.reconciled(old, given)\n"
    "  spec.sets = {old, want}\n"
    "  list:reconcile(given, weights)\n"
    "  spec.sets = {want}\n"
    "end\n"
    "\n"
    "-- A result by the backend's kind, for due/report\n"
    "function H.report(list, j)\n"
    "  local kind = H.kind(j.backend)\n"
    "  if LATE[kind] then return end\n"
    "  if kind == 'bad' or kind == 'raise' then return list:report(j, false, 'boom') end\n"
    "  if kind == 'badtier' then return list:report(j, nil, 'boom', 3) end\n"
    "  if kind == 'tier' then return list:report(j, true, nil, 2) end\n"
    "  return list:report(j, true)\n"
    "end\n"
    "\n"
    "-- Calls f, which must raise; a memory error is raised again, as the\n"
    "-- harness expects it.\n"
    "function H.try(f, ...)\n"
    "  local ok, err = pcall(f, ...)\n"
    "  if ok then error('H.try: the call did not raise', 0) end\n"
    "  if err == 'not enough memory' then error(err, 0) end\n"
    "  return err\n"
    "end\n"
    "\n"
    "local function seqkey(seq)\n"
    "  local t = {}\n"
    "  for i, b in ipairs(seq) do t[i] = H.name(b) end\n"
    "  return '[' .. table.concat(t, ',') .. ']'\n"
    "end\n"
    "\n"
    "-- The list is consistent: #list, status(), score/weight lookups agree,\n"
    "-- scores in [low, high], the members are one of spec.sets, picks return\n"
    "-- members (nil only when no member is healthy).\n"
    "function H.verify(S, list, spec, where)\n"
    "  local low, high = spec.low or -3, spec.high or 3\n"
    "  local n = #list\n"
    "  local st = list:status()\n"
    "  if #st ~= n then fail(where, '#list is %d, status() has %d entries', n, #st) end\n"
    "  local members, healthy = {}, false\n"
    "  for i, e in ipairs(st) do\n"
    "    local b = e.backend\n"
    "    if b == nil then fail(where, 'status()[%d] has no backend', i) end\n"
    "    local name = H.name(b)\n"
    "    members[b] = true\n"
    "    if type(e.score) ~= 'number' or not (e.score >= low and e.score <= high) then\n"
    "      fail(where, 'score of %s is %s, outside [%g, %g]', name, tostring(e.score), low, high)\n"
    "    end\n"
    "    if e.healthy ~= (e.score >= 0) then fail(where, '%s: healthy is %s with score %g', name, tostring(e.healthy), e.score) end\n"
    "    if e.healthy then healthy = true end\n"
    "    if list:score(b) ~= e.score then\n"
    "      fail(where, 'score(%s) is %s, status() says %g', name, tostring(list:score(b)), e.score)\n"
    "    end\n"
    "    if list:weight(b) ~= e.weight then\n"
    "      fail(where, 'weight(%s) is %s, status() says %s', name, tostring(list:weight(b)), tostring(e.weight))\n"
    "    end\n"
    "    if math.type(e.weight) ~= 'integer' or e.weight < 1 or e.weight > 1000000 then\n"
    "      fail(where, 'weight of %s is %s', name, tostring(e.weight))\n"
    "    end\n"
    "    if not (e.checks >= 0 and e.failures >= 0 and e.failures <= e.checks) then\n"
    "      fail(where, '%s: %d checks, %d failures', name, e.checks, e.failures)\n"
    "    end\n"
    "    if e.inflight < 0 or e.tier < 0 or e.tier > 10 then\n"
    "      fail(where, '%s: inflight %d, tier %d', name, e.inflight, e.tier)\n"
    "    end\n"
    "    local kind = H.kind(b)\n"
    "    if FAILS[kind] and e.checks > 0 and type(e.last_error) ~= 'string' then\n"
    "      fail(where, '%s: its checks always fail and %d ended (%d failures), but last_error is %s: '\n"
    "           .. 'a result was applied without its error', name, e.checks, e.failures, tostring(e.last_error))\n"
    "    end\n"
    "    if e.last_error == TIMED_OUT and not LATE[kind] then\n"
    "      fail(where, 'the check of %s timed out, but it never outlives its timeout: '\n"
    "           .. 'the check was marked running and never run (lost)', name)\n"
    "    end\n"
    "  end\n"
    "  if spec.sets then\n"
    "    local k, okset, want = seqkey(H.members(list)), false, {}\n"
    "    for i, set in ipairs(spec.sets) do\n"
    "      want[i] = seqkey(set)\n"
    "      if want[i] == k then okset = true end\n"
    "    end\n"
    "    if not okset then\n"
    "      fail(where, 'the members are %s, expected %s', k, table.concat(want, ' or '))\n"
    "    end\n"
    "  end\n"
    "  for i = 1, 2 * n + 2 do\n"
    "    local b, err = list:pick('key' .. i)\n"
    "    if b == nil then\n"
    "      if err ~= NONE then fail(where, 'pick() returned nil, %s', tostring(err)) end\n"
    "      if healthy then fail(where, 'pick() returned nil with a healthy member') end\n"
    "    elseif not members[b] then\n"
    "      fail(where, 'pick() returned %s, not a member', H.name(b))\n"
    "    end\n"
    "    if b ~= nil and spec.strategy == 'least_conn' then list:release(b) end\n"
    "  end\n"
    "end\n"
    "\n"
    "-- Drives the checks of every list the scenario made, together, for 3 s of\n"
    "-- the fake clock (they share it: driving one list after another would\n"
    "-- move the clock past the deadline of a check another list has\n"
    "-- suspended): every checked member completes a check, and none times out\n"
    "-- unless it is meant to.\n"
    "function H.drive(S)\n"
    "  local lists, before = {}, {}\n"
    "  for i = 1, S.nlists do\n"
    "    local list, spec = S.lists[i], S.specs[i]\n"
    "    if spec.driver and list:next_due() ~= nil then\n"
    "      local b = {}\n"
    "      for k, e in ipairs(list:status()) do b[k] = e.checks end\n"
    "      lists[#lists + 1] = i\n"
    "      before[i] = b\n"
    "    end\n"
    "  end\n"
    "  for _ = 1, 60 do\n"
    "    S.now = S.now + 0.05\n"
    "    for _, i in ipairs(lists) do\n"
    "      local list, spec = S.lists[i], S.specs[i]\n"
    "      local where = 'after the run, list ' .. i .. ', driving its checks'\n"
    "      if spec.driver == 'step' then\n"
    "        list:step()\n"
    "      else\n"
    "        for _, j in ipairs(list:due()) do H.report(list, j) end\n"
    "      end\n"
    "      for _, e in ipairs(list:status()) do\n"
    "        if e.last_error == TIMED_OUT and not LATE[H.kind(e.backend)] then\n"
    "          fail(where, 'the check of %s timed out, but it never outlives its timeout: '\n"
    "               .. 'the check was marked running and never run (lost)', H.name(e.backend))\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  for _, i in ipairs(lists) do\n"
    "    local where = 'after the run, list ' .. i .. ', driving its checks'\n"
    "    for k, e in ipairs(S.lists[i]:status()) do\n"
    "      if H.kind(e.backend) ~= 'passive' and e.checks <= before[i][k] then\n"
    "        fail(where, '%s completed no check in 3 s', H.name(e.backend))\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "\n"
    "-- After the run, with allocations succeeding again: every list the scenario\n"
    "-- made is consistent, keeps checking, reconciles, shuts down; then no check\n"
    "-- coroutine is left suspended (never closed).\n"
    "function H.after(S, injected, yielded)\n"
    "  S.quiet = true -- callbacks (on_change, __tostring) stop calling back\n"
    "  for i = 1, S.nlists do\n"
    "    local list, spec = S.lists[i], S.specs[i]\n"
    "    if spec.jobs then\n"
    "      for _, j in ipairs(spec.jobs) do H.report(list, j) end\n"
    "    end\n"
    "    H.verify(S, list, spec, 'after the run, list ' .. i)\n"
    "  end\n"
    "  H.drive(S)\n"
    "  for i = 1, S.nlists do\n"
    "    local list, spec = S.lists[i], S.specs[i]\n"
    "    local where = 'after the run, list ' .. i\n"
    "    local old, given, seen = H.members(list), {}, {}\n"
    "    for _, b in ipairs(old) do\n"
    "      if not seen[b] then seen[b] = true; given[#given + 1] = b end\n"
    "    end\n"
    "    given[#given + 1] = spec.fresh or 'ok99'\n"
    "    spec.sets = {H.reconciled(old, given)}\n"
    "    list:reconcile(given)\n"
    "    H.verify(S, list, spec, where .. ', after a fresh reconcile')\n"
    "    list:shutdown()\n"
    "    if list:step() ~= nil then fail(where, 'step() after shutdown() is not nil') end\n"
    "    if list:next_due() ~= nil then fail(where, 'next_due() after shutdown() is not nil') end\n"
    "    H.verify(S, list, spec, where .. ', after shutdown()')\n"
    "    list:shutdown()\n"
    "  end\n"
    "  collectgarbage()\n"
    "  collectgarbage()\n"
    "  for co in pairs(S.cos) do\n"
    "    if yielded(co) then\n"
    "      fail('after every list was shut down', 'a check coroutine is still suspended: '\n"
    "           .. 'nobody closed it, its to-be-closed variables never run')\n"
    "    end\n"
    "  end\n"
    "  if not injected and S.opened ~= S.closed then\n"
    "    fail('after the run', '%d checks opened a <close> variable, %d closed it', S.opened, S.closed)\n"
    "  end\n"
    "end\n"
    "\n"
    "return H\n";

/* One entry per scenario: its name and Lua source, run as a function of S
 * (see the top of this file). A scenario calls the API under test with no
 * pcall of its own (H.try when it means to catch an error), so that the
 * memory error reaches the harness. */
typedef struct scenario {
  const char *name;
  const char *src;
} scenario;

static const scenario scenarios[] = {
    {"new",
     "-- upstream.new with every strategy and option, duplicates, passive and empty lists\n"
     "local S = ...\n"
     "local up = H.upstream\n"
     "local B = {'ok1', 'bad1', 'ok2', 'yield1', 'tier1'}\n"
     "for _, strategy in ipairs(H.STRATEGIES) do\n"
     "  local spec = {driver = 'step', strategy = strategy, sets = {B}}\n"
     "  local l = H.track(S, up.new(B, {\n"
     "    strategy = strategy, weights = {ok1 = 5, ok2 = 2, tier1 = 1000000},\n"
     "    tiers = {min = 0, max = 3, init = 1}, slow_start = 2, panic = 0.25,\n"
     "    jitter = 0.5, seed = 42, interval = 1, timeout = 0.5,\n"
     "    initial_score = 1, low_score = -3, high_score = 3,\n"
     "    fail_delta = -1, success_delta = 1,\n"
     "    check = S.check, clock = S.clock, sleep = S.sleep}), spec)\n"
     "  H.tick(S, l)\n"
     "  l:pick('k')\n"
     "end\n"
     "local D = {'a', 'b', 'a', 7, 7.0, true}\n"
     "H.track(S, up.new(D), {sets = {D}})\n"
     "H.track(S, up.new({'sleep1', 'ok1'}, {tier_by_latency = true, check = S.check,\n"
     "  clock = S.clock, seed = 7, timeout = 0.5}), {driver = 'step', sets = {{'sleep1', 'ok1'}}})\n"
     "H.track(S, up.new({}), {sets = {{}}})\n"},
    {"reconcile",
     "-- reconcile: growing past the block, shrinking (closing a suspended check),\n"
     "-- duplicates given, weights, to empty and back; passive lists of each strategy\n"
     "local S = ...\n"
     "local up = H.upstream\n"
     "local B = {'ok1', 'bad1', 'yield1', 'sleep1'}\n"
     "local spec = {driver = 'step', strategy = 'weighted', sets = {B}}\n"
     "local l = H.track(S, up.new(B, {strategy = 'weighted', check = S.check, clock = S.clock,\n"
     "  slow_start = 1, seed = 3, timeout = 0.5, weights = {ok1 = 3}}), spec)\n"
     "H.tick(S, l)\n"
     "H.reconcile(l, spec, {'ok1', 'bad1', 'yield1', 'sleep1', 'ok2', 'ok3', 'bad2', 'ok4', 'tier1'},\n"
     "  {ok2 = 4, ok1 = 2})\n"
     "H.tick(S, l)\n"
     "H.reconcile(l, spec, {'ok1', 'bad1', 'ok2', 'ok2', 'tier1', 'ok5'})\n"
     "H.reconcile(l, spec, {'ok1', 'bad1', 'ok2', 'tier1', 'ok5'}, {ok1 = 7, tier1 = 2})\n"
     "H.tick(S, l, 3)\n"
     "H.reconcile(l, spec, {})\n"
     "H.reconcile(l, spec, {'ok6', 'yield2'})\n"
     "H.tick(S, l)\n"
     "for _, strategy in ipairs({'hash', 'least_conn', 'random', 'round_robin'}) do\n"
     "  local D = {'a', 'b', 'a', 'c'}\n"
     "  local spec2 = {strategy = strategy, sets = {D}}\n"
     "  local l2 = H.track(S, up.new(D, {strategy = strategy, seed = 11}), spec2)\n"
     "  l2:pick('x')\n"
     "  l2:pick('y')\n"
     "  H.reconcile(l2, spec2, {'c', 'd', 'a', 'e', 'f'}, {d = 3})\n"
     "  l2:pick('x')\n"
     "  H.reconcile(l2, spec2, {'f'})\n"
     "end\n"},
    {"status",
     "-- status() of a list with check errors, tiers, duplicates and picks in flight\n"
     "local S = ...\n"
     "local up = H.upstream\n"
     "local B = {'ok1', 'bad1', 'raise1', 'tier1', 'badtier1', 'ok1'}\n"
     "local spec = {driver = 'step', strategy = 'least_conn', sets = {B}}\n"
     "local l = H.track(S, up.new(B, {strategy = 'least_conn', check = S.check, clock = S.clock,\n"
     "  seed = 1, timeout = 0.5, tiers = {min = 0, max = 4, init = 1}}), spec)\n"
     "l:status()\n"
     "H.tick(S, l)\n"
     "l:pick()\n"
     "for _ = 1, 3 do\n"
     "  l:status()\n"
     "  H.tick(S, l, 5)\n"
     "end\n"
     "l:status()\n"},
    {"step",
     "-- step/run/wait_initial with checks that succeed, fail, raise, yield,\n"
     "-- sleep, set tiers, time out; tier_by_latency\n"
     "local S = ...\n"
     "local up = H.upstream\n"
     "local B = {'ok1', 'bad1', 'raise1', 'yield1', 'sleep1', 'tier1', 'badtier1', 'slow1'}\n"
     "local spec = {driver = 'step', sets = {B}}\n"
     "local l = H.track(S, up.new(B, {check = S.check, clock = S.clock, sleep = S.sleep,\n"
     "  seed = 5, timeout = 0.5, jitter = 0.2, tiers = {min = 0, max = 5, init = 0}}), spec)\n"
     "H.tick(S, l, 12)\n"
     "l:wait_initial(2)\n"
     "l:run(1.5)\n"
     "H.tick(S, l, 4)\n"
     "l:next_due()\n"
     "l:now()\n"
     "l:checked()\n"
     "local C = {'sleep1', 'ok2', 'yield2'}\n"
     "local l2 = H.track(S, up.new(C, {tier_by_latency = true, check = S.check, clock = S.clock,\n"
     "  sleep = S.sleep, seed = 6, timeout = 0.5}), {driver = 'step', sets = {C}})\n"
     "l2:wait_initial()\n"
     "H.tick(S, l2, 3)\n"},
    {"due",
     "-- due/report: results with errors and tiers, a job never reported (timed\n"
     "-- out by due), stale reports, due(now), healthcheck-method backends\n"
     "local S = ...\n"
     "local up = H.upstream\n"
     "local B = {'ok1', 'bad1', 'tier1', 'badtier1', 'late1', 'ok2'}\n"
     "local spec = {driver = 'due', jobs = false, sets = {B}}\n"
     "local l = H.track(S, up.new(B, {check = S.check, clock = S.clock, seed = 8, timeout = 0.5,\n"
     "  jitter = 0.3, tiers = {min = 0, max = 5, init = 1}}), spec)\n"
     "for _ = 1, 6 do\n"
     "  spec.jobs = l:due()\n"
     "  for _, j in ipairs(spec.jobs) do H.report(l, j) end\n"
     "  l:report(spec.jobs[1] or {list = l, slot = 0, gen = 1}, true)\n"
     "  l:next_due()\n"
     "  S.now = S.now + 0.3\n"
     "end\n"
     "spec.jobs = l:due(S.now)\n"
     "for _, j in ipairs(spec.jobs) do H.report(l, j) end\n"
     "local hb = {setmetatable({name = 'ok3'}, S.hc), setmetatable({name = 'bad3'}, S.hc)}\n"
     "local spec2 = {driver = 'due', jobs = false, sets = {hb}}\n"
     "local l2 = H.track(S, up.new(hb, {clock = S.clock, seed = 9, timeout = 0.5}), spec2)\n"
     "spec2.jobs = l2:due()\n"
     "for _, j in ipairs(spec2.jobs) do H.report(l2, j) end\n"},
    {"pick",
     "-- pick/up/down/set_weight/release/score/weight/inflight for every strategy,\n"
     "-- with slow start on a fake clock, panic and tiers\n"
     "local S = ...\n"
     "local up = H.upstream\n"
     "local B = {'ok1', 'ok2', 'ok3', 'ok4', 'ok5'}\n"
     "for _, strategy in ipairs(H.STRATEGIES) do\n"
     "  local spec = {strategy = strategy, sets = {B}}\n"
     "  local l = H.track(S, up.new(B, {strategy = strategy, slow_start = 1, clock = S.clock,\n"
     "    seed = 9, weights = {ok1 = 3, ok4 = 2}, panic = 0.3,\n"
     "    tiers = {min = 0, max = 2, init = 0}}), spec)\n"
     "  for i = 1, 10 do\n"
     "    local b = l:pick('key' .. i)\n"
     "    if i % 3 == 0 then l:down(b); l:down(b); l:down(b) end\n"
     "    if i % 4 == 0 then l:up('ok1'); l:up('ok2') end\n"
     "    l:release(b)\n"
     "    l:set_weight('ok3', i)\n"
     "    l:score('ok2')\n"
     "    l:weight('ok4')\n"
     "    l:inflight('ok5')\n"
     "    S.now = S.now + 0.15\n"
     "  end\n"
     "  for _ = 1, 4 do l:down('ok1') end\n"
     "  for _ = 1, 4 do l:up('ok1') end\n"
     "  l:pick('x')\n"
     "  l:pick('y')\n"
     "  l:set_weight('nope', 2)\n"
     "  l:up('nope')\n"
     "  l:release('nope')\n"
     "end\n"},
    {"shutdown",
     "-- shutdown with checks suspended (yield, sleep, past their timeout), the\n"
     "-- list's __close, a due-driven list shut down with jobs out\n"
     "local S = ...\n"
     "local up = H.upstream\n"
     "local B = {'yield1', 'sleep1', 'slow1', 'ok1'}\n"
     "local spec = {driver = 'step', sets = {B}}\n"
     "local l = H.track(S, up.new(B, {check = S.check, clock = S.clock, seed = 2, timeout = 0.5}), spec)\n"
     "H.tick(S, l)\n"
     "l:shutdown()\n"
     "l:step()\n"
     "l:pick()\n"
     "l:shutdown()\n"
     "do\n"
     "  local l2 <close> = H.track(S, up.new(B, {check = S.check, clock = S.clock, seed = 3,\n"
     "    timeout = 0.5}), {driver = 'step', sets = {B}})\n"
     "  H.tick(S, l2)\n"
     "end\n"
     "local C = {'ok1', 'bad1'}\n"
     "local spec3 = {driver = 'due', jobs = false, sets = {C}}\n"
     "local l3 = H.track(S, up.new(C, {check = S.check, clock = S.clock, seed = 4}), spec3)\n"
     "spec3.jobs = l3:due()\n"
     "l3:shutdown()\n"
     "for _, j in ipairs(spec3.jobs) do H.report(l3, j) end\n"},
    {"healthcheck",
     "-- backends checked by their healthcheck method (tables), one without\n"
     "local S = ...\n"
     "local up = H.upstream\n"
     "local function hb(name) return setmetatable({name = name}, S.hc) end\n"
     "local B = {hb('ok1'), hb('bad1'), hb('yield1'), hb('sleep1'), {name = 'passive1'}}\n"
     "local spec = {driver = 'step', strategy = 'random', sets = {B}, fresh = hb('ok9')}\n"
     "local l = H.track(S, up.new(B, {clock = S.clock, seed = 12, timeout = 0.5,\n"
     "  strategy = 'random'}), spec)\n"
     "H.tick(S, l, 4)\n"
     "H.reconcile(l, spec, {B[1], B[3], hb('ok2'), B[5]})\n"
     "H.tick(S, l, 4)\n"},
    {"gc",
     "-- a list dropped with checks suspended: __gc shuts it down\n"
     "local S = ...\n"
     "local up = H.upstream\n"
     "local function drop()\n"
     "  local l = up.new({'yield1', 'sleep1', 'ok1'}, {check = S.check, clock = S.clock,\n"
     "    seed = 1, timeout = 0.5})\n"
     "  H.tick(S, l)\n"
     "end\n"
     "drop()\n"
     "collectgarbage()\n"
     "collectgarbage()\n"},
    {"errors",
     "-- bad arguments and misuse raise their errors (or a memory error) and\n"
     "-- leave the list as it was\n"
     "local S = ...\n"
     "local up = H.upstream\n"
     "local try = H.try\n"
     "try(up.new, {'a', nil, 'b'})\n"
     "try(up.new, {'a'}, {intervall = 1})\n"
     "try(up.new, {'a'}, {interval = -1})\n"
     "try(up.new, {'a'}, {weights = {b = 2}})\n"
     "try(up.new, {'a'}, {tiers = {min = 3, max = 1, init = 2}})\n"
     "try(up.new, {'a'}, {strategy = 'fastest'})\n"
     "local C = {'ok1', 'bad1'}\n"
     "local spec = {driver = 'step', sets = {C}}\n"
     "local l = H.track(S, up.new(C, {check = S.check, clock = S.clock, seed = 1, timeout = 0.5}), spec)\n"
     "H.tick(S, l)\n"
     "try(l.due, l)\n"
     "try(l.reconcile, l, {'ok1', 0 / 0})\n"
     "try(l.reconcile, l, {'ok1'}, {ok1 = 0})\n"
     "try(l.set_weight, l, 'ok1', 1.5)\n"
     "try(l.pick, l, {})\n"
     "try(l.run, l, -1)\n"
     "try(up.sleep, 1)\n"
     "try(l.pick, 'not a list')\n"},
    {"status_into",
     "-- status(into) with into tables of every shape (more rows than members,\n"
     "-- rows that are not tables, stale fields, a __newindex that raises),\n"
     "-- status_of(b [, into]); a list whose garbage reconciles it from __gc\n"
     "local S = ...\n"
     "local up = H.upstream\n"
     "local B = {'ok1', 'bad1', 'raise1', 'tier1', 'ok1'}\n"
     "local spec = {driver = 'step', strategy = 'least_conn', sets = {B}}\n"
     "local l = H.track(S, up.new(B, {strategy = 'least_conn', check = S.check, clock = S.clock,\n"
     "  seed = 1, timeout = 0.5, unhealthy_interval = 0.2, tiers = {min = 0, max = 4, init = 1}}), spec)\n"
     "local into = {}\n"
     "l:status(into)\n"
     "H.tick(S, l, 3)\n"
     "l:pick()\n"
     "l:status(into)\n"
     "local raiser = setmetatable({}, {__newindex = function() error('no') end})\n"
     "local odd = {1, {last_error = 'stale', since = 'x', extra = 1}, 'x', raiser, false,\n"
     "  {}, {}, {}, {}, {}}\n"
     "local got = l:status(odd)\n"
     "if got ~= odd then error('status(into) did not return into', 0) end\n"
     "if #odd ~= #l then error('status(into): ' .. #odd .. ' rows for ' .. #l .. ' members', 0) end\n"
     "local fresh = l:status()\n"
     "for i = 1, #l do\n"
     "  if type(odd[i]) ~= 'table' or odd[i].backend ~= fresh[i].backend then\n"
     "    error('status(into): row ' .. i .. ' is not the member', 0)\n"
     "  end\n"
     "  if odd[i].last_error == 'stale' or odd[i].since == 'x' then\n"
     "    error('status(into): row ' .. i .. ' kept a stale field', 0)\n"
     "  end\n"
     "end\n"
     "if odd[4] ~= raiser then error('status(into) replaced a table row', 0) end\n"
     "local row = {}\n"
     "if l:status_of('bad1') == nil or l:status_of('bad1', row) ~= row then\n"
     "  error('status_of(bad1)', 0)\n"
     "end\n"
     "if row.backend ~= 'bad1' or type(row.last_error) ~= 'string' then error('status_of row', 0) end\n"
     "if l:status_of('nope') ~= nil or l:status_of('nope', {}) ~= nil then\n"
     "  error('status_of(nope) is not nil', 0)\n"
     "end\n"
     "l:status_of('ok1', {1, 2, 3, last_error = 'stale', latency = true})\n"
     "H.reconcile(l, spec, {'ok1', 'tier1'})\n"
     "l:status(odd)\n"
     "if #odd ~= #l then error('status(into) after a shrink: ' .. #odd .. ' rows for ' .. #l, 0) end\n"
     "-- a list whose finalizers reconcile it while status(into) allocates\n"
     "local C = {'ok2', 'bad2', 'yield1'}\n"
     "local l2 = H.track(S, up.new(C, {check = S.check, clock = S.clock, seed = 4, timeout = 0.5}),\n"
     "  {driver = 'step'})\n"
     "local mt = {__gc = function(o) if not S.quiet then l2:reconcile(o.to) end end}\n"
     "local function garbage(to) setmetatable({to = to}, mt) end\n"
     "garbage({'ok2', 'ok3'})\n"
     "garbage({'bad2', 'ok2', 'ok4', 'ok5'})\n"
     "garbage(C)\n"
     "local into2 = {{}, {}, 7}\n"
     "for _ = 1, 4 do\n"
     "  l2:status(into2)\n"
     "  l2:status_of('ok2', into2[1])\n"
     "  H.tick(S, l2)\n"
     "  collectgarbage('step')\n"
     "end\n"},
    {"metrics",
     "-- upstream.metrics over several lists: names and backends that need\n"
     "-- escaping, a table backend with __tostring, an empty list, a shut-down\n"
     "-- one, a backend whose __tostring reconciles its list; bad arguments\n"
     "local S = ...\n"
     "local up = H.upstream\n"
     "local A = {'ok1', 'bad1', 'w\"e\\\\i\\nrd1', 'tier1'}\n"
     "local l1 = H.track(S, up.new(A, {check = S.check, clock = S.clock, seed = 2, timeout = 0.5,\n"
     "  tiers = {min = 0, max = 3, init = 1}}), {driver = 'step', sets = {A}})\n"
     "local T = setmetatable({name = 'tbl1'}, {__tostring = function() return 'tb\"l\\n\\\\1' end})\n"
     "local D = {T, 'ok2', 'ok2'}\n"
     "local l2 = H.track(S, up.new(D, {strategy = 'least_conn', clock = S.clock}),\n"
     "  {strategy = 'least_conn', sets = {D}})\n"
     "local l3 = H.track(S, up.new({}), {sets = {{}}})\n"
     "local l4 = H.track(S, up.new({'ok3'}, {check = S.check, clock = S.clock, seed = 3}),\n"
     "  {driver = 'step', sets = {{'ok3'}}})\n"
     "local l5\n"
     "local R = setmetatable({name = 'ok5'}, {__tostring = function()\n"
     "  if not S.quiet then l5:reconcile({'ok6', 'ok7'}) end\n"
     "  return 'r'\n"
     "end})\n"
     "l5 = H.track(S, up.new({R, 'ok8'}, {clock = S.clock}), {})\n"
     "H.tick(S, l1, 3)\n"
     "H.tick(S, l4)\n"
     "l4:shutdown()\n"
     "l2:pick()\n"
     "local m = up.metrics({web = l1, ['a\"p\\ni'] = l2, empty = l3, down = l4, re = l5})\n"
     "if type(m) ~= 'string' then error('metrics returned ' .. type(m), 0) end\n"
     "for _, want in ipairs({'backend=\"w\\\\\"e\\\\\\\\i\\\\nrd1\"', 'list=\"a\\\\\"p\\\\ni\"',\n"
     "    'backend=\"tb\\\\\"l\\\\n\\\\\\\\1\"', '# TYPE '}) do\n"
     "  if not m:find(want, 1, true) then error('metrics: no ' .. want, 0) end\n"
     "end\n"
     "up.metrics({})\n"
     "up.metrics({web = l1, again = l1})\n"
     "H.try(up.metrics, 5)\n"
     "H.try(up.metrics, {l1})\n"
     "H.try(up.metrics, {x = {}})\n"},
    {"on_change",
     "-- on_change fired from up/down, step (failures, a timeout), due/report\n"
     "-- and reconcile (added healthy); callbacks that call back into the list:\n"
     "-- status, status_of, metrics, down, reconcile, shutdown; unhealthy_interval\n"
     "local S = ...\n"
     "local up = H.upstream\n"
     "local n, la = 0\n"
     "local B = {'ok1', 'bad1', 'ok2', 'raise1', 'slow1'}\n"
     "local spec = {driver = 'step', sets = {B}}\n"
     "la = H.track(S, up.new(B, {check = S.check, clock = S.clock, seed = 5, timeout = 0.5,\n"
     "  initial_score = 0, unhealthy_interval = 0.3,\n"
     "  on_change = function(b, healthy)\n"
     "    n = n + 1\n"
     "    if S.quiet then return end\n"
     "    la:status()\n"
     "    la:status_of(b)\n"
     "    up.metrics({a = la})\n"
     "    if healthy and n % 3 == 0 then la:down(b) end\n"
     "  end}), spec)\n"
     "H.tick(S, la, 6)\n"
     "la:down('ok1')\n"
     "la:up('ok1')\n"
     "la:down('ok2')\n"
     "la:down('ok2')\n"
     "la:up('ok2')\n"
     "H.reconcile(la, spec, {'ok1', 'bad1', 'ok2', 'raise1', 'slow1', 'ok3'})\n"
     "H.tick(S, la, 4)\n"
     "-- reconcile and shutdown from on_change\n"
     "local k, lb = 0\n"
     "lb = H.track(S, up.new({'bad2', 'ok4', 'bad3'}, {check = S.check, clock = S.clock, seed = 6,\n"
     "  timeout = 0.5, initial_score = 0, unhealthy_interval = 1e-3,\n"
     "  on_change = function()\n"
     "    if S.quiet or k >= 3 then return end\n"
     "    k = k + 1\n"
     "    if k == 1 then lb:reconcile({'bad2', 'ok4', 'ok5', 'bad4'})\n"
     "    elseif k == 2 then lb:status({})\n"
     "    else lb:shutdown() end\n"
     "  end}), {driver = 'step'})\n"
     "H.tick(S, lb, 8)\n"
     "-- due/report\n"
     "local C = {'ok6', 'bad5', 'badtier1'}\n"
     "local spec3 = {driver = 'due', jobs = false, sets = {C}}\n"
     "local lc\n"
     "lc = H.track(S, up.new(C, {check = S.check, clock = S.clock, seed = 7, initial_score = 0,\n"
     "  on_change = function(b) if not S.quiet then lc:status_of(b, {}) end end}), spec3)\n"
     "for _ = 1, 3 do\n"
     "  spec3.jobs = lc:due()\n"
     "  for _, j in ipairs(spec3.jobs) do H.report(lc, j) end\n"
     "  spec3.jobs = false\n"
     "  S.now = S.now + 1.1\n"
     "end\n"},
    {"http_check",
     "-- upstream.http_check/tcp_check option parsing: every option, defaults,\n"
     "-- bad options (clean errors naming the option), a list using one\n"
     "local S = ...\n"
     "local up = H.upstream\n"
     "local fs = {\n"
     "  up.http_check({path = '/health', expect = {200, 204}, host = 'example.org', method = 'HEAD',\n"
     "    headers = {['X-Test'] = '1', Accept = '*/*'}, body = '\"ok\"'}),\n"
     "  up.http_check(), up.http_check({}), up.http_check({expect = 503}),\n"
     "  up.tcp_check(), up.tcp_check({})}\n"
     "for i = 1, 6 do\n"
     "  if type(fs[i]) ~= 'function' then error('check ' .. i .. ' is not a function', 0) end\n"
     "end\n"
     "local function bad(want, f, ...)\n"
     "  local err = H.try(f, ...)\n"
     "  if type(err) ~= 'string' or not err:find(want, 1, true) then\n"
     "    error('expected an error with ' .. want .. ', got ' .. tostring(err), 0)\n"
     "  end\n"
     "end\n"
     "bad(\"'path'\", up.http_check, {path = 'health'})\n"
     "bad(\"'path'\", up.http_check, {path = '/a b'})\n"
     "bad(\"'method'\", up.http_check, {method = 'get'})\n"
     "bad(\"'host'\", up.http_check, {host = ''})\n"
     "bad(\"'expect'\", up.http_check, {expect = 99})\n"
     "bad(\"'expect'\", up.http_check, {expect = {200, '204'}})\n"
     "bad(\"'headers'\", up.http_check, {headers = 'x'})\n"
     "bad(\"'headers'\", up.http_check, {headers = {'x'}})\n"
     "bad(\"'headers'\", up.http_check, {headers = {Host = 'x'}})\n"
     "bad(\"'headers'\", up.http_check, {headers = {['X-A'] = 'a\\r\\nb'}})\n"
     "bad(\"'body'\", up.http_check, {body = '[a'})\n"
     "bad(\"'body'\", up.http_check, {body = 1})\n"
     "bad('unknown option', up.http_check, {pth = '/'})\n"
     "bad('unknown option', up.tcp_check, {port = 1})\n"
     "bad('bytes', up.http_check, {headers = {['X-Big'] = string.rep('a', 2000)}})\n"
     "bad(\"'unhealthy_interval'\", up.new, {'a'}, {unhealthy_interval = -1})\n"
     "bad(\"'on_change'\", up.new, {'a'}, {on_change = 1})\n"
     "H.track(S, up.new({'127.0.0.1:9', '[::1]:9'}, {check = fs[1], clock = S.clock, seed = 1}),\n"
     "  {sets = {{'127.0.0.1:9', '[::1]:9'}}})\n"},
};

#define NSCENARIOS (sizeof scenarios / sizeof scenarios[0])

/* ---- running one k --------------------------------------------------------- */

static const char *current_name = "(setup)";
static unsigned long current_k;

/* A crash or sanitizer report names the scenario and k it happened at. */
static void say_where(void) {
  char buf[160];
  int n = snprintf(buf, sizeof buf, "# died in scenario %s at k=%lu\n",
                   current_name, current_k);
  if (n > 0) (void)!write(2, buf, (size_t)n);
}

static void on_signal(int sig) {
  say_where();
  signal(sig, SIG_DFL);
  raise(sig);
}

/* yielded(co) -> true when co is suspended in a yield: a check coroutine
 * nobody resumed or closed. (coroutine.status cannot tell: it also says
 * "suspended" of a closed coroutine whose __close raised, which a memory
 * error may do.) */
static int l_yielded(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  lua_pushboolean(L, co != NULL && lua_status(co) == LUA_YIELD);
  return 1;
}

static void harness_error(lua_State *L, const char *what) {
  fprintf(stderr, "alloc_test: %s: %s\n", what, lua_tostring(L, -1));
  exit(2);
}

/* Runs scenario sc with the k-th allocation failing (k = 0: none). Returns
 * 0 when it passed, else 1 with a message in msg. *count gets the number of
 * growing requests the scenario made. */
static int run_one(const scenario *sc, unsigned long k, unsigned long *count,
                   char *msg, size_t len) {
  lua_State *L;
  int st, bad = 0, injected;
  A.armed = 0;
  A.count = 0;
  A.fail_at = k;
  L = lua_newstate(failing_alloc, NULL);
  if (L == NULL) {
    fprintf(stderr, "alloc_test: lua_newstate failed\n");
    exit(2);
  }
  luaL_openlibs(L);
  luaL_requiref(L, "upstream", luaopen_upstream, 0);
  lua_pop(L, 1);
  if (luaL_loadbuffer(L, PRELUDE, sizeof PRELUDE - 1, "=prelude") ||
      lua_pcall(L, 0, 1, 0))
    harness_error(L, "prelude");
  lua_setglobal(L, "H");
  lua_getglobal(L, "H");
  lua_getfield(L, -1, "state");
  lua_call(L, 0, 1); /* 2: S */
  lua_remove(L, 1);  /* 1: S */
  if (luaL_loadbuffer(L, sc->src, strlen(sc->src), sc->name))
    harness_error(L, sc->name);
  lua_pushvalue(L, 1);
  A.armed = 1;
  st = lua_pcall(L, 1, 0, 0);
  A.armed = 0;
  *count = A.count;
  injected = k > 0 && A.count >= k;
  if (st != LUA_OK) {
    const char *e = lua_tostring(L, -1);
    if (!(st == LUA_ERRMEM ||
          (st == LUA_ERRRUN && e && strcmp(e, "not enough memory") == 0))) {
      snprintf(msg, len, "raised (status %d) %s", st, e ? e : "(no message)");
      bad = 1;
    }
    lua_pop(L, 1);
  }
  if (!bad) {
    lua_getglobal(L, "H");
    lua_getfield(L, -1, "after");
    lua_pushvalue(L, 1);
    lua_pushboolean(L, injected);
    lua_pushcfunction(L, l_yielded);
    if (lua_pcall(L, 3, 0, 0)) {
      const char *e = lua_tostring(L, -1);
      snprintf(msg, len, "%s", e ? e : "(no message)");
      bad = 1;
    }
  }
  lua_close(L);
  if (A.live != 0) {
    snprintf(msg, len, "%lu bytes of the Lua state not freed by lua_close",
             (unsigned long)A.live);
    A.live = 0;
    bad = 1;
  }
  return bad;
}

/* ---- a scenario: every k ----------------------------------------------------- */

#define MAX_KINDS 8

typedef struct failures {
  unsigned long n;                /* failing k's */
  int kinds;                      /* distinct messages kept */
  unsigned long first[MAX_KINDS]; /* first k of each */
  unsigned long times[MAX_KINDS];
  char msg[MAX_KINDS][400];
} failures;

static void add_failure(failures *f, unsigned long k, const char *msg) {
  int i;
  f->n++;
  for (i = 0; i < f->kinds; i++)
    if (strcmp(f->msg[i], msg) == 0) {
      f->times[i]++;
      return;
    }
  if (f->kinds == MAX_KINDS) return;
  f->first[f->kinds] = k;
  f->times[f->kinds] = 1;
  snprintf(f->msg[f->kinds], sizeof f->msg[0], "%s", msg);
  f->kinds++;
}

/* Leaks and memory errors of the last run, beyond the Lua state's own
 * accounting: the process heap (ASan) or valgrind's counters. */
static size_t heap_before;
#if defined(ALLOC_VALGRIND)
static unsigned long vg_errors, vg_leaked;
#endif

static void memory_mark(void) {
  heap_before = HEAP_BYTES();
}

static int memory_check(char *msg, size_t len, int report) {
#if defined(__SANITIZE_ADDRESS__)
  size_t now = HEAP_BYTES();
  if (now > heap_before) {
    snprintf(msg, len, "%lu bytes leaked (LeakSanitizer's report on stderr)",
             (unsigned long)(now - heap_before));
    if (report) __lsan_do_recoverable_leak_check();
    return 1;
  }
#elif defined(ALLOC_VALGRIND)
  unsigned long errs, leaked, dubious, reachable, supp;
  (void)report;
  VALGRIND_DO_ADDED_LEAK_CHECK; /* first: a leak it finds counts as an error */
  VALGRIND_COUNT_LEAKS(leaked, dubious, reachable, supp);
  (void)dubious, (void)reachable, (void)supp;
  errs = VALGRIND_COUNT_ERRORS;
  if (errs > vg_errors || leaked > vg_leaked) {
    if (leaked > vg_leaked)
      snprintf(msg, len, "valgrind: %lu bytes definitely lost (its report on "
               "stderr)", leaked - vg_leaked);
    else
      snprintf(msg, len, "valgrind: %lu errors (its report on stderr)",
               errs - vg_errors);
    vg_errors = errs;
    vg_leaked = leaked;
    return 1;
  }
#else
  (void)msg, (void)len, (void)report;
#endif
  return 0;
}

static unsigned long env_ul(const char *name, unsigned long dflt) {
  const char *v = getenv(name);
  return v && *v ? strtoul(v, NULL, 10) : dflt;
}

int main(void) {
  unsigned long stride = env_ul("ALLOC_STRIDE", 1), only_k = env_ul("ALLOC_K", 0);
  const char *only = getenv("ALLOC_ONLY");
  size_t i;
  int t = 0, failed = 0;
  char msg[400];
  if (stride == 0) stride = 1;
  A.stack = env_ul("ALLOC_STACK", 0) != 0;
  A.once = env_ul("ALLOC_ONCE", 0) != 0;
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_set_death_callback(say_where);
#endif
  signal(SIGSEGV, on_signal);
  signal(SIGBUS, on_signal);
  signal(SIGABRT, on_signal);
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("# failing allocations: every k%s\n",
         stride > 1 ? " in a stride (ALLOC_STRIDE)" : "");
  for (i = 0; i < NSCENARIOS; i++) {
    const scenario *sc = &scenarios[i];
    unsigned long n, k, count, runs = 0;
    failures f;
    int leak_reported = 0;
    if (only && *only && strcmp(only, sc->name) != 0) continue;
    memset(&f, 0, sizeof f);
    t++;
    current_name = sc->name;
    current_k = 0;
    memory_mark();
    if (run_one(sc, 0, &n, msg, sizeof msg)) {
      printf("not ok %d - scenario %s: fails without a failing allocation: %s\n",
             t, sc->name, msg);
      failed = 1;
      continue;
    }
    if (memory_check(msg, sizeof msg, 1)) add_failure(&f, 0, msg);
    for (k = only_k ? only_k : stride > 1 ? 1 + i % stride : 1; k <= n;
         k += only_k ? n + 1 : stride) {
      current_k = k;
      runs++;
      memory_mark();
      if (run_one(sc, k, &count, msg, sizeof msg)) add_failure(&f, k, msg);
      if (memory_check(msg, sizeof msg, !leak_reported)) {
        leak_reported = 1;
        add_failure(&f, k, msg);
      }
    }
    if (f.n == 0) {
      printf("ok %d - scenario %s: %lu allocation points", t, sc->name, n);
      if (runs != n) printf(" (%lu run)", runs);
      printf("\n");
    } else {
      int j;
      failed = 1;
      printf("not ok %d - scenario %s: %lu allocation points", t, sc->name, n);
      if (runs != n) printf(" (%lu run)", runs);
      printf(", %lu fail; first at k=%lu: %s\n", f.n, f.first[0], f.msg[0]);
      for (j = 0; j < f.kinds; j++)
        printf("#   k=%lu (and %lu more k): %s\n", f.first[j], f.times[j] - 1,
               f.msg[j]);
    }
  }
  current_name = "(none: the leak check at exit)";
  current_k = 0;
  printf("1..%d\n", t);
  return failed;
}
