/*
 * spec/fuzz/harness.h - what both harnesses read from the environment,
 * and libFuzzer's LLVMFuzzerInitialize that reads it:
 *   UPSTREAM_FUZZ_AVOID_KNOWN=1  steer away from inputs the known crashers
 *                                already cover (avoid_known)
 *   UPSTREAM_FUZZ_TRACE=1        one line per call or operation on stderr
 */
#ifndef UL_FUZZ_HARNESS_H
#define UL_FUZZ_HARNESS_H

#include <stdlib.h>
#include <string.h>

static int avoid_known;
static int trace;

/* 1 when the variable is set, not empty and not "0". */
static int fuzz_env_flag(const char *name) {
  const char *e = getenv(name);
  return e && *e && strcmp(e, "0") != 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  avoid_known = fuzz_env_flag("UPSTREAM_FUZZ_AVOID_KNOWN");
  trace = fuzz_env_flag("UPSTREAM_FUZZ_TRACE");
  return 0;
}

#endif
