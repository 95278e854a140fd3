/*
 * lua/checks.c - upstream.tcp_check{} and upstream.http_check{}: their
 * options, read and checked here (the style of options.c: the option's
 * name, the rule, what was given), and the check functions they return.
 * A check function is a small Lua loop (lu_driver below, compiled once
 * per state) over the socket functions of net.c: step the socket as far
 * as it goes without blocking, else yield it to the scheduler, which polls
 * it. The loop is Lua so that a check can yield on every runtime (a C
 * function cannot resume where it yielded on 5.1 and LuaJIT).
 */
#include <string.h>

#include "binding.h"

static char lu_driver_key; /* registry: the driver's table { tcp, http } */

/* The driver, given the socket functions and string.find. Its check
 * functions close the socket on every way out they see; a check closed
 * from outside (timeout, shutdown, reconcile) has its socket closed by
 * the scheduler (lu_close_wait). */
static const char lu_driver[] =
    "local open, step, wait, close, find = ...\n"
    "local type, pcall, error, tostring = type, pcall, error, tostring\n"
    "local function run(s)\n"
    "  while true do\n"
    "    local r, a, b = step(s)\n"
    "    if r ~= 'wait' then close(s) return r, a, b end\n"
    "    wait(s)\n"
    "  end\n"
    "end\n"
    "local M = {}\n"
    "function M.tcp()\n"
    "  return function(backend)\n"
    "    local s, err = open(backend)\n"
    "    if not s then return nil, err end\n"
    "    local ok, e = run(s)\n"
    "    if ok then return true end\n"
    "    return nil, e\n"
    "  end\n"
    "end\n"
    "function M.http(head, tail, host, expect, expected, body)\n"
    "  if body ~= nil then\n"
    "    local ok, e = pcall(find, '', body)\n"
    "    if not ok then\n"
    "      error(\"upstream.http_check: option 'body' must be a Lua pattern (\" .. tostring(e) .. ')', 0)\n"
    "    end\n"
    "  end\n"
    "  local fixed = host and head .. host .. tail\n"
    "  local want = body ~= nil\n"
    "  return function(backend)\n"
    "    if type(backend) ~= 'string' then return open(backend) end\n"
    "    local s, err = open(backend, fixed or head .. backend .. tail, want)\n"
    "    if not s then return nil, err end\n"
    "    local ok, status, got = run(s)\n"
    "    if not ok then return nil, status end\n"
    "    if not expect[status] then\n"
    "      return nil, 'status ' .. status .. ' (expected ' .. expected .. ')'\n"
    "    end\n"
    "    if want and not find(got, body) then\n"
    "      return nil, 'body does not match ' .. body\n"
    "    end\n"
    "    return true\n"
    "  end\n"
    "end\n"
    "return M\n";

/* Raises "upstream.FN: option 'NAME' must be RULE (got ...)". */
static int lu_check_opt_error(lua_State *L, const char *fn, const char *name,
                              const char *rule, int idx) {
  return luaL_error(L, "upstream.%s: option '%s' must be %s (got %s)", fn,
                    name, rule, lu_got(L, idx));
}

/* The options table at 1 (nil: none) holds only keys among allowed. */
static void lu_check_keys(lua_State *L, const char *fn,
                          const char *const *allowed, const char *list) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
    return;
  }
  if (lua_type(L, 1) != LUA_TTABLE)
    luaL_error(L, "upstream.%s: options must be a table (got %s)", fn,
               luaL_typename(L, 1));
  lua_settop(L, 1);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    int k = 0;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING)
      for (; allowed[k]; k++)
        if (strcmp(lua_tostring(L, -1), allowed[k]) == 0) break;
    if (lua_type(L, -1) != LUA_TSTRING || !allowed[k])
      luaL_error(L, "upstream.%s: unknown option %s (allowed: %s)", fn,
                 lu_got(L, -1), list);
  }
}

/* Pushes the driver's function name, made on first use. */
static void lu_push_driver(lua_State *L, const char *name) {
  lua_pushlightuserdata(L, &lu_driver_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_type(L, -1) != LUA_TTABLE) {
    lua_pop(L, 1);
    if (luaL_loadbuffer(L, lu_driver, sizeof lu_driver - 1,
                        "=upstream.checks") != LUA_OK)
      lua_error(L);
    lu_push_sock_functions(L);
    lua_getglobal(L, "string");
    if (lua_type(L, -1) == LUA_TTABLE) lua_getfield(L, -1, "find");
    else lua_pushnil(L);
    lua_remove(L, -2);
    lua_call(L, 5, 1);
    lua_pushlightuserdata(L, &lu_driver_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
}

static int l_tcp_check(lua_State *L) {
  static const char *const allowed[] = {NULL};
  lu_check_keys(L, "tcp_check", allowed, "none");
  lu_push_driver(L, "tcp");
  lua_call(L, 0, 1);
  return 1;
}

/* A string of at least one byte, every byte passing ok. */
static int lu_all(const char *s, size_t n, int (*ok)(unsigned char)) {
  size_t i;
  if (n == 0) return 0;
  for (i = 0; i < n; i++)
    if (!ok((unsigned char)s[i])) return 0;
  return 1;
}

static int lu_pathchar(unsigned char c) { return c > 0x20 && c < 0x7f; }
static int lu_hostchar(unsigned char c) { return c > 0x20 && c < 0x7f; }
static int lu_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }
static int lu_tokenchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z') || (c && strchr("!#$%&'*+-.^_`|~", c));
}
static int lu_valuechar(unsigned char c) {
  return c == ' ' || c == '\t' || (c >= 0x21 && c != 0x7f);
}

/* A string option at 1's field name, checked by ok; dflt when absent. */
static const char *lu_str_opt(lua_State *L, const char *name, const char *dflt,
                              int (*ok)(unsigned char), const char *rule,
                              char first) {
  size_t n;
  const char *s;
  int t = lua_getfield(L, 1, name);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    if (dflt) lua_pushstring(L, dflt);
    else lua_pushnil(L);
    return dflt;
  }
  if (t != LUA_TSTRING) lu_check_opt_error(L, "http_check", name, rule, -1);
  s = lua_tolstring(L, -1, &n);
  if (!lu_all(s, n, ok) || (first && s[0] != first))
    lu_check_opt_error(L, "http_check", name, rule, -1);
  return s;
}

/* Headers the check sets itself. */
static const char *lu_own_header(const char *k) {
  static const char *const own[] = {"host", "connection", "content-length",
                                    "transfer-encoding", NULL};
  int i;
  size_t j, n = strlen(k);
  for (i = 0; own[i]; i++) {
    if (strlen(own[i]) != n) continue;
    for (j = 0; j < n; j++)
      if ((k[j] | 0x20) != own[i][j]) break; /* '-' | 0x20 is '-' */
    if (j == n) return own[i];
  }
  return NULL;
}

/* headers (at 6) -> the request's tail, pushed. */
static void lu_push_tail(lua_State *L) {
  int acc;
  lua_pushliteral(L, "\r\nUser-Agent: upstream\r\nConnection: close\r\n");
  acc = lua_gettop(L);
  if (lua_type(L, 6) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, 6)) {
      size_t kl = 0, vl;
      const char *v, *k = "";    /* not a string: empty, refused below */
      if (lua_type(L, -2) == LUA_TSTRING) k = lua_tolstring(L, -2, &kl);
      if (!lu_all(k, kl, lu_tokenchar))
        luaL_error(L, "upstream.http_check: option 'headers' must have "
                      "header names as keys (got %s)", lu_got(L, -2));
      if (lu_own_header(k))
        luaL_error(L, "upstream.http_check: option 'headers' cannot set "
                      "%s (%s)", k,
                   strcmp(lu_own_header(k), "host") == 0
                       ? "use the 'host' option"
                       : "the check sets it");
      if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "upstream.http_check: option 'headers' must have "
                      "strings as values (got %s for %s)", lu_got(L, -1), k);
      lua_pushvalue(L, -1);
      v = lua_tolstring(L, -1, &vl); /* a copy: tolstring on a number key */
      if (vl > 0 && !lu_all(v, vl, lu_valuechar))
        luaL_error(L, "upstream.http_check: option 'headers' has a value "
                      "with control characters for %s", k);
      lua_pop(L, 1);
      lua_pushvalue(L, acc);
      lua_pushvalue(L, -3);
      lua_pushliteral(L, ": ");
      lua_pushvalue(L, -4);
      lua_pushliteral(L, "\r\n");
      lua_concat(L, 5);
      lua_replace(L, acc);
      lua_pop(L, 1);
    }
  }
  lua_pushliteral(L, "\r\n");
  lua_concat(L, 2);
}

/* expect (at 1's field) -> the set of statuses (pushed) and its text. */
static void lu_push_expect(lua_State *L) {
  static const char rule[] =
      "an HTTP status (an integer in [100, 599]), a list of them, or nil "
      "(any 2xx)";
  int t = lua_getfield(L, 1, "expect"), e = lua_gettop(L), k;
  lua_newtable(L);
  if (t == LUA_TNIL) {
    for (k = 200; k <= 299; k++) {
      lua_pushboolean(L, 1);
      lua_rawseti(L, -2, k);
    }
    lua_pushliteral(L, "2xx");
  } else if (t == LUA_TNUMBER || t == LUA_TTABLE) {
    int n = t == LUA_TNUMBER ? 1 : (int)lua_rawlen(L, e), count = 0;
    luaL_Buffer b;
    if (n == 0) lu_check_opt_error(L, "http_check", "expect", rule, e);
    if (t == LUA_TTABLE) { /* a sequence and nothing else */
      lua_pushnil(L);
      while (lua_next(L, e)) {
        lua_pop(L, 1);
        count++;
      }
      if (count != n) lu_check_opt_error(L, "http_check", "expect", rule, e);
    }
    for (k = 1; k <= n; k++) {
      lua_Integer st = 0;
      int isint = 0;
      if (t == LUA_TNUMBER) lua_pushvalue(L, e);
      else lua_rawgeti(L, e, k);
      if (lua_type(L, -1) == LUA_TNUMBER) st = lua_tointegerx(L, -1, &isint);
      if (!isint || st < 100 || st > 599)
        lu_check_opt_error(L, "http_check", "expect", rule, -1);
      lua_pop(L, 1);
      lua_pushboolean(L, 1);
      lua_rawseti(L, -2, (int)st);
    }
    luaL_buffinit(L, &b);
    if (n > 1) luaL_addstring(&b, "one of ");
    for (k = 1; k <= n; k++) {
      lua_Integer st;
      if (t == LUA_TNUMBER) lua_pushvalue(L, e);
      else lua_rawgeti(L, e, k);
      st = lua_tointeger(L, -1);
      lua_pop(L, 1);
      if (k > 1) luaL_addstring(&b, ", ");
      lua_pushfstring(L, "%d", (int)st);
      luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
  } else {
    lu_check_opt_error(L, "http_check", "expect", rule, e);
  }
  lua_remove(L, e);
}

static int l_http_check(lua_State *L) {
  static const char *const allowed[] = {"path", "expect", "host", "method",
                                        "headers", "body", NULL};
  size_t reqlen = 0;
  int t;
  lu_check_keys(L, "http_check", allowed,
                "path, expect, host, method, headers, body");
  /* 2 path, 3 method, 4 host */
  lu_str_opt(L, "path", "/", lu_pathchar,
             "a string starting with '/', without spaces or control "
             "characters", '/');
  lu_str_opt(L, "method", "GET", lu_upper,
             "a method in capitals, such as \"GET\" or \"HEAD\"", 0);
  lu_str_opt(L, "host", NULL, lu_hostchar,
             "a non-empty string without spaces or control characters", 0);
  /* 5 head: the request line and Host */
  lua_pushvalue(L, 3);
  lua_pushliteral(L, " ");
  lua_pushvalue(L, 2);
  lua_pushliteral(L, " HTTP/1.1\r\nHost: ");
  lua_concat(L, 4);
  /* 6 headers, 7 tail */
  t = lua_getfield(L, 1, "headers");
  if (t != LUA_TNIL && t != LUA_TTABLE)
    lu_check_opt_error(L, "http_check", "headers",
                       "a table { [name] = value }", -1);
  lu_push_tail(L);
  /* 8 expect set, 9 its text */
  lu_push_expect(L);
  /* 10 body */
  t = lua_getfield(L, 1, "body");
  if (t != LUA_TNIL && t != LUA_TSTRING)
    lu_check_opt_error(L, "http_check", "body", "a Lua pattern (a string)",
                       -1);
  reqlen = lua_rawlen(L, 5) + lua_rawlen(L, 7) +
           (lua_isnil(L, 4) ? 0 : lua_rawlen(L, 4));
  if (reqlen > LU_NET_REQ - 300)
    luaL_error(L, "upstream.http_check: the request would be over %d bytes "
                  "(options 'path', 'host', 'headers')", LU_NET_REQ - 300);
  lu_push_driver(L, "http");
  lua_pushvalue(L, 5);
  lua_pushvalue(L, 7);
  lua_pushvalue(L, 4);
  lua_pushvalue(L, 8);
  lua_pushvalue(L, 9);
  lua_pushvalue(L, 10);
  lua_call(L, 6, 1);
  return 1;
}

void lu_checks_open(lua_State *L) {
  lua_pushcfunction(L, l_tcp_check);
  lua_setfield(L, -2, "tcp_check");
  lua_pushcfunction(L, l_http_check);
  lua_setfield(L, -2, "http_check");
}
