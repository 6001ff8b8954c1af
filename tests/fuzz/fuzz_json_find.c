/* Fuzz harness for the body of POST /api/match/find: the bytes go through the
 * gateway's JSON reading (gw_body.c, mirroring gateway.c; an empty body is
 * {}), and the claim query is built as h_find builds it, under the default
 * rules and under a full set of 32 regions. Checks:
 *
 *   - the region list never outgrows its array: it holds configured regions
 *     only (pointers into the rules), each once, "region" first, then the
 *     "regions" in order; with neither and no hostId, every configured region
 *     with the default first;
 *   - a hostId is passed on only after hr_request_check accepted it, in
 *     canonical form (common.h).
 *
 * Any inconsistency aborts. */
#include "fuzz.h"

#include "common.h"
#include "err.h"
#include "gw_body.h"
#include "request.h"
#include "store.h"

#include <stdbool.h>
#include <string.h>

/* Mirrors region_index() of gateway/gateway.c. */
static int region_index(const struct hr_rules *rules, const char *name)
{
    for (size_t i = 0; i < rules->nregions; i++)
        if (strcmp(rules->regions[i], name) == 0)
            return (int)i;
    return -1;
}

/* Mirrors add_region() of gateway/gateway.c. */
static void add_region(const char **list, size_t *n, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(list[i], name) == 0)
            return;
    list[(*n)++] = name;
}

/* Mirrors h_find() of gateway/gateway.c up to its hr_store_claim() call:
 * fills `q` (whose host_id may point into `host`). 0 when the gateway would
 * claim, -1 where it answers 400. */
static int take_find(json_t *j, const struct hr_rules *rules, struct hr_claim_query *q,
                     struct hr_request *host)
{
    char region[HR_REGION_MAX + 1];
    memset(q, 0, sizeof(*q));
    memset(host, 0, sizeof(*host));
    host->type = HR_MSG_LEAVE;
    if (gw_get_str(j, "region", false, region, sizeof(region)) != 0 ||
        gw_get_str(j, "hostId", false, host->host_id, sizeof(host->host_id)) != 0)
        return -1;
    if (region[0]) {
        int i = region_index(rules, region);
        if (i < 0)
            return -1;
        add_region(q->regions, &q->nregions, rules->regions[i]);
    }
    json_t *list = json_object_get(j, "regions");
    if (list && !json_is_null(list)) {
        size_t k;
        json_t *v;
        if (!json_is_array(list))
            return -1;
        json_array_foreach(list, k, v)
        {
            int i = json_is_string(v) ? region_index(rules, json_string_value(v)) : -1;
            if (i < 0)
                return -1;
            add_region(q->regions, &q->nregions, rules->regions[i]);
        }
    }
    if (host->host_id[0]) {
        /* The same canonical form as everywhere else (lower-case UUIDs). */
        if (hr_request_check(host, rules) != HR_OK)
            return -1;
        q->host_id = host->host_id;
    } else if (q->nregions == 0) {
        /* Any region: the default one first, then the others as configured. */
        add_region(q->regions, &q->nregions, rules->regions[rules->default_region]);
        for (size_t i = 0; i < rules->nregions; i++)
            add_region(q->regions, &q->nregions, rules->regions[i]);
    }
    return 0;
}

/* The index of `name` in q's list, or -1. */
static int listed(const struct hr_claim_query *q, const char *name)
{
    for (size_t i = 0; i < q->nregions; i++)
        if (strcmp(q->regions[i], name) == 0)
            return (int)i;
    return -1;
}

static void check_find(json_t *j, const struct hr_rules *rules)
{
    struct hr_claim_query q;
    struct hr_request host;
    if (take_find(j, rules, &q, &host) != 0)
        return;

    const size_t cap = sizeof(q.regions) / sizeof(q.regions[0]);
    CHECK(q.nregions <= rules->nregions && q.nregions <= cap);
    for (size_t i = 0; i < q.nregions; i++) {
        /* A configured region, by pointer: the store keeps no copy. */
        bool configured = false;
        for (size_t r = 0; r < rules->nregions; r++)
            configured |= q.regions[i] == rules->regions[r];
        CHECK(configured);
        CHECK(listed(&q, q.regions[i]) == (int)i); /* once */
    }

    /* Every region asked for is in the list, "region" first, "regions" in order. */
    size_t asked = 0;
    json_t *region = json_object_get(j, "region");
    if (json_is_string(region) && json_string_length(region) > 0) {
        CHECK(listed(&q, json_string_value(region)) == 0);
        asked++;
    }
    json_t *list = json_object_get(j, "regions"), *v;
    size_t k;
    int prev = (int)asked - 1; /* the index of the last new name seen */
    json_array_foreach(list, k, v)
    {
        int at = listed(&q, json_string_value(v));
        CHECK(at >= 0);
        if (at > prev) {
            CHECK(at == prev + 1); /* the first time a name is seen, it comes next */
            prev = at;
        }
    }
    if (prev >= 0)
        asked = (size_t)prev + 1;

    if (q.host_id) {
        CHECK(q.host_id == host.host_id);
        fuzz_check_accepted(&host, rules);
        CHECK(q.nregions == asked);
    } else if (asked == 0) {
        CHECK(host.host_id[0] == '\0');
        CHECK(q.nregions == rules->nregions);
        CHECK(q.regions[0] == rules->regions[rules->default_region]);
    } else {
        CHECK(q.nregions == asked);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j = gw_read_json(data, size, true);
    if (!j)
        return 0;
    CHECK(json_is_object(j));
    check_find(j, fuzz_default_rules());
    check_find(j, fuzz_full_rules());
    json_decref(j);
    return 0;
}
