/*
 * core/shm.c - named shared mappings, their robust mutex, the prober
 * lease and the string arena (shm.h). The rules, and why, are in
 * docs/ARCHITECTURE.md, "Shared memory (foundation for issue 10)".
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE 1 /* MAP_ANONYMOUS, next to _POSIX_C_SOURCE */
#endif
#include "shm.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef MAP_ANONYMOUS
#define MAP_ANONYMOUS MAP_ANON
#endif

#define SHM_MAGIC 0x756C73686D763031ULL /* "ulshmv01" */
#define SHM_ALIGN 64

/* The header of a mapping. Every field is written with mu held; the lease
 * is also read without it, as a sequence lock whose sequence is
 * lease_token (the generation of the current holding, 0 while free or
 * while a takeover is half written): generations never repeat, so a
 * reader that sees the same non-zero token before and after reading the
 * other fields has read one holding. */
struct ul_shm {
  uint64_t magic;
  uint64_t sig;      /* the caller's layout signature */
  uint64_t size;     /* bytes of the user area */
  uint64_t map_size; /* bytes mapped, this header included */
  pthread_mutex_t mu; /* PTHREAD_PROCESS_SHARED, PTHREAD_MUTEX_ROBUST */
  uint32_t dirty;    /* a holder died: the derived state is owed a rebuild */
  uint32_t pad;
  uint64_t recoveries;
  uint64_t locks;    /* acquisitions of mu, by every process (tests) */
  uint64_t lease_token; /* current holding's generation, 0 when free */
  uint64_t lease_last;  /* the last generation handed out */
  int64_t lease_pid;
  double lease_since, lease_expiry;
};

#define SHM_HEADER (((sizeof(struct ul_shm) + SHM_ALIGN - 1) / SHM_ALIGN) * SHM_ALIGN)

/* --- the registry ---------------------------------------------------------
 * Process-wide, for the life of the process (it outlives every lua_State:
 * the next config's init_by_lua finds the name). Copied by fork, as the
 * mappings are shared by it; the atfork handlers keep a fork from copying
 * it half locked. */

struct entry {
  struct entry *next;
  ul_shm *m;
  size_t namelen;
  char name[]; /* NUL-terminated */
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;
static struct entry *reg_head;
static int reg_fail; /* ul_shm_fail_at: resources until one fails */
/* getpid(), kept: the lease compares it on every report, and getpid is a
 * system call. Set once before any mapping is handed out, and again in
 * every child forked after. */
static int64_t self_pid;

static void reg_lock(void) { pthread_mutex_lock(&reg_mu); }
static void reg_unlock(void) { pthread_mutex_unlock(&reg_mu); }
static void reg_child(void) {
  self_pid = (int64_t)getpid();
  pthread_mutex_unlock(&reg_mu);
}
static void reg_atfork(void) {
  self_pid = (int64_t)getpid();
  pthread_atfork(reg_lock, reg_unlock, reg_child);
}

void ul_shm_fail_at(int k) {
  pthread_once(&reg_once, reg_atfork);
  reg_lock();
  reg_fail = k > 0 ? k : 0;
  reg_unlock();
}

/* With reg_mu held: 1 when this resource is the one to fail. */
static int fail_now(void) {
  return reg_fail > 0 && --reg_fail == 0;
}

/* Makes a new mapping's mutex: process-shared and robust, and error
 * checking, so that locking it twice from one thread (a callback that
 * re-enters a writer) is an error rather than a hang. */
static int mutex_make(pthread_mutex_t *mu) {
  pthread_mutexattr_t at;
  int ok;
  if (pthread_mutexattr_init(&at) != 0)
    return 0;
  ok = pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED) == 0 &&
       pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST) == 0 &&
       pthread_mutexattr_settype(&at, PTHREAD_MUTEX_ERRORCHECK) == 0 &&
       pthread_mutex_init(mu, &at) == 0;
  pthread_mutexattr_destroy(&at);
  return ok;
}

/* With reg_mu held: a new mapping, registered, or an error. */
static int shm_make(const char *name, size_t namelen, uint64_t sig,
                    size_t size, ul_shm **out) {
  long page = sysconf(_SC_PAGESIZE);
  size_t pg = page > 0 ? (size_t)page : 4096, total;
  void *p;
  ul_shm *m;
  struct entry *e;
  if (size > SIZE_MAX - SHM_HEADER - pg)
    return UL_SHM_EINVAL;
  total = (SHM_HEADER + size + pg - 1) / pg * pg;
  if (fail_now()) {
    errno = ENOMEM;
    return UL_SHM_ENOMAP;
  }
  p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
           -1, 0);
  if (p == MAP_FAILED)
    return UL_SHM_ENOMAP; /* errno from mmap */
  m = (ul_shm *)p;        /* zero-filled */
  m->magic = SHM_MAGIC;
  m->sig = sig;
  m->size = size;
  m->map_size = total;
  if (!mutex_make(&m->mu)) {
    munmap(p, total);
    return UL_SHM_EMUTEX;
  }
  e = fail_now() ? NULL : (struct entry *)malloc(sizeof *e + namelen + 1);
  if (!e) {
    pthread_mutex_destroy(&m->mu);
    munmap(p, total);
    errno = ENOMEM;
    return UL_SHM_ENOMAP;
  }
  e->m = m;
  e->namelen = namelen;
  memcpy(e->name, name, namelen + 1);
  e->next = reg_head;
  reg_head = e;
  *out = m;
  return UL_SHM_MADE;
}

int ul_shm_open(const char *name, uint64_t sig, size_t size, ul_shm **out) {
  size_t namelen;
  struct entry *e;
  int rc;
  *out = NULL;
  if (!name || size == 0)
    return UL_SHM_EINVAL;
  namelen = strnlen(name, UL_SHM_NAME_MAX + 1);
  if (namelen == 0 || namelen > UL_SHM_NAME_MAX)
    return UL_SHM_EINVAL;
  pthread_once(&reg_once, reg_atfork);
  reg_lock();
  for (e = reg_head; e; e = e->next)
    if (e->namelen == namelen && memcmp(e->name, name, namelen) == 0)
      break;
  if (e) {
    *out = e->m;
    rc = e->m->sig == sig && e->m->size == size ? UL_SHM_FOUND : UL_SHM_ELAYOUT;
  } else {
    rc = shm_make(name, namelen, sig, size, out);
  }
  reg_unlock();
  return rc;
}

ul_shm *ul_shm_find(const char *name) {
  size_t namelen;
  struct entry *e;
  if (!name) return NULL;
  namelen = strnlen(name, UL_SHM_NAME_MAX + 1);
  if (namelen == 0 || namelen > UL_SHM_NAME_MAX) return NULL;
  pthread_once(&reg_once, reg_atfork);
  reg_lock();
  for (e = reg_head; e; e = e->next)
    if (e->namelen == namelen && memcmp(e->name, name, namelen) == 0)
      break;
  reg_unlock();
  return e ? e->m : NULL;
}

int ul_shm_alias(const char *name, ul_shm *m) {
  size_t namelen;
  struct entry *e;
  if (!name || !m) return 0;
  namelen = strnlen(name, UL_SHM_NAME_MAX + 1);
  if (namelen == 0 || namelen > UL_SHM_NAME_MAX) return 0;
  pthread_once(&reg_once, reg_atfork);
  reg_lock();
  for (e = reg_head; e; e = e->next)
    if (e->namelen == namelen && memcmp(e->name, name, namelen) == 0)
      break;
  if (e) e->m = m;
  reg_unlock();
  return e != NULL;
}

const char *ul_shm_strerror(int rc) {
  switch (rc) {
  case UL_SHM_MADE: return "made";
  case UL_SHM_FOUND: return "found";
  case UL_SHM_EINVAL: return "the name must be 1 to 255 bytes and the size at least 1 byte and mappable";
  case UL_SHM_ELAYOUT: return "a shared mapping of this name exists with other options";
  case UL_SHM_ENOMAP: return "the system could not make a shared mapping";
  case UL_SHM_EMUTEX: return "the system has no process-shared robust mutex";
  case UL_LOCK_ERROR: return "the shared mutex cannot be locked";
  default: return "unknown result";
  }
}

void *ul_shm_data(ul_shm *m) { return (char *)m + SHM_HEADER; }
size_t ul_shm_size(const ul_shm *m) { return (size_t)m->size; }
uint64_t ul_shm_sig(const ul_shm *m) { return m->sig; }

/* --- the mutex ------------------------------------------------------------ */

int ul_shm_lock(ul_shm *m, void (*rebuild)(ul_shm *m, void *ud), void *ud) {
  int rc = pthread_mutex_lock(&m->mu);
  if (rc == EOWNERDEAD) {
    /* dirty first: if this process dies before the rebuild is done, the
     * next locker still owes it */
    m->dirty = 1;
    m->recoveries++;
    if (pthread_mutex_consistent(&m->mu) != 0) {
      pthread_mutex_unlock(&m->mu);
      return UL_LOCK_ERROR;
    }
  } else if (rc != 0) {
    return UL_LOCK_ERROR;
  }
  m->locks++;
  if (!m->dirty)
    return UL_LOCK_OK;
  if (rebuild) {
    rebuild(m, ud);
    m->dirty = 0;
  }
  return UL_LOCK_RECOVERED;
}

void ul_shm_unlock(ul_shm *m) { pthread_mutex_unlock(&m->mu); }

int ul_shm_dirty(const ul_shm *m) { return m->dirty != 0; }

uint64_t ul_shm_recoveries(const ul_shm *m) { return m->recoveries; }

uint64_t ul_shm_locks(const ul_shm *m) { return m->locks; }

/* --- the lease -------------------------------------------------------------
 * Every field is accessed with __atomic builtins: written under mu, read
 * by ul_shm_lease_check and ul_shm_lease_read without it. */

/* The sequence lock without fences (ThreadSanitizer models none): the
 * writer clears the token, then stores each field with release, so a
 * reader whose acquire load sees a new field also sees the cleared token
 * on its second read; the reader's field loads are acquire, so that
 * second read comes after them. */
#define LD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define ST(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

static double ld_dbl(const double *p) {
  double v;
  __atomic_load(p, &v, __ATOMIC_ACQUIRE);
  return v;
}
static void st_dbl(double *p, double v) { __atomic_store(p, &v, __ATOMIC_RELEASE); }

/* 0 only when pid surely no longer exists (a zombie still does). */
static int pid_alive(int64_t pid) {
  if (pid <= 0 || (int64_t)(pid_t)pid != pid)
    return 0;
  return kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

static int lease_args(double now, double ttl) {
  return isfinite(now) && isfinite(ttl) && ttl > 0;
}

int ul_shm_lease_acquire(ul_shm *m, double now, double ttl, uint64_t *gen) {
  uint64_t g;
  if (!lease_args(now, ttl))
    return UL_SHM_EINVAL;
  if (ul_shm_lock(m, NULL, NULL) < 0)
    return UL_LOCK_ERROR;
  if (LD(&m->lease_token) != 0 && now < ld_dbl(&m->lease_expiry) &&
      pid_alive(LD(&m->lease_pid))) {
    ul_shm_unlock(m);
    return 0;
  }
  /* a takeover: the last generation first (never reused, even if this
   * process dies here), the token cleared while the fields change */
  g = LD(&m->lease_last) + 1;
  ST(&m->lease_last, g);
  ST(&m->lease_token, 0);
  ST(&m->lease_pid, self_pid);
  st_dbl(&m->lease_since, now);
  st_dbl(&m->lease_expiry, now + ttl);
  ST(&m->lease_token, g);
  ul_shm_unlock(m);
  *gen = g;
  return 1;
}

/* With mu held: 1 when gen is the current holding, of this process. */
static int lease_mine(const ul_shm *m, uint64_t gen) {
  return gen != 0 && LD(&m->lease_token) == gen && LD(&m->lease_pid) == self_pid;
}

int ul_shm_lease_renew(ul_shm *m, uint64_t gen, double now, double ttl) {
  int ok;
  if (!lease_args(now, ttl))
    return UL_SHM_EINVAL;
  if (ul_shm_lock(m, NULL, NULL) < 0)
    return UL_LOCK_ERROR;
  ok = lease_mine(m, gen);
  if (ok)
    st_dbl(&m->lease_expiry, now + ttl);
  ul_shm_unlock(m);
  return ok;
}

int ul_shm_lease_release(ul_shm *m, uint64_t gen) {
  int ok;
  if (ul_shm_lock(m, NULL, NULL) < 0)
    return UL_LOCK_ERROR;
  ok = lease_mine(m, gen);
  if (ok) {
    ST(&m->lease_token, 0);
    ST(&m->lease_pid, 0);
    st_dbl(&m->lease_expiry, 0);
  }
  ul_shm_unlock(m);
  return ok;
}

int ul_shm_lease_check(const ul_shm *m, uint64_t gen) {
  int64_t pid;
  if (gen == 0 || LD(&m->lease_token) != gen)
    return 0;
  pid = LD(&m->lease_pid);
  return LD(&m->lease_token) == gen && pid == self_pid;
}

void ul_shm_lease_read(const ul_shm *m, ul_lease *st) {
  int tries;
  uint64_t t1 = 0, t2;
  /* a writer holds mu for a few stores: a handful of tries read a whole
   * holding; one that died mid-takeover left the token 0 (free) */
  for (tries = 0; tries < 1000; tries++) {
    t1 = LD(&m->lease_token);
    st->pid = LD(&m->lease_pid);
    st->since = ld_dbl(&m->lease_since);
    st->expiry = ld_dbl(&m->lease_expiry);
    t2 = LD(&m->lease_token);
    if (t1 == t2)
      break;
  }
  if (t1 == 0) {
    st->pid = 0;
    st->gen = LD(&m->lease_last);
  } else {
    st->gen = t1;
  }
}

/* --- the string arena ------------------------------------------------------
 * A chunk at offset o (a multiple of 8 from the arena) starts with one
 * 64-bit word: the chunk's size in bytes in the low half, and in the high
 * half 0 when free, else the string's length + 1. */

#define ARENA_FIRST ((uint32_t)sizeof(ul_arena))
#define CHUNK_MIN 16u
#define ARENA_MAX ((size_t)UINT32_MAX & ~(size_t)7)

static uint64_t chunk_word(const ul_arena *a, uint32_t o) {
  return __atomic_load_n((const uint64_t *)(const void *)((const char *)a + o),
                         __ATOMIC_RELAXED);
}
/* The one store that changes a chunk: release, so the bytes it covers are
 * in place first, and whole, so a process killed at any instant leaves
 * either the old chunk or the new one. */
static void chunk_set(ul_arena *a, uint32_t o, uint32_t size, uint64_t len1) {
  __atomic_store_n((uint64_t *)(void *)((char *)a + o),
                   (uint64_t)size | len1 << 32, __ATOMIC_RELEASE);
}
#define CSIZE(w) ((uint32_t)(w))
#define CLEN1(w) ((uint32_t)((w) >> 32))

size_t ul_arena_cost(size_t len) {
  if (len > ARENA_MAX - 16)
    return 0;
  return (8 + len + 1 + 7) & ~(size_t)7;
}

size_t ul_arena_size(size_t bytes) {
  size_t n;
  if (bytes > ARENA_MAX - ARENA_FIRST - CHUNK_MIN)
    return 0;
  n = ARENA_FIRST + ((bytes + 7) & ~(size_t)7);
  if (n < ARENA_FIRST + CHUNK_MIN)
    n = ARENA_FIRST + CHUNK_MIN;
  return n;
}

int ul_arena_init(ul_arena *a, size_t size) {
  size &= ~(size_t)7;
  if (size < ARENA_FIRST + CHUNK_MIN || size > ARENA_MAX)
    return 0;
  memset(a, 0, sizeof *a);
  a->size = (uint32_t)size;
  a->hint = ARENA_FIRST;
  chunk_set(a, ARENA_FIRST, (uint32_t)size - ARENA_FIRST, 0);
  return 1;
}

uint32_t ul_arena_alloc(ul_arena *a, const void *s, size_t len) {
  size_t cost = ul_arena_cost(len);
  uint32_t need, o = a->hint, sz, rest;
  uint64_t w;
  int seen = 0;
  if (cost == 0 || cost > a->size - ARENA_FIRST)
    return 0;
  need = (uint32_t)cost;
  while (o < a->size) {
    w = chunk_word(a, o);
    sz = CSIZE(w);
    if (CLEN1(w)) {
      o += sz;
      continue;
    }
    /* merge the free chunks that follow: one store; the merged headers
     * become bytes of a free chunk */
    while (o + sz < a->size && CLEN1(chunk_word(a, o + sz)) == 0) {
      sz += CSIZE(chunk_word(a, o + sz));
      chunk_set(a, o, sz, 0);
    }
    if (!seen) {
      seen = 1;
      a->hint = o;
    }
    if (sz >= need) {
      rest = sz - need;
      if (rest >= CHUNK_MIN)
        chunk_set(a, o + need, rest, 0); /* inside a free chunk: harmless */
      else
        need = sz;
      if (len)
        memcpy((char *)a + o + 8, s, len);
      ((char *)a)[o + 8 + len] = 0;
      chunk_set(a, o, need, (uint64_t)len + 1);
      a->nused++;
      a->used += need;
      if (a->hint == o)
        a->hint = o + need; /* everything before is in use */
      return o + 8;
    }
    o += sz;
  }
  if (!seen)
    a->hint = a->size;
  return 0;
}

/* The chunk of the string at off, or 0 when its header says it is not one. */
static uint32_t chunk_of(const ul_arena *a, uint32_t off) {
  uint32_t o, sz, len1;
  uint64_t w;
  if (off < ARENA_FIRST + 8 || off % 8 != 0 || off > a->size - 8)
    return 0;
  o = off - 8;
  w = chunk_word(a, o);
  sz = CSIZE(w);
  len1 = CLEN1(w);
  if (len1 == 0 || sz < CHUNK_MIN || sz % 8 != 0 || sz > a->size - o ||
      (uint64_t)len1 + 8 > sz)
    return 0;
  return o;
}

int ul_arena_free(ul_arena *a, uint32_t off) {
  uint32_t o = chunk_of(a, off), sz;
  if (!o)
    return 0;
  sz = CSIZE(chunk_word(a, o));
  chunk_set(a, o, sz, 0);
  a->nused--;
  a->used -= sz;
  if (o < a->hint)
    a->hint = o;
  return 1;
}

const char *ul_arena_get(const ul_arena *a, uint32_t off, size_t *len) {
  uint32_t o = chunk_of(a, off);
  if (!o)
    return NULL;
  if (len)
    *len = CLEN1(chunk_word(a, o)) - 1;
  return (const char *)a + off;
}

int ul_arena_eq(const ul_arena *a, uint32_t off, const void *s, size_t len) {
  size_t n;
  const char *p = ul_arena_get(a, off, &n);
  return p && n == len && memcmp(p, s, len) == 0;
}

/* 1 when the chunk at o has a sane size; o + size stays within the arena. */
static int chunk_ok(const ul_arena *a, uint32_t o, uint64_t w) {
  uint32_t sz = CSIZE(w);
  return sz >= CHUNK_MIN && sz % 8 == 0 && sz <= a->size - o &&
         (CLEN1(w) == 0 || (uint64_t)CLEN1(w) + 8 <= sz);
}

uint32_t ul_arena_recover(ul_arena *a, int (*live)(uint32_t off, void *ud),
                          void *ud) {
  uint32_t o, freed = 0, nused = 0, used = 0, hint = a->size;
  uint64_t w;
  for (o = ARENA_FIRST; o < a->size; o += CSIZE(w)) {
    w = chunk_word(a, o);
    if (!chunk_ok(a, o, w))
      break; /* cannot happen: every change leaves the chunks tiling */
    if (CLEN1(w) && live && !live(o + 8, ud)) {
      chunk_set(a, o, CSIZE(w), 0);
      w = chunk_word(a, o);
      freed++;
    }
    if (CLEN1(w)) {
      nused++;
      used += CSIZE(w);
    } else if (hint == a->size) {
      hint = o;
    }
  }
  a->nused = nused;
  a->used = used;
  a->hint = hint;
  return freed;
}

const char *ul_arena_validate(const ul_arena *a) {
  uint32_t o, nused = 0, used = 0, first_free = 0;
  int hint_seen = 0;
  uint64_t w;
  if (a->size % 8 != 0 || a->size < ARENA_FIRST + CHUNK_MIN)
    return "size";
  for (o = ARENA_FIRST; o < a->size; o += CSIZE(w)) {
    w = chunk_word(a, o);
    if (!chunk_ok(a, o, w))
      return "a chunk's size or length";
    if (o == a->hint)
      hint_seen = 1;
    if (CLEN1(w)) {
      if (((const char *)a)[o + 8 + CLEN1(w) - 1] != 0)
        return "a string's NUL";
      nused++;
      used += CSIZE(w);
    } else if (!first_free) {
      first_free = o;
    }
  }
  if (o != a->size)
    return "the chunks do not end at the arena's end";
  if (!hint_seen && a->hint != a->size)
    return "hint is not a chunk";
  if (first_free && a->hint > first_free)
    return "hint is past the first free chunk";
  if (nused != a->nused)
    return "nused";
  if (used != a->used)
    return "used";
  return NULL;
}
