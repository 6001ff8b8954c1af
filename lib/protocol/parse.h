/* Strict parsers of what operators and hosts type: whole-string numbers in a
 * range (never atoi) and "host:port" addresses. Shared by the programs'
 * options (config.h) and the host library. */
#ifndef HR_PARSE_H
#define HR_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Strict numbers: the whole string, in [min, max]; no sign, no space. 0 or -1. */
int hr_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out);
int hr_parse_u64(const char *s, uint64_t *out);

/* The value of hex digit c (either case), or -1 for any other character. */
int hr_hex_digit(int c);

/* "host:port", "[v6]:port" or "port" (then on `dflt_host`); resolves names.
 * 0, or -1 with the reason in err. */
int hr_parse_hostport(const char *s, const char *dflt_host, struct sockaddr_storage *out,
                      socklen_t *outlen, char *err, size_t errlen);

#endif
