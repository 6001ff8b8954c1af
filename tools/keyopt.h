/* The --key-file/--key-id options the tools share, and the key a given host
 * signs with under them. */
#ifndef HR_TOOLS_KEYOPT_H
#define HR_TOOLS_KEYOPT_H

#include "hostreg_host.h"
#include "keys.h"

#include <stddef.h>
#include <stdint.h>

struct hr_key_opt {
    struct hr_keyring kr;
    int loaded;
    uint32_t key_id; /* 0: the file's first key */
    int raw;         /* --key HEX: a host's own key, used as it is */
};

int hr_key_opt_file(struct hr_key_opt *o, const char *path, char *err, size_t errlen);
int hr_key_opt_id(struct hr_key_opt *o, const char *v, char *err, size_t errlen);
int hr_key_opt_hex(struct hr_key_opt *o, const char *v, char *err, size_t errlen);

/* The key `host_id` signs with (derived for a master key), into auth; auth
 * zeroed (unauthenticated) when no file was given. -1 when --key-id names no
 * key of the file. */
int hr_key_opt_auth(const struct hr_key_opt *o, const char *host_id, struct hr_host_auth *auth);

#endif
