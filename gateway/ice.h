/* The iceServers list handed to a matched client: STUN URLs as configured,
 * and TURN URLs with time-limited credentials made the way coturn's
 * use-auth-secret (the TURN REST API) checks them, so no call to the TURN
 * server is needed: username "<expiry unix time>:<id>", credential
 * base64(HMAC-SHA1(secret, username)). */
#ifndef HR_ICE_H
#define HR_ICE_H

#include <jansson.h>
#include <stdint.h>
#include <time.h>

struct hr_ice_config {
    char stun[1024];       /* comma-separated stun: URLs; "" for none */
    char turn[1024];       /* comma-separated turn:/turns: URLs; "" for none */
    char turn_secret[256]; /* coturn static-auth-secret; "" sends TURN URLs bare */
    uint32_t turn_ttl_s;   /* credential lifetime */
    /* Static RTCIceServer entries (--ice-servers: a TURN provider's fixed
     * credentials, say), sent after the others as given; NULL for none. */
    json_t *extra;
};

/* Reads --ice-servers: a JSON array of RTCIceServer objects, each with
 * "urls" (a stun:, turn: or turns: URL, or a non-empty array of them) and, as
 * strings when present, "username", "credential" and "credentialType".
 * Returns 0 with the array in *out (the caller's), or -1 with the reason. */
int hr_ice_parse_static(const char *json, json_t **out, char *err, size_t errlen);

/* The TURN REST credential for `username`: base64 of HMAC-SHA1 into out
 * (at least 29 bytes). Returns 0, or -1 when libcrypto fails. */
int hr_ice_turn_credential(const char *secret, const char *username, char *out, size_t outlen);

/* A new JSON array of RTCIceServer objects; `id` names the session in the
 * TURN username. NULL only when out of memory. */
json_t *hr_ice_servers(const struct hr_ice_config *cfg, const char *id, time_t now);

#endif
