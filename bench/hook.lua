-- What the runaway-check hook costs: instructions per health check under
-- callgrind, the module built with the hook (./upstream.so) and without it
-- (-DLU_CHECK_HOOK=0, built here into build/nohook/). Each case runs with N
-- and 2N checks, and the difference divided by N is the cost of one check
-- (start, run, result), free of start-up and set-up.
--   lua5.4 bench/hook.lua    (N=20000 checks, the long ones N/50: N=... to change)
--   LUA=luajit lua5.4 bench/hook.lua
--
-- Measured (this project's machine, gcc -O2), instructions per check:
--   check                            Lua 5.4: no hook    hook  cost     LuaJIT: no hook    hook  cost
--   short: return true                           4456    4713  +5.8%            4872    5599  +15%
--   typical: format + 2 matches                 13462   14662  +8.9%           10401   11400  +9.6%
--   long: 100k VM instr, Lua clock            1729667 3822961  +121%          929962 1573710  +69%
--   long: 100k VM instr, monotonic            1729381 3800960  +120%          929731 1559768  +68%
-- The fixed part (~250 on 5.4) is setting and clearing the hook; the rest
-- is the interpreter testing every VM instruction while any count hook is
-- set (~20 instructions each on 5.4), whatever the count. Reading the
-- clock every 1000 VM instructions adds ~20 000 (monotonic) to ~40 000 (a
-- Lua clock) to the long check: under 2%.
--   lua5.4 bench/hook.lua CASE SODIR N (one run, what callgrind measures)
local LUA = os.getenv("LUA") or "lua5.4"

local function loop(case, sodir, n)
  package.cpath = sodir .. "/?.so;" .. package.cpath
  local upstream = require "upstream"
  local body
  if case == "short" then
    body = function() return true end
  elseif case == "typical" then
    -- a check of typical size: a request built, a reply parsed
    local reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    body = function(b)
      local req = string.format("GET /health HTTP/1.1\r\nHost: %s\r\n\r\n", b)
      local status = tonumber(reply:match("^HTTP/1%.%d (%d%d%d)"))
      local len = tonumber(reply:match("Content%-Length: (%d+)"))
      return #req > 0 and status == 200 and len == 2
    end
  else -- long, long_mono: ~100 000 VM instructions, the hook fires ~100 times
    body = function()
      local x = 0
      for i = 1, 25000 do x = x + i end
      return x > 0
    end
  end
  if jit then jit.off(body, true) end -- the hook sees interpreted code only
  local opts = { check = body, interval = 1, timeout = 1e6 }
  local t = 0
  if case ~= "long_mono" then
    opts.clock = function() return t end
  else
    opts.interval = 1e-9 -- every step() starts the next check
  end
  local list = upstream.new({ "a" }, opts)
  for _ = 1, n do
    list:step()
    t = t + 1
  end
  io.stderr:write(("checks %d\n"):format(list:status()[1].checks))
end

if arg[1] then
  loop(arg[1], arg[2], tonumber(arg[3]))
  return
end

local N = tonumber(os.getenv("N")) or 20000
local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  return out
end

-- the two builds: the Makefile's, and the same flags without the hook
local inc = LUA == "luajit" and "-I/usr/include/luajit-2.1" or "-I/usr/include/" .. LUA
local with = "build/" .. LUA
assert(os.execute("make -s " .. with .. "/upstream.so"))
os.execute("mkdir -p build/nohook")
assert(os.execute("cc -O2 -g -std=c99 -D_POSIX_C_SOURCE=200809L -DLU_CHECK_HOOK=0 -fPIC " ..
  "-fvisibility=hidden " .. inc .. " -shared -o build/nohook/upstream.so src/upstream.c -lm"))

-- instructions and checks of one run
local function ir(case, sodir, n)
  local out = sh(("valgrind --tool=callgrind --callgrind-out-file=/dev/null %s bench/hook.lua %s %s %d")
    :format(LUA, case, sodir, n))
  local instr = assert(out:match("Collected : (%d+)"), out)
  local checks = assert(out:match("checks (%d+)"), out)
  return tonumber(instr), tonumber(checks)
end

local function per_check(case, sodir)
  local n = case:match("^long") and math.max(1, math.floor(N / 50)) or N
  local i1, c1 = ir(case, sodir, n)
  local i2, c2 = ir(case, sodir, 2 * n)
  return (i2 - i1) / (c2 - c1)
end

print(("instructions per check (%s, callgrind, N = %d)"):format(LUA, N))
print(("%-34s %10s %10s %8s %7s"):format("check", "no hook", "hook", "cost", "share"))
for _, case in ipairs({
  { "short", "short: return true (fake clock)" },
  { "typical", "typical: format + 2 matches" },
  { "long", "long: 100k VM instr, Lua clock" },
  { "long_mono", "long: 100k VM instr, monotonic" },
}) do
  local without = per_check(case[1], "build/nohook")
  local hooked = per_check(case[1], with)
  print(("%-34s %10.0f %10.0f %8.0f %6.1f%%"):format(case[2], without, hooked,
    hooked - without, 100 * (hooked - without) / without))
end
