-- A small strict JSON decoder for the specs (RFC 8259: no trailing commas,
-- no control characters in strings, no NaN): decode(text) -> value, or
-- raises naming the position. null is json.null; arrays and objects are
-- tables.
local json = { null = setmetatable({}, { __tostring = function() return "null" end }) }

function json.decode(text)
  local i = 1
  local function fail(why) error(("json: %s at %d: %q"):format(why, i, text:sub(i, i + 20)), 0) end
  local function ws() i = text:find("[^ \t\r\n]", i) or #text + 1 end
  local value
  local function str()
    i = i + 1
    local out = {}
    while true do
      local c = text:sub(i, i)
      if c == "" then fail("unterminated string") end
      if c:byte() < 32 then fail("control character in string") end
      if c == '"' then i = i + 1; return table.concat(out) end
      if c == "\\" then
        local e = text:sub(i + 1, i + 1)
        local map = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/",
          b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
        if map[e] then
          out[#out + 1] = map[e]; i = i + 2
        elseif e == "u" then
          local hex = text:sub(i + 2, i + 5)
          if not hex:match("^%x%x%x%x$") then fail("bad \\u escape") end
          local cp = tonumber(hex, 16)
          if cp < 128 then out[#out + 1] = string.char(cp)
          elseif cp < 2048 then out[#out + 1] = string.char(192 + math.floor(cp / 64), 128 + cp % 64)
          else
            out[#out + 1] = string.char(224 + math.floor(cp / 4096), 128 + math.floor(cp / 64) % 64, 128 + cp % 64)
          end
          i = i + 6
        else
          fail("bad escape")
        end
      else
        out[#out + 1] = c; i = i + 1
      end
    end
  end
  value = function()
    ws()
    local c = text:sub(i, i)
    if c == "{" then
      local t = {}
      i = i + 1; ws()
      if text:sub(i, i) == "}" then i = i + 1; return t end
      while true do
        ws()
        if text:sub(i, i) ~= '"' then fail("object key expected") end
        local k = str()
        ws()
        if text:sub(i, i) ~= ":" then fail("':' expected") end
        i = i + 1
        if t[k] ~= nil then fail("key twice") end
        t[k] = value()
        ws()
        local d = text:sub(i, i)
        i = i + 1
        if d == "}" then return t end
        if d ~= "," then fail("',' or '}' expected") end
      end
    elseif c == "[" then
      local t = {}
      i = i + 1; ws()
      if text:sub(i, i) == "]" then i = i + 1; return t end
      while true do
        t[#t + 1] = value()
        ws()
        local d = text:sub(i, i)
        i = i + 1
        if d == "]" then return t end
        if d ~= "," then fail("',' or ']' expected") end
      end
    elseif c == '"' then
      return str()
    elseif text:sub(i, i + 3) == "true" then i = i + 4; return true
    elseif text:sub(i, i + 4) == "false" then i = i + 5; return false
    elseif text:sub(i, i + 3) == "null" then i = i + 4; return json.null
    else
      local num = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
      if not num or num == "" or num:match("^-?0%d") then fail("value expected") end
      i = i + #num
      return tonumber(num) or fail("bad number")
    end
  end
  local v = value()
  ws()
  if i <= #text then fail("trailing text") end
  return v
end

return json
