/*
 * upstream.c - the module as one translation unit, as Lua's onelua.c
 * builds Lua: the core's files (core/, no Lua headers), then the binding's
 * (lua/). Functions the files share are static here (UL_FUNC, LU_FUNC),
 * so the pick's hot path inlines across files; only luaopen_upstream and
 * the FFI entry point are exported. The C tests compile core/ file by file.
 */
#define UL_FUNC static __attribute__((unused))
#define LU_FUNC static __attribute__((unused))

/* shm.c needs MAP_ANONYMOUS: defined before the first system header */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE 1
#endif

#include "core/opts.c"
#include "core/hash.c"
#include "core/heap.c"
#include "core/rr.c"
#include "core/weighted.c"
#include "core/random.c"
#include "core/maglev.c"
#include "core/pick.c"
#include "core/list.c"
#include "core/sched.c"
#include "core/shm.c"

#include "lua/clock.c"
#include "lua/backends.c"
#include "lua/options.c"
#include "lua/result.c"
#include "lua/lifecycle.c"
#include "lua/methods.c"
#include "lua/status.c"
#include "lua/reconcile.c"
#include "lua/scheduler.c"
#include "lua/host.c"
#include "lua/net.c"
#include "lua/http.c"
#include "lua/checks.c"
#include "lua/ffi.c"
#include "lua/metrics.c"
#include "lua/shared.c"
#include "lua/shared_checks.c"
#include "lua/shared_hooks.c"
#include "lua/module.c"
