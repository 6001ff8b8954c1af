/* Fuzz harness for the body of POST /api/host/heartbeat: the bytes go through
 * the gateway's JSON reading (gw_body.c, mirroring gateway.c), the fields are
 * taken as h_heartbeat takes them, and the request goes to hr_request_check
 * under the default rules and under a full set of 32 regions. Checks:
 *
 *   - each field copied is the JSON string, terminated, within its array;
 *   - a request the rules accept is valid and canonical (common.h);
 *   - the gateway and the daemon agree: the same request sent as a datagram
 *     (encoded before the check) gets the same verdict and the same result.
 *
 * Any inconsistency aborts. */
#include "fuzz.h"

#include "common.h"
#include "err.h"
#include "gw_body.h"
#include "request.h"
#include "wire.h"

#include <string.h>

/* Mirrors h_heartbeat() of gateway/gateway.c up to its submit() call: 0 when
 * the gateway would submit `r`, -1 where it answers 400. */
static int take_heartbeat(json_t *j, struct hr_request *r)
{
    /* seq 0: HTTP requests carry no sequence number and apply in arrival order. */
    memset(r, 0, sizeof(*r));
    r->type = HR_MSG_HEARTBEAT;
    r->seq = 0;
    if (gw_get_str(j, "hostId", true, r->host_id, sizeof(r->host_id)) == 0 &&
        gw_get_str(j, "roomId", true, r->room_id, sizeof(r->room_id)) == 0 &&
        gw_get_str(j, "region", false, r->region, sizeof(r->region)) == 0 &&
        gw_get_status(j, false, &r->status) == 0)
        return 0;
    return -1;
}

/* `field` of the body is `got`: the same string, or absent/null and "". */
static void check_field(json_t *j, const char *field, const char *got)
{
    json_t *v = json_object_get(j, field);
    if (!v || json_is_null(v))
        CHECK(got[0] == '\0');
    else
        CHECK(json_is_string(v) && strcmp(json_string_value(v), got) == 0);
}

/* What hr_request_check says of `r` here, and what it says of the same
 * request after a trip over the wire, must be the same. */
static void check_rules(const struct hr_request *taken, const struct hr_rules *rules)
{
    struct hr_request r = *taken;
    int rc = hr_request_check(&r, rules);
    CHECK(rc == HR_OK || rc == HR_E_HOST_ID || rc == HR_E_ROOM_ID || rc == HR_E_REGION ||
          rc == HR_E_STATUS);
    if (rc == HR_OK)
        fuzz_check_accepted(&r, rules);

    uint8_t buf[HR_WIRE_MAX];
    struct hr_frame f;
    fuzz_round_trip(taken, false, buf, sizeof(buf), &f);
    CHECK(hr_request_check(&f.req, rules) == rc);
    if (rc == HR_OK)
        CHECK(fuzz_same_request(&f.req, &r, true));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j = gw_read_json(data, size, false);
    if (!j)
        return 0;
    CHECK(json_is_object(j));
    struct hr_request r;
    if (take_heartbeat(j, &r) == 0) {
        CHECK(fuzz_terminated(r.host_id, sizeof(r.host_id)));
        CHECK(fuzz_terminated(r.room_id, sizeof(r.room_id)));
        CHECK(fuzz_terminated(r.region, sizeof(r.region)));
        CHECK(r.status == HR_STATUS_NONE || r.status == HR_STATUS_IDLE ||
              r.status == HR_STATUS_BUSY);
        check_field(j, "hostId", r.host_id);
        check_field(j, "roomId", r.room_id);
        check_field(j, "region", r.region);
        check_rules(&r, fuzz_default_rules());
        check_rules(&r, fuzz_full_rules());
    }
    json_decref(j);
    return 0;
}
