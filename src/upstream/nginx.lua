-- upstream.nginx - the driver: runs an upstream list's active checks from
-- an ngx timer per list and worker, and picks peers and takes passive
-- feedback in the balancer and log phases (ngx_lua / OpenResty). Backend
-- strings are parsed by upstream.nginx.addr; the shipped check functions
-- live in upstream.nginx.checks; this module re-exports both.
--
--   init_worker_by_lua_block:
--     local upstream = require "upstream"
--     local ngxu = require "upstream.nginx"
--     backends = upstream.new({ "127.0.0.1:8081", "127.0.0.1:8082" }, {
--       interval = 0.5, timeout = 0.2,
--       check = ngxu.http_check{ path = "/health", expect = 200 },
--     })
--     ngxu.start(backends)
--   balancer_by_lua_block:  ngxu.balance(backends)
--                           (a "hash" list: ngxu.balance(list, 1, key))
--   log_by_lua_block:       ngxu.log(backends)
--
-- Active checks: one ngx timer per list and per worker polls list:due() at
-- each check event (list:next_due()), or every `tick` seconds at the most;
-- each due job runs in its own ngx.thread (cosockets
-- work there) with its socket timeouts set to the time left to the job's
-- absolute deadline. A timer run lasts while checks are in flight (it stops
-- polling after 5 s, drains, and re-arms itself: a fresh timer, so no
-- request pool grows forever); a list never has more than one timer. It stops when the
-- worker exits.
--
-- Passive feedback: ngxu.log() downs the backend that served a request when
-- it failed (connect error, timeout, 5xx); a success raises the score only
-- for a list with no active check (list:checked() == 0), so that a backend
-- drained by failing its health endpoint stays drained. Every backend that
-- spells the peer's address ("010.0.0.1:80", "10.0.0.1:80") gets it.
--
-- Backends are "host:port" strings with an IP address host: "10.0.0.1:80",
-- "[::1]:8080" (the balancer does not resolve names). The driver keeps one
-- index per list (upstream.nginx.addr.index) and rebuilds it when the list
-- was reconciled: it holds what the list holds, whatever the churn.
--
-- API
--   ngxu.start(list [, { tick = 0.1, check = fn, grace = 0.05 }])
--       init_worker_by_lua (the list may come from init_by_lua). tick: the
--       longest wait between two polls of due(). check: overrides the list's
--       check function. Raises an error naming malformed backends.
--   ngxu.stop(list)              stops this worker's loop for the list
--   ngxu.balance(list [, tries [, key]])
--                                balancer_by_lua; tries: retries (default 1);
--                                key: a string for a "hash" list (nil: spread)
--   ngxu.log(list)               log_by_lua
--   ngxu.http_check{ path = "/", expect = 200 | {200, 204} | nil (2xx),
--                    host = "Host header", method = "GET", headers = {} }
--   ngxu.tcp_check{}             connect only
--   ngxu.time_left(job)          seconds left to a job's deadline
--   ngxu.parse_backend(b)        { host =, port =, addr = } or nil, err
-- A custom check is called as check(backend, job) in an ngx light thread
-- (cosockets work); it returns truthy when healthy (a number: the tier), or
-- nil, err [, tier]. It should bound its socket timeouts by
-- ngxu.time_left(job): past the deadline the list counts a timeout, and the
-- thread is killed at its next yield. A check that never yields cannot be
-- stopped (no preemption in ngx_lua; compiled code runs no hooks).
-- Each job carries the list's check function (list:due()); a backend with a
-- healthcheck method and no check function is checked as
-- backend:healthcheck(job).

local type, tostring, tonumber, pcall, error = type, tostring, tonumber, pcall, error
local setmetatable, getmetatable = setmetatable, getmetatable
local ipairs = ipairs
local huge = math.huge
local str_match, str_find = string.match, string.find
local concat = table.concat

-- Outside nginx (plain Lua, the specs) ngx is nil and the module still
-- loads: parse_backend and the check builders work, start() says it is not
-- running in nginx.
local ngx = ngx
local ngx_log, ngx_exit, ngx_get_phase, ngx_var
local ngx_timer_at, ngx_thread_spawn, ngx_thread_kill, ngx_worker_exiting, ngx_worker_pid
local ERR, WARN, NOTICE, DEBUG
if ngx then
  ngx_log, ngx_exit, ngx_get_phase, ngx_var = ngx.log, ngx.exit, ngx.get_phase, ngx.var
  ngx_timer_at, ngx_thread_spawn, ngx_thread_kill = ngx.timer.at, ngx.thread.spawn, ngx.thread.kill
  ngx_worker_exiting, ngx_worker_pid = ngx.worker.exiting, ngx.worker.pid
  ERR, WARN, NOTICE, DEBUG = ngx.ERR, ngx.WARN, ngx.NOTICE, ngx.DEBUG
end

local _M = { _VERSION = require("upstream")._VERSION }

-- A line in nginx's error log, prefixed with the module's name.
local function errlog(level, ...)
  if ngx_log then ngx_log(level, "upstream.nginx: ", ...) end
end

-- ---------------------------------------------------------------------------
-- backend strings (upstream.nginx.addr) and check functions
-- (upstream.nginx.checks), re-exported under their old names

local addr = require "upstream.nginx.addr"
local checks = require "upstream.nginx.checks"

local index = addr.index

_M.parse_backend = addr.parse_backend
_M.http_check = checks.http_check
_M.tcp_check = checks.tcp_check
_M.time_left = checks.time_left
_M.status = require("upstream.nginx.status").serve -- content_by_lua: metrics, JSON, HTML

-- ---------------------------------------------------------------------------
-- one record per list: its picker and the index of its backends

-- list -> { version =, parsed =, invalid =, by_addr =, told =,
--           plain =, keyed =, hosts =, ports =, slots =, passive =, top =,
--           nb =, rest =, logged =, n =, gens =, cur_b =, cur_t =, old_b =,
--           old_t = }.
-- parsed, invalid and by_addr are addr.index() of the list's slots at
-- `version`; told: the malformed backends balance() has logged. The index
-- is rebuilt when the list's slot table has a new version (every reconcile
-- bumps it), so the record holds at most what the list held at its last
-- rebuild, whatever the churn. The request path reads the record without a
-- call: under LuaJIT the pick returns the slot table's version, and a new
-- one takes the slow path, which rebuilds; elsewhere a backend it does not
-- find takes the slow path; the check loop rebuilds too, at each poll.
-- plain: a pick without a key is known to work (not "hash"); keyed: the
-- list needs a key, or was given one. hosts, ports: set_current_peer's
-- arguments by slot + 1 (false for a malformed backend); slots: the slot
-- table they were made from; passive: no active check (list:checked() ==
-- 0). top: backends a success left at the high score (see log()); nb:
-- how many usable backends the slots hold; rest: how many of them are not
-- in top (0: all at the top, and the balancer records nothing).
-- logged, n, gens, cur_b, cur_t, old_b, old_t: what the balancer picked per
-- request, for log() (see "what the balancer picked" below).
-- Nothing in a record refers to its list (the picks take the list as an
-- argument): LuaJIT and Lua 5.1 have no ephemerons, so a value of this
-- weak-keyed table that reached its key would keep the list forever.
local lists = setmetatable({}, { __mode = "k" })
-- the last list balance() or log() looked up, and its record (nil: none
-- yet): most requests of a location meet the same list in both phases, and
-- a compare costs less than a lookup in the weak table. It keeps that one
-- list alive until another list comes by.
local last_list, last_rec

-- pick_slot: upstream.ffi's pick returning the slot (a JIT-compiled call,
-- ~10x cheaper than list:pick() under LuaJIT), used by balance()'s fast
-- path; false elsewhere. Loaded at the first record.
local pick_slot

local function load_pick_slot()
  local ok, m = pcall(require, "upstream.ffi")
  pick_slot = ok and m._pick_slot or false
end

-- The list's record, its index rebuilt if the list was reconciled since.
-- Raises on what is not a list.
local function refresh(list)
  local slots, version = list:_slots()
  local rec = lists[list]
  if rec == nil then
    if pick_slot == nil then load_pick_slot() end
    rec = { version = false, plain = false, keyed = false,
            logged = false, n = 0, gens = 0, cur_b = {}, cur_t = {}, old_b = {}, old_t = {} }
    lists[list] = rec
  elseif rec.version == version then
    return rec
  end
  local ix = index(slots)
  local parsed = ix.parsed
  local hosts, ports, seen, nb = {}, {}, {}, 0
  for i, b in pairs(slots) do
    local p = parsed[b]
    hosts[i], ports[i] = p and p.host or false, p and p.port or false
    if p and not seen[b] then seen[b] = true; nb = nb + 1 end
  end
  rec.version, rec.parsed, rec.invalid, rec.by_addr, rec.told =
    version, parsed, ix.invalid, ix.by_addr, {}
  rec.hosts, rec.ports, rec.slots, rec.top, rec.nb, rec.rest = hosts, ports, slots, {}, nb, nb
  rec.passive = list:checked() == 0
  if not rec.passive then rec.logged = false end -- records are for passive lists
  return rec
end

-- ngxu._index(list): the list's record, rebuilt if stale (for the specs)
function _M._index(list)
  return refresh(list)
end

-- ---------------------------------------------------------------------------
-- the check loop: one re-arming timer per list and worker

-- list -> loop state. The state refers to its list (the timer needs it),
-- so a loop that stops takes its entry out (stopped()): without ephemerons
-- (LuaJIT, 5.1) the entry would keep the list forever. A running loop keeps
-- its list alive through the timer anyway.
local loops = setmetatable({}, { __mode = "k" })

local function stopped(st)
  st.stopped = true
  if loops[st.list] == st then loops[st.list] = nil end
end

-- The check to run: ngxu.start's override, else the list's own (the job
-- carries it), else the backend's healthcheck method (the Go interface).
local function run_check(st, job)
  local list = st.list
  local b = job.backend
  local fn = st.check or job.check
  local ok, res, err, tier
  if fn then
    ok, res, err, tier = pcall(fn, b, job)
  else
    ok, res, err, tier = pcall(b.healthcheck, b, job)
  end
  -- the tier (README "Tiers"): a number returned on success, or the third
  -- value of a failure (nil, err, tier); an error raised has none
  if not ok then
    res, err, tier = nil, res, nil
  elseif res then
    tier = res
  end
  if type(tier) ~= "number" then tier = nil end
  if not res and err == nil then err = "health check failed" end
  local was = list:score(b)
  local applied = list:report(job, res, err, tier)
  if applied then
    local now = list:score(b)
    if was and now then
      if was >= 0 and now < 0 then
        errlog(WARN, "backend ", tostring(b), " is now unhealthy: ", tostring(err))
      elseif was < 0 and now >= 0 then
        errlog(NOTICE, "backend ", tostring(b), " is healthy again")
      end
    end
  else
    errlog(DEBUG, "stale check result for ", tostring(b), " ignored")
  end
end

-- Runs one job in a light thread; never raises. Marks its record finished
-- and wakes the loop.
local function run_job(st, job, rec, sema)
  local ok, err = pcall(run_check, st, job)
  if not ok then errlog(ERR, "check of ", tostring(job.backend), ": ", tostring(err)) end
  rec.finished = true
  sema:post(1)
end

local semaphore

-- One run of a list's timer. Polls due() every tick and starts each due job
-- in its own light thread; while checks are in flight the run stays (so a
-- list never has more than one timer, pending or running), waking on each
-- completion and at each tick. After `life` seconds it stops polling, waits
-- for what is in flight, and returns; the caller re-arms the timer. A check
-- still running `grace` seconds past its deadline is killed (the list has
-- counted it as timed out by then).
local function run_loop(st)
  if not semaphore then semaphore = require "ngx.semaphore" end
  local list, tick_s, grace = st.list, st.tick, st.grace
  local sema = semaphore.new()
  local inflight, n = {}, 0
  local now = list:now()
  local poll_until = now + st.life
  local next_poll = now
  -- bounded: each pass either polls (at most life / tick + 1 times), sees a
  -- completion or a kill (at most one per started check), or waits to the
  -- next poll or deadline
  for _ = 1, 100000 do
    local polling = now < poll_until and not st.stopped and not ngx_worker_exiting()
    if polling and now >= next_poll then
      refresh(list) -- drops what a reconcile removed from the index
      local jobs = list:due()
      -- poll again at the next check event, or after tick at the latest
      local nd = list:next_due()
      next_poll = now + ((nd and nd < tick_s) and nd or tick_s)
      for i = 1, #jobs do
        local job = jobs[i]
        job.list = list
        if job.deadline - list:now() > 0 then -- else: let the list time it out
          local rec = { deadline = job.deadline, backend = job.backend }
          local th, err = ngx_thread_spawn(run_job, st, job, rec, sema)
          if th then
            rec.th = th
            n = n + 1
            inflight[n] = rec
          else
            errlog(ERR, "cannot start a check of ", tostring(job.backend), ": ", tostring(err))
            list:report(job, false, "cannot start the check: " .. tostring(err))
          end
        end
      end
    end
    -- forget finished checks; kill those far past their deadline
    now = list:now()
    local k, wake = 0, huge
    for i = 1, n do
      local rec = inflight[i]
      inflight[i] = nil
      if not rec.finished then
        if now > rec.deadline + grace then
          if ngx_thread_kill(rec.th) then
            errlog(WARN, "check of ", tostring(rec.backend), " ignored its deadline; killed")
          end
        else
          k = k + 1
          inflight[k] = rec
          if rec.deadline + grace < wake then wake = rec.deadline + grace end
        end
      end
    end
    n = k
    if n == 0 then return end -- nothing in flight: the re-armed timer polls next
    if polling and next_poll < wake then wake = next_poll end
    local left = wake - now
    if left > 0 then sema:wait(left < 0.001 and 0.001 or left) end
    now = list:now()
  end
end

local tick

local function arm(st, delay)
  local ok, err = ngx_timer_at(delay, tick, st)
  if ok then return true end
  if err ~= "process exiting" then
    errlog(ERR, "cannot arm the check timer: ", tostring(err))
  end
  return false
end

tick = function(premature, st)
  if premature or st.stopped or ngx_worker_exiting() then return stopped(st) end
  local ok, err = pcall(run_loop, st)
  if not ok then -- unexpected (e.g. the list is driven by step()): logged 1, 10, 100... times
    st.errors = st.errors + 1
    local e = st.errors
    if e == 1 or e == 10 or e == 100 or e % 1000 == 0 then
      errlog(ERR, "check loop (error ", e, "): ", tostring(err))
    end
  end
  if st.stopped or ngx_worker_exiting() then return stopped(st) end
  if not arm(st, st.tick) then
    errlog(ERR, "health checks of this list stopped in worker ", tostring(ngx_worker_pid()))
    stopped(st)
  end
end

-- ngxu.start(list [, { tick = 0.1, check = fn }])
-- Drives the list's active checks from this worker (call it in
-- init_worker_by_lua). Raises an error naming any malformed backend.
function _M.start(list, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("upstream.nginx.start: options must be a table", 2) end
  if not ngx or not ngx.timer then error("upstream.nginx.start: not running in nginx", 2) end
  local phase = ngx_get_phase()
  if phase == "init" then
    error("upstream.nginx.start: call it in init_worker_by_lua (timers do not run in "
      .. "init_by_lua); the list itself may be created in init_by_lua", 2)
  end
  local ok, st = pcall(list.status, list)
  if not ok then error("upstream.nginx.start: not an upstream list: " .. tostring(st), 2) end
  local rec = refresh(list)
  local bad, seen = {}, {}
  for _, s in ipairs(st) do -- in pick order, each malformed backend once
    local err = rec.invalid[s.backend]
    if err and not seen[s.backend] then
      seen[s.backend] = true
      bad[#bad + 1] = err
    end
  end
  if #bad > 0 then error("upstream.nginx.start: " .. concat(bad, "; "), 2) end
  local t = opts.tick or 0.1
  if type(t) ~= "number" or not (t >= 0.001 and t <= 60) then
    error("upstream.nginx.start: tick must be a number of seconds in [0.001, 60]", 2)
  end
  local check = opts.check
  if check ~= nil and type(check) ~= "function" and not (getmetatable(check) or {}).__call then
    error("upstream.nginx.start: check must be a function", 2)
  end
  if list:checked() == 0 then return true end -- a passive list: nothing to drive
  local loop = loops[list]
  if loop and not loop.stopped then return true end -- already driven by this worker
  loop = { list = list, check = check, tick = t, grace = opts.grace or 0.05, stopped = false,
           errors = 0, life = 5 }
  loops[list] = loop
  if not arm(loop, 0) then
    stopped(loop)
    return nil, "cannot arm the check timer"
  end
  return true
end

-- ngxu.stop(list): stops this worker's check loop of the list (the list
-- itself keeps working; list:shutdown() stops its checks for good).
function _M.stop(list)
  local loop = loops[list]
  if loop then loop.stopped = true end
end

-- ---------------------------------------------------------------------------
-- balancer and log phases
--
-- The request path (balance's fast path, log) creates no closure, reads no
-- ngx.var and calls no classic Lua C function in the common case, so that
-- LuaJIT compiles it (spec/e2e/run.sh checks the traces with jit.v): a
-- closure would end the function with UCLO, which is NYI; ngx.var's getter
-- aborts its trace and is blacklisted for the whole worker; a C function
-- ends the trace (a stitch).

local set_current_peer, set_more_tries, get_last_failure
-- get_request: resty.core's, or false: then there is no record of picks,
-- and log() reads $upstream_status and $upstream_addr. cast, uintptr: a
-- request's address as a number, tonumber(cast(uintptr, r)). C: ffi.C
-- when it has ngx_lua's request functions (the ones behind ngx.status and
-- ngx.req.start_time, called with the request at hand), else false.
local get_request, cast, uintptr, C

local function load_request_api()
  local balancer = require "ngx.balancer"
  set_current_peer = balancer.set_current_peer
  set_more_tries = balancer.set_more_tries
  get_last_failure = balancer.get_last_failure
  local ok, base = pcall(require, "resty.core.base")
  get_request = ok and type(base) == "table" and base.get_request or false
  local okf, ffi = pcall(require, "ffi")
  C = false
  if okf and type(ffi) == "table" and ffi.cast then
    cast, uintptr = ffi.cast, ffi.typeof("uintptr_t")
    if get_request and pcall(function()
      return ffi.C.ngx_http_lua_ffi_get_resp_status and ffi.C.ngx_http_lua_ffi_req_start_time
    end) then
      C = ffi.C
    end
  else
    cast = function(_, r) return r end -- a fake request (the specs)
  end
  if not C and not (ngx.req and ngx.req.start_time) then get_request = false end
end

-- The request's start time and response status. Neither ends in a tail
-- call of a builtin (return C.f(r)): LuaJIT aborts a root trace that starts
-- in such a function, as these do when called from interpreted code.
local function req_start(r)
  local t
  if C then t = C.ngx_http_lua_ffi_req_start_time(r) else t = ngx.req.start_time() end
  return t
end

local function resp_status(r)
  local st
  if C then st = C.ngx_http_lua_ffi_get_resp_status(r) else st = ngx.status end
  return st
end

-- What the balancer picked, per request, for log(), which then needs no
-- ngx.var: the backend keyed by the request's address (get_request()'s
-- pointer as a number), and the request's start time, which tells the
-- request from an earlier one at the same address that never reached log()
-- (an error_page to a location without log_by_lua, a subrequest). false:
-- balance() ended the request with 502, its failure already counted. A
-- retry overwrites the record, so log() sees the last try. Two generations
-- of GEN picks: after GEN picks the current tables become the old ones and
-- the old are dropped, so a record log() never takes is gone after 2 GEN
-- picks of the list; log() takes its record from either, and a request
-- older than that finds none and reads ngx.var instead for a failure (a
-- success without a record is not fed back: it could only raise a score
-- the next one raises). While every usable backend of the list is at the
-- high score (rec.rest == 0) nothing is recorded: a success needs nothing
-- then, and a failure, rare in that state, reads $upstream_addr as on a
-- checked list; the records are dropped when that state begins, so none
-- made before can speak for a request made in it. Recording starts
-- with a passive list's first log() in the worker (rec.logged), so a list
-- whose config has no log_by_lua records nothing. A checked list records
-- nothing either: its log() acts only on a 5xx, rare enough to read
-- $upstream_addr for.
local GEN = 16384

-- rec.n counts down the picks to the next forgetting of rec.top (every
-- TOP picks: a down() from outside the driver is undone by the successes of
-- the next TOP picks at the latest); every GEN / TOP of those, a new
-- generation (rec.gens counts them down).
local TOP = 1024

-- Counts one pick of a logged list: every TOP picks top is forgotten,
-- every GEN picks a new generation of records.
local function count_pick(rec)
  local n = rec.n - 1
  if n <= 0 then
    n = TOP
    rec.top, rec.rest = {}, rec.nb
    local g = rec.gens - 1
    if g <= 0 then
      g = GEN / TOP
      rec.old_b, rec.old_t, rec.cur_b, rec.cur_t = rec.cur_b, rec.cur_t, {}, {}
    end
    rec.gens = g
  end
  rec.n = n
end

-- Records backend b (or false) for request r.
local function store(rec, r, b)
  local k = tonumber(cast(uintptr, r))
  rec.cur_b[k], rec.cur_t[k] = b, req_start(r)
end

-- A pick in the slow path: counted, and recorded unless all are at the top.
local function remember(rec, r, b)
  count_pick(rec)
  if rec.rest > 0 then store(rec, r, b) end
end

-- Backend x is at the high score. The last one to get there ends recording
-- and drops the records (see above).
local function at_top(rec, x)
  local top = rec.top
  if top[x] or not rec.parsed[x] then return end
  top[x] = true
  local rest = rec.rest - 1
  rec.rest = rest
  if rest == 0 then rec.cur_b, rec.cur_t, rec.old_b, rec.old_t = {}, {}, {}, {} end
end

-- Backend x is no longer at the high score (a down()).
local function off_top(rec, x)
  local top = rec.top
  if top[x] then
    top[x] = nil
    rec.rest = rec.rest + 1
  end
end

-- The record of request r (a backend, or false), or nil; take: and remove it.
local function recorded(rec, r, take)
  local k = tonumber(cast(uintptr, r))
  local b, t = rec.cur_b[k]
  if b ~= nil then
    if take then rec.cur_b[k] = nil end
    t = rec.cur_t[k]
  else
    b = rec.old_b[k]
    if b == nil then return nil end
    if take then rec.old_b[k] = nil end
    t = rec.old_t[k]
  end
  if t ~= req_start(r) then return nil end -- an earlier request's
  return b
end

-- Ends the request with 502. ngx.exit(502) in balancer_by_lua gives a 500
-- on a stock (non-OpenResty) nginx: the lua module turns any status into
-- NGX_ERROR there. NGX_BUSY (-3) makes nginx answer 502 ("no live
-- upstreams") on every build, with no further try.
local NGX_BUSY = -3
local NO_UPSTREAMS = "no upstreams available"

-- Requests that balance() ended with NGX_BUSY after a failed try, when
-- there is no record of picks: nginx then repeats the failed peer in
-- $upstream_addr, and log() must not count that failure twice. Keyed by
-- request address; rare, and capped.
local busy, nbusy = {}, 0

local function request_key()
  local r = get_request and get_request()
  return r and tonumber(cast(uintptr, r))
end

local function fail_502(why, retried, rec)
  errlog(ERR, why)
  local r = rec and rec.logged and rec.rest > 0 and get_request and get_request()
  if r then
    remember(rec, r, false)
  elseif retried then
    if nbusy >= 1000 then busy, nbusy = {}, 0 end
    local k = request_key()
    if k then busy[k] = true; nbusy = nbusy + 1 end
  end
  return ngx_exit(NGX_BUSY)
end

-- The last "ip:port" in $upstream_addr ("a, b", "a : b", "a : " in a retry).
local function last_addr(s)
  return s and str_match(s, "([^%s,]+)[%s,:]*$")
end

-- down() every backend in bs (the spellings of one address)
local function down_all(list, rec, bs)
  for i = 1, #bs do
    list:down(bs[i])
    off_top(rec, bs[i])
  end
end

-- Sets the peer to backend b; nil, err when b cannot be used.
local function use(rec, b)
  local p = rec.parsed[b]
  if not p then return nil, rec.invalid[b] or ("bad backend " .. tostring(b)) end
  local ok, err = set_current_peer(p.host, p.port)
  if not ok then return nil, "set_current_peer(" .. tostring(b) .. "): " .. tostring(err) end
  local r = rec.logged and get_request and get_request()
  if r then remember(rec, r, b) end
  return true
end

-- A pick in the slow path. k: the key (a string or a number), or nil. A
-- list that needs a key and got none ("hash", a missing header) is picked
-- by a counter: spread without affinity rather than an error.
local nokey = 0
local function slow_pick(list, rec, k)
  if k ~= nil then return list:pick(k) end
  if not rec.keyed then
    local ok, b, err = pcall(list.pick, list)
    if ok then
      rec.plain = true
      return b, err
    end
    if not str_find(tostring(b), "needs a key", 1, true) then return nil, tostring(b) end
    rec.keyed = true
  end
  nokey = nokey % 1000000007 + 1
  return list:pick(nokey)
end

-- Slow path: a list's first pick, a reconciled list, a key that is not a
-- string, retries, unusable backends, none healthy. state: nil on the first
-- try, else get_last_failure()'s. have: b, err is the pick the fast path
-- made.
local function balance_slow(list, key, state, have, b, err)
  local retried = state ~= nil
  if list == nil then return fail_502("ngxu.balance: the list is nil (was it created?)", retried) end
  local ok, rec = pcall(refresh, list)
  if not ok then return fail_502("ngxu.balance: not an upstream list: " .. tostring(rec), retried) end
  if key ~= nil then
    local kt = type(key)
    if kt ~= "string" and kt ~= "number" then
      return fail_502("ngxu.balance: the key must be a string or a number, got a " .. kt, retried, rec)
    end
    if not rec.plain then rec.keyed = true end
  end
  -- a retry. "failed": connect error, timeout, 5xx (as proxy_next_upstream
  -- says); "next": 403/404 retried elsewhere, not the backend's fault.
  -- fails: every backend spelling the address of the peer that was tried
  -- (from the record of picks, else from $upstream_addr).
  local fails
  if retried then
    local a
    local r = rec.logged and get_request and get_request()
    if r then
      local prev = recorded(rec, r, false)
      local p = prev and rec.parsed[prev]
      a = p and p.addr
    end
    if a == nil then a = last_addr(ngx_var.upstream_addr) end
    fails = rec.by_addr[a]
    if fails ~= nil and state == "failed" then down_all(list, rec, fails) end
  end
  local tried = {}
  if fails ~= nil then
    for i = 1, #fails do tried[fails[i]] = true end
  end
  local n = #list
  local fallback
  local k = key
  for i = 1, n + 1 do
    if not have then b, err = slow_pick(list, rec, k) end
    have = false
    if b == nil then
      return fail_502("no healthy backend: " .. tostring(err), retried, rec)
    end
    if not tried[b] then
      tried[b] = true
      local uerr
      ok, uerr = use(rec, b)
      if ok then return end
      if not rec.told[b] then
        errlog(ERR, uerr)
        if rec.invalid[b] then rec.told[b] = true end
      end
      list:down(b)
    elseif fallback == nil and fails ~= nil then
      -- avoid retrying the peer that just failed, unless it is the only one
      for j = 1, #fails do
        if fails[j] == b then fallback = b end
      end
    end
    -- a keyed pick gives the same backend again: the next tries rehash the
    -- key with the try's number, as nginx's `hash` does
    if key ~= nil then k = i .. ":" .. key end
  end
  if fallback ~= nil and use(rec, fallback) then return end
  return fail_502("no usable backend (tried " .. n .. ")", retried, rec)
end

-- ngxu.balance(list [, tries [, key]]) in balancer_by_lua: picks a backend
-- and makes it the current peer; allows `tries` (default 1) retries. key:
-- a string (or number) the config computes, for a "hash" list (ignored by
-- the other strategies): the same key gets the same backend while it is
-- healthy. tries may be a table { tries =, key = }. On a retry, the peer
-- that failed is marked down and another one is picked. No healthy
-- backend: the request ends with 502, and the reason is logged.
function _M.balance(list, tries, key)
  if not set_current_peer then load_request_api() end
  local state = get_last_failure()
  if state == nil then -- the first try: the fast path
    if tries == nil then
      set_more_tries(1)
    else
      if type(tries) == "table" then
        if key == nil then key = tries.key end
        tries = tries.tries or 1
      end
      if tries > 0 then set_more_tries(tries) end
    end
    local rec = last_rec
    if list ~= last_list then
      rec = lists[list]
      if rec ~= nil then last_list, last_rec = list, rec end
    end
    if rec ~= nil and (key == nil and rec.plain or type(key) == "string") then
      if pick_slot then -- LuaJIT: the slot, and set_current_peer's arguments by slot
        local s, version = pick_slot(list, key)
        if s >= 0 then
          if version == rec.version then
            local i = s + 1
            local host = rec.hosts[i]
            if host and set_current_peer(host, rec.ports[i]) then
              if rec.logged then
                count_pick(rec)
                if rec.rest > 0 then
                  local r = get_request and get_request()
                  if r then store(rec, r, rec.slots[i]) end
                end
              end
              return
            end
            return balance_slow(list, key, nil, true, rec.slots[i])
          end
          return balance_slow(list, key, nil, true, (list:_slots())[s + 1]) -- reconciled
        end
        if s == -1 then return balance_slow(list, key, nil, true, nil, NO_UPSTREAMS) end
        return balance_slow(list, key, nil, false)
      end
      local b, err = list:pick(key)
      if b ~= nil then
        local p = rec.parsed[b]
        if p and set_current_peer(p.host, p.port) then
          if rec.logged then
            local r = get_request and get_request()
            if r then remember(rec, r, b) end
          end
          return
        end
      end
      return balance_slow(list, key, nil, true, b, err)
    end
    return balance_slow(list, key, nil, false)
  end
  if key == nil and type(tries) == "table" then key = tries.key end
  return balance_slow(list, key, state, false)
end

-- Feedback from a request to backend b and every backend spelling its
-- address. up: a success; list:up() is skipped for backends a success
-- already left at the high score (rec.top), so that a healthy passive list
-- costs no C call a request.
local function feed(list, rec, b, up)
  local p = rec.parsed[b]
  local bs = p and rec.by_addr[p.addr]
  if bs == nil then return end -- reconciled away since
  if not up then return down_all(list, rec, bs) end
  for i = 1, #bs do
    local x = bs[i]
    local was = list:score(x)
    list:up(x)
    if list:score(x) == was then at_top(rec, x) end
  end
end

-- log() without a record of the request's pick: the last try's status and
-- address from $upstream_status and $upstream_addr.
local function log_by_var(list, rec)
  local us = ngx_var.upstream_status
  if us == nil then return end
  -- the last try's status: "502, 200" -> 200; "-" (no answer) -> nil
  local status = tonumber(str_match(us, "(%d+)%s*$"))
  if status == nil then return end
  local up
  if status >= 500 then
    up = false
  elseif rec.passive then
    up = true
  else
    return -- a success on a checked list: only its checks raise the score
  end
  if nbusy > 0 then
    local k = request_key()
    if k and busy[k] then busy[k] = nil; nbusy = nbusy - 1; return end
  end
  -- every backend spelling that address ("010.0.0.1:80", "10.0.0.1:80")
  local bs = rec.by_addr[last_addr(ngx_var.upstream_addr)]
  if bs == nil then return end
  if up then
    for i = 1, #bs do list:up(bs[i]) end
  else
    down_all(list, rec, bs)
  end
end

-- ngxu.log(list) in log_by_lua: passive feedback from the last try.
-- Connect error, timeout or 5xx: down(). Success: up(), only for a list
-- without active checks. The backend is the one the balancer recorded for
-- the request, the result ngx.status (5xx: a failure; an error_page that
-- turns a failure into a success hides it); without a record (no
-- resty.core, the list's first logged request; a failure older than two
-- generations of picks, or while every backend was at the high score and
-- nothing was recorded) the last try's $upstream_status and $upstream_addr.
function _M.log(list)
  local rec = last_rec
  if list ~= last_list then
    rec = lists[list]
    if rec ~= nil then last_list, last_rec = list, rec end
  end
  if rec == nil then return end -- never balanced in this worker
  if not get_last_failure then load_request_api() end
  local r = get_request and get_request()
  if not rec.passive then
    -- a checked list: only a 5xx counts, which is rare; its backend comes
    -- from $upstream_addr (the balancer records nothing for such a list)
    if (r and resp_status(r) or ngx.status) < 500 then return end
    return log_by_var(list, rec)
  end
  if r then
    if rec.logged then
      local st = resp_status(r)
      -- every backend at the top: a success needs nothing (and there is no
      -- record, see "what the balancer picked")
      if st < 500 and rec.rest == 0 then return end
      -- the record is taken whatever it says; its start time is compared
      -- only before acting on it (a success on a backend at the top
      -- already needs nothing)
      local k = tonumber(cast(uintptr, r))
      local bs, ts = rec.cur_b, rec.cur_t
      local b = bs[k]
      if b == nil then
        bs, ts = rec.old_b, rec.old_t
        b = bs[k]
      end
      if b ~= nil then
        bs[k] = nil
        if b == false then return end -- ended by balance(), counted there
        if st >= 500 then
          if ts[k] == req_start(r) then return feed(list, rec, b, false) end
        elseif rec.top[b] then
          return
        elseif ts[k] == req_start(r) then
          return feed(list, rec, b, true)
        end
        -- an earlier request's record: this one has none
      end
      if st < 500 then return end -- a success without a record: the next one raises
    else
      rec.logged = true -- record picks from now on
    end
  end
  return log_by_var(list, rec)
end

return _M
