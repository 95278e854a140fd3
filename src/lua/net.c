/*
 * lua/net.c - the sockets of the built-in checks (tcp_check, http_check):
 * an upstream.socket userdata (made, with its metatable, before the fd is
 * opened; one idempotent close is __gc, __close and close), the backend's
 * address (resolved once per check), a non-blocking connect, send and
 * receive, and the waits: a check that must wait yields its socket to the
 * scheduler, which polls the fds of the list's waiting checks (poll(2))
 * and wakes the ones that are ready.
 *
 * Every wait is in one table per Lua state (the registry's lu_waits_key,
 * weak keys): check coroutine -> its socket. The scheduler closes a
 * coroutine's socket when it closes the coroutine (timeout, shutdown,
 * reconcile), so no path leaves an fd open until the next collection.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "binding.h"

#define LU_SOCK "upstream.socket"

static char lu_waits_key; /* registry: coroutine -> socket, weak keys */
static char lu_wait_token; /* first value a socket wait yields */

/* Pushes the state's waits table (made by lu_net_open). */
static void lu_push_waits(lua_State *L) {
  lua_pushlightuserdata(L, &lu_waits_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
}

/* Closed with a reset (SO_LINGER 0), as HAProxy closes its checks'
 * connections: no FIN exchange and no TIME_WAIT left on either side for
 * a connection that carried one request. */
static void lu_sock_close(lu_sock *s) {
  if (s->w.fd >= 0) {
    struct linger lg;
    lg.l_onoff = 1;
    lg.l_linger = 0;
    setsockopt(s->w.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(s->w.fd);
  }
  s->w.fd = -1;
  s->w.events = 0;
}

/* __gc, __close: idempotent, copes with a socket that never opened. */
static int l_sock_gc(lua_State *L) {
  lu_sock *s = (lu_sock *)luaL_checkudata(L, 1, LU_SOCK); /* rare: by name */
  lu_sock_close(s);
  return 0;
}

static int l_sock_tostring(lua_State *L) {
  lua_pushfstring(L, LU_SOCK ": %p", lua_touserdata(L, 1));
  return 1;
}

/* A new socket, "empty" (no fd), its metatable set (upvalue 1 of the
 * socket functions), with room for a request of reqlen bytes and a reply
 * buffer of bufcap. */
static lu_sock *lu_sock_new(lua_State *L, size_t reqlen, size_t bufcap) {
  size_t head = (sizeof(lu_sock) + 15u) & ~(size_t)15u;
  lu_sock *s = (lu_sock *)lua_newuserdatauv(L, head + reqlen + bufcap, 0);
  s->req = (char *)s + head;
  s->buf = s->req + reqlen;
  s->bufcap = bufcap;
  s->w.fd = -1;
  s->w.events = s->w.revents = 0;
  s->w.owner = NULL;
  s->w.slot = -1;
  s->w.gen = 0;
  s->state = LU_S_CONNECT;
  s->naddr = s->cur = 0;
  s->reqlen = s->sent = s->len = 0;
  s->eof = 0;
  s->want_body = 0;
  s->err[0] = '\0';
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setmetatable(L, -2);
  return s;
}

/* The socket at 1: its metatable compared with upvalue 1 (cqueues' fast
 * check: no registry lookup by name on every step). */
static lu_sock *lu_to_sock(lua_State *L) {
  lu_sock *s = (lu_sock *)lua_touserdata(L, 1);
  if (s == NULL || !lua_getmetatable(L, 1) ||
      lua_topointer(L, -1) != lua_topointer(L, lua_upvalueindex(1)))
    luaL_typeerror(L, 1, LU_SOCK);
  lua_pop(L, 1);
  return s;
}

/* Splits "host:port", "[v6]:port" into host (NUL-terminated, in buf) and
 * port. NULL when it parses, else why not. */
static const char *lu_split(const char *b, size_t len, char *host,
                            size_t hostcap, char *port, int *numeric) {
  const char *colon, *h = b;
  size_t hl;
  *numeric = 0;
  if (len == 0) return "backend is empty";
  if (b[0] == '[') {
    const char *close_br = memchr(b, ']', len);
    if (!close_br || close_br + 1 >= b + len || close_br[1] != ':')
      return "backend must be \"[v6 address]:port\"";
    h = b + 1;
    hl = (size_t)(close_br - h);
    colon = close_br + 1;
    *numeric = 1;
  } else {
    colon = memchr(b, ':', len);
    if (!colon) return "backend must be \"host:port\"";
    if (memchr(colon + 1, ':', len - (size_t)(colon + 1 - b)))
      return "backend has more than one ':' (an IPv6 address needs brackets: "
             "\"[::1]:80\")";
    hl = (size_t)(colon - b);
  }
  if (hl == 0) return "backend has no host";
  if (hl >= hostcap) return "backend's host is too long";
  memcpy(host, h, hl);
  host[hl] = '\0';
  if (memchr(host, '\0', hl)) return "backend's host holds a NUL byte";
  {
    const char *p = colon + 1, *end = b + len;
    long v = 0;
    size_t n = (size_t)(end - p);
    if (n == 0 || n > 5) return "backend's port must be an integer in [1, 65535]";
    for (; p < end; p++) {
      if (*p < '0' || *p > '9')
        return "backend's port must be an integer in [1, 65535]";
      v = v * 10 + (*p - '0');
    }
    if (v < 1 || v > 65535)
      return "backend's port must be an integer in [1, 65535]";
    memcpy(port, colon + 1, n);
    port[n] = '\0';
  }
  return NULL;
}

/* Resolves backend into s's addresses (getaddrinfo, which blocks for a
 * name that is not in /etc/hosts: numeric hosts never reach DNS). The
 * result list is freed before anything that can raise. 0, or -1 with the
 * message in s->err. */
static int lu_sock_resolve(lu_sock *s, const char *b, size_t len) {
  char host[256], port[8];
  int numeric, rc;
  struct addrinfo hints, *res = NULL, *ai;
  const char *why = lu_split(b, len, host, sizeof host, port, &numeric);
  if (why) {
    snprintf(s->err, sizeof s->err, "%s", why);
    return -1;
  }
  { /* a numeric address needs no getaddrinfo (the common case) */
    struct sockaddr_in *a4 = (struct sockaddr_in *)(void *)&s->addr[0];
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)(void *)&s->addr[0];
    uint16_t pt = (uint16_t)atoi(port);
    memset(&s->addr[0], 0, sizeof s->addr[0]);
    if (!numeric && inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
      a4->sin_family = AF_INET;
      a4->sin_port = htons(pt);
      s->alen[0] = sizeof *a4;
      s->naddr = 1;
      return 0;
    }
    if (numeric && inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
      a6->sin6_family = AF_INET6;
      a6->sin6_port = htons(pt);
      s->alen[0] = sizeof *a6;
      s->naddr = 1;
      return 0;
    }
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (numeric ? AI_NUMERICHOST : 0);
  rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    snprintf(s->err, sizeof s->err, "resolve %.100s: %s", host, gai_strerror(rc));
    return -1;
  }
  for (ai = res; ai && s->naddr < LU_NET_ADDRS; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof s->addr[0]) continue;
    memcpy(&s->addr[s->naddr], ai->ai_addr, ai->ai_addrlen);
    s->alen[s->naddr] = (socklen_t)ai->ai_addrlen;
    s->naddr++;
  }
  freeaddrinfo(res);
  if (s->naddr == 0) {
    snprintf(s->err, sizeof s->err, "resolve %.100s: no address", host);
    return -1;
  }
  return 0;
}

static void lu_sock_fail(lu_sock *s, const char *what, int e) {
  snprintf(s->err, sizeof s->err, "%s: %s", what, strerror(e));
}

/* Starts connecting to address s->cur and the next ones while they fail
 * at once. LU_IO_OK: connected; LU_IO_WAIT: in progress (POLLOUT);
 * LU_IO_FAIL: every address failed (the last error in s->err). */
static int lu_sock_connect(lu_sock *s) {
  for (; s->cur < s->naddr; s->cur++) {
    const struct sockaddr *a = (const struct sockaddr *)&s->addr[s->cur];
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
    /* one system call instead of four (a share of a check's CPU) */
    int fd = socket(a->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
#else
    int fd = socket(a->sa_family, SOCK_STREAM, 0);
#endif
    if (fd < 0) {
      lu_sock_fail(s, "socket", errno);
      continue;
    }
    s->w.fd = fd;
#if !(defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC))
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
      lu_sock_fail(s, "socket", errno);
      lu_sock_close(s);
      continue;
    }
#endif
    if (connect(fd, a, s->alen[s->cur]) == 0) return LU_IO_OK;
    if (errno == EINPROGRESS || errno == EINTR) {
      s->w.events = POLLOUT;
      return LU_IO_WAIT;
    }
    lu_sock_fail(s, "connect", errno);
    lu_sock_close(s);
  }
  return LU_IO_FAIL;
}

/* The connect in progress ended (POLLOUT): its result, or the next
 * address. */
static int lu_sock_connected(lu_sock *s) {
  int e = 0;
  socklen_t el = sizeof e;
  /* poll saw it writable and nothing wrong: connected (HAProxy's checks
   * skip the getsockopt the same way); else ask for the error */
  if (s->w.revents == POLLOUT) return LU_IO_OK;
  if (getsockopt(s->w.fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0) e = errno;
  if (e == 0) return LU_IO_OK;
  if (e == EINPROGRESS || e == EALREADY) {
    s->w.events = POLLOUT;
    return LU_IO_WAIT;
  }
  lu_sock_fail(s, "connect", e);
  lu_sock_close(s);
  s->cur++;
  return lu_sock_connect(s);
}

/* Sends what is left of the request. */
static int lu_sock_send(lu_sock *s) {
  while (s->sent < s->reqlen) {
    ssize_t k = send(s->w.fd, s->req + s->sent, s->reqlen - s->sent,
                     MSG_NOSIGNAL);
    if (k > 0) {
      s->sent += (size_t)k;
    } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      s->w.events = POLLOUT;
      return LU_IO_WAIT;
    } else if (k < 0 && errno == EINTR) {
      continue;
    } else {
      lu_sock_fail(s, "send", k < 0 ? errno : EPIPE);
      return LU_IO_FAIL;
    }
  }
  return LU_IO_OK;
}

/* Receives once into the buffer. LU_IO_OK: new bytes, or the peer closed
 * (s->eof), or the buffer is full; the caller parses before it asks for
 * more, so a reply whose head came in one segment costs one recv. */
static int lu_sock_recv(lu_sock *s) {
  while (s->len < s->bufcap && !s->eof) {
    ssize_t k = recv(s->w.fd, s->buf + s->len, s->bufcap - s->len, 0);
    if (k > 0) {
      s->len += (size_t)k;
      return LU_IO_OK;
    }
    if (k == 0) {
      s->eof = 1;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      s->w.events = POLLIN;
      return LU_IO_WAIT;
    } else if (errno != EINTR) {
      lu_sock_fail(s, "receive", errno);
      return LU_IO_FAIL;
    }
  }
  return LU_IO_OK;
}

/* sock_open(backend [, request [, want_body]]) -> socket | nil, err.
 * Resolves the backend and starts connecting; a backend that is not a
 * "host:port" string, or that cannot be resolved, is a failed check. */
/* Raises unless L is the coroutine of a check run by step(), run() or
 * wait_initial(): the only place a built-in check can wait. Checked when
 * the check starts, so that one whose connection fails at once raises
 * there too rather than return a result nobody schedules. */
static void lu_check_own(lua_State *L) {
  if (!lu_in_own_check(L))
    luaL_error(L, "upstream: tcp_check and http_check run only as the "
                  "check of a list driven by step(), run() or "
                  "wait_initial() (in nginx: upstream.nginx's checks)");
}

static int l_sock_open(lua_State *L) {
  size_t blen, rlen = 0;
  const char *b, *req = NULL;
  lu_sock *s;
  lu_check_own(L);
  if (lua_type(L, 1) != LUA_TSTRING) {
    lua_pushnil(L);
    lua_pushfstring(L, "backend must be a \"host:port\" string (got %s)",
                    luaL_typename(L, 1));
    return 2;
  }
  b = lua_tolstring(L, 1, &blen);
  if (!lua_isnoneornil(L, 2)) req = luaL_checklstring(L, 2, &rlen);
  if (rlen > LU_NET_REQ) {
    lua_pushnil(L);
    lua_pushfstring(L, "request over %d bytes", (int)LU_NET_REQ);
    return 2;
  }
  s = lu_sock_new(L, rlen, !req ? 0 : lua_toboolean(L, 3) ? LU_NET_BUF
                                                           : LU_HTTP_HEAD);
  if (req) memcpy(s->req, req, rlen);
  s->reqlen = rlen;
  s->want_body = lua_toboolean(L, 3);
  s->http = req != NULL;
  if (lu_sock_resolve(s, b, blen) < 0) {
    lua_pushnil(L);
    lua_pushstring(L, s->err);
    return 2;
  }
  return 1;
}

/* sock_step(socket) -> "wait" | true [, status [, body]] | false, err.
 * Moves the check as far as it can without blocking. */
static int l_sock_step(lua_State *L) {
  lu_sock *s = lu_to_sock(L);
  int rc = LU_IO_OK;
  s->w.events = 0;
  for (;;) {
    switch (s->state) {
      case LU_S_CONNECT: {
        int fresh = s->w.fd < 0;
        rc = fresh ? lu_sock_connect(s) : lu_sock_connected(s);
        s->w.revents = 0;
        if (rc == LU_IO_WAIT && fresh && s->http) {
          /* On loopback and near networks the handshake is often over
           * by now: sending at once saves a wait in poll() and a wake-up
           * per check. A connect still in progress says EAGAIN; one that
           * failed gives its error, and the next address is tried. */
          ssize_t k = send(s->w.fd, s->req, s->reqlen, MSG_NOSIGNAL);
          if (k > 0) {
            s->sent = (size_t)k;
            s->w.events = 0;
            s->state = LU_S_SEND;
            continue;
          }
          if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
              errno != EINTR && errno != ENOTCONN) {
            lu_sock_fail(s, "connect", errno);
            lu_sock_close(s);
            s->cur++;
            continue; /* fd < 0: the next address, or the failure */
          }
        }
        if (rc != LU_IO_OK) break;
        if (!s->http) {
          s->state = LU_S_DONE;
          lua_pushboolean(L, 1);
          return 1;
        }
        s->state = LU_S_SEND;
        continue;
      }
      case LU_S_SEND:
        if ((rc = lu_sock_send(s)) != LU_IO_OK) break;
        s->state = LU_S_RECV;
        continue;
      case LU_S_RECV: {
        lu_http h = {0, NULL, 0};
        int ph;
        if ((rc = lu_sock_recv(s)) != LU_IO_OK) break;
        ph = lu_http_parse(s->buf, s->len, s->eof || s->len >= s->bufcap,
                           s->want_body, &h, s->err, sizeof s->err);
        if (ph < 0) {
          rc = LU_IO_FAIL;
          break;
        }
        if (ph == 0) continue; /* more to read */
        s->state = LU_S_DONE;
        lu_sock_close(s);
        lua_pushboolean(L, 1);
        lua_pushinteger(L, h.status);
        if (s->want_body) lua_pushlstring(L, h.body, h.body_len);
        return s->want_body ? 3 : 2;
      }
      default:
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "socket already used");
        return 2;
    }
    break;
  }
  if (rc == LU_IO_WAIT) {
    lua_pushliteral(L, "wait");
    return 1;
  }
  s->state = LU_S_DONE;
  lu_sock_close(s);
  lua_pushboolean(L, 0);
  lua_pushstring(L, s->err);
  return 2;
}

/* sock_close(socket): closes it and forgets the running check's wait. */
static int l_sock_close(lua_State *L) {
  lu_sock *s = lu_to_sock(L);
  lu_sock_close(s);
  lu_push_waits(L);
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_pushthread(L);
    lua_pushnil(L);
    lua_rawset(L, -3);
  }
  return 0;
}

/* sock_wait(socket): yields to the scheduler until the socket is ready for
 * what it waits for, or the check's deadline. Only directly inside a
 * check run by step(), run() or wait_initial(). */
static int l_sock_wait(lua_State *L) {
  lu_sock *s = lu_to_sock(L);
  lu_check_own(L);
  if (s->w.fd < 0 || s->w.events == 0)
    luaL_error(L, "upstream: the socket is not waiting");
  lu_push_waits(L);
  lua_pushthread(L);
  lua_pushvalue(L, 1);
  lua_rawset(L, -3);
  lua_settop(L, 1);
  lua_pushlightuserdata(L, &lu_wait_token);
  lua_insert(L, 1);
  return lua_yield(L, 2);
}

lu_wait *lu_yielded_wait(lua_State *co, int nres) {
  if (nres >= 2 && lua_touserdata(co, -nres) == &lu_wait_token)
    return (lu_wait *)lua_touserdata(co, -nres + 1);
  return NULL;
}

void lu_close_wait(lua_State *L, lua_State *co) {
  /* no room (never met: both stacks have room after a resume): the
   * socket's __gc closes it then */
  if (!lua_checkstack(L, 4) || !lua_checkstack(co, 1)) return;
  lu_push_waits(L);
  if (lua_type(L, -1) == LUA_TTABLE) {
    lu_sock *s;
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    s = (lu_sock *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (s) {
      lu_sock_close(s);
      lua_pushnil(L);
      lua_rawset(L, -3);
    } else {
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

/* Sleeps secs (> 0) without polling: nanosleep. */
static void lu_nap(double secs) {
  struct timespec ts;
  ts.tv_sec = (time_t)secs;
  ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
  nanosleep(&ts, NULL);
}

/* Is w a wait of list u that poll() should watch? */
static int lu_watched(const lu_wait *w, const lu_list *u) {
  return w && w->owner == u && w->fd >= 0 && w->events;
}

int lu_poll_waits(lua_State *L, int list, double secs) {
  enum { STACK_FDS = 64 };
  struct pollfd stack_fds[STACK_FDS], *fds = stack_fds;
  lu_wait *stack_w[STACK_FDS], **ws = stack_w;
  const lu_list *u = (const lu_list *)lua_touserdata(L, list);
  int top = lua_gettop(L), n = 0, k = 0, ready, ms, t;
  lu_push_waits(L);
  t = lua_gettop(L);
  if (lua_type(L, t) != LUA_TTABLE) {
    lua_settop(L, top);
    return -1;
  }
  /* count, then gather: lua_next calls no Lua code */
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (lu_watched((lu_wait *)lua_touserdata(L, -1), u)) n++;
    lua_pop(L, 1);
  }
  if (n == 0) {
    lua_settop(L, top);
    return -1;
  }
  if (n > STACK_FDS) { /* a Lua userdata: nothing malloc'd if this raises */
    char *m = (char *)lua_newuserdatauv(
        L, (size_t)n * (sizeof *fds + sizeof *ws), 0);
    fds = (struct pollfd *)(void *)m;
    ws = (lu_wait **)(void *)(m + (size_t)n * sizeof *fds);
  }
  /* the sockets stay anchored in the table: no Lua code runs until the
   * marks below are made */
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lu_wait *w = (lu_wait *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (lu_watched(w, u) && k < n) {
      fds[k].fd = w->fd;
      fds[k].events = (short)w->events;
      fds[k].revents = 0;
      ws[k++] = w;
    }
  }
  /* a wait under 1 ms (poll's unit): look, then nap */
  ms = secs >= 0.001 ? (int)fmin(ceil(secs * 1000), 3600e3) : 0;
  ready = poll(fds, (nfds_t)k, ms);
  if (ready == 0 && ms == 0 && secs > 0) {
    lu_nap(secs);
    ready = poll(fds, (nfds_t)k, 0);
  }
  if (ready > 0) {
    ul_list *c = u->core;
    int i;
    for (i = 0; i < k; i++)
      if (fds[i].revents) {
        /* due at the list's last time: the next step resumes it */
        ul_sleep(c, ws[i]->slot, ws[i]->gen, c->now);
        ws[i]->revents = fds[i].revents;
        ws[i]->events = 0;
      }
  }
  lua_settop(L, top);
  return ready > 0 ? ready : 0;
}

void lu_net_open(lua_State *L) {
  static const luaL_Reg meta[] = {{"__gc", l_sock_gc},
                                  {"__close", l_sock_gc},
                                  {"__tostring", l_sock_tostring},
                                  {NULL, NULL}};
  if (luaL_newmetatable(L, LU_SOCK)) luaL_setfuncs(L, meta, 0);
  lua_pop(L, 1);
  lu_push_waits(L);
  if (lua_type(L, -1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushlightuserdata(L, &lu_waits_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_pop(L, 1);
}

/* The socket functions, each with the socket metatable as upvalue 1. */
void lu_push_sock_functions(lua_State *L) {
  static const lua_CFunction fns[] = {l_sock_open, l_sock_step, l_sock_wait,
                                      l_sock_close};
  int i;
  for (i = 0; i < 4; i++) {
    luaL_getmetatable(L, LU_SOCK);
    lua_pushcclosure(L, fns[i], 1);
  }
}
