#include "log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int hr_log_level = HR_LOG_INFO;
bool hr_log_json;

static const char *names[] = {"error", "warn", "info", "debug"};

int hr_log_parse_level(const char *s)
{
    for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
        if (strcasecmp(s, names[i]) == 0)
            return i;
    return -1;
}

/* Whether stderr is the systemd journal: JOURNAL_STREAM names its device
 * and inode ("<dev>:<ino>", decimal), which systemd sets for a service whose
 * stderr it connects to the journal. Checked once. */
static bool to_journal(void)
{
    static int known = -1;
    if (known < 0) {
        const char *js = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        known = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
                (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
    }
    return known == 1;
}

/* Appends `s` to out[o..cap) as the inside of a JSON string: quotes,
 * backslashes and every byte outside printable ASCII escaped (so the line is
 * valid JSON whatever bytes a message holds). Returns the new length. */
static size_t json_escape(char *out, size_t o, size_t cap, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 7 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            out[o++] = '\\';
            out[o++] = (char)*p;
        } else if (*p >= 0x20 && *p < 0x7f) {
            out[o++] = (char)*p;
        } else {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", *p);
        }
    }
    return o;
}

void hr_log_write(int level, const char *fmt, ...)
{
    char line[1400], msg[1024], when[40];
    struct timespec ts;
    struct tm tm;
    const char *name = names[level < 0 ? 0 : level > 3 ? 3 : level];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t w = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + w, sizeof(when) - w, ".%03ldZ", ts.tv_nsec / 1000000);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t n = 0;
    /* The journal reads a syslog priority at the start of a line (sd-daemon.h:
     * <3> error, <4> warning, <6> info, <7> debug) and keeps its own time;
     * the time stays in the line for a reader of the text. */
    if (to_journal()) {
        static const char prio[] = {'3', '4', '6', '7'};
        n = (size_t)snprintf(line, sizeof(line), "<%c>",
                             prio[level < 0   ? 0
                                  : level > 3 ? 3
                                              : level]);
    }
    if (hr_log_json) {
        n += (size_t)snprintf(line + n, sizeof(line) - n,
                              "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", when, name);
        n = json_escape(line, n, sizeof(line) - 3, msg);
        memcpy(line + n, "\"}", 3);
        n += 2;
    } else {
        n += (size_t)snprintf(line + n, sizeof(line) - n, "%s %-5s %s", when, name, msg);
        if (n >= sizeof(line) - 1)
            n = sizeof(line) - 2;
    }
    /* One fputs per line so that lines from concurrent processes sharing the
     * terminal do not interleave mid-line. */
    line[n] = '\n';
    line[n + 1] = '\0';
    fputs(line, stderr);
}

long hr_log_limit_take(struct hr_log_limit *l)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    if (ts.tv_sec != l->second) {
        l->second = ts.tv_sec;
        l->printed = 0;
    }
    if (l->printed >= HR_LOG_LIMIT_BURST) {
        l->suppressed++;
        return -1;
    }
    l->printed++;
    long s = (long)l->suppressed;
    l->suppressed = 0;
    return s;
}

char *hr_log_escape(char *out, size_t outlen, const void *in, size_t len)
{
    const unsigned char *p = in;
    size_t o = 0;
    if (outlen == 0)
        return out;
    for (size_t i = 0; i < len; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\') {
            if (o + 1 >= outlen)
                break;
            out[o++] = (char)p[i];
        } else {
            if (o + 4 >= outlen)
                break;
            snprintf(out + o, outlen - o, "\\x%02x", p[i]);
            o += 4;
        }
    }
    out[o] = '\0';
    return out;
}

char *hr_addr_str(char *out, size_t outlen, const struct sockaddr *sa)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(out, outlen, "%s:%u", ip, ntohs(s4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(out, outlen, "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else {
        snprintf(out, outlen, "(family %d)", sa->sa_family);
    }
    return out;
}
