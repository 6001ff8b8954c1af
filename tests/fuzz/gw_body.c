#include "gw_body.h"

#include "fuzz.h"
#include "gateway.h" /* HR_GATEWAY_MAX_BODY: the real limit, not a copy */

#include <stdio.h>
#include <string.h>

/* Mirrors read_json() of gateway/gateway.c. */
json_t *gw_read_json(const uint8_t *body, size_t len, bool empty_ok)
{
    if (len > HR_GATEWAY_MAX_BODY)
        return NULL; /* 413 */
    if (len == 0)
        return empty_ok ? json_object() : NULL;
    json_error_t e;
    json_t *j = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &e);
    if (!j) {
        /* The gateway puts jansson's message in its answer: it must be a
         * terminated string whatever the input. */
        char msg[512];
        snprintf(msg, sizeof(msg), "invalid JSON at line %d, column %d: %s", e.line, e.column,
                 e.text);
        CHECK(strnlen(e.text, sizeof(e.text)) < sizeof(e.text));
        return NULL; /* 400 */
    }
    if (!json_is_object(j)) {
        json_decref(j);
        return NULL; /* 400 */
    }
    return j;
}

/* Mirrors get_str() of gateway/gateway.c. */
int gw_get_str(json_t *o, const char *key, bool required, char *dst, size_t cap)
{
    json_t *v = json_object_get(o, key);
    dst[0] = '\0';
    if (!v || json_is_null(v))
        return required ? -1 : 0;
    if (!json_is_string(v))
        return -1;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n >= cap || strlen(s) != n) /* too long, or a \u0000 inside */
        return -1;
    memcpy(dst, s, n + 1);
    return 0;
}

/* Mirrors get_status() of gateway/gateway.c. */
int gw_get_status(json_t *o, bool required, enum hr_status *out)
{
    char s[8];
    if (gw_get_str(o, "status", required, s, sizeof(s)) != 0)
        return -1;
    *out = HR_STATUS_NONE;
    if (!s[0])
        return 0;
    *out = hr_status_parse(s, strlen(s));
    if (*out == HR_STATUS_NONE)
        return -1;
    return 0;
}
