/* Datagram authentication: the key file, per-host keys, signing and checking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "err.h"
#include "keys.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEX1 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define HEX2 "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

static char *write_file(const char *text, mode_t mode)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/hostreg-keys-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    chmod(path, mode);
    return path;
}

static void test_keys_load_good_file(void **state)
{
    (void)state;
    char *p = write_file("# keys\n\n1 deployment " HEX1 "\n  7 master " HEX2 "\n", 0600);
    struct hr_keyring kr;
    char err[256] = "";
    assert_int_equal(hr_keys_load(&kr, p, err, sizeof(err)), HR_OK);
    assert_int_equal(kr.n, 2);
    const struct hr_key *k = hr_keys_find(&kr, 7);
    assert_non_null(k);
    assert_int_equal(k->mode, HR_KEY_MASTER);
    assert_int_equal(k->secret[0], 0xff);
    assert_null(hr_keys_find(&kr, 2));
    unlink(p);
}

static void test_keys_load_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        mode_t mode;
    } bad[] = {
        {"1 deployment " HEX1 "\n", 0644},                    /* readable by others */
        {"1 deployment " HEX1 "\n", 0640},                    /* readable by the group */
        {"1 deployment " HEX1 "\n1 master " HEX2 "\n", 0600}, /* id twice */
        {"0 deployment " HEX1 "\n", 0600},                    /* id 0 means "none" */
        {"256 deployment " HEX1 "\n", 0600},
        {"1 deployment 0011\n", 0600},       /* short secret */
        {"1 bogus " HEX1 "\n", 0600},        /* mode */
        {"1 deployment " HEX1 "zz\n", 0600}, /* long secret */
        {"# nothing\n", 0600},               /* no key */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *p = write_file(bad[i].text, bad[i].mode);
        struct hr_keyring kr;
        char err[256] = "";
        if (hr_keys_load(&kr, p, err, sizeof(err)) != HR_E_CONFIG || !err[0])
            fail_msg("case %zu accepted: %s", i, bad[i].text);
        unlink(p);
    }
}

/* A registry's key file must be its own user's: one owned by another user
 * is refused by hr_keys_load_owned (what hostregd calls) and still read by
 * hr_keys_load (the tools'). An empty path is no key file. Changing a file's
 * owner takes root: skipped otherwise. */
static void test_keys_load_owned(void **state)
{
    (void)state;
    struct hr_keyring kr;
    char err[256] = "";
    assert_int_equal(hr_keys_load_owned(&kr, "", err, sizeof(err)), HR_OK);
    assert_int_equal(kr.n, 0);
    char *p = write_file("1 deployment " HEX1 "\n", 0600);
    assert_int_equal(hr_keys_load_owned(&kr, p, err, sizeof(err)), HR_OK);
    assert_int_equal(kr.n, 1);
    if (geteuid() != 0) {
        unlink(p);
        print_message("skipped the other owner: changing a file's owner takes root\n");
        return;
    }
    assert_int_equal(chown(p, 65534, 65534), 0);
    err[0] = '\0';
    assert_int_equal(hr_keys_load_owned(&kr, p, err, sizeof(err)), HR_E_CONFIG);
    assert_non_null(strstr(err, "owned by uid 65534"));
    assert_int_equal(hr_keys_load(&kr, p, err, sizeof(err)), HR_OK);
    unlink(p);
}

static void test_keys_master_derives_per_host(void **state)
{
    (void)state;
    struct hr_key master = {.id = 1, .mode = HR_KEY_MASTER};
    struct hr_key deploy = {.id = 2, .mode = HR_KEY_DEPLOYMENT};
    assert_int_equal(hr_keys_parse_hex(HEX1, master.secret), 0);
    assert_int_equal(hr_keys_parse_hex(HEX1, deploy.secret), 0);
    uint8_t a[HR_KEY_LEN], b[HR_KEY_LEN], d[HR_KEY_LEN];
    hr_keys_host_key(&master, "host-a", a);
    hr_keys_host_key(&master, "host-b", b);
    hr_keys_host_key(&deploy, "host-a", d);
    assert_memory_not_equal(a, b, HR_KEY_LEN);
    assert_memory_not_equal(a, master.secret, HR_KEY_LEN);
    assert_memory_equal(d, deploy.secret, HR_KEY_LEN);
}

static struct hr_request heartbeat(const char *host)
{
    struct hr_request r;
    memset(&r, 0, sizeof(r));
    r.type = HR_MSG_HEARTBEAT;
    r.seq = 42;
    snprintf(r.host_id, sizeof(r.host_id), "%s", host);
    snprintf(r.room_id, sizeof(r.room_id), "room1");
    return r;
}

static void test_keys_signed_frame_verifies_and_decodes(void **state)
{
    (void)state;
    uint8_t key[32], other[32], buf[HR_WIRE_MAX];
    hr_keys_parse_hex(HEX1, key);
    hr_keys_parse_hex(HEX2, other);
    struct hr_request r = heartbeat("550E8400-E29B-41D4-A716-446655440000");
    size_t len = hr_wire_encode_request_auth(&r, key, 9, 1795000000u, buf, sizeof(buf));
    assert_true(len > 0);
    assert_int_equal(len, hr_wire_encode_request(&r, (uint8_t[HR_WIRE_MAX]){0}, HR_WIRE_MAX) +
                              HR_WIRE_AUTH_HDR + HR_WIRE_TAG);
    struct hr_frame f;
    assert_int_equal(hr_wire_parse_header(buf, len, &f), HR_OK);
    assert_int_equal(f.key_id, 9);
    assert_int_equal(f.timestamp, 1795000000u);
    assert_int_equal(hr_wire_verify(buf, len, &f, key), HR_OK);
    assert_int_equal(hr_wire_verify(buf, len, &f, other), HR_E_AUTH);
    char host[HR_ID_MAX + 1];
    assert_int_equal(hr_wire_peek_host(&f, host), HR_OK);
    assert_string_equal(host, "550e8400-e29b-41d4-a716-446655440000"); /* canonical */
    assert_int_equal(hr_wire_decode_payload(&f), HR_OK);
    assert_string_equal(f.req.room_id, "room1");

    /* Every single bit flipped anywhere is refused (or unreadable). */
    for (size_t i = 0; i < len * 8; i++) {
        buf[i / 8] ^= (uint8_t)(1 << (i % 8));
        struct hr_frame g;
        int rc = hr_wire_parse_header(buf, len, &g);
        if (rc == HR_OK && (g.flags & HR_WIRE_FLAG_AUTH))
            assert_int_equal(hr_wire_verify(buf, len, &g, key), HR_E_AUTH);
        buf[i / 8] ^= (uint8_t)(1 << (i % 8));
    }
    /* An unsigned frame never verifies. */
    len = hr_wire_encode_request(&r, buf, sizeof(buf));
    assert_int_equal(hr_wire_parse_header(buf, len, &f), HR_OK);
    assert_int_equal(hr_wire_verify(buf, len, &f, key), HR_E_AUTH);
}

static void test_keys_peek_host_cases(void **state)
{
    (void)state;
    uint8_t buf[HR_WIRE_MAX];
    struct hr_frame f;
    char host[HR_ID_MAX + 1];
    struct hr_request r = heartbeat("sim-host-1-1a2b3c4d");
    size_t len = hr_wire_encode_request(&r, buf, sizeof(buf));
    assert_int_equal(hr_wire_parse_header(buf, len, &f), HR_OK);
    assert_int_equal(hr_wire_peek_host(&f, host), HR_OK);
    assert_string_equal(host, "sim-host-1-1a2b3c4d");
    /* No host at all, a bad one, and a malformed payload. */
    static const uint8_t none[] = {'H', 'R', 1, 1, 0, 0x08, 0x01};
    static const uint8_t badid[] = {'H', 'R', 1, 1, 0, 0x1a, 0x02, 'a', ' '};
    static const uint8_t trunc[] = {'H', 'R', 1, 1, 0, 0x1a, 0x09, 'a'};
    assert_int_equal(hr_wire_parse_header(none, sizeof(none), &f), HR_OK);
    assert_int_equal(hr_wire_peek_host(&f, host), HR_E_HOST_ID);
    assert_int_equal(hr_wire_parse_header(badid, sizeof(badid), &f), HR_OK);
    assert_int_equal(hr_wire_peek_host(&f, host), HR_E_HOST_ID);
    assert_int_equal(hr_wire_parse_header(trunc, sizeof(trunc), &f), HR_OK);
    assert_int_equal(hr_wire_peek_host(&f, host), HR_E_DECODE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_load_good_file),
        cmocka_unit_test(test_keys_load_refusals),
        cmocka_unit_test(test_keys_load_owned),
        cmocka_unit_test(test_keys_master_derives_per_host),
        cmocka_unit_test(test_keys_signed_frame_verifies_and_decodes),
        cmocka_unit_test(test_keys_peek_host_cases),
    };
    return cmocka_run_group_tests_name("keys", tests, NULL, NULL);
}
