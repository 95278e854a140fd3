/*
 * child.h - a test's body in a forked child under alarm(), for the C test
 * programs where something could wedge or halt (test_shm,
 * test_shared_threads; test_degenerate shares CHILD_CHECK): a hang fails
 * that test only, in bounded time. Children check with CHILD_CHECK, not
 * cmocka's assertions, whose longjmp would land in the child's copy of the
 * runner.
 */
#ifndef UL_TEST_CHILD_H
#define UL_TEST_CHILD_H

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

/* In a child's function (returning int): a failed cond is reported on
 * stderr and the child exits 1. */
#define CHILD_CHECK(cond)                                                    \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,       \
              #cond);                                                        \
      return 1;                                                              \
    }                                                                        \
  } while (0)

/* Runs fn(arg) in a forked child under alarm(secs); its exit status is the
 * test's verdict. who names the child when a signal ends it ("the child
 * died of signal 14 (it hung)"). */
static inline void child_run(const char *who, int (*fn)(void *), void *arg,
                             unsigned secs) {
  int status = 0;
  pid_t pid;
  fflush(NULL);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    alarm(secs);
    _exit(fn(arg));
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (WIFSIGNALED(status))
    fail_msg("%s died of signal %d%s", who, WTERMSIG(status),
             WTERMSIG(status) == SIGALRM ? " (it hung)" : "");
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

#endif
