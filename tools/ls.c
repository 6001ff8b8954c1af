#include "ls.h"

#include "config.h"
#include "err.h"
#include "store.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
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

static int set_region(void *c, const char *v, char *err, size_t errlen)
{
    struct ls_config *l = c;
    if (strlen(v) >= sizeof(l->region)) {
        snprintf(err, errlen, "not a region name");
        return -1;
    }
    strcpy(l->region, v);
    return 0;
}

static int set_status(void *c, const char *v, char *err, size_t errlen)
{
    struct ls_config *l = c;
    l->status = hr_status_parse(v, strlen(v));
    if (l->status == HR_STATUS_NONE) {
        snprintf(err, errlen, "want idle or busy");
        return -1;
    }
    return 0;
}

static int set_limit(void *c, const char *v, char *err, size_t errlen)
{
    if (hr_parse_u32(v, 1, 100000000, &((struct ls_config *)c)->limit) != 0) {
        snprintf(err, errlen, "want 1-100000000");
        return -1;
    }
    return 0;
}

static int set_json(void *c, const char *v, char *err, size_t errlen)
{
    (void)v, (void)err, (void)errlen;
    ((struct ls_config *)c)->json = 1;
    return 0;
}

static const struct hr_opt options[] = {
    {"redis", 'r', "URL", "redis://127.0.0.1:6379", "the registry's Redis", hr_common_set_redis,
     NULL},
    {"prefix", 0, "PREFIX", "hr:", "the registry's key prefix", hr_common_set_prefix, NULL},
    {"regions", 0, "LIST", "us-east-1,us-west-1,eu-central,local", "the configured regions",
     hr_common_set_regions, NULL},
    {"region", 'g', "REGION", NULL, "only this region", set_region, NULL},
    {"status", 'S', "STATUS", NULL, "only idle or only busy hosts", set_status, NULL},
    {"limit", 'n', "N", "100000", "list at most N hosts (the totals count them all)", set_limit,
     NULL},
    {"json", 'j', NULL, NULL, "one JSON document: hosts and totals", set_json, NULL},
    {0},
};

static redisContext *connect_redis(const struct hr_redis_addr *a, char *err, size_t errlen)
{
    struct timeval tv = {2, 0};
    redisContext *c = a->path[0] ? redisConnectUnixWithTimeout(a->path, tv)
                                 : redisConnectWithTimeout(a->host, a->port, tv);
    if (!c || c->err) {
        snprintf(err, errlen, "cannot connect to Redis: %s", c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    redisReply *r = NULL;
    if (a->pass[0])
        r = a->user[0] ? redisCommand(c, "AUTH %s %s", a->user, a->pass)
                       : redisCommand(c, "AUTH %s", a->pass);
    if (a->pass[0] && (!r || r->type == REDIS_REPLY_ERROR)) {
        snprintf(err, errlen, "Redis AUTH failed: %s", r ? r->str : c->errstr);
        goto fail;
    }
    freeReplyObject(r);
    r = NULL;
    if (a->db && (!(r = redisCommand(c, "SELECT %d", a->db)) || r->type == REDIS_REPLY_ERROR)) {
        snprintf(err, errlen, "Redis SELECT failed: %s", r ? r->str : c->errstr);
        goto fail;
    }
    freeReplyObject(r);
    return c;
fail:
    freeReplyObject(r);
    redisFree(c);
    return NULL;
}

/* EVAL of one of the store's scripts with ARGV only. */
static redisReply *eval(redisContext *c, const char *script, const char **args, size_t n)
{
    const char *argv[4 + HR_REGIONS_MAX + 4];
    size_t lens[4 + HR_REGIONS_MAX + 4];
    size_t k = 0;
    argv[k++] = "EVAL";
    argv[k++] = hr_store_script(script);
    argv[k++] = "0";
    for (size_t i = 0; i < n; i++)
        argv[k++] = args[i];
    for (size_t i = 0; i < k; i++)
        lens[i] = strlen(argv[i]);
    return redisCommandArgv(c, (int)k, argv, lens);
}

int hr_cmd_ls(int argc, char **argv)
{
    struct ls_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    int idx = hr_opts_parse(options, &cfg, argc, argv, "hostreg ls [options]",
                            "Lists the live hosts of the registry, by region and status, with "
                            "the seconds each\nhas left, and totals per region and status. Reads "
                            "the same index the gateway uses\n(never an expired host).");
    char err[256];
    if (idx != argc) {
        fprintf(stderr, "error: unexpected argument '%s'\n", argv[idx]);
        return 2;
    }
    struct hr_rules rules;
    char first[HR_REGION_MAX + 1];
    snprintf(first, sizeof(first), "%.*s", (int)strcspn(cfg.common.regions_list, ","),
             cfg.common.regions_list);
    if (hr_rules_set_regions(&rules, cfg.common.regions_list, first, err, sizeof(err)) != HR_OK) {
        fprintf(stderr, "error: %s\n", err);
        return 2;
    }
    const char *regions[HR_REGIONS_MAX];
    size_t nregions = 0;
    for (size_t i = 0; i < rules.nregions; i++)
        if (!cfg.region[0] || strcmp(cfg.region, rules.regions[i]) == 0)
            regions[nregions++] = rules.regions[i];
    if (nregions == 0) {
        fprintf(stderr, "error: region '%s' is not in --regions\n", cfg.region);
        return 2;
    }
    redisContext *c = connect_redis(&cfg.common.store.redis, err, sizeof(err));
    if (!c) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    int rc = 1;
    char limit[16];
    snprintf(limit, sizeof(limit), "%u", cfg.limit);
    const char *args[3 + HR_REGIONS_MAX];
    args[0] = cfg.common.store.prefix;
    args[1] = cfg.status == HR_STATUS_NONE ? "" : hr_status_name(cfg.status);
    args[2] = limit;
    memcpy(args + 3, regions, nregions * sizeof(regions[0]));
    redisReply *list = eval(c, "list", args, 3 + nregions);
    const char *cargs[1 + HR_REGIONS_MAX];
    cargs[0] = cfg.common.store.prefix;
    memcpy(cargs + 1, regions, nregions * sizeof(regions[0]));
    redisReply *counts = eval(c, "count", cargs, 1 + nregions);
    if (!list || list->type != REDIS_REPLY_ARRAY || !counts || counts->type != REDIS_REPLY_ARRAY) {
        fprintf(stderr, "error: Redis: %s\n",
                list && list->type == REDIS_REPLY_ERROR       ? list->str
                : counts && counts->type == REDIS_REPLY_ERROR ? counts->str
                                                              : c->errstr);
        goto out;
    }
    json_t *hosts = cfg.json ? json_array() : NULL;
    if (!cfg.json)
        printf("%-38s %-20s %-12s %-5s %5s\n", "HOST", "ROOM", "REGION", "STATUS", "TTL");
    for (size_t i = 0; i + 6 <= list->elements; i += 6) {
        redisReply **e = list->element + i;
        long long ttl = (e[4]->integer + 999) / 1000;
        const char *status = e[5]->integer ? "busy*" : e[3]->str;
        if (cfg.json)
            json_array_append_new(hosts, json_pack("{s:s,s:s,s:s,s:s,s:I,s:b}", "hostId", e[0]->str,
                                                   "roomId", e[1]->str, "region", e[2]->str,
                                                   "status", e[3]->str, "ttl", (json_int_t)ttl,
                                                   "claimed", (int)e[5]->integer));
        else
            printf("%-38s %-20s %-12s %-6s %4llds\n", e[0]->str, e[1]->str, e[2]->str, status, ttl);
    }
    unsigned long long tidle = 0, tbusy = 0;
    json_t *totals = cfg.json ? json_object() : NULL;
    if (!cfg.json)
        printf("\n%-12s %8s %8s\n", "REGION", "IDLE", "BUSY");
    for (size_t i = 0; i < nregions && 2 * i + 1 < counts->elements; i++) {
        unsigned long long idle = (unsigned long long)counts->element[2 * i]->integer;
        unsigned long long busy = (unsigned long long)counts->element[2 * i + 1]->integer;
        tidle += idle;
        tbusy += busy;
        if (cfg.json)
            json_object_set_new(
                totals, regions[i],
                json_pack("{s:I,s:I}", "idle", (json_int_t)idle, "busy", (json_int_t)busy));
        else
            printf("%-12s %8llu %8llu\n", regions[i], idle, busy);
    }
    if (cfg.json) {
        json_t *doc = json_pack("{s:o,s:o,s:{s:I,s:I}}", "hosts", hosts, "regions", totals, "total",
                                "idle", (json_int_t)tidle, "busy", (json_int_t)tbusy);
        json_dumpf(doc, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(doc);
    } else {
        printf("%-12s %8llu %8llu\n", "total", tidle, tbusy);
        if (list->elements / 6 < tidle + tbusy)
            printf("(listed %zu of %llu hosts: --limit)\n", list->elements / 6, tidle + tbusy);
        printf("(busy* = claimed by a client, not yet confirmed by the host)\n");
    }
    rc = 0;
out:
    freeReplyObject(list);
    freeReplyObject(counts);
    redisFree(c);
    return rc;
}
