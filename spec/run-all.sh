#!/usr/bin/env bash
# Runs every suite and ends with one line "N passed, N failed" summing them.
# Suites: the busted specs under each runtime in $RUNTIMES (the module for
# $LUA is ./upstream.so, for any other runtime R build/R/upstream.so; a
# runtime not installed or not built counts as a failed suite), then under
# $LUA: the C unit tests of the core (cmocka, ASan+UBSan), the specs with
# the module built with ASan+UBSan, again with an aggressive GC, again under
# valgrind (zero leaks, zero errors); the nginx end-to-end test; luacheck.
# SUITES (default: all of them) picks some: specs c tsan asan asan-clang gc valgrind e2e
# luacheck cppcheck alloc fuzz; make check runs "c specs" with RUNTIMES=$LUA.
set -u
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
RUNTIMES=${RUNTIMES-lua5.1 lua5.2 lua5.3 lua5.4 luajit}
SUITES=" ${SUITES:-specs c tsan asan asan-clang gc valgrind alloc e2e luacheck cppcheck fuzz} "
want() { case "$SUITES" in *" $1 "*) return 0 ;; esac; return 1; }
BUSTED=${BUSTED:-/usr/bin/busted}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
passed=0 failed=0

# count_tap NAME FILE STATUS: adds a TAP run's counts; a crash is a failure
count_tap() {
  local p f
  p=$(grep -c '^ok ' "$2"); f=$(grep -c '^not ok ' "$2")
  if [ "$3" != 0 ] && [ "$f" = 0 ]; then f=1; echo "$1: exited $3" >&2; fi
  [ "$p" = 0 ] && [ "$f" = 0 ] && { f=1; echo "$1: ran no test" >&2; }
  echo "$1: $p passed, $f failed"
  passed=$((passed + p)); failed=$((failed + f))
}

missing() { # missing NAME WHY: a suite that cannot run is one failure
  echo "$1: $2" >&2
  echo "$1: 0 passed, 1 failed"
  failed=$((failed + 1))
}

suite() { # suite NAME CMD...: runs CMD, shows failures, counts its TAP lines
  local name=$1; shift
  "$@" >"$out/$name.tap" 2>"$out/$name.err"
  local st=$?
  grep -A30 '^not ok' "$out/$name.tap" | head -120 >&2
  [ "$st" != 0 ] && tail -40 "$out/$name.err" >&2
  count_tap "$name" "$out/$name.tap" "$st"
}

# 1. the specs under every runtime, each with the module built for it
want specs || RUNTIMES=
for rt in $RUNTIMES; do
  so=./build/$rt/upstream.so
  [ "$rt" = "$LUA" ] && so=./upstream.so
  if ! command -v "$rt" >/dev/null; then missing "$rt" "not installed"
  elif [ ! -f "$so" ]; then missing "$rt" "$so was not built"
  else suite "$rt" "$rt" "$BUSTED" --lpath='./src/?.lua' --cpath="${so%upstream.so}?.so" -o TAP spec/
  fi
done

# 2. the core's C unit tests, one cmocka program per spec/c/test_NAME.c
# (cmocka prints TAP with CMOCKA_MESSAGE_OUTPUT=TAP)
if want c; then
  for src in spec/c/test_*.c; do
    name=$(basename "$src" .c)
    if [ -x "build/$name" ]; then
      suite "c-${name#test_}" env CMOCKA_MESSAGE_OUTPUT=TAP "./build/$name"
    else
      missing "c-${name#test_}" "build/$name was not built (make $name)"
    fi
  done
fi

# 3. the specs, module built with AddressSanitizer + UBSan
asan=$(cc -print-file-name=libasan.so) ubsan=$(cc -print-file-name=libubsan.so)
want asan && suite asan env LD_PRELOAD="$asan $ubsan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  "$LUA" "$BUSTED" --lpath='./src/?.lua' --cpath='./build/asan/?.so' -o TAP spec/

# 3a. the same with clang's ASan + UBSan (float-cast-overflow included)
if want asan-clang; then
  if [ -f build/asan-clang/upstream.so ]; then
    suite asan-clang env LD_PRELOAD="$(clang -print-file-name=libclang_rt.asan-x86_64.so)" \
      ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      "$LUA" "$BUSTED" --lpath='./src/?.lua' --cpath='./build/asan-clang/?.so' -o TAP spec/
  else
    missing asan-clang "build/asan-clang/upstream.so was not built (apt-get install clang)"
  fi
fi

# 3b. again with the collector running a full cycle at every step, so a value
# the binding failed to anchor is collected under its feet
want gc && suite gc env LD_PRELOAD="$asan $ubsan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  "$LUA" "$BUSTED" --lpath='./src/?.lua' --cpath='./build/asan/?.so' --helper=spec/support/gc_stress.lua -o TAP spec/

# 4. the specs under valgrind: any error or definite leak fails the suite
want valgrind && suite valgrind valgrind -q --error-exitcode=99 --leak-check=full \
  --errors-for-leak-kinds=definite --show-leak-kinds=definite \
  "$LUA" "$BUSTED" --lpath='./src/?.lua' --cpath='./?.so' -o TAP spec/

# 5. the nginx driver end to end: a gateway nginx (LuaJIT) and three backend
# nginx instances on loopback (spec/e2e/run.sh); the status page
# (spec/e2e/status.sh)
if ! want e2e; then :
elif command -v nginx >/dev/null && [ -f build/luajit/upstream.so ]; then
  suite e2e env UPSTREAM_SO_DIR="$PWD/build/luajit" bash spec/e2e/run.sh
  # the status page and on_change (ports 18300-18319)
  suite e2e-status env UPSTREAM_SO_DIR="$PWD/build/luajit" bash spec/e2e/status.sh
  # a shared list in 4 workers: one prober, global rotation (ports 18400-18449)
  suite e2e-shared env UPSTREAM_SO_DIR="$PWD/build/luajit" bash spec/e2e/shared.sh
else
  missing e2e "nginx or build/luajit/upstream.so missing (apt-get install nginx-light libnginx-mod-http-lua)"
fi

# 6. luacheck over the Lua we ship and test with (the directories present)
if ! want luacheck; then :
elif command -v luacheck >/dev/null; then
  if luacheck -q $(ls -d spec bench examples src/upstream 2>/dev/null) >"$out/luacheck" 2>&1; then
    echo "luacheck: 1 passed, 0 failed"; passed=$((passed + 1))
  else
    cat "$out/luacheck" >&2; echo "luacheck: 0 passed, 1 failed"; failed=$((failed + 1))
  fi
else
  missing luacheck "not installed (apt-get install lua-check)"
fi

# 7. cppcheck over the core and the module
if ! want cppcheck; then :
elif command -v cppcheck >/dev/null; then
  if cppcheck --enable=warning,performance,portability --std=c99 --error-exitcode=1 \
      --inline-suppr -q -I src/core -I src/lua -I "/usr/include/$LUA" src/core/*.c src/upstream.c \
      >"$out/cppcheck" 2>&1; then
    echo "cppcheck: 1 passed, 0 failed"; passed=$((passed + 1))
  else
    cat "$out/cppcheck" >&2; echo "cppcheck: 0 passed, 1 failed"; failed=$((failed + 1))
  fi
else
  missing cppcheck "not installed (apt-get install cppcheck)"
fi

# 8. failing allocations at every k (spec/alloc/run.sh prints TAP)
want alloc && suite alloc bash spec/alloc/run.sh

# 9. the fuzzers (spec/fuzz/run.sh test): one test per recorded crasher
# (replayed: it must pass now), then one per harness fuzzed FUZZ_SECONDS
# (60): no crash, timeout or out-of-memory. The committed corpus is left
# as it is. Needs clang and libFuzzer (libclang-rt-14-dev, libfuzzer-14-dev).
# the shared-memory room's cmocka program under ThreadSanitizer (make
# test-tsan builds it): any data race TSan reports fails the suite
if want tsan; then
  if make -s build/tsan/test_shm >"$out/tsan-build.log" 2>&1; then
    suite tsan env CMOCKA_MESSAGE_OUTPUT=TAP UL_SHM_STRESS="${SHM_STRESS:-200000}" \
      TSAN_OPTIONS="halt_on_error=1 exitcode=66" ./build/tsan/test_shm
  else
    tail -20 "$out/tsan-build.log" >&2
    missing tsan "build/tsan/test_shm did not build (make test-tsan)"
  fi
  # a list block in one mapping, 8 threads of mixed operations per strategy
  if make -s build/tsan/test_shared_threads >"$out/tsan-shared-build.log" 2>&1; then
    suite tsan-shared env CMOCKA_MESSAGE_OUTPUT=TAP UL_SHARED_STRESS="${SHARED_STRESS:-40000}" \
      TSAN_OPTIONS="halt_on_error=1 exitcode=66" ./build/tsan/test_shared_threads
  else
    tail -20 "$out/tsan-shared-build.log" >&2
    missing tsan-shared "build/tsan/test_shared_threads did not build (make test-tsan)"
  fi
  # hash with small Maglev tables, at the full operation count
  if make -s build/tsan/test_shared_threads_smallm >"$out/tsan-smallm-build.log" 2>&1; then
    suite tsan-hash-small env CMOCKA_MESSAGE_OUTPUT=TAP \
      UL_SHARED_STRESS="${SHARED_STRESS:-40000}" TSAN_OPTIONS="halt_on_error=1 exitcode=66" \
      ./build/tsan/test_shared_threads_smallm
  else
    tail -20 "$out/tsan-smallm-build.log" >&2
    missing tsan-hash-small "build/tsan/test_shared_threads_smallm did not build (make test-tsan)"
  fi
  # a list's block in a mapping: mixed operations, then a holder that dies
  if make -s build/tsan/test_shared_stress >"$out/tsan-stress-build.log" 2>&1; then
    suite tsan-stress env CMOCKA_MESSAGE_OUTPUT=TAP UL_SHM_STRESS="${LIST_STRESS:-5000}" \
      TSAN_OPTIONS="halt_on_error=1 exitcode=66" ./build/tsan/test_shared_stress
  else
    tail -20 "$out/tsan-stress-build.log" >&2
    missing tsan-stress "build/tsan/test_shared_stress did not build (make test-tsan)"
  fi
fi

if want fuzz; then
  FUZZ_UPDATE_CORPUS=0 bash spec/fuzz/run.sh test >"$out/fuzz.log" 2>&1
  st=$?
  if [ "$st" = 2 ]; then
    tail -30 "$out/fuzz.log" >&2
    missing fuzz "the harnesses did not build (apt-get install clang libclang-rt-14-dev libfuzzer-14-dev)"
  else
    awk '/^(core|api)-[^ :]*: (passes|CRASHES)/ {
           print ($2 == "passes" ? "ok " : "not ok ") ++n " - fuzz crasher " $0 }
         /^(core|api): executions/ { ok = ($0 ~ /crashes 0, timeouts 0, ooms 0/);
           print (ok ? "ok " : "not ok ") ++n " - fuzz " $0 }' "$out/fuzz.log" >"$out/fuzz.tap"
    grep '^not ok' "$out/fuzz.tap" >&2
    [ "$st" != 0 ] && tail -30 "$out/fuzz.log" >&2
    count_tap fuzz "$out/fuzz.tap" "$st"
  fi
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
