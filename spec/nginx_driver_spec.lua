-- upstream.nginx's request and check paths outside nginx, on a small fake
-- ngx: timers queued and run by hand, light threads run at once, a fake
-- balancer that records the peer, fake cosockets that answer 200. Runs
-- under every runtime (under LuaJIT the picks go through upstream.ffi, as
-- in nginx).
local upstream = require "upstream"

local unpack = table.unpack or unpack -- luacheck: ignore 143

-- The fake ngx, and upstream.nginx loaded against it. F.t is the lists'
-- clock; F.peer the last set_current_peer; F.failure what
-- get_last_failure() says; F.exit the code of the last ngx.exit().
local function fake()
  local F = { t = 0, timers = {}, logs = {}, peers = {} }
  F.clock = function() return F.t end
  local sock = {}
  function sock.settimeouts() end
  function sock.connect() return true end
  function sock.send() return true end
  function sock.receive() return "HTTP/1.1 200 OK" end
  function sock.close() end
  F.ngx = {
    ERR = 4, WARN = 5, NOTICE = 6, DEBUG = 8, status = 200, var = {},
    req = { start_time = function() return F.start end },
    log = function(level, ...)
      local t = { ... }
      for i = 1, select("#", ...) do t[i] = tostring(t[i]) end
      F.logs[#F.logs + 1] = level .. " " .. table.concat(t)
    end,
    exit = function(code) F.exit = code end,
    get_phase = function() return "init_worker" end,
    timer = { at = function(delay, fn, ...)
      F.timers[#F.timers + 1] = { fn = fn, args = { ... }, delay = delay }
      return true
    end },
    thread = {
      spawn = function(fn, ...)
        local co = coroutine.create(fn)
        assert(coroutine.resume(co, ...))
        return co
      end,
      kill = function() return true end,
    },
    worker = { exiting = function() return false end, pid = function() return 1 end },
    socket = { tcp = function() return setmetatable({}, { __index = sock }) end },
  }
  F.stubs = {
    ["ngx.semaphore"] = { new = function()
      return { post = function() end, wait = function(_, s) F.t = F.t + s; return true end }
    end },
    ["ngx.balancer"] = {
      set_current_peer = function(host, port)
        F.peer = host .. " " .. port
        F.peers[#F.peers + 1] = F.peer
        return true
      end,
      set_more_tries = function(n) F.tries = n end,
      get_last_failure = function() return F.failure end,
    },
    -- F.req: the current request (a number, as the driver keys requests by
    -- their address; nil: no request), F.start its start time
    ["resty.core.base"] = { get_request = function() return F.req end },
  }
  if not pcall(require, "ffi") then F.stubs.ffi = {} end -- never used: no request
  -- runs the timers queued so far (each re-arms itself for the next run)
  function F.run()
    local ts = F.timers
    F.timers = {}
    for _, x in ipairs(ts) do x.fn(false, unpack(x.args)) end
  end
  return F
end

local MODULES = { "upstream.nginx", "upstream.nginx.addr", "upstream.nginx.checks" }

describe("upstream.nginx on a fake ngx", function()
  local F, ngxu, saved

  before_each(function()
    F = fake()
    saved = { ngx = rawget(_G, "ngx"), loaded = {} }
    for name, m in pairs(F.stubs) do
      saved.loaded[name] = package.loaded[name]
      package.loaded[name] = m
    end
    for _, name in ipairs(MODULES) do
      saved.loaded[name] = package.loaded[name]
      package.loaded[name] = nil
    end
    _G.ngx = F.ngx
    ngxu = require "upstream.nginx"
  end)

  after_each(function()
    _G.ngx = saved.ngx
    for name in pairs(F.stubs) do package.loaded[name] = saved.loaded[name] end
    for _, name in ipairs(MODULES) do package.loaded[name] = saved.loaded[name] end
  end)

  local function tiers_of(l)
    local t = {}
    for _, s in ipairs(l:status()) do t[s.backend] = s.tier end
    return t
  end

  -- a list on F's clock
  local function list(backends, opts)
    opts = opts or {}
    opts.clock = F.clock
    return upstream.new(backends, opts)
  end

  local function no_loop_error()
    for _, l in ipairs(F.logs) do assert.falsy(l:find("check loop", 1, true), l) end
  end

  describe("checks", function()
    it("pass the tier a check returns to the list (success: a number; failure: nil, err, tier)", function()
      local l = list({ "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4" }, {
        tiers = { min = 0, max = 5, init = 1 },
        check = function(b)
          if b == "127.0.0.1:1" then return 2 end
          if b == "127.0.0.1:2" then return nil, "refused", 3 end
          if b == "127.0.0.1:3" then error("boom") end
          return true -- keeps the tier
        end,
      })
      assert.same({ ["127.0.0.1:1"] = 1, ["127.0.0.1:2"] = 1, ["127.0.0.1:3"] = 1, ["127.0.0.1:4"] = 1 },
        tiers_of(l))
      assert.is_true(ngxu.start(l))
      F.run()
      no_loop_error()
      assert.same({ ["127.0.0.1:1"] = 2, ["127.0.0.1:2"] = 3, ["127.0.0.1:3"] = 1, ["127.0.0.1:4"] = 1 },
        tiers_of(l))
      local st = {}
      for _, s in ipairs(l:status()) do st[s.backend] = s end
      assert.equal(1, st["127.0.0.1:1"].checks)
      assert.equal("refused", st["127.0.0.1:2"].last_error)
      assert.truthy(st["127.0.0.1:3"].last_error:find("boom", 1, true))
      -- the next round, through start's check override: tiers move again
      ngxu.stop(l)
      local l2 = list({ "127.0.0.1:1" }, { tiers = { min = 0, max = 5, init = 0 },
        check = function() return true end })
      ngxu.start(l2, { check = function() return 4 end })
      F.run()
      assert.same({ ["127.0.0.1:1"] = 4 }, tiers_of(l2))
    end)

    it("a tier above the max is clamped", function()
      local l = list({ "127.0.0.1:1" }, { tiers = { min = 0, max = 3, init = 0 },
        check = function() return 9 end })
      ngxu.start(l)
      F.run()
      assert.same({ ["127.0.0.1:1"] = 3 }, tiers_of(l))
    end)

    it("picks follow the tiers the checks set", function()
      local l = list({ "127.0.0.1:1", "127.0.0.1:2" }, {
        tiers = { min = 0, max = 5, init = 0 },
        check = function(b) return b == "127.0.0.1:1" and 2 or 1 end,
      })
      ngxu.start(l)
      F.run()
      for _ = 1, 4 do
        ngxu.balance(l)
        assert.equal("127.0.0.1 2", F.peer) -- tier 1 beats tier 2
      end
    end)
  end)

  describe("balance with a key", function()
    local B = { "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4", "127.0.0.1:5" }

    it("picks a hash list's backend by the key: the same key, the same backend", function()
      local l = list(B, { strategy = "hash" })
      local seen = {}
      for i = 1, 200 do
        local key = "user-" .. i
        ngxu.balance(l, 1, key)
        assert.is_nil(F.exit)
        local first = F.peer
        assert.equal(first, "127.0.0.1 " .. l:pick(key):match(":(%d+)$")) -- list:pick's answer
        for _ = 1, 3 do
          ngxu.balance(l, 1, key)
          assert.equal(first, F.peer)
        end
        seen[first] = (seen[first] or 0) + 1
      end
      local n = 0
      for _, c in pairs(seen) do n = n + 1; assert.is_true(c >= 15, c) end
      assert.equal(5, n) -- 200 keys spread over the 5
    end)

    it("takes the key in the options table too, and numbers as keys", function()
      local l = list(B, { strategy = "hash" })
      ngxu.balance(l, 1, "k1")
      local p = F.peer
      ngxu.balance(l, { tries = 2, key = "k1" })
      assert.equal(p, F.peer)
      assert.equal(2, F.tries)
      ngxu.balance(l, 1, 42)
      assert.is_nil(F.exit)
      local q = F.peer
      ngxu.balance(l, 1, 42)
      assert.equal(q, F.peer)
    end)

    it("a hash list without a key (a missing header) is served, spread, never an error", function()
      local l = list(B, { strategy = "hash" })
      local seen, n = {}, 0
      for _ = 1, 50 do
        F.peer = nil
        ngxu.balance(l) -- first the list is seen without a key
        assert.is_nil(F.exit)
        assert.is_string(F.peer)
        if not seen[F.peer] then seen[F.peer] = true; n = n + 1 end
      end
      assert.is_true(n >= 3, n)
      local l2 = list(B, { strategy = "hash" })
      ngxu.balance(l2, 1, "a") -- first with a key, then without
      F.peer = nil
      ngxu.balance(l2, 1, nil)
      assert.is_nil(F.exit)
      assert.is_string(F.peer)
    end)

    it("a key that is not a string or number: 502 and the reason logged, no error", function()
      local l = list(B, { strategy = "hash" })
      ngxu.balance(l, 1, {})
      assert.equal(-3, F.exit)
      assert.truthy(F.logs[#F.logs]:find("the key must be a string or a number, got a table", 1, true))
    end)

    it("a retry rehashes: another backend than the one that failed, which is downed", function()
      local l = list(B, { strategy = "hash" })
      for i = 1, 20 do
        local key = "retry-" .. i
        ngxu.balance(l, 1, key)
        local first = F.peer
        local failed = "127.0.0.1:" .. first:match(" (%d+)$")
        local before = l:score(failed)
        F.failure, F.ngx.var.upstream_addr = "failed", failed
        ngxu.balance(l, 1, key)
        F.failure = nil
        assert.is_nil(F.exit)
        assert.are_not.equal(first, F.peer)
        assert.equal(before - 1, l:score(failed))
        l:up(failed)
      end
    end)

    it("other strategies ignore the key; without one they pick as before", function()
      local l = list({ "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3" })
      F.peers = {}
      for _ = 1, 6 do ngxu.balance(l) end
      assert.same({ "127.0.0.1 1", "127.0.0.1 2", "127.0.0.1 3", "127.0.0.1 1", "127.0.0.1 2", "127.0.0.1 3" },
        F.peers)
      F.peers = {}
      for i = 1, 3 do ngxu.balance(l, 1, "k" .. i) end
      assert.same({ "127.0.0.1 1", "127.0.0.1 2", "127.0.0.1 3" }, F.peers)
    end)
  end)

  describe("passive feedback", function()
    -- log() after a request to addr that answered status
    local function log(l, addr, status)
      F.ngx.status, F.ngx.var.upstream_addr, F.ngx.var.upstream_status = status, addr, tostring(status)
      ngxu.log(l)
    end

    it("reaches every backend that spells the address nginx printed", function()
      local l = list({ "010.0.0.1:80", "10.0.0.1:80", "10.0.0.2:80", "[0::1]:80", "[::1]:80" })
      ngxu.balance(l)
      log(l, "10.0.0.1:80", 502)
      assert.equal(0, l:score("010.0.0.1:80"))
      assert.equal(0, l:score("10.0.0.1:80"))
      assert.equal(1, l:score("10.0.0.2:80"))
      log(l, "[::1]:80", 503)
      assert.equal(0, l:score("[0::1]:80"))
      assert.equal(0, l:score("[::1]:80"))
      log(l, "10.0.0.1:80", 200) -- a passive list: successes raise the score
      assert.equal(1, l:score("010.0.0.1:80"))
      assert.equal(1, l:score("10.0.0.1:80"))
    end)

    it("a retry avoids every spelling of the peer that failed, and downs them all", function()
      local l = list({ "010.0.0.1:80", "10.0.0.1:80", "10.0.0.2:80" })
      F.failure, F.ngx.var.upstream_addr = "failed", "10.0.0.1:80"
      ngxu.balance(l)
      assert.equal("10.0.0.2 80", F.peer)
      assert.equal(0, l:score("010.0.0.1:80"))
      assert.equal(0, l:score("10.0.0.1:80"))
    end)

    it("finds a backend added by reconcile", function()
      local l = list({ "127.0.0.1:1" })
      ngxu.balance(l)
      l:reconcile({ "127.0.0.1:2" })
      ngxu.balance(l)
      assert.equal("127.0.0.1 2", F.peer)
      log(l, "127.0.0.1:2", 502)
      assert.equal(0, l:score("127.0.0.1:2"))
    end)
  end)

  describe("passive feedback from the balancer's record (no ngx.var)", function()
    local B = { "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3" }

    -- ngx.var (the table the driver holds) fails the test when read;
    -- allow_var: empty, no $upstream_status
    local function allow_var()
      for k in pairs(F.ngx.var) do F.ngx.var[k] = nil end
      setmetatable(F.ngx.var, nil)
    end
    local function forbid_var()
      allow_var()
      setmetatable(F.ngx.var, { __index = function(_, k) error("ngx.var." .. k .. " read") end })
    end

    -- one request: F.req = id, started at t
    local function req(id, t) F.req, F.start = id, t or id end

    local function port(peer) return "127.0.0.1:" .. peer:match(" (%d+)$") end

    -- the list's first logged request turns recording on (it reads ngx.var)
    local function warm(l)
      req(1000)
      ngxu.balance(l)
      F.ngx.status, F.ngx.var.upstream_status, F.ngx.var.upstream_addr = 200, "200", port(F.peer)
      ngxu.log(l)
      for _, b in ipairs(B) do l:up(b); l:up(b); l:up(b) end
      forbid_var()
    end

    it("a passive list: log() downs the backend the balancer picked on 5xx, raises it on success", function()
      local l = list(B)
      warm(l)
      for i = 1, 30 do
        req(i)
        ngxu.balance(l)
        local b = port(F.peer)
        F.ngx.status = (i % 3 == 0) and 502 or 200
        local before = l:score(b)
        ngxu.log(l)
        if F.ngx.status == 502 then assert.equal(before - 1, l:score(b)) else
          assert.equal(math.min(before + 1, 3), l:score(b)) end
      end
    end)

    it("a checked list records nothing: a success needs no ngx.var, a 5xx reads $upstream_addr", function()
      local l = list(B, { interval = 1, timeout = 0.5, check = function() return true end })
      warm(l)
      local rec = ngxu._index(l)
      req(1); ngxu.balance(l); local b = port(F.peer)
      F.ngx.status = 200; ngxu.log(l) -- forbid_var: any read fails
      assert.equal(3, l:score(b))
      assert.is_nil(next(rec.cur_b))
      req(2); ngxu.balance(l); b = port(F.peer)
      allow_var()
      F.ngx.status, F.ngx.var.upstream_status, F.ngx.var.upstream_addr = 504, "504", b
      ngxu.log(l)
      assert.equal(2, l:score(b))
    end)

    it("concurrent requests: each log() feeds back its own request's pick", function()
      local l = list(B)
      warm(l)
      for _, b in ipairs(B) do l:down(b); l:down(b) end -- all at 1
      req(1); ngxu.balance(l); local b1 = port(F.peer)
      req(2); ngxu.balance(l); local b2 = port(F.peer)
      req(3); ngxu.balance(l); local b3 = port(F.peer)
      assert.are_not.equal(b1, b2)
      req(2); F.ngx.status = 502; ngxu.log(l)
      req(3); F.ngx.status = 200; ngxu.log(l)
      req(1); F.ngx.status = 200; ngxu.log(l)
      assert.equal(0, l:score(b2))
      assert.equal(2, l:score(b1))
      assert.equal(2, l:score(b3))
    end)

    it("retries: the try that failed is downed once, the last try gets the log's feedback", function()
      local l = list(B)
      warm(l)
      req(7)
      ngxu.balance(l)
      local first = port(F.peer)
      F.failure = "failed"
      ngxu.balance(l) -- the retry: no $upstream_addr needed
      F.failure = nil
      local second = port(F.peer)
      assert.are_not.equal(first, second)
      assert.equal(2, l:score(first))
      F.ngx.status = 502
      ngxu.log(l) -- the last try failed too
      assert.equal(2, l:score(first))
      assert.equal(2, l:score(second))
    end)

    it("a 502 from balance() after a failed try counts the failure once", function()
      local l = list({ "127.0.0.1:9" }, { initial_score = 0 })
      warm(l)
      for _ = 1, 10 do if l:score("127.0.0.1:9") > 0 then l:down("127.0.0.1:9") end end -- back to 0
      assert.equal(0, l:score("127.0.0.1:9"))
      req(8)
      ngxu.balance(l)
      F.failure = "failed"
      ngxu.balance(l) -- downs it to -1; nothing left: 502
      F.failure = nil
      assert.equal(-3, F.exit)
      F.ngx.status = 502
      ngxu.log(l)
      assert.equal(-1, l:score("127.0.0.1:9"))
    end)

    it("records stay bounded when requests never reach log(), and speak for no later request", function()
      local l = list(B)
      warm(l)
      local rec = ngxu._index(l)
      local function count()
        local n = 0
        for _, t in ipairs({ rec.cur_b, rec.cur_t, rec.old_b, rec.old_t }) do
          for _ in pairs(t) do n = n + 1 end
        end
        return n
      end
      for i = 1, 100000 do req(i); ngxu.balance(l) end
      assert.is_true(count() <= 4 * 16384, count())
      -- and a request that does log still finds its record
      req(200001); ngxu.balance(l); local b = port(F.peer)
      F.ngx.status = 502; ngxu.log(l)
      assert.equal(2, l:score(b))
      -- a record log() never took (an error_page to a location without
      -- log_by_lua) does not speak for a later request at its address
      req(5, 100)
      ngxu.balance(l)
      b = port(F.peer)
      local before = l:score(b)
      allow_var() -- the later request was not proxied: no $upstream_status
      req(5, 101)
      F.ngx.status = 503
      ngxu.log(l)
      assert.equal(before, l:score(b))
    end)

    it("a passive list all at the high score records nothing; a failure then reads $upstream_addr", function()
      local l = list(B)
      warm(l)
      for i = 1, 6 do req(i); ngxu.balance(l); F.ngx.status = 200; ngxu.log(l) end -- each one at the top
      local rec = ngxu._index(l)
      assert.equal(0, rec.rest)
      for i = 11, 20 do
        req(i); ngxu.balance(l)
        assert.is_nil(next(ngxu._index(l).cur_b)) -- nothing recorded
        F.ngx.status = 200; ngxu.log(l) -- forbid_var: no ngx.var read
      end
      for _, b in ipairs(B) do assert.equal(3, l:score(b)) end
      -- a failure: the backend from $upstream_addr, downed; recording resumes
      req(21); ngxu.balance(l); local b = port(F.peer)
      allow_var()
      F.ngx.status, F.ngx.var.upstream_status, F.ngx.var.upstream_addr = 502, "502", b
      ngxu.log(l)
      assert.equal(2, l:score(b))
      assert.equal(1, rec.rest)
      forbid_var()
      for i = 22, 24 do
        req(i); ngxu.balance(l)
        assert.is_not_nil(next(ngxu._index(l).cur_b))
        F.ngx.status = 200; ngxu.log(l)
      end
      assert.equal(3, l:score(b)) -- raised back through the record, no ngx.var
    end)

    it("a list no log_by_lua ever sees records nothing (feedback through retries only)", function()
      local l = list(B, { interval = 1, timeout = 0.5, check = function() return true end })
      for i = 1, 50 do req(i); ngxu.balance(l) end
      local rec = ngxu._index(l)
      assert.is_nil(next(rec.cur_b))
      assert.is_false(rec.logged)
    end)
  end)

  describe("lists that are dropped", function()
    -- true when nothing but the weak table w holds its list any more
    local function collected(w)
      for _ = 1, 4 do collectgarbage("collect") end
      return w[1] == nil
    end

    -- the driver keeps the last list it met in both phases (one list,
    -- alive until another one comes by): another list's requests move it on
    local function moved_on()
      local other = list({ "127.0.0.1:3" })
      for _ = 1, 2 do ngxu.balance(other) end
    end

    it("a list used by balance and log is collected once dropped (no ephemerons needed)", function()
      local w = setmetatable({}, { __mode = "v" })
      ;(function() -- its own frame: a dead local of a block may stay on the stack
        local l = list({ "127.0.0.1:1", "127.0.0.1:2" })
        w[1] = l
        for i = 1, 3 do -- the first log turns recording on; then records
          F.req, F.start = i, i
          ngxu.balance(l)
          F.ngx.status, F.ngx.var.upstream_status, F.ngx.var.upstream_addr =
            200, "200", F.peer:gsub(" ", ":")
          ngxu.log(l)
        end
        ngxu.balance(l, 1, "key") -- the slow path too
        F.failure = "failed"; F.req = 9; ngxu.balance(l); F.failure = nil
      end)()
      moved_on()
      assert.is_true(collected(w))
    end)

    it("a checked list is collected once its check loop has stopped", function()
      local w = setmetatable({}, { __mode = "v" })
      ;(function()
        local l = list({ "127.0.0.1:1" }, { interval = 1, timeout = 0.5, check = function() return true end })
        w[1] = l
        assert.is_true(ngxu.start(l))
        F.run()
        ngxu.balance(l)
        ngxu.stop(l)
      end)()
      moved_on()
      F.run() -- the timer's last run sees the stop
      assert.equal(0, #F.timers)
      assert.is_true(collected(w))
    end)
  end)

  describe("under churn", function()
    local N, ROUNDS = 10, 1000 -- 10 000 distinct backends in turn

    local function count(t)
      local n = 0
      for _ in pairs(t) do n = n + 1 end
      return n
    end

    -- round r's backends: N - 1 new addresses and a new malformed one
    local function backends(r)
      local t = {}
      for i = 1, N - 1 do t[i] = ("10.%d.%d.%d:80"):format(r % 256, math.floor(r / 256), i) end
      t[N] = "host-" .. r .. ":80"
      return t
    end

    -- one round: reconcile, a round of checks, requests, feedback
    local function churn(l, r)
      l:reconcile(backends(r))
      F.t = F.t + 1
      F.run()
      for _ = 1, 3 do ngxu.balance(l) end
      F.ngx.status, F.ngx.var.upstream_addr, F.ngx.var.upstream_status = 502, F.peer:gsub(" ", ":"), "502"
      ngxu.log(l)
      F.logs, F.peers = {}, {}
    end

    local function checked_list()
      return list(backends(0), { interval = 1, timeout = 0.5,
        check = ngxu.http_check{ path = "/health" } })
    end

    it("keeps the driver's index of a list within the list's size, and memory flat", function()
      local l = checked_list()
      assert.has_error(function() ngxu.start(l) end) -- names the malformed backend
      l:reconcile({ "127.0.0.1:1" })
      assert.is_true(ngxu.start(l))
      local before
      for r = 1, ROUNDS do
        if r == 51 then -- warmed up
          collectgarbage("collect")
          collectgarbage("collect")
          before = collectgarbage("count")
        end
        churn(l, r)
        local ix = ngxu._index(l)
        assert.is_true(count(ix.parsed) <= #l)
        assert.is_true(count(ix.invalid) <= #l)
        assert.is_true(count(ix.by_addr) <= #l)
        assert.is_true(count(ix.told) <= #l)
      end
      collectgarbage("collect")
      collectgarbage("collect")
      local grown = collectgarbage("count") - before
      -- 9 500 backends kept would be megabytes (a peer table, two strings,
      -- a request, an index entry each). One doubling of the string table
      -- is not a leak: a step of 64 KiB (5.1) or 80 KiB (LuaJIT), once,
      -- when the strings the whole busted run holds cross a power of two
      -- (more spec files before this one: spec/net_spec.lua did it)
      assert.is_true(grown < 256, ("grew by %.0f KiB"):format(grown))
      local ix = ngxu._index(l)
      assert.equal(N - 1, count(ix.parsed))
      assert.equal(1, count(ix.invalid))
      assert.is_true(l:status()[1].checks >= 1) -- the checks ran
    end)
  end)
end)
