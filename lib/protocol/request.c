#include "request.h"

#include "err.h"

#include <stdio.h>
#include <string.h>

void hr_rules_default(struct hr_rules *r)
{
    static const char *defaults[] = {"us-east-1", "us-west-1", "eu-central", "local"};
    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        snprintf(r->regions[i], sizeof(r->regions[i]), "%s", defaults[i]);
    r->nregions = 4;
    r->default_region = 3; /* "local": what the original service assumed */
}

int hr_rules_find_region(const struct hr_rules *r, const char *name, size_t len)
{
    for (size_t i = 0; i < r->nregions; i++)
        if (strlen(r->regions[i]) == len && memcmp(r->regions[i], name, len) == 0)
            return (int)i;
    return -1;
}

/* A region name: it becomes part of Redis keys, and the id charset keeps
 * them printable, free of spaces (entries and index members are
 * space-separated) and of braces (hash tags). */
static bool region_name_ok(const char *name, size_t len)
{
    return len > 0 && len <= HR_REGION_MAX && hr_id_valid(name, len);
}

bool hr_rules_region_ok(const struct hr_rules *r, const char *name, size_t len)
{
    return r->any ? region_name_ok(name, len) : hr_rules_find_region(r, name, len) >= 0;
}

size_t hr_rules_names(const struct hr_rules *r, const char *out[HR_REGIONS_MAX])
{
    for (size_t i = 0; i < r->nregions; i++)
        out[i] = r->regions[i];
    return r->nregions;
}

int hr_rules_set_regions(struct hr_rules *r, const char *list, const char *dflt, char *err,
                         size_t errlen)
{
    struct hr_rules n;
    memset(&n, 0, sizeof(n));
    if (strcmp(list, "*") == 0) {
        if (!region_name_ok(dflt, strlen(dflt))) {
            snprintf(err, errlen, "bad default region '%.40s' (1-%d characters of [A-Za-z0-9._:-])",
                     dflt, HR_REGION_MAX);
            return HR_E_REGION;
        }
        n.any = true;
        memcpy(n.regions[0], dflt, strlen(dflt) + 1);
        n.nregions = 1;
        *r = n;
        return HR_OK;
    }
    const char *p = list;
    while (1) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (!region_name_ok(p, len)) {
            snprintf(err, errlen, "bad region name '%.*s' (1-%d characters of [A-Za-z0-9._:-])",
                     (int)(len > 40 ? 40 : len), p, HR_REGION_MAX);
            return HR_E_REGION;
        }
        if (hr_rules_find_region(&n, p, len) >= 0) {
            snprintf(err, errlen, "region '%.*s' listed twice", (int)len, p);
            return HR_E_REGION;
        }
        if (n.nregions == HR_REGIONS_MAX) {
            snprintf(err, errlen, "more than %d regions", HR_REGIONS_MAX);
            return HR_E_REGION;
        }
        memcpy(n.regions[n.nregions++], p, len);
        if (!comma)
            break;
        p = comma + 1;
    }
    int d = hr_rules_find_region(&n, dflt, strlen(dflt));
    if (d < 0) {
        snprintf(err, errlen, "default region '%s' is not in the region list", dflt);
        return HR_E_REGION;
    }
    n.default_region = (size_t)d;
    *r = n;
    return HR_OK;
}

size_t hr_request_problems(struct hr_request *req, const struct hr_rules *rules, int *errs,
                           size_t max)
{
    size_t n = 0;
#define PROBLEM_(e)                                                                                \
    do {                                                                                           \
        if (n < max)                                                                               \
            errs[n] = (e);                                                                         \
        n++;                                                                                       \
    } while (0)
    size_t hlen = strnlen(req->host_id, sizeof(req->host_id));
    if (hlen == sizeof(req->host_id) || !hr_id_canon(req->host_id, hlen, req->host_id))
        PROBLEM_(HR_E_HOST_ID);

    switch (req->type) {
    case HR_MSG_HEARTBEAT: {
        size_t rlen = strnlen(req->room_id, sizeof(req->room_id));
        if (rlen == sizeof(req->room_id) || !hr_id_valid(req->room_id, rlen))
            PROBLEM_(HR_E_ROOM_ID);
        size_t glen = strnlen(req->region, sizeof(req->region));
        if (glen == 0)
            snprintf(req->region, sizeof(req->region), "%s", rules->regions[rules->default_region]);
        else if (glen == sizeof(req->region) || !hr_rules_region_ok(rules, req->region, glen))
            PROBLEM_(HR_E_REGION);
        if (req->status == HR_STATUS_NONE)
            req->status = HR_STATUS_IDLE;
        else if (!hr_status_valid(req->status))
            PROBLEM_(HR_E_STATUS);
        if (req->capacity == 0)
            req->capacity = 1;
        if (req->capacity > HR_CAPACITY_MAX)
            PROBLEM_(HR_E_CAPACITY);
        else if (!req->slots_given) {
            req->available_slots = req->capacity;
            req->slots_given = true;
        } else if (req->available_slots > req->capacity)
            PROBLEM_(HR_E_SLOTS);
        break;
    }
    case HR_MSG_STATUS:
        if (!hr_status_valid(req->status))
            PROBLEM_(HR_E_STATUS);
        break;
    case HR_MSG_LEAVE:
        break;
    default:
        PROBLEM_(HR_E_TYPE);
    }
#undef PROBLEM_
    return n;
}

int hr_request_check(struct hr_request *req, const struct hr_rules *rules)
{
    int first = HR_OK;
    return hr_request_problems(req, rules, &first, 1) ? first : HR_OK;
}

static const struct {
    enum hr_status status;
    const char *name;
} statuses[] = {
#define HR_STATUS_ROW_(name, num, text) {HR_STATUS_##name, text},
    HR_STATUSES(HR_STATUS_ROW_)
#undef HR_STATUS_ROW_
};
#define NSTATUSES (sizeof(statuses) / sizeof(statuses[0]))

/* The row of status s in the table, or -1. */
static int status_row(enum hr_status s)
{
    for (size_t i = 0; i < NSTATUSES; i++)
        if (statuses[i].status == s)
            return (int)i;
    return -1;
}

enum hr_status hr_status_parse(const char *s, size_t len)
{
    for (size_t i = 0; i < NSTATUSES; i++)
        if (strlen(statuses[i].name) == len && memcmp(statuses[i].name, s, len) == 0)
            return statuses[i].status;
    return HR_STATUS_NONE;
}

const char *hr_status_name(enum hr_status s)
{
    int i = status_row(s);
    return i < 0 ? "none" : statuses[i].name;
}

const char *hr_status_name_at(size_t i)
{
    return i < NSTATUSES ? statuses[i].name : "none";
}

bool hr_status_valid(enum hr_status s)
{
    return status_row(s) >= 0;
}

const char *hr_result_name(enum hr_result r)
{
    switch (r) {
    case HR_RESULT_OK:
        return "ok";
    case HR_RESULT_DUPLICATE:
        return "duplicate";
    case HR_RESULT_UNKNOWN_HOST:
        return "unknown_host";
    case HR_RESULT_INVALID:
        return "invalid";
    case HR_RESULT_RETRY_LATER:
        return "retry_later";
    case HR_RESULT_UNAUTHORIZED:
        return "unauthorized";
    default:
        return "unspecified";
    }
}

const char *hr_msg_type_name(enum hr_msg_type t)
{
    switch (t) {
    case HR_MSG_HEARTBEAT:
        return "heartbeat";
    case HR_MSG_STATUS:
        return "status";
    case HR_MSG_LEAVE:
        return "leave";
    case HR_MSG_ACK:
        return "ack";
    default:
        return "unknown";
    }
}
