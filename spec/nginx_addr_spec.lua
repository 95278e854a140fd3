-- upstream.nginx.addr: backend strings -> the host and port given to
-- set_current_peer and the address nginx prints in $upstream_addr. Plain
-- Lua, no nginx: runs under every runtime. The expected texts are nginx
-- 1.22.1's own (its realip module prints what ngx_inet6_addr() parsed
-- through ngx_inet6_ntop(); spec/e2e/run.sh compares the two live).
local addr = require "upstream.nginx.addr"

describe("upstream.nginx.addr", function()
  -- backend -> host given to set_current_peer (IPv6 in hex only, which
  -- nginx parses whatever the last 32 bits hold), port, address as nginx
  -- prints it in $upstream_addr
  local valid = {
    { "127.0.0.1:80", "127.0.0.1", 80, "127.0.0.1:80" },
    { "010.0.0.1:8080", "10.0.0.1", 8080, "10.0.0.1:8080" },
    { "255.255.255.254:65535", "255.255.255.254", 65535, "255.255.255.254:65535" },
    { "[::1]:80", "[::1]", 80, "[::1]:80" },
    { "[0:0:0:0:0:0:0:1]:80", "[::1]", 80, "[::1]:80" },
    { "[::ffff:7f00:1]:80", "[::ffff:7f00:1]", 80, "[::ffff:127.0.0.1]:80" },
    { "[::ffff:1.2.3.4]:80", "[::ffff:102:304]", 80, "[::ffff:1.2.3.4]:80" },
    { "[::FFFF:010.0.0.1]:80", "[::ffff:a00:1]", 80, "[::ffff:10.0.0.1]:80" },
    { "[::ffff:0:0]:80", "[::ffff:0:0]", 80, "[::ffff:0.0.0.0]:80" },
    -- nginx reads 255.255.255.255 as INADDR_NONE: hex for set_current_peer
    { "[::ffff:255.255.255.255]:80", "[::ffff:ffff:ffff]", 80, "[::ffff:255.255.255.255]:80" },
    -- dotted only where ngx_inet6_ntop() prints it so: ::ffff:a.b.c.d, six
    -- zero groups, or seven unless the 15th byte is 0 or the 16th is 1
    { "[::1:2:3]:80", "[::1:2:3]", 80, "[::1:2:3]:80" },
    { "[::1.2.3.4]:80", "[::102:304]", 80, "[::1.2.3.4]:80" },
    { "[::1:0]:80", "[::1:0]", 80, "[::0.1.0.0]:80" },
    { "[::2]:80", "[::2]", 80, "[::2]:80" },
    { "[::ff]:80", "[::ff]", 80, "[::ff]:80" },
    { "[::101]:80", "[::101]", 80, "[::101]:80" },
    { "[::100]:80", "[::100]", 80, "[::0.0.1.0]:80" },
    { "[::1:0:0]:80", "[::1:0:0]", 80, "[::1:0:0]:80" },
    { "[1::1.2.3.4]:80", "[1::102:304]", 80, "[1::102:304]:80" },
    { "[1:2:3:4:5:6:1.2.3.4]:80", "[1:2:3:4:5:6:102:304]", 80, "[1:2:3:4:5:6:102:304]:80" },
    -- "::" for exactly one group (RFC 4291; RFC 5952 only bars printing it)
    { "[::2:3:4:5:6:7:8]:80", "[0:2:3:4:5:6:7:8]", 80, "[0:2:3:4:5:6:7:8]:80" },
    { "[1:2:3::5:6:7:8]:80", "[1:2:3:0:5:6:7:8]", 80, "[1:2:3:0:5:6:7:8]:80" },
    { "[1:2:3:4:5:6:7::]:80", "[1:2:3:4:5:6:7:0]", 80, "[1:2:3:4:5:6:7:0]:80" },
    { "[::]:80", "[::]", 80, "[::]:80" },
    { "[2001:0DB8:0:0:1:0:0:1]:443", "[2001:db8::1:0:0:1]", 443, "[2001:db8::1:0:0:1]:443" },
    { "[1:0:0:2:0:0:0:3]:1", "[1:0:0:2::3]", 1, "[1:0:0:2::3]:1" },
    { "[1:2:3:4:5:6:7:8]:1", "[1:2:3:4:5:6:7:8]", 1, "[1:2:3:4:5:6:7:8]:1" },
    { "[::0.0.0.1]:1", "[::1]", 1, "[::1]:1" },
    { "[::0.0.0.2]:1", "[::2]", 1, "[::2]:1" },
    { "[0:0:0:0:0:0:0.0.1.0]:1", "[::100]", 1, "[::0.0.1.0]:1" },
  }
  for _, v in ipairs(valid) do
    it(("parses %q"):format(v[1]), function()
      local p, err = addr.parse_backend(v[1])
      assert.is_nil(err)
      assert.same({ host = v[2], port = v[3], addr = v[4] }, p)
    end)
  end

  -- backend -> a piece of the message
  local invalid = {
    { "localhost:80", "does not resolve names" },
    { "backend.example:8080", "does not resolve names" },
    { "1.2.3.4", "expected" },
    { "1.2.3.4:0", "port 0 is not in 1..65535" },
    { "1.2.3.4:65536", "port 65536" },
    { "256.1.1.1:80", "is not an IPv4 address" },
    { "1.2.3.256:80", "is not an IPv4 address" },
    { "1..2.3:80", "is not an IPv4 address" },
    { "255.255.255.255:80", "broadcast" },
    { "[::1.2.3.256]:80", "is not an IPv6 address" },
    { "[::ffff:1.2.3.256]:80", "is not an IPv6 address" },
    { "[::1.2.3.4.5]:80", "is not an IPv6 address" },
    { "[::1.2.3]:80", "is not an IPv6 address" },
    -- "::" standing for no group: eight groups and "::" is one too many
    { "[1:2:3:4::5:6:7:8]:80", "is not an IPv6 address" },
    { "[::1:2:3:4:5:6:7:8]:80", "is not an IPv6 address" },
    { "[1:2:3:4:5:6:7:8::]:80", "is not an IPv6 address" },
    { "[1:2:3:4:5:6:7::8]:80", "is not an IPv6 address" },
    { "[1:2:3:4:5:6:7]:80", "is not an IPv6 address" },
    { "[1:2:3:4:5:1.2.3.4]:80", "is not an IPv6 address" },
    { "[1:2:3:4:5:6:7:1.2.3.4]:80", "is not an IPv6 address" },
    { "[:::]:80", "is not an IPv6 address" },
    -- what nginx's own parser lets pass, RFC 4291 does not
    { "[:1::2]:80", "is not an IPv6 address" },
    { "[1::2:]:80", "is not an IPv6 address" },
    { "[00000::1]:80", "is not an IPv6 address" },
    { "[fe80::1%eth0]:80", "is not an IPv6 address" },
    { "1.2.3:80", "is not an IPv4 address" },
    { "[::1]", "expected" },
    { "::1:80", "expected" },
    { "[1::2::3]:80", "is not an IPv6 address" },
    { "[12345::]:80", "is not an IPv6 address" },
    { "[1.2.3.4::]:80", "is not an IPv6 address" },
    { "[1:2:3:4:5:6:7:8:9]:80", "is not an IPv6 address" },
    { " 127.0.0.1:80", "" },
    { "127.0.0.1:80 ", "" },
    { "", "expected" },
  }
  for _, v in ipairs(invalid) do
    it(("rejects %q, naming it"):format(v[1]), function()
      local p, err = addr.parse_backend(v[1])
      assert.is_nil(p)
      assert.is_string(err)
      assert.truthy(err:find(v[2], 1, true), err)
      assert.truthy(err:find(("%q"):format(v[1]), 1, true), err)
    end)
  end

  it("rejects a non-string backend", function()
    local p, err = addr.parse_backend(42)
    assert.is_nil(p)
    assert.truthy(err:find("must be a", 1, true), err)
  end)

  it("rejects a table backend", function()
    local p, err = addr.parse_backend({})
    assert.is_nil(p)
    assert.truthy(err:find("table", 1, true), err)
  end)

  it("keeps no cache: each parse is a new table, nothing is kept", function()
    local a, b = addr.parse_backend("127.0.0.1:81"), addr.parse_backend("127.0.0.1:81")
    assert.same(a, b)
    assert.is_false(rawequal(a, b))
    assert.is_nil(addr.parsed)
    assert.is_nil(addr.invalid)
    assert.is_nil(addr.by_addr)
  end)
end)

describe("upstream.nginx.addr.index", function()
  it("maps an address to every backend that spells it", function()
    local ix = addr.index({ "010.0.0.1:80", "10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80",
                            "[0:0::1]:80", "[::1]:80" })
    local a = ix.by_addr["10.0.0.1:80"]
    table.sort(a)
    assert.same({ "010.0.0.1:80", "10.0.0.1:80" }, a) -- the duplicate once
    assert.same({ "10.0.0.2:80" }, ix.by_addr["10.0.0.2:80"])
    local v6 = ix.by_addr["[::1]:80"]
    table.sort(v6)
    assert.same({ "[0:0::1]:80", "[::1]:80" }, v6)
    assert.equal(5, ix.size)
    assert.same({ host = "10.0.0.1", port = 80, addr = "10.0.0.1:80" }, ix.parsed["010.0.0.1:80"])
  end)

  it("takes a slot table with holes, and files malformed backends apart", function()
    local t = {}
    local ix = addr.index({ [1] = "127.0.0.1:1", [3] = "bogus:80", [7] = t })
    assert.equal(1, ix.size)
    assert.is_not_nil(ix.parsed["127.0.0.1:1"])
    assert.truthy(ix.invalid["bogus:80"]:find("does not resolve names", 1, true))
    assert.truthy(ix.invalid[t]:find("got a table", 1, true))
    assert.is_nil(ix.parsed["bogus:80"])
    assert.same({ "127.0.0.1:1" }, ix.by_addr["127.0.0.1:1"])
  end)
end)
