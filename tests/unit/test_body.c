/* Unit tests of the gateway's request bodies (gateway/body.c): what the
 * original service's clients send is taken and comes out checked and
 * canonical; every refusal has its HTTP status and, byte for byte, the
 * message the gateway answers with; the find query's regions come in the
 * asked order, each once, as pointers into the rules. The tables name their
 * cases so a failure says which one. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "body.h"
#include "err.h"
#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S8(c) c c c c c c c c
#define S32(c) S8(c) S8(c) S8(c) S8(c)
#define S64(c) S32(c) S32(c)

#define REGIONS "(us-east-1, us-west-1, eu-central, local)" /* the default rules' */

static struct hr_rules rules;

static int setup(void **state)
{
    (void)state;
    hr_rules_default(&rules);
    return 0;
}

/* One body and what must come of it: `code` 0, or the status and `msg` (the
 * whole message, or its start when `prefix`). */
struct body_case {
    const char *name;
    const char *body;
    int code;
    const char *msg;
    int prefix;
};

typedef int body_fn(const void *body, size_t len, const struct hr_rules *r, void *out, char *err,
                    size_t errlen);

static int heartbeat(const void *body, size_t len, const struct hr_rules *r, void *out, char *err,
                     size_t errlen)
{
    return hr_body_heartbeat(body, len, r, out, err, errlen, NULL);
}

static int status(const void *body, size_t len, const struct hr_rules *r, void *out, char *err,
                  size_t errlen)
{
    return hr_body_status(body, len, r, out, err, errlen, NULL);
}

static int find(const void *body, size_t len, const struct hr_rules *r, void *out, char *err,
                size_t errlen)
{
    return hr_body_find(body, len, r, out, err, errlen, NULL);
}

static void run_cases(body_fn *fn, const struct body_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct body_case *c = &cases[i];
        union {
            struct hr_request req;
            struct hr_find_body find;
        } out;
        char err[HR_BODY_ERR_MAX] = "";
        int code = fn(c->body, strlen(c->body), &rules, &out, err, sizeof(err));
        if (code != c->code)
            fail_msg("%s: code %d, want %d (%s)", c->name, code, c->code, err);
        if (c->code == 0)
            continue;
        if (c->prefix ? strncmp(err, c->msg, strlen(c->msg)) != 0 : strcmp(err, c->msg) != 0)
            fail_msg("%s: message '%s', want '%s'%s", c->name, err, c->msg, c->prefix ? "..." : "");
    }
}

static struct hr_request heartbeat_ok(const char *body)
{
    struct hr_request r;
    char err[HR_BODY_ERR_MAX] = "";
    int code = hr_body_heartbeat(body, strlen(body), &rules, &r, err, sizeof(err), NULL);
    if (code != 0)
        fail_msg("%s: %d %s", body, code, err);
    assert_int_equal(r.type, HR_MSG_HEARTBEAT);
    assert_int_equal(r.seq, 0); /* HTTP requests apply in arrival order */
    return r;
}

/* --- heartbeats --- */

static void test_body_heartbeat_cpp_host(void **state)
{
    (void)state;
    /* Byte for byte what the original C++ host sends (capacity and slots ignored). */
    struct hr_request r = heartbeat_ok(
        "{\"hostId\":\"550E8400-E29B-41D4-A716-446655440000\",\"roomId\":\"room-abc123xyz\","
        "\"region\":\"local\",\"status\":\"idle\",\"capacity\":4,\"availableSlots\":3}");
    assert_string_equal(r.host_id, "550e8400-e29b-41d4-a716-446655440000"); /* canonical */
    assert_string_equal(r.room_id, "room-abc123xyz");
    assert_string_equal(r.region, "local");
    assert_int_equal(r.status, HR_STATUS_IDLE);
}

static void test_body_heartbeat_simulator_host(void **state)
{
    (void)state;
    struct hr_request r = heartbeat_ok(
        "{\"hostId\":\"sim-host-1-1a2b3c4d\",\"roomId\":\"sim-room-1-1a2b3c4d\","
        "\"region\":\"us-east-1\",\"status\":\"busy\",\"gameInfo\":{\"name\":\"Simulated "
        "Game\",\"players\":0,\"maxPlayers\":4,\"tags\":[\"casual\",\"coop\"]}}");
    assert_string_equal(r.host_id, "sim-host-1-1a2b3c4d");
    assert_string_equal(r.room_id, "sim-room-1-1a2b3c4d");
    assert_string_equal(r.region, "us-east-1");
    assert_int_equal(r.status, HR_STATUS_BUSY);
}

static void test_body_heartbeat_defaults(void **state)
{
    (void)state;
    /* No region and no status (or null, or ""): the default region, idle. */
    static const char *bodies[] = {
        "{\"hostId\":\"h1\",\"roomId\":\"r1\"}",
        "{\"hostId\":\"h1\",\"roomId\":\"r1\",\"region\":null,\"status\":null}",
        "{\"hostId\":\"h1\",\"roomId\":\"r1\",\"region\":\"\",\"status\":\"\"}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct hr_request r = heartbeat_ok(bodies[i]);
        assert_string_equal(r.region, "local");
        assert_int_equal(r.status, HR_STATUS_IDLE);
    }
    /* The longest ids there may be. */
    struct hr_request r = heartbeat_ok("{\"hostId\":\"" S64("h") "\",\"roomId\":\"" S64("r") "\"}");
    assert_int_equal(strlen(r.host_id), HR_ID_MAX);
    assert_int_equal(strlen(r.room_id), HR_ID_MAX);
}

static void test_body_heartbeat_refused(void **state)
{
    (void)state;
    static const struct body_case cases[] = {
        {"empty", "", 400, "request body is empty, expected a JSON object", 0},
        {"truncated", "{\"hostId\":\"h1\",\n\"roomId\":}", 400, "invalid JSON at line 2, column",
         1},
        {"array", "[{\"hostId\":\"h1\",\"roomId\":\"r1\"}]", 400,
         "request body must be a JSON object", 0},
        {"string", "\"h1\"", 400, "invalid JSON at line 1", 1},
        {"duplicate key", "{\"hostId\":\"h1\",\"hostId\":\"h2\",\"roomId\":\"r1\"}", 400,
         "invalid JSON at line 1, column 23: duplicate object key", 1},
        {"nul in hostId", "{\"hostId\":\"h1\\u0000x\",\"roomId\":\"r1\"}", 400,
         "invalid JSON at line 1, column", 1},
        {"nul in an ignored field", "{\"hostId\":\"h1\",\"roomId\":\"r1\",\"x\":\"\\u0000\"}", 400,
         "invalid JSON at line 1, column", 1},
        {"no hostId", "{\"roomId\":\"r1\"}", 400, "missing field 'hostId'", 0},
        {"null hostId", "{\"hostId\":null,\"roomId\":\"r1\"}", 400, "missing field 'hostId'", 0},
        {"no roomId", "{\"hostId\":\"h1\"}", 400, "missing field 'roomId'", 0},
        {"hostId a number", "{\"hostId\":42,\"roomId\":\"r1\"}", 400,
         "field 'hostId' must be a string", 0},
        {"roomId an object", "{\"hostId\":\"h1\",\"roomId\":{}}", 400,
         "field 'roomId' must be a string", 0},
        {"region a number", "{\"hostId\":\"h1\",\"roomId\":\"r1\",\"region\":7}", 400,
         "field 'region' must be a string", 0},
        {"status a bool", "{\"hostId\":\"h1\",\"roomId\":\"r1\",\"status\":true}", 400,
         "field 'status' must be a string", 0},
        {"hostId 65", "{\"hostId\":\"" S64("h") "h\",\"roomId\":\"r1\"}", 400,
         "hostId must be a UUID or 1-64 characters of [A-Za-z0-9._:-]", 0},
        {"hostId with a space", "{\"hostId\":\"h 1\",\"roomId\":\"r1\"}", 400,
         "hostId must be a UUID or 1-64 characters of [A-Za-z0-9._:-]", 0},
        {"hostId empty", "{\"hostId\":\"\",\"roomId\":\"r1\"}", 400,
         "hostId must be a UUID or 1-64 characters of [A-Za-z0-9._:-]", 0},
        {"roomId with a slash", "{\"hostId\":\"h1\",\"roomId\":\"room/1\"}", 400,
         "roomId must be 1-64 characters of [A-Za-z0-9._:-]", 0},
        {"roomId 65", "{\"hostId\":\"h1\",\"roomId\":\"" S64("r") "r\"}", 400,
         "roomId must be 1-64 characters of [A-Za-z0-9._:-]", 0},
        {"region unknown", "{\"hostId\":\"h1\",\"roomId\":\"r1\",\"region\":\"mars\"}", 400,
         "region is not one of the configured regions " REGIONS, 0},
        {"region 33", "{\"hostId\":\"h1\",\"roomId\":\"r1\",\"region\":\"" S32("r") "r\"}", 400,
         "region is not one of the configured regions " REGIONS, 0},
        {"status unknown", "{\"hostId\":\"h1\",\"roomId\":\"r1\",\"status\":\"away\"}", 400,
         "status must be idle, busy or allocated", 0},
        {"status long", "{\"hostId\":\"h1\",\"roomId\":\"r1\",\"status\":\"idleidle\"}", 400,
         "status must be idle, busy or allocated", 0},
    };
    run_cases(heartbeat, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_body_size_limit(void **state)
{
    (void)state;
    /* Padding a fine heartbeat in an ignored field up to the limit, then one over. */
    static const char head[] = "{\"hostId\":\"h1\",\"roomId\":\"r1\",\"pad\":\"";
    char *body = malloc(HR_GATEWAY_MAX_BODY + 2);
    assert_non_null(body);
    memcpy(body, head, sizeof(head) - 1);
    struct hr_request r;
    struct hr_find_body f;
    char err[HR_BODY_ERR_MAX];
    for (size_t len = HR_GATEWAY_MAX_BODY; len <= HR_GATEWAY_MAX_BODY + 1; len++) {
        memset(body + sizeof(head) - 1, 'x', len - (sizeof(head) - 1) - 2);
        memcpy(body + len - 2, "\"}", 2);
        int want = len > HR_GATEWAY_MAX_BODY ? 413 : 0;
        assert_int_equal(hr_body_heartbeat(body, len, &rules, &r, err, sizeof(err), NULL), want);
        assert_int_equal(hr_body_status(body, len, &rules, &r, err, sizeof(err), NULL),
                         want ? want : 400); /* no status */
        assert_int_equal(hr_body_find(body, len, &rules, &f, err, sizeof(err), NULL), want);
    }
    assert_string_equal(err, "request body is 102401 bytes, the limit is 102400");
    free(body);
}

/* --- status updates --- */

static void test_body_status(void **state)
{
    (void)state;
    static const char body[] = "{\"hostId\":\"550E8400-E29B-41D4-A716-446655440000\","
                               "\"status\":\"busy\",\"roomId\":\"ignored\",\"region\":\"mars\"}";
    struct hr_request r;
    char err[HR_BODY_ERR_MAX] = "";
    assert_int_equal(hr_body_status(body, strlen(body), &rules, &r, err, sizeof(err), NULL), 0);
    assert_int_equal(r.type, HR_MSG_STATUS);
    assert_int_equal(r.seq, 0);
    assert_string_equal(r.host_id, "550e8400-e29b-41d4-a716-446655440000");
    assert_int_equal(r.status, HR_STATUS_BUSY);
    assert_string_equal(r.room_id, ""); /* a status update carries none */
    assert_string_equal(r.region, "");

    static const struct body_case cases[] = {
        {"idle", "{\"hostId\":\"h1\",\"status\":\"idle\"}", 0, NULL, 0},
        {"empty", "", 400, "request body is empty, expected a JSON object", 0},
        {"duplicate key", "{\"hostId\":\"h1\",\"status\":\"idle\",\"status\":\"busy\"}", 400,
         "invalid JSON at line 1", 1},
        {"nul in status", "{\"hostId\":\"h1\",\"status\":\"busy\\u0000\"}", 400,
         "invalid JSON at line 1", 1},
        {"no status", "{\"hostId\":\"h1\"}", 400, "missing field 'status'", 0},
        {"null status", "{\"hostId\":\"h1\",\"status\":null}", 400, "missing field 'status'", 0},
        {"no hostId", "{\"status\":\"busy\"}", 400, "missing field 'hostId'", 0},
        {"status a number", "{\"hostId\":\"h1\",\"status\":2}", 400,
         "field 'status' must be a string", 0},
        {"status empty", "{\"hostId\":\"h1\",\"status\":\"\"}", 400,
         "status must be idle, busy or allocated", 0},
        {"status unknown", "{\"hostId\":\"h1\",\"status\":\"Busy\"}", 400,
         "status must be idle, busy or allocated", 0},
        {"status long", "{\"hostId\":\"h1\",\"status\":\"busybusy\"}", 400,
         "status must be idle, busy or allocated", 0},
        {"hostId bad", "{\"hostId\":\"h/1\",\"status\":\"busy\"}", 400,
         "hostId must be a UUID or 1-64 characters of [A-Za-z0-9._:-]", 0},
    };
    run_cases(status, cases, sizeof(cases) / sizeof(cases[0]));
}

/* --- matchmaking --- */

/* Every configured region, the default one first. */
static const char *const all_regions[] = {"local", "us-east-1", "us-west-1", "eu-central", NULL};

/* hr_body_find must take `body`, and search the regions `want` (names, in
 * order, NULL-terminated), by pointers into the rules. */
static void find_ok(const char *body, const char *const *want, const char *host)
{
    struct hr_find_body f;
    char err[HR_BODY_ERR_MAX] = "";
    int code = hr_body_find(body, strlen(body), &rules, &f, err, sizeof(err), NULL);
    if (code != 0)
        fail_msg("%s: %d %s", body, code, err);
    size_t n = 0;
    while (want[n])
        n++;
    if (f.query.nregions != n)
        fail_msg("%s: %zu regions, want %zu", body, f.query.nregions, n);
    for (size_t i = 0; i < n; i++) {
        int at = hr_rules_find_region(&rules, want[i], strlen(want[i]));
        assert_true(at >= 0);
        assert_ptr_equal(f.query.regions[i], rules.regions[at]);
    }
    assert_int_equal(f.query.lease_ms, 0); /* the gateway's to set */
    if (host) {
        assert_ptr_equal(f.query.host_id, f.host_id);
        assert_string_equal(f.host_id, host);
    } else {
        assert_null(f.query.host_id);
    }
}

static void test_body_find_regions(void **state)
{
    (void)state;
    find_ok("", all_regions, NULL); /* an empty body is {} */
    find_ok("{}", all_regions, NULL);
    find_ok("{\"region\":null,\"regions\":null,\"hostId\":null}", all_regions, NULL);
    find_ok("{\"region\":\"\",\"regions\":[]}", all_regions, NULL);

    static const char *const one[] = {"eu-central", NULL};
    find_ok("{\"region\":\"eu-central\"}", one, NULL);

    /* "region" first, then "regions" in order, each once. */
    static const char *const ordered[] = {"local", "us-west-1", "us-east-1", NULL};
    find_ok("{\"region\":\"local\",\"regions\":[\"us-west-1\",\"local\",\"us-east-1\","
            "\"us-west-1\"]}",
            ordered, NULL);
    static const char *const deduped[] = {"eu-central", "local", NULL};
    find_ok("{\"regions\":[\"eu-central\",\"eu-central\",\"local\",\"eu-central\"]}", deduped,
            NULL);
}

static void test_body_find_host(void **state)
{
    (void)state;
    static const char *const none[] = {NULL};
    static const char *const west[] = {"us-west-1", NULL};
    /* A hostId alone searches that host wherever it is; canonical as everywhere. */
    find_ok("{\"hostId\":\"550E8400-E29B-41D4-A716-446655440000\"}", none,
            "550e8400-e29b-41d4-a716-446655440000");
    find_ok("{\"hostId\":\"sim-host-1\",\"region\":\"us-west-1\"}", west, "sim-host-1");
    find_ok("{\"hostId\":\"\"}", all_regions, NULL); /* "" is no hostId */
}

static void test_body_find_refused(void **state)
{
    (void)state;
    static const struct body_case cases[] = {
        {"not an object", "[\"local\"]", 400, "request body must be a JSON object", 0},
        {"truncated", "{\"region\":", 400, "invalid JSON at line 1", 1},
        {"duplicate key", "{\"region\":\"local\",\"region\":\"eu-central\"}", 400,
         "invalid JSON at line 1", 1},
        {"region unknown", "{\"region\":\"mars\"}", 400,
         "region is not one of the configured regions " REGIONS, 0},
        {"region a number", "{\"region\":1}", 400, "field 'region' must be a string", 0},
        {"region 33", "{\"region\":\"" S32("r") "r\"}", 400,
         "region is not one of the configured regions " REGIONS, 0},
        {"regions a string", "{\"regions\":\"eu-central\"}", 400,
         "field 'regions' must be an array of region names", 0},
        {"regions entry a number", "{\"regions\":[\"eu-central\",7]}", 400,
         "regions[1]: region is not one of the configured regions " REGIONS, 0},
        {"regions entry unknown", "{\"regions\":[\"mars\"]}", 400,
         "regions[0]: region is not one of the configured regions " REGIONS, 0},
        {"regions entry a list", "{\"regions\":[[\"local\"]]}", 400,
         "regions[0]: region is not one of the configured regions " REGIONS, 0},
        /* A configured name and a \u0000: never the region before it. */
        {"regions entry with a nul", "{\"regions\":[\"local\\u0000junk\"]}", 400,
         "invalid JSON at line 1, column", 1},
        {"hostId bad", "{\"hostId\":\"witness 1\"}", 400,
         "hostId must be a UUID or 1-64 characters of [A-Za-z0-9._:-]", 0},
        {"hostId 65", "{\"hostId\":\"" S64("h") "h\"}", 400,
         "hostId must be a UUID or 1-64 characters of [A-Za-z0-9._:-]", 0},
        {"hostId a number", "{\"hostId\":5}", 400, "field 'hostId' must be a string", 0},
    };
    run_cases(find, cases, sizeof(cases) / sizeof(cases[0]));
}

/* --- messages --- */

static void test_body_rule_message(void **state)
{
    (void)state;
    char msg[HR_BODY_ERR_MAX];
    hr_body_rule_message(&rules, HR_E_STATUS, msg, sizeof(msg));
    assert_string_equal(msg, "status must be idle, busy or allocated");
    hr_body_rule_message(&rules, HR_E_REGION, msg, sizeof(msg));
    assert_string_equal(msg, "region is not one of the configured regions " REGIONS);

    /* HR_REGIONS_MAX long regions: cut at the buffer as one snprintf would cut it. */
    struct hr_rules full;
    char list[HR_REGIONS_MAX * (HR_REGION_MAX + 1)],
        whole[HR_REGIONS_MAX * (HR_REGION_MAX + 2) + 64], name[HR_REGION_MAX + 1];
    size_t o = 0, w = (size_t)snprintf(whole, sizeof(whole), "%s (", hr_strerror(HR_E_REGION));
    for (int i = 0; i < HR_REGIONS_MAX; i++) {
        snprintf(name, sizeof(name), "r%02d-%.*s", i, HR_REGION_MAX - 4, S32("x"));
        o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", i ? "," : "", name);
        w += (size_t)snprintf(whole + w, sizeof(whole) - w, "%s%s", i ? ", " : "", name);
    }
    snprintf(whole + w, sizeof(whole) - w, ")");
    char err[128];
    hr_rules_default(&full);
    if (hr_rules_set_regions(&full, list, name, err, sizeof(err)) != HR_OK)
        fail_msg("%s", err);
    for (size_t len = 1; len <= sizeof(msg); len += 37) {
        hr_body_rule_message(&full, HR_E_REGION, msg, len);
        assert_int_equal(strlen(msg), len - 1);
        assert_memory_equal(msg, whole, len - 1);
    }
    hr_body_rule_message(&full, HR_E_REGION, msg, sizeof(msg));
    assert_memory_equal(msg, whole, sizeof(msg) - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_heartbeat_cpp_host),
        cmocka_unit_test(test_body_heartbeat_simulator_host),
        cmocka_unit_test(test_body_heartbeat_defaults),
        cmocka_unit_test(test_body_heartbeat_refused),
        cmocka_unit_test(test_body_size_limit),
        cmocka_unit_test(test_body_status),
        cmocka_unit_test(test_body_find_regions),
        cmocka_unit_test(test_body_find_host),
        cmocka_unit_test(test_body_find_refused),
        cmocka_unit_test(test_body_rule_message),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
