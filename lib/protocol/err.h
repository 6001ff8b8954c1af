/* hostreg error codes: one closed list for the whole project.
 * The numbers travel on the wire (the ack's `reason`), so they never change;
 * new codes take new numbers. */
#ifndef HR_ERR_H
#define HR_ERR_H

enum hr_err {
    HR_OK = 0,

    /* Frame errors: the datagram is not a hostreg frame we can read.
     * It is counted and dropped without an answer. */
    HR_E_TRUNCATED = 1, /* shorter than its header or its declared parts */
    HR_E_MAGIC = 2,     /* does not start with "HR" */
    HR_E_VERSION = 3,   /* a protocol version this build does not speak */
    HR_E_TYPE = 4,      /* unknown message type byte */
    HR_E_FLAGS = 5,     /* reserved flag bits set */
    HR_E_TOO_BIG = 6,   /* larger than HR_WIRE_MAX */
    HR_E_DECODE = 7,    /* the protobuf payload does not unpack */
    HR_E_AUTH = 8,      /* authentication tag missing or wrong */

    /* Request errors: a well-formed frame whose fields break a rule.
     * Answered with RESULT_INVALID and this code as the reason. */
    HR_E_HOST_ID = 16,      /* missing, too long, or a character outside [A-Za-z0-9._:-] */
    HR_E_ROOM_ID = 17,      /* same rule as the hostId */
    HR_E_REGION = 18,       /* not in the configured list */
    HR_E_STATUS = 19,       /* not idle, busy or allocated */
    HR_E_CAPACITY = 20,     /* capacity above HR_CAPACITY_MAX (a JSON one below 1) */
    HR_E_SLOTS = 21,        /* available slots above the capacity */
    HR_E_REGIONS_FULL = 22, /* a new region, and the registry knows --max-regions already */

    /* Registry errors: the request was fine, the store could not take it now. */
    HR_E_UNAVAILABLE = 32, /* Redis not connected, timed out, or answered an error */
    HR_E_OVERLOAD = 33,    /* too much work in flight */
    HR_E_FULL = 34,        /* the registry holds the most hosts it may (--max-hosts) */
    HR_E_SOURCE_FULL =
        35, /* the source address speaks for the most hosts it may (--source-hosts) */

    /* Local errors of setup and tools. */
    HR_E_CONFIG = 48, /* a bad option value */
    HR_E_SYSTEM = 49, /* a system call failed; errno says why */
    HR_E_NOMEM = 50,
    HR_E_BUFFER = 51, /* the caller's buffer is too small */
};

/* A short English description; never NULL, also for codes it does not know. */
const char *hr_strerror(int err);

/* A stable lower-case token for logs, metrics and JSON ("bad_magic"). */
const char *hr_errname(int err);

#endif
