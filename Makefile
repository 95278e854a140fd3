# upstream - developer Makefile. Users install with LuaRocks (rockspec/).
LUA       ?= lua5.4
LUA_INC   ?= -I/usr/include/$(LUA)
CC        ?= cc
CFLAGS    ?= -O2 -g
WARN       = -std=c99 -Wall -Wextra -Wshadow -Wmissing-prototypes -pedantic
DEFS       = -D_POSIX_C_SOURCE=200809L
SANITIZE   = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
CORE       = src/ul_core.c src/ul_pick.c
BINDING    = src/lu_list.c
HEADERS    = $(wildcard src/*.h)
# Every runtime the module supports; runtime R is built against its own
# headers into build/R/upstream.so.
RUNTIMES   = lua5.1 lua5.2 lua5.3 lua5.4 luajit
LUAJIT_INC ?= -I/usr/include/luajit-2.1
rt_inc     = $(if $(filter $(LUA),$1),$(LUA_INC),$(if $(filter luajit,$1),$(LUAJIT_INC),-I/usr/include/$1))
TEST_CORE  = $(wildcard spec/c/test_core.c)

.PHONY: all runtimes test test-all test-c test-lua test-asan test-valgrind lint bench bench-ir demo clean FORCE

all: upstream.so

# ./upstream.so, which specs and bench load with --cpath='./?.so', is the
# $(LUA) build, checked on every make: `luarocks make` run here writes its
# own ./upstream.so for whichever Lua it targets, and LUA may change.
upstream.so: build/$(LUA)/upstream.so FORCE
	@cmp -s $< $@ || cp $< $@

runtimes: $(patsubst %,build/%/upstream.so,$(RUNTIMES))

build/%/upstream.so: $(CORE) $(BINDING) $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) $(DEFS) -fPIC -fvisibility=hidden $(call rt_inc,$*) -shared -o $@ $(CORE) $(BINDING) -lm

build/asan/upstream.so: $(CORE) $(BINDING) $(HEADERS)
	@mkdir -p build/asan
	$(CC) -O1 -g $(SANITIZE) $(WARN) $(DEFS) -fPIC -fvisibility=hidden $(LUA_INC) -shared -o $@ $(CORE) $(BINDING) -lm

build/test_core: $(CORE) spec/c/test_core.c $(HEADERS)
	@mkdir -p build
	$(CC) -O1 -g $(SANITIZE) $(WARN) $(DEFS) -Isrc -o $@ $(CORE) spec/c/test_core.c -lcmocka -lm

# Every suite, then one line "N passed, N failed" summing them all: the
# specs under each runtime, then the C tests, ASan, valgrind and luacheck
# under $(LUA). A runtime whose headers are missing fails to build here
# without stopping the others; spec/run-all.sh counts it as failed.
test: upstream.so build/asan/upstream.so $(if $(TEST_CORE),build/test_core)
	@-$(MAKE) -s --no-print-directory -k runtimes
	@LUA=$(LUA) RUNTIMES="$(RUNTIMES)" bash spec/run-all.sh

test-all: test

test-c: build/test_core
	./build/test_core

test-lua: upstream.so
	$(LUA) /usr/bin/busted --lpath='./src/?.lua' --cpath='./?.so' spec/

FORCE:

lint:
	luacheck --codes $(wildcard spec bench examples src/upstream)

bench: upstream.so
	$(LUA) bench/pick.lua

demo: upstream.so
	$(LUA) examples/demo.lua

clean:
	rm -rf upstream.so build src/*.o

# --- nginx driver (src/upstream/nginx.lua) -----------------------------------
# e2e: a gateway nginx + three backend nginx instances on loopback; prints TAP
# and "N passed, N failed". bench-gateway: wrk through ngxu.balance against
# nginx's own round robin and a bare-Lua balancer.
.PHONY: e2e bench-gateway bench-nginx-pick
e2e: build/luajit/upstream.so
	@UPSTREAM_SO_DIR=$(CURDIR)/build/luajit bash spec/e2e/run.sh

bench-gateway: build/luajit/upstream.so
	@UPSTREAM_SO_DIR=$(CURDIR)/build/luajit bash bench/gateway.sh

bench-nginx-pick: build/luajit/upstream.so
	@UPSTREAM_SO_DIR=$(CURDIR)/build/luajit bash bench/nginx_pick.sh

bench-ir: upstream.so
	@LUA=$(LUA) bash bench/pick_ir.sh
