-- list:status() and its cheaper forms (issue 11: last_check, since,
-- latency, timeouts, picks; issue 9 item 6: status(into) refills a table,
-- status_of(b) reads one backend).
local upstream = require "upstream"
local util = require "spec.support.util"

local expect_error = util.expect_error

local FIELDS = { "backend", "score", "healthy", "last_error", "checks", "failures", "timeouts",
  "weight", "tier", "inflight", "picks", "last_check", "since", "latency" }

local function names(n)
  local t = {}
  for i = 1, n do t[i] = "b" .. i end
  return t
end

describe("status", function()
  it("has every field, the times nil until known", function()
    local s = upstream.new({ "a" }):status()[1]
    assert.same({ backend = "a", score = 1, healthy = true, checks = 0, failures = 0, timeouts = 0,
      weight = 1, tier = 0, inflight = 0, picks = 0 }, s)
  end)

  it("times a check on the list's clock: last_check, latency, since", function()
    local c = util.fake_clock(10)
    local list = upstream.new({ "a", "b" }, {
      clock = c.clock, sleep = c.sleep, interval = 1, timeout = 0.5,
      check = function(b)
        upstream.sleep(0.25)
        if b == "b" then return nil, "refused" end
        return true
      end,
    })
    assert.equal(10, list:status()[1].since) -- joined at 10, never crossed
    list:step()
    c.t = 10.25
    list:step()
    local a, b = list:status()[1], list:status()[2]
    assert.equal(10.25, a.last_check)
    assert.near(0.25, a.latency, 1e-12)
    assert.equal(1, a.checks)
    assert.equal("refused", b.last_error)
    assert.equal(10, b.since) -- 1 -> 0: still healthy
    c.t = 11; list:step(); c.t = 11.25; list:step()
    b = list:status_of("b")
    assert.equal(11.25, b.since) -- 0 -> -1 at 11.25
    assert.is_false(b.healthy)
    assert.equal(2, b.failures)
    assert.equal(0, b.timeouts)
  end)

  it("counts timeouts apart from failures", function()
    local c = util.fake_clock()
    local list = upstream.new({ "a" }, {
      clock = c.clock, sleep = c.sleep, interval = 1, timeout = 0.5,
      check = function() upstream.sleep(10) return true end,
    })
    for i = 0, 3 do c.t = i; list:step(); c.t = i + 0.5; list:step() end
    local s = list:status_of("a")
    assert.same({ 4, 4, 4 }, { s.checks, s.failures, s.timeouts })
    assert.equal("health check timed out", s.last_error)
    assert.equal(3.5, s.last_check)
    assert.near(0.5, s.latency, 1e-12)
  end)

  it("counts picks per backend", function()
    for _, st in ipairs(util.STRATEGIES) do
      local list = upstream.new(names(3), { strategy = st })
      for i = 1, 30 do list:pick("k" .. i) end
      local total = 0
      for _, s in ipairs(list:status()) do total = total + s.picks end
      assert.equal(30, total)
    end
    local list = upstream.new({ "a", "b" })
    list:down("b"); list:down("b")
    for _ = 1, 5 do list:pick() end
    assert.same({ 5, 0 }, { list:status_of("a").picks, list:status_of("b").picks })
  end)

  it("counts the picks upstream.ffi makes (LuaJIT)", function()
    if not jit then return end
    local list = upstream.new({ "a", "b" })
    local pick = require("upstream.ffi").picker(list)
    for _ = 1, 10 do pick() end
    assert.same({ 5, 5 }, { list:status_of("a").picks, list:status_of("b").picks })
  end)

  it("keeps the counters of kept members across reconcile", function()
    local list = upstream.new({ "a", "b" })
    for _ = 1, 4 do list:pick() end
    list:reconcile({ "c", "b", "a" })
    assert.same({ 2, 2, 0 }, { list:status_of("a").picks, list:status_of("b").picks,
      list:status_of("c").picks })
  end)

  describe("status() rows", function()
    local function a_list()
      local c = util.fake_clock()
      local list = upstream.new({ "a", "b", "a" }, {
        clock = c.clock, sleep = c.sleep, interval = 1,
        check = function(b) if b == "b" then return nil, "no" end return true end,
      })
      list:step()
      return list
    end

    it("iterate with pairs: every field that is not nil, once, then what the caller set", function()
      local st = a_list():status()
      st[2].mine = 7
      st[2].score = 99 -- the caller's own value shows
      local seen = {}
      for k, v in pairs(st[2]) do
        assert.is_nil(seen[k], k)
        seen[k] = v
      end
      local want = {}
      for _, k in ipairs(FIELDS) do want[k] = st[2][k] end
      want.mine, want.score = 7, 99
      assert.same(want, seen)
      assert.equal("no", seen.last_error)
      assert.equal(0, #st[2])
    end)

    it("keep their values while the list moves on", function()
      local list = a_list()
      local st = list:status()
      local r = st[1]
      local score = list:score("a")
      list:down("a"); list:down("a"); list:down("a")
      list:reconcile({ "z" })
      collectgarbage()
      assert.same({ "a", score, true, 1 }, { r.backend, r.score, r.healthy, r.checks })
      assert.equal("no", st[2].last_error)
      assert.is_nil(st[1].last_error)
      assert.is_nil(r.nope)
      assert.is_nil(r[1])
    end)

    it("given back to status(into) or status_of, become plain rows with no stale field", function()
      local list = a_list()
      local st = list:status()
      local row2, row1 = st[2], st[1]
      row1.extra = "kept"
      list:reconcile({ "c", "d" })
      assert.equal(st, list:status(st))
      assert.equal(2, #st)
      assert.equal(row2, st[2])
      assert.equal(list:status_of(rawget(st[2], "backend")).backend, rawget(st[2], "backend"))
      assert.is_nil(getmetatable(st[2]))
      assert.is_nil(st[2].last_error)
      assert.is_nil(st[2].last_check)
      assert.equal("kept", rawget(row1, "extra"))
      local r = list:status()[1]
      assert.equal(r, list:status_of("d", r))
      assert.equal("d", rawget(r, "backend"))
      assert.is_nil(getmetatable(r))
    end)

    it("make at most 200 bytes of garbage a member (Lua 5.2+; 5.1 and LuaJIT give plain tables)", function()
      local list = upstream.new(names(20000))
      for k = 1, 20000, 10 do list:down("b" .. k) end
      list:status()
      collectgarbage(); collectgarbage(); collectgarbage("stop")
      local before = collectgarbage("count")
      local st = list:status()
      local kb = collectgarbage("count") - before
      collectgarbage("restart")
      assert.equal(20000, #st)
      if _VERSION == "Lua 5.1" then return end
      assert.is_true(kb * 1024 / 20000 <= 200, kb * 1024 / 20000 .. " B/member")
    end)
  end)

  describe("status(into)", function()
    it("refills the rows of the table it is given and returns it", function()
      local list = upstream.new({ "a", "b", "c" })
      local t = list:status()
      local rows = { t[1], t[2], t[3] }
      t[1].extra = "kept"
      list:down("b"); list:down("b")
      assert.equal(t, list:status(t))
      assert.equal(rows[2], t[2])
      assert.is_false(t[2].healthy)
      assert.equal("kept", t[1].extra)
      assert.equal(3, #t)
    end)

    it("makes rows that are missing or not tables, drops the ones past the end", function()
      local list = upstream.new({ "a", "b" })
      local t = { "junk", nil, { score = 99 }, { score = 98 }, { score = 97 } }
      list:status(t)
      assert.equal(2, #t)
      assert.is_nil(t[3])
      assert.equal("a", t[1].backend)
      assert.equal("b", t[2].backend)
      list:reconcile({ "a", "b", "c", "d" })
      list:status(t)
      assert.same({ "a", "b", "c", "d" }, { t[1].backend, t[2].backend, t[3].backend, t[4].backend })
    end)

    it("clears the fields that became nil", function()
      local c = util.fake_clock()
      local ok = false
      local list = upstream.new({ "a" }, {
        clock = c.clock, sleep = c.sleep, interval = 1,
        check = function() if ok then return true end return nil, "no" end,
      })
      list:step()
      local t = list:status()
      assert.equal("no", t[1].last_error)
      ok = true
      c.t = 1; list:step()
      list:status(t)
      assert.is_nil(t[1].last_error)
      for _, k in ipairs(FIELDS) do
        if k ~= "last_error" then assert.is_not_nil(t[1][k], k) end
      end
    end)

    it("makes almost no garbage when its rows are reused", function()
      local list = upstream.new(names(1000))
      local t = list:status()
      list:status(t)
      collectgarbage(); collectgarbage("stop")
      local before = collectgarbage("count")
      list:status(t)
      local kb = collectgarbage("count") - before
      collectgarbage("restart")
      assert.is_true(kb < 4, kb .. " KB")
    end)

    it("refuses what is not a table", function()
      local list = upstream.new({ "a" })
      expect_error(function() list:status(1) end, "table expected")
      expect_error(function() list:status_of("a", "x") end, "table expected")
    end)

    it("survives finalizers that reconcile or shut the list down meanwhile", function()
      local list = upstream.new(names(50))
      local t = {}
      for k = 1, 20 do
        local _ = util.finalizer(function()
          if k % 2 == 0 then list:reconcile(names(k)) else list:down("b1") end
        end)
        _ = nil
        if k == 15 then util.finalizer(function() list:shutdown() end) end
        collectgarbage("step", 1)
        list:status(t)
        assert.is_true(#t >= 1)
        for i = 1, #t do assert.is_string(t[i].backend) end
      end
    end)
  end)

  describe("status_of(b [, into])", function()
    it("is the row status() has for b, nil for a non-member", function()
      local list = upstream.new({ "a", "b" }, { weights = { b = 7 } })
      list:pick()
      assert.same(list:status()[2], list:status_of("b"))
      assert.is_nil(list:status_of("z"))
      assert.is_nil(list:status_of(nil))
    end)

    it("refills the row it is given", function()
      local list = upstream.new({ "a", "b" })
      local r = list:status_of("a")
      assert.equal(r, list:status_of("b", r))
      assert.equal("b", r.backend)
    end)

    it("reads the first of equal members", function()
      local list = upstream.new({ "a", "a" })
      list:pick(); list:pick()
      assert.equal(1, list:status_of("a").picks)
    end)
  end)
end)

-- The status page of upstream.nginx.status, rendered without nginx (the
-- nginx e2e, spec/e2e/status.sh, fetches it from a real one).
describe("upstream.nginx.status", function()
  local status = require "upstream.nginx.status"
  local json = require "spec.support.json"

  -- a list with a healthy, a failing and an awkward backend
  local function lists()
    local c = util.fake_clock(100)
    local evil = '<script>alert("x")</script>&\1\n'
    local web = upstream.new({ "10.0.0.1:80", "10.0.0.2:80", evil }, {
      clock = c.clock, sleep = c.sleep, interval = 1, timeout = 0.5, weights = { ["10.0.0.2:80"] = 3 },
      check = function(b)
        if b == "10.0.0.2:80" then return nil, "HTTP 503 <b>\"busy\"</b>\t\0" end
        return true
      end,
    })
    for i = 0, 2 do c.t = 100 + i; web:step() end
    c.t = 103.5
    return { web = web, empty = upstream.new({}) }, evil
  end

  it("serves Prometheus text by default", function()
    local ls = lists()
    local body, ctype = status.render(ls)
    assert.equal("text/plain; version=0.0.4; charset=utf-8", ctype)
    assert.equal(upstream.metrics(ls), body)
  end)

  it("serves JSON that decodes back to the rows", function()
    local ls, evil = lists()
    local body, ctype = status.render(ls, "json")
    assert.equal("application/json", ctype)
    local d = json.decode(body)
    assert.equal(upstream._VERSION, d.version)
    local web = d.lists.web
    assert.equal(3, web.backends)
    assert.equal(2, web.healthy)
    assert.equal(103.5, web.now)
    assert.same({}, d.lists.empty.members)
    assert.same({ "10.0.0.1:80", "10.0.0.2:80", evil },
      { web.members[1].backend, web.members[2].backend, web.members[3].backend })
    local bad = web.members[2]
    assert.is_false(bad.healthy)
    assert.equal(-2, bad.score)
    assert.equal(3, bad.weight)
    assert.equal(3, bad.failures)
    assert.equal('HTTP 503 <b>"busy"</b>\t\0', bad.last_error)
    assert.equal(102, bad.last_check)
    assert.equal(101, bad.since)
    assert.is_nil(web.members[1].last_error)
  end)

  it("writes JSON that python's json module reads, control characters escaped", function()
    local body = status.render(lists(), "json")
    assert.equal("\n", body:sub(-1))
    assert.is_nil(body:sub(1, -2):find("[%z\1-\31]", 1))
    local f = io.popen("command -v python3")
    local py = f:read("*l")
    f:close()
    if not py then return end
    local name = os.tmpname()
    local out = assert(io.open(name, "w"))
    out:write(body)
    out:close()
    local p = io.popen(py .. [[ -c 'import json,sys; d=json.load(open(sys.argv[1])); ]]
      .. [[print(len(d["lists"]["web"]["members"]), d["lists"]["web"]["members"][1]["failures"])' ]] .. name)
    local got = p:read("*a")
    p:close()
    os.remove(name)
    assert.equal("3 3\n", got)
  end)

  it("encodes JSON values as the format requires", function()
    assert.equal("null", status.json(0 / 0))
    assert.equal("[null,null]", status.json({ math.huge, -math.huge }))
    assert.equal('"a\\"b\\\\c\\n\\u0001\\u001f"', status.json('a"b\\c\n\1\31'))
    assert.equal("[]", status.json(setmetatable({}, status.ARRAY)))
    assert.equal('{"a":1,"b":[true,false]}', status.json({ b = { true, false }, a = 1 }))
    assert.equal("0.1", status.json(0.1))
    assert.equal("-3", status.json(-3))
    assert.equal(1 / 3, json.decode(status.json(1 / 3)))
  end)

  it("serves a self-contained HTML page, one row per backend, everything escaped", function()
    local ls = lists()
    local body, ctype = status.render(ls, "html")
    assert.equal("text/html; charset=utf-8", ctype)
    assert.truthy(body:match("^<!DOCTYPE html>"))
    -- no script, no external asset
    assert.is_nil(body:lower():find("<script", 1, true))
    assert.is_nil(body:find("src=", 1, true))
    assert.is_nil(body:find("href=", 1, true))
    assert.is_nil(body:find("http", 1, true))
    local rows = {}
    for class, cells in body:gmatch('<tr class="(%a+)">(.-)</tr>') do
      local t = {}
      for cell in cells:gmatch("<td[^>]*>(.-)</td>") do t[#t + 1] = cell end
      rows[#rows + 1] = { class = class, cells = t }
    end
    assert.equal(3, #rows)
    assert.same({ "healthy", "unhealthy", "healthy" }, { rows[1].class, rows[2].class, rows[3].class })
    local r = rows[2].cells
    assert.equal("10.0.0.2:80", r[1])
    assert.equal("DOWN", r[2])
    assert.equal("-2", r[3])
    assert.equal("3", r[5])
    assert.equal("1.50 s ago", r[7]) -- last check at 102, now 103.5
    assert.equal("HTTP 503 &lt;b&gt;&quot;busy&quot;&lt;/b&gt;\t\0", r[9])
    assert.equal("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;\1\n", rows[3].cells[1])
    assert.truthy(body:find("<h2>empty</h2>", 1, true))
  end)

  it("refuses an unknown format and what is not a table of lists", function()
    local body, err = status.render(lists(), "xml")
    assert.is_nil(body)
    assert.equal('unknown format "xml" (prometheus, json, html)', err)
    expect_error(function() status.render(nil, "json") end,
      "upstream.nginx.status: lists must be a table { name = list } (got nil)")
    expect_error(function() status.render({ a = {} }, "html") end,
      "upstream.nginx.status: lists.a must be an upstream.list (got table)")
    expect_error(function() status.render({ upstream.new({}) }) end,
      "upstream.nginx.status: list names must be strings (got number)")
    expect_error(function() status.serve({}) end, "not running inside nginx")
  end)

  it("is upstream.nginx.status's serve", function()
    assert.equal(status.serve, require("upstream.nginx").status)
  end)
end)
