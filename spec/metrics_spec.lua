-- upstream.metrics(lists): the Prometheus text exposition format, parsed
-- back line by line by a strict reader of the format (HELP and TYPE once
-- per family, before its samples; label values escaped; no series twice).
local upstream = require "upstream"
local util = require "spec.support.util"

local expect_error = util.expect_error

-- Reads one label set "{a="x",b="y"}" from s at i; returns the labels and
-- the index after "}". Raises on anything the format does not allow.
local function read_labels(s, i, line)
  local labels = {}
  assert(s:sub(i, i) == "{", line)
  i = i + 1
  while s:sub(i, i) ~= "}" do
    local name, j = s:match("^([%a_][%w_]*)=\"()", i)
    assert(name, "bad label name in " .. line)
    local v = {}
    i = j
    while true do
      local ch = s:sub(i, i)
      assert(ch ~= "" and ch ~= "\n", "unterminated label value in " .. line)
      if ch == "\\" then
        local e = s:sub(i + 1, i + 1)
        local map = { ["\\"] = "\\", ['"'] = '"', n = "\n" }
        assert(map[e], "bad escape \\" .. e .. " in " .. line)
        v[#v + 1] = map[e]
        i = i + 2
      elseif ch == '"' then
        i = i + 1
        break
      else
        v[#v + 1] = ch
        i = i + 1
      end
    end
    assert(labels[name] == nil, "label twice in " .. line)
    labels[name] = table.concat(v)
    if s:sub(i, i) == "," then i = i + 1 end
  end
  return labels, i + 1
end

local function read_value(v, line)
  if v == "NaN" then return 0 / 0 end
  if v == "+Inf" then return math.huge end
  if v == "-Inf" then return -math.huge end
  local x = tonumber(v)
  assert(x and v:match("^[-+]?[%d.eE+-]+$"), "bad value " .. v .. " in " .. line)
  return x
end

-- Parses text; returns families: name -> { type, help, samples = { {
-- labels, value } } }, and the order the families came in.
local function parse(text)
  assert(text:sub(-1) == "\n", "the text ends with a newline")
  local fams, order, current = {}, {}, nil
  local seen = {}
  for line in text:gmatch("([^\n]*)\n") do
    local kind, name, rest = line:match("^# (%u+) ([%a_:][%w_:]*) (.*)$")
    if kind == "HELP" then
      assert(not fams[name], "family twice: " .. name)
      fams[name] = { help = rest, samples = {} }
      order[#order + 1] = name
      current = name
    elseif kind == "TYPE" then
      assert(current == name and not fams[name].type, "TYPE out of place: " .. line)
      assert(rest == "gauge" or rest == "counter", line)
      fams[name].type = rest
    else
      local n, i = line:match("^([%a_:][%w_:]*)()")
      assert(n, "not a sample: " .. line)
      assert(n == current, "sample outside its family: " .. line)
      local labels, j = read_labels(line, i, line)
      assert(line:sub(j, j) == " ", line)
      local value = read_value(line:sub(j + 1), line)
      local key = {}
      for k, v in pairs(labels) do key[#key + 1] = k .. "=" .. v end
      table.sort(key)
      key = n .. table.concat(key, "\0")
      assert(not seen[key], "series twice: " .. line)
      seen[key] = true
      local f = fams[n].samples
      f[#f + 1] = { labels = labels, value = value }
    end
  end
  return fams, order
end

-- The sample of family f with the given labels (all of them).
local function sample(fams, f, labels)
  for _, s in ipairs(fams[f].samples) do
    local ok = true
    for k, v in pairs(labels) do if s.labels[k] ~= v then ok = false end end
    if ok then return s.value end
  end
  return nil
end

describe("upstream.metrics", function()
  it("reports every list's members, parsed back line by line", function()
    local c = util.fake_clock()
    local web = upstream.new({ "10.0.0.1:80", "10.0.0.2:80" }, {
      clock = c.clock, sleep = c.sleep, interval = 1, timeout = 0.5, weights = { ["10.0.0.2:80"] = 5 },
      check = function(b)
        if b == "10.0.0.2:80" then return nil, "refused" end
        upstream.sleep(0.125)
        return true
      end,
    })
    for i = 0, 2 do c.t = i; web:step(); c.t = i + 0.125; web:step() end
    for _ = 1, 7 do web:pick() end
    local db = upstream.new({ "db1" })
    local fams, order = parse(upstream.metrics({ web = web, db = db }))
    for _, f in ipairs(order) do
      assert.truthy(f:match("^upstream_"), f)
      assert.is_string(fams[f].type)
      assert.truthy(#fams[f].help > 0)
    end
    assert.equal(2, sample(fams, "upstream_backends", { list = "web" }))
    assert.equal(1, sample(fams, "upstream_backends", { list = "db" }))
    assert.equal(1, sample(fams, "upstream_healthy_backends", { list = "web" }))
    local a, b = { list = "web", backend = "10.0.0.1:80" }, { list = "web", backend = "10.0.0.2:80" }
    assert.equal(3, sample(fams, "upstream_score", a))
    assert.equal(-2, sample(fams, "upstream_score", b))
    assert.equal(1, sample(fams, "upstream_healthy", a))
    assert.equal(0, sample(fams, "upstream_healthy", b))
    assert.equal(5, sample(fams, "upstream_weight", b))
    assert.equal(0, sample(fams, "upstream_tier", a))
    assert.equal(7, sample(fams, "upstream_picks_total", a))
    assert.equal(0, sample(fams, "upstream_picks_total", b))
    assert.equal(3, sample(fams, "upstream_checks_total", util.merge(a, { result = "success" })))
    assert.equal(0, sample(fams, "upstream_checks_total", util.merge(a, { result = "failure" })))
    assert.equal(3, sample(fams, "upstream_checks_total", util.merge(b, { result = "failure" })))
    assert.equal(0, sample(fams, "upstream_checks_total", util.merge(b, { result = "timeout" })))
    assert.equal(1, sample(fams, "upstream_health_changes_total", b))
    assert.equal(0.125, sample(fams, "upstream_check_latency_seconds", a))
    assert.is_nil(sample(fams, "upstream_check_latency_seconds", { list = "db" })) -- never checked
    assert.equal("counter", fams.upstream_checks_total.type)
    assert.equal("gauge", fams.upstream_score.type)
    -- lists in the order of their names
    assert.equal("db", fams.upstream_backends.samples[1].labels.list)
  end)

  it("counts timeouts by result", function()
    local c = util.fake_clock()
    local l = upstream.new({ "x" }, {
      clock = c.clock, sleep = c.sleep, interval = 1, timeout = 0.5,
      check = function() upstream.sleep(5) end,
    })
    for i = 0, 1 do c.t = i; l:step(); c.t = i + 0.5; l:step() end
    local fams = parse(upstream.metrics({ l = l }))
    local x = { list = "l", backend = "x" }
    assert.equal(2, sample(fams, "upstream_checks_total", util.merge(x, { result = "timeout" })))
    assert.equal(0, sample(fams, "upstream_checks_total", util.merge(x, { result = "failure" })))
  end)

  it("escapes label values and makes strings of other backends", function()
    local obj = setmetatable({}, { __tostring = function() return "obj\\1" end })
    local weird = 'a"b\\c\nd'
    local l = upstream.new({ weird, 42, obj, true })
    local fams = parse(upstream.metrics({ ['li"st\n'] = l }))
    local got = {}
    for _, s in ipairs(fams.upstream_score.samples) do
      assert.equal('li"st\n', s.labels.list)
      got[#got + 1] = s.labels.backend
    end
    assert.same({ weird, "42", "obj\\1", "true" }, got)
    assert.truthy(upstream.metrics({ x = l }):find('backend="a\\"b\\\\c\\nd"', 1, true))
  end)

  it("makes one series of equal members, their counters summed", function()
    local l = upstream.new({ "a", "b", "a" })
    for _ = 1, 6 do l:pick() end
    local fams = parse(upstream.metrics({ l = l }))
    assert.equal(2, #fams.upstream_score.samples)
    assert.equal(4, sample(fams, "upstream_picks_total", { backend = "a" }))
    assert.equal(2, sample(fams, "upstream_picks_total", { backend = "b" }))
    assert.equal(3, sample(fams, "upstream_backends", { list = "l" }))
  end)

  it("gives the families alone for no list, and survives empty lists", function()
    local fams, order = parse(upstream.metrics({}))
    assert.is_true(#order > 5)
    assert.equal(0, #fams.upstream_score.samples)
    fams = parse(upstream.metrics({ e = upstream.new({}) }))
    assert.equal(0, sample(fams, "upstream_backends", { list = "e" }))
  end)

  it("survives a __tostring that reconciles or shuts the list down", function()
    local l
    local n = 0
    local obj = setmetatable({}, { __tostring = function()
      n = n + 1
      l:reconcile({ "z" })
      l:shutdown()
      return "obj"
    end })
    l = upstream.new({ "a", obj, "b" })
    local fams = parse(upstream.metrics({ l = l }))
    assert.equal(1, n)
    -- the block it anchored first is the one reported
    assert.equal(3, #fams.upstream_score.samples)
    fams = parse(upstream.metrics({ l = l }))
    assert.equal(1, #fams.upstream_score.samples)
  end)

  it("refuses what is not a table of named lists", function()
    expect_error(function() upstream.metrics() end,
      "upstream.metrics: lists must be a table { name = list } (got nil)")
    expect_error(function() upstream.metrics({ upstream.new({ "a" }) }) end,
      "upstream.metrics: list names must be strings (got 1)")
    expect_error(function() upstream.metrics({ a = {} }) end,
      "upstream.metrics: lists.a must be an upstream.list (got table")
    expect_error(function() upstream.metrics({ a = io.stdout }) end,
      "upstream.metrics: lists.a must be an upstream.list")
  end)
end)
