#include "parse.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int hr_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)s[0]))
        return -1; /* strtoull would accept " 1", "+1" and "-1" */
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int hr_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    uint64_t v;
    if (hr_parse_u64(s, &v) != 0 || v < min || v > max)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int hr_parse_hostport(const char *s, const char *dflt_host, struct sockaddr_storage *out,
                      socklen_t *outlen, char *err, size_t errlen)
{
    char host[256];
    const char *port;
    const char *colon = strrchr(s, ':');
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof(host)) {
            snprintf(err, errlen, "bad address '%s' (want [v6addr]:port)", s);
            return -1;
        }
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = '\0';
        port = rb + 2;
    } else if (colon) {
        if ((size_t)(colon - s) >= sizeof(host)) {
            snprintf(err, errlen, "host name too long in '%s'", s);
            return -1;
        }
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
    } else {
        snprintf(host, sizeof(host), "%s", dflt_host);
        port = s;
    }
    uint32_t p;
    if (hr_parse_u32(port, 1, 65535, &p) != 0) {
        snprintf(err, errlen, "bad port in '%s' (1-65535)", s);
        return -1;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_DGRAM;
    int rc = getaddrinfo(host[0] ? host : dflt_host, port, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "cannot resolve '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *outlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int hr_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
