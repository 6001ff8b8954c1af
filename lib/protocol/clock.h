/* Milliseconds of the monotonic clock, for timeouts, leases and rate limits
 * (never for timestamps that leave the process). Coarse: the kernel's tick
 * (1-4 ms), cheap enough to read per datagram. */
#ifndef HR_CLOCK_H
#define HR_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t hr_clock_ms(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline uint64_t hr_mono_ms(void)
{
    return hr_clock_ms(CLOCK_MONOTONIC);
}

static inline uint64_t hr_mono_coarse_ms(void)
{
    return hr_clock_ms(CLOCK_MONOTONIC_COARSE);
}

#endif
