-- Demo: a list with live HTTP health checks over real sockets.
--   make demo        (or: lua5.4 examples/demo.lua, from the checkout)
-- Three HTTP backends on loopback (spec/support/servers.py, python3), a
-- list checking them with upstream.http_check, and ~100 picks a second.
-- Once a second it prints each backend's state, score, last error and
-- share of the picks, while backend B fails (503) and recovers and
-- backend C turns slow (its checks time out) and recovers; it ends with
-- the distribution of picks, stops the servers and leaves no process.
package.path = "./?.lua;./src/?.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath
local upstream = require "upstream"
local servers = require "spec.support.servers"

-- what happens, by second: { at, backend, mode, what }
local SCRIPT = {
  { 2, "B", "status", "B starts answering 503" },
  { 4, "C", "slow", "C turns slow (0.3 s, over the 0.2 s timeout)" },
  { 6, "B", "ok", "B recovers" },
  { 8, "C", "ok", "C recovers" },
}
local SECONDS = 10
local NAMES = { "A", "B", "C" }

local function main(srv)
  local name_of, backends = {}, {}
  for _, n in ipairs(NAMES) do
    local addr = srv.addr(n)
    backends[#backends + 1] = addr
    name_of[addr] = n
  end
  local list = upstream.new(backends, {
    interval = 0.25, unhealthy_interval = 0.5, timeout = 0.2, jitter = 0.1,
    check = upstream.http_check({ path = "/health", expect = 200 }),
  })
  print(("backends: %s (A, B, C)"):format(table.concat(backends, ", ")))
  print(("first round of checks done: %s"):format(tostring(list:wait_initial(2))))
  print("interval 0.25 s, unhealthy_interval 0.5 s, timeout 0.2 s; ~100 picks a second")
  print()
  print(("%-4s  %-26s  %-26s  %-26s  %s"):format("t(s)", "A", "B", "C", "picks A/B/C"))
  local total, step = { A = 0, B = 0, C = 0, none = 0 }, 1
  local t0 = list:now()
  for sec = 1, SECONDS do
    local picks = { A = 0, B = 0, C = 0, none = 0 }
    local events = {}
    while step <= #SCRIPT and SCRIPT[step][1] < sec do
      local e = SCRIPT[step]
      srv.mode(e[2], e[3])
      events[#events + 1] = e[4]
      step = step + 1
    end
    -- one second: a pick every 10 ms, the checks running in between
    local stop = t0 + sec
    for _ = 1, 1000 do -- bounded; ends at the second's end
      if list:now() >= stop then break end
      list:run(math.min(0.01, math.max(0, stop - list:now())))
      local b = list:pick()
      local n = b and name_of[b] or "none"
      picks[n] = picks[n] + 1
      total[n] = total[n] + 1
    end
    local cells = {}
    for _, s in ipairs(list:status()) do
      local cell = ("%-4s %+2g"):format(s.healthy and "up" or "DOWN", s.score)
      if s.last_error then -- short: "status 503", "timed out"
        local e = s.last_error:gsub(" %(expected.*", ""):gsub("^health check ", "")
        cell = cell .. " " .. e:sub(1, 17)
      end
      cells[name_of[s.backend]] = cell
    end
    print(("%-4d  %-26s  %-26s  %-26s  %d/%d/%d%s%s"):format(sec, cells.A, cells.B, cells.C,
      picks.A, picks.B, picks.C, picks.none > 0 and (" none " .. picks.none) or "",
      #events > 0 and ("   <- " .. table.concat(events, "; ")) or ""))
  end
  list:shutdown()
  local sum = total.A + total.B + total.C + total.none
  print()
  print(("picks over %d s: %d"):format(SECONDS, sum))
  for _, n in ipairs({ "A", "B", "C", "none" }) do
    if n ~= "none" or total.none > 0 then
      print(("  %-4s %5d  %5.1f%%  %s"):format(n, total[n], 100 * total[n] / sum,
        ("#"):rep(math.floor(50 * total[n] / sum + 0.5))))
    end
  end
end

local srv = servers.start({ A = "ok", B = "ok", C = "ok" })
local ok, err = pcall(main, srv)
srv.stop() -- the servers exit when their stdin closes; stop waits for them
if not ok then error(err, 0) end
