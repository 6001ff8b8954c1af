/* The daemon's abuse limits: per-source token buckets, the cap on hosts per
 * source, error-ack pacing, and the keyed hash (SipHash-2-4) their tables use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "limits.h"
#include "siphash.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static struct sockaddr_storage v4(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    inet_pton(AF_INET, ip, &a->sin_addr);
    return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &a->sin6_addr);
    return ss;
}

static struct hr_limits *limits(uint32_t rate, uint32_t burst, uint32_t gap)
{
    struct hr_limits_config c = {.rate = rate, .burst = burst, .error_gap_ms = gap};
    struct hr_limits *l = hr_limits_new(&c);
    assert_non_null(l);
    return l;
}

static void test_limits_bucket_burst_then_rate(void **state)
{
    (void)state;
    struct hr_limits *l = limits(100, 10, 0);
    struct sockaddr_storage a = v4("192.0.2.1"), b = v4("192.0.2.2");
    int ok = 0;
    for (int i = 0; i < 50; i++)
        ok += hr_limits_source(l, (struct sockaddr *)&a, 1000);
    assert_int_equal(ok, 10); /* the burst, then nothing at the same instant */
    assert_true(hr_limits_source(l, (struct sockaddr *)&b, 1000)); /* b has its own */
    ok = 0;
    for (int i = 0; i < 50; i++)
        ok += hr_limits_source(l, (struct sockaddr *)&a, 1050); /* 50 ms later: 5 tokens */
    assert_int_equal(ok, 5);
    ok = 0;
    for (int i = 0; i < 50; i++)
        ok += hr_limits_source(l, (struct sockaddr *)&a, 100000); /* refilled, capped */
    assert_int_equal(ok, 10);
    hr_limits_free(l);
}

static void test_limits_ipv6_per_64(void **state)
{
    (void)state;
    struct hr_limits *l = limits(1, 3, 0);
    struct sockaddr_storage a = v6("2001:db8:1:2::1"), b = v6("2001:db8:1:2:ffff::9"),
                            c = v6("2001:db8:1:3::1");
    int ok = 0;
    ok += hr_limits_source(l, (struct sockaddr *)&a, 5);
    ok += hr_limits_source(l, (struct sockaddr *)&b, 5);
    ok += hr_limits_source(l, (struct sockaddr *)&a, 5);
    ok += hr_limits_source(l, (struct sockaddr *)&b, 5); /* same /64: 4th of a burst of 3 */
    assert_int_equal(ok, 3);
    assert_true(hr_limits_source(l, (struct sockaddr *)&c, 5)); /* another /64 */
    hr_limits_free(l);
}

static void test_limits_fixed_memory_under_spoofed_flood(void **state)
{
    (void)state;
    struct hr_limits *l = limits(1, 1, 0);
    struct sockaddr_storage s;
    memset(&s, 0, sizeof(s));
    struct sockaddr_in *a = (struct sockaddr_in *)&s;
    a->sin_family = AF_INET;
    /* A million distinct sources: each is new, so each is let through once,
     * and the table (fixed size) evicts the oldest instead of growing. */
    for (uint32_t i = 0; i < 1000000; i++) {
        a->sin_addr.s_addr = htonl(0x0a000000u + i);
        assert_true(hr_limits_source(l, (struct sockaddr *)&s, 7));
    }
    /* The most recent one is remembered: its bucket is empty now. */
    assert_false(hr_limits_source(l, (struct sockaddr *)&s, 7));
    hr_limits_free(l);
}

static void test_limits_error_acks_per_host(void **state)
{
    (void)state;
    struct hr_limits *l = limits(0, 1, 1000);
    assert_true(hr_limits_host_error(l, "host-a", 10000));
    assert_false(hr_limits_host_error(l, "host-a", 10500));
    assert_true(hr_limits_host_error(l, "host-b", 10500)); /* another host */
    assert_true(hr_limits_host_error(l, "host-a", 11000)); /* a second later */
    hr_limits_free(l);
    l = limits(0, 1, 0); /* 0: no pacing */
    assert_true(hr_limits_host_error(l, "host-a", 1));
    assert_true(hr_limits_host_error(l, "host-a", 1));
    hr_limits_free(l);
}

/* On a dual-stack socket ([::]) IPv4 peers arrive as ::ffff:a.b.c.d: each
 * address has its own bucket, the same as when it arrives as IPv4 (and not
 * one bucket for the whole IPv4 internet, which a /64 key would give). */
static void test_limits_ipv4_mapped(void **state)
{
    (void)state;
    struct hr_limits *l = limits(1, 2, 0);
    struct sockaddr_storage a = v6("::ffff:192.0.2.1"), b = v6("::ffff:192.0.2.2"),
                            a4 = v4("192.0.2.1");
    assert_true(hr_limits_source(l, (struct sockaddr *)&a, 5));
    assert_true(hr_limits_source(l, (struct sockaddr *)&a4, 5)); /* the same source */
    assert_false(hr_limits_source(l, (struct sockaddr *)&a, 5));
    assert_true(hr_limits_source(l, (struct sockaddr *)&b, 5)); /* another one */
    assert_true(hr_limits_source(l, (struct sockaddr *)&b, 5));
    hr_limits_free(l);
}

static struct hr_limits *host_cap(uint32_t cap, uint64_t seed)
{
    struct hr_limits_config c = {.source_hosts = cap, .window_ms = 30000, .seed = seed};
    struct hr_limits *l = hr_limits_new(&c);
    assert_non_null(l);
    return l;
}

static bool speak(struct hr_limits *l, const struct sockaddr_storage *sa, int host, uint64_t now)
{
    char id[32];
    snprintf(id, sizeof(id), "host-%d", host);
    return hr_limits_source_hosts(l, (const struct sockaddr *)sa, id, now);
}

/* Small caps are exact: the fourth host of a source with a cap of 3 is over,
 * its hosts heard again are not new, other sources have their own tally, and
 * hosts not heard from for two windows (TTLs) no longer count. */
static void test_limits_source_hosts_exact(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 50; seed++) {
        struct hr_limits *l = host_cap(3, seed);
        struct sockaddr_storage a = v4("192.0.2.1"), b = v4("192.0.2.2");
        for (int h = 0; h < 3; h++)
            assert_true(speak(l, &a, h, 1000));
        assert_true(speak(l, &a, 0, 2000)); /* heard again: still 3 */
        assert_false(speak(l, &a, 3, 2000));
        assert_true(speak(l, &b, 3, 2000));
        /* The next window still holds the last one's hosts... */
        assert_false(speak(l, &a, 4, 31000));
        /* ...the one after, only what was heard in the last. */
        assert_true(speak(l, &a, 5, 60000)); /* heard at 31000: host 4, and now 5 */
        assert_true(speak(l, &a, 6, 60000));
        assert_false(speak(l, &a, 7, 60000));
        assert_false(speak(l, &a, 8, 95000)); /* the next: 5, 6, 7 and 8 */
        assert_true(speak(l, &a, 9, 150000)); /* two windows later: all gone */
        hr_limits_free(l);
    }
}

/* Large caps are estimated (HyperLogLog), in fixed memory: the first host
 * over a cap of 1,000 comes within 20% of it (about 6.5% standard error), and every new one after
 * it is over too. Seeds are fixed: the same figures every run. */
static void test_limits_source_hosts_estimated(void **state)
{
    (void)state;
    int lo = 1 << 30, hi = 0;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct hr_limits *l = host_cap(1000, seed);
        struct sockaddr_storage a = v4("198.51.100.7");
        int first_over = -1;
        for (int h = 0; h < 3000; h++) {
            bool ok = speak(l, &a, h, 5000);
            if (!ok && first_over < 0)
                first_over = h;
            if (first_over >= 0)
                assert_false(ok);
        }
        assert_true(first_over >= 800 && first_over <= 1200);
        lo = first_over < lo ? first_over : lo;
        hi = first_over > hi ? first_over : hi;
        hr_limits_free(l);
    }
    printf("# cap 1000: the first host over it was host %d to %d (20 seeds)\n", lo + 1, hi + 1);
}

/* SipHash-2-4 against the reference's 64 vectors (vectors_sip64 in
 * vectors.h of github.com/veorq/SipHash, the authors' implementation): key
 * 00 01 .. 0f, message of i bytes 00 01 .. i-1, the 8 output bytes read here
 * as a little-endian number. Lengths 0 to 63 take every tail length (0-7
 * bytes after the whole words) with zero to seven whole words; vector 15 is
 * the worked example in the paper's appendix (a129ca6149be45e5). */
static void test_limits_siphash_reference_vectors(void **state)
{
    (void)state;
    static const uint64_t want[64] = {
        0x726fdb47dd0e0e31ULL, 0x74f839c593dc67fdULL, 0x0d6c8009d9a94f5aULL, 0x85676696d7fb7e2dULL,
        0xcf2794e0277187b7ULL, 0x18765564cd99a68dULL, 0xcbc9466e58fee3ceULL, 0xab0200f58b01d137ULL,
        0x93f5f5799a932462ULL, 0x9e0082df0ba9e4b0ULL, 0x7a5dbbc594ddb9f3ULL, 0xf4b32f46226bada7ULL,
        0x751e8fbc860ee5fbULL, 0x14ea5627c0843d90ULL, 0xf723ca908e7af2eeULL, 0xa129ca6149be45e5ULL,
        0x3f2acc7f57c29bdbULL, 0x699ae9f52cbe4794ULL, 0x4bc1b3f0968dd39cULL, 0xbb6dc91da77961bdULL,
        0xbed65cf21aa2ee98ULL, 0xd0f2cbb02e3b67c7ULL, 0x93536795e3a33e88ULL, 0xa80c038ccd5ccec8ULL,
        0xb8ad50c6f649af94ULL, 0xbce192de8a85b8eaULL, 0x17d835b85bbb15f3ULL, 0x2f2e6163076bcfadULL,
        0xde4daaaca71dc9a5ULL, 0xa6a2506687956571ULL, 0xad87a3535c49ef28ULL, 0x32d892fad841c342ULL,
        0x7127512f72f27cceULL, 0xa7f32346f95978e3ULL, 0x12e0b01abb051238ULL, 0x15e034d40fa197aeULL,
        0x314dffbe0815a3b4ULL, 0x027990f029623981ULL, 0xcadcd4e59ef40c4dULL, 0x9abfd8766a33735cULL,
        0x0e3ea96b5304a7d0ULL, 0xad0c42d6fc585992ULL, 0x187306c89bc215a9ULL, 0xd4a60abcf3792b95ULL,
        0xf935451de4f21df2ULL, 0xa9538f0419755787ULL, 0xdb9acddff56ca510ULL, 0xd06c98cd5c0975ebULL,
        0xe612a3cb9ecba951ULL, 0xc766e62cfcadaf96ULL, 0xee64435a9752fe72ULL, 0xa192d576b245165aULL,
        0x0a8787bf8ecb74b2ULL, 0x81b3e73d20b49b6fULL, 0x7fa8220ba3b2eceaULL, 0x245731c13ca42499ULL,
        0xb78dbfaf3a8d83bdULL, 0xea1ad565322a1a0bULL, 0x60e61c23a3795013ULL, 0x6606d7e446282b93ULL,
        0x6ca4ecb15c5f91e1ULL, 0x9f626da15c9625f3ULL, 0xe51b38608ef25f57ULL, 0x958a324ceb064572ULL,
    };
    uint8_t key[16], msg[64];
    for (unsigned i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)i;
    for (unsigned i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)i;
    struct hr_siphash_key k = hr_siphash_key_from_bytes(key);
    assert_int_equal(k.k0, 0x0706050403020100ULL); /* little-endian words */
    assert_int_equal(k.k1, 0x0f0e0d0c0b0a0908ULL);
    for (size_t len = 0; len < 64; len++) {
        uint64_t got = hr_siphash(&k, msg, len);
        if (got != want[len])
            fail_msg("length %zu: %016llx, want %016llx", len, (unsigned long long)got,
                     (unsigned long long)want[len]);
    }
    assert_int_equal(hr_siphash(&k, NULL, 0), want[0]);
}

/* The ids host-0 .. host-<n-1> that a table of 65,536 error-ack slots still
 * remembers after recording them all at once: forgotten[i] is set for those
 * a later id displaced from their slot. Probed from the last one back, so
 * each slot's survivor (its last writer) is seen before anything rewrites
 * it. Returns how many were forgotten. */
static int forgotten_ids(uint64_t seed, int n, bool *forgotten)
{
    struct hr_limits_config c = {.error_gap_ms = 1000, .seed = seed};
    struct hr_limits *l = hr_limits_new(&c);
    assert_non_null(l);
    char id[32];
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "host-%d", i);
        assert_true(hr_limits_host_error(l, id, 5000));
    }
    int count = 0;
    for (int i = n - 1; i >= 0; i--) {
        snprintf(id, sizeof(id), "host-%d", i);
        forgotten[i] = hr_limits_host_error(l, id, 5001); /* true: paced no more */
        count += forgotten[i];
    }
    hr_limits_free(l);
    return count;
}

/* Which ids share a slot is the key's choice: the same ids under two keys
 * collide in different places (with FNV-1a under the key, ids whose FNV-1a
 * hashes are equal shared a slot under every key). Directly on the hash,
 * and as the limits see it: the error-ack pacing of 2,000 hosts in 65,536
 * slots loses about 30 to collisions, and not the same 30. */
static void test_limits_key_decides_slots(void **state)
{
    (void)state;
    uint8_t kb[16];
    for (unsigned i = 0; i < sizeof(kb); i++)
        kb[i] = (uint8_t)i;
    struct hr_siphash_key a = hr_siphash_key_from_bytes(kb);
    kb[0] ^= 1; /* one bit apart */
    struct hr_siphash_key b = hr_siphash_key_from_bytes(kb);
    int same = 0;
    for (int i = 0; i < 1000; i++) {
        char id[32];
        snprintf(id, sizeof(id), "host-%d", i);
        uint64_t ha = hr_siphash(&a, id, strlen(id)), hb = hr_siphash(&b, id, strlen(id));
        assert_true(ha != hb);
        same += (ha & 0xffff) == (hb & 0xffff);
    }
    assert_true(same <= 3); /* 1000 / 65536 expected by chance */

    enum { N = 2000 };
    static bool fa[N], fb[N];
    int na = forgotten_ids(1, N, fa), nb = forgotten_ids(2, N, fb);
    int both = 0;
    for (int i = 0; i < N; i++)
        both += fa[i] && fb[i];
    printf("# %d hosts in 65536 slots: %d and %d forgotten under two keys, %d under both\n", N, na,
           nb, both);
    assert_true(na > 0 && nb > 0);
    assert_true(both * 4 < na && both * 4 < nb);
    /* The same key, the same slots. */
    static bool fa2[N];
    assert_int_equal(forgotten_ids(1, N, fa2), na);
    assert_memory_equal(fa, fa2, sizeof(fa));
}

/* Error-ack pacing uses all of its slots: 20,000 hosts in 65,536 slots are
 * about 86% remembered, where using every other slot (the low bit of the
 * stored hash, which marks a slot in use, taken for the index too) kept 75%. */
static void test_limits_error_acks_use_every_slot(void **state)
{
    (void)state;
    enum { N = 20000 };
    static bool forgotten[N];
    for (uint64_t seed = 1; seed <= 3; seed++) {
        int n = forgotten_ids(seed, N, forgotten);
        assert_true(N - n >= N * 82 / 100);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits_bucket_burst_then_rate),
        cmocka_unit_test(test_limits_ipv6_per_64),
        cmocka_unit_test(test_limits_fixed_memory_under_spoofed_flood),
        cmocka_unit_test(test_limits_error_acks_per_host),
        cmocka_unit_test(test_limits_ipv4_mapped),
        cmocka_unit_test(test_limits_source_hosts_exact),
        cmocka_unit_test(test_limits_source_hosts_estimated),
        cmocka_unit_test(test_limits_siphash_reference_vectors),
        cmocka_unit_test(test_limits_key_decides_slots),
        cmocka_unit_test(test_limits_error_acks_use_every_slot),
    };
    return cmocka_run_group_tests_name("limits", tests, NULL, NULL);
}
