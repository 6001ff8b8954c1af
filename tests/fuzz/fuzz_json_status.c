/* Fuzz harness for the body of POST /api/host/status: the bytes go to
 * hr_body_status (gateway/body.c, what the gateway itself calls) under the
 * default rules, and its verdict is checked against the status update the
 * JSON asks for (common.h):
 *
 *   - 413 exactly over the size limit; a body that is not a JSON object the
 *     contract takes, without a hostId and a status as strings, or with a
 *     status other than "idle", "busy" or "", is refused 400 with a reason;
 *   - otherwise the rules decide ("" is no status, which they refuse; a
 *     hostId is refused exactly when it breaks the id rule): a refusal names
 *     the rule broken, and the daemon gives the same request sent as a
 *     datagram the same verdict;
 *   - an accepted update is the fields of the body, checked: valid and
 *     canonical, a status of idle or busy, and no room or region.
 *
 * Any inconsistency aborts. */
#include "fuzz.h"

#include "common.h"
#include "err.h"
#include "request.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct hr_rules *rules = fuzz_default_rules();
    json_t *j = fuzz_json_object(data, size, false);
    struct hr_request want, got;
    const struct hr_request *w = j && fuzz_json_request(j, HR_MSG_STATUS, &want) ? &want : NULL;
    int code = fuzz_check_request_body(HR_MSG_STATUS, data, size, rules, w, &got);
    if (w) {
        struct hr_request c = want;
        int rc = hr_request_check(&c, rules);
        CHECK(rc == HR_OK || rc == HR_E_HOST_ID || rc == HR_E_STATUS);
        CHECK((rc == HR_E_HOST_ID) == !hr_id_valid(want.host_id, strlen(want.host_id)));
    }
    if (code == 0)
        CHECK(got.room_id[0] == '\0' && got.region[0] == '\0');
    json_decref(j);
    return 0;
}
