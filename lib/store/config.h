/* Configuration of the hostreg programs: one table of options per program,
 * applied in order defaults, then HOSTREG_* environment, then command-line
 * flags, into one struct that is read-only afterwards. --help is generated
 * from the same table, so it always shows the real defaults. A bad value
 * exits 2 with the reason. Also the strict parsers the setters share. */
#ifndef HR_CONFIG_H
#define HR_CONFIG_H

#include "parse.h"
#include "request.h"
#include "store.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Sets one field of the program's config from text; returns 0, or -1 with a
 * reason in err. */
typedef int hr_opt_set(void *cfg, const char *value, char *err, size_t errlen);

struct hr_opt {
    const char *name; /* long flag without "--"; env is HOSTREG_<NAME> with '-' -> '_' */
    int short_name;   /* 0 for none */
    const char *arg;  /* metavar ("SECONDS"); NULL for a flag without value */
    const char *dflt; /* applied first; NULL for none */
    const char *help;
    hr_opt_set *set; /* a flag without value gets "1" */
    const char *env; /* the environment variable, when not the derived one */
};

/* Another name for an option's setting in the environment (hostreg-gateway:
 * the original service's PORT, REDIS_URL, ...), read only when neither the
 * flag nor the option's own variable is given; `set` NULL: the option's
 * setter, else this one (a value that reads differently). */
struct hr_opt_alias {
    const char *option; /* the option's name */
    const char *env;
    hr_opt_set *set;
};

/* Aliases for the next hr_opts_parse (a table ended by a zeroed entry, or
 * NULL for none); --help lists them beside the options' own variables. */
void hr_opts_aliases(const struct hr_opt_alias *aliases);

/* Parses the environment and argv[1..argc) against `opts` (ended by a zeroed
 * entry) into cfg. Prints usage and exits 0 on --help; prints the reason and
 * exits 2 on a bad flag or value. Returns the index of the first non-option
 * argument. `usage` is the synopsis line, `about` one paragraph. */
int hr_opts_parse(const struct hr_opt *opts, void *cfg, int argc, char **argv, const char *usage,
                  const char *about);

/* "0.1.0" and, when built from a git checkout, " (git <revision>)": what
 * --version prints after the program's name, and hostreg_build_info says. */
const char *hr_version(void);
const char *hr_version_number(void);
const char *hr_version_revision(void); /* "" when not built from a checkout */

/* Where the last hr_opts_parse took option `name` from: "--name",
 * "environment NAME" or "default" ("" for an option it does not know): for
 * the start-up log, which says it without the value. */
const char *hr_opts_source(const struct hr_opt *opts, const char *name);

/* The setters' shared bodies: a whole number in [lo, hi] into *out (else
 * "want <what>lo-hi"; `what` is "" or ends in ", "); a string that fits in
 * cap bytes with its NUL. 0, or -1 with the reason in err. */
int hr_opt_u32(const char *v, uint32_t lo, uint32_t hi, const char *what, uint32_t *out, char *err,
               size_t errlen);
int hr_opt_string(const char *v, char *out, size_t cap, char *err, size_t errlen);
/* A status name of HR_STATUSES (else "want idle or busy", from the table). */
int hr_opt_status(const char *v, enum hr_status *out, char *err, size_t errlen);

/* Setters for one field of a program's config struct `type`, defined in
 * one line each: a number, a string array, a status, a flag (set to 1). */
#define HR_OPT_U32(fn, type, field, lo, hi, what)                                                  \
    static int fn(void *c, const char *v, char *err, size_t errlen)                                \
    {                                                                                              \
        return hr_opt_u32(v, lo, hi, what, &((type *)c)->field, err, errlen);                      \
    }
#define HR_OPT_STRING(fn, type, field)                                                             \
    static int fn(void *c, const char *v, char *err, size_t errlen)                                \
    {                                                                                              \
        return hr_opt_string(v, ((type *)c)->field, sizeof(((type *)c)->field), err, errlen);      \
    }
#define HR_OPT_STATUS(fn, type, field)                                                             \
    static int fn(void *c, const char *v, char *err, size_t errlen)                                \
    {                                                                                              \
        return hr_opt_status(v, &((type *)c)->field, err, errlen);                                 \
    }
#define HR_OPT_FLAG(fn, type, field)                                                               \
    static int fn(void *c, const char *v, char *err, size_t errlen)                                \
    {                                                                                              \
        (void)v, (void)err, (void)errlen;                                                          \
        ((type *)c)->field = 1;                                                                    \
        return 0;                                                                                  \
    }

/* hr_opts_parse for a program that takes no arguments but options: one
 * left over is reported and the program exits 2. */
void hr_opts_parse_only(const struct hr_opt *opts, void *cfg, int argc, char **argv,
                        const char *usage, const char *about);

/* The settings the daemon and the gateway share, and their options. */
struct hr_common {
    struct hr_store_config store;
    struct hr_rules rules;
    char regions_list[HR_REGIONS_MAX * (HR_REGION_MAX + 1)];
    char default_region[HR_REGION_MAX + 1];
    uint32_t ttl_s;
    uint32_t interval_s; /* heartbeat interval advised to hosts */
};

/* Option entries for struct hr_common; a program's table embeds them with
 * HR_COMMON_OPTS(offsetof(struct prog_config, common)). */
int hr_common_set_redis(void *c, const char *v, char *err, size_t errlen);
int hr_common_set_ttl(void *c, const char *v, char *err, size_t errlen);
int hr_common_set_interval(void *c, const char *v, char *err, size_t errlen);
int hr_common_set_timeout(void *c, const char *v, char *err, size_t errlen);
int hr_common_set_latency_budget(void *c, const char *v, char *err, size_t errlen);
int hr_common_set_prefix(void *c, const char *v, char *err, size_t errlen);
int hr_common_set_regions(void *c, const char *v, char *err, size_t errlen);
int hr_common_set_default_region(void *c, const char *v, char *err, size_t errlen);
int hr_common_set_max_regions(void *c, const char *v, char *err, size_t errlen);
int hr_common_set_log_level(void *c, const char *v, char *err, size_t errlen);
int hr_common_set_log_format(void *c, const char *v, char *err, size_t errlen);
int hr_common_set_max_inflight(void *c, const char *v, char *err, size_t errlen);
int hr_common_set_max_hosts(void *c, const char *v, char *err, size_t errlen);
int hr_common_set_redis_wait(void *c, const char *v, char *err, size_t errlen);
int hr_common_set_redis_wait_timeout(void *c, const char *v, char *err, size_t errlen);
int hr_common_set_buckets(void *c, const char *v, char *err, size_t errlen);

/* The struct hr_common must be the first member of the program's config. */
/* clang-format off */
#define HR_COMMON_OPTS                                                                             \
    {"redis", 'r', "URL", "redis://127.0.0.1:6379",                                               \
     "Redis: redis://[user:pass@]host:port[/db], unix:///path[?db=N], a Redis Cluster "            \
     "(a node's redis:// URL, or redis://[user:pass@]host:port,host:port...), or "                 \
     "redis-sentinel://[user:pass@]host:port[,host:port...]/master[/db]", hr_common_set_redis,    \
     NULL},                                                                                        \
    {"redis-wait", 0, "N", "0",                                                                    \
     "a write counts as done (and is acked) only once N replicas have it (Redis WAIT)",          \
     hr_common_set_redis_wait, NULL},                                                              \
    {"redis-wait-timeout", 0, "MS", "250",                                                         \
     "how long a WAIT may take (it holds every command behind it on the connection); a write "  \
     "not replicated by then is answered retry-later",                                            \
     hr_common_set_redis_wait_timeout, NULL},                                                      \
    {"ttl", 0, "SECONDS", "30", "lifetime of an entry without a heartbeat", hr_common_set_ttl,    \
     NULL},                                                                                        \
    {"interval", 0, "SECONDS", "0",                                                                \
     "heartbeat interval advised to hosts in acks; 0: two thirds of the TTL",                     \
     hr_common_set_interval, NULL},                                                                \
    {"redis-timeout", 0, "MS", "5000",                                                             \
     "a Redis connection with commands in flight that answers nothing at all for this long is "   \
     "reset (a slow answer is not a dead connection)", hr_common_set_timeout, NULL},              \
    {"redis-latency-budget", 0, "MS", "100",                                                       \
     "while Redis's oldest unanswered command is older than this, new requests get retry-later "  \
     "at once (0: no bound)", hr_common_set_latency_budget, NULL},                                 \
    {"max-inflight", 0, "N", "65536",                                                              \
     "Redis commands in flight at most; beyond it requests get retry-later",                      \
     hr_common_set_max_inflight, NULL},                                                            \
    {"max-hosts", 0, "N", "10000000",                                                              \
     "live hosts at most (0: no cap); a new host beyond it is told to retry later",              \
     hr_common_set_max_hosts, NULL},                                                               \
    {"prefix", 0, "PREFIX", "hr:", "prefix of every Redis key", hr_common_set_prefix, NULL},      \
    {"buckets", 0, "N", "1024",                                                                    \
     "buckets of a new registry (a power of two, 1-16384; about hosts/64 for the most it will "   \
     "hold); a registry keeps the count it was created with",                                    \
     hr_common_set_buckets, NULL},                                                                 \
    {"regions", 0, "LIST", "us-east-1,us-west-1,eu-central,local",                                \
     "comma-separated list of valid regions, or '*': any name of 1-64 characters of "             \
     "[A-Za-z0-9._:-], as the original service (up to --max-regions of them)",                    \
     hr_common_set_regions, NULL},                                                                 \
    {"max-regions", 0, "N", "256",                                                                 \
     "with --regions '*': regions the registry may know (1-256); a heartbeat naming one more "    \
     "is refused, too_many_regions", hr_common_set_max_regions, NULL},                             \
    {"default-region", 0, "REGION", "local", "region of a heartbeat that names none",             \
     hr_common_set_default_region, NULL},                                                          \
    {"log-level", 'l', "LEVEL", "info", "error, warn, info or debug", hr_common_set_log_level,    \
     NULL},                                                                                        \
    {"log-format", 0, "FORMAT", "text",                                                            \
     "text, or json: one object a line, {\"time\",\"level\",\"msg\"}, for log shippers",          \
     hr_common_set_log_format, NULL}
/* clang-format on */

/* Checks what single options cannot (the default region is in the list) and
 * derives the rest. 0, or -1 with a reason. */
int hr_common_finish(struct hr_common *c, char *err, size_t errlen);

#endif
