/* Storage layout 3 (docs/design/layout-v2.md): which bucket a host lives in,
 * how a hostId is stored, and the names of a bucket's keys. The layout of a
 * registry (its bucket count and the secret seed of the bucket hash) is kept
 * in Redis under "<prefix>layout", written once by the first program to
 * start; every program reads it at connect. No I/O here except
 * hr_layout_read_sync, for the tools. */
#ifndef HR_LAYOUT_H
#define HR_LAYOUT_H

#include "id.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct redisContext;
struct hr_script_args;

/* The value of the layout key this build reads and writes starts with this
 * version: "3 <buckets> <seed, 32 hex digits>". Layout 2 had the same
 * buckets with longer entries and an expiry sorted set per bucket. */
#define HR_LAYOUT_VERSION "3"
/* The layout key, after the prefix. */
#define HR_LAYOUT_KEY "layout"
/* Buckets: a power of two in [1, 16384] (16384 is Redis Cluster's slot
 * count: more would not spread further). */
#define HR_LAYOUT_BUCKETS_MAX 16384
/* A stored hostId's bytes at most (a text id of 16 characters gets a mark). */
#define HR_LAYOUT_ID_MAX (HR_ID_MAX + 1)

struct hr_layout {
    char prefix[32];
    uint32_t buckets;
    uint8_t seed[16];
};

/* A new layout for `prefix` with `buckets` buckets and a random seed. 0, or
 * -1 when `buckets` is not a power of two within bounds. */
int hr_layout_new(struct hr_layout *l, const char *prefix, uint32_t buckets);

/* The layout key's value for `l`, and back. hr_layout_parse: 0, or -1 when
 * `value` is not a layout this build reads (another version, or garbled). */
void hr_layout_format(const struct hr_layout *l, char *out, size_t cap);
int hr_layout_parse(const char *value, const char *prefix, struct hr_layout *l);

/* A canonical hostId (hr_id_canon) as stored: a UUID as its 16 bytes, any
 * other id as its text, with a '~' after it when it is 16 characters long
 * (so that the two never meet). Returns the stored length; `out` holds
 * HR_LAYOUT_ID_MAX bytes. hr_layout_id_unpack is the inverse (a stored form
 * it does not know is copied as it is, cut to fit). */
size_t hr_layout_id_pack(const char *id, char *out);
void hr_layout_id_unpack(const char *stored, size_t len, char *out, size_t cap);

/* A sequence number as the scripts take and store it: base 36 (digits, then
 * lower-case letters), no leading zeros; HR_LAYOUT_SEQ_MAX bytes with the
 * NUL. Returns its length. hr_layout_seq_parse is the inverse: 0, or -1 when
 * `s` is not one. */
#define HR_LAYOUT_SEQ_MAX 14
size_t hr_layout_seq_format(uint64_t seq, char *out);
int hr_layout_seq_parse(const char *s, size_t len, uint64_t *seq);

/* A bucket's entry as stored, "<hseq> <sseq> <status letter>[<capacity>.<free>.
 * <reported>] <region> <room> <expiry>" (lib/store/lua/entry.lua), read back:
 * for the tools and tests that look at the keys themselves. 0, or -1 when `v`
 * is not one. */
struct hr_layout_entry {
    uint64_t hseq, sseq;
    const char *status;                /* a name of HR_STATUSES */
    uint32_t capacity, free, reported; /* slots (entry.lua: findable) */
    char region[80], room[80];
    int64_t expiry_ms;
};
int hr_layout_entry_parse(const char *v, size_t len, struct hr_layout_entry *e);

/* The bucket of a stored hostId: SipHash-2-4 under the layout's seed, modulo
 * the bucket count (a power of two, so no bias). */
uint32_t hr_layout_bucket(const struct hr_layout *l, const char *stored, size_t len);

/* Appends the HR_SCRIPT_BKEYS keys of bucket `b`, in script.h's order, to a
 * script call's KEYS. */
void hr_layout_bucket_keys(const struct hr_layout *l, uint32_t b, struct hr_script_args *a);

/* "<prefix>{<tag>}<suffix>" into out. */
void hr_layout_key(char *out, size_t cap, const char *prefix, const char *tag, const char *suffix);

/* For the tools: reads the layout of the registry under `prefix`. 1 with *l
 * filled, 0 when there is none (nothing was ever registered there), -1 with
 * the reason in err. */
int hr_layout_read_sync(struct redisContext *c, const char *prefix, struct hr_layout *l, char *err,
                        size_t errlen);

#endif
