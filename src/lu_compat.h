/*
 * lu_compat.h - the few Lua C API differences the binding meets.
 * Written against Lua 5.4; older versions map onto it here.
 */
#ifndef LU_COMPAT_H
#define LU_COMPAT_H

#include "lua.h"
#include "lauxlib.h"

/* Closes a suspended or errored coroutine, running its to-be-closed
 * variables (5.4). The name and arity changed in 5.4.6. */
#if LUA_VERSION_NUM >= 504
#if LUA_VERSION_RELEASE_NUM >= 50406
#define lu_closethread(co, from) ((void)lua_closethread((co), (from)))
#else
#define lu_closethread(co, from) ((void)(from), (void)lua_resetthread(co))
#endif
#endif

#endif
