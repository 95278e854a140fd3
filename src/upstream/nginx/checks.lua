-- upstream.nginx.checks - the health checks upstream.nginx ships:
-- http_check{} (an HTTP/1.1 request, healthy on the expected status) and
-- tcp_check{} (connect only). Each builds a check function, called as
-- check(backend, job) in an ngx light thread, that bounds every socket
-- operation by the time left to the job's deadline (time_left(job)).
-- upstream.nginx re-exports all three (ngxu.http_check, ngxu.tcp_check,
-- ngxu.time_left). The builders validate their options anywhere; the check
-- functions need nginx's cosockets.

local type, tostring, tonumber, error = type, tostring, tonumber, error
local ipairs, pairs = ipairs, pairs
local floor = math.floor
local str_find, str_match, str_sub = string.find, string.match, string.sub
local concat = table.concat

-- nil outside nginx: the builders still work there (upstream.nginx loads in
-- plain Lua); only the check functions they return need cosockets.
local ngx = ngx
local ngx_socket_tcp = ngx and ngx.socket.tcp

local parse_backend = require("upstream.nginx.addr").parse_backend

local _M = { _VERSION = require("upstream")._VERSION }

-- checks.time_left(job): seconds left to the job's deadline on the list's
-- clock.
local function time_left(job)
  return job.deadline - job.list:now()
end
_M.time_left = time_left

-- Milliseconds left (>= 1), or nil when the deadline has passed.
local function ms_left(job)
  local ms = floor(time_left(job) * 1000)
  if ms < 1 then return nil end
  return ms
end

-- A socket connected to the backend, its timeouts set to the time left.
local function connect(backend, job)
  local p, err = parse_backend(backend)
  if not p then return nil, err end
  local ms = ms_left(job)
  if not ms then return nil, "timeout" end
  local sock = ngx_socket_tcp()
  sock:settimeouts(ms, ms, ms)
  local ok
  ok, err = sock:connect(p.host, p.port)
  if not ok then return nil, "connect: " .. tostring(err) end
  return sock
end

-- ngxu.tcp_check{}: healthy when a TCP connection opens before the deadline.
function _M.tcp_check(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("upstream.nginx.tcp_check: options must be a table", 2)
  end
  return function(backend, job)
    local sock, err = connect(backend, job)
    if not sock then return nil, err end
    sock:close()
    return true
  end
end

-- ngxu.http_check{ path = "/health", expect = 200, host = nil, method = "GET",
--                  headers = {} }
-- A plain HTTP/1.1 request (Connection: close); healthy when the status is
-- expect (a number or a list of numbers; default: any 2xx).
function _M.http_check(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("upstream.nginx.http_check: options must be a table", 2)
  end
  local path = opts.path or "/"
  if type(path) ~= "string" or str_sub(path, 1, 1) ~= "/" or str_find(path, "[%s%c]") then
    error("upstream.nginx.http_check: path must be a string starting with '/' "
      .. "without spaces, got " .. tostring(path), 2)
  end
  local method = opts.method or "GET"
  if type(method) ~= "string" or not str_find(method, "^%u+$") then
    error("upstream.nginx.http_check: bad method " .. tostring(method), 2)
  end
  local expect = {}
  local e = opts.expect
  if e == nil then
    for s = 200, 299 do expect[s] = true end
  elseif type(e) == "number" then
    expect[e] = true
  elseif type(e) == "table" then
    for _, s in ipairs(e) do
      if type(s) ~= "number" then error("upstream.nginx.http_check: expect must hold numbers", 2) end
      expect[s] = true
    end
  else
    error("upstream.nginx.http_check: expect must be a status or a list of statuses", 2)
  end
  local extra = {}
  for k, v in pairs(opts.headers or {}) do
    if str_find(k .. tostring(v), "[\r\n]") then
      error("upstream.nginx.http_check: bad header " .. k, 2)
    end
    extra[#extra + 1] = k .. ": " .. tostring(v) .. "\r\n"
  end
  extra = concat(extra)
  local host = opts.host
  if host ~= nil and (type(host) ~= "string" or str_find(host, "[%s%c]")) then
    error("upstream.nginx.http_check: host must be a string without spaces, got " .. tostring(host), 2)
  end
  -- the request, around the Host header; with opts.host, all of it. No
  -- cache per backend: one grows with every backend service discovery
  -- ever names, and a concatenation is nothing next to a connect.
  local head = method .. " " .. path .. " HTTP/1.1\r\nHost: "
  local tail = "\r\nUser-Agent: upstream.nginx\r\nConnection: close\r\n" .. extra .. "\r\n"
  local fixed = host and head .. host .. tail

  return function(backend, job)
    local sock, err = connect(backend, job)
    if not sock then return nil, err end
    local req = fixed or head .. tostring(backend) .. tail
    local ms = ms_left(job)
    if not ms then sock:close(); return nil, "timeout" end
    sock:settimeouts(ms, ms, ms)
    local ok
    ok, err = sock:send(req)
    if not ok then sock:close(); return nil, "send: " .. tostring(err) end
    ms = ms_left(job)
    if not ms then sock:close(); return nil, "timeout" end
    sock:settimeouts(ms, ms, ms)
    local line
    line, err = sock:receive("*l")
    sock:close()
    if not line then return nil, "receive: " .. tostring(err) end
    local status = tonumber(str_match(line, "^HTTP/%d%.%d (%d%d%d)"))
    if not status then return nil, "not an HTTP response: " .. str_sub(line, 1, 60) end
    if not expect[status] then return nil, "status " .. status end
    return true
  end
end

return _M
