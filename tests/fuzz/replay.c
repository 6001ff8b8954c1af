/* A main() for the fuzz harnesses when libFuzzer is not there (the gcc build):
 * runs LLVMFuzzerTestOneInput once over every file named on the command line,
 * and over every regular file of every directory named, in name order so a
 * failure is reproducible. This is how ctest runs each corpus without clang.
 * Exit status: 0 when every input ran, 1 when one could not be read (a broken
 * invariant aborts inside the harness). */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

/* Reads `path` into a buffer of exactly its size, so that a sanitizer build
 * catches a harness or decoder that reads past the end of its input. */
static int run_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    uint8_t *buf = NULL;
    if (fseek(fp, 0, SEEK_END) != 0)
        goto out;
    long len = ftell(fp);
    if (len < 0 || fseek(fp, 0, SEEK_SET) != 0)
        goto out;
    /* malloc(0) may return NULL: keep one byte, but pass the true size. */
    buf = malloc(len ? (size_t)len : 1);
    if (!buf || (len && fread(buf, 1, (size_t)len, fp) != (size_t)len))
        goto out;
    LLVMFuzzerTestOneInput(buf, (size_t)len);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "replay: %s: cannot read\n", path);
    free(buf);
    fclose(fp);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of `dir`. Returns how many ran, or -1. */
static long run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    long ran = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, cap * sizeof(*names));
            if (!grown) {
                ran = -1;
                goto out;
            }
            names = grown;
        }
        size_t plen = strlen(dir) + 1 + strlen(e->d_name) + 1;
        if (!(names[n] = malloc(plen))) {
            ran = -1;
            goto out;
        }
        snprintf(names[n++], plen, "%s/%s", dir, e->d_name);
    }
    qsort(names, n, sizeof(*names), by_name);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(names[i], &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (run_file(names[i]) != 0) {
            ran = -1;
            goto out;
        }
        ran++;
    }
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return ran;
}

int main(int argc, char **argv)
{
    long total = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        long ran;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        ran = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i]) == 0 ? 1 : -1;
        if (ran < 0)
            return 1;
        total += ran;
    }
    /* An empty corpus would make the test pass while testing nothing. */
    if (total == 0) {
        fprintf(stderr, "replay: no inputs\n");
        return 1;
    }
    printf("replay: %ld inputs, no invariant broken\n", total);
    return 0;
}
