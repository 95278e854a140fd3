std = "max"
max_line_length = 120
files["spec"] = { std = "+busted" }
files["src/upstream/nginx.lua"] = { read_globals = { "ngx" } }
files["examples"] = { read_globals = { "ngx" } }
