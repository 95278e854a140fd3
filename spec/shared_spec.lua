-- Shared lists (issue 10): upstream.new(backends, {shared = name}) and
-- upstream.attach(name). Processes are forked with the module's test hooks
-- (upstream._fork/_wait/_exit/_kill); a second lua_State of this process
-- with upstream._in_new_state. Fake clocks; nothing sleeps.
local upstream = require "upstream"
local util = require "spec.support.util"

local expect_error = util.expect_error

local seq = 0
local function name()
  seq = seq + 1
  return ("spec-%d-%d"):format(upstream._getpid(), seq)
end

-- runs fn in a forked child; returns the child's exit code (fn returning
-- normally is 0, raising 1)
local function in_child(fn)
  local pid = upstream._fork()
  if pid == 0 then
    local ok, err = pcall(fn)
    if not ok then io.stderr:write("child: ", tostring(err), "\n") end
    upstream._exit(ok and 0 or 1)
  end
  local how, code = upstream._wait(pid)
  assert.are.equal("exit", how)
  return code
end

local function valid(l)
  local ok, why = l:_validate()
  assert(ok, why)
end

-- the lock acquisitions of n calls of pick(): _shm().locks, the mapping's
-- lock count, before that call's own
local function locks_of(l, n, pick)
  local before = l:_shm().locks
  for _ = 1, n do pick() end
  return l:_shm().locks - before - 1
end

-- 4 forked children pick 20000 times each from l while a fifth calls
-- score() 40000 times (each a write section: a pick overlapping one runs
-- again). The children start together: each waits (bounded) for a file
-- the parent makes once all are forked, so that their picks overlap. Then
-- every backend's picks on l must equal those of p, a private list with
-- the same picks made so far, after as many picks made in turn.
local function race_counts(l, p, what)
  for _ = 1, 4 * 20000 do p:pick() end
  local go = os.tmpname()
  os.remove(go)
  local pids = {}
  for i = 1, 5 do
    pids[i] = upstream._fork()
    if pids[i] == 0 then
      for _ = 1, 100000 do
        local f = io.open(go)
        if f then f:close(); break end
      end
      if i == 1 then
        for _ = 1, 40000 do l:score("a") end
      else
        for _ = 1, 20000 do l:pick() end
      end
      upstream._exit(0)
    end
  end
  assert(io.open(go, "w")):close()
  for i = 1, 5 do assert.are.same({ "exit", 0 }, { upstream._wait(pids[i]) }) end
  os.remove(go)
  local want = {}
  for _, row in ipairs(p:status()) do want[row.backend] = row.picks end
  for _, row in ipairs(l:status()) do
    assert.are.equal(want[row.backend], row.picks, row.backend .. what)
  end
end

describe("shared lists", function()
  describe("making and attaching", function()
    it("is the same list for the same name, with scores kept", function()
      local n = name()
      local a = upstream.new({ "x", "y" }, { shared = n })
      a:down("x")
      local b = upstream.new({ "x", "y", "z" }, { shared = n })
      assert.are.equal(3, #a)
      assert.are.equal(a:score("x"), b:score("x"))
      assert.is_true(a:score("x") < 1)
      local c = upstream.attach(n)
      assert.are.equal(3, #c)
      valid(a)
    end)

    it("gives clear errors and changes nothing", function()
      local n = name()
      local l = upstream.new({ "a", "b" }, { shared = n, capacity = 3 })
      expect_error(function() upstream.new({ "a", 1 }, { shared = name() }) end,
        "backends of a shared list must be strings", "backends[2]")
      expect_error(function() upstream.new({ "a", "b" }, { shared = name(), capacity = 1 }) end,
        "2 backends are over its capacity 1")
      expect_error(function() upstream.new({ "a" }, { shared = name(), capacity = 0 }) end,
        "option 'capacity' must be an integer")
      expect_error(function() upstream.new({ "a" }, { shared = name(), capacity = 1.5 }) end,
        "option 'capacity'")
      expect_error(function() upstream.new({ "a" }, { shared = "" }) end,
        "option 'shared' must be a name")
      expect_error(function() upstream.new({ "a" }, { shared = n, interval = 7 }) end,
        "shared list '" .. n .. "' exists with other options", "interval")
      expect_error(function() upstream.new({ "a" }, { shared = n, strategy = "random" }) end,
        "exists with other options", "strategy")
      expect_error(function() upstream.new({ "a" }, { shared = n, capacity = 9 }) end,
        "exists with other options", "capacity 3")
      expect_error(function() l:reconcile({ "a", "b", "c", "d" }) end,
        "4 backends are over its capacity 3")
      expect_error(function() l:reconcile({ "a", {} }) end, "must be strings")
      expect_error(function() upstream.attach("no such list") end,
        "no shared list named 'no such list'")
      expect_error(function() upstream.attach(n, { interval = 2 }) end,
        "not allowed")
      assert.are.equal(2, #l)
      assert.are.equal(1, l:score("a"))
      valid(l)
    end)

    it("starts fresh, logging once, when nginx's init phase changes the layout", function()
      local n = name()
      local old = upstream.new({ "a", "b" }, { shared = n })
      old:down("a")
      local logs = {}
      _G.ngx = { WARN = 5, get_phase = function() return "init" end,
        log = function(level, msg) logs[#logs + 1] = { level, msg } end }
      local ok, fresh = pcall(upstream.new, { "a", "b" }, { shared = n, strategy = "random" })
      _G.ngx = nil
      assert(ok, fresh)
      assert.are.equal(1, #logs)
      assert.are.equal(5, logs[1][1])
      assert.truthy(logs[1][2]:find("strategy round_robin, not random: it starts fresh", 1, true))
      assert.are.equal(1, fresh:score("a")) -- fresh
      assert.is_true(old:score("a") < 1)    -- the old one goes on for its holders
      assert.are.equal(1, upstream.attach(n):score("a")) -- the name is the new one
      -- outside nginx's init phase it stays an error
      expect_error(function() upstream.new({ "a" }, { shared = n }) end,
        "exists with other options", "strategy random, not round_robin")
    end)

    it("fails clearly when the system refuses shared mappings", function()
      upstream._shm_fail_at(1)
      expect_error(function() upstream.new({ "a" }, { shared = name() }) end,
        "could not make a shared mapping")
      upstream._shm_fail_at(2)
      expect_error(function() upstream.new({ "a" }, { shared = name() }) end,
        "could not make a shared mapping")
      upstream._shm_fail_at(0)
      local l = upstream.new({ "a" }, { shared = name() })
      assert.are.equal("a", l:pick())
    end)

    it("defaults the capacity to max(64, 2n)", function()
      local n = name()
      local big = {}
      for i = 1, 40 do big[i] = "b" .. i end
      local l = upstream.new(big, { shared = n })
      for i = 41, 80 do big[i] = "b" .. i end
      l:reconcile(big)
      assert.are.equal(80, #l)
      big[81] = "b81"
      expect_error(function() l:reconcile(big) end, "over its capacity 80")
      local s = upstream.new({ "a" }, { shared = name() })
      local many = {}
      for i = 1, 64 do many[i] = "m" .. i end
      s:reconcile(many)
      many[65] = "m65"
      expect_error(function() s:reconcile(many) end, "over its capacity 64")
    end)

    it("is shared by a second lua_State of the process", function()
      local n = name()
      local l = upstream.new({ "a", "b", "c" }, { shared = n })
      assert.are.equal("a", l:pick())
      local ok, out = upstream._in_new_state(([[
        local up = require "upstream"
        local l = up.attach(%q)
        local p = l:pick() .. l:pick()
        l:down("c"); l:down("c"); l:down("c"); l:down("c"); l:down("c")
        return p
      ]]):format(n))
      assert.is_true(ok, out)
      assert.are.equal("bc", out)
      assert.are.equal("a", l:pick())
      assert.are.equal("b", l:pick())
      assert.are.equal("a", l:pick()) -- c went down in the other state
    end)
    it("is shared by lua_States in threads picking at once", function()
      local n = name()
      local l = upstream.new({ "a", "b", "c", "d" }, { shared = n })
      local out = { upstream._in_threads(4, ([[
        local up = require "upstream"
        local l = up.attach(%q)
        for _ = 1, 3000 do l:pick() end
        return "ok"
      ]]):format(n)) }
      assert.are.same({ "ok", "ok", "ok", "ok" }, out)
      for _, row in ipairs(l:status()) do assert.are.equal(3000, row.picks) end
      valid(l)
    end)
  end)

  describe("same results as a private list", function()
    local ops = { "pick", "pick", "pick", "up", "down", "down", "weight", "reconcile" }
    for _, case in ipairs({ { s = "random", ss = 0 }, { s = "round_robin", ss = 0 },
      { s = "round_robin" }, { s = "weighted", ss = 0 }, { s = "weighted" }, { s = "least_conn" },
      { s = "hash" }, { s = "random" } }) do
      local strategy = case.s
      it("for " .. strategy .. " (scores, picks, panic, slow start " .. (case.ss or 4) .. ", status)", function()
        local clk = util.fake_clock(100)
        local base = { "a", "b", "c", "d", "e" }
        local opts = { strategy = strategy, seed = 7, panic = 0.3, slow_start = case.ss or 4,
          clock = clk.clock, tiers = { min = 0, max = 3, init = 1 } }
        local p = upstream.new(base, opts)
        opts.shared = name()
        local s = upstream.new(base, opts)
        local r = 12345
        local function rnd(k)
          r = (r * 16807) % 2147483647
          return r % k + 1
        end
        local pool = { "a", "b", "c", "d", "e", "f", "g" }
        for step = 1, 400 do
          local op = ops[rnd(#ops)]
          local b = pool[rnd(#pool)]
          clk.t = clk.t + 0.25
          if op == "pick" then
            local key = strategy == "hash" and ("k" .. rnd(50)) or nil
            local x1, e1 = p:pick(key)
            local x2, e2 = s:pick(key)
            if strategy ~= "hash" then
              assert.are.equal(x1, x2, "pick at step " .. step)
            end
            assert.are.equal(e1, e2)
          elseif op == "up" then p:up(b); s:up(b)
          elseif op == "down" then p:down(b); s:down(b)
          elseif op == "weight" then
            local w = rnd(5)
            assert.are.equal(p:set_weight(b, w), s:set_weight(b, w))
          else
            local set = {}
            for _, x in ipairs(pool) do if rnd(3) > 1 then set[#set + 1] = x end end
            p:reconcile(set); s:reconcile(set)
          end
          assert.are.equal(#p, #s)
          assert.are.equal(p:score(b), s:score(b))
          assert.are.equal(p:weight(b), s:weight(b))
        end
        local sp, ss = p:status(), s:status()
        assert.are.equal(#sp, #ss)
        for i = 1, #sp do
          for _, f in ipairs({ "backend", "score", "healthy", "weight", "tier", "since" }) do
            assert.are.equal(sp[i][f], ss[i][f], f .. " of row " .. i)
          end
          if strategy ~= "hash" then assert.are.equal(sp[i].picks, ss[i].picks) end
        end
        assert.are.same(p:status_of("a"), s:status_of("a"))
        valid(s)
      end)
    end

    it("hashes a key to the same backend in every process", function()
      local l = upstream.new({ "a", "b", "c", "d" }, { shared = name(), strategy = "hash" })
      local want = {}
      for k = 1, 20 do want[k] = l:pick("key" .. k) end
      assert.are.equal(0, in_child(function()
        for k = 1, 20 do assert(l:pick("key" .. k) == want[k]) end
      end))
    end)
  end)

  describe("across processes", function()
    it("continues one round robin over parent and children", function()
      local l = upstream.new({ "a", "b", "c" }, { shared = name() })
      assert.are.equal("a", l:pick())
      assert.are.equal(0, in_child(function() assert(l:pick() == "b") end))
      assert.are.equal(0, in_child(function()
        assert(l:pick() == "c")
        assert(l:pick() == "a")
      end))
      assert.are.equal("b", l:pick())
    end)

    it("counts concurrent picks exactly", function()
      local bs = { "a", "b", "c", "d", "e" }
      local l = upstream.new(bs, { shared = name() })
      local pids = {}
      for i = 1, 4 do
        pids[i] = upstream._fork()
        if pids[i] == 0 then
          for _ = 1, 5000 do l:pick() end
          upstream._exit(0)
        end
      end
      for i = 1, 4 do assert.are.same({ "exit", 0 }, { upstream._wait(pids[i]) }) end
      for _, row in ipairs(l:status()) do assert.are.equal(4000, row.picks) end
      valid(l)
    end)

    it("picks round robin, random and weighted without the lock; least_conn locks", function()
      for _, st in ipairs({ "round_robin", "weighted", "least_conn", "random" }) do
        local l = upstream.new({ "a", "b", "c" }, { shared = name(), strategy = st })
        l:pick() -- the first call resyncs this view's cache (weighted: and
        -- records one period of picks)
        local got = {}
        local taken = locks_of(l, 30, function() got[#got + 1] = l:pick() end)
        assert.are.equal(st == "least_conn" and 30 or 0, taken, st)
        if st == "round_robin" then
          assert.are.equal("bcabcabca", table.concat(got):sub(1, 9))
          l:down("a"); l:down("a"); l:down("a") -- a writer: the next pick goes on
          assert.are.equal("b", l:pick())
          assert.are.equal("c", l:pick())
          assert.are.equal(0, locks_of(l, 5, function() assert(l:pick() ~= "a") end))
        end
        valid(l)
      end
      -- slow start ramping: the lock (the ramp moves on in the pick)
      local clk = util.fake_clock(10)
      local r = upstream.new({ "a", "b" }, { shared = name(), slow_start = 5, clock = clk.clock })
      r:down("a"); r:down("a"); r:down("a"); r:up("a"); r:up("a"); r:up("a")
      r:pick()
      assert.are.equal(3, locks_of(r, 3, function() r:pick() end))
      clk.t = clk.t + 10
      r:pick() -- the ramp ends
      assert.are.equal(0, locks_of(r, 3, function() r:pick() end))
    end)

    it("picks hash without the lock while its table is complete; a build locks", function()
      local bs = { "a", "b", "c", "d" }
      local l = upstream.new(bs, { shared = name(), strategy = "hash" })
      local p = upstream.new(bs, { strategy = "hash" }) -- the same table, private
      l:pick("k0") -- resyncs this view's cache, builds the first table
      local got = {}
      assert.are.equal(0, locks_of(l, 40, function() got[#got + 1] = l:pick("k" .. #got) end))
      for i = 1, 40 do assert.are.equal(p:pick("k" .. (i - 1)), got[i]) end
      -- a change: the next pick builds the table (under the lock), then none locks
      for _ = 1, 3 do l:down("a"); p:down("a") end
      assert.are.equal(1, locks_of(l, 1, function() l:pick("x") end))
      assert.are.equal(0, locks_of(l, 40, function() l:pick("x") end))
      for i = 1, 40 do assert.are.equal(p:pick("k" .. i), l:pick("k" .. i)) end
      valid(l)
    end)

    it("picks hash without the lock with members down, and when none is eligible", function()
      local bs = { "a", "b", "c", "d", "e" }
      local l = upstream.new(bs, { shared = name(), strategy = "hash" })
      local p = upstream.new(bs, { strategy = "hash" })
      l:pick("k0") -- resyncs this view's cache, builds the first table
      local on_c = {} -- the keys whose entry names c
      for i = 1, 300 do
        if p:pick("k" .. i) == "c" then on_c[#on_c + 1] = "k" .. i end
      end
      assert.is_true(#on_c > 20)
      for _ = 1, 3 do l:down("c"); p:down("c") end
      assert.are.equal(1, locks_of(l, 1, function() l:pick("x") end)) -- the build
      -- the new table names only eligible members: c's keys pick lock-free
      local got = {}
      assert.are.equal(0, locks_of(l, #on_c, function() got[#got + 1] = l:pick(on_c[#got + 1]) end))
      for i, k in ipairs(on_c) do
        assert.are.equal(p:pick(k), got[i], k)
        assert.are_not.equal("c", got[i])
      end
      -- none eligible (no panic): nil, lock-free too; ul_pick answers before
      -- it would build, so the table stays due until a member is back
      for _, b in ipairs({ "a", "b", "d", "e" }) do
        for _ = 1, 3 do l:down(b); p:down(b) end
      end
      got = {}
      assert.are.equal(0, locks_of(l, 20, function() got[#got + 1] = { l:pick("k" .. #got) } end))
      for i = 1, 20 do assert.are.same({ p:pick("k" .. (i - 1)) }, got[i]) end
      assert.is_nil(got[1][1])
      for _ = 1, 3 do l:up("d"); p:up("d") end
      assert.are.equal(1, locks_of(l, 1, function() l:pick("x") end)) -- the build
      assert.are.equal(0, locks_of(l, 20, function() assert.are.equal("d", l:pick("y")) end))
      -- panic (most members down): every member eligible, the table over all
      local q = upstream.new(bs, { shared = name(), strategy = "hash", panic = 0.5 })
      local pq = upstream.new(bs, { strategy = "hash", panic = 0.5 })
      q:pick("k0")
      for _, b in ipairs({ "a", "b", "c" }) do
        for _ = 1, 3 do q:down(b); pq:down(b) end
      end
      assert.are.equal(1, locks_of(q, 1, function() q:pick("x") end))
      got = {}
      assert.are.equal(0, locks_of(q, 200, function() got[#got + 1] = q:pick("k" .. #got) end))
      for i = 1, 200 do assert.are.equal(pq:pick("k" .. (i - 1)), got[i]) end
      valid(l)
      valid(q)
    end)

    it("counts concurrent hash picks exactly while another process takes the lock", function()
      local bs = { "a", "b", "c", "d", "e" }
      local l = upstream.new(bs, { shared = name(), strategy = "hash" })
      local p = upstream.new(bs, { strategy = "hash" })
      local want = {}
      for k = 1, 500 do
        local b = p:pick("k" .. k)
        want[b] = (want[b] or 0) + 4 * 10
      end
      local pids = {}
      for i = 1, 5 do -- a writer all along: each score() is a write section
        pids[i] = upstream._fork()
        if pids[i] == 0 then
          if i == 1 then
            for _ = 1, 20000 do l:score("a") end
          else
            for _ = 1, 10 do
              for k = 1, 500 do l:pick("k" .. k) end
            end
          end
          upstream._exit(0)
        end
      end
      for i = 1, 5 do assert.are.same({ "exit", 0 }, { upstream._wait(pids[i]) }) end
      for _, row in ipairs(l:status()) do
        assert.are.equal(want[row.backend] or 0, row.picks, row.backend)
      end
      valid(l)
    end)

    it("draws random picks without the lock, the draws of a private list", function()
      local bs = { "a", "b", "c", "d", "e" }
      local l = upstream.new(bs, { shared = name(), strategy = "random", seed = 7, panic = 0.5 })
      local p = upstream.new(bs, { strategy = "random", seed = 7, panic = 0.5 })
      assert.are.equal(p:pick(), l:pick()) -- the first resyncs this view's cache
      local function same(what)
        local got = {}
        assert.are.equal(0, locks_of(l, 60, function()
          got[#got + 1] = l:pick()
          assert.are.equal(p:pick(), got[#got], what .. ", pick " .. #got)
        end), what .. ": no pick locks")
        return table.concat(got)
      end
      same("equal weights") -- a draw from the set of the eligible
      p:set_weight("b", 4); l:set_weight("b", 4)
      same("weights 1 4 1 1 1") -- a draw down the tree
      for _ = 1, 3 do p:down("c"); l:down("c") end
      assert.is_nil(same("c down"):find("c"))
      for _, b in ipairs({ "a", "b", "d" }) do
        for _ = 1, 3 do p:down(b); l:down(b) end
      end
      assert.truthy(same("panic: 1 of 5 healthy"):find("[abcd]")) -- the down ones too
      for _, b in ipairs(bs) do
        for _ = 1, 3 do p:down(b); l:down(b) end
      end
      same("all down") -- panic: every member
      valid(l)
    end)

    it("counts concurrent random draws exactly: each state of the generator drawn once", function()
      for _, w in ipairs({ 1, 3 }) do
        local bs = { "a", "b", "c", "d", "e" }
        local l = upstream.new(bs, { shared = name(), strategy = "random", seed = 11 })
        local p = upstream.new(bs, { strategy = "random", seed = 11 })
        l:set_weight("c", w); p:set_weight("c", w)
        l:pick(); p:pick()
        race_counts(l, p, ", weight of c " .. w)
        valid(l)
      end
    end)

    it("picks weighted without the lock from one period: a private list's picks", function()
      local bs = { "a", "b", "c", "d" }
      local l = upstream.new(bs, { shared = name(), strategy = "weighted" })
      local p = upstream.new(bs, { strategy = "weighted" })
      local r, picks, locks = 4321, 0, 0
      local function rnd(k)
        r = (r * 16807) % 2147483647
        return r % k + 1
      end
      for round = 1, 80 do
        local b = bs[rnd(#bs)]
        local op = rnd(4)
        if op == 1 then
          local w = rnd(6)
          assert.are.equal(p:set_weight(b, w), l:set_weight(b, w))
        elseif op == 2 then p:down(b); l:down(b)
        elseif op == 3 then p:up(b); l:up(b)
        else p:score(b); l:score(b) end -- a locked section, no change
        local n = rnd(60)
        locks = locks + locks_of(l, n, function()
          local x1, x2 = p:pick(), l:pick()
          assert.are.equal(x1, x2, "round " .. round)
        end) + 1
        picks = picks + n
      end
      -- after a change the first pick records the period, and a state not
      -- yet on its cycle locks a while: most picks take no lock
      assert.is_true(locks < picks / 4, locks .. " locks in " .. picks .. " picks")
      local sp, ss = p:status(), l:status()
      for i = 1, #sp do assert.are.equal(sp[i].picks, ss[i].picks, sp[i].backend) end
      valid(l)
    end)

    it("picks weighted under the lock while a period would be over 1024 picks", function()
      local bs = { "a", "b", "c" }
      local l = upstream.new(bs, { shared = name(), strategy = "weighted" })
      local p = upstream.new(bs, { strategy = "weighted" })
      l:set_weight("a", 1000); p:set_weight("a", 1000)
      l:set_weight("b", 999); p:set_weight("b", 999) -- a period of 2000 picks
      local function same() assert.are.equal(p:pick(), l:pick()) end
      assert.are.equal(30, locks_of(l, 30, same))
      l:set_weight("a", 30); p:set_weight("a", 30) -- 1030: still too long
      assert.are.equal(30, locks_of(l, 30, same))
      l:set_weight("b", 2); p:set_weight("b", 2) -- 33: it fits again
      -- (the state those weights left is off its cycle for a while: the
      -- picks lock until it is on it; no change is needed to try again)
      assert.is_true(locks_of(l, 400, same) < 400)
      assert.are.equal(0, locks_of(l, 30, same))
      valid(l)
    end)

    it("counts concurrent weighted picks exactly: each index of the period taken once", function()
      local bs = { "a", "b", "c", "d", "e" }
      local l = upstream.new(bs, { shared = name(), strategy = "weighted" })
      local p = upstream.new(bs, { strategy = "weighted" })
      for i, b in ipairs(bs) do l:set_weight(b, i); p:set_weight(b, i) end
      l:pick(); p:pick()
      race_counts(l, p, "") -- each score() also brings the nodes up
      -- and the sequence goes on as the private list's
      for k = 1, 40 do assert.are.equal(p:pick(), l:pick(), "pick " .. k) end
      valid(l)
    end)

    it("counts concurrent picks exactly while another process takes the lock", function()
      -- the pickers go lock-free; every score() is a locked section (a write
      -- section of the sequence lock): a pick that overlaps one must retry
      local bs = { "a", "b", "c", "d", "e" }
      local l = upstream.new(bs, { shared = name() })
      local pids = {}
      for i = 1, 5 do -- the writer first, so that it runs all along
        pids[i] = upstream._fork()
        if pids[i] == 0 then
          if i == 1 then
            for _ = 1, 100000 do l:score("a") end
          else
            for _ = 1, 25000 do l:pick() end
          end
          upstream._exit(0)
        end
      end
      for i = 1, 5 do assert.are.same({ "exit", 0 }, { upstream._wait(pids[i]) }) end
      for _, row in ipairs(l:status()) do assert.are.equal(20000, row.picks, row.backend) end
      assert.are.equal("a", l:pick()) -- 100000 picks: the rotation is whole
      valid(l)
    end)

    it("sees a child's down() and reconcile()", function()
      local l = upstream.new({ "a", "b", "c" }, { shared = name() })
      assert.are.equal(0, in_child(function()
        for _ = 1, 5 do l:down("b") end
        l:reconcile({ "a", "b", "d" })
      end))
      assert.are.equal(3, #l)
      assert.is_nil(l:score("c"))
      assert.is_true(l:score("b") < 0)
      local seen = {}
      for _ = 1, 6 do seen[l:pick()] = true end
      assert.are.same({ a = true, d = true }, seen)
      valid(l)
    end)

    it("gives upstream.metrics what another process changed", function()
      local l = upstream.new({ "a", "b", "c" }, { shared = name() })
      l:pick()
      assert.are.equal(0, in_child(function()
        for _ = 1, 5 do l:down("b") end
        l:reconcile({ "a", "b", "d" })
        l:pick(); l:pick()
      end))
      local text = upstream.metrics({ s = l, p = upstream.new({ "x" }) })
      assert.truthy(text:find('upstream_healthy{list="s",backend="b"} 0\n', 1, true))
      assert.truthy(text:find('upstream_healthy{list="s",backend="d"} 1\n', 1, true))
      assert.falsy(text:find('backend="c"', 1, true))
      assert.truthy(text:find('upstream_healthy_backends{list="s"} 2\n', 1, true))
      local picks = 0
      for v in text:gmatch('upstream_picks_total{list="s",backend="[^"]*"} (%d+)') do
        picks = picks + tonumber(v)
      end
      assert.are.equal(3, picks)
      assert.truthy(text:find('upstream_healthy{list="p",backend="x"} 1\n', 1, true))
    end)

    for _, strategy in ipairs(util.STRATEGIES) do
      it("repairs what a writer that died holding the lock left (" .. strategy .. ")", function()
        local l = upstream.new({ "a", "b", "c", "d", "e" },
          { shared = name(), strategy = strategy, panic = 0.5, check = function() return true end })
        l:down("c")
        for _ = 1, 6 do l:down("d") end
        local v = l:_shm().version
        assert.are.equal(0, in_child(function() l:_die_writing() end))
        valid(l) -- locks: recovers, repairs
        assert.are.equal(1, l:_shm().recoveries)
        assert.is_true(l:_shm().version > v)
        assert.are.equal(4, #l) -- the member cut half way is out
        assert.is_nil(l:score("b"))
        assert.are.equal(4, l:_shm().strings) -- the orphan string swept
        assert.are.equal(4, l:checked())
        local seen = {}
        for _ = 1, 40 do seen[l:pick("k" .. _) or "none"] = true end
        assert.is_nil(seen.d)
        assert.is_nil(seen.b)
        assert.is_nil(seen.none)
        valid(l)
      end)
    end

    it("carries on consistent when writers are SIGKILLed", function()
      local l = upstream.new({ "a", "b", "c", "d" }, { shared = name(), capacity = 16 })
      local r, kills = 99, 0
      local function rnd(k)
        r = (r * 16807) % 2147483647
        return r % k + 1
      end
      local round = 0
      -- at least 10 kills, and on until 3 of them came while the child held
      -- the lock (bounded)
      while round < 40 and (kills < 10 or l:_shm().recoveries < 3) do
        round = round + 1
        local before = l:_shm().version
        local pid = upstream._fork()
        if pid == 0 then
          local pool = { "a", "b", "c", "d", "e", "f", "g", "h", "i", "j" }
          local i = 0
          while true do -- killed by the parent
            i = i + 1
            local set = {}
            for k = 1, #pool do if (i + k) % 3 ~= 0 then set[#set + 1] = pool[k] end end
            l:reconcile(set)
            for k = 1, 20 do
              l:down(pool[(i + k) % #pool + 1])
              l:up(pool[(i + k + 3) % #pool + 1])
              l:pick()
            end
          end
        end
        -- wait (bounded) for the child to be writing, then a while more
        local spins = 0
        while l:_shm().version == before and spins < 1e6 do spins = spins + 1 end
        for _ = 1, rnd(300) do l:pick() end
        assert.is_true(upstream._kill(pid, 9))
        local how, sig = upstream._wait(pid)
        assert.are.equal("signal", how)
        assert.are.equal(9, sig)
        kills = kills + 1
        valid(l)
        local ok = l:pick()
        assert.is_truthy(ok)
        l:reconcile({ "a", "b", "c", "d" })
        valid(l)
        assert.are.equal(4, #l)
        assert.are.equal(4, l:_shm().strings, "round " .. round)
      end
      assert.is_true(kills >= 10)
      -- some of them died holding the lock (most of a child's time is in it)
      -- (a death holding the lock is proven by the _die_writing tests)
    end)
  end)

  describe("one prober", function()
    local function checked_list(clk, extra)
      local opts = { shared = name(), interval = 1, timeout = 1, clock = clk.clock,
        check = function() return true end }
      for k, v in pairs(extra or {}) do opts[k] = v end
      return upstream.new({ "a", "b", "c" }, opts), opts.shared
    end

    it("runs checks only in the lease holder, with fencing", function()
      local clk = util.fake_clock(10)
      local l, n = checked_list(clk)
      local other = upstream.attach(n, { clock = clk.clock })
      local jobs = l:due()
      assert.are.equal(3, #jobs)
      local le = l:lease()
      assert.are.equal(upstream._getpid(), le.pid)
      assert.are.equal(10, le.since)
      assert.are.equal(13, le.expiry) -- interval + timeout + 1
      assert.is_true(le.mine)
      assert.is_false(other:lease().mine)
      assert.are.same({}, other:due())
      assert.are.equal(3, other:next_due()) -- it may try at the expiry
      assert.is_true(l:report(jobs[1], true))
      clk.t = 13.5 -- the holder did not renew: the other view takes over
      local taken = other:due()
      assert.is_true(other:lease().mine)
      assert.are.equal(le.generation + 1, other:lease().generation)
      -- the checks the first holder still ran start again, uncounted
      assert.are.equal(3, #taken)
      local ok, why = l:report(jobs[2], false)
      assert.is_false(ok)
      assert.are.equal("lease lost", why)
      assert.are.same({}, l:due())
      for _, row in ipairs(other:status()) do
        assert.are.equal(row.backend == "a" and 1 or 0, row.checks)
        assert.are.equal(0, row.failures)
      end
      for _, j in ipairs(taken) do assert.is_true(other:report(j, true)) end
      valid(l)
    end)

    it("renews the lease at each due()", function()
      local clk = util.fake_clock(0)
      local l, n = checked_list(clk)
      local other = upstream.attach(n, { clock = clk.clock })
      l:due()
      local gen0 = l:lease().generation
      for i = 1, 20 do
        clk.t = i * 0.9
        for _, j in ipairs(l:due()) do assert.is_true(l:report(j, true)) end
        assert.are.same({}, other:due())
      end
      assert.is_true(l:lease().mine)
      assert.are.equal(gen0, l:lease().generation) -- renewed, never lost
      assert.are.equal(10, l:status()[1].checks) -- one per interval: 1.8 s
      assert.are.equal(18, l:lease().expiry - 1 - 2)
    end)

    it("takes over from a holder that was SIGKILLed, restarting its checks", function()
      local clk = util.fake_clock(5)
      local l = checked_list(clk)
      local pid = upstream._fork()
      if pid == 0 then
        local jobs = l:due() -- takes the lease, starts the three checks
        if #jobs ~= 3 then upstream._exit(3) end
        upstream._kill(upstream._getpid(), 9)
        upstream._exit(4)
      end
      local how, sig = upstream._wait(pid)
      assert.are.same({ "signal", 9 }, { how, sig })
      local le = l:lease()
      assert.are.equal(pid, le.pid)
      -- the holder is gone (reaped): taken over at once, before its expiry
      local jobs = l:due()
      assert.are.equal(3, #jobs)
      assert.are.equal(upstream._getpid(), l:lease().pid)
      assert.are.equal(le.generation + 1, l:lease().generation)
      for _, row in ipairs(l:status()) do
        assert.are.equal(0, row.checks)
        assert.are.equal(0, row.failures)
      end
      for _, j in ipairs(jobs) do assert.is_true(l:report(j, j.backend ~= "b")) end
      local st = l:status_of("b")
      assert.are.equal(1, st.checks)
      assert.are.equal(1, st.failures)
      valid(l)
    end)

    it("runs step() checks in the lease holder only, and takes over", function()
      local clk = util.fake_clock(0)
      local ran = {}
      local function check_by(who)
        return function(b)
          ran[who] = (ran[who] or 0) + 1
          return b ~= "c"
        end
      end
      local opts = { shared = name(), interval = 2, timeout = 1, clock = clk.clock,
        sleep = clk.sleep, check = check_by("A") }
      local a = upstream.new({ "a", "b", "c" }, opts)
      local b = upstream.attach(opts.shared, { clock = clk.clock, sleep = clk.sleep,
        check = check_by("B") })
      assert.are.equal(2, a:step()) -- next checks at 2
      assert.are.equal(3, ran.A)
      assert.are.equal(4, b:step()) -- not the holder: try at the expiry (0 + 4)
      assert.is_nil(ran.B)
      assert.is_true(a:score("c") < 1)
      assert.are.equal(a:score("c"), b:score("c"))
      clk.t = 4 -- a stalled: b takes over
      b:step()
      assert.are.equal(3, ran.B)
      assert.is_true(b:lease().mine)
      assert.is_false(a:lease().mine)
      a:step()
      assert.are.equal(3, ran.A)
      -- run() in the holder keeps checking, once per interval
      b:run(10)
      assert.are.equal(3 + 3 * 5, ran.B)
      assert.are.equal(3, ran.A)
      valid(a)
    end)

    it("wait_initial()s and run()s with checks that sleep", function()
      local clk = util.fake_clock(0)
      local l = upstream.new({ "a", "b" }, { shared = name(), interval = 1, timeout = 2,
        clock = clk.clock, sleep = clk.sleep,
        check = function(b)
          upstream.sleep(0.5)
          return b == "a", "down on purpose"
        end })
      assert.is_true(l:wait_initial(5))
      assert.are.equal(1, l:status_of("a").checks)
      assert.are.equal(1, l:status_of("b").failures)
      assert.are.equal("down on purpose", l:status_of("b").last_error)
      l:run(3)
      assert.is_true(l:score("b") < 0)
      assert.are.equal(0, in_child(function() assert(l:pick() == "a") end))
      valid(l)
    end)

    it("closes a running check whose backend another process removed", function()
      local clk = util.fake_clock(0)
      local resumed = {}
      local l = upstream.new({ "a", "b" }, { shared = name(), interval = 1, timeout = 5,
        clock = clk.clock, sleep = clk.sleep,
        check = function(b)
          upstream.sleep(1)
          resumed[b] = true
          return true
        end })
      l:step() -- both checks sleep
      assert.are.equal(0, in_child(function() l:reconcile({ "a", "c" }) end))
      clk.t = 1.5
      l:step()
      assert.is_true(resumed.a)
      assert.is_nil(resumed.b)
      assert.is_nil(l:status_of("b"))
      valid(l)
    end)

    it("gives the lease up at shutdown", function()
      local clk = util.fake_clock(0)
      local l, n = checked_list(clk)
      local other = upstream.attach(n, { clock = clk.clock })
      assert.are.equal(3, #l:due())
      l:shutdown()
      assert.are.equal(0, l:lease().pid)
      assert.are.equal(3, #other:due()) -- restarted, uncounted
      assert.are.equal(3, #other) -- the list goes on
    end)
  end)

  describe("through the LuaJIT FFI", function()
    local ok_ffi = pcall(require, "ffi")
    local it_jit = ok_ffi and it or pending
    it_jit("picks the same, right after another process reconciled", function()
      local uffi = require "upstream.ffi"
      local l = upstream.new({ "a", "b", "c" }, { shared = name() })
      local pick = uffi.picker(l)
      assert.are.equal("a", pick())
      assert.are.equal(0, in_child(function()
        assert(pick() == "b")
        l:reconcile({ "x", "c" })
      end))
      -- resynced through list:pick(); rr goes on at (rr + 1) mod n: c x
      assert.are.equal("c", pick())
      assert.are.equal("x", pick())
      assert.are.equal("c", pick())
      local h = upstream.new({ "a", "b" }, { shared = name(), strategy = "hash" })
      local hp = uffi.picker(h)
      for k = 1, 10 do assert.are.equal(h:pick("k" .. k), hp("k" .. k)) end
    end)

    it_jit("picks round robin without the lock", function()
      local uffi = require "upstream.ffi"
      local l = upstream.new({ "a", "b", "c" }, { shared = name() })
      local pick = uffi.picker(l)
      assert.are.equal("a", pick()) -- resyncs through list:pick()
      local before = l:_shm().locks
      local got = {}
      for i = 1, 30 do got[i] = pick() end
      assert.are.equal(0, l:_shm().locks - before - 1)
      assert.are.equal("bcabca", table.concat(got):sub(1, 6))
      local s = uffi._pick_slot(l)
      assert.are.equal("b", l:_slots()[s + 1])
    end)

    it_jit("picks weighted without the lock from one period", function()
      local uffi = require "upstream.ffi"
      local bs = { "a", "b", "c" }
      local l = upstream.new(bs, { shared = name(), strategy = "weighted" })
      local p = upstream.new(bs, { strategy = "weighted" })
      l:set_weight("a", 5); p:set_weight("a", 5)
      l:set_weight("b", 2); p:set_weight("b", 2)
      local pick = uffi.picker(l)
      assert.are.equal(p:pick(), pick()) -- resyncs, records the period
      local before = l:_shm().locks
      for k = 1, 40 do assert.are.equal(p:pick(), pick(), "pick " .. k) end
      assert.are.equal(0, l:_shm().locks - before - 1) -- _shm()'s own
    end)

    it_jit("picks hash without the lock while its table is complete", function()
      local uffi = require "upstream.ffi"
      local l = upstream.new({ "a", "b", "c" }, { shared = name(), strategy = "hash" })
      local p = upstream.new({ "a", "b", "c" }, { strategy = "hash" })
      local pick = uffi.picker(l)
      assert.are.equal(p:pick("k0"), pick("k0")) -- resyncs through list:pick()
      local before = l:_shm().locks
      local got = {}
      for i = 1, 30 do got[i] = pick("k" .. i) end
      assert.are.equal(0, l:_shm().locks - before - 1)
      for i = 1, 30 do assert.are.equal(p:pick("k" .. i), got[i]) end
      l:down("b"); l:down("b"); l:down("b") -- a build to make: one locked pick
      before = l:_shm().locks
      pick("x"); pick("x")
      assert.are.equal(1, l:_shm().locks - before - 1)
      local s = uffi._pick_slot(l, "k1")
      assert.are.equal(got[1], l:_slots()[s + 1])
    end)

    it_jit("picks hash without the lock when none is eligible", function()
      local uffi = require "upstream.ffi"
      local l = upstream.new({ "a", "b" }, { shared = name(), strategy = "hash" })
      local pick = uffi.picker(l)
      assert(pick("k0")) -- resyncs through list:pick(), builds the table
      for _ = 1, 3 do l:down("a"); l:down("b") end
      local got = {}
      assert.are.equal(0, locks_of(l, 10, function() got[#got + 1] = { pick("k" .. #got) } end))
      for i = 1, 10 do
        assert.is_nil(got[i][1])
        assert.are.equal(select(2, l:pick("k" .. i)), got[i][2])
      end
      assert.are.equal(0, locks_of(l, 1, function() assert.are.equal(-1, uffi._pick_slot(l, "k1")) end))
    end)
  end)
end)
