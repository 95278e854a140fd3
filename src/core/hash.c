/*
 * core/hash.c - ul_hash, the 64-bit hash of backends (for the Maglev table)
 * and of hash keys. Byte order independent: a key hashes alike on every
 * host of a fleet.
 */
#include "core.h"

#include <string.h>

/* Little-endian loads, whatever the machine. Fixed-size memcpy compiles to
 * one load. */
static uint64_t hash_le64(const unsigned char *b) {
  uint64_t w;
  memcpy(&w, b, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  w = __builtin_bswap64(w);
#endif
  return w;
}

static uint64_t hash_le32(const unsigned char *b) {
  uint32_t w;
  memcpy(&w, b, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  w = __builtin_bswap32(w);
#endif
  return w;
}

/* A word at a time, each multiplied in (the last 1..7 bytes read as two
 * overlapping halves, as wyhash does); murmur3's finaliser at the end. */
uint64_t ul_hash(const void *p, size_t len) {
  const unsigned char *b = (const unsigned char *)p;
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ (len * 0xC2B2AE3D27D4EB4FULL);
  uint64_t w;
  for (; len >= 8; len -= 8, b += 8)
    h = (h ^ (hash_le64(b) * 0x87C37B91114253D5ULL)) * 0x4CF5AD432745937FULL;
  if (len >= 4)
    w = hash_le32(b) << 32 | hash_le32(b + len - 4);
  else if (len > 0)
    w = (uint64_t)b[0] << 16 | (uint64_t)b[len >> 1] << 8 | b[len - 1];
  else
    w = 0;
  h = (h ^ (w * 0x87C37B91114253D5ULL)) * 0x4CF5AD432745937FULL;
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDULL;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ULL;
  h ^= h >> 33;
  return h;
}
