/* Installing and packaging hostreg, as an operator and a host developer
 * would: `cmake --install BUILD --prefix P` lays out the programs, the host
 * library (static, and shared with a SONAME), its headers and pkg-config
 * file, the man pages, the Wireshark dissector, the systemd units and the
 * configuration files; a host application builds against that tree with
 * pkg-config alone and registers with a real hostregd; the units pass
 * `systemd-analyze verify` and rate well in `systemd-analyze security`;
 * `cpack -G DEB` makes a package with conffiles and maintainer scripts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static char prefix[64];
static const char *build_dir;

static int setup(void **state)
{
    (void)state;
    build_dir = getenv("HOSTREG_BUILD_DIR");
    if (!build_dir || !*build_dir)
        build_dir = "build";
    snprintf(prefix, sizeof(prefix), "/tmp/hostreg-install-XXXXXX");
    if (!mkdtemp(prefix))
        return -1;
    char *out;
    int rc = h_run(&out, "cmake --install %s --prefix %s 2>&1", build_dir, prefix);
    if (rc != 0)
        fprintf(stderr, "cmake --install failed:\n%s\n", out);
    free(out);
    return rc == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char *out;
    h_run(&out, "rm -rf %s", prefix);
    free(out);
    return 0;
}

/* The path under the prefix: a scratch buffer, one of a few. */
static const char *at(const char *rel)
{
    static char bufs[4][256];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, 256, "%s/%s", prefix, rel);
    return b;
}

static void test_install_tree(void **state)
{
    (void)state;
    static const char *const files[] = {
        "bin/hostregd",
        "bin/hostreg-gateway",
        "bin/hostreg",
        "lib/libhostreg-host.a",
        "lib/libhostreg-host.so",
        "lib/libhostreg-host.so.0",
        "include/hostreg/hostreg_host.h",
        "include/hostreg/request.h",
        "include/hostreg/id.h",
        "include/hostreg/err.h",
        "lib/pkgconfig/hostreg-host.pc",
        "share/man/man1/hostregd.1",
        "share/man/man1/hostreg-gateway.1",
        "share/man/man1/hostreg.1",
        "share/hostreg/wireshark/hostreg.lua",
        "lib/systemd/system/hostregd.service",
        "lib/systemd/system/hostreg-gateway.service",
        "etc/hostreg/hostregd.env",
        "etc/hostreg/hostreg-gateway.env",
        "share/doc/hostreg/PROTOCOL.md",
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        struct stat st;
        if (stat(at(files[i]), &st) != 0 || st.st_size == 0)
            fail_msg("%s is not installed (or empty)", files[i]);
        if (strncmp(files[i], "bin/", 4) == 0 && !(st.st_mode & S_IXUSR))
            fail_msg("%s is not executable", files[i]);
        if (strncmp(files[i], "etc/", 4) == 0 && (st.st_mode & 0777) != 0640)
            fail_msg("%s is mode %o, want 640 (it may hold secrets)", files[i],
                     (unsigned)(st.st_mode & 0777));
    }
    char *out;
    /* The shared library's SONAME, and only the hr_* API exported. */
    assert_int_equal(h_run(&out, "readelf -d %s | grep SONAME", at("lib/libhostreg-host.so")), 0);
    assert_non_null(strstr(out, "[libhostreg-host.so.0]"));
    free(out);
    assert_int_equal(h_run(&out,
                           "nm -D --defined-only %s | awk '{print $3}' | grep -v '^hr_' | "
                           "grep -v '^_' | head -5",
                           at("lib/libhostreg-host.so")),
                     0);
    if (out[0])
        fail_msg("exported beyond the hr_* API: %s", out);
    free(out);
    assert_int_equal(
        h_run(&out, "nm %s | grep -c ' T hr_host_start$'", at("lib/libhostreg-host.a")), 0);
    free(out);
    /* Man pages made from --help: the options are in them. */
    assert_int_equal(h_run(&out, "cat %s", at("share/man/man1/hostregd.1")), 0);
    assert_non_null(strstr(out, ".TH HOSTREGD"));
    assert_non_null(strstr(out, "metrics\\-listen"));
    free(out);
    /* Every program says its version. */
    assert_int_equal(h_run(&out, "%s --version", at("bin/hostregd")), 0);
    assert_true(strncmp(out, "hostregd ", 9) == 0);
    free(out);
}

/* A host application: `cc app.c $(pkg-config --cflags --libs hostreg-host)`
 * and nothing else, then run against a real hostregd and Redis: it
 * registers (its entry is in Redis) and leaves. */
static void test_install_host_app_with_pkg_config(void **state)
{
    (void)state;
    static const char app[] =
        "#include <hostreg/hostreg_host.h>\n"
        "#include <hostreg/err.h>\n"
        "#include <pthread.h>\n"
        "#include <stdio.h>\n"
        "#include <unistd.h>\n"
        "static volatile int registered;\n"
        "static void on_event(struct hr_host *h, const struct hr_host_event_info *ev, void *a)\n"
        "{\n"
        "    (void)a;\n"
        "    if (ev->event == HR_HOST_REGISTERED) {\n"
        "        printf(\"registered %s\\n\", hr_host_id(h));\n"
        "        fflush(stdout);\n"
        "        registered = 1;\n"
        "    }\n"
        "}\n"
        "int main(int argc, char **argv)\n"
        "{\n"
        "    (void)argc;\n"
        "    struct hr_host_config cfg = {.server = argv[1], .host_id = \"installed-app\",\n"
        "                                 .room_id = \"room-app\", .cb = on_event, .capacity = "
        "2};\n"
        "    char err[256];\n"
        "    struct hr_host *h = hr_host_start(NULL, &cfg, err, sizeof(err));\n"
        "    if (!h) {\n"
        "        fprintf(stderr, \"%s\\n\", err);\n"
        "        return 1;\n"
        "    }\n"
        "    for (int i = 0; i < 500 && !registered; i++)\n"
        "        usleep(10000);\n"
        "    hr_host_free(h);\n"
        "    printf(\"%s\\n\", hr_strerror(HR_E_SLOTS));\n"
        "    return registered ? 0 : 3;\n"
        "}\n";
    char dir[64], path[128];
    snprintf(dir, sizeof(dir), "/tmp/hostreg-app-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/app.c", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(app, f);
    fclose(f);
    char *out;
    /* A sanitizer build's library needs its runtime in the program too. */
    assert_int_equal(h_run(&out, "ldd %s | grep -c libasan || true", at("lib/libhostreg-host.so")),
                     0);
    bool asan = atoi(out) > 0;
    free(out);
    int rc = h_run(&out,
                   "cd %s && PKG_CONFIG_PATH=%s cc %s app.c $(PKG_CONFIG_PATH=%s pkg-config "
                   "--cflags --libs hostreg-host) -o app 2>&1",
                   dir, at("lib/pkgconfig"), asan ? "-fsanitize=address,undefined" : "",
                   at("lib/pkgconfig"));
    if (rc != 0)
        fail_msg("the host application does not build against the install:\n%s", out);
    free(out);

    struct h_redis r = {0};
    struct h_daemon d;
    assert_int_equal(h_redis_start(&r, 0, NULL), 0);
    assert_int_equal(h_daemon_start(&d, r.port, NULL), 0);
    redisContext *c = h_redis_connect(r.port);
    rc = h_run(&out, "LD_LIBRARY_PATH=%s %s/app 127.0.0.1:%d", at("lib"), dir, d.port);
    if (rc != 0)
        fail_msg("the host application failed (%d):\n%s", rc, out);
    assert_non_null(strstr(out, "registered installed-app"));
    assert_non_null(strstr(out, "availableSlots must be"));
    free(out);
    /* It left on hr_host_free: the entry is gone, and it was there (its
     * tombstone). */
    assert_string_equal(h_entry_field(c, "hr:h:installed-app", "status"), "");
    char tkey[160];
    h_bucket_key(c, "hr:", "installed-app", "t", tkey, sizeof(tkey));
    assert_int_equal(h_redis_int(c, "HEXISTS %s installed-app", tkey), 1);
    redisFree(c);
    assert_int_equal(h_daemon_stop(&d), 0);
    h_redis_stop(&r, false, true);
    h_run(&out, "rm -rf %s", dir);
    free(out);
}

/* The units: `systemd-analyze verify` finds nothing wrong (ExecStart is the
 * installed program, the man page of Documentation= is found), and
 * `systemd-analyze security` rates each OK (an exposure of 2 at most: the
 * hardening options are there; without them it is above 9). */
static void test_install_systemd_units(void **state)
{
    (void)state;
    char *out;
    if (h_run(&out, "command -v systemd-analyze") != 0) {
        free(out);
        skip(); /* ./dev installs systemd; a machine without it cannot check */
    }
    free(out);
    static const char *const units[] = {"hostregd", "hostreg-gateway"};
    for (size_t i = 0; i < 2; i++) {
        char unit[128];
        snprintf(unit, sizeof(unit), "lib/systemd/system/%s.service", units[i]);
        int rc =
            h_run(&out, "MANPATH=%s systemd-analyze verify %s 2>&1", at("share/man"), at(unit));
        if (rc != 0 || out[0])
            fail_msg("systemd-analyze verify %s: %d\n%s", units[i], rc, out);
        free(out);
        assert_int_equal(
            h_run(&out, "grep -E '^(Type|User|ExecStart|EnvironmentFile)=' %s", at(unit)), 0);
        assert_non_null(strstr(out, "Type=notify"));
        assert_non_null(strstr(out, "User=hostreg"));
        assert_non_null(strstr(out, at("bin/")));
        free(out);
        rc = h_run(&out, "systemd-analyze security --offline=true %s 2>&1 | grep 'Overall'",
                   at(unit));
        assert_int_equal(rc, 0);
        const char *score = strstr(out, ": ");
        assert_non_null(score);
        double exposure = atof(score + 2);
        printf("# %s: %s", units[i], out);
        if (exposure > 2.0)
            fail_msg("%s: exposure %.1f, want 2.0 at most", units[i], exposure);
        free(out);
    }
}

/* cpack -G DEB: programs in /usr/bin, units in /usr/lib/systemd/system
 * (ExecStart=/usr/bin/...), configuration in /etc/hostreg listed as
 * conffiles, and maintainer scripts that make the system user and enable
 * nothing. */
static void test_install_deb_package(void **state)
{
    (void)state;
    char *out;
    int rc = h_run(&out, "cd %s && cpack -G DEB 2>&1", build_dir);
    if (rc != 0)
        fail_msg("cpack failed:\n%s", out);
    free(out);
    char deb[512];
    assert_int_equal(h_run(&out, "ls %s/hostreg_*_*.deb | head -1", build_dir), 0);
    snprintf(deb, sizeof(deb), "%.*s", (int)strcspn(out, "\n"), out);
    free(out);
    assert_int_equal(h_run(&out, "dpkg-deb -c %s", deb), 0);
    static const char *const want[] = {"./usr/bin/hostregd",
                                       "./usr/bin/hostreg-gateway",
                                       "./usr/bin/hostreg",
                                       "./usr/lib/systemd/system/hostregd.service",
                                       "./etc/hostreg/hostregd.env",
                                       "./usr/lib/libhostreg-host.so.0",
                                       "./usr/include/hostreg/hostreg_host.h",
                                       "./usr/share/man/man1/hostregd.1"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(out, want[i]))
            fail_msg("the package lacks %s:\n%s", want[i], out);
    free(out);
    assert_int_equal(h_run(&out, "dpkg-deb -f %s Package Depends", deb), 0);
    assert_non_null(strstr(out, "Package: hostreg"));
    assert_non_null(strstr(out, "adduser"));
    free(out);
    assert_int_equal(h_run(&out, "dpkg-deb -I %s conffiles", deb), 0);
    assert_non_null(strstr(out, "/etc/hostreg/hostregd.env"));
    assert_non_null(strstr(out, "/etc/hostreg/hostreg-gateway.env"));
    free(out);
    assert_int_equal(h_run(&out, "dpkg-deb -I %s postinst", deb), 0);
    assert_non_null(strstr(out, "adduser --system"));
    assert_null(strstr(out, "systemctl enable"));
    free(out);
    assert_int_equal(
        h_run(&out,
              "dpkg-deb --fsys-tarfile %s | tar -xO ./usr/lib/systemd/system/hostregd.service",
              deb),
        0);
    assert_non_null(strstr(out, "ExecStart=/usr/bin/hostregd"));
    assert_non_null(strstr(out, "EnvironmentFile=-/etc/hostreg/hostregd.env"));
    free(out);
}

/* Adds each metric family name of a Prometheus text ("# TYPE name ...")
 * to `names` (a '\n'-separated list, each name between newlines). */
static void families(const char *text, char *names, size_t cap)
{
    size_t o = strlen(names);
    for (const char *p = text; (p = strstr(p, "# TYPE ")); p++) {
        p += 7;
        size_t n = strcspn(p, " ");
        if (o + n + 2 < cap)
            o += (size_t)snprintf(names + o, cap - o, "%.*s\n", (int)n, p);
    }
}

/* Every hostreg_* metric named in `text` (an expression, a rules file) is a
 * family the programs export (a histogram's _bucket, _sum and _count are its
 * family's). */
static void all_exported(const char *what, const char *text, const char *names)
{
    for (const char *p = text; (p = strstr(p, "hostreg_"));) {
        size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz_");
        char name[128], want[140];
        snprintf(name, sizeof(name), "%.*s", (int)n, p);
        p += n;
        static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
        for (size_t i = 0; i < 3; i++) {
            size_t l = strlen(name), sl = strlen(suffixes[i]);
            if (l > sl && strcmp(name + l - sl, suffixes[i]) == 0)
                name[l - sl] = '\0';
        }
        snprintf(want, sizeof(want), "\n%s\n", name);
        if (!strstr(names, want))
            fail_msg("%s uses %s, which neither program exports", what, name);
    }
}

/* Monitoring as shipped: the Prometheus rules pass `promtool check rules`
 * and their unit tests (`promtool test rules`: each alert fires on the
 * series that should raise it, and not on healthy ones), and every metric
 * the rules and the Grafana dashboard use is one that hostregd
 * (--metrics-listen) and hostreg-gateway (/metrics) export. */
static void test_install_monitoring(void **state)
{
    (void)state;
    char *out;
    const char *src = h_source_dir();
    if (h_run(&out, "command -v promtool") == 0) {
        free(out);
        int rc =
            h_run(&out, "promtool check rules %s/packaging/prometheus/hostreg-rules.yml 2>&1", src);
        if (rc != 0)
            fail_msg("promtool check rules:\n%s", out);
        free(out);
        rc = h_run(&out,
                   "cd %s/packaging/prometheus && promtool test rules hostreg-rules.test.yml 2>&1",
                   src);
        if (rc != 0)
            fail_msg("promtool test rules:\n%s", out);
    }
    free(out);

    struct h_redis r = {0};
    struct h_daemon d;
    struct h_gateway g = {0};
    assert_int_equal(h_redis_start(&r, 0, NULL), 0);
    int mport = h_free_port(SOCK_STREAM);
    char listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", mport);
    const char *args[] = {"--metrics-listen", listen, NULL};
    assert_int_equal(h_daemon_start(&d, r.port, args), 0);
    assert_int_equal(h_gateway_start(&g, r.port, NULL, NULL), 0);
    static char names[65536] = "\n";
    struct h_http_resp resp;
    assert_int_equal(h_http(mport, "GET", "/metrics", NULL, NULL, &resp), 200);
    families(resp.body, names, sizeof(names));
    h_http_free(&resp);
    assert_int_equal(h_http(g.port, "GET", "/metrics", NULL, NULL, &resp), 200);
    families(resp.body, names, sizeof(names));
    h_http_free(&resp);
    assert_int_equal(h_gateway_stop(&g), 0);
    assert_int_equal(h_daemon_stop(&d), 0);
    h_redis_stop(&r, false, true);

    assert_int_equal(h_run(&out, "cat %s/packaging/prometheus/hostreg-rules.yml", src), 0);
    all_exported("hostreg-rules.yml", out, names);
    free(out);
    char path[512];
    snprintf(path, sizeof(path), "%s/packaging/grafana/hostreg-dashboard.json", src);
    json_error_t e;
    json_t *dash = json_load_file(path, 0, &e);
    if (!dash)
        fail_msg("%s: %s (line %d)", path, e.text, e.line);
    json_t *panels = json_object_get(dash, "panels"), *p, *t;
    size_t i, k, exprs = 0;
    assert_true(json_array_size(panels) >= 6);
    json_array_foreach(panels, i, p)
    {
        assert_non_null(json_string_value(json_object_get(p, "title")));
        json_array_foreach(json_object_get(p, "targets"), k, t)
        {
            const char *expr = json_string_value(json_object_get(t, "expr"));
            assert_non_null(expr);
            all_exported(json_string_value(json_object_get(p, "title")), expr, names);
            exprs++;
        }
    }
    assert_true(exprs >= 10);
    json_decref(dash);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_install_tree),
        cmocka_unit_test(test_install_host_app_with_pkg_config),
        cmocka_unit_test(test_install_systemd_units),
        cmocka_unit_test(test_install_deb_package),
        cmocka_unit_test(test_install_monitoring),
    };
    return cmocka_run_group_tests_name("install", tests, setup, teardown);
}
