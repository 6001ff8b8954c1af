/* Identifiers (lib/protocol/id.c): the one stored form of a hostId. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "id.h"

#include <string.h>

struct canon_case {
    const char *in;
    const char *want; /* NULL: refused */
};

static void test_id_canon_cases(void **state)
{
    (void)state;
    static const struct canon_case cases[] = {
        {"550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716-446655440000"},
        {"550E8400-E29B-41D4-A716-446655440000", "550e8400-e29b-41d4-a716-446655440000"},
        {"550e8400-E29B-41d4-a716-44665544000A", "550e8400-e29b-41d4-a716-44665544000a"},
        /* Not a UUID: kept as it is, case and all. */
        {"Host-A", "Host-A"},
        {"550E8400E29B41D4A716446655440000", "550E8400E29B41D4A716446655440000"},
        {"550E8400-E29B-41D4-A716-44665544000", "550E8400-E29B-41D4-A716-44665544000"},
        {"a.b_c:d-e", "a.b_c:d-e"},
        {"", NULL},
        {"has space", NULL},
        {"slash/", NULL},
        {"x0123456789012345678901234567890123456789012345678901234567890123", NULL}, /* 65 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct canon_case *c = &cases[i];
        char out[HR_ID_MAX + 1];
        memset(out, 'z', sizeof(out));
        bool ok = hr_id_canon(c->in, strlen(c->in), out);
        if (ok != (c->want != NULL))
            fail_msg("hr_id_canon('%s') returned %d", c->in, ok);
        if (strcmp(out, c->want ? c->want : "") != 0)
            fail_msg("hr_id_canon('%s') gave '%s', want '%s'", c->in, out, c->want ? c->want : "");
        /* In place, as hr_request_check calls it. */
        char inplace[HR_ID_MAX + 2];
        strcpy(inplace, c->in);
        if (c->want &&
            (!hr_id_canon(inplace, strlen(inplace), inplace) || strcmp(inplace, c->want) != 0))
            fail_msg("hr_id_canon('%s') in place gave '%s'", c->in, inplace);
    }
}

/* Only the first len bytes count: the id need not be NUL-terminated. */
static void test_id_canon_reads_len_bytes(void **state)
{
    (void)state;
    char out[HR_ID_MAX + 1];
    assert_true(hr_id_canon("host-1 and more", 6, out));
    assert_string_equal(out, "host-1");
    assert_true(hr_id_canon("550E8400-E29B-41D4-A716-446655440000 tail", HR_UUID_LEN, out));
    assert_string_equal(out, "550e8400-e29b-41d4-a716-446655440000");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_canon_cases),
        cmocka_unit_test(test_id_canon_reads_len_bytes),
    };
    return cmocka_run_group_tests_name("id", tests, NULL, NULL);
}
