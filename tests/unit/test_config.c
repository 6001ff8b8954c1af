/* Unit tests of configuration (lib/store/config.c) and of the Redis URL parser
 * (hr_redis_url_parse in lib/store/redis_url.c): the strict number parsers, addresses,
 * the order defaults < HOSTREG_* environment < flags, and what
 * hr_common_finish derives and refuses. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "err.h"
#include "store.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* A unix socket path of 107 characters: with its NUL, as long as
 * sockaddr_un's sun_path (108) allows. */
#define P8 "pppppppp"
#define PATH107 "/" P8 P8 P8 P8 P8 P8 P8 P8 P8 P8 P8 P8 P8 "pp"

/* --- strict numbers --- */

/* Refused by both parsers: not the whole string a plain decimal number. */
static const char *const not_numbers[] = {
    "", " 1", "1 ", "+1", "-1", "-0", "1x", "x1", "0x10", "1.0", "1e3", "1,000", "\t1",
};

static void test_config_parse_u64(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t want;
    } ok[] = {
        {"0", 0},
        {"1", 1},
        {"9099", 9099},
        {"4294967296", 4294967296ULL},
        {"18446744073709551615", UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 12345;
        if (hr_parse_u64(ok[i].s, &v) != 0)
            fail_msg("'%s' refused", ok[i].s);
        assert_true(v == ok[i].want);
    }

    static const char *const bad[] = {"18446744073709551616", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v;
        if (hr_parse_u64(bad[i], &v) != -1)
            fail_msg("overflow '%s' accepted", bad[i]);
    }
    for (size_t i = 0; i < sizeof(not_numbers) / sizeof(not_numbers[0]); i++) {
        uint64_t v;
        if (hr_parse_u64(not_numbers[i], &v) != -1)
            fail_msg("'%s' accepted", not_numbers[i]);
    }
}

static void test_config_parse_u32(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint32_t min, max;
        int want;
        uint32_t value;
    } cases[] = {
        {"9", 10, 20, -1, 0},
        {"10", 10, 20, 0, 10},
        {"20", 10, 20, 0, 20},
        {"21", 10, 20, -1, 0},
        {"4", 5, 5, -1, 0},
        {"5", 5, 5, 0, 5},
        {"6", 5, 5, -1, 0},
        {"0", 0, 1, 0, 0},
        {"0", 1, 65535, -1, 0},
        {"1", 1, 65535, 0, 1},
        {"65535", 1, 65535, 0, 65535},
        {"65536", 1, 65535, -1, 0},
        {"4294967295", 0, UINT32_MAX, 0, UINT32_MAX},
        /* above 32 bits: refused, not truncated to 0 */
        {"4294967296", 0, UINT32_MAX, -1, 0},
        {"18446744073709551616", 0, UINT32_MAX, -1, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t v = 777;
        int rc = hr_parse_u32(cases[i].s, cases[i].min, cases[i].max, &v);
        if (rc != cases[i].want)
            fail_msg("'%s' in [%u, %u]: returned %d, want %d", cases[i].s, cases[i].min,
                     cases[i].max, rc, cases[i].want);
        if (rc == 0)
            assert_int_equal(v, cases[i].value);
    }
    for (size_t i = 0; i < sizeof(not_numbers) / sizeof(not_numbers[0]); i++) {
        uint32_t v;
        if (hr_parse_u32(not_numbers[i], 0, UINT32_MAX, &v) != -1)
            fail_msg("'%s' accepted", not_numbers[i]);
    }
}

/* --- addresses --- */

static void test_config_parse_hostport_accepted(void **state)
{
    (void)state;
    static const struct {
        const char *s, *dflt_host;
        int family;
        const char *addr;
        int port;
    } cases[] = {
        {"127.0.0.1:9099", "0.0.0.0", AF_INET, "127.0.0.1", 9099},
        {"[::1]:9099", "0.0.0.0", AF_INET6, "::1", 9099},
        {"9099", "127.0.0.1", AF_INET, "127.0.0.1", 9099},
        {"9099", "::1", AF_INET6, "::1", 9099},
        {"0.0.0.0:1", "127.0.0.1", AF_INET, "0.0.0.0", 1},
        {"10.1.2.3:65535", "127.0.0.1", AF_INET, "10.1.2.3", 65535},
        {"[::]:53", "127.0.0.1", AF_INET6, "::", 53},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage ss;
        socklen_t len = 0;
        char err[256] = "", text[INET6_ADDRSTRLEN] = "";
        memset(&ss, 0, sizeof(ss));
        if (hr_parse_hostport(cases[i].s, cases[i].dflt_host, &ss, &len, err, sizeof(err)) != 0)
            fail_msg("'%s' refused: %s", cases[i].s, err);
        assert_int_equal(ss.ss_family, cases[i].family);
        int port;
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
            assert_int_equal(len, sizeof(*in));
            inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
            port = ntohs(in->sin_port);
        } else {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
            assert_int_equal(len, sizeof(*in6));
            inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
            port = ntohs(in6->sin6_port);
        }
        assert_string_equal(text, cases[i].addr);
        assert_int_equal(port, cases[i].port);
    }
}

static void test_config_parse_hostport_refused(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "127.0.0.1:0",  "127.0.0.1:65536", "127.0.0.1:", "host:", "0",     "65536", "",
        "[::1]9099",    "[::1]:",          "[::1",       "[::1]", "x:80x", ":+80",  ": 80",
        "127.0.0.1:-1", "127.0.0.1:0x50",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage ss;
        socklen_t len = 0;
        char err[256] = "";
        if (hr_parse_hostport(cases[i], "127.0.0.1", &ss, &len, err, sizeof(err)) != -1)
            fail_msg("'%s' accepted", cases[i]);
        if (err[0] == '\0')
            fail_msg("'%s': no message", cases[i]);
    }
}

/* --- Redis URLs --- */

static void test_config_redis_url_accepted(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        const char *host;
        int port;
        const char *path;
        int db;
        const char *user, *pass;
    } cases[] = {
        {"redis://host", "host", 6379, "", 0, "", ""},
        {"redis://host:6380", "host", 6380, "", 0, "", ""},
        {"redis://host:6380/3", "host", 6380, "", 3, "", ""},
        {"redis://host/3", "host", 6379, "", 3, "", ""},
        {"redis://host:1/0", "host", 1, "", 0, "", ""},
        {"redis://host:65535/15", "host", 65535, "", 15, "", ""},
        {"redis://127.0.0.1:6379", "127.0.0.1", 6379, "", 0, "", ""},
        {"redis://:pass@host", "host", 6379, "", 0, "", "pass"},
        {"redis://user:pass@host:1234/2", "host", 1234, "", 2, "user", "pass"},
        {"redis://:p@ss@host", "host", 6379, "", 0, "", "p@ss"}, /* the last '@' ends it */
        /* Percent-encoded (RFC 3986): ':', '@', '/' and any byte. */
        {"redis://us%65r:p%3Ass%40w%2Fd%25@host", "host", 6379, "", 0, "user", "p:ss@w/d%"},
        {"redis://:%C3%A9t%c3%a9@host", "host", 6379, "", 0, "", "\xc3\xa9t\xc3\xa9"},
        {"redis://[::1]:6380", "::1", 6380, "", 0, "", ""},
        {"redis://[::1]", "::1", 6379, "", 0, "", ""},
        {"redis://[::1]:6380/4", "::1", 6380, "", 4, "", ""},
        {"unix:///tmp/r.sock", "", 6379, "/tmp/r.sock", 0, "", ""},
        {"unix:///tmp/r.sock?db=2", "", 6379, "/tmp/r.sock", 2, "", ""},
        {"unix:///p?db=0", "", 6379, "/p", 0, "", ""},
        {"unix:///p?db=15", "", 6379, "/p", 15, "", ""},
        {"unix://" PATH107, "", 6379, PATH107, 0, "", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct hr_redis_addr a;
        char err[256] = "";
        memset(&a, 0xa5, sizeof(a));
        int rc = hr_redis_url_parse(cases[i].url, &a, err, sizeof(err));
        if (rc != HR_OK)
            fail_msg("'%s' refused: %s", cases[i].url, err);
        assert_string_equal(a.host, cases[i].host);
        assert_int_equal(a.port, cases[i].port);
        assert_string_equal(a.path, cases[i].path);
        assert_int_equal(a.db, cases[i].db);
        assert_string_equal(a.user, cases[i].user);
        assert_string_equal(a.pass, cases[i].pass);
    }
}

/* redis-sentinel://: the sentinels (26379 by default), the master's name,
 * the data nodes' credentials and database; the master's own address is
 * left for a sentinel to give. */
static void test_config_redis_sentinel_url(void **state)
{
    (void)state;
    struct hr_redis_addr a;
    char err[256] = "";
    assert_int_equal(
        hr_redis_url_parse("redis-sentinel://u:p%40ss@s1:5000,s2,[::1]:5002/my.master-1/3", &a, err,
                           sizeof(err)),
        HR_OK);
    assert_int_equal(a.nsentinels, 3);
    assert_string_equal(a.sentinel[0].host, "s1");
    assert_int_equal(a.sentinel[0].port, 5000);
    assert_string_equal(a.sentinel[1].host, "s2");
    assert_int_equal(a.sentinel[1].port, 26379);
    assert_string_equal(a.sentinel[2].host, "::1");
    assert_int_equal(a.sentinel[2].port, 5002);
    assert_string_equal(a.master, "my.master-1");
    assert_int_equal(a.db, 3);
    assert_string_equal(a.user, "u");
    assert_string_equal(a.pass, "p@ss");
    assert_string_equal(a.host, "");
    assert_int_equal(hr_redis_url_parse("redis-sentinel://h/m", &a, err, sizeof(err)), HR_OK);
    assert_int_equal(a.nsentinels, 1);
    assert_string_equal(a.master, "m");
    assert_int_equal(a.db, 0);
    /* A plain URL names no master. */
    assert_int_equal(hr_redis_url_parse("redis://h", &a, err, sizeof(err)), HR_OK);
    assert_string_equal(a.master, "");
    assert_int_equal(a.nsentinels, 0);
    static const char *const refused[] = {
        "redis-sentinel://h", /* no master name */
        "redis-sentinel://h/",
        "redis-sentinel:///m",
        "redis-sentinel://h,/m",
        "redis-sentinel://h:0/m",
        "redis-sentinel://h/m/16",
        "redis-sentinel://h/m/x",
        "redis-sentinel://h/m b",
        "redis-sentinel://h/m%41",
        "redis-sentinel://a,b,c,d,e,f,g,h,i/m",
        "redis-sentinel://:secret@h/", /* the password is not shown */
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        err[0] = '\0';
        if (hr_redis_url_parse(refused[i], &a, err, sizeof(err)) == HR_OK)
            fail_msg("'%s' accepted", refused[i]);
        assert_true(err[0] != '\0');
        assert_null(strstr(err, "secret"));
    }
}

/* redis://h1:p1,h2:p2,...: a Redis Cluster's seeds (6379 when a port is
 * left out), host and port the first one's, credentials percent-decoded;
 * database 0 only. One node names no seeds (it may still be a cluster
 * node: the programs see that at connect). */
static void test_config_redis_cluster_url(void **state)
{
    (void)state;
    struct hr_redis_addr a;
    char err[256] = "";
    memset(&a, 0xa5, sizeof(a));
    assert_int_equal(hr_redis_url_parse("redis://u:p%40ss@n1:7000,n2,[::1]:7002,10.0.0.4:7003/0",
                                        &a, err, sizeof(err)),
                     HR_OK);
    assert_int_equal(a.nseeds, 4);
    assert_string_equal(a.seed[0].host, "n1");
    assert_int_equal(a.seed[0].port, 7000);
    assert_string_equal(a.seed[1].host, "n2");
    assert_int_equal(a.seed[1].port, 6379);
    assert_string_equal(a.seed[2].host, "::1");
    assert_int_equal(a.seed[2].port, 7002);
    assert_string_equal(a.seed[3].host, "10.0.0.4");
    assert_int_equal(a.seed[3].port, 7003);
    assert_string_equal(a.host, "n1");
    assert_int_equal(a.port, 7000);
    assert_string_equal(a.user, "u");
    assert_string_equal(a.pass, "p@ss");
    assert_int_equal(a.db, 0);
    assert_string_equal(a.master, "");
    assert_int_equal(a.nsentinels, 0);
    assert_int_equal(hr_redis_url_parse("redis://a:1,b:2", &a, err, sizeof(err)), HR_OK);
    assert_int_equal(a.nseeds, 2);
    assert_int_equal(hr_redis_url_parse("redis://a,b,c,d,e,f,g,h", &a, err, sizeof(err)), HR_OK);
    assert_int_equal(a.nseeds, HR_SEEDS_MAX);
    assert_int_equal(hr_redis_url_parse("redis://host:6380", &a, err, sizeof(err)), HR_OK);
    assert_int_equal(a.nseeds, 0);
    assert_int_equal(hr_redis_url_parse("unix:///tmp/r.sock", &a, err, sizeof(err)), HR_OK);
    assert_int_equal(a.nseeds, 0);
    static const char *const refused[] = {
        "redis://a:1,b:2/3", /* a cluster has database 0 only */
        "redis://a:1,",
        "redis://,a:1",
        "redis://a:1,,b:2",
        "redis://a:1,b:0",
        "redis://a:1,b:x",
        "redis://a:1,[::1",
        "redis://a,b,c,d,e,f,g,h,i",
        "redis://:secret@a:1,b:99999", /* the password is not shown */
        "redis://:secret@a,b/1",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        err[0] = '\0';
        if (hr_redis_url_parse(refused[i], &a, err, sizeof(err)) == HR_OK)
            fail_msg("'%s' accepted", refused[i]);
        assert_true(err[0] != '\0');
        if (strstr(err, "secret"))
            fail_msg("'%s': the message shows the password: %s", refused[i], err);
    }
}

static void test_config_redis_url_refused(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "",
        "http://x",
        "REDIS://host",
        "redis:/host",
        "redis://",
        "redis://:pass@",
        "redis://host:0",
        "redis://host:65536",
        "redis://host:70000",
        "redis://host:",
        "redis://host:x",
        "redis://host:6379x",
        "redis://host/16",
        "redis://host/-1",
        "redis://host/x",
        "redis://host/1x",
        "redis://[::1",
        "redis://[]:6379",
        "unix://",
        "unix://relative",
        "unix://?db=1",
        "unix:///p?db=99",
        "unix:///p?db=16",
        "unix:///p?db=-1",
        "unix:///p?db=",
        "unix:///p?db=1x",
        "unix:///p?x=1",
        /* each of these was once accepted: junk after ']', signs and spaces
         * taken by strtol, an '@' in the path read as credentials */
        "redis://[::1]6380",
        "redis://[::1]junk",
        "redis://host: 80",
        "redis://host:+80",
        "redis://host/+3",
        "redis://host/ 3",
        "redis://host/-0",
        "unix:///p?db=+2",
        "unix:///p?db= 2",
        "unix:///p?db=-0",
        "redis://host/1@x",
        /* a '%' not followed by two hex digits, and an encoded NUL */
        "redis://:pa%2@host",
        "redis://:pa%zz@host",
        "redis://:pa%@host",
        "redis://:pa%00ss@host",
        /* 108 bytes of path do not fit sockaddr_un's sun_path with its NUL */
        "unix://" PATH107 "p",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct hr_redis_addr a;
        char err[256] = "";
        if (hr_redis_url_parse(cases[i], &a, err, sizeof(err)) != HR_E_CONFIG)
            fail_msg("'%s' accepted", cases[i]);
        if (err[0] == '\0')
            fail_msg("'%s': no message", cases[i]);
    }
}

/* A password never appears in an error message, whatever the error. */
static void test_config_redis_url_hides_password(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "redis://user:s3cret-pw@host:0", "redis://:s3cret-pw@host/99",
        "redis://:s3cret-pw@[::1]junk",  "redis://:s3cret-pw@",
        "redis://u:s3cret-pw%zz@host",   "redis://:s3cret-pw@host:6379x",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct hr_redis_addr a;
        char err[512] = "";
        assert_int_equal(hr_redis_url_parse(cases[i], &a, err, sizeof(err)), HR_E_CONFIG);
        if (strstr(err, "s3cret") || !strstr(err, "***"))
            fail_msg("'%s': the message shows the password or no mask: %s", cases[i], err);
    }
}

/* --- options: defaults, then environment, then flags --- */

struct tcfg {
    uint32_t num;
    char name[32];
    uint32_t flag;
    int nodefault_calls;
    char trace[256]; /* every value the num setter saw, in order */
};

static int set_num(void *cfg, const char *v, char *err, size_t errlen)
{
    struct tcfg *c = cfg;
    size_t used = strlen(c->trace);
    snprintf(c->trace + used, sizeof(c->trace) - used, "%s%s", used ? "," : "", v);
    if (hr_parse_u32(v, 0, 1000, &c->num) != 0) {
        snprintf(err, errlen, "want 0-1000");
        return -1;
    }
    return 0;
}

static int set_name(void *cfg, const char *v, char *err, size_t errlen)
{
    struct tcfg *c = cfg;
    if (strlen(v) >= sizeof(c->name)) {
        snprintf(err, errlen, "too long");
        return -1;
    }
    snprintf(c->name, sizeof(c->name), "%s", v);
    return 0;
}

static int set_flag(void *cfg, const char *v, char *err, size_t errlen)
{
    struct tcfg *c = cfg;
    if (hr_parse_u32(v, 0, 1, &c->flag) != 0) {
        snprintf(err, errlen, "want 0 or 1");
        return -1;
    }
    return 0;
}

static int set_nodefault(void *cfg, const char *v, char *err, size_t errlen)
{
    (void)v, (void)err, (void)errlen;
    struct tcfg *c = cfg;
    c->nodefault_calls++;
    return 0;
}

/* Environment names: HOSTREG_TEST_NUM, _TEST_NAME, _TEST_FLAG, _TEST_NODEFAULT. */
static const struct hr_opt test_opts[] = {
    {.name = "test-num",
     .short_name = 'n',
     .arg = "N",
     .dflt = "5",
     .help = "a number",
     .set = set_num},
    {.name = "test-name", .arg = "NAME", .dflt = "dflt", .help = "a name", .set = set_name},
    {.name = "test-flag", .short_name = 'f', .help = "a flag", .set = set_flag},
    {.name = "test-nodefault",
     .arg = "X",
     .help = "an option without default",
     .set = set_nodefault},
    {.name = NULL},
};

#define MAX_ARGS 16

/* Runs hr_opts_parse on args. The strings are the callers' literals, which
 * stay put like a real argv: glibc's getopt keeps a pointer into the last
 * argument it read across calls (hr_opts_parse resets optind to 1, not 0),
 * so copying them into a reused buffer would feed the next parse stale
 * text. getopt never writes to them; with '+' it does not permute argv. */
static int parse(const struct hr_opt *opts, void *cfg, const char *const *args)
{
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    for (; args[argc]; argc++) {
        assert_true(argc < MAX_ARGS);
        argv[argc] = (char *)args[argc];
    }
    argv[argc] = NULL;
    return hr_opts_parse(opts, cfg, argc, argv, "test [options]", "A test program.");
}

/* Removes every HOSTREG_* variable, so the caller's environment cannot leak
 * into the tests; run before each test. */
static int clear_env(void **state)
{
    (void)state;
    char names[64][128];
    size_t n = 0;
    for (char **e = environ; *e && n < 64; e++) {
        if (strncmp(*e, "HOSTREG_", 8) != 0)
            continue;
        size_t len = strcspn(*e, "=");
        if (len < sizeof(names[n]))
            snprintf(names[n++], sizeof(names[0]), "%.*s", (int)len, *e);
    }
    for (size_t i = 0; i < n; i++)
        unsetenv(names[i]);
    return 0;
}

static void test_config_opts_defaults(void **state)
{
    (void)state;
    struct tcfg c;
    memset(&c, 0, sizeof(c));
    const char *args[] = {"prog", NULL};
    assert_int_equal(parse(test_opts, &c, args), 1);
    assert_int_equal(c.num, 5);
    assert_string_equal(c.name, "dflt");
    assert_int_equal(c.flag, 0);
    assert_int_equal(c.nodefault_calls, 0); /* no default: setter not called */
    assert_string_equal(c.trace, "5");
}

static void test_config_opts_env_overrides_default(void **state)
{
    (void)state;
    struct tcfg c;
    memset(&c, 0, sizeof(c));
    setenv("HOSTREG_TEST_NUM", "7", 1);
    setenv("HOSTREG_TEST_NAME", "from-env", 1);
    setenv("HOSTREG_TEST_FLAG", "1", 1);
    setenv("HOSTREG_TEST_NODEFAULT", "x", 1);
    const char *args[] = {"prog", NULL};
    assert_int_equal(parse(test_opts, &c, args), 1);
    assert_int_equal(c.num, 7);
    assert_string_equal(c.trace, "5,7"); /* default first, then the environment */
    assert_string_equal(c.name, "from-env");
    assert_int_equal(c.flag, 1);
    assert_int_equal(c.nodefault_calls, 1);
}

static void test_config_opts_flag_overrides_env(void **state)
{
    (void)state;
    setenv("HOSTREG_TEST_NUM", "7", 1);
    setenv("HOSTREG_TEST_NAME", "from-env", 1);

    static const struct {
        const char *args[6];
        uint32_t num;
        const char *trace;
    } cases[] = {
        {{"prog", "--test-num", "9", NULL}, 9, "5,7,9"},
        {{"prog", "--test-num=10", NULL}, 10, "5,7,10"},
        {{"prog", "-n", "11", NULL}, 11, "5,7,11"},
        {{"prog", "-n12", NULL}, 12, "5,7,12"},
        {{"prog", "-n", "1", "-n", "2", NULL}, 2, "5,7,1,2"}, /* the last flag wins */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tcfg c;
        memset(&c, 0, sizeof(c));
        int first = parse(test_opts, &c, cases[i].args);
        int argc = 0;
        while (cases[i].args[argc])
            argc++;
        assert_int_equal(first, argc);
        assert_int_equal(c.num, cases[i].num);
        assert_string_equal(c.trace, cases[i].trace);
        assert_string_equal(c.name, "from-env"); /* not on the command line: env stays */
    }

    struct tcfg c;
    memset(&c, 0, sizeof(c));
    const char *args[] = {"prog", "--test-name", "from-flag", "-f", NULL};
    assert_int_equal(parse(test_opts, &c, args), 4);
    assert_string_equal(c.name, "from-flag");
    assert_int_equal(c.flag, 1); /* a flag without value gets "1" */
}

/* Parsing stops at the first non-option (a subcommand), whose index is
 * returned; and a second parse starts afresh (hr_opts_parse resets optind). */
static void test_config_opts_stops_at_first_argument(void **state)
{
    (void)state;
    struct tcfg c;
    memset(&c, 0, sizeof(c));
    const char *args[] = {"prog", "-n", "3", "send", "-f", "--test-num", "4", NULL};
    assert_int_equal(parse(test_opts, &c, args), 3);
    assert_int_equal(c.num, 3);
    assert_int_equal(c.flag, 0);

    memset(&c, 0, sizeof(c));
    const char *again[] = {"prog", "-f", "--test-num", "8", "x", NULL};
    assert_int_equal(parse(test_opts, &c, again), 4);
    assert_int_equal(c.num, 8);
    assert_int_equal(c.flag, 1);
}

/* Runs hr_opts_parse in a child and returns its exit status: 99 when it
 * returned, so the caller can tell "exited" from "carried on". */
static int exit_status(const char *const *args, const char *env, const char *value)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The child prints usage or the reason; the test only wants the status. */
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(98);
        if (env)
            setenv(env, value, 1);
        struct tcfg c;
        memset(&c, 0, sizeof(c));
        parse(test_opts, &c, args);
        _exit(99);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_config_opts_exit_status(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        const char *args[5];
        const char *env, *value;
        int want;
    } cases[] = {
        {"good", {"prog", "-n", "1", NULL}, NULL, NULL, 99},
        {"--help", {"prog", "--help", NULL}, NULL, NULL, 0},
        {"-h", {"prog", "-h", NULL}, NULL, NULL, 0},
        {"bad flag value", {"prog", "--test-num", "x", NULL}, NULL, NULL, 2},
        {"flag value out of range", {"prog", "-n", "1001", NULL}, NULL, NULL, 2},
        {"bad environment value", {"prog", NULL}, "HOSTREG_TEST_NUM", "x", 2},
        {"empty environment value", {"prog", NULL}, "HOSTREG_TEST_NUM", "", 2},
        {"unknown flag", {"prog", "--nope", NULL}, NULL, NULL, 2},
        {"unknown short flag", {"prog", "-z", NULL}, NULL, NULL, 2},
        {"missing value", {"prog", "--test-num", NULL}, NULL, NULL, 2},
        {"value given to a flag", {"prog", "--test-flag=1", NULL}, NULL, NULL, 2},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = exit_status(cases[i].args, cases[i].env, cases[i].value);
        if (got != cases[i].want)
            fail_msg("%s: exit status %d, want %d", cases[i].what, got, cases[i].want);
    }
}

/* --- the shared settings --- */

struct prog_config {
    struct hr_common common; /* first, as HR_COMMON_OPTS requires */
    int other;
};

static const struct hr_opt common_opts[] = {
    HR_COMMON_OPTS,
    {.name = NULL},
};

/* A refused --redis (or HOSTREG_REDIS) says why without showing the
 * password it holds: the program's whole stderr is read. */
static void test_config_refused_redis_hides_password(void **state)
{
    (void)state;
    static const char *const urls[] = {"redis://user:s3cret-pw@host:0",
                                       "redis://:s3cret-pw@host/99", "redis://:s3cret-pw@"};
    for (size_t i = 0; i < 2 * (sizeof(urls) / sizeof(urls[0])); i++) {
        const char *url = urls[i / 2];
        bool by_env = i % 2;
        char path[] = "/tmp/hostreg-test-stderr-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            if (dup2(fd, 2) < 0 || !freopen("/dev/null", "w", stdout))
                _exit(98);
            const char *with_flag[] = {"prog", "--redis", url, NULL}, *bare[] = {"prog", NULL};
            if (by_env)
                setenv("HOSTREG_REDIS", url, 1);
            struct prog_config pc;
            memset(&pc, 0, sizeof(pc));
            parse(common_opts, &pc, by_env ? bare : with_flag);
            _exit(99);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        char out[1024] = "";
        ssize_t n = pread(fd, out, sizeof(out) - 1, 0);
        close(fd);
        unlink(path);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 2);
        assert_true(n > 0);
        out[n] = '\0';
        if (strstr(out, "s3cret") || !strstr(out, "***"))
            fail_msg("%s (%s): %s", url, by_env ? "environment" : "flag", out);
    }
}

static void test_config_common_defaults(void **state)
{
    (void)state;
    struct prog_config pc;
    char err[256] = "";
    memset(&pc, 0, sizeof(pc));
    const char *args[] = {"prog", NULL};
    assert_int_equal(parse(common_opts, &pc, args), 1);
    if (hr_common_finish(&pc.common, err, sizeof(err)) != 0)
        fail_msg("defaults refused: %s", err);

    const struct hr_common *c = &pc.common;
    assert_string_equal(c->store.redis.host, "127.0.0.1");
    assert_int_equal(c->store.redis.port, 6379);
    assert_int_equal(c->store.redis.db, 0);
    assert_string_equal(c->store.prefix, "hr:");
    assert_int_equal(c->store.timeout_ms, 5000);
    assert_int_equal(c->store.budget_ms, 100);
    assert_int_equal(c->store.wait_ms, 250);
    assert_int_equal(c->store.max_inflight, 65536);
    assert_int_equal(c->ttl_s, 30);
    assert_int_equal(c->store.ttl_ms, 30000);
    assert_int_equal(c->interval_s, 20); /* two thirds of the TTL */
    assert_int_equal(c->rules.nregions, 4);
    assert_string_equal(c->rules.regions[c->rules.default_region], "local");
}

static void test_config_common_interval(void **state)
{
    (void)state;
    static const struct {
        const char *ttl, *interval;
        int want;
        uint32_t interval_s;
    } cases[] = {
        {"30", "0", 0, 20},       {"3", "0", 0, 2},    {"2", "0", 0, 1},
        {"1", "0", 0, 1}, /* two thirds of 1 is 0; at least 1 */
        {"86400", "0", 0, 57600}, {"30", "1", 0, 1},   {"30", "29", 0, 29},
        {"30", "30", -1, 0},      {"30", "31", -1, 0}, {"2", "2", -1, 0},
        {"10", "86400", -1, 0},   {"1", "60", -1, 0}, /* once let through for ttl 1 */
        {"1", "1", 0, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct prog_config pc;
        char err[256] = "";
        memset(&pc, 0, sizeof(pc));
        const char *args[] = {"prog", "--ttl", cases[i].ttl, "--interval", cases[i].interval, NULL};
        parse(common_opts, &pc, args);
        int rc = hr_common_finish(&pc.common, err, sizeof(err));
        if (rc != cases[i].want)
            fail_msg("ttl %s interval %s: returned %d, want %d (%s)", cases[i].ttl,
                     cases[i].interval, rc, cases[i].want, err);
        if (rc == 0) {
            assert_int_equal(pc.common.interval_s, cases[i].interval_s);
            assert_int_equal(pc.common.store.ttl_ms, pc.common.ttl_s * 1000);
        } else if (err[0] == '\0') {
            fail_msg("ttl %s interval %s: no message", cases[i].ttl, cases[i].interval);
        }
    }
}

static void test_config_common_regions(void **state)
{
    (void)state;
    static const struct {
        const char *regions, *dflt; /* NULL: the option's default */
        int want;
        size_t default_index;
    } cases[] = {
        {"a,b", "b", 0, 1},         {"local,a", NULL, 0, 0}, {"a,local", NULL, 0, 1},
        {NULL, "eu-central", 0, 2}, {"a,b", NULL, -1, 0}, /* the default "local" is not in the list
                                                           */
        {"a,b", "c", -1, 0},        {"a,b", "B", -1, 0},     {NULL, "mars", -1, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct prog_config pc;
        char err[256] = "";
        const char *args[6] = {"prog"};
        int n = 1;
        if (cases[i].regions) {
            args[n++] = "--regions";
            args[n++] = cases[i].regions;
        }
        if (cases[i].dflt) {
            args[n++] = "--default-region";
            args[n++] = cases[i].dflt;
        }
        args[n] = NULL;
        memset(&pc, 0, sizeof(pc));
        parse(common_opts, &pc, args);
        int rc = hr_common_finish(&pc.common, err, sizeof(err));
        if (rc != cases[i].want)
            fail_msg("regions %s default %s: returned %d, want %d (%s)",
                     cases[i].regions ? cases[i].regions : "(default)",
                     cases[i].dflt ? cases[i].dflt : "(default)", rc, cases[i].want, err);
        if (rc == 0)
            assert_int_equal(pc.common.rules.default_region, cases[i].default_index);
        else if (err[0] == '\0')
            fail_msg("case %zu: no message", i);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_parse_u64),
        cmocka_unit_test(test_config_parse_u32),
        cmocka_unit_test(test_config_parse_hostport_accepted),
        cmocka_unit_test(test_config_parse_hostport_refused),
        cmocka_unit_test(test_config_redis_url_accepted),
        cmocka_unit_test(test_config_redis_url_refused),
        cmocka_unit_test(test_config_redis_sentinel_url),
        cmocka_unit_test(test_config_redis_cluster_url),
        cmocka_unit_test(test_config_redis_url_hides_password),
        cmocka_unit_test(test_config_refused_redis_hides_password),
        cmocka_unit_test_setup(test_config_opts_defaults, clear_env),
        cmocka_unit_test_setup(test_config_opts_env_overrides_default, clear_env),
        cmocka_unit_test_setup(test_config_opts_flag_overrides_env, clear_env),
        cmocka_unit_test_setup(test_config_opts_stops_at_first_argument, clear_env),
        cmocka_unit_test_setup(test_config_opts_exit_status, clear_env),
        cmocka_unit_test_setup(test_config_common_defaults, clear_env),
        cmocka_unit_test_setup(test_config_common_interval, clear_env),
        cmocka_unit_test_setup(test_config_common_regions, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
