# upstream - developer Makefile. Users install with LuaRocks (rockspec/);
# CONTRIBUTING.md explains the targets.
#   make check   the fast loop: module for $(LUA), C tests, specs (< 1 min)
#   make test    everything: every runtime, sanitizers, valgrind, nginx e2e,
#                luacheck; ends with one line "N passed, N failed"
LUA       ?= lua5.4
LUA_INC   ?= -I/usr/include/$(LUA)
CC        ?= cc
CFLAGS    ?= -O2 -g
# WERROR=1 (CI) turns every warning into an error, with gcc and clang alike
WARN       = -std=c99 -Wall -Wextra -Wshadow -Wmissing-prototypes -pedantic $(if $(WERROR),-Werror)
DEFS       = -D_POSIX_C_SOURCE=200809L
SANITIZE   = -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=all
CLANG     ?= clang
BUSTED    ?= /usr/bin/busted
# The module is one translation unit (src/upstream.c includes the rest);
# the C tests compile the core's files one by one.
MODULE     = src/upstream.c
CORE       = $(wildcard src/core/*.c)
SOURCES    = $(MODULE) $(CORE) $(wildcard src/core/*.h src/lua/*.c src/lua/*.h)
# Every runtime the module supports; runtime R is built against its own
# headers into build/R/upstream.so.
RUNTIMES   = lua5.1 lua5.2 lua5.3 lua5.4 luajit
LUAJIT_INC ?= -I/usr/include/luajit-2.1
rt_inc     = $(if $(filter $(LUA),$1),$(LUA_INC),$(if $(filter luajit,$1),$(LUAJIT_INC),-I/usr/include/$1))
# C tests: each spec/c/test_NAME.c is one cmocka program, build/test_NAME
C_TESTS    = $(patsubst spec/c/%.c,build/%,$(wildcard spec/c/test_*.c))
SPEC_ARGS  = --lpath='./src/?.lua' -o TAP spec/

.PHONY: all runtimes check test test-c test-lua test-asan test-asan-clang test-gc test-valgrind \
        test-alloc test-tsan e2e lint cppcheck fuzz fuzz-asanlua mutate bench bench-ir bench-scale bench-tierflip bench-atomic bench-shared-ir bench-gateway bench-gateway-ir bench-nginx-pick bench-checks demo clean FORCE

all: upstream.so

# ./upstream.so, which specs and bench load with --cpath='./?.so', is the
# $(LUA) build, checked on every make: `luarocks make` run here writes its
# own ./upstream.so for whichever Lua it targets, and LUA may change.
upstream.so: build/$(LUA)/upstream.so FORCE
	@cmp -s $< $@ || cp $< $@

runtimes: $(patsubst %,build/%/upstream.so,$(RUNTIMES))

build/%/upstream.so: $(SOURCES)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) $(DEFS) -fPIC -fvisibility=hidden $(call rt_inc,$*) -shared -o $@ $(MODULE) -lm

build/asan/upstream.so: $(SOURCES)
	@mkdir -p build/asan
	$(CC) -O1 -g $(SANITIZE) $(WARN) $(DEFS) -fPIC -fvisibility=hidden $(LUA_INC) -shared -o $@ $(MODULE) -lm

# the same with clang's sanitizers (their runtime preloaded: -shared-libasan)
build/asan-clang/upstream.so: $(SOURCES)
	@mkdir -p build/asan-clang
	$(CLANG) -O1 -g $(SANITIZE) -shared-libasan $(WARN) $(DEFS) -fPIC -fvisibility=hidden $(LUA_INC) -shared -o $@ $(MODULE) -lm

build/test_%: spec/c/test_%.c $(CORE) $(wildcard src/core/*.h spec/c/*.h)
	@mkdir -p build
	$(CC) -O1 -g $(SANITIZE) $(WARN) $(DEFS) -pthread -Isrc -Ispec/c -o $@ $(CORE) $< -lcmocka -lm

# test_shm under ThreadSanitizer (gcc's, or TSAN_CC=clang): the shared-memory
# room (src/core/shm.c) with 8 threads on its lock, lease and arena,
# SHM_STRESS iterations each; any report fails.
TSAN_CC    ?= $(CC)
SHM_STRESS ?= 200000
build/tsan/test_shm: spec/c/test_shm.c src/core/shm.c src/core/shm.h src/core/core.h spec/c/child.h
	@mkdir -p build/tsan
	$(TSAN_CC) -O1 -g -fsanitize=thread $(WARN) $(DEFS) -pthread -Isrc -o $@ src/core/shm.c $< -lcmocka -lm

# test_shared_threads under ThreadSanitizer: a list block in one mapping,
# 8 threads x SHARED_STRESS mixed operations per strategy, invariants after
# each (issue 10's thread proof at the core's level)
SHARED_STRESS ?= 40000
build/tsan/test_shared_threads: spec/c/test_shared_threads.c $(CORE) $(wildcard src/core/*.h) spec/fuzz/invariants.h spec/c/child.h
	@mkdir -p build/tsan
	$(TSAN_CC) -O1 -g -fsanitize=thread $(WARN) $(DEFS) -pthread -Isrc -o $@ $(CORE) $< -lcmocka -lm

# the same with small Maglev tables (M = 127: every change's rebuild is
# cheap under TSan): hash only, at the full operation count
build/tsan/test_shared_threads_smallm: spec/c/test_shared_threads.c $(CORE) $(wildcard src/core/*.h) spec/fuzz/invariants.h spec/c/child.h
	@mkdir -p build/tsan
	$(TSAN_CC) -O1 -g -fsanitize=thread $(WARN) $(DEFS) -DUL_MAGLEV_MIN_M=127u -DUL_MAGLEV_PER_SLOT=5u -DHASH_SHARE=1 -pthread -Isrc -o $@ $(CORE) $< -lcmocka -lm

# and test_shared_stress: a list's block in a mapping, 8 threads of mixed
# operations under its lock, LIST_STRESS operations each, then a thread
# that dies holding the lock (ul_repair)
LIST_STRESS ?= 5000
build/tsan/test_shared_stress: spec/c/test_shared_stress.c $(CORE) $(wildcard src/core/*.h spec/fuzz/invariants.h)
	@mkdir -p build/tsan
	$(TSAN_CC) -O1 -g -fsanitize=thread $(WARN) $(DEFS) -pthread -Isrc -Ispec/c -o $@ $(CORE) $< -lcmocka -lm

test-tsan: build/tsan/test_shm build/tsan/test_shared_stress build/tsan/test_shared_threads build/tsan/test_shared_threads_smallm
	UL_SHM_STRESS=$(SHM_STRESS) TSAN_OPTIONS="halt_on_error=1 exitcode=66" ./build/tsan/test_shm
	UL_SHM_STRESS=$(LIST_STRESS) TSAN_OPTIONS="halt_on_error=1 exitcode=66" ./build/tsan/test_shared_stress
	UL_SHARED_STRESS=$(SHARED_STRESS) TSAN_OPTIONS="halt_on_error=1 exitcode=66" ./build/tsan/test_shared_threads
	UL_SHARED_STRESS=$(SHARED_STRESS) TSAN_OPTIONS="halt_on_error=1 exitcode=66" ./build/tsan/test_shared_threads_smallm

# --- the fast loop -------------------------------------------------------------
# Needs only $(LUA), its -dev package, lua-busted and libcmocka-dev.
check: upstream.so $(C_TESTS)
	@LUA=$(LUA) RUNTIMES=$(LUA) SUITES="c specs" bash spec/run-all.sh

test-c: $(C_TESTS)
	@LUA=$(LUA) RUNTIMES= SUITES=c bash spec/run-all.sh

test-lua: upstream.so
	@LUA=$(LUA) RUNTIMES=$(LUA) SUITES=specs bash spec/run-all.sh

# --- everything --------------------------------------------------------------
# The specs under each runtime, then the C tests, ASan (gcc and clang), the aggressive GC,
# valgrind, the nginx e2e and luacheck under $(LUA), then one line
# "N passed, N failed" summing them all. A runtime whose headers are missing
# fails to build here without stopping the others; spec/run-all.sh counts
# it as failed.
test: upstream.so build/asan/upstream.so build/asan-clang/upstream.so $(C_TESTS)
	@-$(MAKE) -s --no-print-directory -k runtimes
	@LUA=$(LUA) RUNTIMES="$(RUNTIMES)" bash spec/run-all.sh

test-asan: build/asan/upstream.so
	@LUA=$(LUA) RUNTIMES= SUITES=asan bash spec/run-all.sh

test-asan-clang: build/asan-clang/upstream.so
	@LUA=$(LUA) RUNTIMES= SUITES=asan-clang bash spec/run-all.sh

test-gc: build/asan/upstream.so
	@LUA=$(LUA) RUNTIMES= SUITES=gc bash spec/run-all.sh

test-valgrind: upstream.so
	@LUA=$(LUA) RUNTIMES= SUITES=valgrind bash spec/run-all.sh

# e2e: a gateway nginx + three backend nginx instances on loopback; prints
# TAP and "N passed, N failed".
e2e: build/luajit/upstream.so
	@LUA=$(LUA) RUNTIMES= SUITES=e2e bash spec/run-all.sh

lint:
	@LUA=$(LUA) RUNTIMES= SUITES=luacheck bash spec/run-all.sh

# cppcheck over the core and the module (warnings, performance, portability)
cppcheck:
	@LUA=$(LUA) RUNTIMES= SUITES=cppcheck bash spec/run-all.sh

# every API entry point with the k-th allocation failing, for every k
# (spec/alloc/run.sh: ASan + LeakSanitizer, then valgrind)
test-alloc:
	@LUA=$(LUA) RUNTIMES= SUITES=alloc bash spec/run-all.sh

# the libFuzzer harnesses of the core and of the Lua API, FUZZ_SECONDS
# each (default 60); spec/fuzz/README.md. FUZZ_UPDATE_CORPUS=0 leaves the
# committed corpus as it is.
fuzz:
	@bash spec/fuzz/run.sh

# the API harness against Lua 5.4 built from LUA_SRC (its .c files) with
# ASan and LUA_USE_APICHECK, where Lua's own writes are checked too; not
# part of make test (spec/fuzz/README.md). FUZZ_MODE: build, crashers,
# api (default) or test.
fuzz-asanlua:
	@LUA_SRC=$(LUA_SRC) bash spec/fuzz/asanlua.sh $(FUZZ_MODE)

# a list of source mutations, each applied to a copy of the tree and
# `make check` run there (spec/mutate/README.md)
mutate:
	@python3 spec/mutate/run.py

FORCE:

# --- benchmarks (docs/BENCHMARKS.md) ---------------------------------------------
bench: upstream.so
	$(LUA) bench/pick.lua

bench-ir: upstream.so
	@LUA=$(LUA) bash bench/pick_ir.sh

# the scale cliffs (issue 9): every bench/scale_*.lua under $(LUA)
# (LUA=luajit: the picks through upstream.ffi)
# and bench/scale_slices.c: each pick's CPU time during a Maglev rebuild
bench-scale: upstream.so build/scale_slices
	@for f in bench/scale_*.lua; do echo "== $$f"; $(LUA) $$f || exit 1; done
	@echo "== bench/scale_slices.c"; for n in 1000 10000 100000; do ./build/scale_slices $$n 0 5 || exit 1; done

build/scale_slices: bench/scale_slices.c $(CORE) $(wildcard src/core/*.h)
	@mkdir -p build
	$(CC) -O2 $(WARN) $(DEFS) -Isrc -o $@ $(CORE) $< -lm

# bench/tierflip.c: the CPU time of a weighted list's lowest-tier flip
bench-tierflip: build/tierflip
	@for n in 1000 10000 100000; do ./build/tierflip $$n || exit 1; done

build/tierflip: bench/tierflip.c $(CORE) $(wildcard src/core/*.h)
	@mkdir -p build
	$(CC) -O2 $(WARN) $(DEFS) -Isrc -o $@ $(CORE) $< -lm

# bench/shared_ir.sh: instructions per pick, shared against private (Lua 5.4)
bench-shared-ir: upstream.so
	@LUA=$(LUA) bash bench/shared_ir.sh

# bench/atomic.c: one atomic read-modify-write against a plain increment
bench-atomic: build/atomic
	@./build/atomic

build/atomic: bench/atomic.c
	@mkdir -p build
	$(CC) -O2 $(WARN) $(DEFS) -o $@ $<

# wrk through ngxu.balance against nginx's own round robin and a bare-Lua
# balancer; BENCH_IR=1 adds instructions per request under callgrind.
bench-gateway: build/luajit/upstream.so
	@UPSTREAM_SO_DIR=$(CURDIR)/build/luajit bash bench/gateway.sh

# instructions per proxied request under callgrind: native round robin, a
# bare balancer_by_lua counter (with and without an empty log_by_lua),
# ngxu.balance, balance + log on a checked and on a passive list
bench-gateway-ir: build/luajit/upstream.so
	@UPSTREAM_SO_DIR=$(CURDIR)/build/luajit bash bench/gateway_ir.sh

bench-nginx-pick: build/luajit/upstream.so
	@UPSTREAM_SO_DIR=$(CURDIR)/build/luajit bash bench/nginx_pick.sh

# CPU over wall time of run() with built-in checks over loopback HTTP
bench-checks: upstream.so
	$(LUA) bench/checks.lua

# the demo's backends are spec/support/servers.py
demo: upstream.so
	@command -v python3 >/dev/null || { echo "make demo needs python3 (apt-get install python3)"; exit 1; }
	$(LUA) examples/demo.lua

clean:
	rm -rf upstream.so build src/*.o
