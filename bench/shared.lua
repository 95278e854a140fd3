-- Shared lists against private ones, in one process (issue 10): ns per
-- pick, up+down, and due()+report() of a check, interleaved rounds, the
-- best round counts. Ratios matter; absolute ns on a shared machine less.
--   lua5.4 bench/shared.lua [iterations]
package.cpath = "./?.so;" .. package.cpath
local upstream = require "upstream"

local N = tonumber(arg and arg[1]) or 1000000
local clock = os.clock
local ROUNDS = 5

local loops = {}
local function time(name, f, scale)
  loops[#loops + 1] = { name = name, f = f, scale = scale or 1, best = math.huge }
end

local function names(n)
  local out = {}
  for i = 1, n do out[i] = ("10.0.%d.%d:80"):format(i // 256, i % 256) end
  return out
end

local seq = 0
local function pair(n, strategy)
  seq = seq + 1
  local b = names(n)
  return upstream.new(b, { strategy = strategy }),
    upstream.new(b, { strategy = strategy, shared = "bench" .. seq }), b
end

for _, strategy in ipairs({ "round_robin", "weighted", "least_conn", "hash", "random" }) do
  local p, s = pair(16, strategy)
  local key = strategy == "hash" and "client-42" or nil
  time(strategy .. " pick private", function(n)
    for _ = 1, n do p:pick(key) end
  end)
  time(strategy .. " pick shared", function(n)
    for _ = 1, n do s:pick(key) end
  end)
end

do
  local p, s, b = pair(16)
  local x = b[3]
  time("up+down private", function(n)
    for _ = 1, n do p:down(x); p:up(x) end
  end, 0.5)
  time("up+down shared", function(n)
    for _ = 1, n do s:down(x); s:up(x) end
  end, 0.5)
end

-- due() + report() of one check per round: the clock moves an interval on
do
  local function checked(shared)
    local t = 0
    local opts = { interval = 1, timeout = 0.5, clock = function() return t end,
      check = function() return true end, shared = shared }
    local l = upstream.new({ "a" }, opts)
    return l, function(v) t = v end
  end
  local p, setp = checked(nil)
  seq = seq + 1
  local s, sets = checked("bench" .. seq)
  local function loop(l, set)
    local t = 0
    return function(n)
      for _ = 1, n do
        t = t + 1
        set(t)
        local jobs = l:due(t)
        l:report(jobs[1], true)
      end
    end
  end
  time("due+report private", loop(p, setp))
  time("due+report shared", loop(s, sets))
end

for _ = 1, ROUNDS do
  for _, e in ipairs(loops) do
    local n = e.name:find("due") and N // 10 or N
    local t0 = clock()
    e.f(n)
    local dt = (clock() - t0) / n
    if dt < e.best then e.best = dt end
  end
end

-- 4 threads (lua_States) picking at once: each from a private list of its
-- own, then all from one shared list; wall ns per pick per thread
local wall = upstream.new({ "x" })
local function threads(chunk)
  local best = math.huge
  for _ = 1, 3 do
    local t0 = wall:now()
    upstream._in_threads(4, chunk)
    local dt = (wall:now() - t0) / N * 1e9
    if dt < best then best = dt end
  end
  return best
end
seq = seq + 1
local tname = "bench" .. seq
upstream.new(names(16), { shared = tname })
local tp = threads(([[
  local up = require "upstream"
  local b = {}
  for i = 1, 16 do b[i] = ("10.0.%%d.%%d:80"):format(i // 256, i %% 256) end
  local l = up.new(b)
  for _ = 1, %d do l:pick() end
]]):format(N))
local ts = threads(([[
  local up = require "upstream"
  local l = up.attach(%q)
  for _ = 1, %d do l:pick() end
]]):format(tname, N))

print(("%-28s %10s %8s"):format("loop", "ns", "shared/private"))
for i, e in ipairs(loops) do
  local ns = e.best * 1e9 * e.scale
  e.ns = ns
  local ratio = ""
  if e.name:find("shared") then ratio = ("%.2fx"):format(ns / loops[i - 1].ns) end
  print(("%-28s %10.1f %8s"):format(e.name, ns, ratio))
end
print(("%-28s %10.1f"):format("4 threads pick private", tp))
print(("%-28s %10.1f %8s"):format("4 threads pick shared", ts, ("%.2fx"):format(ts / tp)))
