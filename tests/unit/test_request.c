/* Unit tests of the registry's rules (lib/protocol/request.c): what a valid request is,
 * how hr_request_check normalises it, the region list, and the small
 * converters (UUID, status, names). Each rule is tested on both sides of its
 * limit; the tables name their cases so a failure says which one. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "err.h"
#include "request.h"

#include <stdio.h>
#include <string.h>

/* Long ids built from literals, so the tables can hold them. */
#define S8(c) c c c c c c c c
#define S32(c) S8(c) S8(c) S8(c) S8(c)
#define S64(c) S32(c) S32(c)

#define ID64 S64("a")         /* HR_ID_MAX: the longest valid id */
#define ID65 S64("a") "a"     /* one too many */
#define REGION32 S64("r")     /* HR_REGION_MAX (64; the name is older) */
#define REGION33 S64("r") "r" /* one too many */

/* A request of `type` with the given fields (NULL: left empty). */
static struct hr_request make_req(enum hr_msg_type type, const char *host, const char *room,
                                  const char *region, enum hr_status status)
{
    struct hr_request req;
    memset(&req, 0, sizeof(req));
    req.type = type;
    req.seq = 1;
    if (host)
        snprintf(req.host_id, sizeof(req.host_id), "%s", host);
    if (room)
        snprintf(req.room_id, sizeof(req.room_id), "%s", room);
    if (region)
        snprintf(req.region, sizeof(req.region), "%s", region);
    req.status = status;
    return req;
}

static struct hr_request heartbeat(const char *host, const char *room, const char *region,
                                   enum hr_status status)
{
    return make_req(HR_MSG_HEARTBEAT, host, room, region, status);
}

static void check_req(const char *what, struct hr_request *req, const struct hr_rules *rules,
                      int want)
{
    int rc = hr_request_check(req, rules);
    if (rc != want)
        fail_msg("%s: hr_request_check returned %s (%d), want %s (%d)", what, hr_errname(rc), rc,
                 hr_errname(want), want);
}

/* --- identifiers --- */

struct id_case {
    const char *what;
    const char *s;
    size_t len;
    bool want;
};

static void test_request_id_valid(void **state)
{
    (void)state;
    static const struct id_case cases[] = {
        {"empty", "", 0, false},
        {"1 char", "a", 1, true},
        {"64 chars", ID64, 64, true},
        {"65 chars", ID65, 65, false},
        {"upper, lower, digits", "AZaz09", 6, true},
        {"'.'", "a.b", 3, true},
        {"'_'", "a_b", 3, true},
        {"':'", "a:b", 3, true},
        {"'-'", "a-b", 3, true},
        {"only punctuation", "._:-", 4, true},
        {"space", "a b", 3, false},
        {"'/'", "a/b", 3, false},
        {"'@'", "a@b", 3, false},
        {"'+'", "a+b", 3, false},
        {"','", "a,b", 3, false},
        {"backslash", "a\\b", 3, false},
        {"UTF-8 e-acute (0xc3 0xa9)", "caf\303\251", 5, false},
        {"lone byte 0xc3", "a\303", 2, false},
        {"byte 0xff", "a\xff", 2, false},
        {"tab", "a\tb", 3, false},
        {"newline", "a\nb", 3, false},
        {"control 0x01", "\x01", 1, false},
        {"control 0x1f", "a\x1f", 2, false},
        {"DEL 0x7f", "a\x7f", 2, false},
        {"NUL in the middle", "ab\0cd", 5, false},
        {"NUL at the end", "ab\0", 3, false},
        {"prefix before a NUL", "ab\0cd", 2, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct id_case *c = &cases[i];
        if (hr_id_valid(c->s, c->len) != c->want)
            fail_msg("hr_id_valid(%s, %zu) should be %s", c->what, c->len,
                     c->want ? "true" : "false");
    }
}

struct host_case {
    const char *what;
    const char *host;
    int want;
};

/* Charset and length rules of the hostId, through hr_request_check. A valid
 * non-UUID hostId comes out unchanged. */
static void test_request_host_id_rules(void **state)
{
    (void)state;
    static const struct host_case cases[] = {
        {"empty", "", HR_E_HOST_ID},
        {"1 char", "h", HR_OK},
        {"64 chars", ID64, HR_OK},
        {"mixed case kept", "Host-01", HR_OK},
        {"'.'", "host.example", HR_OK},
        {"'_'", "host_1", HR_OK},
        {"':'", "room:host", HR_OK},
        {"'-'", "host-1", HR_OK},
        {"space", "host 1", HR_E_HOST_ID},
        {"'/'", "host/1", HR_E_HOST_ID},
        {"'@'", "host@1", HR_E_HOST_ID},
        {"UTF-8 e-acute (0xc3 0xa9)", "h\303\251te", HR_E_HOST_ID},
        {"control 0x01", "host\x01", HR_E_HOST_ID},
        {"DEL", "host\x7f", HR_E_HOST_ID},
        {"tab", "\thost", HR_E_HOST_ID},
    };
    struct hr_rules rules;
    hr_rules_default(&rules);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct host_case *c = &cases[i];
        struct hr_request req = heartbeat(c->host, "room1", NULL, HR_STATUS_NONE);
        check_req(c->what, &req, &rules, c->want);
        if (c->want == HR_OK && strcmp(req.host_id, c->host) != 0)
            fail_msg("%s: hostId changed to '%s'", c->what, req.host_id);
    }
}

/* The buffer holds 64 characters and a NUL; a decoder that filled all 65
 * bytes left it unterminated, and the check must not read past it. */
static void test_request_host_id_unterminated_refused(void **state)
{
    (void)state;
    struct hr_rules rules;
    hr_rules_default(&rules);
    static const enum hr_msg_type types[] = {HR_MSG_HEARTBEAT, HR_MSG_STATUS, HR_MSG_LEAVE};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct hr_request req = make_req(types[i], NULL, "room1", NULL, HR_STATUS_IDLE);
        memset(req.host_id, 'a', sizeof(req.host_id));
        check_req(hr_msg_type_name(types[i]), &req, &rules, HR_E_HOST_ID);
    }
}

struct uuid_host_case {
    const char *what;
    const char *in;
    const char *out; /* after the check */
};

/* A UUID hostId is one host whatever its case: the check lower-cases it.
 * Anything that is not exactly a UUID is an ordinary id, left as it came. */
static void test_request_host_id_uuid_normalised(void **state)
{
    (void)state;
    static const struct uuid_host_case cases[] = {
        {"upper case", "550E8400-E29B-41D4-A716-446655440000",
         "550e8400-e29b-41d4-a716-446655440000"},
        {"mixed case", "550e8400-E29B-41d4-A716-446655440ABC",
         "550e8400-e29b-41d4-a716-446655440abc"},
        {"already lower", "550e8400-e29b-41d4-a716-446655440000",
         "550e8400-e29b-41d4-a716-446655440000"},
        {"dash moved", "550E840-0E29B-41D4-A716-446655440000",
         "550E840-0E29B-41D4-A716-446655440000"},
        {"35 chars", "550E8400-E29B-41D4-A716-44665544000", "550E8400-E29B-41D4-A716-44665544000"},
        {"37 chars", "550E8400-E29B-41D4-A716-4466554400000",
         "550E8400-E29B-41D4-A716-4466554400000"},
        {"non-hex G", "550E8400-E29B-41D4-A716-44665544000G",
         "550E8400-E29B-41D4-A716-44665544000G"},
        {"no dashes", "550E8400E29B41D4A716446655440000", "550E8400E29B41D4A716446655440000"},
        {"underscores for dashes", "550E8400_E29B_41D4_A716_446655440000",
         "550E8400_E29B_41D4_A716_446655440000"},
    };
    struct hr_rules rules;
    hr_rules_default(&rules);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct uuid_host_case *c = &cases[i];
        struct hr_request req = heartbeat(c->in, "room1", NULL, HR_STATUS_NONE);
        check_req(c->what, &req, &rules, HR_OK);
        if (strcmp(req.host_id, c->out) != 0)
            fail_msg("%s: hostId '%s', want '%s'", c->what, req.host_id, c->out);
    }
    /* Also for the other request types, which carry only the host. */
    struct hr_request st =
        make_req(HR_MSG_STATUS, "550E8400-E29B-41D4-A716-446655440000", NULL, NULL, HR_STATUS_BUSY);
    check_req("status update", &st, &rules, HR_OK);
    assert_string_equal(st.host_id, "550e8400-e29b-41d4-a716-446655440000");
    struct hr_request lv =
        make_req(HR_MSG_LEAVE, "550E8400-E29B-41D4-A716-446655440000", NULL, NULL, HR_STATUS_NONE);
    check_req("leave", &lv, &rules, HR_OK);
    assert_string_equal(lv.host_id, "550e8400-e29b-41d4-a716-446655440000");

    /* A braced UUID is not a UUID, and '{' is outside the charset. */
    struct hr_request braced =
        heartbeat("{550e8400-e29b-41d4-a716-446655440000}", "room1", NULL, HR_STATUS_NONE);
    check_req("braced", &braced, &rules, HR_E_HOST_ID);
}

/* The roomId follows the hostId's rule, and is never rewritten. */
static void test_request_room_id_rules(void **state)
{
    (void)state;
    static const struct host_case cases[] = {
        {"empty", "", HR_E_ROOM_ID},
        {"1 char", "r", HR_OK},
        {"64 chars", ID64, HR_OK},
        {"'.'", "room.1", HR_OK},
        {"'_'", "room_1", HR_OK},
        {"':'", "game:room", HR_OK},
        {"'-'", "room-1", HR_OK},
        {"upper-case UUID kept", "550E8400-E29B-41D4-A716-446655440000", HR_OK},
        {"space", "room 1", HR_E_ROOM_ID},
        {"'/'", "room/1", HR_E_ROOM_ID},
        {"'@'", "room@1", HR_E_ROOM_ID},
        {"UTF-8 e-acute (0xc3 0xa9)", "r\303\251", HR_E_ROOM_ID},
        {"control 0x1b", "room\x1b", HR_E_ROOM_ID},
    };
    struct hr_rules rules;
    hr_rules_default(&rules);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct host_case *c = &cases[i];
        struct hr_request req = heartbeat("host1", c->host, NULL, HR_STATUS_NONE);
        check_req(c->what, &req, &rules, c->want);
        if (c->want == HR_OK && strcmp(req.room_id, c->host) != 0)
            fail_msg("%s: roomId changed to '%s'", c->what, req.room_id);
    }

    struct hr_request req = heartbeat("host1", NULL, NULL, HR_STATUS_NONE);
    memset(req.room_id, 'a', sizeof(req.room_id)); /* 65 chars, unterminated */
    check_req("65 chars unterminated", &req, &rules, HR_E_ROOM_ID);
}

struct region_case {
    const char *what;
    const char *region;
    int want;
    const char *out; /* after the check, when HR_OK */
};

static void test_request_region_rules(void **state)
{
    (void)state;
    static const struct region_case cases[] = {
        {"us-east-1", "us-east-1", HR_OK, "us-east-1"},
        {"us-west-1", "us-west-1", HR_OK, "us-west-1"},
        {"eu-central", "eu-central", HR_OK, "eu-central"},
        {"local", "local", HR_OK, "local"},
        {"empty takes the default", "", HR_OK, "local"},
        {"unknown", "mars-1", HR_E_REGION, NULL},
        {"case matters", "LOCAL", HR_E_REGION, NULL},
        {"prefix of a region", "us-east", HR_E_REGION, NULL},
        {"region plus a suffix", "localx", HR_E_REGION, NULL},
        {"32 chars, unknown", REGION32, HR_E_REGION, NULL},
    };
    struct hr_rules rules;
    hr_rules_default(&rules);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct region_case *c = &cases[i];
        struct hr_request req = heartbeat("host1", "room1", c->region, HR_STATUS_NONE);
        check_req(c->what, &req, &rules, c->want);
        if (c->want == HR_OK && strcmp(req.region, c->out) != 0)
            fail_msg("%s: region '%s', want '%s'", c->what, req.region, c->out);
    }

    struct hr_request req = heartbeat("host1", "room1", NULL, HR_STATUS_NONE);
    memset(req.region, 'r', sizeof(req.region)); /* 33 chars, unterminated */
    check_req("33 chars unterminated", &req, &rules, HR_E_REGION);
}

/* With a configured list, the list and its default are what count: a
 * 32-character region is fine when listed, and the defaults are gone. */
static void test_request_region_custom_rules(void **state)
{
    (void)state;
    struct hr_rules rules;
    char err[256] = "";
    hr_rules_default(&rules);
    assert_int_equal(hr_rules_set_regions(&rules, "eu-north," REGION32, REGION32, err, sizeof(err)),
                     HR_OK);

    static const struct region_case cases[] = {
        {"listed", "eu-north", HR_OK, "eu-north"},
        {"listed, 32 chars", REGION32, HR_OK, REGION32},
        {"empty takes the configured default", "", HR_OK, REGION32},
        {"a built-in default not listed", "local", HR_E_REGION, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct region_case *c = &cases[i];
        struct hr_request req = heartbeat("host1", "room1", c->region, HR_STATUS_NONE);
        check_req(c->what, &req, &rules, c->want);
        if (c->want == HR_OK && strcmp(req.region, c->out) != 0)
            fail_msg("%s: region '%s', want '%s'", c->what, req.region, c->out);
    }

    struct hr_request req = heartbeat("host1", "room1", NULL, HR_STATUS_NONE);
    memcpy(req.region, REGION33, sizeof(req.region)); /* the listed one plus 'r', unterminated */
    check_req("33 chars unterminated", &req, &rules, HR_E_REGION);
}

/* --- the request types --- */

struct type_case {
    const char *what;
    enum hr_msg_type type;
    const char *host, *room, *region;
    enum hr_status status;
    int want;
    enum hr_status want_status; /* after the check, when HR_OK */
};

static void test_request_check_by_type(void **state)
{
    (void)state;
    static const struct type_case cases[] = {
        /* heartbeat: status optional, idle by default */
        {"heartbeat without status", HR_MSG_HEARTBEAT, "h", "r", "", HR_STATUS_NONE, HR_OK,
         HR_STATUS_IDLE},
        {"heartbeat idle", HR_MSG_HEARTBEAT, "h", "r", "", HR_STATUS_IDLE, HR_OK, HR_STATUS_IDLE},
        {"heartbeat busy kept", HR_MSG_HEARTBEAT, "h", "r", "", HR_STATUS_BUSY, HR_OK,
         HR_STATUS_BUSY},
        {"heartbeat allocated", HR_MSG_HEARTBEAT, "h", "r", "", HR_STATUS_ALLOCATED, HR_OK,
         HR_STATUS_ALLOCATED},
        {"heartbeat status 4", HR_MSG_HEARTBEAT, "h", "r", "", (enum hr_status)4, HR_E_STATUS,
         HR_STATUS_NONE},
        {"heartbeat status 7", HR_MSG_HEARTBEAT, "h", "r", "", (enum hr_status)7, HR_E_STATUS,
         HR_STATUS_NONE},
        {"heartbeat without room", HR_MSG_HEARTBEAT, "h", "", "", HR_STATUS_IDLE, HR_E_ROOM_ID,
         HR_STATUS_NONE},
        /* the first rule broken is the one reported: host, room, region, status */
        {"heartbeat, all bad", HR_MSG_HEARTBEAT, "", "", "mars", (enum hr_status)7, HR_E_HOST_ID,
         HR_STATUS_NONE},
        {"heartbeat, room region status bad", HR_MSG_HEARTBEAT, "h", "r r", "mars",
         (enum hr_status)7, HR_E_ROOM_ID, HR_STATUS_NONE},
        {"heartbeat, region status bad", HR_MSG_HEARTBEAT, "h", "r", "mars", (enum hr_status)7,
         HR_E_REGION, HR_STATUS_NONE},

        /* status update: idle, busy or allocated required; room and region not looked at */
        {"status idle", HR_MSG_STATUS, "h", "", "", HR_STATUS_IDLE, HR_OK, HR_STATUS_IDLE},
        {"status allocated", HR_MSG_STATUS, "h", "", "", HR_STATUS_ALLOCATED, HR_OK,
         HR_STATUS_ALLOCATED},
        {"status busy", HR_MSG_STATUS, "h", "", "", HR_STATUS_BUSY, HR_OK, HR_STATUS_BUSY},
        {"status none", HR_MSG_STATUS, "h", "", "", HR_STATUS_NONE, HR_E_STATUS, HR_STATUS_NONE},
        {"status 7", HR_MSG_STATUS, "h", "", "", (enum hr_status)7, HR_E_STATUS, HR_STATUS_NONE},
        {"status, bad room ignored", HR_MSG_STATUS, "h", "r r", "mars", HR_STATUS_BUSY, HR_OK,
         HR_STATUS_BUSY},
        {"status, bad host", HR_MSG_STATUS, "h/1", "", "", HR_STATUS_BUSY, HR_E_HOST_ID,
         HR_STATUS_NONE},

        /* leave: only the host counts */
        {"leave", HR_MSG_LEAVE, "h", "", "", HR_STATUS_NONE, HR_OK, HR_STATUS_NONE},
        {"leave ignores the rest", HR_MSG_LEAVE, "h", "r r", "mars", (enum hr_status)7, HR_OK,
         (enum hr_status)7},
        {"leave, empty host", HR_MSG_LEAVE, "", "", "", HR_STATUS_NONE, HR_E_HOST_ID,
         HR_STATUS_NONE},

        /* anything else is not a request */
        {"type 0", (enum hr_msg_type)0, "h", "r", "", HR_STATUS_IDLE, HR_E_TYPE, HR_STATUS_NONE},
        {"type 4", (enum hr_msg_type)4, "h", "r", "", HR_STATUS_IDLE, HR_E_TYPE, HR_STATUS_NONE},
        {"type ack", HR_MSG_ACK, "h", "r", "", HR_STATUS_IDLE, HR_E_TYPE, HR_STATUS_NONE},
        {"type 0xff", (enum hr_msg_type)0xff, "h", "r", "", HR_STATUS_IDLE, HR_E_TYPE,
         HR_STATUS_NONE},
    };
    struct hr_rules rules;
    hr_rules_default(&rules);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct type_case *c = &cases[i];
        struct hr_request req = make_req(c->type, c->host, c->room, c->region, c->status);
        check_req(c->what, &req, &rules, c->want);
        if (c->want == HR_OK && req.status != c->want_status)
            fail_msg("%s: status %s (%d), want %s", c->what, hr_status_name(req.status),
                     (int)req.status, hr_status_name(c->want_status));
        if (c->want == HR_OK)
            assert_int_equal(req.seq, 1); /* the check never touches the sequence */
    }
}

/* --- the region list --- */

static void test_request_rules_default(void **state)
{
    (void)state;
    static const char *want[] = {"us-east-1", "us-west-1", "eu-central", "local"};
    struct hr_rules r;
    memset(&r, 0xa5, sizeof(r)); /* whatever was there before is replaced */
    hr_rules_default(&r);
    assert_int_equal(r.nregions, 4);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(r.regions[i], want[i]);
    assert_string_equal(r.regions[r.default_region], "local");
}

struct regions_ok_case {
    const char *list, *dflt;
    size_t n;
    size_t default_index;
    const char *names[4];
};

static void test_request_rules_set_regions_accepted(void **state)
{
    (void)state;
    static const struct regions_ok_case cases[] = {
        {"a", "a", 1, 0, {"a"}},
        {"a,b,c", "b", 3, 1, {"a", "b", "c"}},
        {"eu-1,us_2,x.y", "x.y", 3, 2, {"eu-1", "us_2", "x.y"}},
        {"local," REGION32, REGION32, 2, 1, {"local", REGION32}},
        {"B,b", "b", 2, 1, {"B", "b"}}, /* names are case-sensitive, so not duplicates */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct regions_ok_case *c = &cases[i];
        struct hr_rules r;
        char err[256] = "";
        hr_rules_default(&r);
        int rc = hr_rules_set_regions(&r, c->list, c->dflt, err, sizeof(err));
        if (rc != HR_OK)
            fail_msg("'%s' default '%s': %s (%s)", c->list, c->dflt, hr_errname(rc), err);
        assert_int_equal(r.nregions, c->n);
        assert_int_equal(r.default_region, c->default_index);
        for (size_t k = 0; k < c->n; k++)
            assert_string_equal(r.regions[k], c->names[k]);
    }
}

struct regions_bad_case {
    const char *what, *list, *dflt;
};

/* Every refusal is HR_E_REGION with a message, and leaves `r` as it was. */
static void test_request_rules_set_regions_refused(void **state)
{
    (void)state;
    static const struct regions_bad_case cases[] = {
        {"default not listed", "a,b", "c"},
        {"default empty", "a,b", ""},
        {"default differs in case", "a,b", "A"},
        {"default is a prefix", "ab", "a"},
        {"duplicate", "a,b,a", "a"},
        {"duplicate, adjacent", "a,a", "a"},
        {"empty list", "", "a"},
        {"empty name in the middle", "a,,b", "a"},
        {"empty name first", ",a", "a"},
        {"empty name last", "a,", "a"},
        {"only a comma", ",", "a"},
        {"33-char name", "a," REGION33, "a"},
        {"space in a name", "a,b c", "a"},
        {"'/' in a name", "a,b/c", "a"},
        {"UTF-8 in a name", "a,\303\251", "a"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct regions_bad_case *c = &cases[i];
        struct hr_rules r, before;
        char err[256] = "";
        hr_rules_default(&r);
        before = r;
        int rc = hr_rules_set_regions(&r, c->list, c->dflt, err, sizeof(err));
        if (rc != HR_E_REGION)
            fail_msg("%s: returned %s, want region_invalid", c->what, hr_errname(rc));
        if (err[0] == '\0')
            fail_msg("%s: no message", c->what);
        if (memcmp(&r, &before, sizeof(r)) != 0)
            fail_msg("%s: rules changed on error", c->what);
    }
}

/* "*": any-region mode. Any name of 1-64 characters of the id set is a
 * region (':' included), the default takes an empty region, and the
 * default itself must be such a name. */
static void test_request_rules_any_region(void **state)
{
    (void)state;
    struct hr_rules r;
    char err[256] = "";
    hr_rules_default(&r);
    assert_int_equal(hr_rules_set_regions(&r, "*", "home", err, sizeof(err)), HR_OK);
    assert_true(r.any);
    assert_int_equal(r.nregions, 1);
    assert_string_equal(r.regions[r.default_region], "home");
    static const struct region_case cases[] = {
        {"any name", "mars-1", HR_OK, "mars-1"},
        {"':' in it", "dc:rack-7", HR_OK, "dc:rack-7"},
        {"64 chars", REGION32, HR_OK, REGION32},
        {"empty takes the default", "", HR_OK, "home"},
        {"a space", "a b", HR_E_REGION, NULL},
        {"a brace (a hash tag)", "a{b}", HR_E_REGION, NULL},
        {"UTF-8", "\303\251", HR_E_REGION, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct region_case *c = &cases[i];
        struct hr_request req = heartbeat("host1", "room1", c->region, HR_STATUS_NONE);
        check_req(c->what, &req, &r, c->want);
        if (c->want == HR_OK && strcmp(req.region, c->out) != 0)
            fail_msg("%s: region '%s', want '%s'", c->what, req.region, c->out);
    }
    struct hr_request req = heartbeat("host1", "room1", NULL, HR_STATUS_NONE);
    memset(req.region, 'r', sizeof(req.region)); /* 65 chars, unterminated */
    check_req("65 chars unterminated", &req, &r, HR_E_REGION);
    assert_true(hr_rules_region_ok(&r, "x", 1));
    assert_false(hr_rules_region_ok(&r, "", 0));
    assert_false(hr_rules_region_ok(&r, REGION33, strlen(REGION33)));
    struct hr_rules before = r;
    assert_int_equal(hr_rules_set_regions(&r, "*", "a b", err, sizeof(err)), HR_E_REGION);
    assert_memory_equal(&r, &before, sizeof(r));
}

/* HR_REGIONS_MAX names are fine; one more is refused. */
static void test_request_rules_set_regions_count_limit(void **state)
{
    (void)state;
    char list[HR_REGIONS_MAX * 8 + 16] = "";
    size_t len = 0;
    for (int i = 0; i < HR_REGIONS_MAX; i++)
        len += (size_t)snprintf(list + len, sizeof(list) - len, "%sr%d", i ? "," : "", i);

    struct hr_rules r;
    char err[256] = "";
    hr_rules_default(&r);
    assert_int_equal(hr_rules_set_regions(&r, list, "r255", err, sizeof(err)), HR_OK);
    assert_int_equal(r.nregions, HR_REGIONS_MAX);
    assert_string_equal(r.regions[HR_REGIONS_MAX - 1], "r255");
    assert_int_equal(r.default_region, HR_REGIONS_MAX - 1);

    snprintf(list + len, sizeof(list) - len, ",r%d", HR_REGIONS_MAX);
    struct hr_rules before = r;
    err[0] = '\0';
    assert_int_equal(hr_rules_set_regions(&r, list, "r0", err, sizeof(err)), HR_E_REGION);
    assert_true(err[0] != '\0');
    assert_memory_equal(&r, &before, sizeof(r));
}

/* --- UUID, status and name converters --- */

static void test_request_uuid_round_trip(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716-446655440000"},
        {"550E8400-E29B-41D4-A716-446655440000", "550e8400-e29b-41d4-a716-446655440000"},
        {"00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000"},
        {"FFFFFFFF-ffff-FFFF-ffff-FFFFFFFFFFFF", "ffffffff-ffff-ffff-ffff-ffffffffffff"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t b[16];
        char text[HR_UUID_LEN + 1];
        if (!hr_uuid_parse(cases[i].in, strlen(cases[i].in), b))
            fail_msg("'%s' not parsed", cases[i].in);
        hr_uuid_format(b, text);
        assert_string_equal(text, cases[i].out);
    }

    /* The byte order is the text's order. */
    static const uint8_t seq[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                    0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    uint8_t b[16];
    assert_true(hr_uuid_parse("00112233-4455-6677-8899-AaBbCcDdEeFf", HR_UUID_LEN, b));
    assert_memory_equal(b, seq, 16);

    /* Every byte value survives format then parse. */
    for (int v = 0; v < 256; v += 16) {
        uint8_t in[16], out[16];
        char text[HR_UUID_LEN + 1];
        for (int k = 0; k < 16; k++)
            in[k] = (uint8_t)(v + k);
        hr_uuid_format(in, text);
        assert_int_equal(strlen(text), HR_UUID_LEN);
        assert_true(hr_uuid_parse(text, HR_UUID_LEN, out));
        assert_memory_equal(in, out, 16);
    }
}

static void test_request_uuid_parse_refused(void **state)
{
    (void)state;
    static const struct {
        const char *what, *s;
        size_t len;
    } cases[] = {
        {"empty", "", 0},
        {"35 chars", "550e8400-e29b-41d4-a716-44665544000", 35},
        {"37 chars", "550e8400-e29b-41d4-a716-4466554400000", 37},
        {"valid text, length 35", "550e8400-e29b-41d4-a716-446655440000", 35},
        {"first dash moved left", "550e840-0e29b-41d4-a716-446655440000", 36},
        {"last dash moved right", "550e8400-e29b-41d4-a7164-46655440000", 36},
        {"dash in a hex position", "550e8400-e29b-41d4-a716-4466554400-0", 36},
        {"no dashes, 36 hex", "550e8400ee29b041d40a7160446655440000", 36},
        {"underscores", "550e8400_e29b_41d4_a716_446655440000", 36},
        {"non-hex g", "550e8400-e29b-41d4-a716-44665544000g", 36},
        {"non-hex G first", "G50e8400-e29b-41d4-a716-446655440000", 36},
        {"space", "550e8400-e29b-41d4-a716-44665544000 ", 36},
        {"NUL inside", "550e8400-e29b-41d4-a716-4466554\0aaaa", 36},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t b[16];
        if (hr_uuid_parse(cases[i].s, cases[i].len, b))
            fail_msg("%s: parsed as a UUID", cases[i].what);
    }
}

static void test_request_status_parse_and_name(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
        enum hr_status want;
    } cases[] = {
        {"idle", 4, HR_STATUS_IDLE},
        {"busy", 4, HR_STATUS_BUSY},
        /* only len bytes count */
        {"idlex", 4, HR_STATUS_IDLE},
        {"", 0, HR_STATUS_NONE},
        {"none", 4, HR_STATUS_NONE},
        {"IDLE", 4, HR_STATUS_NONE},
        {"Busy", 4, HR_STATUS_NONE},
        {"idl", 3, HR_STATUS_NONE},
        {"idle ", 5, HR_STATUS_NONE},
        {"busy\0", 5, HR_STATUS_NONE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (hr_status_parse(cases[i].s, cases[i].len) != cases[i].want)
            fail_msg("hr_status_parse('%.*s', %zu) != %s", (int)cases[i].len, cases[i].s,
                     cases[i].len, hr_status_name(cases[i].want));

    assert_string_equal(hr_status_name(HR_STATUS_IDLE), "idle");
    assert_string_equal(hr_status_name(HR_STATUS_BUSY), "busy");
    assert_string_equal(hr_status_name(HR_STATUS_NONE), "none");
    assert_string_equal(hr_status_name((enum hr_status)7), "none");
    /* name then parse is the identity for the two real states */
    static const enum hr_status real[] = {HR_STATUS_IDLE, HR_STATUS_BUSY};
    for (size_t i = 0; i < 2; i++) {
        const char *n = hr_status_name(real[i]);
        assert_int_equal(hr_status_parse(n, strlen(n)), real[i]);
    }
}

static void test_request_result_names(void **state)
{
    (void)state;
    static const struct {
        enum hr_result r;
        const char *name;
    } cases[] = {
        {HR_RESULT_NONE, "unspecified"},          {HR_RESULT_OK, "ok"},
        {HR_RESULT_DUPLICATE, "duplicate"},       {HR_RESULT_UNKNOWN_HOST, "unknown_host"},
        {HR_RESULT_INVALID, "invalid"},           {HR_RESULT_RETRY_LATER, "retry_later"},
        {HR_RESULT_UNAUTHORIZED, "unauthorized"}, {(enum hr_result)7, "unspecified"},
        {(enum hr_result)255, "unspecified"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(hr_result_name(cases[i].r), cases[i].name);
}

static void test_request_msg_type_names(void **state)
{
    (void)state;
    static const struct {
        enum hr_msg_type t;
        const char *name;
    } cases[] = {
        {HR_MSG_HEARTBEAT, "heartbeat"},
        {HR_MSG_STATUS, "status"},
        {HR_MSG_LEAVE, "leave"},
        {HR_MSG_ACK, "ack"},
        {(enum hr_msg_type)0, "unknown"},
        {(enum hr_msg_type)4, "unknown"},
        {(enum hr_msg_type)0x82, "unknown"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(hr_msg_type_name(cases[i].t), cases[i].name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_id_valid),
        cmocka_unit_test(test_request_host_id_rules),
        cmocka_unit_test(test_request_host_id_unterminated_refused),
        cmocka_unit_test(test_request_host_id_uuid_normalised),
        cmocka_unit_test(test_request_room_id_rules),
        cmocka_unit_test(test_request_region_rules),
        cmocka_unit_test(test_request_region_custom_rules),
        cmocka_unit_test(test_request_check_by_type),
        cmocka_unit_test(test_request_rules_default),
        cmocka_unit_test(test_request_rules_set_regions_accepted),
        cmocka_unit_test(test_request_rules_set_regions_refused),
        cmocka_unit_test(test_request_rules_any_region),
        cmocka_unit_test(test_request_rules_set_regions_count_limit),
        cmocka_unit_test(test_request_uuid_round_trip),
        cmocka_unit_test(test_request_uuid_parse_refused),
        cmocka_unit_test(test_request_status_parse_and_name),
        cmocka_unit_test(test_request_result_names),
        cmocka_unit_test(test_request_msg_type_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
