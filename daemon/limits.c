#include "limits.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* 65,536 sources x 32 bytes = 2 MiB, and as many hosts x 16 bytes: enough
 * for the active sources of a busy registry; beyond it the least recently
 * seen are forgotten (and start again with a full bucket). */
#define SLOTS (1u << 16)
#define PROBE 8

struct source {
    uint64_t key[2]; /* family and address prefix; 0,0 = empty */
    uint64_t last_ms;
    float tokens;
    uint32_t pad;
};

struct host {
    uint64_t hash; /* 0 = empty */
    uint64_t last_ms;
};

struct hr_limits {
    uint32_t rate, burst, error_gap_ms;
    uint64_t seed; /* keyed hashing: nobody outside can aim at one slot */
    struct source *sources;
    struct host *hosts;
};

static uint64_t mix(uint64_t x, uint64_t seed)
{
    x ^= seed;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

struct hr_limits *hr_limits_new(uint32_t rate, uint32_t burst, uint32_t error_gap_ms)
{
    struct hr_limits *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->rate = rate;
    l->burst = burst ? burst : 1;
    l->error_gap_ms = error_gap_ms;
    if (getrandom(&l->seed, sizeof(l->seed), 0) != (ssize_t)sizeof(l->seed))
        l->seed = (uint64_t)(uintptr_t)l ^ 0x9e3779b97f4a7c15ULL;
    l->sources = calloc(SLOTS, sizeof(*l->sources));
    l->hosts = calloc(SLOTS, sizeof(*l->hosts));
    if (!l->sources || !l->hosts) {
        hr_limits_free(l);
        return NULL;
    }
    return l;
}

void hr_limits_free(struct hr_limits *l)
{
    if (!l)
        return;
    free(l->sources);
    free(l->hosts);
    free(l);
}

bool hr_limits_source(struct hr_limits *l, const struct sockaddr *sa, uint64_t now_ms)
{
    if (!l->rate)
        return true;
    uint64_t key[2] = {0, 0};
    if (sa->sa_family == AF_INET) {
        uint32_t a;
        memcpy(&a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        key[0] = 4;
        key[1] = a;
    } else if (sa->sa_family == AF_INET6) {
        /* A /64 is one site: its owner has 2^64 addresses to rotate through. */
        key[0] = 6;
        memcpy(&key[1], &((const struct sockaddr_in6 *)sa)->sin6_addr, 8);
    } else {
        return true;
    }
    uint32_t base = (uint32_t)mix(key[0] ^ key[1] * 31, l->seed) & (SLOTS - 1);
    struct source *victim = NULL;
    for (uint32_t i = 0; i < PROBE; i++) {
        struct source *s = &l->sources[(base + i) & (SLOTS - 1)];
        if (s->key[0] == key[0] && s->key[1] == key[1]) {
            double refill = (double)(now_ms - s->last_ms) * l->rate / 1000.0;
            s->tokens = (float)(s->tokens + refill > l->burst ? l->burst : s->tokens + refill);
            s->last_ms = now_ms;
            if (s->tokens < 1.0f)
                return false;
            s->tokens -= 1.0f;
            return true;
        }
        if (!victim || s->key[0] == 0 || (victim->key[0] != 0 && s->last_ms < victim->last_ms))
            victim = s;
    }
    /* New source (or one forgotten): a full bucket in the oldest slot. */
    victim->key[0] = key[0];
    victim->key[1] = key[1];
    victim->last_ms = now_ms;
    victim->tokens = (float)l->burst - 1.0f;
    return true;
}

bool hr_limits_host_error(struct hr_limits *l, const char *host_id, uint64_t now_ms)
{
    if (!l->error_gap_ms)
        return true;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a, then keyed */
    for (const char *p = host_id; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    h = mix(h, l->seed) | 1;
    struct host *slot = &l->hosts[h & (SLOTS - 1)];
    if (slot->hash == h && now_ms - slot->last_ms < l->error_gap_ms)
        return false;
    slot->hash = h;
    slot->last_ms = now_ms;
    return true;
}
