/* SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed hash whose outputs an
 * outsider who does not know the key cannot predict, so cannot make collide.
 * The daemon's fixed-memory tables pick slots with it. No state, no
 * allocation; the caller owns the key. */
#ifndef HR_SIPHASH_H
#define HR_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* A 128-bit key as the reference reads it: k0 is bytes 0-7 of the key taken
 * as a little-endian number, k1 bytes 8-15. */
struct hr_siphash_key {
    uint64_t k0, k1;
};

/* The key from its 16 bytes (for instance from getrandom). */
struct hr_siphash_key hr_siphash_key_from_bytes(const uint8_t bytes[16]);

/* SipHash-2-4 of `len` bytes at `msg` (NULL is fine when len is 0): the
 * 64-bit output, the reference's 8 output bytes taken as a little-endian
 * number. */
uint64_t hr_siphash(const struct hr_siphash_key *key, const void *msg, size_t len);

#endif
