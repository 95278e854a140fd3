-- Backend string parsing of upstream.nginx, outside nginx (LuaJIT):
-- prints "ok - ..." / "not ok - ..." lines that spec/e2e/run.sh counts.
--   luajit spec/e2e/parse_test.lua REPO SO_DIR
local repo, so_dir = arg[1] or ".", arg[2] or "./build/luajit"
package.path = repo .. "/src/?.lua;" .. package.path
package.cpath = so_dir .. "/?.so;" .. package.cpath
local ngxu = require "upstream.nginx"

local function check(desc, cond, diag)
  print((cond and "ok - " or "not ok - ") .. desc)
  if not cond and diag then print("#   " .. tostring(diag)) end
end

-- valid: backend -> host given to set_current_peer, port, address as
-- nginx prints it in $upstream_addr
local valid = {
  { "127.0.0.1:80", "127.0.0.1", 80, "127.0.0.1:80" },
  { "010.0.0.1:8080", "10.0.0.1", 8080, "10.0.0.1:8080" },
  { "255.255.255.255:65535", "255.255.255.255", 65535, "255.255.255.255:65535" },
  { "[::1]:80", "[::1]", 80, "[::1]:80" },
  { "[0:0:0:0:0:0:0:1]:80", "[::1]", 80, "[::1]:80" },
  { "[::ffff:7f00:1]:80", "[::ffff:127.0.0.1]", 80, "[::ffff:127.0.0.1]:80" },
  { "[2001:0DB8:0:0:1:0:0:1]:443", "[2001:db8::1:0:0:1]", 443, "[2001:db8::1:0:0:1]:443" },
  { "[1:0:0:2:0:0:0:3]:1", "[1:0:0:2::3]", 1, "[1:0:0:2::3]:1" },
  { "[1:2:3:4:5:6:7:8]:1", "[1:2:3:4:5:6:7:8]", 1, "[1:2:3:4:5:6:7:8]:1" },
  { "[::0.0.0.1]:1", "[::1]", 1, "[::1]:1" },
}
for _, v in ipairs(valid) do
  local p, err = ngxu.parse_backend(v[1])
  check(("parses %q"):format(v[1]),
    p and p.host == v[2] and p.port == v[3] and p.addr == v[4],
    p and (p.host .. " " .. p.port .. " " .. p.addr) or err)
end

-- invalid: backend -> a piece of the message
local invalid = {
  { "localhost:80", "does not resolve names" },
  { "backend.example:8080", "does not resolve names" },
  { "1.2.3.4", "expected" },
  { "1.2.3.4:0", "port 0 is not in 1..65535" },
  { "1.2.3.4:65536", "port 65536" },
  { "256.1.1.1:80", "is not an IPv4 address" },
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
  local p, err = ngxu.parse_backend(v[1])
  check(("rejects %q, naming it"):format(v[1]),
    p == nil and type(err) == "string" and err:find(v[2], 1, true) ~= nil
      and err:find(("%q"):format(v[1]), 1, true) ~= nil,
    err)
end
local p, err = ngxu.parse_backend(42)
check("rejects a non-string backend", p == nil and err:find("must be a", 1, true) ~= nil, err)
p, err = ngxu.parse_backend({})
check("rejects a table backend", p == nil and err:find("table", 1, true) ~= nil, err)

-- cached: the same table every time, errors too
local a, b = ngxu.parse_backend("127.0.0.1:81"), ngxu.parse_backend("127.0.0.1:81")
check("parsed once: the cached result is returned", a ~= nil and rawequal(a, b))
