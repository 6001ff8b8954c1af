#include "key.h"

#include "config.h"
#include "keyopt.h"

#include <stdio.h>
#include <string.h>

struct key_config {
    struct hr_key_opt key;
    char host_id[HR_ID_MAX + 1];
    int json;
};

static int set_file(void *c, const char *v, char *err, size_t errlen)
{
    return hr_key_opt_file(&((struct key_config *)c)->key, v, err, errlen);
}

static int set_id(void *c, const char *v, char *err, size_t errlen)
{
    return hr_key_opt_id(&((struct key_config *)c)->key, v, err, errlen);
}

static int set_host(void *c, const char *v, char *err, size_t errlen)
{
    struct key_config *k = c;
    if (!hr_id_valid(v, strlen(v))) {
        snprintf(err, errlen, "not a hostId (a UUID or 1-64 characters of [A-Za-z0-9._:-])");
        return -1;
    }
    strcpy(k->host_id, v);
    return 0;
}

HR_OPT_FLAG(set_json, struct key_config, json)

static const struct hr_opt options[] = {
    {"key-file", 'k', "FILE", NULL, "the registry's key file (as hostregd --key-file)", set_file,
     NULL},
    {"key-id", 0, "ID", "0", "which key of the file (0: the first)", set_id, NULL},
    {"host-id", 'i', "ID", NULL, "the host", set_host, NULL},
    {"json", 'j', NULL, NULL, "as JSON", set_json, NULL},
    {0},
};

int hr_cmd_key(int argc, char **argv)
{
    struct key_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    hr_opts_parse_only(
        options, &cfg, argc, argv, "hostreg key --key-file FILE --host-id ID [options]",
        "Prints the key a host signs its datagrams with: the key itself for a deployment key,\n"
        "HMAC-SHA256(master, hostId) for a master key. Give it to that host only (the host\n"
        "library's hr_host_config.auth, or hostreg send --key HEX --key-id ID).");
    if (!cfg.key.loaded || !cfg.host_id[0]) {
        fprintf(stderr, "error: --key-file and --host-id are required (try --help)\n");
        return 2;
    }
    struct hr_host_auth auth;
    if (hr_key_opt_auth(&cfg.key, cfg.host_id, &auth) != 0) {
        fprintf(stderr, "error: no key with id %u in the file\n", cfg.key.key_id);
        return 2;
    }
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", auth.key[i]);
    if (cfg.json)
        printf("{\"hostId\":\"%s\",\"keyId\":%u,\"key\":\"%s\"}\n", cfg.host_id, auth.key_id, hex);
    else
        printf("key-id %u\nkey %s\n", auth.key_id, hex);
    return 0;
}
