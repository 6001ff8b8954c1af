/* The daemon's abuse limits: per-source token buckets and error-ack pacing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "limits.h"

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
    };
    return cmocka_run_group_tests_name("limits", tests, NULL, NULL);
}
