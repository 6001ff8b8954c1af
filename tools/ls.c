#include "ls.h"

#include "cluster.h"
#include "config.h"
#include "err.h"
#include "layout.h"
#include "redis_sync.h"
#include "store.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ls_config {
    struct hr_common common; /* redis, prefix, regions */
    char region[HR_REGION_MAX + 1];
    enum hr_status status;
    uint32_t limit;
    int json;
};

HR_OPT_STRING(set_region, struct ls_config, region)

HR_OPT_STATUS(set_status, struct ls_config, status)

HR_OPT_U32(set_limit, struct ls_config, limit, 1u, 100000000u, "a count, ")

HR_OPT_FLAG(set_json, struct ls_config, json)

static const struct hr_opt options[] = {
    {"redis", 'r', "URL", "redis://127.0.0.1:6379", "the registry's Redis", hr_common_set_redis,
     NULL},
    {"prefix", 0, "PREFIX", "hr:", "the registry's key prefix", hr_common_set_prefix, NULL},
    {"regions", 0, "LIST", "us-east-1,us-west-1,eu-central,local",
     "the configured regions, or '*': those the registry has seen (--regions '*')",
     hr_common_set_regions, NULL},
    {"region", 'g', "REGION", NULL, "only this region", set_region, NULL},
    {"status", 'S', "STATUS", NULL, "only the hosts of one status (idle, busy or allocated)",
     set_status, NULL},
    {"limit", 'n', "N", "100000", "list at most N hosts (the totals count them all)", set_limit,
     NULL},
    {"json", 'j', NULL, NULL, "one JSON document: hosts and totals", set_json, NULL},
    {0},
};

/* Where ls reads: one Redis, or a Redis Cluster (`sc`: then a call per
 * bucket, each to the master of its bucket's slot). */
struct target {
    redisContext *c;
    struct hr_sync_cluster *sc;
    char err[256]; /* why the last call got no reply */
};

/* A script call: its reply (NULL: t->err says why). */
static redisReply *eval(struct target *t, enum hr_script_id id, const struct hr_script_args *a)
{
    if (!t->sc) {
        redisReply *r = hr_script_eval(t->c, id, a);
        if (!r)
            snprintf(t->err, sizeof(t->err), "%s", t->c->err ? t->c->errstr : "out of memory");
        return r;
    }
    size_t n = (size_t)a->nkeys + (size_t)a->argc + 3, len;
    const char **argv = malloc(n * sizeof(*argv));
    size_t *lens = malloc(n * sizeof(*lens));
    redisReply *r = NULL;
    char nkeys[16];
    if (!argv || !lens || a->failed || a->nkeys < 1) {
        snprintf(t->err, sizeof(t->err), "out of memory");
    } else {
        int argc = hr_script_command(id, a, argv, lens, nkeys);
        const char *key = hr_script_key_at(a, 0, &len);
        r = hr_sync_cluster_command(t->sc, hr_cluster_keyslot(key, len), argc, argv, lens, t->err,
                                    sizeof(t->err));
    }
    free(argv);
    free(lens);
    return r;
}

/* Any-region mode: the regions the registry knows ("<prefix>regions", a
 * sorted set: regions.lua), into out (an empty name after the last): 0, or
 * -1 with t->err. */
static int read_known(struct target *t, const char *prefix,
                      char out[HR_REGIONS_MAX][HR_REGION_MAX + 1])
{
    char key[64];
    int n = snprintf(key, sizeof(key), "%s" HR_SCRIPT_REGIONS_KEY, prefix);
    /* ZRANGEBYSCORE: a command the programs' ACL user has (docs/SECURITY.md). */
    const char *argv[] = {"ZRANGEBYSCORE", key, "-inf", "+inf"};
    redisReply *r = t->sc ? hr_sync_cluster_command(t->sc, hr_cluster_keyslot(key, (size_t)n), 4,
                                                    argv, NULL, t->err, sizeof(t->err))
                          : redisCommandArgv(t->c, 4, argv, NULL);
    if (!r) {
        if (!t->sc)
            snprintf(t->err, sizeof(t->err), "%s", t->c->errstr);
        return -1;
    }
    int rc = 0;
    if (r->type != REDIS_REPLY_ARRAY) {
        snprintf(t->err, sizeof(t->err), "cannot read %s: %s", key,
                 r->type == REDIS_REPLY_ERROR ? r->str : "not a sorted set");
        rc = -1;
    }
    size_t k = 0;
    for (size_t i = 0; rc == 0 && i < r->elements && k + 1 < HR_REGIONS_MAX; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING && r->element[i]->len <= HR_REGION_MAX)
            memcpy(out[k++], r->element[i]->str, r->element[i]->len + 1);
    out[k][0] = '\0';
    freeReplyObject(r);
    return rc;
}

/* The registry's layout, as hr_layout_read_sync reads it (1, 0 or -1). */
static int read_layout(struct target *t, const char *prefix, struct hr_layout *l, char *err,
                       size_t errlen)
{
    if (!t->sc)
        return hr_layout_read_sync(t->c, prefix, l, err, errlen);
    char key[64];
    int n = snprintf(key, sizeof(key), "%s" HR_LAYOUT_KEY, prefix);
    const char *argv[] = {"GET", key};
    redisReply *r = hr_sync_cluster_command(t->sc, hr_cluster_keyslot(key, (size_t)n), 2, argv,
                                            NULL, err, errlen);
    int rc = -1;
    if (!r) {
        /* err says why */
    } else if (r->type == REDIS_REPLY_NIL) {
        rc = 0;
    } else if (r->type != REDIS_REPLY_STRING) {
        snprintf(err, errlen, "cannot read %s: %s", key,
                 r->type == REDIS_REPLY_ERROR ? r->str : "not a string");
    } else if (hr_layout_parse(r->str, prefix, l) != 0) {
        snprintf(err, errlen,
                 "%s is '%.40s': not storage layout " HR_LAYOUT_VERSION ", which this build reads",
                 key, r->str);
    } else {
        rc = 1;
    }
    freeReplyObject(r);
    return rc;
}

int hr_cmd_ls(int argc, char **argv)
{
    struct ls_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    hr_opts_parse_only(options, &cfg, argc, argv, "hostreg ls [options]",
                       "Lists the live hosts of the registry, by region and status, with "
                       "the seconds each\nhas left, and totals per region and status. Reads "
                       "the same index the gateway uses\n(never an expired host).");
    char err[256];
    static struct hr_rules rules;
    char first[HR_REGION_MAX + 1];
    snprintf(first, sizeof(first), "%.*s", (int)strcspn(cfg.common.regions_list, ","),
             cfg.common.regions_list);
    bool any = strcmp(cfg.common.regions_list, "*") == 0;
    /* Any region: only names are checked here (the default is the
     * programs'); the regions are those the registry knows. */
    if (hr_rules_set_regions(&rules, cfg.common.regions_list, any ? "local" : first, err,
                             sizeof(err)) != HR_OK) {
        fprintf(stderr, "error: %s\n", err);
        return 2;
    }
    const char *regions[HR_REGIONS_MAX];
    size_t nregions = 0;
    for (size_t i = 0; i < rules.nregions; i++)
        if (!cfg.region[0] || strcmp(cfg.region, rules.regions[i]) == 0)
            regions[nregions++] = rules.regions[i];
    if (any) {
        if (cfg.region[0] && !hr_rules_region_ok(&rules, cfg.region, strlen(cfg.region))) {
            fprintf(stderr, "error: '%s' is not a region name\n", cfg.region);
            return 2;
        }
        regions[0] = cfg.region;
        nregions = cfg.region[0] ? 1 : 0;
    }
    if (nregions == 0 && !any) {
        fprintf(stderr, "error: region '%s' is not in --regions\n", cfg.region);
        return 2;
    }
    /* A cluster: several nodes in the URL, or a node that says it is one. */
    struct target t = {0};
    const struct hr_redis_addr *addr = &cfg.common.store.redis;
    if (!addr->nseeds &&
        !(t.c = hr_redis_connect_sync(&cfg.common.store.redis, 2000, err, sizeof(err)))) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    if ((addr->nseeds || (!addr->path[0] && !addr->master[0] && hr_redis_is_cluster_sync(t.c))) &&
        !(t.sc = hr_sync_cluster_connect(addr, 2000, err, sizeof(err)))) {
        fprintf(stderr, "error: %s\n", err);
        redisFree(t.c);
        return 1;
    }
    int rc = 1;
    /* Any region: those the registry knows (regions.lua). */
    static char known[HR_REGIONS_MAX][HR_REGION_MAX + 1];
    if (any && !cfg.region[0] && read_known(&t, cfg.common.store.prefix, known) < 0) {
        fprintf(stderr, "error: %s\n", t.err);
        hr_sync_cluster_free(t.sc);
        redisFree(t.c);
        return 1;
    }
    for (size_t i = 0; any && !cfg.region[0] && i < HR_REGIONS_MAX && known[i][0]; i++)
        regions[nregions++] = known[i];
    struct hr_list_query q = {.nregions = nregions, .status = cfg.status, .limit = cfg.limit};
    memcpy(q.regions, regions, nregions * sizeof(regions[0]));
    struct hr_layout lay;
    struct hr_host_info *listed = NULL;
    long nlisted = 0;
    unsigned long long counts[HR_NSTATUSES * HR_REGIONS_MAX] = {0};
    int found = read_layout(&t, cfg.common.store.prefix, &lay, err, sizeof(err));
    if (found < 0) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    /* Over every bucket, a few hundred a call (none: nothing registered); on
     * a cluster one a call, since a call's keys must be of one slot. */
    struct hr_script_args a = {0};
    uint32_t step = t.sc ? 1 : 256;
    for (uint32_t b0 = 0; found && b0 < lay.buckets; b0 += step) {
        uint32_t n = lay.buckets - b0 < step ? lay.buckets - b0 : step;
        hr_script_args_reset(&a);
        hr_script_list_args(&a, &lay, b0, n, &q);
        redisReply *list = eval(&t, HR_SCRIPT_LIST, &a);
        hr_script_args_reset(&a);
        hr_script_count_args(&a, &lay, b0, n, regions, nregions);
        redisReply *cnt = eval(&t, HR_SCRIPT_COUNT, &a);
        long got = hr_script_nlisted(list);
        bool ok = got >= 0 && cnt && cnt->type == REDIS_REPLY_ARRAY &&
                  cnt->elements == HR_NSTATUSES * nregions;
        struct hr_host_info *more =
            ok && got ? realloc(listed, (size_t)(nlisted + got) * sizeof(*listed)) : listed;
        if (!ok || (got && !more)) {
            fprintf(stderr, "error: Redis: %s\n",
                    list && list->type == REDIS_REPLY_ERROR ? list->str
                    : cnt && cnt->type == REDIS_REPLY_ERROR ? cnt->str
                    : !list || !cnt                         ? t.err
                                                            : "unexpected reply");
            freeReplyObject(list);
            freeReplyObject(cnt);
            hr_script_args_free(&a);
            goto out;
        }
        listed = more;
        for (long i = 0; i < got && (uint32_t)nlisted < cfg.limit; i++)
            hr_script_listed(list, (size_t)i, &listed[nlisted++]);
        for (size_t i = 0; i < cnt->elements; i++)
            counts[i] += (unsigned long long)cnt->element[i]->integer;
        freeReplyObject(list);
        freeReplyObject(cnt);
    }
    hr_script_args_free(&a);
    json_t *hosts = cfg.json ? json_array() : NULL;
    if (!cfg.json)
        printf("%-38s %-20s %-12s %-9s %5s %7s\n", "HOST", "ROOM", "REGION", "STATUS", "TTL",
               "SLOTS");
    for (long i = 0; i < nlisted; i++) {
        struct hr_host_info h = listed[i];
        long long ttl = (h.ttl_ms + 999) / 1000;
        const char *status = hr_status_name(h.status);
        if (cfg.json)
            json_array_append_new(hosts,
                                  json_pack("{s:s,s:s,s:s,s:s,s:I,s:b,s:I,s:I}", "hostId",
                                            h.host_id, "roomId", h.room_id, "region", h.region,
                                            "status", status, "ttl", (json_int_t)ttl, "claimed",
                                            h.claimed, "capacity", (json_int_t)h.capacity,
                                            "availableSlots", (json_int_t)h.available_slots));
        else {
            /* Free of capacity: what a find may still take. */
            char slots[24];
            snprintf(slots, sizeof(slots), "%" PRIu32 "/%" PRIu32, h.available_slots, h.capacity);
            printf("%-38s %-20s %-12s %-9s %4llds %7s\n", h.host_id, h.room_id, h.region,
                   h.claimed ? "busy*" : status, ttl, slots);
        }
    }
    /* One column per status, in the table's order (HR_STATUSES). */
    unsigned long long total[HR_NSTATUSES] = {0}, all = 0;
    json_t *totals = cfg.json ? json_object() : NULL;
    if (!cfg.json) {
        printf("\n%-12s", "REGION");
        for (size_t s = 0; s < HR_NSTATUSES; s++) {
            char up[16];
            size_t k = 0;
            for (const char *p = hr_status_name_at(s); *p && k + 1 < sizeof(up); p++)
                up[k++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
            up[k] = '\0';
            printf(" %8s", up);
        }
        printf("\n");
    }
    for (size_t i = 0; i < nregions; i++) {
        json_t *per = cfg.json ? json_object() : NULL;
        if (!cfg.json)
            printf("%-12s", regions[i]);
        for (size_t s = 0; s < HR_NSTATUSES; s++) {
            unsigned long long n = counts[HR_NSTATUSES * i + s];
            total[s] += n;
            all += n;
            if (cfg.json)
                json_object_set_new(per, hr_status_name_at(s), json_integer((json_int_t)n));
            else
                printf(" %8llu", n);
        }
        if (cfg.json)
            json_object_set_new(totals, regions[i], per);
        else
            printf("\n");
    }
    if (cfg.json) {
        json_t *sum = json_object();
        for (size_t s = 0; s < HR_NSTATUSES; s++)
            json_object_set_new(sum, hr_status_name_at(s), json_integer((json_int_t)total[s]));
        json_t *doc = json_pack("{s:o,s:o,s:o}", "hosts", hosts, "regions", totals, "total", sum);
        json_dumpf(doc, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(doc);
    } else {
        printf("%-12s", "total");
        for (size_t s = 0; s < HR_NSTATUSES; s++)
            printf(" %8llu", total[s]);
        printf("\n");
        if ((unsigned long long)nlisted < all)
            printf("(listed %ld of %llu hosts: --limit)\n", nlisted, all);
        printf("(busy* = claimed by a client, not yet confirmed by the host)\n");
    }
    rc = 0;
out:
    free(listed);
    hr_sync_cluster_free(t.sc);
    redisFree(t.c);
    return rc;
}
