-- What bench/shared.lua (Lua 5.4) and bench/shared_ffi.lua (LuaJIT, also
-- inside nginx) share: the loops registered by name, a private and a shared
-- list built alike, the due()+report() pair, the interleaved rounds (the
-- best round counts) and the table of ns with the shared/private ratios.
-- Loaded with require "shared_rounds": ./bench/?.lua from the repository
-- root, $ROOT/lib/?.lua in bench/shared_ffi_nginx.sh (copied there).
local R = {}
R.__index = R

-- R.new(upstream, prefix): an empty set of loops; shared lists are named
-- prefix1, prefix2, ... in the order they are made
function R.new(upstream, prefix)
  return setmetatable({ upstream = upstream, prefix = prefix, seq = 0, loops = {} }, R)
end

-- a fresh shared name, one per shared list
function R:shared_name()
  self.seq = self.seq + 1
  return self.prefix .. self.seq
end

-- b:time(name, f, scale): f(n) runs the loop n times; scale, what one of
-- its iterations counts for (0.5 for two calls per iteration)
function R:time(name, f, scale)
  self.loops[#self.loops + 1] = { name = name, f = f, scale = scale or 1, best = math.huge }
end

-- n backend names, 10.0.x.y:80
function R.names(n)
  local out = {}
  for i = 1, n do out[i] = ("10.0.%d.%d:80"):format(math.floor(i / 256), i % 256) end
  return out
end

-- a private and a shared list of n backends with the same options, and the
-- backend names
function R:pair(n, opts)
  local b = R.names(n)
  local po, so = {}, { shared = self:shared_name() }
  for k, v in pairs(opts or {}) do po[k], so[k] = v, v end
  return self.upstream.new(b, po), self.upstream.new(b, so), b
end

-- due() + report() of one check per iteration, the clock moved an interval
-- on: "due+report private" and "due+report shared"
function R:due_report()
  local upstream = self.upstream
  local function checked(shared)
    local t = 0
    local opts = { interval = 1, timeout = 0.5, clock = function() return t end,
      check = function() return true end, shared = shared }
    local l = upstream.new({ "a" }, opts)
    return l, function(v) t = v end
  end
  local p, setp = checked(nil)
  local s, sets = checked(self:shared_name())
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
  self:time("due+report private", loop(p, setp))
  self:time("due+report shared", loop(s, sets))
end

-- b:run(N, rounds): every loop N times a round (the due loops N/10), each
-- loop's best round kept
function R:run(N, rounds)
  local clock = os.clock
  for _ = 1, rounds do
    for _, e in ipairs(self.loops) do
      local n = e.name:find("due") and math.floor(N / 10) or N
      local t0 = clock()
      e.f(n)
      local dt = (clock() - t0) / n
      if dt < e.best then e.best = dt end
    end
  end
end

-- b:report(print, width): one row a loop, ns per iteration, and a shared
-- loop's ratio to the private one registered just before it
function R:report(print, width)
  local row = "%-" .. width .. "s %10.1f %8s"
  print(("%-" .. width .. "s %10s %8s"):format("loop", "ns", "shared/private"))
  for i, e in ipairs(self.loops) do
    local ns = e.best * 1e9 * e.scale
    e.ns = ns
    local ratio = ""
    if e.name:find("shared") then ratio = ("%.2fx"):format(ns / self.loops[i - 1].ns) end
    print(row:format(e.name, ns, ratio))
  end
end

return R
