#include "body.h"

#include "err.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* What every step of reading one body shares: the rules, and where the
 * reason for a refusal goes. */
struct reader {
    const struct hr_rules *rules;
    char *err;
    size_t errlen;
    struct hr_body_issues *issues; /* NULL: the caller wants the message only */
    struct hr_body_issues local;   /* where they go then */
};

/* The fields in the order their issues are reported. */
static int field_order(const char *path)
{
    static const char *const order[] = {"hostId", "roomId",   "region",        "regions",
                                        "status", "capacity", "availableSlots"};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        if (strcmp(order[i], path) == 0)
            return (int)i;
    return (int)(sizeof(order) / sizeof(order[0]));
}

/* Records a bad field (once: the first problem of a field is its issue) and
 * returns 400. */
static int issue(struct reader *rd, const char *path, const char *code, const char *msg)
{
    struct hr_body_issues *is = rd->issues ? rd->issues : &rd->local;
    for (size_t i = 0; i < is->n; i++)
        if (strcmp(is->at[i].path, path) == 0)
            return 400;
    if (is->n == HR_BODY_ISSUES_MAX)
        return 400;
    /* In field order, whatever order they were found in. */
    size_t at = is->n;
    while (at > 0 && field_order(is->at[at - 1].path) > field_order(path)) {
        is->at[at] = is->at[at - 1];
        at--;
    }
    struct hr_body_issue *x = &is->at[at];
    snprintf(x->path, sizeof(x->path), "%s", path);
    snprintf(x->code, sizeof(x->code), "%s", code);
    snprintf(x->message, sizeof(x->message), "%s", msg);
    is->n++;
    snprintf(rd->err, rd->errlen, "%s", is->at[0].message);
    return 400;
}

/* The field a broken rule is about, and the kind of failure it is. */
static const char *rule_field(int rule)
{
    return rule == HR_E_HOST_ID    ? "hostId"
           : rule == HR_E_ROOM_ID  ? "roomId"
           : rule == HR_E_REGION   ? "region"
           : rule == HR_E_STATUS   ? "status"
           : rule == HR_E_CAPACITY ? "capacity"
           : rule == HR_E_SLOTS    ? "availableSlots"
                                   : "body";
}
static const char *rule_code(const struct reader *rd, int rule)
{
    /* Any region name of the id set (any-region mode): a string's format. */
    if (rule == HR_E_REGION && rd->rules->any)
        return "invalid_string";
    return rule == HR_E_REGION || rule == HR_E_STATUS    ? "invalid_enum_value"
           : rule == HR_E_CAPACITY || rule == HR_E_SLOTS ? "too_big"
                                                         : "invalid_string";
}

/* Writes the reason into rd->err and returns `code`, the HTTP status. */
static int refuse(const struct reader *rd, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(const struct reader *rd, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rd->err, rd->errlen, fmt, ap);
    va_end(ap);
    return code;
}

/* 400 with the message of the rule broken, as the issue of its field (or of
 * `path` when given). */
static int refuse_rule_at(struct reader *rd, int rule, const char *path)
{
    char msg[HR_BODY_ERR_MAX];
    hr_body_rule_message(rd->rules, rule, msg, sizeof(msg));
    return issue(rd, path ? path : rule_field(rule), rule_code(rd, rule), msg);
}

static int refuse_rule(struct reader *rd, int rule)
{
    return refuse_rule_at(rd, rule, NULL);
}

void hr_body_rule_message(const struct hr_rules *rules, int rule, char *buf, size_t len)
{
    if (rule == HR_E_REGION && rules->any) {
        snprintf(buf, len, "region must be 1-%d characters of [A-Za-z0-9._:-]", HR_REGION_MAX);
        return;
    }
    size_t o = (size_t)snprintf(buf, len, "%s", hr_strerror(rule));
    if (rule != HR_E_REGION)
        return;
    /* Each piece is cut where buf ends, so a long list is cut as one
     * snprintf of the whole message would cut it. */
    if (o < len)
        o += (size_t)snprintf(buf + o, len - o, " (");
    for (size_t i = 0; i < rules->nregions && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? ", " : "", rules->regions[i]);
    if (o < len)
        snprintf(buf + o, len - o, ")");
}

/* The body as a JSON object in *out (the caller's to free), or the status to
 * refuse it with. An empty body is {} when `empty_ok`. */
static int read_json(const struct reader *rd, const void *body, size_t len, bool empty_ok,
                     json_t **out)
{
    *out = NULL;
    /* Before anything is parsed: nesting and size cost the parser memory. */
    if (len > HR_GATEWAY_MAX_BODY)
        return refuse(rd, 413, "request body is %zu bytes, the limit is %d", len,
                      HR_GATEWAY_MAX_BODY);
    if (len == 0) {
        if (!empty_ok)
            return refuse(rd, 400, "request body is empty, expected a JSON object");
        *out = json_object();
        return *out ? 0 : refuse(rd, 500, "out of memory");
    }
    /* Without JSON_ALLOW_NUL jansson refuses a \u0000 in any string: a C
     * string would read shorter than the JSON one. A duplicate key would let
     * two readers of one body see two different requests. */
    json_error_t e;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
    if (!j)
        return refuse(rd, 400, "invalid JSON at line %d, column %d: %s", e.line, e.column, e.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return refuse(rd, 400, "request body must be a JSON object");
    }
    *out = j;
    return 0;
}

/* The characters of string `v`, or NULL when `v` is not a string or holds a
 * \u0000 (read_json refuses those already; this keeps it so should its flags
 * change). */
static const char *text_of(json_t *v)
{
    const char *s = json_string_value(v);
    return s && strlen(s) == json_string_length(v) ? s : NULL;
}

/* Copies string field `key` of `o` into dst[cap]. Returns 0 (also when it is
 * absent or null and not required; then dst is ""), or 400: missing and
 * required, not a string, or with the message of rule `bad` when it is cap
 * or more bytes long or holds a \u0000. */
static int get_str(struct reader *rd, json_t *o, const char *key, bool required, char *dst,
                   size_t cap, int bad)
{
    json_t *v = json_object_get(o, key);
    char msg[64];
    dst[0] = '\0';
    if (!v || json_is_null(v)) {
        if (!required)
            return 0;
        snprintf(msg, sizeof(msg), "missing field '%s'", key);
        return issue(rd, key, "invalid_type", msg);
    }
    if (!json_is_string(v)) {
        snprintf(msg, sizeof(msg), "field '%s' must be a string", key);
        return issue(rd, key, "invalid_type", msg);
    }
    const char *s = text_of(v);
    size_t n = json_string_length(v);
    if (!s || n >= cap)
        return refuse_rule_at(rd, bad, key);
    memcpy(dst, s, n + 1);
    return 0;
}

/* The "status" field: absent (when not required) or "" is HR_STATUS_NONE,
 * which hr_request_check turns into idle for a heartbeat and refuses for a
 * status update. Anything but a status of HR_STATUSES is 400. */
static int get_status(struct reader *rd, json_t *o, bool required, enum hr_status *out)
{
    char s[16];
    int code = get_str(rd, o, "status", required, s, sizeof(s), HR_E_STATUS);
    *out = HR_STATUS_NONE;
    if (code != 0 || !s[0])
        return code;
    *out = hr_status_parse(s, strlen(s));
    return *out == HR_STATUS_NONE ? refuse_rule(rd, HR_E_STATUS) : 0;
}

/* Integer field `key` of `o` into *dst, when it is there (and not null):
 * *given says whether it was. 0, or 400 for anything but an integral number
 * from `min` to HR_CAPACITY_MAX (with the message of rule `bad`). */
static int get_slots_field(struct reader *rd, json_t *o, const char *key, uint32_t min,
                           uint32_t *dst, bool *given, int bad)
{
    json_t *v = json_object_get(o, key);
    char msg[HR_BODY_ERR_MAX];
    *given = false;
    if (!v || json_is_null(v))
        return 0;
    double d = json_number_value(v);
    if (!json_is_number(v)) {
        snprintf(msg, sizeof(msg), "field '%s' must be an integer", key);
        return issue(rd, key, "invalid_type", msg);
    }
    if (d < min || d > HR_CAPACITY_MAX) {
        hr_body_rule_message(rd->rules, bad, msg, sizeof(msg));
        return issue(rd, key, d < min ? "too_small" : "too_big", msg);
    }
    if (d != (double)(uint32_t)d) {
        snprintf(msg, sizeof(msg), "field '%s' must be an integer", key);
        return issue(rd, key, "invalid_type", msg);
    }
    *dst = (uint32_t)d;
    *given = true;
    return 0;
}

/* The rules (hr_request_problems): every one broken, as the issue of its
 * field (a field already refused keeps its first issue). */
static int check(struct reader *rd, struct hr_request *r)
{
    int errs[8];
    size_t n = hr_request_problems(r, rd->rules, errs, 8);
    for (size_t i = 0; i < n && i < 8; i++)
        refuse_rule(rd, errs[i]);
    return n ? 400 : 0;
}

/* A heartbeat or a status update: every field of its type, then the rules;
 * each bad field is an issue. */
static int read_request(enum hr_msg_type type, const void *body, size_t len,
                        const struct hr_rules *rules, struct hr_request *out, char *err,
                        size_t errlen, struct hr_body_issues *issues)
{
    struct reader rd = {rules, err, errlen, issues, {0}};
    const bool hb = type == HR_MSG_HEARTBEAT;
    json_t *j;
    if (issues)
        issues->n = 0;
    int code = read_json(&rd, body, len, false, &j);
    if (code != 0)
        return code;
    /* seq 0: HTTP requests carry no sequence number and apply in arrival order. */
    memset(out, 0, sizeof(*out));
    out->type = type;
    int bad = get_str(&rd, j, "hostId", true, out->host_id, sizeof(out->host_id), HR_E_HOST_ID);
    if (hb) {
        bad |= get_str(&rd, j, "roomId", true, out->room_id, sizeof(out->room_id), HR_E_ROOM_ID);
        bad |= get_str(&rd, j, "region", false, out->region, sizeof(out->region), HR_E_REGION);
        bool cap_given;
        bad |= get_slots_field(&rd, j, "capacity", 1, &out->capacity, &cap_given, HR_E_CAPACITY);
        bad |= get_slots_field(&rd, j, "availableSlots", 0, &out->available_slots,
                               &out->slots_given, HR_E_SLOTS);
    }
    bad |= get_status(&rd, j, !hb, &out->status);
    bad |= check(&rd, out);
    json_decref(j);
    return bad ? 400 : 0;
}

int hr_body_heartbeat(const void *body, size_t len, const struct hr_rules *rules,
                      struct hr_request *out, char *err, size_t errlen,
                      struct hr_body_issues *issues)
{
    return read_request(HR_MSG_HEARTBEAT, body, len, rules, out, err, errlen, issues);
}

int hr_body_status(const void *body, size_t len, const struct hr_rules *rules,
                   struct hr_request *out, char *err, size_t errlen, struct hr_body_issues *issues)
{
    return read_request(HR_MSG_STATUS, body, len, rules, out, err, errlen, issues);
}

/* Adds a region to an ordered list once. */
static void add_region(struct hr_claim_query *q, const char *name)
{
    for (size_t i = 0; i < q->nregions; i++)
        if (strcmp(q->regions[i], name) == 0)
            return;
    q->regions[q->nregions++] = name;
}

/* Adds region name[0..len) (checked: hr_rules_region_ok) to the find's
 * list: the configured name's storage in list mode, a copy in the body's
 * in any-region mode. */
static void add_named(const struct hr_rules *rules, struct hr_find_body *out, const char *name,
                      size_t len)
{
    if (!rules->any) {
        add_region(&out->query, rules->regions[hr_rules_find_region(rules, name, len)]);
        return;
    }
    for (size_t i = 0; i < out->query.nregions; i++)
        if (strlen(out->query.regions[i]) == len && memcmp(out->query.regions[i], name, len) == 0)
            return;
    if (out->query.nregions == HR_REGIONS_MAX)
        return;
    char *slot = out->names[out->query.nregions];
    memcpy(slot, name, len);
    slot[len] = '\0';
    out->query.regions[out->query.nregions++] = slot;
}

/* The "regions" array, in order, after what `out` holds: 0 or 400. Only
 * valid names get in and each once (in any-region mode, HR_REGIONS_MAX at
 * most: the rest are left out), so the list never outgrows its array. */
static int get_regions(struct reader *rd, json_t *o, struct hr_find_body *out)
{
    json_t *list = json_object_get(o, "regions"), *v;
    size_t k;
    if (!list || json_is_null(list))
        return 0;
    if (!json_is_array(list))
        return issue(rd, "regions", "invalid_type",
                     "field 'regions' must be an array of region names");
    json_array_foreach(list, k, v)
    {
        /* text_of: a name with a \u0000 inside must not match the part
         * before it. */
        const char *name = text_of(v);
        if (!name || !hr_rules_region_ok(rd->rules, name, strlen(name))) {
            char msg[HR_BODY_ERR_MAX];
            size_t n = (size_t)snprintf(msg, sizeof(msg), "regions[%zu]: ", k);
            if (n < sizeof(msg))
                hr_body_rule_message(rd->rules, HR_E_REGION, msg + n, sizeof(msg) - n);
            return issue(rd, "regions", "invalid_enum_value", msg);
        }
        add_named(rd->rules, out, name, strlen(name));
    }
    return 0;
}

int hr_body_find(const void *body, size_t len, const struct hr_rules *rules,
                 struct hr_find_body *out, char *err, size_t errlen, struct hr_body_issues *issues)
{
    struct reader rd = {rules, err, errlen, issues, {0}};
    if (issues)
        issues->n = 0;
    struct hr_claim_query *q = &out->query;
    char region[HR_REGION_MAX + 1], host[HR_ID_MAX + 1];
    json_t *j;
    memset(out, 0, sizeof(*out));
    int code = read_json(&rd, body, len, true, &j);
    if (code != 0)
        return code;
    /* Every field read, each bad one an issue of its own. */
    int bad = get_str(&rd, j, "region", false, region, sizeof(region), HR_E_REGION);
    bad |= get_str(&rd, j, "hostId", false, host, sizeof(host), HR_E_HOST_ID);
    if (region[0] && !hr_rules_region_ok(rules, region, strlen(region)))
        bad |= refuse_rule(&rd, HR_E_REGION);
    else if (region[0])
        add_named(rules, out, region, strlen(region));
    bad |= get_regions(&rd, j, out);
    if (host[0] && !hr_id_canon(host, strlen(host), out->host_id))
        bad |= refuse_rule(&rd, HR_E_HOST_ID);
    if (bad) {
        code = 400;
        goto out;
    }
    if (host[0]) {
        q->host_id = out->host_id;
    } else if (q->nregions == 0) {
        /* Any region: the default one first, then the others as configured
         * (in any-region mode, as the registry knows them: the caller's). */
        add_region(q, rules->regions[rules->default_region]);
        for (size_t i = 0; i < rules->nregions; i++)
            add_region(q, rules->regions[i]);
        out->any_other = rules->any;
    }
out:
    json_decref(j);
    return code;
}
