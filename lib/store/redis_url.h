/* Where Redis is: the URL of --redis / HOSTREG_REDIS, parsed. Strings in,
 * a struct out; no I/O. */
#ifndef HR_REDIS_URL_H
#define HR_REDIS_URL_H

#include <stddef.h>

#define HR_REDIS_URL_MAX 256

/* redis://[[user]:pass@]host[:port][/db] or unix:///path[?db=N]. */
struct hr_redis_addr {
    char host[256]; /* empty for a unix socket */
    int port;
    char path[108]; /* unix socket path */
    int db;
    char user[64];
    char pass[128];
};

/* Parses a Redis URL. Returns HR_OK, or HR_E_CONFIG with the reason in err
 * (and `out` unchanged). */
int hr_redis_url_parse(const char *url, struct hr_redis_addr *out, char *err, size_t errlen);

#endif
