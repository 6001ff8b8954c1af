#include "keyopt.h"

#include "config.h"
#include "err.h"
#include "request.h"

#include <stdio.h>
#include <string.h>

int hr_key_opt_file(struct hr_key_opt *o, const char *path, char *err, size_t errlen)
{
    if (hr_keys_load(&o->kr, path, err, errlen) != HR_OK)
        return -1;
    o->loaded = o->kr.n > 0;
    return 0;
}

int hr_key_opt_id(struct hr_key_opt *o, const char *v, char *err, size_t errlen)
{
    if (hr_parse_u32(v, 0, 255, &o->key_id) != 0) {
        snprintf(err, errlen, "want 1-255 (0: the file's first key)");
        return -1;
    }
    return 0;
}

int hr_key_opt_hex(struct hr_key_opt *o, const char *v, char *err, size_t errlen)
{
    if (hr_keys_parse_hex(v, o->kr.keys[0].secret) != 0) {
        snprintf(err, errlen, "want 64 hex digits (what hostreg key prints)");
        return -1;
    }
    o->kr.keys[0].mode = HR_KEY_DEPLOYMENT; /* used as it is, not derived */
    o->kr.n = 1;
    o->loaded = o->raw = 1;
    return 0;
}

int hr_key_opt_auth(const struct hr_key_opt *o, const char *host_id, struct hr_host_auth *auth)
{
    memset(auth, 0, sizeof(*auth));
    if (!o->loaded)
        return 0;
    if (o->raw) { /* a host's own key: the id must be given */
        if (!o->key_id)
            return -1;
        memcpy(auth->key, o->kr.keys[0].secret, sizeof(auth->key));
        auth->key_id = (uint8_t)o->key_id;
        return 0;
    }
    const struct hr_key *k = o->key_id ? hr_keys_find(&o->kr, (uint8_t)o->key_id) : &o->kr.keys[0];
    if (!k)
        return -1;
    /* Derived from the canonical id, as the daemon does (lower-case UUIDs);
     * an id the rules refuse is signed as it is, for `send` to show what the
     * daemon makes of it. */
    char canon[HR_ID_MAX + 1];
    if (!hr_id_canon(host_id, strlen(host_id), canon))
        snprintf(canon, sizeof(canon), "%s", host_id);
    hr_keys_host_key(k, canon, auth->key);
    auth->key_id = k->id;
    return 0;
}
