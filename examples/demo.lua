-- Demo: a list with live health checks. One backend fails for a while and
-- recovers, another turns slow (its checks time out), and every half
-- second the demo prints the picks and each backend's score.
--   make demo        (or: lua5.4 examples/demo.lua)
package.cpath = "./?.so;" .. package.cpath
local upstream = require "upstream"

local t0
local schedule = { -- what each simulated backend does, by time since start
  ["10.0.0.1:80"] = function() return "ok" end,
  ["10.0.0.2:80"] = function(t) return (t >= 1 and t < 3) and "refused" or "ok" end,
  ["10.0.0.3:80"] = function(t) return (t >= 2.5 and t < 4) and "slow" or "ok" end,
}

local list
list = upstream.new({ "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80" }, {
  interval = 0.2, timeout = 0.05, jitter = 0.1,
  check = function(backend)
    local what = schedule[backend](list:now() - t0)
    if what == "refused" then return nil, "connection refused" end
    if what == "slow" then upstream.sleep(1) end -- outlives the timeout
    return true
  end,
})
t0 = list:now()

print(("first round of checks done: %s"):format(tostring(list:wait_initial(1))))
print(("%-5s  %-40s  %s"):format("t(s)", "10 picks (1/2/3 = backend .1/.2/.3)", "scores .1 .2 .3, last error"))
for tick = 1, 10 do
  list:run(0.5)
  local picks = {}
  for i = 1, 10 do
    local b = list:pick()
    picks[i] = b and b:match("%.(%d+):") or "-"
  end
  local scores, errs = {}, {}
  for _, s in ipairs(list:status()) do
    scores[#scores + 1] = ("%+g"):format(s.score)
    if s.last_error then errs[#errs + 1] = s.backend .. ": " .. s.last_error end
  end
  print(("%-5.1f  %-40s  %s  %s"):format(tick * 0.5, table.concat(picks, " "),
    table.concat(scores, " "), table.concat(errs, "; ")))
end
list:shutdown()
