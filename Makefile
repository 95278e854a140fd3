# upstream - developer Makefile. Users install with LuaRocks (rockspec/).
LUA       ?= lua5.4
LUA_INC   ?= -I/usr/include/$(LUA)
CC        ?= cc
CFLAGS    ?= -O2 -g
WARN       = -std=c99 -Wall -Wextra -Wshadow -Wmissing-prototypes -pedantic
DEFS       = -D_POSIX_C_SOURCE=200809L
SANITIZE   = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
CORE       = src/ul_core.c
BINDING    = src/lu_list.c
HEADERS    = $(wildcard src/*.h)

.PHONY: all test test-c test-lua test-asan test-valgrind lint bench demo clean

all: upstream.so

upstream.so: $(CORE) $(BINDING) $(HEADERS)
	$(CC) $(CFLAGS) $(WARN) $(DEFS) -fPIC -fvisibility=hidden $(LUA_INC) -shared -o $@ $(CORE) $(BINDING) -lm

build/asan/upstream.so: $(CORE) $(BINDING) $(HEADERS)
	@mkdir -p build/asan
	$(CC) -O1 -g $(SANITIZE) $(WARN) $(DEFS) -fPIC -fvisibility=hidden $(LUA_INC) -shared -o $@ $(CORE) $(BINDING) -lm

build/test_core: $(CORE) spec/c/test_core.c $(HEADERS)
	@mkdir -p build
	$(CC) -O1 -g $(SANITIZE) $(WARN) $(DEFS) -Isrc -o $@ $(CORE) spec/c/test_core.c -lcmocka -lm

# Every suite, then one line "N passed, N failed" summing them all.
test: upstream.so build/asan/upstream.so build/test_core
	@LUA=$(LUA) bash spec/run-all.sh

test-c: build/test_core
	./build/test_core

test-lua: upstream.so
	$(LUA) /usr/bin/busted --cpath='./?.so' spec/

lint:
	luacheck --codes spec bench examples

bench: upstream.so
	$(LUA) bench/pick.lua

demo: upstream.so
	$(LUA) examples/demo.lua

clean:
	rm -rf upstream.so build src/*.o
