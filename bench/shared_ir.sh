#!/usr/bin/env bash
# Instructions per pick of a shared list against a private one, Lua 5.4,
# under callgrind: each count is the difference of two runs (N and N +
# 100000 picks) over 100000, so that start-up cancels. Deterministic,
# unlike the ns of bench/shared.lua on a loaded machine; it does not see
# what an atomic instruction or the mutex costs beyond its instructions.
#   bash bench/shared_ir.sh          (needs ./upstream.so: make upstream.so)
set -u
cd "$(dirname "$0")/.." || exit 1
LUA=${LUA:-lua5.4}
ir() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    "$LUA" bench/shared_ir.lua "$1" "$2" "$3" 2>&1 |
    awk '/refs:/ { gsub(",", "", $4); print $4 }'
}
printf '%-12s %8s %8s %8s\n' strategy private shared ratio
for st in round_robin weighted least_conn hash random; do
  row=()
  for mode in private shared; do
    a=$(ir "$st" "$mode" 10000) b=$(ir "$st" "$mode" 110000)
    [ -n "$a" ] && [ -n "$b" ] || { echo "callgrind failed ($st $mode)" >&2; exit 1; }
    row+=($(( (b - a) / 100000 )))
  done
  awk -v s="$st" -v p="${row[0]}" -v q="${row[1]}" \
    'BEGIN { printf "%-12s %8d %8d %7.2fx\n", s, p, q, q / p }'
done
