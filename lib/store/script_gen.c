/* Build-time generator of the Lua scripts as the store sends them: for each
 * script of HR_SCRIPTS, the tables of script.h and request.h's HR_STATUSES as
 * Lua constants, then lib/store/lua/entry.lua, then lib/store/lua/<name>.lua. Writes
 * OUT/lua/<name>.lua (the whole script, for bench/run and for reading) and
 * OUT/lua_scripts.h (the same as C string constants HR_LUA_<NAME>, compiled
 * into the library so the programs need nothing from the source tree).
 *
 *   hostreg-script-gen LUA_DIR OUT_DIR
 *
 * The Lua constants:
 *
 *   STATUS_<NAME> = 'text', STATUSES = {'idle', ...} (in table order)
 *   KEY_<NAME> = 'text'           OP_<NAME> = 'text'       RES_<NAME> = code
 *   BKEY_<NAME>: a bucket key's place (from 1) in its group of BKEYS in KEYS
 *   <SCRIPT>_<ARG> = ARGV index (from 1); <SCRIPT>_REGIONS: the first region;
 *   SUM_<FIELD>: offsets in a summary change (from 0), SUM_STRIDE
 *   REQUESTS_FIRST: ARGV index of the first request; REQ_<FIELD> offsets in
 *   a request (from 0) and REQ_STRIDE
 *   CLAIMED_<FIELD>: positions in a claim reply (from 1), CLAIMED_N;
 *   LISTED_<FIELD>: offsets within a listed host (from 0), LISTED_STRIDE
 *
 * Nothing here is a rule of its own: a value printed is the value the C side
 * compiles. */
#include "script.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void constants(FILE *o)
{
    fprintf(o, "-- Generated from lib/store/script.h and lib/protocol/request.h by "
               "lib/store/script_gen.c.\n");
#define STATUS_(name, num, text) fprintf(o, "local STATUS_%s = '%s'\n", #name, text);
    HR_STATUSES(STATUS_)
#define STATUS_ITEM_(name, num, text) fprintf(o, "'%s', ", text);
    fprintf(o, "local STATUSES = {");
    HR_STATUSES(STATUS_ITEM_)
    fprintf(o, "}\n");
#define KEY_(name, text) fprintf(o, "local KEY_%s = '%s'\n", #name, text);
    HR_SCRIPT_KEYS(KEY_)
    /* A bucket's keys in KEYS: group g's key NAME is KEYS[g * BKEYS + BKEY_NAME]. */
#define BKEY_(name, text) fprintf(o, "local BKEY_%s = %d\n", #name, HR_SCRIPT_BKEY_##name + 1);
    HR_SCRIPT_BUCKET_KEYS(BKEY_)
    fprintf(o, "local BKEYS = %d\n", HR_SCRIPT_BKEYS);
#define OP_(name, text) fprintf(o, "local OP_%s = '%s'\n", #name, text);
    HR_SCRIPT_OPS(OP_)
#define RES_(name, code, result, reason) fprintf(o, "local RES_%s = %d\n", #name, code);
    HR_SCRIPT_RESULTS(RES_)
    /* Argument positions count from 1 in Lua's ARGV. */
#define ARG_(s, n) fprintf(o, "local %s_%s = %d\n", #s, #n, HR_SCRIPT_##s##_##n + 1);
    HR_SCRIPT_REQUESTS_ARGS(ARG_)
    fprintf(o, "local REQUESTS_FIRST = %d\n", HR_SCRIPT_REQUESTS_NARGS + 1);
    HR_SCRIPT_CLAIM_ARGS(ARG_)
    HR_SCRIPT_LIST_ARGS(ARG_)
    HR_SCRIPT_COUNT_ARGS(ARG_)
    HR_SCRIPT_SWEEP_ARGS(ARG_)
    HR_SCRIPT_RELEASE_ARGS(ARG_)
    HR_SCRIPT_REGIONS_ARGS(ARG_)
    HR_SCRIPT_CLAIMED_FIELDS(ARG_)
    fprintf(o, "local CLAIMED_N = %d\n", HR_SCRIPT_CLAIMED_N);
    /* Offsets within one request or one listed host count from 0. */
#define OFF_(s, n) fprintf(o, "local %s_%s = %d\n", #s, #n, HR_SCRIPT_##s##_##n);
    HR_SCRIPT_REQ_FIELDS(OFF_)
    fprintf(o, "local REQ_STRIDE = %d\n", HR_SCRIPT_REQ_STRIDE);
    HR_SCRIPT_LISTED_FIELDS(OFF_)
    HR_SCRIPT_SUMMARY_FIELDS(OFF_)
    fprintf(o, "local SUM_STRIDE = %d\n", HR_SCRIPT_SUM_STRIDE);
    fprintf(o, "local LISTED_STRIDE = %d\n", HR_SCRIPT_LISTED_STRIDE);
}

/* The contents of a file (malloc'd, NUL-terminated), or NULL. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        char *b = realloc(buf, cap *= 2);
        if (!b)
            free(buf);
        buf = b;
    }
    if (buf)
        buf[n] = '\0';
    fclose(f);
    return buf;
}

/* `text` as the body of a C string literal, one source line per Lua line. */
static void c_string(FILE *o, const char *text)
{
    fputs("    \"", o);
    for (const char *p = text; *p; p++) {
        if (*p == '\\' || *p == '"')
            fprintf(o, "\\%c", *p);
        else if (*p == '\n')
            fputs(p[1] ? "\\n\"\n    \"" : "\\n", o);
        else
            fputc(*p, o);
    }
    fputs("\"", o);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name, *file;
    } scripts[] = {
#define SCRIPT_(name, file) {#name, file},
        HR_SCRIPTS(SCRIPT_)};
    char path[4096];
    if (argc != 3) {
        fprintf(stderr, "usage: hostreg-script-gen LUA_DIR OUT_DIR\n");
        return 2;
    }
    /* Entries keep a status as its first letter (entry.lua): those must
     * differ, and be lower-case letters. */
    static const char *const statuses[] = {
#define STATUS_NAME_(name, num, text) text,
        HR_STATUSES(STATUS_NAME_)};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
        for (size_t j = 0; j <= i; j++)
            if (statuses[i][0] < 'a' || statuses[i][0] > 'z' ||
                (j < i && statuses[i][0] == statuses[j][0])) {
                fprintf(stderr,
                        "hostreg-script-gen: status '%s' cannot be stored as its first "
                        "letter (entry.lua)\n",
                        statuses[i]);
                return 1;
            }
    char *consts = NULL;
    size_t clen = 0;
    FILE *m = open_memstream(&consts, &clen);
    if (!m)
        return 1;
    constants(m);
    fclose(m);
    snprintf(path, sizeof(path), "%s/entry.lua", argv[1]);
    char *entry = slurp(path);
    snprintf(path, sizeof(path), "%s/lua_scripts.h", argv[2]);
    FILE *h = fopen(path, "w");
    if (!entry || !h) {
        fprintf(stderr, "hostreg-script-gen: %s: %s\n", path, strerror(errno));
        return 1;
    }
    fprintf(h, "/* Generated by lib/store/script_gen.c from lib/store/script.h and lib/store/lua/; "
               "do not edit. */\n");
    for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s.lua", argv[1], scripts[i].file);
        char *text = slurp(path);
        if (!text) {
            fprintf(stderr, "hostreg-script-gen: %s: %s\n", path, strerror(errno));
            return 1;
        }
        size_t n = strlen(consts) + strlen(entry) + strlen(text) + 1;
        char *whole = malloc(n);
        if (!whole)
            return 1;
        snprintf(whole, n, "%s%s%s", consts, entry, text);
        fprintf(h, "static const char HR_LUA_%s[] =\n", scripts[i].name);
        c_string(h, whole);
        fprintf(h, ";\n");
        snprintf(path, sizeof(path), "%s/lua/%s.lua", argv[2], scripts[i].file);
        FILE *l = fopen(path, "w");
        if (!l || fputs(whole, l) == EOF || fclose(l) != 0) {
            fprintf(stderr, "hostreg-script-gen: %s: %s\n", path, strerror(errno));
            return 1;
        }
        free(whole);
        free(text);
    }
    free(entry);
    free(consts);
    return fclose(h) == 0 ? 0 : 1;
}
