/* The daemon's abuse limits: per-source token buckets and error-ack pacing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "limits.h"

#include <arpa/inet.h>
#include <netinet/in.h>
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

static void test_limits_bucket_burst_then_rate(void **state)
{
    (void)state;
    struct hr_limits *l = hr_limits_new(100, 10, 0);
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
    struct hr_limits *l = hr_limits_new(1, 3, 0);
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
    struct hr_limits *l = hr_limits_new(1, 1, 0);
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
    struct hr_limits *l = hr_limits_new(0, 1, 1000);
    assert_true(hr_limits_host_error(l, "host-a", 10000));
    assert_false(hr_limits_host_error(l, "host-a", 10500));
    assert_true(hr_limits_host_error(l, "host-b", 10500)); /* another host */
    assert_true(hr_limits_host_error(l, "host-a", 11000)); /* a second later */
    hr_limits_free(l);
    l = hr_limits_new(0, 1, 0); /* 0: no pacing */
    assert_true(hr_limits_host_error(l, "host-a", 1));
    assert_true(hr_limits_host_error(l, "host-a", 1));
    hr_limits_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits_bucket_burst_then_rate),
        cmocka_unit_test(test_limits_ipv6_per_64),
        cmocka_unit_test(test_limits_fixed_memory_under_spoofed_flood),
        cmocka_unit_test(test_limits_error_acks_per_host),
    };
    return cmocka_run_group_tests_name("limits", tests, NULL, NULL);
}
