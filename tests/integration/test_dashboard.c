#define _GNU_SOURCE /* strcasestr */
/* The gateway's live dashboard (GET /dashboard), as a browser shows it: real
 * headless Chromium (Debian's chromium), driven by ChromeDriver (WebDriver
 * over HTTP), against a real gateway and Redis with hosts registered. The
 * numbers the page shows must be the registry's, and must change when hosts
 * are added; the page must load nothing from elsewhere. A screenshot of what
 * the browser saw is left in /tmp/hostreg-dashboard.png. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define CHROMEDRIVER "/usr/bin/chromedriver"
#define CHROMIUM "/usr/bin/chromium"

static struct h_redis redis;
static struct h_gateway gw;
static pid_t driver = -1;
static int driver_port;
static char session[128];
static char driver_log[64];

/* One HTTP/1.1 exchange with ChromeDriver, which keeps its connections open
 * (the harness's clients read to the end of the connection): the answer is
 * complete at its Content-Length. The status (0: no answer), the body into
 * *body (malloc'd, NUL-terminated). */
static int driver_http(const char *method, const char *path, const char *json, char **body)
{
    *body = NULL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)driver_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {30, 0}; /* a session start launches the browser */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    size_t blen = json ? strlen(json) : 0;
    char *req = malloc(blen + 512);
    int n = snprintf(req, 512,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     method, path, driver_port, blen);
    memcpy(req + n, json ? json : "", blen);
    bool sent = send(fd, req, (size_t)n + blen, MSG_NOSIGNAL) == (ssize_t)((size_t)n + blen);
    free(req);
    size_t cap = 1 << 16, used = 0;
    char *buf = malloc(cap);
    int status = 0;
    while (sent) {
        if (cap - used < 4096)
            buf = realloc(buf, cap *= 2);
        ssize_t r = recv(fd, buf + used, cap - used - 1, 0);
        if (r <= 0)
            break;
        used += (size_t)r;
        buf[used] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end)
            continue;
        const char *cl = strcasestr(buf, "\ncontent-length:");
        size_t want = cl && cl < end ? strtoull(cl + 16, NULL, 10) : 0;
        if (used - (size_t)(end + 4 - buf) < want)
            continue;
        sscanf(buf, "HTTP/1.%*d %d", &status);
        *body = strndup(end + 4, want);
        break;
    }
    free(buf);
    close(fd);
    return status;
}

/* A WebDriver call: its reply's "value" (the caller's to decref), or fails. */
static json_t *wd(const char *method, const char *path, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    char *answer;
    int code = driver_http(method, path, text, &answer);
    free(text);
    json_t *j = answer ? json_loads(answer, 0, NULL) : NULL;
    if (code != 200 || !j) {
        h_show_log(driver_log);
        fail_msg("WebDriver %s %s: %d %s", method, path, code, answer ? answer : "(no answer)");
    }
    free(answer);
    json_t *v = json_incref(json_object_get(j, "value"));
    json_decref(j);
    return v;
}

static void register_hosts(const char *prefix, const char *region, int n, const char *status)
{
    for (int i = 0; i < n; i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"hostId\":\"%s-%d\",\"roomId\":\"room-%s-%d\",\"region\":\"%s\","
                 "\"status\":\"%s\"}",
                 prefix, i, prefix, i, region, status);
        struct h_http_resp r;
        assert_int_equal(h_http(gw.port, "POST", "/api/host/heartbeat", NULL, body, &r), 200);
        h_http_free(&r);
    }
}

/* What the page shows now: its update count, its totals and its per-region
 * cells, read from the DOM by a script in the page. */
static json_t *shown(void)
{
    static const char script[] =
        "const cells = {};"
        "for (const td of document.querySelectorAll('td[data-region]'))"
        "  cells[td.dataset.region + '/' + td.dataset.status] = td.textContent;"
        "return {updates: Number(document.body.dataset.updates || 0),"
        "  state: document.getElementById('state').textContent,"
        "  total: document.getElementById('total-hosts').textContent,"
        "  idle: document.getElementById('total-idle').textContent,"
        "  busy: document.getElementById('total-busy').textContent,"
        "  cells: cells,"
        "  charts: document.querySelectorAll('svg polyline').length,"
        "  outside: performance.getEntriesByType('resource')"
        "    .filter(e => !e.name.startsWith(location.origin)).map(e => e.name)};";
    char path[192];
    snprintf(path, sizeof(path), "/session/%s/execute/sync", session);
    return wd("POST", path, json_pack("{s:s,s:[]}", "script", script, "args"));
}

/* Waits (10 s at most, the page updating every second) until the page shows
 * `total` live hosts after at least `min_updates` updates; returns what it
 * shows then. */
static json_t *await_total(const char *total, int min_updates)
{
    json_t *v = NULL;
    for (uint64_t end = h_now_ms() + 10000; h_now_ms() < end;) {
        json_decref(v);
        v = shown();
        if (json_integer_value(json_object_get(v, "updates")) >= min_updates &&
            strcmp(json_string_value(json_object_get(v, "total")), total) == 0)
            return v;
        usleep(100000); /* the page's own 1 s timer: polled */
    }
    char *dump = json_dumps(v, JSON_COMPACT);
    fail_msg("the page does not show %s hosts: %s", total, dump);
    return NULL;
}

static const char *cell(json_t *v, const char *key)
{
    return json_string_value(json_object_get(json_object_get(v, "cells"), key));
}

static void save_screenshot(const char *file)
{
    char path[192];
    snprintf(path, sizeof(path), "/session/%s/screenshot", session);
    json_t *v = wd("GET", path, NULL);
    const char *b64 = json_string_value(v);
    assert_non_null(b64);
    size_t n = strlen(b64);
    unsigned char *png = malloc(n);
    assert_non_null(png);
    int len = EVP_DecodeBlock(png, (const unsigned char *)b64, (int)n);
    assert_true(len > 8);
    assert_memory_equal(png + 1, "PNG", 3);
    FILE *f = fopen(file, "wb");
    assert_non_null(f);
    fwrite(png, 1, (size_t)len, f);
    fclose(f);
    free(png);
    json_decref(v);
}

static int setup(void **state)
{
    (void)state;
    if (access(CHROMEDRIVER, X_OK) != 0 || access(CHROMIUM, X_OK) != 0) {
        fprintf(stderr, "chromium and chromium-driver are not installed (./dev installs them)\n");
        return -1;
    }
    const char *args[] = {"--list-cache-ms", "0", NULL};
    if (h_redis_start(&redis, 0, NULL) != 0 || h_gateway_start(&gw, redis.port, args, NULL) != 0)
        return -1;
    driver_port = h_free_port(SOCK_STREAM);
    char port[32];
    snprintf(port, sizeof(port), "--port=%d", driver_port);
    snprintf(driver_log, sizeof(driver_log), "/tmp/hostreg-chromedriver-%d.log", (int)getpid());
    const char *argv[] = {CHROMEDRIVER, port, NULL};
    driver = h_spawn(argv, driver_log);
    /* Ready when its /status says so. */
    for (uint64_t end = h_now_ms() + 15000; h_now_ms() < end;) {
        char *body;
        int code = driver_http("GET", "/status", NULL, &body);
        bool ready = code == 200 && body && strstr(body, "\"ready\":true");
        free(body);
        if (ready)
            return 0;
        usleep(50000); /* until it listens */
    }
    h_show_log(driver_log);
    return -1;
}

static int teardown(void **state)
{
    (void)state;
    if (driver > 0) {
        kill(driver, SIGTERM);
        h_child_wait(driver, true);
    }
    unlink(driver_log);
    h_gateway_stop(&gw);
    h_redis_stop(&redis, false, true);
    return 0;
}

static void test_dashboard_shows_the_registry_live(void **state)
{
    (void)state;
    register_hosts("dash-east", "us-east-1", 3, "idle");
    register_hosts("dash-eu", "eu-central", 2, "busy");

    /* A browser session: headless Chromium, no sandbox (CI runs as root). */
    json_t *caps = json_pack("{s:{s:{s:s,s:{s:s,s:[s,s,s,s,s]}}}}", "capabilities", "alwaysMatch",
                             "browserName", "chrome", "goog:chromeOptions", "binary", CHROMIUM,
                             "args", "--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1200,900");
    json_t *v = wd("POST", "/session", caps);
    snprintf(session, sizeof(session), "%s", json_string_value(json_object_get(v, "sessionId")));
    json_decref(v);
    assert_true(session[0] != '\0');

    char url[128], path[192];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/dashboard", gw.port);
    snprintf(path, sizeof(path), "/session/%s/url", session);
    json_decref(wd("POST", path, json_pack("{s:s}", "url", url)));
    snprintf(path, sizeof(path), "/session/%s/title", session);
    v = wd("GET", path, NULL);
    assert_string_equal(json_string_value(v), "hostreg dashboard");
    json_decref(v);

    /* What the registry holds, as the page shows it. */
    v = await_total("5", 1);
    assert_string_equal(json_string_value(json_object_get(v, "idle")), "3");
    assert_string_equal(json_string_value(json_object_get(v, "busy")), "2");
    assert_string_equal(cell(v, "us-east-1/idle"), "3");
    assert_string_equal(cell(v, "eu-central/busy"), "2");
    assert_string_equal(cell(v, "eu-central/total"), "2");
    assert_string_equal(cell(v, "local/idle"), "0");
    assert_int_equal(json_integer_value(json_object_get(v, "charts")), 4);
    assert_non_null(strstr(json_string_value(json_object_get(v, "state")), "live"));
    assert_int_equal(json_array_size(json_object_get(v, "outside")), 0); /* nothing from outside */
    int updates = (int)json_integer_value(json_object_get(v, "updates"));
    json_decref(v);

    /* Hosts come: the page follows, within its next updates. */
    register_hosts("dash-local", "local", 4, "idle");
    v = await_total("9", updates + 1);
    assert_string_equal(cell(v, "local/idle"), "4");
    assert_string_equal(json_string_value(json_object_get(v, "idle")), "7");
    json_decref(v);

    /* A find: the host is busy on the page, too. */
    struct h_http_resp r;
    assert_int_equal(h_http(gw.port, "POST", "/api/match/find", NULL, "{\"region\":\"local\"}", &r),
                     200);
    h_http_free(&r);
    for (uint64_t end = h_now_ms() + 10000;; usleep(100000)) {
        v = shown();
        if (strcmp(cell(v, "local/busy"), "1") == 0)
            break;
        json_decref(v);
        assert_true(h_now_ms() < end);
    }
    assert_string_equal(cell(v, "local/idle"), "3");
    json_decref(v);
    save_screenshot("/tmp/hostreg-dashboard.png");
    printf("# screenshot of the page as the browser saw it: /tmp/hostreg-dashboard.png\n");

    snprintf(path, sizeof(path), "/session/%s", session);
    json_decref(wd("DELETE", path, NULL));
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dashboard_shows_the_registry_live),
    };
    return cmocka_run_group_tests_name("dashboard", tests, setup, teardown);
}
