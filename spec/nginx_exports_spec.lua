-- upstream.nginx outside nginx: it loads, and exports what it exported
-- before the split (nginx configs call these names).
local upstream = require "upstream"
local ngxu = require "upstream.nginx"
local addr = require "upstream.nginx.addr"
local checks = require "upstream.nginx.checks"

describe("upstream.nginx exports", function()
  it("re-exports the parser and the checks under their old names", function()
    assert.equal(addr.parse_backend, ngxu.parse_backend)
    assert.equal(checks.http_check, ngxu.http_check)
    assert.equal(checks.tcp_check, ngxu.tcp_check)
    assert.equal(checks.time_left, ngxu.time_left)
  end)

  it("has the driver's functions and nothing private", function()
    for _, name in ipairs({ "start", "stop", "balance", "log" }) do
      assert.is_function(ngxu[name], name)
    end
    assert.is_nil(ngxu._ntop6)
    assert.is_nil(ngxu._parse6)
  end)

  it("takes the C module's version, as do its parts", function()
    assert.is_string(upstream._VERSION)
    assert.equal(upstream._VERSION, ngxu._VERSION)
    assert.equal(upstream._VERSION, addr._VERSION)
    assert.equal(upstream._VERSION, checks._VERSION)
  end)

  it("start() says it is not running in nginx", function()
    local l = upstream.new({ "127.0.0.1:80" })
    assert.has_error(function() ngxu.start(l) end, "upstream.nginx.start: not running in nginx")
    l:shutdown()
  end)

  it("the check builders validate their options outside nginx", function()
    assert.is_function(ngxu.http_check{ path = "/health", expect = { 200, 204 } })
    assert.is_function(ngxu.tcp_check{})
    assert.has_error(function() ngxu.http_check{ path = "health" } end)
    assert.has_error(function() ngxu.tcp_check(1) end, "upstream.nginx.tcp_check: options must be a table")
  end)
end)
