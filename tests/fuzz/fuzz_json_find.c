/* Fuzz harness for the body of POST /api/match/find: the bytes go to
 * hr_body_find (gateway/body.c, what the gateway itself calls; an empty body
 * is {}) under the default rules and under a full set of 32 regions, and the
 * claim query it builds is checked against the JSON:
 *
 *   - 413 exactly over the size limit; otherwise the body is taken exactly
 *     when it is a JSON object the contract takes whose "region" is absent,
 *     null, "" or configured, whose "regions" is absent, null or an array of
 *     configured names, and whose "hostId" is absent, null, "" or a valid id
 *     (so a name with a \u0000 inside, corpus/edge-regions-nul, is refused);
 *     a refusal says why;
 *   - the region list never outgrows its array: it holds configured regions
 *     only (pointers into the rules), each once, "region" first, then the
 *     "regions" in order; with neither and no hostId, every configured region
 *     with the default first;
 *   - a hostId is passed on in the struct's own storage, in the canonical
 *     form hr_request_check gives it (common.h).
 *
 * Any inconsistency aborts. */
#include "fuzz.h"

#include "body.h"
#include "common.h"
#include "request.h"

#include <stdbool.h>
#include <string.h>

/* Whether the gateway must take body `j` under `rules`, from the JSON alone. */
static bool takes(json_t *j, const struct hr_rules *rules)
{
    const char *region = fuzz_json_field(j, "region", false, HR_REGION_MAX + 1);
    const char *host = fuzz_json_field(j, "hostId", false, HR_ID_MAX + 1);
    json_t *list = json_object_get(j, "regions"), *v;
    size_t k;
    if (!region || (region[0] && !fuzz_region_configured(rules, region)) || !host ||
        (host[0] && !hr_id_valid(host, strlen(host))))
        return false;
    if (list && !json_is_null(list) && !json_is_array(list))
        return false;
    json_array_foreach(list, k, v)
    {
        if (!json_is_string(v) || !fuzz_region_configured(rules, json_string_value(v)))
            return false;
    }
    return true;
}

/* The index of `name` in q's list, or -1. */
static int listed(const struct hr_claim_query *q, const char *name)
{
    for (size_t i = 0; i < q->nregions; i++)
        if (strcmp(q->regions[i], name) == 0)
            return (int)i;
    return -1;
}

static void check_find(const uint8_t *data, size_t size, json_t *j, const struct hr_rules *rules)
{
    struct hr_find_body fb;
    char err[HR_BODY_ERR_MAX];
    int code = hr_body_find(data, size, rules, &fb, err, sizeof(err), NULL);
    if (!fuzz_check_body_verdict(code, size, err, sizeof(err)))
        return;
    CHECK((code == 0) == (j && takes(j, rules)));
    if (code != 0)
        return;

    const struct hr_claim_query *q = &fb.query;
    const size_t cap = sizeof(q->regions) / sizeof(q->regions[0]);
    CHECK(q->nregions <= rules->nregions && q->nregions <= cap);
    CHECK(q->lease_ms == 0); /* the caller's to set */
    for (size_t i = 0; i < q->nregions; i++) {
        /* A configured region, by pointer: the store keeps no copy. */
        bool configured = false;
        for (size_t r = 0; r < rules->nregions; r++)
            configured |= q->regions[i] == rules->regions[r];
        CHECK(configured);
        CHECK(listed(q, q->regions[i]) == (int)i); /* once */
    }

    /* Every region asked for is in the list, "region" first, "regions" in order. */
    size_t asked = 0;
    json_t *region = json_object_get(j, "region");
    if (json_is_string(region) && json_string_length(region) > 0) {
        CHECK(listed(q, json_string_value(region)) == 0);
        asked++;
    }
    json_t *list = json_object_get(j, "regions"), *v;
    size_t k;
    int prev = (int)asked - 1; /* the index of the last new name seen */
    json_array_foreach(list, k, v)
    {
        int at = listed(q, json_string_value(v));
        CHECK(at >= 0);
        if (at > prev) {
            CHECK(at == prev + 1); /* the first time a name is seen, it comes next */
            prev = at;
        }
    }
    if (prev >= 0)
        asked = (size_t)prev + 1;

    const char *host = fuzz_json_field(j, "hostId", false, HR_ID_MAX + 1);
    if (q->host_id) {
        char canon[HR_ID_MAX + 1];
        CHECK(q->host_id == fb.host_id);
        CHECK(hr_id_canon(host, strlen(host), canon) && strcmp(canon, fb.host_id) == 0);
        struct hr_request leave = {.type = HR_MSG_LEAVE};
        memcpy(leave.host_id, fb.host_id, sizeof(leave.host_id));
        fuzz_check_accepted(&leave, rules);
        CHECK(q->nregions == asked);
    } else if (asked == 0) {
        CHECK(host[0] == '\0' && fb.host_id[0] == '\0');
        CHECK(q->nregions == rules->nregions);
        CHECK(q->regions[0] == rules->regions[rules->default_region]);
    } else {
        CHECK(host[0] == '\0');
        CHECK(q->nregions == asked);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j = fuzz_json_object(data, size, true);
    check_find(data, size, j, fuzz_default_rules());
    check_find(data, size, j, fuzz_full_rules());
    json_decref(j);
    return 0;
}
