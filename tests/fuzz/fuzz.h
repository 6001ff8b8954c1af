/* What every fuzz harness shares: the libFuzzer entry point, defined once per
 * harness, and CHECK, which aborts on a broken invariant. The same harness is
 * linked either with libFuzzer (HOSTREG_FUZZ=ON, clang) or with replay.c,
 * which runs it over its committed corpus under ctest. */
#ifndef HR_FUZZ_H
#define HR_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Runs one input. Returns 0 (libFuzzer reserves other values); a broken
 * invariant aborts, which both libFuzzer and ctest report as a crash. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Not assert(): release builds define NDEBUG, and the checks are the point. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
