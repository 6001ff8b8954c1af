/* Logging: one line per event on stderr, with a level checked before the
 * arguments are evaluated. Client-caused events go through HR_LOG_LIMITED so a
 * flood of bad input cannot flood the log. */
#ifndef HR_LOG_H
#define HR_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

enum hr_log_level { HR_LOG_ERROR = 0, HR_LOG_WARN, HR_LOG_INFO, HR_LOG_DEBUG };

extern int hr_log_level;
/* --log-format json: each line one JSON object {"time","level","msg"}, for
 * log shippers; else text, "<time> <level> <message>". */
extern bool hr_log_json;

/* Parses "error", "warn", "info" or "debug"; returns -1 for anything else. */
int hr_log_parse_level(const char *s);

void hr_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define HR_LOG(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) <= hr_log_level)                                                                 \
            hr_log_write((lvl), __VA_ARGS__);                                                      \
    } while (0)

/* At most HR_LOG_LIMIT_BURST lines per second from one call site (per thread:
 * each daemon worker has its own allowance); the lines
 * it suppressed are counted in the next line it lets through. */
#define HR_LOG_LIMIT_BURST 10
struct hr_log_limit {
    long second;
    unsigned printed;
    unsigned long suppressed;
};
/* Returns how many lines were suppressed before this one (>= 0) when this one
 * may be printed, or -1 when it must be suppressed. */
long hr_log_limit_take(struct hr_log_limit *l);

#define HR_LOG_LIMITED(lvl, fmt, ...)                                                              \
    do {                                                                                           \
        static _Thread_local struct hr_log_limit hr_ll_;                                           \
        if ((lvl) <= hr_log_level) {                                                               \
            long hr_sup_ = hr_log_limit_take(&hr_ll_);                                             \
            if (hr_sup_ > 0)                                                                       \
                hr_log_write((lvl), fmt " (%ld similar lines suppressed)", __VA_ARGS__, hr_sup_);  \
            else if (hr_sup_ == 0)                                                                 \
                hr_log_write((lvl), fmt, __VA_ARGS__);                                             \
        }                                                                                          \
    } while (0)

/* Writes `len` bytes of `in` into `out` (NUL-terminated, at most outlen-1
 * chars), escaping anything outside printable ASCII as \xNN. Returns out. */
char *hr_log_escape(char *out, size_t outlen, const void *in, size_t len);

/* Formats an IPv4 or IPv6 socket address as "1.2.3.4:5" or "[::1]:5". */
#define HR_ADDRSTRLEN 64
char *hr_addr_str(char *out, size_t outlen, const struct sockaddr *sa);

#endif
