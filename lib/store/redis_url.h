/* Where Redis is: the URL of --redis / HOSTREG_REDIS, parsed. Strings in,
 * a struct out; no I/O. */
#ifndef HR_REDIS_URL_H
#define HR_REDIS_URL_H

#include <stddef.h>

#define HR_REDIS_URL_MAX 256

#define HR_SENTINELS_MAX 8
#define HR_SEEDS_MAX 8

struct hr_redis_hostport {
    char host[256];
    int port;
};

/* redis://[[user]:pass@]host[:port][/db], unix:///path[?db=N],
 * redis://[[user]:pass@]host[:port],host[:port][,...]: several nodes of one
 * Redis Cluster (its seeds: any of them gives the slot map; database 0 only),
 * or redis-sentinel://[[user]:pass@]host[:port][,host[:port]...]/master[/db]:
 * the sentinels to ask for the master named `master` (user and password are
 * the data nodes'; `host` and `port` are then the master's, filled in when
 * it is resolved). A single redis:// node may be a cluster node too: the
 * programs find out at connect (conn.h). */
struct hr_redis_addr {
    char host[256]; /* empty for a unix socket */
    int port;
    char path[108]; /* unix socket path */
    int db;
    char user[64];
    char pass[128];
    char master[64]; /* the Sentinel master name; empty: no Sentinel */
    int nsentinels;
    struct hr_redis_hostport sentinel[HR_SENTINELS_MAX];
    /* A cluster's seeds (2 or more; `host` and `port` are the first's), 0
     * for a URL of one node. */
    int nseeds;
    struct hr_redis_hostport seed[HR_SEEDS_MAX];
};

/* Parses a Redis URL. Returns HR_OK, or HR_E_CONFIG with the reason in err
 * (and `out` unchanged). */
int hr_redis_url_parse(const char *url, struct hr_redis_addr *out, char *err, size_t errlen);

#endif
