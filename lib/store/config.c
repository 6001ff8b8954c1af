#include "config.h"

#include "err.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int hr_opt_u32(const char *v, uint32_t lo, uint32_t hi, const char *what, uint32_t *out, char *err,
               size_t errlen)
{
    if (hr_parse_u32(v, lo, hi, out) == 0)
        return 0;
    snprintf(err, errlen, "want %s%" PRIu32 "-%" PRIu32, what, lo, hi);
    return -1;
}

int hr_opt_string(const char *v, char *out, size_t cap, char *err, size_t errlen)
{
    size_t n = strlen(v);
    if (n >= cap) {
        snprintf(err, errlen, "longer than %zu characters", cap - 1);
        return -1;
    }
    memcpy(out, v, n + 1);
    return 0;
}

int hr_opt_status(const char *v, enum hr_status *out, char *err, size_t errlen)
{
    *out = hr_status_parse(v, strlen(v));
    if (*out != HR_STATUS_NONE)
        return 0;
    size_t o = (size_t)snprintf(err, errlen, "want");
    for (size_t i = 0; i < HR_NSTATUSES && o < errlen; i++)
        o += (size_t)snprintf(err + o, errlen - o, "%s%s",
                              i == 0                 ? " "
                              : i + 1 < HR_NSTATUSES ? ", "
                                                     : " or ",
                              hr_status_name_at(i));
    return -1;
}

/* Where each option of the last parse came from (hr_opts_source). */
#define OPTS_MAX 64
static char sources[OPTS_MAX][80];
static const struct hr_opt_alias *aliases;

void hr_opts_aliases(const struct hr_opt_alias *a)
{
    aliases = a;
}

static const struct hr_opt_alias *alias_of(const struct hr_opt *o)
{
    for (const struct hr_opt_alias *a = aliases; a && a->option; a++)
        if (strcmp(a->option, o->name) == 0)
            return a;
    return NULL;
}

#include "version.h"

const char *hr_version(void)
{
    return HR_REVISION[0] ? HR_VERSION " (git " HR_REVISION ")" : HR_VERSION;
}

const char *hr_version_number(void)
{
    return HR_VERSION;
}

const char *hr_version_revision(void)
{
    return HR_REVISION;
}

static void env_name(const struct hr_opt *opt, char *out, size_t outlen)
{
    const char *name = opt->name;
    if (opt->env) {
        snprintf(out, outlen, "%s", opt->env);
        return;
    }
    size_t o = (size_t)snprintf(out, outlen, "HOSTREG_");
    for (size_t i = 0; name[i] && o + 1 < outlen; i++)
        out[o++] = name[i] == '-' ? '_' : (char)toupper((unsigned char)name[i]);
    out[o] = '\0';
}

static void usage(const struct hr_opt *opts, const char *synopsis, const char *about, FILE *f)
{
    fprintf(f, "usage: %s\n\n%s\n\noptions (each also read from the environment variable shown):\n",
            synopsis, about);
    for (const struct hr_opt *o = opts; o->name; o++) {
        char left[64], env[64];
        snprintf(left, sizeof(left), "%s%c%s--%s%s%s", o->short_name ? "-" : "",
                 o->short_name ? o->short_name : ' ', o->short_name ? ", " : "  ", o->name,
                 o->arg ? " " : "", o->arg ? o->arg : "");
        env_name(o, env, sizeof(env));
        const struct hr_opt_alias *a = alias_of(o);
        fprintf(f, "  %-28s %s\n  %-28s [%s%s%s%s%s]\n", left, o->help, "", env, a ? " or " : "",
                a ? a->env : "", o->dflt && o->dflt[0] ? ", default " : "",
                o->dflt && o->dflt[0] ? o->dflt : "");
    }
    fprintf(f, "  -h, --help                   this text\n");
    fprintf(f,
            "      --version                the version, and the git revision it was built from\n");
}

static void apply_with(hr_opt_set *set, void *cfg, const char *value, const char *from,
                       size_t index)
{
    char err[256] = "";
    if (index < OPTS_MAX)
        snprintf(sources[index], sizeof(sources[index]), "%s", from);
    if (set(cfg, value, err, sizeof(err)) != 0) {
        /* The value itself is not shown: it may be a secret (--host-secret)
         * or hold one (a password in --redis); the setter's reason says
         * what was wrong, showing what it safely can. */
        fprintf(stderr, "error: %s: %s\n", from, err[0] ? err : "invalid value");
        exit(2);
    }
}

static void apply(const struct hr_opt *opts, const struct hr_opt *o, void *cfg, const char *value,
                  const char *from)
{
    apply_with(o->set, cfg, value, from, (size_t)(o - opts));
}

const char *hr_opts_source(const struct hr_opt *opts, const char *name)
{
    for (const struct hr_opt *o = opts; o->name && o - opts < OPTS_MAX; o++)
        if (strcmp(o->name, name) == 0)
            return sources[o - opts];
    return "";
}

int hr_opts_parse(const struct hr_opt *opts, void *cfg, int argc, char **argv, const char *synopsis,
                  const char *about)
{
    struct option lo[64];
    char so[160] = "+h"; /* '+': stop at the first non-option (subcommands) */
    size_t n = 0, sl = 2;

    memset(sources, 0, sizeof(sources));
    for (const struct hr_opt *o = opts; o->name; o++)
        if (o->dflt)
            apply(opts, o, cfg, o->dflt, "default");
    for (const struct hr_opt *o = opts; o->name; o++) {
        char env[64], from[80];
        env_name(o, env, sizeof(env));
        const char *v = getenv(env);
        if (v) {
            snprintf(from, sizeof(from), "environment %s", env);
            apply(opts, o, cfg, v, from);
        } else {
            /* Another name (the original deployment's), below hostreg's own. */
            const struct hr_opt_alias *a = alias_of(o);
            if (a && (v = getenv(a->env)) != NULL) {
                snprintf(from, sizeof(from), "environment %s", a->env);
                apply_with(a->set ? a->set : o->set, cfg, v, from, (size_t)(o - opts));
            }
        }
    }
    for (const struct hr_opt *o = opts; o->name && n < 61; o++, n++) {
        lo[n] = (struct option){o->name, o->arg ? required_argument : no_argument, NULL,
                                o->short_name ? o->short_name : 1000 + (int)n};
        if (o->short_name && sl + 3 < sizeof(so)) {
            so[sl++] = (char)o->short_name;
            if (o->arg)
                so[sl++] = ':';
        }
    }
    lo[n++] = (struct option){"help", no_argument, NULL, 'h'};
    lo[n++] = (struct option){"version", no_argument, NULL, 'V'};
    lo[n] = (struct option){NULL, 0, NULL, 0};
    so[sl] = '\0';

    /* 0, not 1: glibc only forgets the previous parse's state at 0. */
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, so, lo, NULL)) != -1) {
        if (c == 'h') {
            usage(opts, synopsis, about, stdout);
            exit(0);
        }
        if (c == 'V') {
            const char *slash = strrchr(argv[0], '/');
            printf("%s %s\n", slash ? slash + 1 : argv[0], hr_version());
            exit(0);
        }
        if (c == '?') {
            fprintf(stderr, "try '%s --help'\n", argv[0]);
            exit(2);
        }
        for (const struct hr_opt *o = opts; o->name; o++) {
            if ((o->short_name && c == o->short_name) || c == 1000 + (int)(o - opts)) {
                char from[80];
                snprintf(from, sizeof(from), "--%s", o->name);
                apply(opts, o, cfg, o->arg ? optarg : "1", from);
                break;
            }
        }
    }
    return optind;
}

void hr_opts_parse_only(const struct hr_opt *opts, void *cfg, int argc, char **argv,
                        const char *usage, const char *about)
{
    int idx = hr_opts_parse(opts, cfg, argc, argv, usage, about);
    if (idx != argc) {
        fprintf(stderr, "error: unexpected argument '%s'\n", argv[idx]);
        exit(2);
    }
}

/* --- struct hr_common setters (the config struct starts with it) --- */

int hr_common_set_redis(void *c, const char *v, char *err, size_t errlen)
{
    struct hr_common *h = c;
    return hr_redis_url_parse(v, &h->store.redis, err, errlen) == HR_OK ? 0 : -1;
}

int hr_common_set_ttl(void *c, const char *v, char *err, size_t errlen)
{
    /* A day is far beyond any sane TTL; the bound keeps ms in 32 bits. */
    return hr_opt_u32(v, 1, 86400, "whole seconds, ", &((struct hr_common *)c)->ttl_s, err, errlen);
}

int hr_common_set_interval(void *c, const char *v, char *err, size_t errlen)
{
    return hr_opt_u32(v, 0, 86400, "whole seconds, ", &((struct hr_common *)c)->interval_s, err,
                      errlen);
}

int hr_common_set_timeout(void *c, const char *v, char *err, size_t errlen)
{
    return hr_opt_u32(v, 10, 60000, "milliseconds, ", &((struct hr_common *)c)->store.timeout_ms,
                      err, errlen);
}

int hr_common_set_latency_budget(void *c, const char *v, char *err, size_t errlen)
{
    return hr_opt_u32(v, 0, 60000, "milliseconds, ", &((struct hr_common *)c)->store.budget_ms, err,
                      errlen);
}

int hr_common_set_max_inflight(void *c, const char *v, char *err, size_t errlen)
{
    return hr_opt_u32(v, 1, 10000000, "", &((struct hr_common *)c)->store.max_inflight, err,
                      errlen);
}

int hr_common_set_max_hosts(void *c, const char *v, char *err, size_t errlen)
{
    return hr_opt_u32(v, 0, 4000000000u, "a count (0: no cap), ",
                      &((struct hr_common *)c)->store.max_hosts, err, errlen);
}

int hr_common_set_redis_wait(void *c, const char *v, char *err, size_t errlen)
{
    return hr_opt_u32(v, 0, 16, "a number of replicas, ",
                      &((struct hr_common *)c)->store.wait_replicas, err, errlen);
}

int hr_common_set_redis_wait_timeout(void *c, const char *v, char *err, size_t errlen)
{
    return hr_opt_u32(v, 1, 60000, "milliseconds, ", &((struct hr_common *)c)->store.wait_ms, err,
                      errlen);
}

int hr_common_set_buckets(void *c, const char *v, char *err, size_t errlen)
{
    uint32_t *b = &((struct hr_common *)c)->store.buckets;
    if (hr_opt_u32(v, 1, 16384, "a power of two, ", b, err, errlen) != 0)
        return -1;
    if (*b & (*b - 1)) {
        snprintf(err, errlen, "want a power of two from 1 to 16384");
        return -1;
    }
    return 0;
}

int hr_common_set_prefix(void *c, const char *v, char *err, size_t errlen)
{
    struct hr_common *h = c;
    size_t len = strlen(v);
    if (len >= sizeof(h->store.prefix) || (len && !hr_id_valid(v, len))) {
        snprintf(err, errlen, "want at most %zu characters of [A-Za-z0-9._:-]",
                 sizeof(h->store.prefix) - 1);
        return -1;
    }
    memcpy(h->store.prefix, v, len + 1);
    return 0;
}

int hr_common_set_regions(void *c, const char *v, char *err, size_t errlen)
{
    struct hr_common *h = c;
    if (strlen(v) >= sizeof(h->regions_list)) {
        snprintf(err, errlen, "list too long");
        return -1;
    }
    /* Checked against the default region in hr_common_finish, once both are known. */
    struct hr_rules probe;
    char first[HR_REGION_MAX + 1];
    snprintf(first, sizeof(first), "%.*s", (int)strcspn(v, ","), v);
    if (strcmp(v, "*") != 0 && hr_rules_set_regions(&probe, v, first, err, errlen) != HR_OK)
        return -1;
    memcpy(h->regions_list, v, strlen(v) + 1);
    return 0;
}

int hr_common_set_max_regions(void *c, const char *v, char *err, size_t errlen)
{
    return hr_opt_u32(v, 1, HR_REGIONS_MAX, "", &((struct hr_common *)c)->store.max_regions, err,
                      errlen);
}

int hr_common_set_default_region(void *c, const char *v, char *err, size_t errlen)
{
    struct hr_common *h = c;
    if (strlen(v) >= sizeof(h->default_region) || !hr_id_valid(v, strlen(v))) {
        snprintf(err, errlen, "not a region name");
        return -1;
    }
    memcpy(h->default_region, v, strlen(v) + 1);
    return 0;
}

int hr_common_set_log_format(void *c, const char *v, char *err, size_t errlen)
{
    (void)c;
    if (strcmp(v, "text") != 0 && strcmp(v, "json") != 0) {
        snprintf(err, errlen, "want text or json");
        return -1;
    }
    hr_log_json = strcmp(v, "json") == 0;
    return 0;
}

int hr_common_set_log_level(void *c, const char *v, char *err, size_t errlen)
{
    (void)c;
    int l = hr_log_parse_level(v);
    if (l < 0) {
        snprintf(err, errlen, "want error, warn, info or debug");
        return -1;
    }
    hr_log_level = l;
    return 0;
}

int hr_common_finish(struct hr_common *c, char *err, size_t errlen)
{
    if (hr_rules_set_regions(&c->rules, c->regions_list, c->default_region, err, errlen) != HR_OK)
        return -1;
    c->store.ttl_ms = c->ttl_s * 1000;
    snprintf(c->store.regions, sizeof(c->store.regions), "%s", c->regions_list);
    c->store.any_region = c->rules.any;
    if (c->interval_s == 0)
        c->interval_s = c->ttl_s * 2 / 3 ? c->ttl_s * 2 / 3 : 1;
    /* Advising hosts to refresh no sooner than the entry expires makes every
     * host flap; the one exception is the derived 1 s for a 1 s TTL. */
    if (c->interval_s >= c->ttl_s && !(c->ttl_s == 1 && c->interval_s == 1)) {
        snprintf(err, errlen, "--interval %u must be shorter than --ttl %u", c->interval_s,
                 c->ttl_s);
        return -1;
    }
    return 0;
}
