-- upstream.nginx.status - what the lists decided, for an operator and a
-- scraper, from a content_by_lua location:
--
--   location = /upstream/status {
--     content_by_lua_block { require("upstream.nginx").status({ web = backends }) }
--   }
--
--   GET /upstream/status                Prometheus text (upstream.metrics)
--   GET /upstream/status?format=json    JSON: every list's status() rows
--   GET /upstream/status?format=html    a self-contained HTML page (no
--                                       external asset, no script): one row
--                                       per backend, unhealthy rows marked
--
-- What it shows is this worker's view: each nginx worker runs its own
-- checks and keeps its own scores (and fires its own on_change).
-- render(lists, format) does the work without nginx (the specs use it);
-- json(value) is the encoder.
local upstream = require "upstream"

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local getmetatable, setmetatable, error = getmetatable, setmetatable, error
local floor, huge = math.floor, math.huge
local concat, sort = table.concat, table.sort
local format, gsub, byte = string.format, string.gsub, string.byte

local M = { _VERSION = upstream._VERSION }

local LIST_MT = getmetatable(upstream.new({}))

-- ---------------------------------------------------------------------------
-- JSON

-- Tables with this metatable are arrays, even when empty.
local ARRAY = {}
M.ARRAY = ARRAY

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function json_string(s)
  return '"' .. gsub(s, '[%c"\\]', function(c)
    return escapes[c] or format("\\u%04x", byte(c))
  end) .. '"'
end

-- Finite numbers only (NaN and infinities are null): an integer as one,
-- else the shortest of %.14g / %.17g that reads back the same.
local function json_number(x)
  if x ~= x or x == huge or x == -huge then return "null" end
  if x == floor(x) and x > -2 ^ 53 and x < 2 ^ 53 then return format("%d", x) end
  local s = format("%.14g", x)
  if tonumber(s) ~= x then s = format("%.17g", x) end
  return s
end

local encode

local function is_array(t)
  if getmetatable(t) == ARRAY then return true end
  local n = #t
  if n == 0 then return false end
  local k = 0
  for _ in pairs(t) do k = k + 1 end
  return k == n
end

encode = function(v, out, depth)
  local tv = type(v)
  if tv == "string" then
    out[#out + 1] = json_string(v)
  elseif tv == "number" then
    out[#out + 1] = json_number(v)
  elseif tv == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif tv == "nil" then
    out[#out + 1] = "null"
  elseif tv == "table" then
    if depth > 32 then error("upstream.nginx.status: json: nested too deep", 0) end
    if is_array(v) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode(v[i], out, depth + 1)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = json_string(k)
        out[#out + 1] = ":"
        local x = v[k]
        if x == nil then x = v[tonumber(k)] end
        encode(x, out, depth + 1)
      end
      out[#out + 1] = "}"
    end
  else
    out[#out + 1] = json_string(tostring(v))
  end
end

-- v as JSON text: strings escaped (", \ and every control character),
-- NaN and infinities as null, object keys sorted; other values (functions,
-- userdata) as their tostring.
function M.json(v)
  local out = {}
  encode(v, out, 0)
  return concat(out)
end

-- ---------------------------------------------------------------------------
-- the lists

-- The names of lists (a table name -> upstream.list), sorted; raises on
-- anything else.
local function names_of(lists)
  if type(lists) ~= "table" then
    error("upstream.nginx.status: lists must be a table { name = list } (got " .. type(lists) .. ")", 3)
  end
  local names = {}
  for k, v in pairs(lists) do
    if type(k) ~= "string" then
      error("upstream.nginx.status: list names must be strings (got " .. type(k) .. ")", 3)
    end
    if getmetatable(v) ~= LIST_MT then
      error("upstream.nginx.status: lists." .. k .. " must be an upstream.list (got " .. type(v) .. ")", 3)
    end
    names[#names + 1] = k
  end
  sort(names)
  return names
end

local ROW_FIELDS = { "score", "healthy", "last_error", "checks", "failures", "timeouts", "weight",
  "tier", "inflight", "picks", "last_check", "since", "latency" }

-- One list as plain data: its clock, counts and rows (backends as
-- strings: tostring).
local function list_data(list)
  local rows = setmetatable({}, ARRAY)
  local healthy = 0
  for i, s in ipairs(list:status()) do
    local r = { backend = tostring(s.backend) }
    for _, k in ipairs(ROW_FIELDS) do r[k] = s[k] end
    if s.healthy then healthy = healthy + 1 end
    rows[i] = r
  end
  return { now = list:now(), backends = #rows, healthy = healthy, members = rows }
end

-- ---------------------------------------------------------------------------
-- HTML

local html_escapes = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

local function h(s)
  return (gsub(tostring(s), "[&<>\"']", html_escapes))
end

local function secs(x)
  if x == nil then return "" end
  if x < 1e-3 then return format("%.0f µs", x * 1e6) end
  if x < 1 then return format("%.1f ms", x * 1e3) end
  return format("%.2f s", x)
end

local function ago(now, t)
  if t == nil then return "never" end
  return secs(now - t) .. " ago"
end

local STYLE = [[
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:2em}
th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.unhealthy{background:#fde8e8}
tr.unhealthy td.health{color:#b00;font-weight:bold}
tr.healthy td.health{color:#070}
]]

local function html_page(names, data)
  local out = { "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
    "<title>upstream status</title><style>", STYLE, "</style></head><body>\n",
    "<h1>upstream status</h1>\n" }
  local function add(s) out[#out + 1] = s end
  for _, name in ipairs(names) do
    local d = data[name]
    add(format("<h2>%s</h2>\n<p>%d backends, %d healthy</p>\n", h(name), d.backends, d.healthy))
    add("<table><thead><tr><th>backend</th><th>health</th><th>score</th><th>tier</th>"
      .. "<th>weight</th><th>since</th><th>last check</th><th>latency</th><th>last error</th>"
      .. "<th>checks</th><th>failures</th><th>timeouts</th><th>picks</th></tr></thead><tbody>\n")
    -- concatenated, not string.format: 5.1's %s stops at a NUL byte
    for _, r in ipairs(d.members) do
      add(concat({ '<tr class="', r.healthy and "healthy" or "unhealthy", '"><td>', h(r.backend),
        '</td><td class="health">', r.healthy and "up" or "DOWN",
        '</td><td class="n">', h(json_number(r.score)), '</td><td class="n">', r.tier,
        '</td><td class="n">', r.weight, "</td><td>", h(r.since and ago(d.now, r.since) or ""),
        "</td><td>", h(ago(d.now, r.last_check)), '</td><td class="n">', h(secs(r.latency)),
        "</td><td>", h(r.last_error or ""), '</td><td class="n">', r.checks,
        '</td><td class="n">', r.failures, '</td><td class="n">', r.timeouts,
        '</td><td class="n">', r.picks, "</td></tr>\n" }))
    end
    add("</tbody></table>\n")
  end
  add("</body></html>\n")
  return concat(out)
end

-- ---------------------------------------------------------------------------

local TYPES = {
  prometheus = "text/plain; version=0.0.4; charset=utf-8",
  json = "application/json",
  html = "text/html; charset=utf-8",
}
M.TYPES = TYPES

-- The page for lists in format (nil or "prometheus", "json", "html"):
-- body, content type; nil, message for an unknown format. Raises on lists
-- that are not a table of named upstream.list values.
function M.render(lists, fmt)
  local names = names_of(lists)
  fmt = fmt or "prometheus"
  if fmt == "prometheus" then return upstream.metrics(lists), TYPES.prometheus end
  if not TYPES[fmt] then
    return nil, "unknown format " .. format("%q", tostring(fmt)) .. " (prometheus, json, html)"
  end
  local data = {}
  for _, name in ipairs(names) do data[name] = list_data(lists[name]) end
  if fmt == "json" then
    return M.json({ version = upstream._VERSION, lists = data }) .. "\n", TYPES.json
  end
  return html_page(names, data), TYPES.html
end

-- content_by_lua: the format from the request's ?format= argument.
function M.serve(lists)
  local ngx = ngx
  if not ngx then error("upstream.nginx.status: not running inside nginx", 2) end
  local fmt = ngx.req.get_uri_args().format
  if type(fmt) == "table" then fmt = fmt[1] end
  if fmt == true or fmt == "" then fmt = nil end
  local body, ctype = M.render(lists, fmt)
  if not body then
    ngx.status = 400
    ngx.header["Content-Type"] = "text/plain; charset=utf-8"
    ngx.say(ctype)
    return ngx.exit(400)
  end
  ngx.header["Content-Type"] = ctype
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(body)
end

return M
