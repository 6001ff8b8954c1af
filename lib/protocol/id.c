#include "id.h"

#include "parse.h"

#include <string.h>

bool hr_id_valid(const char *s, size_t len)
{
    if (len == 0 || len > HR_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

bool hr_id_canon(const char *s, size_t len, char out[HR_ID_MAX + 1])
{
    uint8_t uuid[16];
    if (!hr_id_valid(s, len)) {
        out[0] = '\0';
        return false;
    }
    if (hr_uuid_parse(s, len, uuid)) {
        hr_uuid_format(uuid, out);
        return true;
    }
    memmove(out, s, len); /* out may be s */
    out[len] = '\0';
    return true;
}

bool hr_uuid_parse(const char *s, size_t len, uint8_t out[16])
{
    if (len != HR_UUID_LEN)
        return false;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
            i++;
            continue;
        }
        int hi = hr_hex_digit(s[i]), lo = hr_hex_digit(s[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[o++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return o == 16;
}

void hr_uuid_format(const uint8_t in[16], char out[HR_UUID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[in[i] >> 4];
        out[o++] = hex[in[i] & 15];
    }
    out[o] = '\0';
}
