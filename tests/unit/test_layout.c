/* Storage layout 3's encodings (lib/store/layout.c): sequence numbers in base
 * 36, the entry as the scripts store it, the layout key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "layout.h"

#include <string.h>

static void test_layout_seq_round_trip(void **state)
{
    (void)state;
    static const struct {
        uint64_t seq;
        const char *text;
    } cases[] = {
        {0, "0"},
        {9, "9"},
        {10, "a"},
        {35, "z"},
        {36, "10"},
        {3656158440062975u, "zzzzzzzzzz"},  /* 36^10 - 1: the most tonumber(s, 36) reads exactly */
        {3656158440062976u, "10000000000"}, /* 36^10 */
        {UINT64_MAX, "3w5e11264sgsf"},      /* 13 characters */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[HR_LAYOUT_SEQ_MAX];
        assert_int_equal(hr_layout_seq_format(cases[i].seq, out), strlen(cases[i].text));
        assert_string_equal(out, cases[i].text);
        uint64_t back = 1;
        assert_int_equal(hr_layout_seq_parse(out, strlen(out), &back), 0);
        assert_true(back == cases[i].seq);
    }
    /* Order: longer is larger, and at one length the bytes decide (what
     * entry.lua's newer() computes without comparing strings). */
    char a[HR_LAYOUT_SEQ_MAX], b[HR_LAYOUT_SEQ_MAX];
    uint64_t x = 1;
    for (int i = 0; i < 2000; i++, x = x * 6364136223846793005u + 1442695040888963407u) {
        uint64_t y = x >> (i % 64), z = y + 1 + (uint64_t)(i % 7);
        if (z <= y)
            continue;
        hr_layout_seq_format(y, a);
        hr_layout_seq_format(z, b);
        assert_true(strlen(a) < strlen(b) || (strlen(a) == strlen(b) && strcmp(a, b) < 0));
    }
}

static void test_layout_seq_refusals(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",               /* empty */
        "01",             /* a leading zero */
        "A",              /* upper case */
        "1 2",            /* not a digit */
        "3w5e11264sgsg",  /* 2^64 */
        "zzzzzzzzzzzzz",  /* beyond 64 bits */
        "10000000000000", /* 14 characters */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 7;
        assert_int_equal(hr_layout_seq_parse(bad[i], strlen(bad[i]), &v), -1);
    }
}

static void test_layout_entry_parse(void **state)
{
    (void)state;
    struct hr_layout_entry e;
    const char *v = "k 3w5e11264sgsf b eu-west room-1 mlxq3w8g";
    assert_int_equal(hr_layout_entry_parse(v, strlen(v), &e), 0);
    assert_true(e.hseq == 20 && e.sseq == UINT64_MAX);
    assert_string_equal(e.status, "busy");
    assert_string_equal(e.region, "eu-west");
    assert_string_equal(e.room, "room-1");
    uint64_t exp;
    assert_int_equal(hr_layout_seq_parse("mlxq3w8g", 8, &exp), 0);
    assert_true(e.expiry_ms == (int64_t)exp);
    assert_true(e.capacity == 1 && e.free == 1 && e.reported == 1);
    /* Slots after the status letter, when not 1 of 1 free. */
    v = "k 1 i4.0.3 eu-west room-1 mlxq3w8g";
    assert_int_equal(hr_layout_entry_parse(v, strlen(v), &e), 0);
    assert_string_equal(e.status, "idle");
    assert_true(e.capacity == 4 && e.free == 0 && e.reported == 3);
    assert_string_equal(e.region, "eu-west");
    static const char *const bad[] = {
        "k k i4.2 local room 1",     /* two slot numbers */
        "k k i4.2.3.1 local room 1", /* four */
        "k k i4..3 local room 1",    /* an empty one */
        "k k i.4.2.3 local room 1",  /* a dot first */
        "k k i4.2.x local room 1",   /* not decimal */
        "k k i local room",          /* five fields */
        "k k i local room 1 2",      /* seven */
        "k k idle local room 1",     /* a status by name (layout 2) */
        "k k x local room 1",        /* no such status */
        "20 20 i local room  1",     /* two spaces */
        "k K i local room 1",        /* not base 36 */
        "k k i local room 1 ",       /* a trailing space */
        "1 1 idle local room-1",     /* layout 2's entry, without expiry */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(hr_layout_entry_parse(bad[i], strlen(bad[i]), &e), -1);
}

static void test_layout_key_version(void **state)
{
    (void)state;
    struct hr_layout l, back;
    char v[96];
    assert_int_equal(hr_layout_new(&l, "hr:", 1024), 0);
    hr_layout_format(&l, v, sizeof(v));
    assert_true(strncmp(v, "3 1024 ", 7) == 0);
    assert_int_equal(hr_layout_parse(v, "hr:", &back), 0);
    assert_int_equal(back.buckets, 1024);
    assert_memory_equal(back.seed, l.seed, sizeof(l.seed));
    v[0] = '2'; /* layout 2: the same buckets, other entries */
    assert_int_equal(hr_layout_parse(v, "hr:", &back), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_seq_round_trip),
        cmocka_unit_test(test_layout_seq_refusals),
        cmocka_unit_test(test_layout_entry_parse),
        cmocka_unit_test(test_layout_key_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
