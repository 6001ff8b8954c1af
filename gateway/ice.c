#include "ice.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

int hr_ice_turn_credential(const char *secret, const char *username, char *out, size_t outlen)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (!HMAC(EVP_sha1(), secret, (int)strlen(secret), (const unsigned char *)username,
              strlen(username), mac, &maclen))
        return -1;
    if (outlen < 4 * ((maclen + 2) / 3) + 1)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, mac, (int)maclen);
    return 0;
}

/* A JSON array of the comma-separated items of `list`. */
static json_t *url_array(const char *list)
{
    json_t *a = json_array();
    const char *p = list;
    while (a && *p) {
        size_t n = strcspn(p, ",");
        if (n)
            json_array_append_new(a, json_stringn(p, n));
        p += n;
        if (*p == ',')
            p++;
    }
    return a;
}

json_t *hr_ice_servers(const struct hr_ice_config *cfg, const char *id, time_t now)
{
    json_t *servers = json_array();
    if (!servers)
        return NULL;
    if (cfg->stun[0])
        json_array_append_new(servers, json_pack("{s:o}", "urls", url_array(cfg->stun)));
    if (cfg->turn[0]) {
        json_t *turn = json_pack("{s:o}", "urls", url_array(cfg->turn));
        if (turn && cfg->turn_secret[0]) {
            char user[160], cred[64];
            snprintf(user, sizeof(user), "%lld:%s", (long long)now + cfg->turn_ttl_s, id);
            if (hr_ice_turn_credential(cfg->turn_secret, user, cred, sizeof(cred)) == 0) {
                json_object_set_new(turn, "username", json_string(user));
                json_object_set_new(turn, "credential", json_string(cred));
            }
        }
        json_array_append_new(servers, turn);
    }
    size_t i;
    json_t *e;
    json_array_foreach(cfg->extra, i, e) json_array_append(servers, e);
    return servers;
}

/* A stun:, turn: or turns: URL. */
static bool ice_url(json_t *v)
{
    const char *s = json_string_value(v);
    return s &&
           (strncmp(s, "stun:", 5) == 0 || strncmp(s, "turn:", 5) == 0 ||
            strncmp(s, "turns:", 6) == 0) &&
           strlen(s) == json_string_length(v) && json_string_length(v) < 1024;
}

int hr_ice_parse_static(const char *json, json_t **out, char *err, size_t errlen)
{
    json_error_t e;
    json_t *a = json_loads(json, JSON_REJECT_DUPLICATES, &e);
    *out = NULL;
    if (!a) {
        snprintf(err, errlen, "invalid JSON at line %d, column %d: %s", e.line, e.column, e.text);
        return -1;
    }
    if (!json_is_array(a)) {
        snprintf(err, errlen, "want a JSON array of RTCIceServer objects");
        json_decref(a);
        return -1;
    }
    size_t i;
    json_t *s;
    json_array_foreach(a, i, s)
    {
        json_t *urls = json_object_get(s, "urls");
        bool ok = json_is_object(s) && urls;
        if (ok && json_is_array(urls)) {
            size_t k;
            json_t *u;
            ok = json_array_size(urls) > 0;
            json_array_foreach(urls, k, u) ok &= ice_url(u);
        } else if (ok) {
            ok = ice_url(urls);
        }
        static const char *const strings[] = {"username", "credential", "credentialType"};
        for (size_t k = 0; ok && k < sizeof(strings) / sizeof(strings[0]); k++) {
            json_t *v = json_object_get(s, strings[k]);
            ok = !v || json_is_string(v);
        }
        if (!ok) {
            snprintf(err, errlen,
                     "entry %zu: want an object with \"urls\" (a stun:, turn: or turns: URL, or "
                     "an array of them) and string username, credential, credentialType",
                     i);
            json_decref(a);
            return -1;
        }
    }
    *out = a;
    return 0;
}
