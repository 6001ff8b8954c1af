/* The gateway's short cache of GET /api/hosts answers (--list-cache-ms), so
 * that a flood of list calls costs Redis at most one list per filter per
 * interval. A fixed number of slots (the least recently used is replaced),
 * each holding one filter's rendered answers (anonymous, and with hostIds for
 * callers with the host secret) and the requests waiting for the list in
 * flight for that filter. The cache owns the bodies; the waiters belong to
 * the caller, which embeds a struct hr_listcache_waiter in each request. No
 * I/O and no clock here: the caller lists, renders and says what time it is. */
#ifndef HR_LISTCACHE_H
#define HR_LISTCACHE_H

#include "request.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One filter of GET /api/hosts. Compared field by field: zero it first. */
struct hr_listcache_key {
    int region;            /* index in the configured regions; -1: all of them */
    enum hr_status status; /* HR_STATUS_NONE: every status */
    uint32_t limit;
};

/* A request queued on a slot's list in flight; embedded in the caller's. */
struct hr_listcache_waiter {
    struct hr_listcache_waiter *next;
};

struct hr_listcache;
struct hr_listcache_slot;

enum hr_listcache_verdict {
    HR_LISTCACHE_HIT,    /* *slot holds a fresh answer: hr_listcache_body() */
    HR_LISTCACHE_WAIT,   /* a list for this filter is in flight: `w` is queued on it */
    HR_LISTCACHE_FETCH,  /* `w` is queued on *slot: the caller starts the list, then
                          * calls hr_listcache_fill() or hr_listcache_fail() */
    HR_LISTCACHE_BYPASS, /* every slot waits for a list: the caller lists uncached */
};

/* `slots` filters at most, each answer served for `max_age_ms` after its list
 * was sent. NULL when out of memory. */
struct hr_listcache *hr_listcache_new(size_t slots, uint32_t max_age_ms);
/* Frees the bodies; waiters still queued are the caller's. NULL: nothing. */
void hr_listcache_free(struct hr_listcache *lc);

/* Looks `key` up at `now_ms` (a monotonic clock) and says what the caller
 * does next; *slot is set for HIT and FETCH. `w` is queued (WAIT, FETCH) or
 * left alone (HIT, BYPASS). */
enum hr_listcache_verdict hr_listcache_get(struct hr_listcache *lc,
                                           const struct hr_listcache_key *key, uint64_t now_ms,
                                           struct hr_listcache_waiter *w,
                                           struct hr_listcache_slot **slot);

/* The list for `slot` arrived: the slot takes the two bodies (malloc'd;
 * `authorized` may be NULL when no caller can be authorized) and is fresh
 * until max_age_ms after the list was sent. Returns the queued waiters, in
 * arrival order, for the caller to answer from hr_listcache_body(). */
struct hr_listcache_waiter *hr_listcache_fill(struct hr_listcache_slot *slot, char *anonymous,
                                              size_t anonymous_len, char *authorized,
                                              size_t authorized_len);

/* The list for `slot` failed (or could not be sent): nothing is cached, the
 * slot is free again. Returns the queued waiters for the caller to answer. */
struct hr_listcache_waiter *hr_listcache_fail(struct hr_listcache_slot *slot);

/* The answer of a filled slot, with hostIds or without; valid until the next
 * hr_listcache_get() or hr_listcache_free(). NULL when the slot has no body of
 * that kind (then the caller lists uncached). */
const char *hr_listcache_body(const struct hr_listcache_slot *slot, bool authorized, size_t *len);

#endif
