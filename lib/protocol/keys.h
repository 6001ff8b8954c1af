/* Datagram authentication keys: loading the key file, finding a key by the id
 * a frame carries, and deriving per-host keys. The tag itself is computed in
 * wire.c (HMAC-SHA256 over the frame, truncated to 16 bytes).
 *
 * Key file: one key per line, "<id> <mode> <secret as 64 hex digits>", '#'
 * comments. id 1-255 (0 means "no key" on the wire); mode "deployment" (every
 * host signs with this key) or "master" (each host signs with
 * HMAC-SHA256(master, hostId), so one host's key cannot speak for another).
 * Several ids may be listed at once: that is how a key is rotated. */
#ifndef HR_KEYS_H
#define HR_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define HR_KEY_LEN 32
#define HR_KEYS_MAX 16

enum hr_key_mode { HR_KEY_DEPLOYMENT = 1, HR_KEY_MASTER = 2 };

struct hr_key {
    uint8_t id;
    enum hr_key_mode mode;
    uint8_t secret[HR_KEY_LEN];
};

struct hr_keyring {
    struct hr_key keys[HR_KEYS_MAX];
    size_t n;
};

/* Loads `path`; an empty path loads no key (kr->n 0: an open registry), a
 * file loads at least one. Refuses (HR_E_CONFIG, reason in err, kr
 * unchanged) a file that others or the group may read or write, a malformed
 * line, a duplicate id, a file with no key. */
int hr_keys_load(struct hr_keyring *kr, const char *path, char *err, size_t errlen);

/* hr_keys_load for a registry (hostregd), which also refuses a file not
 * owned by the user it runs as: its owner could change the keys it trusts. */
int hr_keys_load_owned(struct hr_keyring *kr, const char *path, char *err, size_t errlen);

/* The key with this id, or NULL. */
const struct hr_key *hr_keys_find(const struct hr_keyring *kr, uint8_t id);

/* The key a host signs with: the deployment key itself, or for a master key
 * HMAC-SHA256(master, hostId) with the hostId in canonical text form. */
void hr_keys_host_key(const struct hr_key *k, const char *host_id, uint8_t out[HR_KEY_LEN]);

/* Parses 64 hex digits. 0 or -1. */
int hr_keys_parse_hex(const char *hex, uint8_t out[HR_KEY_LEN]);

#endif
