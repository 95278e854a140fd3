-- upstream.nginx.addr - backend strings to peers: "10.0.0.1:80" or
-- "[::1]:8080" -> the host and port the balancer hands to set_current_peer
-- and the address nginx prints for that peer in $upstream_addr (IPv6 in
-- ngx_inet6_ntop()'s form, e.g. "[2001:db8::1]:443"), so that the driver can
-- map $upstream_addr back to the backend. IP addresses only: the balancer
-- does not resolve names. Plain Lua, no ngx: it loads in any Lua 5.1-5.4 and
-- LuaJIT (spec/nginx_addr_spec.lua).
--
--   local addr = require "upstream.nginx.addr"
--   addr.parse_backend("[::ffff:7f00:1]:80")
--     --> { host = "[::ffff:7f00:1]", port = 80, addr = "[::ffff:127.0.0.1]:80" }
--   addr.index(slots) --> { parsed = { [b] = peer }, invalid = { [b] = err },
--                           by_addr = { [addr] = { b1, b2, ... } }, size = n }
--
-- This module keeps no cache: the driver keeps one index per list and
-- rebuilds it when the list is reconciled, so what it holds is bounded by
-- the list's size, whatever churn service discovery brings.

local type, tostring, tonumber, pairs = type, tostring, tonumber, pairs
local floor = math.floor
local str_find, str_match, str_sub, str_format = string.find, string.match, string.sub, string.format
local gmatch = string.gmatch
local concat = table.concat

local _M = { _VERSION = require("upstream")._VERSION }

local function valid_port(p)
  local n = tonumber(p)
  return n and n >= 1 and n <= 65535 and floor(n) == n and n or nil
end

-- IPv4 text -> 4 numbers, or nil. Four decimal octets of at most 255
-- ("010" is 10, as nginx's ngx_inet_addr() reads it).
local function parse4(s)
  local a, b, c, d = str_match(s, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if a > 255 or b > 255 or c > 255 or d > 255 then return nil end
  return a, b, c, d
end

-- Appends the groups of str ("1:2:3", "" for none) to out; an embedded IPv4
-- address only as the very last group when `last`. false when malformed.
local function groups(str, out, last)
  if str == "" then return true end
  local k, parts = 0, {}
  for g in gmatch(str .. ":", "([^:]*):") do k = k + 1; parts[k] = g end
  for i = 1, k do
    local g = parts[i]
    if str_find(g, ".", 1, true) then
      if not last or i ~= k then return false end
      local a, b, c, d = parse4(g)
      if not a then return false end
      out[#out + 1] = a * 256 + b
      out[#out + 1] = c * 256 + d
    elseif str_find(g, "^%x%x?%x?%x?$") then
      out[#out + 1] = tonumber(g, 16)
    else
      return false
    end
  end
  return true
end

-- IPv6 text -> 8 words, or nil (RFC 4291 section 2.2: at most one "::",
-- which stands for one or more zero groups; 1 to 4 hex digits a group; an
-- embedded IPv4 address only at the end).
local function parse6(s)
  local words, tail = {}, {}
  local head, rest = s, nil
  local dbl = str_find(s, "::", 1, true)
  if dbl then
    head, rest = str_sub(s, 1, dbl - 1), str_sub(s, dbl + 2)
    if str_find(rest, "::", 1, true) then return nil end
  end
  if not groups(head, words, not dbl) then return nil end
  if rest and not groups(rest, tail, true) then return nil end
  if dbl then
    local fill = 8 - #words - #tail
    if fill < 1 then return nil end -- "::" must stand for a group at least
    for _ = 1, fill do words[#words + 1] = 0 end
    for i = 1, #tail do words[#words + 1] = tail[i] end
  end
  if #words ~= 8 then return nil end
  return words
end

-- 8 words -> text as nginx 1.22's ngx_inet6_ntop() prints it: the first
-- longest run of two or more zero groups as "::", hex in lower case. With
-- `dotted`, the last 32 bits as IPv4 where ngx_inet6_ntop() prints them so:
-- ::ffff:a.b.c.d, ::a.b.c.d (6 zero groups), and ::a.b.c.d with 7 zero
-- groups unless the 15th byte is 0 or the 16th is 1 (so ::2 and ::101 stay
-- hex, ::100 is ::0.0.1.0). Without it, hex only: the form handed to
-- set_current_peer, which nginx parses whatever the last 32 bits are (its
-- IPv4 parser reads 255.255.255.255 as INADDR_NONE and refuses it).
local function ntop6(w, dotted)
  local zero, last, max, n = -1, -1, 1, 0
  for i = 1, 8 do
    if w[i] ~= 0 then
      if max < n then zero, max = last, n end
      n = 0
    else
      if n == 0 then last = i end
      n = n + 1
    end
  end
  if max < n then zero, max = last, n end
  local out, limit = {}, 8
  if zero == 1 then
    if dotted and ((max == 5 and w[6] == 0xffff) or max == 6
        or (max == 7 and floor(w[8] / 256) ~= 0 and w[8] % 256 ~= 1)) then
      limit = 6
    end
    out[#out + 1] = ":"
  end
  local i = 1
  while i <= limit do
    if i == zero then
      out[#out + 1] = ":"
      i = i + max
    else
      out[#out + 1] = str_format("%x", w[i])
      if i < 8 then out[#out + 1] = ":" end
      i = i + 1
    end
  end
  if limit == 6 then
    out[#out + 1] = str_format("%d.%d.%d.%d", floor(w[7] / 256), w[7] % 256,
      floor(w[8] / 256), w[8] % 256)
  end
  return concat(out)
end

-- addr.parse_backend(b): { host =, port =, addr = } or nil, err. host goes
-- to set_current_peer, addr is what nginx prints in $upstream_addr. No
-- cache: a new table each call (the driver keeps one index per list).
local function parse(b)
  if type(b) ~= "string" then
    return nil, str_format("bad backend %s: must be a \"host:port\" string, got a %s",
      tostring(b), type(b))
  end
  local host, port, text
  local v6, p6 = str_match(b, "^%[([^%]]*)%]:(%d+)$")
  if v6 then
    local w = parse6(v6)
    if not w then return nil, str_format("bad backend %q: [%s] is not an IPv6 address", b, v6) end
    text = "[" .. ntop6(w, true) .. "]"
    host, port = "[" .. ntop6(w, false) .. "]", p6
  else
    local h, p4 = str_match(b, "^([^:]+):(%d+)$")
    if not h then
      return nil, str_format("bad backend %q: expected \"ipv4:port\" or \"[ipv6]:port\"", b)
    end
    local x1, x2, x3, x4 = parse4(h)
    if not x1 then
      if str_find(h, "^[%d%.]+$") then
        return nil, str_format("bad backend %q: %s is not an IPv4 address", b, h)
      end
      return nil, str_format("bad backend %q: the host must be an IPv4 address "
        .. "or a bracketed IPv6 address (the balancer does not resolve names)", b)
    end
    if x1 + x2 + x3 + x4 == 1020 then
      return nil, str_format("bad backend %q: 255.255.255.255 is the broadcast address "
        .. "(nginx's balancer refuses it: \"no host allowed\")", b)
    end
    text = x1 .. "." .. x2 .. "." .. x3 .. "." .. x4
    host, port = text, p4
  end
  local pn = valid_port(port)
  if not pn then
    return nil, str_format("bad backend %q: port %s is not in 1..65535", b, port)
  end
  return { host = host, port = pn, addr = text .. ":" .. pn }
end
_M.parse_backend = parse

-- addr.index(slots): the parsed form of every backend in slots (a table
-- whose values are backends, holes allowed: list:_slots()):
--   parsed[b]   the peer of each valid backend
--   invalid[b]  the error of each malformed one
--   by_addr[a]  every backend spelling an address nginx prints as a
--               ("010.0.0.1:80" and "10.0.0.1:80" both under "10.0.0.1:80")
--   size        the number of distinct valid backends
function _M.index(slots)
  local parsed, invalid, by_addr, n = {}, {}, {}, 0
  for _, b in pairs(slots) do
    if parsed[b] == nil and invalid[b] == nil then
      local p, err = parse(b)
      if p then
        parsed[b] = p
        n = n + 1
        local bs = by_addr[p.addr]
        if bs then bs[#bs + 1] = b else by_addr[p.addr] = { b } end
      else
        invalid[b] = err
      end
    end
  end
  return { parsed = parsed, invalid = invalid, by_addr = by_addr, size = n }
end

return _M
