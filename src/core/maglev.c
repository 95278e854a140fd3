/*
 * core/maglev.c - the hash strategy: a Maglev lookup table of M >= 100
 * entries per slot, each entry an eligible slot, members weighted by their
 * effective weight; rebuilt on the first pick after the eligible set or a
 * weight changed (l->maglev_dirty, set by pick.c). A key is one multiply
 * away from its entry.
 */
#include "pick.h"
#include "block.h"

static int maglev_is_prime(uint64_t m) {
  uint64_t d;
  if (m < 2) return 0;
  for (d = 2; d * d <= m; d++)
    if (m % d == 0) return 0;
  return 1;
}

/* Maglev table size: a prime >= 100 entries per slot and >= 16381. Balance
 * and stability both improve with M/n: the keys a change moves beyond its
 * own share were 1.3% at M/n = 200 and 0.25% at 3000 (n = 5). Every key's
 * entry depends on M, so a growing list keeps its M (prev) while that
 * still gives 20 entries per slot: only outgrowing it remaps the keys. */
uint64_t ulp_maglev_size(uint32_t cap, uint32_t prev) {
  uint64_t m = (uint64_t)cap * 100;
  if (prev && prev >= (uint64_t)cap * 20) return prev;
  if (m < 16381) m = 16381;
  while (!maglev_is_prime(m)) m++;
  return m;
}

static uint64_t maglev_mix64(uint64_t x) { /* splitmix64's finaliser */
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

/* Each eligible member's preferences (offset, skip) from its hash; returns
 * how many there are, and the greatest effective weight in *wmax. */
static uint32_t maglev_members(ul_list *l, int64_t *wmax) {
  ul_magx *mx = ulb_magx(l);
  uint32_t m = l->maglev_m, e = 0, p;
  *wmax = 0;
  for (p = 0; p < l->n; p++) {
    const ul_node *x = ulb_at(l, p);
    if (!x->elig) continue;
    mx[e].slot = ul_order(l)[p];
    mx[e].offset = (uint32_t)(x->hash % m);
    mx[e].skip = (uint32_t)(maglev_mix64(x->hash) % (m - 1)) + 1;
    mx[e].next = 0;
    mx[e].credit = 0;
    if (x->ew > *wmax) *wmax = x->ew;
    e++;
  }
  return e;
}

/* Fills the table: members take turns claiming their next preferred free
 * entry, each as often as its share of the greatest effective weight. The
 * member of the greatest weight earns a credit of exactly 1 a turn, so
 * every turn claims an entry and the build ends after at most M turns;
 * when every eligible weight is 0 (weight 0 through the C API: 0 / 0 gave
 * no member any credit, and the loop never ended) each member earns 1,
 * equal shares. A member's probes visit every entry once in its first M
 * (M prime, 1 <= skip < M), so one finds a free entry within M probes. A
 * turn that claims nothing (ruled out above) ends the build anyway, and
 * the first member takes the entries left: the table holds no free entry
 * (-1) while a member is eligible, so ulp_hash_pick needs no check. With
 * none eligible it is all free, and ul_pick does not look. Kept out of
 * line: it runs once per change, and inlined into ul_pick it cost the
 * hash pick registers (2 instructions a pick). */
static __attribute__((noinline)) void maglev_build(ul_list *l) {
  ul_magx *mx = ulb_magx(l);
  int32_t *tab = ulb_mag(l);
  uint32_t m = l->maglev_m, filled = 0, i, e;
  int64_t wmax;
  e = maglev_members(l, &wmax);
  for (i = 0; i < m; i++) tab[i] = -1;
  l->maglev_dirty = 0;
  if (e == 0) return;
  while (filled < m) {
    uint32_t before = filled;
    for (i = 0; i < e && filled < m; i++) {
      ul_magx *x = &mx[i];
      x->credit += wmax > 0 ? (double)ul_nodes(l)[x->slot].ew / (double)wmax
                            : 1.0;
      while (x->credit >= 1 && filled < m) {
        uint32_t c;
        do {
          c = (uint32_t)((x->offset + (uint64_t)x->next++ * x->skip) % m);
        } while (tab[c] >= 0);
        tab[c] = x->slot;
        filled++;
        x->credit -= 1;
      }
    }
    if (filled == before) break;
  }
  if (filled < m)
    for (i = 0; i < m; i++)
      if (tab[i] < 0) tab[i] = mx[0].slot;
}

/* The key's entry: key (already a mixed hash) mapped onto [0, M) by a
 * multiply (Lemire's range reduction) rather than a division. */
uint32_t ulp_hash_pick(ul_list *l, uint64_t key) {
  uint64_t e = ((key >> 32) * (uint64_t)l->maglev_m) >> 32;
  if (l->maglev_dirty) maglev_build(l);
  return (uint32_t)ul_nodes(l)[ulb_mag(l)[e]].pos;
}
