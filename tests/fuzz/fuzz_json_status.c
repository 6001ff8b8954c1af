/* Fuzz harness for the body of POST /api/host/status: the bytes go through
 * the gateway's JSON reading (gw_body.c, mirroring gateway.c), the fields are
 * taken as h_status takes them, and the request goes to hr_request_check
 * under the default rules. Checks:
 *
 *   - the hostId copied is the JSON string, terminated, within its array, and
 *     the status is none (an empty string), idle or busy;
 *   - a request the rules accept is valid and canonical (common.h), which for
 *     a status update means a status of idle or busy;
 *   - the gateway and the daemon agree: the same request sent as a datagram
 *     gets the same verdict and the same result.
 *
 * Any inconsistency aborts. */
#include "fuzz.h"

#include "common.h"
#include "err.h"
#include "gw_body.h"
#include "request.h"
#include "wire.h"

#include <string.h>

/* Mirrors h_status() of gateway/gateway.c up to its submit() call: 0 when the
 * gateway would submit `r`, -1 where it answers 400. */
static int take_status(json_t *j, struct hr_request *r)
{
    memset(r, 0, sizeof(*r));
    r->type = HR_MSG_STATUS;
    r->seq = 0;
    if (gw_get_str(j, "hostId", true, r->host_id, sizeof(r->host_id)) == 0 &&
        gw_get_status(j, true, &r->status) == 0)
        return 0;
    return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j = gw_read_json(data, size, false);
    if (!j)
        return 0;
    CHECK(json_is_object(j));
    struct hr_request r;
    if (take_status(j, &r) == 0) {
        json_t *host = json_object_get(j, "hostId"), *status = json_object_get(j, "status");
        CHECK(fuzz_terminated(r.host_id, sizeof(r.host_id)));
        CHECK(json_is_string(host) && strcmp(json_string_value(host), r.host_id) == 0);
        /* Required: present as a string; "" reads as none and the rules refuse it. */
        CHECK(json_is_string(status));
        CHECK(r.status ==
              (json_string_length(status) == 0
                   ? HR_STATUS_NONE
                   : hr_status_parse(json_string_value(status), json_string_length(status))));
        CHECK(r.room_id[0] == '\0' && r.region[0] == '\0');

        const struct hr_rules *rules = fuzz_default_rules();
        struct hr_request c = r;
        int rc = hr_request_check(&c, rules);
        CHECK(rc == HR_OK || rc == HR_E_HOST_ID || rc == HR_E_STATUS);
        CHECK((rc == HR_E_HOST_ID) == !hr_id_valid(r.host_id, strlen(r.host_id)));
        if (rc == HR_OK)
            fuzz_check_accepted(&c, rules);

        uint8_t buf[HR_WIRE_MAX];
        struct hr_frame f;
        fuzz_round_trip(&r, false, buf, sizeof(buf), &f);
        CHECK(hr_request_check(&f.req, rules) == rc);
        if (rc == HR_OK)
            CHECK(fuzz_same_request(&f.req, &c, true));
    }
    json_decref(j);
    return 0;
}
