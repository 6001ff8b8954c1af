#include "decode.h"

#include "config.h"
#include "err.h"
#include "inspect.h"
#include "keyopt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct decode_config {
    struct hr_common common; /* regions, for the daemon's verdict */
    struct hr_key_opt key;
    int json;
    int lines;
    int no_window;
};

HR_OPT_FLAG(set_json, struct decode_config, json)

HR_OPT_FLAG(set_lines, struct decode_config, lines)

HR_OPT_FLAG(set_no_window, struct decode_config, no_window)

static int set_key_file(void *c, const char *v, char *err, size_t errlen)
{
    return hr_key_opt_file(&((struct decode_config *)c)->key, v, err, errlen);
}

static const struct hr_opt options[] = {
    {"key-file", 'k', "FILE", NULL,
     "the registry's key file: check authentication as it would, the timestamp within +/-TTL "
     "of now included",
     set_key_file, NULL},
    {"ttl", 0, "SECONDS", "30", "the registry's --ttl: the timestamp window is +/-TTL",
     hr_common_set_ttl, NULL},
    /* Datagrams pasted here are usually fresh, so by default the verdict is
     * the one hostregd would give now; an old one is judged on its tag alone
     * with this. */
    {"no-time-window", 0, NULL, NULL,
     "with --key-file: do not check the timestamp (judge an old datagram by its tag)",
     set_no_window, NULL},
    {"json", 'j', NULL, NULL, "one JSON object per datagram", set_json, NULL},
    {"lines", 0, NULL, NULL,
     "stdin: every non-empty line is a datagram (default: blocks "
     "separated by blank lines)",
     set_lines, NULL},
    {"regions", 0, "LIST", "us-east-1,us-west-1,eu-central,local",
     "the daemon's regions, for its verdict", hr_common_set_regions, NULL},
    {"default-region", 0, "REGION", "local", "the daemon's default region",
     hr_common_set_default_region, NULL},
    {0},
};

/* Decodes one datagram's text; returns 1 when it was refused or unreadable. */
static int one(const struct decode_config *cfg, const char *text)
{
    uint8_t buf[HR_WIRE_MAX * 2];
    long n = hr_parse_datagram_text(text, buf, sizeof(buf));
    if (n < 0) {
        if (cfg->json)
            printf("{\"verdict\":\"unreadable\",\"message\":\"not hex or base64\"}\n");
        else
            printf("unreadable: not hex or base64 (or longer than %d bytes)\n", 2 * HR_WIRE_MAX);
        return 1;
    }
    struct hr_inspect r;
    const struct hr_datagram_ctx ctx = {&cfg->common.rules, cfg->key.loaded ? &cfg->key.kr : NULL,
                                        cfg->common.ttl_s,
                                        cfg->no_window ? 0 : (int64_t)time(NULL)};
    hr_inspect(buf, (size_t)n, &ctx, false, &r);
    if (cfg->json) {
        json_t *o = hr_inspect_json(&r);
        json_dumpf(o, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(o);
    } else {
        hr_inspect_print(stdout, &r);
        putchar('\n');
    }
    return r.v.kind != HR_VERDICT_ACCEPT;
}

int hr_cmd_decode(int argc, char **argv)
{
    struct decode_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    int idx = hr_opts_parse(
        options, &cfg, argc, argv, "hostreg decode [options] [HEX|BASE64 ...]",
        "Decodes hostreg datagrams and says what hostregd would do with each: valid, dropped\n"
        "without an answer (not a readable frame), or answered invalid (a rule broken), with\n"
        "the exact reason. The datagram comes from the arguments (joined), or from stdin.\n"
        "With --key-file a signed datagram's timestamp must be within +/-TTL of now, as hostregd\n"
        "checks it on receipt: an older one is dropped bad_auth (stale) unless --no-time-window.\n"
        "Exit status: 0 all valid, 1 some refused or unreadable, 2 usage error.");
    char err[256];
    if (hr_rules_set_regions(&cfg.common.rules, cfg.common.regions_list, cfg.common.default_region,
                             err, sizeof(err)) != HR_OK) {
        fprintf(stderr, "error: %s\n", err);
        return 2;
    }
    if (idx < argc) {
        size_t total = 1;
        for (int i = idx; i < argc; i++)
            total += strlen(argv[i]) + 1;
        char *text = calloc(1, total);
        if (!text)
            return 2;
        for (int i = idx; i < argc; i++) {
            strcat(text, argv[i]);
            strcat(text, " ");
        }
        int rc = one(&cfg, text);
        free(text);
        return rc;
    }
    /* stdin: datagrams separated by blank lines (xxd -p wraps one over several
     * lines), or one per line with --lines. */
    int bad = 0, any = 0;
    char line[4096];
    char block[16384];
    size_t used = 0;
    for (;;) {
        char *got = fgets(line, sizeof(line), stdin);
        int blank = !got || strspn(line, " \t\r\n") == strlen(line);
        if (got && !blank) {
            size_t l = strlen(line);
            if (used + l + 1 >= sizeof(block)) {
                fprintf(stderr, "error: datagram text too long\n");
                return 2;
            }
            memcpy(block + used, line, l + 1);
            used += l;
        }
        if ((blank || cfg.lines || !got) && used) {
            bad |= one(&cfg, block);
            any = 1;
            used = 0;
            block[0] = '\0';
        }
        if (!got)
            break;
    }
    if (!any) {
        fprintf(stderr, "error: no datagram given (argument or stdin); try --help\n");
        return 2;
    }
    return bad;
}
