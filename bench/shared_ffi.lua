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
  package.path = "./src/?.lua;./bench/?.lua;" .. package.path
end
local print = BENCH_OUT or print
local upstream = require "upstream"
local uffi = require "upstream.ffi"
assert(jit, "run under LuaJIT")

local N = tonumber(BENCH_N or (arg and arg[1])) or 2000000
local ROUNDS = 7
local bench = require("shared_rounds").new(upstream, "benchffi")

for _, strategy in ipairs({ "round_robin", "weighted", "least_conn", "hash", "random" }) do
  local p, s = bench:pair(16, { strategy = strategy })
  local key = strategy == "hash" and "client-42" or nil
  for _, l in ipairs({ p, s }) do
    local kind = l == p and "private" or "shared"
    local pick = uffi.picker(l)
    bench:time(strategy .. " pick ffi " .. kind, function(n)
      local x
      for _ = 1, n do x = pick(key) end
      assert(x)
    end)
  end
end

do
  local p, s = bench:pair(16)
  for _, l in ipairs({ p, s }) do
    local kind = l == p and "private" or "shared"
    local ps = uffi._pick_slot
    bench:time("pick slot " .. kind, function(n)
      local x
      for _ = 1, n do x = ps(l) end
      assert(x >= 0)
    end)
  end
  for _, l in ipairs({ p, s }) do
    local kind = l == p and "private" or "shared"
    bench:time("pick classic " .. kind, function(n)
      local x
      for _ = 1, n do x = l:pick() end
      assert(x)
    end)
  end
end

do
  -- a passive list, b below the top: score(b), up(b), score(b) (feed)
  local p, s, b = bench:pair(16, { high_score = 1000000000 })
  local x = b[3]
  p:down(x); s:down(x)
  for _, l in ipairs({ p, s }) do
    local kind = l == p and "private" or "shared"
    bench:time("report up " .. kind, function(n)
      for _ = 1, n do
        local was = l:score(x)
        l:up(x)
        if l:score(x) == was then error("at the top") end
      end
    end)
  end
  for _, l in ipairs({ p, s }) do
    local kind = l == p and "private" or "shared"
    bench:time("report down " .. kind, function(n)
      for _ = 1, n do l:down(x) end
    end)
  end
  for _, l in ipairs({ p, s }) do
    local kind = l == p and "private" or "shared"
    bench:time("up+down " .. kind, function(n)
      for _ = 1, n do l:down(x); l:up(x) end
    end, 0.5)
  end
end

bench:due_report()
bench:run(N, ROUNDS)

print(("%s%s, %d iterations, best of %d rounds"):format(jit.version,
  ngx and ", in nginx " .. ngx.config.nginx_version or "", N, ROUNDS))
bench:report(print, 30)
