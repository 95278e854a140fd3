/*
 * test_pinned.c - what the hash strategy's mapping is made of, pinned: the
 * key -> backend mapping is stable across releases (operators rely on
 * session affinity surviving an upgrade), so ul_hash's values, the Maglev
 * table sizes and the core's picks for a fixed list are today's values
 * forever. spec/mutate_pinned_spec.lua pins the same mapping through the
 * binding. Changing any of these on purpose is a breaking change.
 *
 * Also here: a core rule that no Lua test reaches because the binding
 * checks the same first (spec/mutate/mutants.txt, opts.tiers_rule_dropped).
 */
#include "helpers.h"
#include "core/pick.h"

static const struct {
  const char *s;
  uint64_t h;
} g_hashes[] = {
    /* every path of ul_hash: 0 bytes, 1..3, 4..7, 8 words and a tail */
    {"", 0xB05835FB2DE5D4A4ULL},
    {"a", 0xF344558F14C07F9FULL},
    {"ab", 0x79967BD0121505B8ULL},
    {"abc", 0xBD537027F0ACF5FFULL},
    {"abcd", 0xB3A79F36012FC75DULL},
    {"abcdefg", 0xD6F329F38F1CD513ULL},
    {"abcdefgh", 0x9A657B2BE9FFC8E0ULL},
    {"abcdefghi", 0x0E3BA63D71C79F41ULL},
    {"abcdefghijklmno", 0xEBFCF13C1E5B0B5DULL},
    {"abcdefghijklmnop", 0x03DA444A3759685AULL},
    {"abcdefghijklmnopq", 0x485D1FD1A3644E57ULL},
    {"10.0.0.1:80", 0x77F063DEF21B1F42ULL},
    {"user:1", 0x29BA33EAEB477752ULL},
    {"1", 0x654FFD39B69D9753ULL},   /* the number key 1 */
    {"1.5", 0x5433990E3E9DBB44ULL}, /* the number key 1.5 */
};

static void test_ul_hash_values(void **state) {
  size_t i;
  const unsigned char nul[1] = {0};
  (void)state;
  for (i = 0; i < sizeof g_hashes / sizeof g_hashes[0]; i++) {
    uint64_t h = ul_hash(g_hashes[i].s, strlen(g_hashes[i].s));
    if (h != g_hashes[i].h)
      fail_msg("ul_hash(\"%s\") = 0x%016llX, pinned 0x%016llX", g_hashes[i].s,
               (unsigned long long)h, (unsigned long long)g_hashes[i].h);
  }
  assert_true(ul_hash(nul, 1) == 0x458EE369A536892FULL);
}

/* The table size M decides every key's entry. */
static void test_maglev_sizes(void **state) {
  (void)state;
  assert_int_equal(ulp_maglev_size(1, 0), 16381);
  assert_int_equal(ulp_maglev_size(5, 0), 16381);
  assert_int_equal(ulp_maglev_size(163, 0), 16381);
  assert_int_equal(ulp_maglev_size(164, 0), 16411);
  assert_int_equal(ulp_maglev_size(200, 0), 20011);
  assert_int_equal(ulp_maglev_size(201, 0), 20101);
  assert_int_equal(ulp_maglev_size(1000, 0), 100003);
  /* a growing list keeps its M while it gives 20 entries a slot */
  assert_int_equal(ulp_maglev_size(400, 20011), 20011);
  assert_int_equal(ulp_maglev_size(1000, 20011), 20011);
  assert_int_equal(ulp_maglev_size(1001, 20011), 100103);
}

/* The core's picks for the five backends of spec/mutate_pinned_spec.lua,
 * hashed as the binding hashes a string backend (its bytes). */
static void test_core_mapping(void **state) {
  static const char *const backends[] = {"10.0.0.1:80", "10.0.0.2:80",
                                         "10.0.0.3:80", "10.0.0.4:80",
                                         "10.0.0.5:80"};
  static const struct {
    const char *key;
    int32_t slot;
  } picks[] = {{"", 4},      {"a", 2},      {"b", 0},       {"ab", 0},
               {"abc", 4},   {"abcd", 1},   {"user:1", 3},  {"user:2", 1},
               {"user:3", 4}, {"user:4", 0}, {"192.168.1.10", 0},
               {"10.0.0.1:80", 4}};
  ul_list *l = new_list_strat(5, UL_HASH, 1);
  size_t i;
  (void)state;
  for (i = 0; i < 5; i++)
    assert_int_equal(
        ul_append(l, 0, -1, 0, 1, ul_hash(backends[i], strlen(backends[i])), 0),
        (int32_t)i);
  assert_int_equal(l->maglev_m, 16381);
  for (i = 0; i < sizeof picks / sizeof picks[0]; i++) {
    int32_t s = ul_pick(l, ul_hash(picks[i].key, strlen(picks[i].key)), 0);
    if (s != picks[i].slot)
      fail_msg("key \"%s\" -> slot %d, pinned %d", picks[i].key, (int)s,
               (int)picks[i].slot);
  }
  xfree(l);
}

/* ul_opts_validate's tiers rule, for a C caller: the binding refuses bad
 * tiers with its own messages before the core sees them. */
static void test_opts_tiers_rule(void **state) {
  static const int bad[][3] = {/* min, init, max */
                               {-1, 0, 5}, {0, 0, 11}, {3, 2, 2},
                               {2, 1, 5},  {0, 6, 5},  {0, 11, 10}};
  ul_opts o;
  const char *field = NULL;
  size_t i;
  (void)state;
  ul_opts_default(&o);
  o.tier_min = 0, o.tier_init = 10, o.tier_max = 10;
  assert_null(ul_opts_validate(&o, &field));
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ul_opts_default(&o);
    o.tier_min = bad[i][0], o.tier_init = bad[i][1], o.tier_max = bad[i][2];
    field = NULL;
    if (!ul_opts_validate(&o, &field))
      fail_msg("tiers min %d init %d max %d accepted", bad[i][0], bad[i][1],
               bad[i][2]);
    assert_string_equal(field, "tiers");
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_ul_hash_values, teardown),
      cmocka_unit_test_teardown(test_maglev_sizes, teardown),
      cmocka_unit_test_teardown(test_core_mapping, teardown),
      cmocka_unit_test_teardown(test_opts_tiers_rule, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
