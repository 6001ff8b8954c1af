/* The rules of the registry, written once: what a host request is, what makes
 * it valid, and the defaults it takes. The wire codec (wire.h) and the HTTP
 * gateway both fill a struct hr_request and hand it to hr_request_check();
 * the store (store.h) only ever sees checked requests. No I/O here. */
#ifndef HR_REQUEST_H
#define HR_REQUEST_H

#include "id.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HR_REGION_MAX 64   /* a region name, in characters (the original's id rule) */
#define HR_REGIONS_MAX 256 /* regions at most: configured, or known in any-region mode */

enum hr_msg_type {
    HR_MSG_HEARTBEAT = 0x01,
    HR_MSG_STATUS = 0x02,
    HR_MSG_LEAVE = 0x03,
    HR_MSG_ACK = 0x81,
};

/* The statuses a host may have: X(NAME, number, "text"). The numbers are
 * the protobuf Status values (proto/hostreg.proto), the texts what JSON and
 * Redis hold; the Lua scripts get the same table (lib/store/script.h). Adding a
 * status is one line here. */
#define HR_STATUSES(X)                                                                             \
    X(IDLE, 1, "idle")                                                                             \
    X(BUSY, 2, "busy")                                                                             \
    X(ALLOCATED, 3, "allocated") /* reserved by the host's own orchestration: never matched */

#define HR_STATUS_ENUM_(name, num, text) HR_STATUS_##name = num,
enum hr_status { HR_STATUS_NONE = 0, HR_STATUSES(HR_STATUS_ENUM_) };
#undef HR_STATUS_ENUM_
#define HR_STATUS_ONE_(name, num, text) +1
enum { HR_NSTATUSES = 0 HR_STATUSES(HR_STATUS_ONE_) };
#undef HR_STATUS_ONE_

/* The outcome of a request, as the ack carries it (same numbers as the
 * protobuf Result enum). */
enum hr_result {
    HR_RESULT_NONE = 0,
    HR_RESULT_OK = 1,
    HR_RESULT_DUPLICATE = 2,
    HR_RESULT_UNKNOWN_HOST = 3,
    HR_RESULT_INVALID = 4,
    HR_RESULT_RETRY_LATER = 5,
    HR_RESULT_UNAUTHORIZED = 6,
};

/* seq 0 means "unordered": the request is applied whatever came before and
 * leaves the stored sequence alone (the HTTP gateway's requests carry none). */
struct hr_request {
    enum hr_msg_type type;
    uint64_t seq;
    char host_id[HR_ID_MAX + 1];    /* after check: a UUID is in lower-case canonical form */
    char room_id[HR_ID_MAX + 1];    /* heartbeat only */
    char region[HR_REGION_MAX + 1]; /* heartbeat only; after check: never empty */
    enum hr_status status;          /* heartbeat (optional) and status update */
    /* Heartbeat only. capacity: 0 (not sent) means 1; available_slots, when
     * slots_given, the host's free slots (0..capacity; after check: always
     * given, capacity when it was not). */
    uint32_t capacity;
    uint32_t available_slots;
    bool slots_given;
};

#define HR_CAPACITY_MAX 65535u /* slots of one host */

struct hr_ack {
    uint64_t seq;
    enum hr_result result;
    uint32_t ttl;      /* 0: not sent */
    uint32_t interval; /* 0: not sent */
    uint32_t reason;   /* an enum hr_err, 0: not sent */
};

/* The configured rules. Filled once at start-up, read-only afterwards. */
struct hr_rules {
    char regions[HR_REGIONS_MAX][HR_REGION_MAX + 1];
    size_t nregions;
    size_t default_region; /* index into regions */
    /* Any-region mode (--regions '*'): any name of 1-HR_REGION_MAX characters
     * of the id set is a region; `regions` then holds the default only, and
     * the store admits new names up to its cap (hr_store_config.max_regions). */
    bool any;
};

/* Fills `r` with the contract's defaults: regions us-east-1, us-west-1,
 * eu-central, local; default region local. */
void hr_rules_default(struct hr_rules *r);

/* Replaces the region list with a comma-separated one ("a,b,c") and makes
 * `dflt` the default (which must be in it), or with "*", any-region mode
 * (`dflt` any region name). Returns HR_OK, or HR_E_REGION with a message in
 * err and `r` unchanged. */
int hr_rules_set_regions(struct hr_rules *r, const char *list, const char *dflt, char *err,
                         size_t errlen);

/* The index of the region named by name[0..len) in `r`, or -1. */
int hr_rules_find_region(const struct hr_rules *r, const char *name, size_t len);

/* Whether name[0..len) is a region a request may name: a configured one, or
 * in any-region mode any 1-HR_REGION_MAX characters of the id set. */
bool hr_rules_region_ok(const struct hr_rules *r, const char *name, size_t len);

/* Every configured region's name, in order, as pointers into `r` (valid
 * while `r` is): the list the store's calls take. Returns how many. */
size_t hr_rules_names(const struct hr_rules *r, const char *out[HR_REGIONS_MAX]);

/* Validates and normalises `req` in place: lower-cases a UUID hostId, fills the
 * default region, makes a heartbeat's missing status idle, its missing
 * capacity 1 and its missing available slots its capacity. Returns HR_OK or the
 * hr_err of the first rule broken (and then `req` may be half-normalised). */
int hr_request_check(struct hr_request *req, const struct hr_rules *rules);
/* The same rules, every one broken (one per field at most, in the order
 * above) into errs[0..max): returns how many (more than max when they did
 * not fit). hr_request_check reports the first of them. */
size_t hr_request_problems(struct hr_request *req, const struct hr_rules *rules, int *errs,
                           size_t max);

/* Status text <-> enum (HR_STATUSES). hr_status_parse returns HR_STATUS_NONE
 * for anything else; hr_status_name says "none" for a value not in the table. */
enum hr_status hr_status_parse(const char *s, size_t len);
const char *hr_status_name(enum hr_status s);
/* The name of row i of HR_STATUSES (i < HR_NSTATUSES): for whatever goes
 * through the statuses in table order (counts per status, a list of them). */
const char *hr_status_name_at(size_t i);
/* True for a status of the table (not HR_STATUS_NONE). */
bool hr_status_valid(enum hr_status s);

const char *hr_result_name(enum hr_result r);
const char *hr_msg_type_name(enum hr_msg_type t);

#endif
