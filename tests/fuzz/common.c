#include "common.h"

#include "body.h"
#include "err.h"
#include "fuzz.h"

#include <stdio.h>
#include <string.h>

const struct hr_rules *fuzz_default_rules(void)
{
    static struct hr_rules rules;
    static bool ready;
    if (!ready) {
        hr_rules_default(&rules);
        ready = true;
    }
    return &rules;
}

const struct hr_rules *fuzz_full_rules(void)
{
    static struct hr_rules rules;
    static bool ready;
    if (!ready) {
        /* "r00-xxxx...,r01-xxxx...": HR_REGION_MAX characters each. */
        char list[HR_REGIONS_MAX * (HR_REGION_MAX + 1)], dflt[HR_REGION_MAX + 1] = "";
        size_t o = 0;
        for (int i = 0; i < HR_REGIONS_MAX; i++) {
            char name[HR_REGION_MAX + 1];
            snprintf(name, sizeof(name), "r%02d-%.*s", i, HR_REGION_MAX - 4,
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
            o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", i ? "," : "", name);
            memcpy(dflt, name, sizeof(name));
        }
        char err[128];
        hr_rules_default(&rules);
        CHECK(hr_rules_set_regions(&rules, list, dflt, err, sizeof(err)) == HR_OK);
        CHECK(rules.nregions == HR_REGIONS_MAX);
        ready = true;
    }
    return &rules;
}

bool fuzz_terminated(const char *s, size_t cap)
{
    return strnlen(s, cap) < cap;
}

static bool same_host(const char *a, const char *b)
{
    uint8_t ra[16], rb[16];
    if (strcmp(a, b) == 0)
        return true;
    return hr_uuid_parse(a, strlen(a), ra) && hr_uuid_parse(b, strlen(b), rb) &&
           memcmp(ra, rb, 16) == 0;
}

/* A heartbeat's slots as hr_request_check makes them: capacity 0 is 1,
 * available slots not given are the capacity. */
static uint32_t capacity_of(const struct hr_request *r)
{
    return r->capacity ? r->capacity : 1;
}
static uint32_t slots_of(const struct hr_request *r)
{
    return r->slots_given ? r->available_slots : capacity_of(r);
}

bool fuzz_same_request(const struct hr_request *a, const struct hr_request *b, bool exact_host)
{
    return a->type == b->type && a->seq == b->seq &&
           (exact_host ? strcmp(a->host_id, b->host_id) == 0 : same_host(a->host_id, b->host_id)) &&
           strcmp(a->room_id, b->room_id) == 0 && strcmp(a->region, b->region) == 0 &&
           a->status == b->status &&
           (a->type != HR_MSG_HEARTBEAT ||
            (capacity_of(a) == capacity_of(b) && slots_of(a) == slots_of(b)));
}

size_t fuzz_round_trip(const struct hr_request *req, bool exact_host, uint8_t *buf, size_t cap,
                       struct hr_frame *out)
{
    size_t n = hr_wire_encode_request(req, buf, cap);
    CHECK(n >= HR_WIRE_HDR && n <= HR_WIRE_MAX && n <= cap);
    CHECK(buf[0] == HR_WIRE_MAGIC0 && buf[1] == HR_WIRE_MAGIC1 && buf[2] == HR_WIRE_VERSION);
    CHECK(buf[3] == req->type && buf[4] == 0);
    CHECK(hr_wire_decode(buf, n, out) == HR_OK);
    CHECK(out->type == req->type && out->flags == 0 && out->tag == NULL);
    CHECK(fuzz_same_request(&out->req, req, exact_host));
    return n;
}

bool fuzz_region_configured(const struct hr_rules *rules, const char *name)
{
    return hr_rules_find_region(rules, name, strlen(name)) >= 0;
}

void fuzz_check_accepted(const struct hr_request *r, const struct hr_rules *rules)
{
    char canon[HR_ID_MAX + 1];
    CHECK(fuzz_terminated(r->host_id, sizeof(r->host_id)));
    CHECK(fuzz_terminated(r->room_id, sizeof(r->room_id)));
    CHECK(fuzz_terminated(r->region, sizeof(r->region)));
    CHECK(hr_id_canon(r->host_id, strlen(r->host_id), canon));
    CHECK(strcmp(canon, r->host_id) == 0);
    switch (r->type) {
    case HR_MSG_HEARTBEAT:
        CHECK(hr_id_valid(r->room_id, strlen(r->room_id)));
        CHECK(fuzz_region_configured(rules, r->region));
        CHECK(r->status == HR_STATUS_IDLE || r->status == HR_STATUS_BUSY ||
              r->status == HR_STATUS_ALLOCATED);
        CHECK(r->capacity >= 1 && r->capacity <= HR_CAPACITY_MAX);
        CHECK(r->slots_given && r->available_slots <= r->capacity);
        break;
    case HR_MSG_STATUS:
        CHECK(r->status == HR_STATUS_IDLE || r->status == HR_STATUS_BUSY ||
              r->status == HR_STATUS_ALLOCATED);
        break;
    case HR_MSG_LEAVE:
        break;
    default:
        CHECK(!"hr_request_check accepted a type that is not a request");
    }

    struct hr_request again = *r;
    CHECK(hr_request_check(&again, rules) == HR_OK);
    CHECK(fuzz_same_request(&again, r, true));

    /* Only the fields of its type travel: a leave carries no room, region or
     * status, a status update no room or region. */
    struct hr_request sent = *r;
    if (sent.type != HR_MSG_HEARTBEAT)
        sent.room_id[0] = sent.region[0] = '\0';
    if (sent.type == HR_MSG_LEAVE)
        sent.status = HR_STATUS_NONE;
    uint8_t buf[HR_WIRE_MAX];
    struct hr_frame f;
    fuzz_round_trip(&sent, true, buf, sizeof(buf), &f);
    CHECK(hr_request_check(&f.req, rules) == HR_OK);
    CHECK(fuzz_same_request(&f.req, &sent, true));
}

json_t *fuzz_json_object(const uint8_t *data, size_t size, bool empty_ok)
{
    if (size == 0)
        return empty_ok ? json_object() : NULL;
    json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

const char *fuzz_json_field(json_t *o, const char *key, bool required, size_t cap)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return required ? NULL : "";
    if (!json_is_string(v) || json_string_length(v) >= cap)
        return NULL;
    return json_string_value(v);
}

bool fuzz_json_request(json_t *o, enum hr_msg_type type, struct hr_request *out)
{
    const bool hb = type == HR_MSG_HEARTBEAT;
    const char *host = fuzz_json_field(o, "hostId", true, sizeof(out->host_id));
    const char *room = hb ? fuzz_json_field(o, "roomId", true, sizeof(out->room_id)) : "";
    const char *region = hb ? fuzz_json_field(o, "region", false, sizeof(out->region)) : "";
    const char *status = fuzz_json_field(o, "status", !hb, sizeof("allocated"));
    memset(out, 0, sizeof(*out));
    if (!host || !room || !region || !status)
        return false;
    if (hb) {
        /* capacity 1-65535 and availableSlots 0-65535, integral numbers, or
         * absent (null); the rule between them is hr_request_check's. */
        json_t *cap = json_object_get(o, "capacity"), *av = json_object_get(o, "availableSlots");
        if (cap && !json_is_null(cap)) {
            double d = json_number_value(cap);
            if (!json_is_number(cap) || d < 1 || d > HR_CAPACITY_MAX || d != (double)(uint32_t)d)
                return false;
            out->capacity = (uint32_t)d;
        }
        if (av && !json_is_null(av)) {
            double d = json_number_value(av);
            if (!json_is_number(av) || d < 0 || d > HR_CAPACITY_MAX || d != (double)(uint32_t)d)
                return false;
            out->available_slots = (uint32_t)d;
            out->slots_given = true;
        }
    }
    out->type = type;
    snprintf(out->host_id, sizeof(out->host_id), "%s", host);
    snprintf(out->room_id, sizeof(out->room_id), "%s", room);
    snprintf(out->region, sizeof(out->region), "%s", region);
    out->status = hr_status_parse(status, strlen(status));
    return !status[0] || out->status != HR_STATUS_NONE;
}

bool fuzz_check_body_verdict(int code, size_t size, const char *err, size_t errlen)
{
    CHECK(code == 0 || code == 400 || code == 413);
    CHECK((code == 413) == (size > HR_GATEWAY_MAX_BODY));
    if (code != 0)
        CHECK(fuzz_terminated(err, errlen) && err[0] != '\0');
    return code != 413;
}

int fuzz_check_request_body(enum hr_msg_type type, const uint8_t *data, size_t size,
                            const struct hr_rules *rules, const struct hr_request *want,
                            struct hr_request *got)
{
    char err[HR_BODY_ERR_MAX];
    int code = type == HR_MSG_HEARTBEAT
                   ? hr_body_heartbeat(data, size, rules, got, err, sizeof(err), NULL)
                   : hr_body_status(data, size, rules, got, err, sizeof(err), NULL);
    if (!fuzz_check_body_verdict(code, size, err, sizeof(err)))
        return code;
    if (!want) {
        CHECK(code == 400);
        return code;
    }
    CHECK(want->type == type);
    struct hr_request checked = *want;
    int rc = hr_request_check(&checked, rules);
    CHECK(rc == HR_OK || rc == HR_E_HOST_ID || rc == HR_E_ROOM_ID || rc == HR_E_REGION ||
          rc == HR_E_STATUS || rc == HR_E_CAPACITY || rc == HR_E_SLOTS);

    uint8_t buf[HR_WIRE_MAX];
    struct hr_frame f;
    fuzz_round_trip(want, false, buf, sizeof(buf), &f);
    CHECK(hr_request_check(&f.req, rules) == rc);
    if (rc != HR_OK) {
        char msg[HR_BODY_ERR_MAX];
        hr_body_rule_message(rules, rc, msg, sizeof(msg));
        CHECK(code == 400 && strcmp(err, msg) == 0);
        return code;
    }
    CHECK(code == 0);
    CHECK(fuzz_same_request(got, &checked, true));
    CHECK(fuzz_same_request(&f.req, &checked, true));
    fuzz_check_accepted(got, rules);
    return code;
}
