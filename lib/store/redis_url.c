#include "redis_url.h"

#include "err.h"
#include "parse.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Strict whole-string number in [min, max] (no sign, no space): 0 or -1. */
static int strict_num(const char *s, size_t len, long min, long max, int *out)
{
    long v = 0;
    if (len == 0 || len > 6)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

/* `url` as it may be shown (errors, logs): the password, if any, as "***". */
static const char *shown(const char *url, char *buf, size_t cap)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *end = p + strcspn(p, "/"), *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    const char *colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
    if (!colon) {
        snprintf(buf, cap, "%s", url);
        return buf;
    }
    snprintf(buf, cap, "%.*s***%s", (int)(colon + 1 - url), url, at);
    return buf;
}

/* s[0..len) percent-decoded into out[cap] (RFC 3986: a password may hold
 * any byte as %XX, and must for ':', '@' and '/'). -1 for a malformed %, a
 * decoded NUL, or no room. */
static int percent_decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = hr_hex_digit(s[i + 1]), lo = hr_hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0 || (c = hi << 4 | lo) == 0)
                return -1;
            i += 2;
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

/* host[:port] or [v6addr][:port] in p[0..end) into host[cap] and *port
 * (left alone when the text has none). -1 with the reason in err. */
static int parse_hostport(const char *p, const char *end, char *host, size_t cap, int *port,
                          const char *show, char *err, size_t errlen)
{
    const char *colon = NULL;
    memset(host, 0, cap);
    if (*p == '[') { /* [::1]:6379 */
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb || (rb + 1 < end && rb[1] != ':')) {
            snprintf(err, errlen, "bad IPv6 address in '%s' (want [addr]:port)", show);
            return -1;
        }
        if ((size_t)(rb - p - 1) >= cap)
            goto badhost;
        memcpy(host, p + 1, (size_t)(rb - p - 1));
        colon = rb + 1 < end ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        const char *he = colon ? colon : end;
        if ((size_t)(he - p) >= cap)
            goto badhost;
        memcpy(host, p, (size_t)(he - p));
    }
    if (host[0] == '\0')
        goto badhost;
    if (colon && strict_num(colon + 1, (size_t)(end - colon - 1), 1, 65535, port)) {
        snprintf(err, errlen, "bad port in '%s' (1-65535)", show);
        return -1;
    }
    return 0;
badhost:
    snprintf(err, errlen, "bad or missing host in '%s'", show);
    return -1;
}

/* A list of nodes p[0..end) ("h1:p1,h2,h3:p3", `what` they are) into
 * list[0..max), a node without a port on `defport`; the count in *n. -1
 * with the reason in err for an empty item, a bad one, or more than `max`. */
static int parse_hosts(const char *p, const char *end, struct hr_redis_hostport *list, int max,
                       int defport, int *n, const char *what, const char *show, char *err,
                       size_t errlen)
{
    *n = 0;
    /* Each item between commas, an empty one included (then refused). */
    for (bool more = p < end; more;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        if (*n == max) {
            snprintf(err, errlen, "more than %d %s in '%s'", max, what, show);
            return -1;
        }
        list[*n].port = defport;
        if (parse_hostport(p, e, list[*n].host, sizeof(list[0].host), &list[*n].port, show, err,
                           errlen) != 0)
            return -1;
        (*n)++;
        p = comma ? comma + 1 : end;
        more = comma != NULL;
    }
    return 0;
}

/* The sentinels' list p[0..end) ("h1:p1,h2:p2") and the path after it
 * ("/master[/db]") of a redis-sentinel:// URL into `a`. */
static int parse_sentinel(const char *p, const char *end, struct hr_redis_addr *a, const char *show,
                          char *err, size_t errlen)
{
    if (parse_hosts(p, end, a->sentinel, HR_SENTINELS_MAX, 26379, &a->nsentinels, "sentinels", show,
                    err, errlen) != 0)
        return -1;
    const char *name = *end == '/' ? end + 1 : end;
    size_t len = strcspn(name, "/");
    bool ok = len > 0 && len < sizeof(a->master);
    for (size_t i = 0; ok && i < len; i++)
        ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
             (name[i] >= '0' && name[i] <= '9') || strchr("._-", name[i]);
    if (!ok || a->nsentinels == 0) {
        snprintf(err, errlen,
                 "bad Sentinel URL '%s' (want redis-sentinel://host:port[,host:port...]/"
                 "mastername[/db], the name 1-63 of [A-Za-z0-9._-])",
                 show);
        return -1;
    }
    memcpy(a->master, name, len);
    const char *db = name[len] == '/' ? name + len + 1 : NULL;
    if (db && strict_num(db, strlen(db), 0, 15, &a->db)) {
        snprintf(err, errlen, "bad database number in '%s' (0-15)", show);
        return -1;
    }
    return 0;
}

int hr_redis_url_parse(const char *url, struct hr_redis_addr *out, char *err, size_t errlen)
{
    struct hr_redis_addr a;
    char show[HR_REDIS_URL_MAX + 16];
    memset(&a, 0, sizeof(a));
    a.port = 6379;
    url = url ? url : "";
    shown(url, show, sizeof(show));
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7;
        const char *q = strchr(p, '?');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == 0 || p[0] != '/' || len >= sizeof(a.path)) {
            snprintf(err, errlen, "bad unix socket path in '%s' (want unix:///path)", show);
            return HR_E_CONFIG;
        }
        memcpy(a.path, p, len);
        if (q && (strncmp(q, "?db=", 4) != 0 || strict_num(q + 4, strlen(q + 4), 0, 15, &a.db))) {
            snprintf(err, errlen, "bad '%s' in '%s' (want ?db=0..15)", q, show);
            return HR_E_CONFIG;
        }
        *out = a;
        return HR_OK;
    }
    bool sentinel = strncmp(url, "redis-sentinel://", 17) == 0;
    if (!sentinel && strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen,
                 "'%s' is not a Redis URL (redis://host:port[/db], redis://host:port,host:port... "
                 "for a Redis Cluster, unix:///path or "
                 "redis-sentinel://host:port[,host:port...]/mastername)",
                 show);
        return HR_E_CONFIG;
    }
    const char *p = url + (sentinel ? 17 : 8);
    const char *slash = strchr(p, '/');
    const char *end = slash ? slash : p + strlen(p); /* end of the authority */
    /* user:pass@ comes before the path: the last '@' of the authority. */
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = colon ? (size_t)(colon - p) : 0;
        const char *pw = colon ? colon + 1 : p;
        size_t plen = (size_t)(at - pw);
        if (percent_decode(p, ulen, a.user, sizeof(a.user)) != 0 ||
            percent_decode(pw, plen, a.pass, sizeof(a.pass)) != 0) {
            snprintf(err, errlen,
                     "bad Redis user or password in '%s' (too long, or a %% not followed by two "
                     "hex digits)",
                     show);
            return HR_E_CONFIG;
        }
        p = at + 1;
    }
    if (sentinel) {
        if (parse_sentinel(p, end, &a, show, err, errlen) != 0)
            return HR_E_CONFIG;
        a.host[0] = '\0'; /* the master's, once a sentinel names it */
        a.port = 0;
        *out = a;
        return HR_OK;
    }
    if (memchr(p, ',', (size_t)(end - p))) {
        /* Several nodes: a Redis Cluster's seeds. */
        if (parse_hosts(p, end, a.seed, HR_SEEDS_MAX, 6379, &a.nseeds, "cluster nodes", show, err,
                        errlen) != 0)
            return HR_E_CONFIG;
        memcpy(a.host, a.seed[0].host, sizeof(a.host));
        a.port = a.seed[0].port;
    } else if (parse_hostport(p, end, a.host, sizeof(a.host), &a.port, show, err, errlen) != 0) {
        return HR_E_CONFIG;
    }
    if (slash && slash[1] && strict_num(slash + 1, strlen(slash + 1), 0, 15, &a.db)) {
        snprintf(err, errlen, "bad database number in '%s' (0-15)", show);
        return HR_E_CONFIG;
    }
    if (a.nseeds && a.db) {
        snprintf(err, errlen,
                 "'%s' names several nodes, a Redis Cluster, which has database 0 only", show);
        return HR_E_CONFIG;
    }
    *out = a;
    return HR_OK;
}
