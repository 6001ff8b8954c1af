/* The request bodies of hostreg-gateway's JSON endpoints, read into the
 * structs the UDP daemon fills and checked by the same rules: bytes in, a
 * checked request or the HTTP status and message to refuse it with out. No
 * evhttp and no I/O, so the unit tests and fuzzers call exactly what the
 * gateway calls. Owns nothing: what it fills points only into the caller's
 * struct and the caller's rules. */
#ifndef HR_BODY_H
#define HR_BODY_H

#include "request.h"
#include "store.h"

#include <stddef.h>

/* The largest request body: 100 KiB, as the original service takes (its
 * clients send < 1 KiB; a larger body gets a JSON 413). */
#define HR_GATEWAY_MAX_BODY 102400

/* The size of the message buffers: the gateway sends at most this minus one
 * bytes of any error message (a region error naming 32 long regions is cut). */
#define HR_BODY_ERR_MAX 512

/* A body's bad fields, one issue each (the original's validation answer:
 * {"error":"Validation failed","issues":[{"path","message","code"}]}), in
 * the order of the fields. `code` is the original's kind of failure:
 * "invalid_type" (missing, or not a string), "invalid_string" (characters
 * or length), "invalid_enum_value" (not a configured region, not a
 * status). */
#define HR_BODY_ISSUES_MAX 8
struct hr_body_issue {
    char path[16];
    char code[24];
    char message[HR_BODY_ERR_MAX];
};
struct hr_body_issues {
    size_t n;
    struct hr_body_issue at[HR_BODY_ISSUES_MAX];
};

/* A POST /api/match/find body, read: the claim query for hr_store_claim.
 * query.regions point into the rules; query.host_id is NULL (any idle host)
 * or points at host_id below, so use the struct where it was filled, not a
 * copy. query.lease_ms is 0: the caller sets it. */
struct hr_find_body {
    struct hr_claim_query query;
    char host_id[HR_ID_MAX + 1]; /* canonical (a UUID in lower case), or "" */
    /* Any-region mode: the regions named, which query.regions point to (in
     * list mode they point into the rules); `any_other` when the body named
     * none: query has the default region, and the caller adds the others the
     * registry knows (hr_store_regions). */
    char names[HR_REGIONS_MAX][HR_REGION_MAX + 1];
    bool any_other;
};

/* Each of these reads one body of `len` bytes (at most HR_GATEWAY_MAX_BODY,
 * a JSON object, no duplicate keys, no \u0000 in a string) and returns 0 with
 * `out` filled, or the HTTP status to answer with (400; 413 over the size
 * limit; 500 out of memory) and the message in err; then `out` is not to be
 * used. A 400 for bad fields also fills `issues` (when not NULL): every bad
 * field of a heartbeat or a status update, the first bad field of a find;
 * err is the first issue's message. Fields other than those named are
 * ignored, and a null field is an absent one. */

/* {"hostId", "roomId", "region"?, "status"?}: `out` is the heartbeat as
 * hr_request_check leaves it (seq 0: HTTP requests apply in arrival order;
 * the default region and status idle filled in; a UUID in lower case). */
int hr_body_heartbeat(const void *body, size_t len, const struct hr_rules *rules,
                      struct hr_request *out, char *err, size_t errlen,
                      struct hr_body_issues *issues);

/* {"hostId", "status"}: `out` is the checked status update (seq 0). */
int hr_body_status(const void *body, size_t len, const struct hr_rules *rules,
                   struct hr_request *out, char *err, size_t errlen, struct hr_body_issues *issues);

/* {"region"?, "regions"?, "hostId"?}; an empty body is {}. The regions to
 * search are "region" then the "regions" in order, each once; with neither
 * and no hostId, every configured region, the default one first. */
int hr_body_find(const void *body, size_t len, const struct hr_rules *rules,
                 struct hr_find_body *out, char *err, size_t errlen, struct hr_body_issues *issues);

/* The message for a rule broken (an hr_err): hr_strerror's, and for
 * HR_E_REGION the configured regions after it: "... (us-east-1, local)". */
void hr_body_rule_message(const struct hr_rules *rules, int rule, char *buf, size_t len);

#endif
