std = "max"
max_line_length = 120
files["spec"] = { std = "+busted" }
files["src/upstream/nginx.lua"] = { read_globals = { "ngx" } }
-- not src/upstream/nginx/addr.lua: it must load without ngx (its specs run in plain Lua)
files["src/upstream/nginx/checks.lua"] = { read_globals = { "ngx" } }
files["src/upstream/nginx/status.lua"] = { globals = { "ngx" } } -- it sets ngx.status, ngx.header
files["examples"] = { read_globals = { "ngx" } }
