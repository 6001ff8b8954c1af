/* Fuzz harness for the body of POST /api/host/heartbeat: the bytes go to
 * hr_body_heartbeat (gateway/body.c, what the gateway itself calls) under the
 * default rules and under a full set of 32 regions, and its verdict is
 * checked against the heartbeat the JSON asks for (common.h):
 *
 *   - 413 exactly over the size limit; a body that is not a JSON object the
 *     contract takes, or whose fields no request can hold, is refused 400
 *     with a reason;
 *   - otherwise the rules decide: a refusal names the rule broken, and the
 *     daemon gives the same request sent as a datagram the same verdict;
 *   - an accepted heartbeat is the fields of the body, checked: valid,
 *     canonical, and unchanged by another trip through the rules or the wire.
 *
 * Any inconsistency aborts. */
#include "fuzz.h"

#include "common.h"
#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j = fuzz_json_object(data, size, false);
    struct hr_request want, got;
    const struct hr_request *w = j && fuzz_json_request(j, HR_MSG_HEARTBEAT, &want) ? &want : NULL;
    fuzz_check_request_body(HR_MSG_HEARTBEAT, data, size, fuzz_default_rules(), w, &got);
    fuzz_check_request_body(HR_MSG_HEARTBEAT, data, size, fuzz_full_rules(), w, &got);
    json_decref(j);
    return 0;
}
