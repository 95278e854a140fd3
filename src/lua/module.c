/*
 * lua/module.c - the module: require("upstream") builds the upstream.list
 * metatable and the module table (new, attach, sleep, tcp_check,
 * http_check, _VERSION; the test hooks of shared.c).
 */
#include "binding.h"

/* The one place the version is written: upstream.ffi and upstream.nginx
 * take theirs from require("upstream")._VERSION. */
#define LU_VERSION "0.1.0"

static const luaL_Reg lu_methods[] = {
    {"pick", l_pick},
    {"up", l_up},
    {"down", l_down},
    {"score", l_score},
    {"status", l_status},
    {"status_of", l_status_of},
    {"reconcile", l_reconcile},
    {"step", l_step},
    {"run", l_run},
    {"wait_initial", l_wait_initial},
    {"due", l_due},
    {"report", l_report},
    {"now", l_now},
    {"checked", l_checked},
    {"next_due", l_next_due},
    {"weight", l_weight},
    {"set_weight", l_set_weight},
    {"release", l_release},
    {"inflight", l_inflight},
    {"_slots", l_slots},
    {"shutdown", l_shutdown},
    {NULL, NULL}};

static const luaL_Reg lu_metamethods[] = {{"__len", l_len},
                                          {"__tostring", l_tostring},
                                          {"__gc", l_shutdown},
                                          {"__close", l_shutdown},
                                          {NULL, NULL}};

/* Every method and metamethod, and new, get the metatable as upvalue 1:
 * lu_to_list compares it with the argument's (cqueues' fast check). A
 * shared list has a metatable of its own (shared.c), whose methods take
 * the lock; new, attach and metrics get it as upvalue 2. */
LU_EXPORT int luaopen_upstream(lua_State *L) {
  luaL_newmetatable(L, LU_LIST);
  lua_pushvalue(L, -1);
  luaL_setfuncs(L, lu_metamethods, 1);
  lua_newtable(L);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, lu_methods, 1);
  lua_setfield(L, -2, "__index");
  lua_newtable(L); /* module */
  lu_shared_open(L); /* the shared lists' metatable */
  lua_pushvalue(L, -3);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_new, 2);
  lua_setfield(L, -3, "new");
  lua_pushvalue(L, -3);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_metrics, 2);
  lua_setfield(L, -3, "metrics");
  lua_pushvalue(L, -3);
  lua_insert(L, -2);
  lua_pushcclosure(L, l_attach, 2);
  lua_setfield(L, -2, "attach");
  lua_pushcfunction(L, l_sleep);
  lua_setfield(L, -2, "sleep");
  lu_net_open(L);
  lu_checks_open(L);
  lua_pushliteral(L, LU_VERSION);
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
