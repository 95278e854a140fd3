-- What the built-in checks cost the process that runs them: CPU time
-- (os.clock: this process's user + system time, the servers' excluded)
-- over wall time (the list's clock) of list:run(), against loopback
-- servers (spec/support/servers.py).
--   lua5.4 bench/checks.lua [seconds]     (default 10 s per case)
--   UPSTREAM_SO_DIR=build/luajit luajit bench/checks.lua
-- Cases:
--   idle       100 backends, http_check every 5 s: the scheduler sleeps in
--              poll() between rounds (issue 11: < 1% of a core)
--   idle-1s    the same at the default interval, 1 s: 100 checks a second
--   waiting    100 backends whose checks all wait on a server that accepts
--              and never replies (timeout 5 s): 100 fds in poll()
--   busy       200 backends, http_check every 0.2 s: ~1000 checks a second
--              (issue 11: < 10% of a core)
package.path = "./?.lua;./src/?.lua;" .. package.path
-- UPSTREAM_SO_DIR=build/luajit for another runtime's build
package.cpath = (os.getenv("UPSTREAM_SO_DIR") or ".") .. "/?.so;" .. package.cpath
local upstream = require "upstream"
local servers = require "spec.support.servers"

local secs = tonumber(arg[1]) or 10

-- this process's user and system CPU seconds (Linux: /proc/self/stat, in
-- clock ticks of 1/100 s), or nil
local function user_sys()
  local f = io.open("/proc/self/stat")
  if not f then return nil end
  local line = f:read("*a")
  f:close()
  local u, s = line:match("^%d+ %b() %S+" .. (" %S+"):rep(10) .. " (%d+) (%d+)")
  if not u then return nil end
  return tonumber(u) / 100, tonumber(s) / 100
end

local function measure(name, n, mode, opts)
  local modes = {}
  for i = 1, n do modes["s" .. i] = mode end
  local srv = servers.start(modes)
  local backends = {}
  for i = 1, n do backends[i] = srv.addr("s" .. i) end
  opts.check = upstream.http_check({})
  local list = upstream.new(backends, opts)
  -- the first round (connects, a burst) is not what is measured
  list:run(math.min(1, opts.interval))
  local function counts()
    local c, f = 0, 0
    for _, s in ipairs(list:status()) do c, f = c + s.checks, f + s.failures end
    return c, f
  end
  local c0 = counts()
  local u0, s0 = user_sys()
  local cpu0, wall0 = os.clock(), list:now()
  list:run(secs)
  local cpu, wall = os.clock() - cpu0, list:now() - wall0
  local u1, s1 = user_sys()
  local c1, f1 = counts()
  list:shutdown()
  srv.stop()
  local split = u0 and u1 and ("  (user %.2f%%, system %.2f%%)"):format(
    100 * (u1 - u0) / wall, 100 * (s1 - s0) / wall) or ""
  print(("%-8s %4d backends  %7.1f checks/s  failures %-5d  cpu %6.3f s / wall %6.3f s = %5.2f%% of a core%s"):format(
    name, n, (c1 - c0) / wall, f1, cpu, wall, 100 * cpu / wall, split))
end

print(rawget(_G, "jit") and jit.version or _VERSION, ("%g s per case"):format(secs))
measure("idle", 100, "ok", { interval = 5, timeout = 1, jitter = 0.5 })
measure("idle-1s", 100, "ok", { interval = 1, timeout = 1, jitter = 0.5 })
measure("waiting", 100, "hang", { interval = 10, timeout = 5 * secs })
measure("busy", 200, "ok", { interval = 0.2, timeout = 0.2, jitter = 0.2 })
