#!/usr/bin/env bash
# spec/fuzz/run.sh - build and run the libFuzzer harnesses (issue 8).
#
#   spec/fuzz/run.sh              build both, fuzz each FUZZ_SECONDS, merge corpora
#   spec/fuzz/run.sh build        build only: build/fuzz/core_fuzz, build/fuzz/api_fuzz
#   spec/fuzz/run.sh crashers     replay spec/fuzz/crashers/* (core-* on core_fuzz,
#                                 api-* on api_fuzz); one line each: crashes or passes
#   spec/fuzz/run.sh core|api     fuzz only that one
#   spec/fuzz/run.sh test         one build: replay the crashers, then fuzz both
#                                 (spec/run-all.sh's fuzz suite, with
#                                 FUZZ_UPDATE_CORPUS=0)
#
# Environment:
#   FUZZ_SECONDS=60         fuzzing time per harness
#   FUZZ_RESTARTS=20        restarts after a crash within that time
#   FUZZ_AVOID_KNOWN=0      1: steer away from the known bugs (see crashers/README.md)
#   FUZZ_UPDATE_CORPUS=1    0: leave spec/fuzz/corpus/ as it is
#   FUZZ_CORPUS_MAX=200     most files kept in a committed corpus
#   CLANG=clang             (clang-14 if clang is missing)
#   LUA_CFLAGS=-I/usr/include/lua5.4   LUA_LIBS=-llua5.4
#   FUZZ_OUT=build/fuzz     where the builds, logs and findings go
#                           (spec/fuzz/asanlua.sh: build/fuzz-asanlua)
#
# Each harness runs FUZZ_SECONDS in all: libFuzzer stops at a crash, so it
# is restarted for the time left (at most FUZZ_RESTARTS=20 times), and
# every crash, timeout or OOM is written to build/fuzz/artifacts/NAME/.
# New inputs go to build/fuzz/work/NAME; then the committed corpus and the
# work are merged (-merge=1) and at most FUZZ_CORPUS_MAX inputs, chosen
# greedily for edges first, then features (spec/fuzz/select.awk), replace
# spec/fuzz/corpus/NAME/. Each harness prints one line,
#   NAME: executions N, cov C, ft F, corpus K files, crashes X, timeouts T, ooms O
# (cov and ft from libFuzzer's last statistics), then one line per kind of
# finding (how many, the sanitizer's summary line, one input);
# the script exits non-zero when any harness crashed, timed out or ran out
# of memory, or when a build failed.
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_UPDATE_CORPUS=${FUZZ_UPDATE_CORPUS:-1}
FUZZ_CORPUS_MAX=${FUZZ_CORPUS_MAX:-200}
export UPSTREAM_FUZZ_AVOID_KNOWN=${FUZZ_AVOID_KNOWN:-0}
if [ -z "${CLANG:-}" ]; then
  if command -v clang >/dev/null 2>&1; then CLANG=clang; else CLANG=clang-14; fi
fi
LUA_CFLAGS=${LUA_CFLAGS:--I/usr/include/lua5.4}
LUA_LIBS=${LUA_LIBS:--llua5.4}
SAN="-fsanitize=fuzzer,address,undefined,float-cast-overflow"
OUT=${FUZZ_OUT:-build/fuzz}
LIBFUZZER_FLAGS=(-timeout=10 -rss_limit_mb=2048)

build() {
  mkdir -p "$OUT" || return 1
  # the core's file list changes: every src/core/*.c
  "$CLANG" -g -O1 $SAN -Isrc src/core/*.c spec/fuzz/core_fuzz.c -lm -o "$OUT/core_fuzz" ||
    { echo "run.sh: building core_fuzz failed" >&2; return 1; }
  # the module as one translation unit: api_fuzz.c includes src/upstream.c
  "$CLANG" -g -O1 $SAN $LUA_CFLAGS spec/fuzz/api_fuzz.c $LUA_LIBS -lm -o "$OUT/api_fuzz" ||
    { echo "run.sh: building api_fuzz failed" >&2; return 1; }
}

# fuzz NAME: fuzzes build/fuzz/NAME_fuzz for FUZZ_SECONDS, restarting after
# a crash (at most FUZZ_RESTARTS times) so that one bug does not end the
# run; prints the summary line; returns 1 when anything was found.
fuzz() {
  local name=$1 bin=$OUT/${1}_fuzz corpus=spec/fuzz/corpus/$1
  local work=$OUT/work/$1 merged=$OUT/merged/$1 art=$OUT/artifacts/$1 log
  local execs=0 cov=0 ft=0 crashes=0 timeouts=0 ooms=0 files run=0 left start n c f prev=
  local -A count=() example=()
  local msg
  mkdir -p "$corpus" "$work" "$art"
  rm -rf "$merged" "$art"/*
  mkdir -p "$merged"
  start=$(date +%s)
  left=$FUZZ_SECONDS
  while [ "$left" -gt 0 ] && [ "$run" -le "${FUZZ_RESTARTS:-20}" ]; do
    log=$OUT/$name.$run.log
    # new inputs go to $work (the first directory); $corpus is read only
    "$bin" -max_total_time="$left" "${LIBFUZZER_FLAGS[@]}" -print_final_stats=1 \
      -artifact_prefix="$art/" "$work" "$corpus" >"$log" 2>&1
    n=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -1)
    execs=$((execs + ${n:-0}))
    # coverage: the last "cov: C ft: F" line of libFuzzer's
    c=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
    if [ -n "$c" ]; then
      set -- $c
      [ "$2" -gt "$cov" ] && cov=$2
      [ "$4" -gt "$ft" ] && ft=$4
    fi
    f=$(sed -nE "s/.*Test unit written to (.*)/\1/p" "$log" | tail -1)
    if [ -z "$f" ]; then
      break # ran its time without finding anything
    fi
    case $(basename "$f") in
      timeout-*) timeouts=$((timeouts + 1)) ;;
      oom-*) ooms=$((ooms + 1)) ;;
      *) crashes=$((crashes + 1)) ;;
    esac
    msg=$(grep -m1 -E '^(SUMMARY|INVARIANT|HANG)|ERROR: libFuzzer: (timeout|out-of-memory)|Sanitizer: CHECK failed' "$log" |
      sed -E 's/[0-9]+ times in a row/N times in a row/; s/==[0-9]+==//; s/ \(0x[0-9a-f]+, 0x[0-9a-f]+\) \(tid=[0-9]+\)//')
    [ -n "$msg" ] || msg="no sanitizer summary (see $log)"
    count[$msg]=$((${count[$msg]:-0} + 1))
    [ -n "${example[$msg]:-}" ] || example[$msg]=$f
    run=$((run + 1))
    left=$((FUZZ_SECONDS - ($(date +%s) - start)))
    # the same input twice in a row (say, a corpus file crashes): stop
    [ "$f" = "$prev" ] && break
    prev=$f
  done
  # merge: the inputs that add coverage; then at most FUZZ_CORPUS_MAX of
  # them, chosen greedily for edges, then features (select.awk, from the
  # merge's control file)
  # (an input that crashes is left out; its copy goes to $OUT/merge-artifacts)
  # FUZZ_UPDATE_CORPUS=0 (CI) skips it: the corpus stays as committed, and
  # the new inputs stay in $work for the next run
  if [ "$FUZZ_UPDATE_CORPUS" = 1 ]; then
    mkdir -p "$OUT/merge-artifacts/$name"
    rm -f "$OUT/$name.merge.ctl"
    # in default mode, so that no input crashing there enters the corpus
    UPSTREAM_FUZZ_AVOID_KNOWN=0 \
    "$bin" -merge=1 "${LIBFUZZER_FLAGS[@]}" -merge_control_file="$OUT/$name.merge.ctl" \
      -artifact_prefix="$OUT/merge-artifacts/$name/" "$merged" "$corpus" "$work" \
      >"$OUT/$name.merge.log" 2>&1 ||
      echo "$name: merge failed, see $OUT/$name.merge.log" >&2
    files=$(find "$merged" -type f | wc -l)
  else
    files=0
  fi
  if [ "$files" -gt 0 ] && [ -s "$OUT/$name.merge.ctl" ]; then
    awk -v MAX="$FUZZ_CORPUS_MAX" -f spec/fuzz/select.awk "$OUT/$name.merge.ctl" >"$OUT/$name.keep"
    if [ -s "$OUT/$name.keep" ]; then
      mkdir -p "$OUT/keep/$name"
      rm -f "$OUT/keep/$name"/*
      xargs -r -d '\n' cp -t "$OUT/keep/$name" <"$OUT/$name.keep"
      rm -f "$corpus"/*
      cp "$OUT/keep/$name"/* "$corpus"/
      rm -rf "${work:?}"/* # all that counts is in the corpus now
    fi
  fi
  files=$(find "$corpus" -type f | wc -l)
  echo "$name: executions $execs, cov $cov, ft $ft, corpus $files files," \
       "crashes $crashes, timeouts $timeouts, ooms $ooms"
  # one line per kind of finding: how many, the message, one input
  for msg in "${!count[@]}"; do
    echo "  ${count[$msg]}x $msg (e.g. ${example[$msg]})"
  done
  [ $((crashes + timeouts + ooms)) -eq 0 ]
}

replay() {
  local f bin rc=0 status
  for f in spec/fuzz/crashers/core-* spec/fuzz/crashers/api-*; do
    [ -f "$f" ] || continue
    case $f in *.lua | *.md) continue ;; esac # the plain-Lua versions, notes
    case $(basename "$f") in core-*) bin=$OUT/core_fuzz ;; *) bin=$OUT/api_fuzz ;; esac
    if "$bin" -timeout=10 -rss_limit_mb=2048 "$f" >"$OUT/replay.log" 2>&1; then
      status="passes"
    else
      status="CRASHES: $(grep -m1 -E 'ERROR: AddressSanitizer|runtime error|INVARIANT|HANG|ALARM|deadly signal|timeout after' "$OUT/replay.log")"
      rc=1
    fi
    echo "$(basename "$f"): $status"
  done
  return $rc
}

mode=${1:-all}
build || exit 2
case $mode in
  build) exit 0 ;;
  crashers) replay; exit $? ;;
  core | api) fuzz "$mode"; exit $? ;;
  all | test)
    rc=0
    if [ "$mode" = test ]; then replay || rc=1; fi
    fuzz core || rc=1
    fuzz api || rc=1
    exit $rc
    ;;
  *) echo "usage: $0 [build|crashers|core|api|test]" >&2; exit 2 ;;
esac
