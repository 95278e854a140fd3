# bench/lib.sh - what the gateway benchmarks share (gateway.sh, gateway_ir.sh):
# nginx's temp paths, the backends' http block, and the bare balancer_by_lua
# counter they are measured against. Sourced after B1..B3 are set.

temps='client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fcgi; uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;'

# be_http KEEPALIVE-REQUESTS: one server on the three backend ports, "ok"
be_http() {
  cat <<CONF
http {
  access_log off; $temps
  keepalive_requests $1;
  server { listen 127.0.0.1:$B1; listen 127.0.0.1:$B2; listen 127.0.0.1:$B3;
           location / { return 200 "ok\n"; } }
}
CONF
}

# bare_init: the bare counter's globals (for init_worker_by_lua)
bare_init() {
  cat <<CONF
    bare_peers = { "127.0.0.1", $B1, "127.0.0.1", $B2, "127.0.0.1", $B3 }
    bare_i = 0
    bare_balancer = require "ngx.balancer"
CONF
}

# bare_upstream KEEPALIVE-DIRECTIVES: upstream "bare", a bare Lua counter +
# set_current_peer, the floor of any balancer_by_lua
bare_upstream() {
  cat <<CONF
  upstream bare {
    server 0.0.0.1;
    balancer_by_lua_block {
      local i = bare_i % 3
      bare_i = bare_i + 1
      bare_balancer.set_current_peer(bare_peers[2 * i + 1], bare_peers[2 * i + 2])
    }
    $1
  }
CONF
}
