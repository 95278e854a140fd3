rockspec_format = "3.0"
package = "upstream"
version = "scm-1"
source = {
  url = "git+file://.",
}
description = {
  summary = "Upstream backend list with health scores, health checks and fast picks, in C",
  detailed = [[
A list of upstream backends with health scores: round-robin pick of a
healthy backend in O(1), up/down score feedback, and health checks run as
Lua coroutines on a built-in scheduler or driven by a host event loop.
A port of the Go package `upstream`.
]],
  license = "MPL-2.0",
}
dependencies = {
  "lua >= 5.1",
}
build = {
  type = "builtin",
  modules = {
    upstream = {
      sources = { "src/upstream.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "src" },
      libraries = { "m" },
    },
    ["upstream.ffi"] = "src/upstream/ffi.lua",
    ["upstream.nginx"] = "src/upstream/nginx.lua",
    ["upstream.nginx.addr"] = "src/upstream/nginx/addr.lua",
    ["upstream.nginx.checks"] = "src/upstream/nginx/checks.lua",
    ["upstream.nginx.status"] = "src/upstream/nginx/status.lua",
  },
}
test = {
  type = "command",
  command = "make check",
}
