#include "err.h"

#include <stddef.h>

static const struct {
    int code;
    const char *name;
    const char *text;
} errs[] = {
    {HR_OK, "ok", "success"},
    {HR_E_TRUNCATED, "truncated", "datagram truncated"},
    {HR_E_MAGIC, "bad_magic", "bad magic (not a hostreg frame)"},
    {HR_E_VERSION, "bad_version", "unsupported protocol version"},
    {HR_E_TYPE, "bad_type", "unknown message type"},
    {HR_E_FLAGS, "bad_flags", "reserved flag bits set"},
    {HR_E_TOO_BIG, "too_big", "datagram larger than the protocol allows"},
    {HR_E_DECODE, "bad_payload", "protobuf payload does not decode"},
    {HR_E_AUTH, "bad_auth", "authentication failed"},
    {HR_E_HOST_ID, "bad_host_id", "hostId must be a UUID or 1-64 characters of [A-Za-z0-9._:-]"},
    {HR_E_ROOM_ID, "bad_room_id", "roomId must be 1-64 characters of [A-Za-z0-9._:-]"},
    {HR_E_REGION, "bad_region", "region is not one of the configured regions"},
    {HR_E_STATUS, "bad_status", "status must be idle, busy or allocated"},
    {HR_E_CAPACITY, "bad_capacity", "capacity must be an integer from 1 to 65535"},
    {HR_E_SLOTS, "bad_available_slots", "availableSlots must be an integer from 0 to the capacity"},
    {HR_E_REGIONS_FULL, "too_many_regions",
     "a region the registry has not seen, and it holds the most regions it may (--max-regions)"},
    {HR_E_UNAVAILABLE, "unavailable", "registry unavailable, retry later"},
    {HR_E_OVERLOAD, "overload", "registry overloaded, retry later"},
    {HR_E_FULL, "full", "registry full: it holds the most hosts it may"},
    {HR_E_SOURCE_FULL, "source_full",
     "this source address already speaks for the most hosts it may"},
    {HR_E_CONFIG, "config", "bad configuration value"},
    {HR_E_SYSTEM, "system", "system call failed"},
    {HR_E_NOMEM, "nomem", "out of memory"},
    {HR_E_BUFFER, "buffer", "buffer too small"},
};

static int find(int err)
{
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
        if (errs[i].code == err)
            return (int)i;
    return -1;
}

const char *hr_strerror(int err)
{
    int i = find(err);
    return i < 0 ? "unknown error" : errs[i].text;
}

const char *hr_errname(int err)
{
    int i = find(err);
    return i < 0 ? "unknown" : errs[i].name;
}
