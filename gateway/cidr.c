#include "cidr.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* text[0..len) as an address into `c` (family and bytes). */
static bool address(const char *text, size_t len, struct hr_cidr *c)
{
    char buf[INET6_ADDRSTRLEN];
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, text, len);
    buf[len] = '\0';
    memset(c, 0, sizeof(*c));
    if (inet_pton(AF_INET, buf, c->addr) == 1) {
        c->family = AF_INET;
        c->bits = 32;
        return true;
    }
    if (inet_pton(AF_INET6, buf, c->addr) == 1) {
        c->family = AF_INET6;
        c->bits = 128;
        return true;
    }
    return false;
}

int hr_cidrs_parse(const char *list, struct hr_cidrs *out, char *err, size_t errlen)
{
    struct hr_cidrs r = {.n = 0};
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ","), alen = len;
        const char *slash = memchr(p, '/', len);
        if (slash)
            alen = (size_t)(slash - p);
        struct hr_cidr c;
        if (r.n == HR_CIDRS_MAX || !address(p, alen, &c)) {
            snprintf(err, errlen, "'%.*s' is not an address or range (at most %d of them)",
                     (int)(len > 60 ? 60 : len), p, HR_CIDRS_MAX);
            return -1;
        }
        if (slash) {
            /* The prefix length: 1-3 digits, at most the address's bits. */
            const char *b = slash + 1;
            size_t blen = len - alen - 1;
            unsigned v = 0;
            bool ok = blen >= 1 && blen <= 3;
            for (size_t i = 0; ok && i < blen; i++) {
                ok = b[i] >= '0' && b[i] <= '9';
                v = v * 10 + (unsigned)(b[i] - '0');
            }
            if (!ok || v > c.bits) {
                snprintf(err, errlen, "bad prefix length in '%.*s'", (int)(len > 60 ? 60 : len), p);
                return -1;
            }
            c.bits = v;
        }
        r.c[r.n++] = c;
        p += len;
        if (*p == ',')
            p++;
    }
    *out = r;
    return 0;
}

static bool in_range(const struct hr_cidr *range, const struct hr_cidr *a)
{
    if (range->family != a->family)
        return false;
    unsigned full = range->bits / 8, rest = range->bits % 8;
    if (memcmp(range->addr, a->addr, full) != 0)
        return false;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return rest == 0 || (range->addr[full] & mask) == (a->addr[full] & mask);
}

static bool match(const struct hr_cidrs *c, const char *text, size_t len)
{
    struct hr_cidr a;
    if (!address(text, len, &a))
        return false;
    for (size_t i = 0; i < c->n; i++)
        if (in_range(&c->c[i], &a))
            return true;
    return false;
}

bool hr_cidrs_match(const struct hr_cidrs *c, const char *text)
{
    return match(c, text, strlen(text));
}

bool hr_cidrs_client(const struct hr_cidrs *c, const char *peer, const char *xff, char *out,
                     size_t cap)
{
    snprintf(out, cap, "%s", peer);
    if (!xff || !hr_cidrs_match(c, peer))
        return true;
    /* From the right: each entry a trusted proxy appended; the first that is
     * not itself a trusted proxy is the client. */
    const char *end = xff + strlen(xff);
    while (end > xff) {
        const char *start = end;
        while (start > xff && start[-1] != ',')
            start--;
        const char *a = start, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        struct hr_cidr probe;
        if (!address(a, (size_t)(b - a), &probe))
            return false;
        if (!match(c, a, (size_t)(b - a))) {
            snprintf(out, cap, "%.*s", (int)(b - a), a);
            return true;
        }
        end = start > xff ? start - 1 : xff;
    }
    /* Only trusted proxies named: the client is not known; the peer stands
     * for it. */
    return true;
}
