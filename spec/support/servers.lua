-- Starts spec/support/servers.py (loopback HTTP servers, one per mode) for
-- a spec or the demo:
--   local srv = servers.start({ ok = "ok", down = "status", ... })
--   srv.port.ok, srv.addr("ok") -> "127.0.0.1:PORT" ("[::1]:PORT" for *6)
--   srv.mode("ok", "hang")  -- switch a listener's mode
--   srv.stop()              -- closes its stdin (it exits), waited for
local servers = {}

local function here()
  local src = debug.getinfo(1, "S").source:sub(2)
  return src:match("^(.*)/[^/]*$") or "."
end

function servers.start(modes)
  local out = os.tmpname()
  local args = {}
  for name, mode in pairs(modes) do args[#args + 1] = name .. "=" .. mode end
  table.sort(args)
  local cmd = ("exec python3 %s/servers.py %s > %s"):format(here(), table.concat(args, " "), out)
  local pipe = assert(io.popen(cmd, "w"))
  local line
  for _ = 1, 500 do -- up to ~10 s
    local f = io.open(out)
    line = f and f:read("*l")
    if f then f:close() end
    if line then break end
    os.execute("sleep 0.02")
  end
  os.remove(out)
  assert(line, "servers.py did not start")
  local srv = { port = {}, modes = modes }
  srv.pid = tonumber(line:match("^pid (%d+)"))
  for name, port in line:gmatch("(%S+) (%d+)") do
    if name ~= "pid" then srv.port[name] = tonumber(port) end
  end
  function srv.addr(name)
    local mode = modes[name]
    if mode:sub(-1) == "6" then return "[::1]:" .. srv.port[name] end
    return "127.0.0.1:" .. srv.port[name]
  end
  function srv.mode(name, mode)
    pipe:write(name, " ", mode, "\n")
    pipe:flush()
  end
  function srv.stop()
    if pipe then
      pipe:close() -- stdin closed: it exits; close waits for it
      pipe = nil
    end
  end
  return srv
end

return servers
