#!/usr/bin/env bash
# Failing allocations (issue 8): builds spec/alloc/alloc_test.c twice, with
# the module compiled in (src/upstream.c), and runs every scenario with the
# k-th allocation failing, printing TAP:
#  1. build/alloc/alloc_test: ASan + UBSan, LeakSanitizer on; every k.
#  2. build/alloc/alloc_test_vg: plain -O1 -g under valgrind (any error or
#     definite leak fails). valgrind over every k takes minutes (~70 ms a
#     run), so it runs every ALLOC_STRIDE-th k only (default 5, each
#     scenario from another offset); ASan has covered every k.
# Run from the repository root; exits non-zero on any failure.
# ALLOC_STRIDE=1 spec/alloc/run.sh runs valgrind over every k too;
# ALLOC_ONLY=name, ALLOC_K=k and ALLOC_STACK=1 narrow a run down (see the
# comment at the top of alloc_test.c).
set -u
cd "$(dirname "$0")/../.." || exit 2
CC=${CC:-gcc}
LUA_INC=${LUA_INC:--I/usr/include/lua5.4}
LUA_LIB=${LUA_LIB:--llua5.4}
STRIDE=${ALLOC_STRIDE:-5}
WARN="-std=c99 -Wall -Wextra -Wshadow -Wmissing-prototypes -pedantic -Wno-overlength-strings"
SRC="spec/alloc/alloc_test.c src/upstream.c"
mkdir -p build/alloc

# shellcheck disable=SC2086
$CC -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all \
  $WARN -D_POSIX_C_SOURCE=200809L $LUA_INC -o build/alloc/alloc_test $SRC $LUA_LIB -lm || exit 2
# shellcheck disable=SC2086
$CC -O1 -g -DALLOC_VALGRIND $WARN -D_POSIX_C_SOURCE=200809L $LUA_INC \
  -o build/alloc/alloc_test_vg $SRC $LUA_LIB -lm || exit 2

status=0
echo "# ASan + UBSan + LeakSanitizer: build/alloc/alloc_test"
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
  ALLOC_STRIDE=1 ./build/alloc/alloc_test || status=1

echo "# valgrind: build/alloc/alloc_test_vg, every ${STRIDE}th k"
ALLOC_STRIDE=$STRIDE valgrind -q --error-exitcode=1 --leak-check=full \
  --errors-for-leak-kinds=definite ./build/alloc/alloc_test_vg || status=1

exit $status
