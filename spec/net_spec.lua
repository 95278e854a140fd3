-- The built-in checks (upstream.tcp_check, upstream.http_check) against
-- real loopback servers (spec/support/servers.py) on 127.0.0.1 and ::1.
-- Real sockets need the real clock: the lists' timeouts are short (0.2 s
-- for a check meant to time out, 1 s for one meant to finish, so that a
-- slow runtime such as valgrind still finishes it), and every wait is
-- bounded by a deadline.
local upstream = require "upstream"
local servers = require "spec.support.servers"

local srv

-- every mode of servers.py, one listener each
local MODES = {
  ok = "ok", down = "status", hang = "hang", refused = "refused",
  garbage = "garbage", big = "big", endless = "endless", ok6 = "ok6",
  chunked = "chunked", slowbody = "slowbody", echo = "echo", slow = "slow",
  badstatus = "badstatus", nospace = "nospace", http2 = "http2", barelf = "barelf",
  fold = "fold", badname = "badname", badcl = "badcl", twocl = "twocl",
  badchunk = "badchunk", headonly = "headonly",
}

-- The open fds of this process (nil where /proc is missing). The shell
-- popen starts is this process's child: $PPID is this process. Starting
-- it may hold a short-lived fd of its own (glibc's posix_spawn), which
-- ls sees now and then: the least of a few readings.
local function fd_count()
  local least
  for _ = 1, 5 do
    local p = io.popen("ls /proc/$PPID/fd 2>/dev/null | wc -l")
    local n = tonumber(p:read("*a"))
    p:close()
    if not n or n == 0 then return nil end
    least = math.min(least or n, n)
  end
  return least
end

-- Runs one first round of checks of backends with check; returns the
-- list's status by backend and the seconds it took (real clock).
local function round(backends, check, opts)
  local o = { timeout = 1, interval = 10, check = check }
  for k, v in pairs(opts or {}) do o[k] = v end
  local list = upstream.new(backends, o)
  local t0 = list:now()
  assert.is_true(list:wait_initial(5))
  local took = list:now() - t0
  local by = {}
  for _, s in ipairs(list:status()) do by[s.backend] = s end
  list:shutdown()
  return by, took
end

-- The result of one check of one backend: ok (boolean), last_error, seconds.
local function one(name_or_addr, check, opts)
  local addr = srv.port[name_or_addr] and srv.addr(name_or_addr) or name_or_addr
  local by, took = round({ addr }, check, opts)
  local s = by[addr]
  assert.are.equal(1, s.checks)
  return s.failures == 0, s.last_error, took
end

describe("built-in checks on loopback", function()
  setup(function() srv = servers.start(MODES) end)
  teardown(function() srv.stop() end)

  describe("http_check", function()
    local hc = upstream.http_check({})

    it("succeeds on a healthy server, IPv4", function()
      local ok, err = one("ok", hc)
      assert.is_true(ok, err)
      assert.is_nil(err)
    end)

    it("succeeds on IPv6 loopback ([::1]:port)", function()
      local ok, err = one("ok6", hc)
      assert.is_true(ok, err)
    end)

    it("succeeds on a name that resolves (localhost)", function()
      -- where localhost is also ::1 (listed first), that address is refused
      -- on this port and the next one is tried
      local ok, err = one("localhost:" .. srv.port.ok, hc)
      assert.is_true(ok, err)
    end)

    it("fails on a refused connection", function()
      local ok, err = one("refused", hc)
      assert.is_false(ok)
      assert.are.equal("connect: Connection refused", err)
    end)

    it("fails on a wrong status, with the status and what was expected", function()
      local ok, err = one("down", hc)
      assert.is_false(ok)
      assert.are.equal("status 503 (expected 2xx)", err)
      err = select(2, one("ok", upstream.http_check({ expect = 204 })))
      assert.are.equal("status 200 (expected 204)", err)
      err = select(2, one("ok", upstream.http_check({ expect = { 204, 301 } })))
      assert.are.equal("status 200 (expected one of 204, 301)", err)
      assert.is_true((one("down", upstream.http_check({ expect = { 200, 503 } }))))
    end)

    it("times out on a server that accepts and hangs, at the list's timeout", function()
      local ok, err, took = one("hang", hc, { timeout = 0.2 })
      assert.is_false(ok)
      assert.are.equal("health check timed out", err)
      assert.is_true(took >= 0.2 and took < 1, took)
    end)

    it("fails at once on garbage", function()
      local ok, err = one("garbage", hc)
      assert.is_false(ok)
      assert.matches('^not an HTTP response: "SSH%-2%.0', err)
    end)

    it("reads the reply strictly: each broken rule is a failure that says which", function()
      local body = upstream.http_check({ body = "." })
      local cases = {
        { "badstatus", hc, 'bad status line: "HTTP/1.1 2OO OK"' },
        { "nospace", hc, 'bad status line: "HTTP/1.1 200"' },
        { "http2", hc, 'bad status line: "HTTP/2.0 200 OK"' },
        { "barelf", hc, 'bad status line: "HTTP/1.1 200 OK"' },
        { "fold", hc, 'bad header line: "  folded"' },
        { "badname", hc, 'bad header line: "Bad Name: 1"' },
        { "badcl", hc, 'bad Content-Length: "Content-Length: 1x"' },
        { "twocl", hc, 'conflicting Content-Length: "Content-Length: 3"' },
        { "badchunk", body, 'bad chunked body: "zz\\r\\nok\\r\\n0\\r\\n\\r\\n"' },
        { "headonly", hc, "connection closed before the end of the response header" },
      }
      for _, c in ipairs(cases) do
        local ok, err = one(c[1], c[2])
        assert.is_false(ok, c[1])
        assert.are.equal(c[3], err, c[1])
      end
    end)

    it("caps a header that never ends", function()
      local ok, err, took = one("endless", hc)
      assert.is_false(ok)
      assert.are.equal("response header over 4096 bytes", err)
      assert.is_true(took < 1, took)
    end)

    it("reads no more than it needs of a 100 MB reply", function()
      local ok, err, took = one("big", hc)
      assert.is_true(ok, err)
      assert.is_true(took < 1, took)
      -- with a body pattern: the first few KB are matched, the rest never read
      ok, err, took = one("big", upstream.http_check({ body = "^y+$" }))
      assert.is_true(ok, err)
      assert.is_true(took < 1, took)
    end)

    it("a slow body: the header decides, unless the body must match", function()
      local ok, err = one("slowbody", hc, { timeout = 0.5 })
      assert.is_true(ok, err)
      ok, err = one("slowbody", upstream.http_check({ body = "x" }), { timeout = 0.3 })
      assert.is_false(ok)
      assert.are.equal("health check timed out", err)
    end)

    it("a slow server within the timeout is fine, past it times out", function()
      assert.is_true((one("slow", hc, { timeout = 1 })))
      local ok, err = one("slow", hc, { timeout = 0.2 })
      assert.is_false(ok)
      assert.are.equal("health check timed out", err)
    end)

    it("matches the body against a Lua pattern (chunked bodies decoded)", function()
      assert.is_true((one("chunked", upstream.http_check({ body = "^hello$" }))))
      assert.is_true((one("ok", upstream.http_check({ body = "^ok$" }))))
      local ok, err = one("ok", upstream.http_check({ body = "^fine" }))
      assert.is_false(ok)
      assert.are.equal("body does not match ^fine", err)
    end)

    it("sends method, path, Host, headers and Connection: close", function()
      -- the echo server replies with the request it got as the body
      local function sends(pattern, opts)
        opts = opts or {}
        opts.body = pattern
        local ok, err = one("echo", upstream.http_check(opts))
        assert.is_true(ok, err)
      end
      sends("^GET / HTTP/1%.1\r\nHost: 127%.0%.0%.1:%d+\r\n")
      sends("\r\nConnection: close\r\n")
      sends("\r\nUser%-Agent: upstream\r\n")
      sends("^POST /health%?x=1 HTTP/1%.1\r\nHost: example%.org\r\n.*\r\nX%-Check: 1\r\n\r\n$",
        { path = "/health?x=1", method = "POST", host = "example.org", headers = { ["X-Check"] = 1 } })
    end)

    it("fails a backend that is not a host:port string", function()
      local by = round({ "no-port", "[::1]80", "a:b:c", "127.0.0.1:0", "127.0.0.1:99999", {} }, hc)
      assert.are.equal('backend must be "host:port"', by["no-port"].last_error)
      assert.are.equal('backend must be "[v6 address]:port"', by["[::1]80"].last_error)
      assert.matches("more than one ':'", by["a:b:c"].last_error)
      assert.matches("port must be an integer in %[1, 65535%]", by["127.0.0.1:0"].last_error)
      assert.matches("port must be an integer", by["127.0.0.1:99999"].last_error)
      for b, s in pairs(by) do
        if type(b) == "table" then
          assert.are.equal('backend must be a "host:port" string (got table)', s.last_error)
        end
      end
    end)

    it("fails a name that does not resolve", function()
      local ok, err = one("no-such-host.invalid:80", hc)
      assert.is_false(ok)
      assert.matches("^resolve no%-such%-host%.invalid: ", err)
    end)
  end)

  describe("tcp_check", function()
    local tc = upstream.tcp_check()

    it("succeeds when the connection opens, IPv4 and IPv6", function()
      assert.is_true((one("ok", tc)))
      assert.is_true((one("ok6", tc)))
      assert.is_true((one("hang", tc))) -- connected: that is all it asks
      assert.is_true((one("garbage", tc)))
    end)

    it("fails on a refused connection", function()
      local ok, err = one("refused", tc)
      assert.is_false(ok)
      assert.are.equal("connect: Connection refused", err)
    end)

    it("takes no options", function()
      assert.has_error(function() upstream.tcp_check({ port = 1 }) end,
        'upstream.tcp_check: unknown option string "port" (allowed: none)')
    end)
  end)

  describe("sockets are closed on every path", function()
    local base
    before_each(function()
      collectgarbage()
      collectgarbage()
      base = fd_count()
    end)
    local function same_fds()
      if not base then return end -- no /proc
      assert.are.equal(base, fd_count())
    end

    it("after success, failure and timeout", function()
      local bs = {}
      for _, m in ipairs({ "ok", "down", "hang", "refused", "garbage", "endless", "big" }) do
        bs[#bs + 1] = srv.addr(m)
      end
      round(bs, upstream.http_check({}), { timeout = 0.3 })
      same_fds() -- no collection in between: closed, not collected
    end)

    it("when the list is shut down while checks wait", function()
      local list = upstream.new({ srv.addr("hang"), srv.addr("slowbody") },
        { timeout = 5, check = upstream.http_check({ body = "x" }) })
      list:run(0.1) -- both connected and waiting
      if base then assert.is_true(fd_count() >= base + 2) end
      list:shutdown()
      same_fds()
    end)

    it("when reconcile removes a backend whose check waits", function()
      local list = upstream.new({ srv.addr("hang"), srv.addr("ok") },
        { timeout = 5, check = upstream.http_check({}) })
      list:run(0.1)
      list:reconcile({ srv.addr("ok") })
      same_fds()
      list:shutdown()
    end)

    it("when a check wraps a built-in one in pcall (5.1: a yield across pcall fails)", function()
      local hc = upstream.http_check({})
      local addr = srv.addr("ok")
      collectgarbage("stop") -- a leak must not be hidden by a collection
      finally(function() collectgarbage("restart") end)
      local by = round({ "x" }, function()
        local ok, e = pcall(hc, addr)
        return ok and e, not ok and e or nil
      end)
      assert.are.equal(1, by.x.checks)
      same_fds()
    end)

    it("when a waiting check's list is collected", function()
      local list = upstream.new({ srv.addr("hang") }, { timeout = 5, check = upstream.http_check({}) })
      list:run(0.1)
      list = nil -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      same_fds()
    end)

    it("stays stable across 10 000 checks", function()
      local hc = upstream.http_check({})
      local addr = srv.addr("ok")
      local bs = {}
      for i = 1, 50 do bs[i] = "b" .. i end
      local list = upstream.new(bs, {
        interval = 0.001, timeout = 2,
        check = function() return hc(addr) end,
      })
      local function total()
        local n, f = 0, 0
        for _, s in ipairs(list:status()) do n, f = n + s.checks, f + s.failures end
        return n, f
      end
      local t0 = list:now()
      local n, failures = 0, 0
      -- bounded: 10 000 checks, or 30 s (a slow runtime: valgrind)
      while n < 10000 and list:now() - t0 < 30 do
        list:run(0.05)
        n, failures = total()
      end
      list:shutdown()
      assert.is_true(n >= 1000, n)
      assert.are.equal(0, failures)
      same_fds()
    end)
  end)

  describe("under the schedulers", function()
    it("step() polls the sockets without waiting: a loop of steps finishes a check", function()
      local list = upstream.new({ srv.addr("ok") }, { timeout = 1, check = upstream.http_check({}) })
      local t0, steps = list:now(), 0
      while list:status()[1].checks == 0 and list:now() - t0 < 2 do
        list:step()
        steps = steps + 1
      end
      assert.are.equal(1, list:status()[1].checks)
      assert.is_nil(list:status()[1].last_error)
      list:shutdown()
    end)

    it("run() waits in poll(): a hanging check does not spin", function()
      local list = upstream.new({ srv.addr("hang") }, { timeout = 0.3, interval = 10, check = upstream.http_check({}) })
      local c0 = os.clock()
      list:run(0.3)
      -- the CPU time of a 0.3 s wait: far below the wall time (a spin would use all of it)
      assert.is_true(os.clock() - c0 < 0.2, os.clock() - c0)
      list:shutdown()
    end)

    it("cannot run under due()/report(): it raises a clear error there", function()
      local hc = upstream.http_check({})
      local co = coroutine.create(function() return hc(srv.addr("hang")) end)
      local ok, err = coroutine.resume(co)
      assert.is_false(ok)
      assert.matches("tcp_check and http_check run only as the check of a list driven by "
        .. "step%(%), run%(%) or wait_initial%(%)", err)
    end)

    it("raises outside a check even when the connection fails at once", function()
      local refused = srv.addr("refused")
      for _, c in ipairs({ upstream.tcp_check({}), upstream.http_check({}) }) do
        for _, call in ipairs({
          function() return c(refused) end,
          function() return coroutine.wrap(function() return c(refused) end)() end,
        }) do
          local ok, err = pcall(call)
          assert.is_false(ok)
          assert.matches("tcp_check and http_check run only as the check", err)
        end
      end
    end)

    it("with a sleep option, the sockets are polled after each sleep", function()
      local slept = 0
      local list = upstream.new({ srv.addr("slow") }, {
        timeout = 1, check = upstream.http_check({}),
        sleep = function(s) slept = slept + s; os.execute("sleep 0.01") end,
      })
      assert.is_true(list:wait_initial(2))
      assert.is_nil(list:status()[1].last_error)
      assert.is_true(slept > 0) -- the reply came 0.3 s later: it slept
      list:shutdown()
    end)
  end)
end)

describe("built-in check options", function()
  local function err_of(fn, opts)
    local ok, e = pcall(upstream[fn], opts)
    assert.is_false(ok)
    return e
  end

  it("name the option and the rule", function()
    local PATH = "upstream.http_check: option 'path' must be a string starting with '/', "
      .. "without spaces or control characters"
    local EXPECT = "upstream.http_check: option 'expect' must be an HTTP status "
      .. "(an integer in [100, 599]), a list of them, or nil (any 2xx)"
    local function plain(text) return (text:gsub("%p", "%%%0")) end
    local rows = { -- { options, what the error must contain (a pattern) }
      { { path = "health" }, plain(PATH .. ' (got string "health")') },
      { { path = "/a b" }, plain(PATH) },
      { { path = 1 }, plain(PATH .. " (got 1)") },
      { { method = "get" }, "option 'method' must be a method in capitals" },
      { { host = "" }, "option 'host' must be a non%-empty string" },
      { { host = "a\r\nb" }, "option 'host' must be" },
      { { expect = 99 }, plain(EXPECT .. " (got 99)") },
      { { expect = 200.5 }, plain(EXPECT) },
      { { expect = {} }, plain(EXPECT) },
      { { expect = { 200, "204" } }, plain(EXPECT .. ' (got string "204")') },
      { { expect = { 200, x = 1 } }, plain(EXPECT) },
      { { expect = "200" }, plain(EXPECT) },
      { { headers = "X: 1" }, "option 'headers' must be a table" },
      { { headers = { "x" } }, "option 'headers' must have header names as keys %(got 1%)" },
      { { headers = { ["a b"] = "x" } }, "option 'headers' must have header names as keys" },
      { { headers = { X = true } }, "option 'headers' must have strings as values" },
      { { headers = { X = "a\r\nInjected: 1" } }, "option 'headers' has a value with control characters for X" },
      { { headers = { Host = "x" } }, "option 'headers' cannot set Host %(use the 'host' option%)" },
      { { headers = { connection = "x" } }, "option 'headers' cannot set connection %(the check sets it%)" },
      { { body = 1 }, "option 'body' must be a Lua pattern %(a string%)" },
      { { body = "[a" }, "option 'body' must be a Lua pattern %(.*malformed pattern" },
      { { pth = "/" }, plain('unknown option string "pth" (allowed: path, expect, host, method, headers, body)') },
      { { headers = { X = ("a"):rep(3000) } }, "the request would be over" },
    }
    for _, row in ipairs(rows) do
      assert.matches(row[2], err_of("http_check", row[1]))
    end
    assert.matches("upstream.http_check: options must be a table %(got string%)", err_of("http_check", "/health"))
  end)

  it("return check functions", function()
    assert.are.equal("function", type(upstream.http_check()))
    assert.are.equal("function", type(upstream.http_check({ expect = { 200, 204 }, host = "h", method = "HEAD",
      headers = { A = "1", B = 2 }, body = "ok" })))
    assert.are.equal("function", type(upstream.tcp_check()))
    assert.are.equal("function", type(upstream.tcp_check({})))
  end)
end)
