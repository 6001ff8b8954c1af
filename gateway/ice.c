#include "ice.h"

#include <openssl/evp.h>
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
    return servers;
}
