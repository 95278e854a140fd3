-- Shared lists against private ones under LuaJIT (issue 10: "under LuaJIT
-- in nginx through the FFI, at most 1.5x private"), in one process: what
-- upstream.nginx calls per request, outside nginx.
--   pick ffi        upstream.ffi's picker (a JIT-compiled C call)
--   pick slot       upstream.ffi._pick_slot: what ngxu.balance calls
--   pick classic    list:pick(), the Lua C function
--   report up       ngxu.log's passive success on a backend below the top:
--                   score(b), up(b), score(b) (upstream.nginx's feed)
--   report down     ngxu.log's failure: down(b)
--   up+down         one down(b) + one up(b), per call
--   due+report      one active check's due() + report() (the holder's)
-- Interleaved rounds, the best round counts; ratios matter, absolute ns on
-- a shared machine less.
--   luajit bench/shared_ffi.lua [iterations]   (from the repository root,
--   build/luajit/upstream.so built: make build/luajit/upstream.so)
-- or inside nginx (content_by_lua, nginx's LuaJIT): bash bench/shared_ffi_nginx.sh
-- (which sets BENCH_N and BENCH_OUT and the package paths).
-- luacheck: read globals BENCH_N BENCH_OUT ngx
if not BENCH_OUT then
  package.cpath = "./build/luajit/?.so;" .. package.cpath
  package.path = "./src/?.lua;" .. package.path
end
local print = BENCH_OUT or print
local upstream = require "upstream"
local uffi = require "upstream.ffi"
assert(jit, "run under LuaJIT")

local N = tonumber(BENCH_N or (arg and arg[1])) or 2000000
local clock = os.clock
local ROUNDS = 7

local loops = {}
local function time(name, f, scale)
  loops[#loops + 1] = { name = name, f = f, scale = scale or 1, best = math.huge }
end

local function names(n)
  local out = {}
  for i = 1, n do out[i] = ("10.0.%d.%d:80"):format(math.floor(i / 256), i % 256) end
  return out
end

local seq = 0
local function pair(n, opts)
  seq = seq + 1
  local b = names(n)
  local po, so = {}, { shared = "benchffi" .. seq }
  for k, v in pairs(opts or {}) do po[k], so[k] = v, v end
  return upstream.new(b, po), upstream.new(b, so), b
end

for _, strategy in ipairs({ "round_robin", "weighted", "least_conn", "hash", "random" }) do
  local p, s = pair(16, { strategy = strategy })
  local key = strategy == "hash" and "client-42" or nil
  for _, l in ipairs({ p, s }) do
    local kind = l == p and "private" or "shared"
    local pick = uffi.picker(l)
    time(strategy .. " pick ffi " .. kind, function(n)
      local x
      for _ = 1, n do x = pick(key) end
      assert(x)
    end)
  end
end

do
  local p, s = pair(16)
  for _, l in ipairs({ p, s }) do
    local kind = l == p and "private" or "shared"
    local ps = uffi._pick_slot
    time("pick slot " .. kind, function(n)
      local x
      for _ = 1, n do x = ps(l) end
      assert(x >= 0)
    end)
  end
  for _, l in ipairs({ p, s }) do
    local kind = l == p and "private" or "shared"
    time("pick classic " .. kind, function(n)
      local x
      for _ = 1, n do x = l:pick() end
      assert(x)
    end)
  end
end

do
  -- a passive list, b below the top: score(b), up(b), score(b) (feed)
  local p, s, b = pair(16, { high_score = 1000000000 })
  local x = b[3]
  p:down(x); s:down(x)
  for _, l in ipairs({ p, s }) do
    local kind = l == p and "private" or "shared"
    time("report up " .. kind, function(n)
      for _ = 1, n do
        local was = l:score(x)
        l:up(x)
        if l:score(x) == was then error("at the top") end
      end
    end)
  end
  for _, l in ipairs({ p, s }) do
    local kind = l == p and "private" or "shared"
    time("report down " .. kind, function(n)
      for _ = 1, n do l:down(x) end
    end)
  end
  for _, l in ipairs({ p, s }) do
    local kind = l == p and "private" or "shared"
    time("up+down " .. kind, function(n)
      for _ = 1, n do l:down(x); l:up(x) end
    end, 0.5)
  end
end

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
  local s, sets = checked("benchffi" .. seq)
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
    local n = e.name:find("due") and math.floor(N / 10) or N
    local t0 = clock()
    e.f(n)
    local dt = (clock() - t0) / n
    if dt < e.best then e.best = dt end
  end
end

print(("%s%s, %d iterations, best of %d rounds"):format(jit.version,
  ngx and ", in nginx " .. ngx.config.nginx_version or "", N, ROUNDS))
print(("%-30s %10s %8s"):format("loop", "ns", "shared/private"))
for i, e in ipairs(loops) do
  local ns = e.best * 1e9 * e.scale
  e.ns = ns
  local ratio = ""
  if e.name:find("shared") then ratio = ("%.2fx"):format(ns / loops[i - 1].ns) end
  print(("%-30s %10.1f %8s"):format(e.name, ns, ratio))
end
