#include "limits.h"

#include "siphash.h"

#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* 65,536 sources x 32 bytes = 2 MiB, and as many hosts x 16 bytes: enough
 * for the active sources of a busy registry; beyond it the least recently
 * seen are forgotten (and start again with a full bucket). */
#define SLOTS (1u << 16)
#define PROBE 8
/* Host tallies: 8,192 sources x 688 bytes = 5.5 MiB. A source that creates
 * hosts keeps its slot warm (it sends all the time); the many sources with a
 * host or two each come and go, and start from zero when they come back,
 * which is where they are anyway. */
#define TALLY_SLOTS (1u << 13)
#define EXACT 16 /* host hashes kept exactly per window */
#define REGS 256 /* HyperLogLog registers per window */

/* What every entry of a source table starts with. */
struct slot {
    uint64_t key[2]; /* family and address prefix; 0,0 = empty */
    uint64_t last_ms;
};

struct source {
    struct slot s;
    float tokens;
    uint32_t pad;
};

struct host {
    uint64_t hash; /* 0 = empty */
    uint64_t last_ms;
};

/* The hosts a source spoke for in one window: exactly while there are at most
 * EXACT of them, and always as HyperLogLog registers. */
struct window_set {
    uint32_t exact[EXACT];
    uint8_t nexact; /* EXACT + 1: more than EXACT, count with the registers */
    uint8_t regs[REGS];
};

struct tally {
    struct slot s;
    uint64_t window; /* the number of the current window, kept in w[window & 1] */
    double count;    /* tally_count() as of the last change */
    struct window_set w[2];
};

struct hr_limits {
    struct hr_limits_config cfg;
    /* Every slot and every host hash comes from SipHash under this key: an
     * outsider who does not know it cannot pick addresses or hostIds that
     * collide, nor aim at one slot. */
    struct hr_siphash_key key;
    struct source *sources;
    struct host *hosts;
    struct tally *tallies;
};

/* The hash key: 128 random bits, or, when a test fixes the seed, bits that
 * follow from it (the same seed, the same slots and the same estimates every
 * run). False when the kernel gives no random bytes. */
static bool make_key(uint64_t seed, struct hr_siphash_key *key)
{
    if (seed) {
        *key = (struct hr_siphash_key){seed, seed ^ 0x9e3779b97f4a7c15ULL};
        return true;
    }
    uint8_t b[16];
    ssize_t n;
    /* Blocks only before the kernel's pool is first seeded (early boot),
     * never fails short for 16 bytes, but a signal can interrupt the wait. */
    while ((n = getrandom(b, sizeof(b), 0)) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)sizeof(b))
        return false;
    *key = hr_siphash_key_from_bytes(b);
    return true;
}

struct hr_limits *hr_limits_new(const struct hr_limits_config *cfg)
{
    struct hr_limits *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->cfg = *cfg;
    if (!l->cfg.burst)
        l->cfg.burst = 1;
    if (!l->cfg.window_ms)
        l->cfg.source_hosts = 0;
    /* No fallback to a guessable key: that would quietly bring back the
     * collisions the key is there to prevent. */
    if (!make_key(cfg->seed, &l->key)) {
        free(l);
        return NULL;
    }
    l->sources = calloc(SLOTS, sizeof(*l->sources));
    l->hosts = calloc(SLOTS, sizeof(*l->hosts));
    if (l->cfg.source_hosts)
        l->tallies = calloc(TALLY_SLOTS, sizeof(*l->tallies));
    if (!l->sources || !l->hosts || (l->cfg.source_hosts && !l->tallies)) {
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
    free(l->tallies);
    free(l);
}

/* The bucket key of a source address: an IPv4 address (also when it reaches
 * an IPv6 socket as ::ffff:a.b.c.d), or the /64 of an IPv6 one. False for
 * other families. */
static bool source_key(const struct sockaddr *sa, uint64_t key[2])
{
    if (sa->sa_family == AF_INET) {
        uint32_t a;
        memcpy(&a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        key[0] = 4;
        key[1] = a;
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            uint32_t a;
            memcpy(&a, &a6->s6_addr[12], 4);
            key[0] = 4;
            key[1] = a;
            return true;
        }
        /* A /64 is one site: its owner has 2^64 addresses to rotate through. */
        key[0] = 6;
        memcpy(&key[1], a6, 8);
        return true;
    }
    return false;
}

/* The entry of `key` in a table of `slots` entries of `size` bytes, each
 * starting with a struct slot: one of the PROBE slots from the key's home.
 * When the key is not there, it takes an empty slot or the least recently
 * used one, cleared and keyed, and *found is false. */
static struct slot *lookup(void *table, size_t size, uint32_t slots, const uint64_t key[2],
                           const struct hr_siphash_key *hkey, bool *found)
{
    /* The whole key, both words, goes through the keyed hash: any
     * arithmetic folding them first would let crafted keys collide before
     * the hash ever sees them. */
    uint32_t base = (uint32_t)hr_siphash(hkey, key, 2 * sizeof(key[0])) & (slots - 1);
    struct slot *victim = NULL;
    for (uint32_t i = 0; i < PROBE; i++) {
        struct slot *s = (struct slot *)((char *)table + ((base + i) & (slots - 1)) * size);
        if (s->key[0] == key[0] && s->key[1] == key[1]) {
            *found = true;
            return s;
        }
        if (!victim || s->key[0] == 0 || (victim->key[0] != 0 && s->last_ms < victim->last_ms))
            victim = s;
    }
    memset(victim, 0, size);
    victim->key[0] = key[0];
    victim->key[1] = key[1];
    *found = false;
    return victim;
}

bool hr_limits_source(struct hr_limits *l, const struct sockaddr *sa, uint64_t now_ms)
{
    uint64_t key[2];
    bool found;
    if (!l->cfg.rate || !source_key(sa, key))
        return true;
    struct source *src =
        (struct source *)lookup(l->sources, sizeof(*l->sources), SLOTS, key, &l->key, &found);
    if (!found) { /* new (or forgotten): a full bucket */
        src->s.last_ms = now_ms;
        src->tokens = (float)l->cfg.burst - 1.0f;
        return true;
    }
    double refill = (double)(now_ms - src->s.last_ms) * l->cfg.rate / 1000.0;
    src->tokens =
        (float)(src->tokens + refill > l->cfg.burst ? l->cfg.burst : src->tokens + refill);
    src->s.last_ms = now_ms;
    if (src->tokens < 1.0f)
        return false;
    src->tokens -= 1.0f;
    return true;
}

/* A hostId's hash: keyed over all its bytes, so ids chosen to share a
 * hash (and count as one host, or pace each other's error acks) cannot be
 * made without the key. */
static uint64_t hash_id(const struct hr_limits *l, const char *id)
{
    return hr_siphash(&l->key, id, strlen(id));
}

/* Adds a host; true when that changed the set (a new host, or one that
 * raised a register). */
static bool window_add(struct window_set *w, uint64_t h)
{
    bool changed = false;
    uint32_t h32 = (uint32_t)(h >> 32) | 1; /* 0 is never a stored hash */
    if (w->nexact <= EXACT) {
        bool seen = false;
        for (unsigned i = 0; i < w->nexact && !seen; i++)
            seen = w->exact[i] == h32;
        if (!seen && w->nexact < EXACT)
            w->exact[w->nexact++] = h32;
        else if (!seen)
            w->nexact = EXACT + 1;
        changed = !seen;
    }
    /* Register: the low 8 bits; rank: where the first 1 is in the next 56. */
    uint64_t rest = h >> 8;
    uint8_t rank = rest ? (uint8_t)(__builtin_clzll(rest) - 8 + 1) : 57;
    uint8_t *r = &w->regs[h & (REGS - 1)];
    if (*r < rank) {
        *r = rank;
        changed = true;
    }
    return changed;
}

/* Distinct hosts in both windows. */
static double tally_count(const struct tally *t)
{
    const struct window_set *a = &t->w[0], *b = &t->w[1];
    if (a->nexact <= EXACT && b->nexact <= EXACT) {
        unsigned n = a->nexact;
        for (unsigned i = 0; i < b->nexact; i++) {
            bool seen = false;
            for (unsigned k = 0; k < a->nexact && !seen; k++)
                seen = a->exact[k] == b->exact[i];
            n += !seen;
        }
        return n;
    }
    double sum = 0;
    unsigned zeros = 0;
    for (unsigned i = 0; i < REGS; i++) {
        uint8_t m = a->regs[i] > b->regs[i] ? a->regs[i] : b->regs[i];
        sum += ldexp(1.0, -(int)m);
        zeros += m == 0;
    }
    double alpha = 0.7213 / (1.0 + 1.079 / REGS);
    double e = alpha * REGS * REGS / sum;
    if (e <= 2.5 * REGS && zeros) /* small range: linear counting */
        e = REGS * log((double)REGS / zeros);
    return e;
}

bool hr_limits_source_hosts(struct hr_limits *l, const struct sockaddr *sa, const char *host_id,
                            uint64_t now_ms)
{
    uint64_t key[2];
    if (!l->cfg.source_hosts || !source_key(sa, key))
        return true;
    uint64_t window = now_ms / l->cfg.window_ms;
    bool found, rotated = false;
    struct tally *t =
        (struct tally *)lookup(l->tallies, sizeof(*l->tallies), TALLY_SLOTS, key, &l->key, &found);
    if (!found) { /* new (or forgotten): starts from nothing */
        t->window = window;
    } else if (window != t->window) {
        /* The window before the current one stays: a host heard from just
         * before the turn is still alive. Older ones go. */
        if (window != t->window + 1)
            memset(&t->w[(window + 1) & 1], 0, sizeof(t->w[0]));
        memset(&t->w[window & 1], 0, sizeof(t->w[0]));
        t->window = window;
        rotated = true;
    }
    t->s.last_ms = now_ms;
    /* Counted again only when the sets changed: the hosts of a source
     * refreshing themselves leave them as they are. */
    bool changed = window_add(&t->w[window & 1], hash_id(l, host_id));
    if (changed || rotated)
        t->count = tally_count(t);
    return t->count < (double)l->cfg.source_hosts + 0.5;
}

bool hr_limits_host_error(struct hr_limits *l, const char *host_id, uint64_t now_ms)
{
    if (!l->cfg.error_gap_ms)
        return true;
    uint64_t h = hash_id(l, host_id);
    /* The slot from the hash as it is; the stored copy has its low bit set,
     * as 0 marks an empty slot. (Indexing with the low bit set would leave
     * every even slot unused.) */
    struct host *slot = &l->hosts[h & (SLOTS - 1)];
    h |= 1;
    if (slot->hash == h && now_ms - slot->last_ms < l->cfg.error_gap_ms)
        return false;
    slot->hash = h;
    slot->last_ms = now_ms;
    return true;
}
