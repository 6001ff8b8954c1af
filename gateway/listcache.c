#include "listcache.h"

#include <stdlib.h>

struct hr_listcache_slot {
    struct hr_listcache_key key;
    bool used;        /* key is meaningful */
    bool inflight;    /* a list for key was sent and has not come back */
    uint64_t sent;    /* when that list was sent: the answer is as old as this */
    uint64_t used_at; /* hr_listcache_get's tick of the last lookup, for LRU */
    char *body[2];    /* [0] anonymous, [1] with hostIds; NULL until filled */
    size_t len[2];
    struct hr_listcache_waiter *head, **tail; /* waiting for the list in flight */
};

struct hr_listcache {
    size_t nslots;
    uint32_t max_age_ms;
    uint64_t tick; /* counts lookups: an exact LRU order, unlike a clock */
    struct hr_listcache_slot slots[];
};

struct hr_listcache *hr_listcache_new(size_t slots, uint32_t max_age_ms)
{
    if (slots == 0)
        return NULL;
    struct hr_listcache *lc = calloc(1, sizeof(*lc) + slots * sizeof(lc->slots[0]));
    if (!lc)
        return NULL;
    lc->nslots = slots;
    lc->max_age_ms = max_age_ms;
    return lc;
}

static void drop_bodies(struct hr_listcache_slot *s)
{
    for (int i = 0; i < 2; i++) {
        free(s->body[i]);
        s->body[i] = NULL;
        s->len[i] = 0;
    }
}

void hr_listcache_free(struct hr_listcache *lc)
{
    if (!lc)
        return;
    for (size_t i = 0; i < lc->nslots; i++)
        drop_bodies(&lc->slots[i]);
    free(lc);
}

static bool same_key(const struct hr_listcache_key *a, const struct hr_listcache_key *b)
{
    return a->region == b->region && a->status == b->status && a->limit == b->limit;
}

static void enqueue(struct hr_listcache_slot *s, struct hr_listcache_waiter *w)
{
    w->next = NULL;
    if (!s->head)
        s->tail = &s->head;
    *s->tail = w;
    s->tail = &w->next;
}

enum hr_listcache_verdict hr_listcache_get(struct hr_listcache *lc,
                                           const struct hr_listcache_key *key, uint64_t now_ms,
                                           struct hr_listcache_waiter *w,
                                           struct hr_listcache_slot **slot)
{
    struct hr_listcache_slot *victim = NULL;
    lc->tick++;
    for (size_t i = 0; i < lc->nslots; i++) {
        struct hr_listcache_slot *s = &lc->slots[i];
        if (s->used && same_key(&s->key, key)) {
            s->used_at = lc->tick;
            if (s->inflight) {
                enqueue(s, w);
                return HR_LISTCACHE_WAIT;
            }
            /* Fresh while younger than the interval, counted from when its
             * list was sent: the next list for this filter goes out no
             * sooner than max_age_ms after the last one. */
            if (now_ms - s->sent < lc->max_age_ms) {
                *slot = s;
                return HR_LISTCACHE_HIT;
            }
            victim = s; /* stale: its own slot is listed again */
            break;
        }
        /* A slot waiting for its list cannot be replaced: its waiters are
         * queued on it. An unused one beats any used one; then the least
         * recently looked up. */
        if (s->inflight)
            continue;
        if (!victim || (victim->used && (!s->used || s->used_at < victim->used_at)))
            victim = s;
    }
    if (!victim)
        return HR_LISTCACHE_BYPASS;
    drop_bodies(victim);
    victim->key = *key;
    victim->used = true;
    victim->inflight = true;
    victim->sent = now_ms;
    victim->used_at = lc->tick;
    victim->head = NULL;
    enqueue(victim, w);
    *slot = victim;
    return HR_LISTCACHE_FETCH;
}

static struct hr_listcache_waiter *take_waiters(struct hr_listcache_slot *s)
{
    struct hr_listcache_waiter *w = s->head;
    s->head = NULL;
    s->tail = &s->head;
    s->inflight = false;
    return w;
}

struct hr_listcache_waiter *hr_listcache_fill(struct hr_listcache_slot *slot, char *anonymous,
                                              size_t anonymous_len, char *authorized,
                                              size_t authorized_len)
{
    drop_bodies(slot);
    slot->body[0] = anonymous;
    slot->len[0] = anonymous_len;
    slot->body[1] = authorized;
    slot->len[1] = authorized_len;
    return take_waiters(slot);
}

struct hr_listcache_waiter *hr_listcache_fail(struct hr_listcache_slot *slot)
{
    drop_bodies(slot);
    slot->used = false;
    return take_waiters(slot);
}

const char *hr_listcache_body(const struct hr_listcache_slot *slot, bool authorized, size_t *len)
{
    *len = slot->len[authorized];
    return slot->body[authorized];
}
