#!/usr/bin/env bash
# Instructions per operation under callgrind (repeatable on a noisy shared
# machine, unlike times): each loop of bench/pick_ir.lua runs twice, with N
# and 2N iterations, and the difference divided by N is the cost of one
# iteration, free of start-up and set-up. Lua 5.4 seeds its string hashes
# at random, which moves these totals by about 3% between runs; the last
# column, the instructions inside the C method itself (l_pick, callgrind's
# --toggle-collect), does not move at all: compare it across changes to the
# binding or the core.
#   make bench-ir     (or: bash bench/pick_ir.sh)
set -eu
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
N=${N:-200000}
ir() { # ir WHAT ITER: total instructions of one run
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$LUA" bench/pick_ir.lua "$1" "$2" 2>&1 |
    awk '/Collected/ { print $4 }'
}
per() { echo $(( ($(ir "$1" $((2 * N))) - $(ir "$1" "$N")) / N )); }
inside() { # instructions inside l_pick per pick
  local t
  t=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect=l_pick \
    "$LUA" bench/pick_ir.lua "$1" "$N" 2>&1 | awk '/Collected/ { print $4 }')
  echo $(( t / N ))
}
floor=$(per floor)
purelua=$(per purelua)
printf '%-24s %8s %9s %9s\n' "operation ($LUA)" "instr" "x floor" "in l_pick"
printf '%-24s %8d %9s\n' 'floor: ("x"):len()' "$floor" 1.00
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf '%-24s %8d %9s\n' 'pure Lua pick n=3' "$purelua" "$(ratio "$purelua" "$floor")"
for st in round_robin weighted least_conn hash random; do
  for n in 3 10000; do
    v=$(per "$st$n")
    printf '%-24s %8d %9s %9d\n' "$st n=$n" "$v" "$(ratio "$v" "$floor")" "$(inside "$st$n")"
  done
done
