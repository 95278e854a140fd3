#!/usr/bin/env bash
# spec/fuzz/asanlua.sh - the API harness against a Lua 5.4 built from its
# sources with ASan and LUA_USE_APICHECK (make fuzz-asanlua).
#
#   LUA_SRC=DIR spec/fuzz/asanlua.sh [build|crashers|api|test]
#
# The system's liblua5.4 is not instrumented: a write by Lua's own code
# past the end of a Lua stack, or through a pointer the binding kept
# across a collection, lands in the heap where ASan does not look, and
# shows (if ever) as a damaged chunk header much later ("CHECK failed:
# asan_allocator.cpp ... kAllocBegMagic"). Built here, Lua's writes are
# checked, and LUA_USE_APICHECK asserts on every misuse of the C API (a
# push with no room on the stack, a bad index) at the call that does it.
#
# DIR holds Lua 5.4's .c and .h files: a release's src/ or a checkout of
# github.com/lua/lua at the tag of the system's liblua5.4
# (dpkg -l liblua5.4-0). Lua is built without libFuzzer's coverage, so the
# search is the normal build's (only the module and the harness count);
# run.sh then builds, replays and fuzzes as usual, into build/fuzz-asanlua
# (mode api by default, the committed corpus left as it is unless
# FUZZ_UPDATE_CORPUS=1). Not part of make test.
set -u
cd "$(dirname "$0")/../.." || exit 2
SRC=${LUA_SRC:-}
OUT=build/fuzz-asanlua
if [ -z "$SRC" ] || [ ! -f "$SRC/lapi.c" ] || [ ! -f "$SRC/lua.h" ]; then
  echo "asanlua.sh: LUA_SRC must name a directory with Lua 5.4's sources (lapi.c, lua.h, ...)" >&2
  exit 2
fi
SRC=$(cd "$SRC" && pwd)
if ! grep -qE '^#define LUA_VERSION_NUM[[:space:]]+504' "$SRC/lua.h"; then
  echo "asanlua.sh: $SRC/lua.h is not Lua 5.4 (the API harness needs 5.4)" >&2
  exit 2
fi
if [ -z "${CLANG:-}" ]; then
  if command -v clang >/dev/null 2>&1; then CLANG=clang; else CLANG=clang-14; fi
fi
# the library: every file but the interpreters and the test scaffolding
mkdir -p "$OUT/lua" || exit 2
rm -f "$OUT"/lua/*.o "$OUT/liblua.a"
for f in "$SRC"/*.c; do
  case $(basename "$f") in lua.c | luac.c | onelua.c | ltests.c) continue ;; esac
  "$CLANG" -g -O2 -fsanitize=address -DLUA_USE_LINUX -DLUA_USE_APICHECK \
    -c "$f" -o "$OUT/lua/$(basename "${f%.c}").o" ||
    { echo "asanlua.sh: building $f failed" >&2; exit 2; }
done
ar rcs "$OUT/liblua.a" "$OUT"/lua/*.o || exit 2
export CLANG FUZZ_OUT=$OUT FUZZ_UPDATE_CORPUS=${FUZZ_UPDATE_CORPUS:-0}
export LUA_CFLAGS="-I$SRC" LUA_LIBS="$OUT/liblua.a -ldl"
exec bash spec/fuzz/run.sh "${1:-api}"
