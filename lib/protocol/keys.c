#include "keys.h"

#include "err.h"
#include "parse.h"

#include <errno.h>
#include <stdbool.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int hr_keys_parse_hex(const char *hex, uint8_t out[HR_KEY_LEN])
{
    if (strlen(hex) != 2 * HR_KEY_LEN)
        return -1;
    for (size_t i = 0; i < HR_KEY_LEN; i++) {
        int hi = hr_hex_digit((unsigned char)hex[2 * i]),
            lo = hr_hex_digit((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int load(struct hr_keyring *kr, const char *path, bool owned, char *err, size_t errlen);

int hr_keys_load(struct hr_keyring *kr, const char *path, char *err, size_t errlen)
{
    return load(kr, path, false, err, errlen);
}

int hr_keys_load_owned(struct hr_keyring *kr, const char *path, char *err, size_t errlen)
{
    return load(kr, path, true, err, errlen);
}

static int load(struct hr_keyring *kr, const char *path, bool owned, char *err, size_t errlen)
{
    struct hr_keyring k;
    memset(&k, 0, sizeof(k));
    if (!path[0]) { /* no key file: an open registry */
        *kr = k;
        return HR_OK;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open key file %s: %s", path, strerror(errno));
        return HR_E_CONFIG;
    }
    struct stat st;
    /* A secret others can read is no secret: refuse rather than warn. */
    if (fstat(fileno(f), &st) != 0 || (st.st_mode & (S_IRWXG | S_IRWXO))) {
        snprintf(err, errlen, "key file %s is accessible to group or others (chmod 600 it)", path);
        fclose(f);
        return HR_E_CONFIG;
    }
    /* Whoever owns the file can change the keys a registry trusts: only its
     * own user may. */
    if (owned && st.st_uid != geteuid()) {
        snprintf(err, errlen, "key file %s is owned by uid %u, not by this user (uid %u): chown it",
                 path, (unsigned)st.st_uid, (unsigned)geteuid());
        fclose(f);
        return HR_E_CONFIG;
    }
    char line[512];
    int lineno = 0, rc = HR_OK;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *p = line + strspn(line, " \t");
        if (*p == '#' || *p == '\n' || *p == '\0')
            continue;
        unsigned id;
        char mode[32], hex[130];
        struct hr_key key;
        memset(&key, 0, sizeof(key));
        if (sscanf(p, "%u %31s %129s", &id, mode, hex) != 3 || id < 1 || id > 255 ||
            hr_keys_parse_hex(hex, key.secret) != 0) {
            snprintf(err, errlen, "%s:%d: want '<id 1-255> deployment|master <64 hex digits>'",
                     path, lineno);
            rc = HR_E_CONFIG;
            break;
        }
        if (strcmp(mode, "deployment") == 0)
            key.mode = HR_KEY_DEPLOYMENT;
        else if (strcmp(mode, "master") == 0)
            key.mode = HR_KEY_MASTER;
        else {
            snprintf(err, errlen, "%s:%d: mode '%s' is not deployment or master", path, lineno,
                     mode);
            rc = HR_E_CONFIG;
            break;
        }
        key.id = (uint8_t)id;
        if (hr_keys_find(&k, key.id) || k.n == HR_KEYS_MAX) {
            snprintf(err, errlen, "%s:%d: key id %u listed twice, or more than %d keys", path,
                     lineno, id, HR_KEYS_MAX);
            rc = HR_E_CONFIG;
            break;
        }
        k.keys[k.n++] = key;
    }
    fclose(f);
    if (rc == HR_OK && k.n == 0) {
        snprintf(err, errlen, "key file %s holds no key", path);
        rc = HR_E_CONFIG;
    }
    if (rc == HR_OK)
        *kr = k;
    memset(&k, 0, sizeof(k));
    return rc;
}

const struct hr_key *hr_keys_find(const struct hr_keyring *kr, uint8_t id)
{
    for (size_t i = 0; i < kr->n; i++)
        if (kr->keys[i].id == id)
            return &kr->keys[i];
    return NULL;
}

void hr_keys_host_key(const struct hr_key *k, const char *host_id, uint8_t out[HR_KEY_LEN])
{
    if (k->mode == HR_KEY_DEPLOYMENT) {
        memcpy(out, k->secret, HR_KEY_LEN);
        return;
    }
    unsigned int len = HR_KEY_LEN;
    HMAC(EVP_sha256(), k->secret, HR_KEY_LEN, (const unsigned char *)host_id, strlen(host_id), out,
         &len);
}
