/* The gateway's list cache: one list per filter per interval, waiters queued
 * on the list in flight and handed back in order, a bounded number of filters
 * (the least recently used replaced, never one in flight), failures never
 * cached, and the anonymous and authorized answers kept apart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "listcache.h"

#include <stdlib.h>
#include <string.h>

static struct hr_listcache_key key(uint32_t limit)
{
    struct hr_listcache_key k;
    memset(&k, 0, sizeof(k));
    k.region = -1;
    k.status = HR_STATUS_NONE;
    k.limit = limit;
    return k;
}

/* Fills `s` with bodies "A<tag>" (anonymous) and "B<tag>" (with hostIds). */
static struct hr_listcache_waiter *fill(struct hr_listcache_slot *s, char tag)
{
    char *a = malloc(3), *b = malloc(3);
    assert_non_null(a);
    assert_non_null(b);
    a[0] = 'A', a[1] = tag, a[2] = '\0';
    b[0] = 'B', b[1] = tag, b[2] = '\0';
    return hr_listcache_fill(s, a, 2, b, 2);
}

static void test_listcache_one_list_per_interval(void **state)
{
    (void)state;
    struct hr_listcache *lc = hr_listcache_new(4, 300);
    struct hr_listcache_key k = key(10);
    struct hr_listcache_waiter w[3];
    struct hr_listcache_slot *s = NULL, *s2 = NULL;
    assert_int_equal(hr_listcache_get(lc, &k, 1000, &w[0], &s), HR_LISTCACHE_FETCH);
    /* While it is in flight, the same filter waits for it. */
    assert_int_equal(hr_listcache_get(lc, &k, 1001, &w[1], &s2), HR_LISTCACHE_WAIT);
    assert_int_equal(hr_listcache_get(lc, &k, 1500, &w[2], &s2), HR_LISTCACHE_WAIT);
    struct hr_listcache_waiter *q = fill(s, '1');
    assert_ptr_equal(q, &w[0]);
    assert_ptr_equal(q->next, &w[1]);
    assert_ptr_equal(q->next->next, &w[2]);
    assert_null(q->next->next->next);

    /* Fresh for 300 ms from when its list was sent (1000), not from when it came. */
    size_t len;
    assert_int_equal(hr_listcache_get(lc, &k, 1299, &w[0], &s2), HR_LISTCACHE_HIT);
    assert_ptr_equal(s2, s);
    assert_string_equal(hr_listcache_body(s2, false, &len), "A1");
    assert_int_equal(len, 2);
    assert_string_equal(hr_listcache_body(s2, true, &len), "B1");
    assert_int_equal(hr_listcache_get(lc, &k, 1300, &w[0], &s2), HR_LISTCACHE_FETCH);
    assert_ptr_equal(s2, s); /* its own slot, listed again */
    assert_null(fill(s2, '2')->next);
    assert_int_equal(hr_listcache_get(lc, &k, 1301, &w[0], &s2), HR_LISTCACHE_HIT);
    assert_string_equal(hr_listcache_body(s2, false, &len), "A2");

    /* Another filter is another list. */
    struct hr_listcache_key k2 = key(11);
    assert_int_equal(hr_listcache_get(lc, &k2, 1301, &w[1], &s2), HR_LISTCACHE_FETCH);
    assert_ptr_not_equal(s2, s);
    hr_listcache_fail(s2);
    hr_listcache_free(lc);
}

static void test_listcache_failure_not_cached(void **state)
{
    (void)state;
    struct hr_listcache *lc = hr_listcache_new(2, 1000);
    struct hr_listcache_key k = key(1);
    struct hr_listcache_waiter w[2];
    struct hr_listcache_slot *s = NULL, *s2 = NULL;
    assert_int_equal(hr_listcache_get(lc, &k, 0, &w[0], &s), HR_LISTCACHE_FETCH);
    assert_int_equal(hr_listcache_get(lc, &k, 1, &w[1], &s2), HR_LISTCACHE_WAIT);
    struct hr_listcache_waiter *q = hr_listcache_fail(s);
    assert_ptr_equal(q, &w[0]);
    assert_ptr_equal(q->next, &w[1]);
    /* The next call lists again, at once. */
    assert_int_equal(hr_listcache_get(lc, &k, 2, &w[0], &s), HR_LISTCACHE_FETCH);
    assert_null(fill(s, 'x')->next);
    hr_listcache_free(lc);
}

static void test_listcache_bounded_lru(void **state)
{
    (void)state;
    enum { SLOTS = 3 };
    struct hr_listcache *lc = hr_listcache_new(SLOTS, 1000);
    struct hr_listcache_waiter w;
    struct hr_listcache_slot *s[SLOTS], *t = NULL;
    for (uint32_t i = 0; i < SLOTS; i++) {
        struct hr_listcache_key k = key(i + 1);
        assert_int_equal(hr_listcache_get(lc, &k, 0, &w, &s[i]), HR_LISTCACHE_FETCH);
        fill(s[i], (char)('a' + i));
    }
    /* Filter 1 used again: filter 2 is now the least recently used. Filter 2
     * comes back after the flood below as a new list. */
    struct hr_listcache_key k1 = key(1), k2 = key(2);
    assert_int_equal(hr_listcache_get(lc, &k1, 1, &w, &t), HR_LISTCACHE_HIT);
    /* A flood of other filters replaces slots, it adds none. */
    for (uint32_t limit = 100; limit < 1100; limit++) {
        struct hr_listcache_key k = key(limit);
        assert_int_equal(hr_listcache_get(lc, &k, 2, &w, &t), HR_LISTCACHE_FETCH);
        if (limit == 100)
            assert_ptr_equal(t, s[1]);
        int in = 0;
        for (int i = 0; i < SLOTS; i++)
            in += t == s[i];
        assert_int_equal(in, 1);
        fill(t, 'z');
    }
    assert_int_equal(hr_listcache_get(lc, &k2, 3, &w, &t), HR_LISTCACHE_FETCH);
    fill(t, 'b');

    /* Every slot in flight: nothing can be replaced, the caller lists uncached. */
    for (uint32_t i = 0; i < SLOTS; i++) {
        struct hr_listcache_key k = key(5000 + i);
        assert_int_equal(hr_listcache_get(lc, &k, 4, &w, &s[i]), HR_LISTCACHE_FETCH);
    }
    struct hr_listcache_key k = key(9999);
    assert_int_equal(hr_listcache_get(lc, &k, 4, &w, &t), HR_LISTCACHE_BYPASS);
    for (int i = 0; i < SLOTS; i++)
        hr_listcache_fail(s[i]);
    hr_listcache_free(lc);
    hr_listcache_free(NULL);
}

static void test_listcache_without_secret(void **state)
{
    (void)state;
    /* No secret configured: only the anonymous body; none with hostIds. */
    struct hr_listcache *lc = hr_listcache_new(1, 1000);
    struct hr_listcache_key k = key(1);
    struct hr_listcache_waiter w;
    struct hr_listcache_slot *s = NULL;
    assert_int_equal(hr_listcache_get(lc, &k, 0, &w, &s), HR_LISTCACHE_FETCH);
    char *a = strdup("[]");
    assert_non_null(a);
    hr_listcache_fill(s, a, 2, NULL, 0);
    size_t len;
    assert_string_equal(hr_listcache_body(s, false, &len), "[]");
    assert_null(hr_listcache_body(s, true, &len));
    hr_listcache_free(lc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listcache_one_list_per_interval),
        cmocka_unit_test(test_listcache_failure_not_cached),
        cmocka_unit_test(test_listcache_bounded_lru),
        cmocka_unit_test(test_listcache_without_secret),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
