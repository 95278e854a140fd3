-- upstream.nginx - drives an upstream list from nginx (ngx_lua / OpenResty).
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
-- drained by failing its health endpoint stays drained.
--
-- Backends are "host:port" strings with an IP address host: "10.0.0.1:80",
-- "[::1]:8080" (the balancer does not resolve names). Each string is parsed
-- once and the result cached.
--
-- API
--   ngxu.start(list [, { tick = 0.1, check = fn, grace = 0.05 }])
--       init_worker_by_lua (the list may come from init_by_lua). tick: the
--       longest wait between two polls of due(). check: overrides the list's
--       check function. Raises an error naming malformed backends.
--   ngxu.stop(list)              stops this worker's loop for the list
--   ngxu.balance(list [, tries]) balancer_by_lua; tries: retries (default 1)
--   ngxu.log(list)               log_by_lua
--   ngxu.http_check{ path = "/", expect = 200 | {200, 204} | nil (2xx),
--                    host = "Host header", method = "GET", headers = {} }
--   ngxu.tcp_check{}             connect only
--   ngxu.time_left(job)          seconds left to a job's deadline
--   ngxu.parse_backend(b)        { host =, port =, addr = } or nil, err
-- A custom check is called as check(backend, job) in an ngx light thread
-- (cosockets work); it returns truthy when healthy, or nil, err. It should
-- bound its socket timeouts by ngxu.time_left(job): past the deadline the
-- list counts a timeout, and a check still running then is killed.
-- Each job carries the list's check function (list:due()); a backend with a
-- healthcheck method and no check function is checked as
-- backend:healthcheck(job).


local ngx = ngx
local type, tostring, tonumber, pcall, error = type, tostring, tonumber, pcall, error
local setmetatable, getmetatable = setmetatable, getmetatable
local ipairs, pairs = ipairs, pairs
local floor, huge = math.floor, math.huge
local str_find, str_match, str_sub, str_format = string.find, string.match, string.sub, string.format
local concat = table.concat

local M = { _VERSION = require("upstream")._VERSION }

local ERR, WARN, NOTICE, DEBUG
if ngx then ERR, WARN, NOTICE, DEBUG = ngx.ERR, ngx.WARN, ngx.NOTICE, ngx.DEBUG end

local function log(level, ...)
  if ngx then ngx.log(level, "upstream.nginx: ", ...) end
end

-- ---------------------------------------------------------------------------
-- backend strings: parsed once, cached

local parsed = {}   -- backend -> { host =, port =, addr = } (valid ones)
local invalid = {}  -- backend -> error message (invalid ones)
-- "ip:port" as nginx prints it in $upstream_addr -> backend. Per-request
-- state through ngx.ctx costs ~2 us a request (measured: ~7% of a proxied
-- request), so the driver reads the tried peers from $upstream_addr instead.
local by_addr = {}

local function valid_port(p)
  local n = tonumber(p)
  return n and n >= 1 and n <= 65535 and floor(n) == n and n or nil
end

-- IPv4 text -> 4 numbers, or nil
local function parse4(s)
  local a, b, c, d = str_match(s, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if a > 255 or b > 255 or c > 255 or d > 255 then return nil end
  return a, b, c, d
end

-- IPv6 text -> 8 words, or nil
local function parse6(s)
  local words, tail = {}, {}
  local head, rest = s, nil
  local dbl = str_find(s, "::", 1, true)
  if dbl then
    head, rest = str_sub(s, 1, dbl - 1), str_sub(s, dbl + 2)
    if str_find(rest, "::", 1, true) then return nil end
  end
  -- hex groups; an embedded IPv4 only as the very last group
  local function groups(str, out, final)
    if str == "" then return true end
    local list = {}
    for g in (str .. ":"):gmatch("([^:]*):") do list[#list + 1] = g end
    for k, g in ipairs(list) do
      if str_find(g, ".", 1, true) then
        if not final or k ~= #list then return false end
        local a, b, c, d = parse4(g)
        if not a then return false end
        out[#out + 1] = a * 256 + b
        out[#out + 1] = c * 256 + d
      elseif str_find(g, "^%x%x?%x?%x?$") then
        out[#out + 1] = tonumber(g, 16)
      else
        return false
      end
    end
    return true
  end
  if not groups(head, words, not dbl) then return nil end
  if rest and not groups(rest, tail, true) then return nil end
  if dbl then
    local fill = 8 - #words - #tail
    if fill < 1 then return nil end
    for _ = 1, fill do words[#words + 1] = 0 end
    for i = 1, #tail do words[#words + 1] = tail[i] end
  end
  if #words ~= 8 then return nil end
  return words
end

-- 8 words -> text as nginx's ngx_inet6_ntop() prints it
local function ntop6(w)
  local zero, last, max, n = -1, -1, 1, 0
  for i = 1, 8 do
    if w[i] ~= 0 then
      if max < n then zero, max = last, n end
      n = 0
    else
      if n == 0 then last = i end
      n = n + 1
    end
  end
  if max < n then zero, max = last, n end
  local out, limit = {}, 8
  if zero == 1 then
    if (max == 5 and w[6] == 0xffff) or max == 6 or (max == 7 and w[8] ~= 0 and w[8] ~= 1) then
      limit = 6
    end
    out[#out + 1] = ":"
  end
  local i = 1
  while i <= limit do
    if i == zero then
      out[#out + 1] = ":"
      i = i + max
    else
      out[#out + 1] = str_format("%x", w[i])
      if i < 8 then out[#out + 1] = ":" end
      i = i + 1
    end
  end
  if limit == 6 then
    out[#out + 1] = str_format("%d.%d.%d.%d", floor(w[7] / 256), w[7] % 256,
      floor(w[8] / 256), w[8] % 256)
  end
  return concat(out)
end
M._ntop6, M._parse6 = ntop6, parse6

local function parse_backend(b)
  if type(b) ~= "string" then
    return nil, str_format("bad backend %s: must be a \"host:port\" string, got a %s",
      tostring(b), type(b))
  end
  local host, port, text
  local v6, p6 = str_match(b, "^%[([^%]]*)%]:(%d+)$")
  if v6 then
    local w = parse6(v6)
    if not w then return nil, str_format("bad backend %q: [%s] is not an IPv6 address", b, v6) end
    text = "[" .. ntop6(w) .. "]"
    host, port = text, p6
  else
    local h, p4 = str_match(b, "^([^:]+):(%d+)$")
    if not h then
      return nil, str_format("bad backend %q: expected \"ipv4:port\" or \"[ipv6]:port\"", b)
    end
    local x1, x2, x3, x4 = parse4(h)
    if not x1 then
      if str_find(h, "^[%d%.]+$") then
        return nil, str_format("bad backend %q: %s is not an IPv4 address", b, h)
      end
      return nil, str_format("bad backend %q: the host must be an IPv4 address "
        .. "or a bracketed IPv6 address (the balancer does not resolve names)", b)
    end
    text = x1 .. "." .. x2 .. "." .. x3 .. "." .. x4
    host, port = text, p4
  end
  local pn = valid_port(port)
  if not pn then
    return nil, str_format("bad backend %q: port %s is not in 1..65535", b, port)
  end
  return { host = host, port = pn, addr = text .. ":" .. pn }
end

-- Parsed backend or nil, err; each string is parsed once per worker.
local function backend_addr(b)
  local p = parsed[b]
  if p then return p end
  local e = b ~= nil and invalid[b]
  if e then return nil, e end
  local err
  p, err = parse_backend(b)
  if p then
    parsed[b] = p
    if by_addr[p.addr] == nil then by_addr[p.addr] = b end
  elseif b ~= nil and b == b then
    invalid[b] = err
  end
  return p, err
end
M.parse_backend = backend_addr

-- ---------------------------------------------------------------------------
-- check helpers

-- Seconds left to the job's deadline on the list's clock.
local function time_left(job)
  return job.deadline - job.list:now()
end
M.time_left = time_left

-- Milliseconds left (>= 1), or nil when the deadline has passed.
local function ms_left(job)
  local ms = floor(time_left(job) * 1000)
  if ms < 1 then return nil end
  return ms
end

local function connect(backend, job)
  local p, err = backend_addr(backend)
  if not p then return nil, err end
  local ms = ms_left(job)
  if not ms then return nil, "timeout" end
  local sock = ngx.socket.tcp()
  sock:settimeouts(ms, ms, ms)
  local ok
  ok, err = sock:connect(p.host, p.port)
  if not ok then return nil, "connect: " .. tostring(err) end
  return sock
end

-- ngxu.tcp_check{}: healthy when a TCP connection opens before the deadline.
function M.tcp_check(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("upstream.nginx.tcp_check: options must be a table", 2)
  end
  return function(backend, job)
    local sock, err = connect(backend, job)
    if not sock then return nil, err end
    sock:close()
    return true
  end
end

-- ngxu.http_check{ path = "/health", expect = 200, host = nil, method = "GET",
--                  headers = {} }
-- A plain HTTP/1.1 request (Connection: close); healthy when the status is
-- expect (a number or a list of numbers; default: any 2xx).
function M.http_check(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("upstream.nginx.http_check: options must be a table", 2)
  end
  local path = opts.path or "/"
  if type(path) ~= "string" or str_sub(path, 1, 1) ~= "/" or str_find(path, "[%s%c]") then
    error("upstream.nginx.http_check: path must be a string starting with '/' "
      .. "without spaces, got " .. tostring(path), 2)
  end
  local method = opts.method or "GET"
  if type(method) ~= "string" or not str_find(method, "^%u+$") then
    error("upstream.nginx.http_check: bad method " .. tostring(method), 2)
  end
  local expect = {}
  local e = opts.expect
  if e == nil then
    for s = 200, 299 do expect[s] = true end
  elseif type(e) == "number" then
    expect[e] = true
  elseif type(e) == "table" then
    for _, s in ipairs(e) do
      if type(s) ~= "number" then error("upstream.nginx.http_check: expect must hold numbers", 2) end
      expect[s] = true
    end
  else
    error("upstream.nginx.http_check: expect must be a status or a list of statuses", 2)
  end
  local extra = {}
  for k, v in pairs(opts.headers or {}) do
    if str_find(k .. tostring(v), "[\r\n]") then
      error("upstream.nginx.http_check: bad header " .. k, 2)
    end
    extra[#extra + 1] = k .. ": " .. tostring(v) .. "\r\n"
  end
  extra = concat(extra)
  local host_header = opts.host
  local requests = {} -- backend -> request bytes

  return function(backend, job)
    local sock, err = connect(backend, job)
    if not sock then return nil, err end
    local req = requests[backend]
    if not req then
      req = method .. " " .. path .. " HTTP/1.1\r\nHost: " .. (host_header or backend)
        .. "\r\nUser-Agent: upstream.nginx\r\nConnection: close\r\n" .. extra .. "\r\n"
      requests[backend] = req
    end
    local ms = ms_left(job)
    if not ms then sock:close(); return nil, "timeout" end
    sock:settimeouts(ms, ms, ms)
    local ok
    ok, err = sock:send(req)
    if not ok then sock:close(); return nil, "send: " .. tostring(err) end
    ms = ms_left(job)
    if not ms then sock:close(); return nil, "timeout" end
    sock:settimeouts(ms, ms, ms)
    local line
    line, err = sock:receive("*l")
    sock:close()
    if not line then return nil, "receive: " .. tostring(err) end
    local status = tonumber(str_match(line, "^HTTP/%d%.%d (%d%d%d)"))
    if not status then return nil, "not an HTTP response: " .. str_sub(line, 1, 60) end
    if not expect[status] then return nil, "status " .. status end
    return true
  end
end

-- ---------------------------------------------------------------------------
-- the check loop: one re-arming timer per list and worker

local loops = setmetatable({}, { __mode = "k" }) -- list -> loop state

-- The check to run: ngxu.start's override, else the list's own (the job
-- carries it), else the backend's healthcheck method (the Go interface).
local function run_check(st, job)
  local list = st.list
  local b = job.backend
  local fn = st.check or job.check
  local ok, res, err
  if fn then
    ok, res, err = pcall(fn, b, job)
  else
    ok, res, err = pcall(b.healthcheck, b, job)
  end
  if not ok then res, err = nil, res end
  if not res and err == nil then err = "health check failed" end
  local was = list:score(b)
  local applied = list:report(job, res, err)
  if applied then
    local now = list:score(b)
    if was and now then
      if was >= 0 and now < 0 then
        log(WARN, "backend ", tostring(b), " is now unhealthy: ", tostring(err))
      elseif was < 0 and now >= 0 then
        log(NOTICE, "backend ", tostring(b), " is healthy again")
      end
    end
  else
    log(DEBUG, "stale check result for ", tostring(b), " ignored")
  end
end

-- Runs one job in a light thread; never raises. Marks its record finished
-- and wakes the loop.
local function run_job(st, job, rec, sema)
  local ok, err = pcall(run_check, st, job)
  if not ok then log(ERR, "check of ", tostring(job.backend), ": ", tostring(err)) end
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
    local polling = now < poll_until and not st.stopped and not ngx.worker.exiting()
    if polling and now >= next_poll then
      local jobs = list:due()
      -- poll again at the next check event, or after tick at the latest
      local nd = list:next_due()
      next_poll = now + ((nd and nd < tick_s) and nd or tick_s)
      for i = 1, #jobs do
        local job = jobs[i]
        job.list = list
        if job.deadline - list:now() > 0 then -- else: let the list time it out
          local rec = { deadline = job.deadline, backend = job.backend }
          local th, err = ngx.thread.spawn(run_job, st, job, rec, sema)
          if th then
            rec.th = th
            n = n + 1
            inflight[n] = rec
          else
            log(ERR, "cannot start a check of ", tostring(job.backend), ": ", tostring(err))
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
          if ngx.thread.kill(rec.th) then
            log(WARN, "check of ", tostring(rec.backend), " ignored its deadline; killed")
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
  local ok, err = ngx.timer.at(delay, tick, st)
  if ok then return true end
  if err ~= "process exiting" then
    log(ERR, "cannot arm the check timer: ", tostring(err))
  end
  return false
end

tick = function(premature, st)
  if premature or st.stopped or ngx.worker.exiting() then
    st.stopped = true
    return
  end
  local ok, err = pcall(run_loop, st)
  if not ok then -- unexpected (e.g. the list is driven by step()): logged 1, 10, 100... times
    st.errors = st.errors + 1
    local e = st.errors
    if e == 1 or e == 10 or e == 100 or e % 1000 == 0 then
      log(ERR, "check loop (error ", e, "): ", tostring(err))
    end
  end
  if st.stopped or ngx.worker.exiting() then return end
  if not arm(st, st.tick) then
    log(ERR, "health checks of this list stopped in worker ", tostring(ngx.worker.pid()))
    st.stopped = true
  end
end

-- ngxu.start(list [, { tick = 0.1, check = fn }])
-- Drives the list's active checks from this worker (call it in
-- init_worker_by_lua). Raises an error naming any malformed backend.
function M.start(list, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("upstream.nginx.start: options must be a table", 2) end
  if not ngx or not ngx.timer then error("upstream.nginx.start: not running in nginx", 2) end
  local phase = ngx.get_phase()
  if phase == "init" then
    error("upstream.nginx.start: call it in init_worker_by_lua (timers do not run in "
      .. "init_by_lua); the list itself may be created in init_by_lua", 2)
  end
  local ok, st = pcall(list.status, list)
  if not ok then error("upstream.nginx.start: not an upstream list: " .. tostring(st), 2) end
  local bad = {}
  for _, s in ipairs(st) do
    local _, err = backend_addr(s.backend)
    if err then bad[#bad + 1] = err end
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
    loop.stopped = true
    return nil, "cannot arm the check timer"
  end
  return true
end

-- ngxu.stop(list): stops this worker's check loop of the list (the list
-- itself keeps working; list:shutdown() stops its checks for good).
function M.stop(list)
  local loop = loops[list]
  if loop then loop.stopped = true end
end

-- ---------------------------------------------------------------------------
-- balancer and log phases

local balancer
local set_current_peer, set_more_tries, get_last_failure

local function load_balancer()
  balancer = require "ngx.balancer"
  set_current_peer = balancer.set_current_peer
  set_more_tries = balancer.set_more_tries
  get_last_failure = balancer.get_last_failure
end

-- Ends the request with 502. ngx.exit(502) in balancer_by_lua gives a 500
-- on a stock (non-OpenResty) nginx: the lua module turns any status into
-- NGX_ERROR there. NGX_BUSY (-3) makes nginx answer 502 ("no live
-- upstreams") on every build, with no further try.
local NGX_BUSY = -3

-- Requests that balance() ended with NGX_BUSY after a failed try: nginx then
-- repeats the failed peer in $upstream_addr, and log() must not count that
-- failure twice. Keyed by request address; rare, and capped.
local busy, nbusy = {}, 0
local get_request, ffi

local function request_key()
  if not get_request then
    get_request = require("resty.core.base").get_request
    ffi = require "ffi"
  end
  local r = get_request()
  return r and tonumber(ffi.cast("uintptr_t", r))
end

local function fail_502(why, retried)
  log(ERR, why)
  if retried then
    if nbusy >= 1000 then busy, nbusy = {}, 0 end
    local k = request_key()
    if k then busy[k] = true; nbusy = nbusy + 1 end
  end
  return ngx.exit(NGX_BUSY)
end

-- The last "ip:port" in $upstream_addr ("a, b", "a : b", "a : " in a retry).
local function last_addr(s)
  return s and str_match(s, "([^%s,]+)[%s,:]*$")
end

-- Sets the peer to backend b; nil, err when b cannot be used.
local function use(b)
  local p, err = parsed[b]
  if not p then
    p, err = backend_addr(b)
    if not p then return nil, err end
  end
  local ok
  ok, err = set_current_peer(p.host, p.port)
  if not ok then return nil, "set_current_peer(" .. tostring(b) .. "): " .. tostring(err) end
  return true
end

local told = {} -- malformed backends already logged by balance()

-- Picks through upstream.ffi (a JIT-compiled call, ~10x cheaper than
-- list:pick() under LuaJIT), one picker per list.
local pickers = setmetatable({}, { __mode = "k" })
local uffi

local function pick(list)
  local p = pickers[list]
  if not p then
    if uffi == nil then
      local ok, m = pcall(require, "upstream.ffi")
      uffi = ok and m or false
    end
    p = uffi and uffi.picker(list) or function() return list:pick() end
    pickers[list] = p
  end
  return p()
end

-- Slow path: retries, unusable backends, none healthy.
local function balance_slow(list, failed, b, err, retried)
  local n = #list
  local tried = {}
  if failed ~= nil then tried[failed] = true end
  local fallback
  for _ = 1, n + 1 do
    if b == nil then
      return fail_502("no healthy backend: " .. tostring(err), retried)
    end
    if failed ~= nil and b == failed and fallback == nil then
      fallback = b -- avoid retrying the peer that just failed, unless it is the only one
    elseif not tried[b] then
      tried[b] = true
      local ok, uerr = use(b)
      if ok then return end
      if not invalid[b] or not told[b] then
        log(ERR, uerr)
        if invalid[b] then told[b] = true end
      end
      list:down(b)
    end
    b, err = pick(list)
  end
  if fallback ~= nil and use(fallback) then return end
  return fail_502("no usable backend (tried " .. n .. ")", retried)
end

-- ngxu.balance(list [, tries]) in balancer_by_lua: picks a backend and makes
-- it the current peer; allows `tries` (default 1) retries. On a retry, the
-- peer that failed is marked down and another one is picked. No healthy
-- backend: the request ends with 502, and the reason is logged.
function M.balance(list, tries)
  if not set_current_peer then load_balancer() end
  local state = get_last_failure()
  if state == nil then -- the first try: the fast path
    if tries == nil then
      set_more_tries(1)
    else
      if type(tries) == "table" then tries = tries.tries or 1 end
      if tries > 0 then set_more_tries(tries) end
    end
    if list == nil then return fail_502("ngxu.balance: the list is nil (was it created?)") end
    local b, err = pick(list)
    if b ~= nil then
      local p = parsed[b]
      if p and set_current_peer(p.host, p.port) then return end
    end
    return balance_slow(list, nil, b, err, false)
  end
  -- a retry. "failed": connect error, timeout, 5xx (as proxy_next_upstream
  -- says); "next": 403/404 retried elsewhere, not the backend's fault.
  if list == nil then return fail_502("ngxu.balance: the list is nil (was it created?)") end
  local failed = by_addr[last_addr(ngx.var.upstream_addr)]
  if failed ~= nil and state == "failed" then list:down(failed) end
  local b, err = pick(list)
  return balance_slow(list, failed, b, err, true)
end

-- Whether a list is passive (no active check), cached per list and
-- recomputed every 1024 log() calls (list:checked() is a C call; reconcile can
-- change the answer).
local passive = setmetatable({}, { __mode = "k" })
local log_calls = 0

local function is_passive(list)
  local p = passive[list]
  if p == nil then
    p = list:checked() == 0
    passive[list] = p
  end
  return p
end

-- ngxu.log(list) in log_by_lua: passive feedback from the last try.
-- Connect error, timeout or 5xx: down(). Success: up(), only for a list
-- without active checks. The fast path for a checked list is one look at
-- the response status: below 500, the last try succeeded (unless an
-- error_page turned a failure into a success: that failure is not counted).
function M.log(list)
  log_calls = log_calls + 1
  if log_calls >= 1024 then
    log_calls = 0
    passive = setmetatable({}, { __mode = "k" })
  end
  if ngx.status < 500 and not is_passive(list) then return end
  local us = ngx.var.upstream_status
  if us == nil then return end
  -- the last try's status: "502, 200" -> 200; "-" (no answer) -> nil
  local status = tonumber(str_match(us, "(%d+)%s*$"))
  if status == nil then return end
  local up
  if status >= 500 then
    up = false
  elseif is_passive(list) then
    up = true
  else
    return -- a success on a checked list: only its checks raise the score
  end
  if nbusy > 0 then
    local k = request_key()
    if k and busy[k] then busy[k] = nil; nbusy = nbusy - 1; return end
  end
  local b = by_addr[last_addr(ngx.var.upstream_addr)]
  if b == nil then return end
  if up then list:up(b) else list:down(b) end
end

return M
