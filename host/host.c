#include "hostreg_host.h"

#include "clock.h"
#include "err.h"
#include "parse.h"
#include "wire.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RETRY_MAX_MS 8000
#define LEAVE_TRIES 4 /* 250 + 500 + 1000 + 2000 ms at most, so hr_host_free is bounded */

struct hr_host {
    struct event_base *base;
    int own_thread;
    pthread_t thread;
    int fd;
    struct event *read_ev, *hb_timer, *status_timer, *leave_timer, *status_ev, *stop_ev, *slots_ev;
    hr_host_cb *cb;
    void *cb_arg;
    struct hr_host_auth auth;
    uint32_t retry_ms;
    struct hr_request hb; /* the heartbeat: host, room, region */
    uint64_t last_seq;

    uint32_t interval_s, ttl_s; /* as the registry's acks say */
    uint64_t hb_seq, hb_started_ms, last_ack_ms;
    uint32_t hb_backoff_ms;
    int hb_waiting, registered, unreachable;

    pthread_mutex_t mu;    /* guards want and slots, between the setters' callers and the loop */
    enum hr_status want;   /* what the host wants to be */
    uint32_t slots;        /* its free slots, as it reports them */
    uint32_t slots_stored; /* as the registry last acked them (loop thread only) */
    enum hr_status pending, confirmed;
    uint64_t status_seq;
    uint32_t status_backoff_ms;

    int leaving, left, leave_tries;
    uint64_t leave_seq;
};

/* The clock in microseconds, and always past the last one used: sequence
 * numbers keep increasing across restarts of the host without stored state. */
static uint64_t next_seq(struct hr_host *h)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
    h->last_seq = us > h->last_seq ? us : h->last_seq + 1;
    return h->last_seq;
}

static void emit(struct hr_host *h, enum hr_host_event e, enum hr_msg_type req, uint64_t seq,
                 const struct hr_ack *ack, enum hr_status status)
{
    if (!h->cb)
        return;
    struct hr_host_event_info ev = {e,
                                    req,
                                    seq,
                                    ack ? ack->result : HR_RESULT_NONE,
                                    ack ? ack->reason : 0,
                                    status,
                                    h->slots_stored};
    h->cb(h, &ev, h->cb_arg);
}

/* The frame for r, signed when the host has a key (a fresh timestamp each
 * time: a retransmission is a new frame with the same seq). */
static size_t encode(const struct hr_host_auth *auth, const struct hr_request *r, uint8_t *buf,
                     size_t cap)
{
    if (!auth || !auth->key_id)
        return hr_wire_encode_request(r, buf, cap);
    return hr_wire_encode_request_auth(r, auth->key, auth->key_id, (uint32_t)time(NULL), buf, cap);
}

static void send_req(struct hr_host *h, const struct hr_request *r)
{
    uint8_t buf[HR_WIRE_MAX];
    size_t len = encode(&h->auth, r, buf, sizeof(buf));
    /* A lost datagram and a refused send are the same to us: the timer resends. */
    if (len && send(h->fd, buf, len, 0) < 0 && errno != ECONNREFUSED)
        (void)0;
}

static void arm(struct event *ev, uint32_t ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

static uint32_t backoff(uint32_t *ms)
{
    uint32_t now = *ms;
    *ms = *ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : *ms * 2;
    return now;
}

/* Next heartbeat in [interval, 1.25 x interval], kept at least 1 s under the
 * TTL so that jitter never lets the entry expire. */
static uint32_t next_interval_ms(struct hr_host *h)
{
    uint32_t base = h->interval_s * 1000, span = base / 4, r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint32_t)hr_mono_ms();
    uint32_t ms = base + (span ? r % span : 0);
    uint32_t cap = h->ttl_s * 1000 > 1000 ? h->ttl_s * 1000 - 1000 : base;
    return ms > cap && base <= cap ? cap : ms;
}

/* The TTL and interval an ack advises, taken only when they make sense
 * (acks are not signed: a forged one must not stop the heartbeats with an
 * interval beyond the TTL): a TTL of 1 s to a day, an interval of 1 s to
 * TTL - 1 s. The interval kept is always below the TTL. */
static void take_advice(struct hr_host *h, const struct hr_ack *a)
{
    if (a->ttl >= 1 && a->ttl <= 86400)
        h->ttl_s = a->ttl;
    if (a->interval >= 1 && a->interval < h->ttl_s)
        h->interval_s = a->interval;
    if (h->interval_s >= h->ttl_s)
        h->interval_s = h->ttl_s * 2 / 3 ? h->ttl_s * 2 / 3 : 1;
}

static void send_heartbeat(struct hr_host *h)
{
    pthread_mutex_lock(&h->mu);
    h->hb.status = h->want; /* used by the registry only if this creates the entry */
    h->hb.available_slots = h->slots;
    pthread_mutex_unlock(&h->mu);
    h->hb.seq = h->hb_seq = next_seq(h);
    h->hb_started_ms = hr_mono_ms();
    h->hb_waiting = 1;
    h->hb_backoff_ms = h->retry_ms;
    send_req(h, &h->hb);
    arm(h->hb_timer, backoff(&h->hb_backoff_ms));
}

static void on_hb_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct hr_host *h = arg;
    uint64_t now = hr_mono_ms();
    if (h->registered && !h->unreachable && now - h->last_ack_ms > (uint64_t)h->ttl_s * 1000) {
        h->unreachable = 1;
        h->registered = 0;
        emit(h, HR_HOST_UNREACHABLE, HR_MSG_HEARTBEAT, h->hb_seq, NULL, HR_STATUS_NONE);
    }
    if (h->hb_waiting && now - h->hb_started_ms < (uint64_t)h->interval_s * 1000) {
        send_req(h, &h->hb); /* the same seq: an ack for either copy will do */
        arm(h->hb_timer, backoff(&h->hb_backoff_ms));
    } else {
        send_heartbeat(h);
    }
}

static void send_status(struct hr_host *h)
{
    struct hr_request r = h->hb;
    r.type = HR_MSG_STATUS;
    r.seq = h->status_seq;
    r.status = h->pending;
    r.room_id[0] = r.region[0] = '\0';
    send_req(h, &r);
    arm(h->status_timer, backoff(&h->status_backoff_ms));
}

static void on_status_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct hr_host *h = arg;
    if (h->pending != HR_STATUS_NONE)
        send_status(h);
}

/* Runs on the loop: start sending the wanted status if it is new. */
static void on_status_change(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct hr_host *h = arg;
    if (h->leaving)
        return;
    pthread_mutex_lock(&h->mu);
    enum hr_status want = h->want;
    pthread_mutex_unlock(&h->mu);
    if (want == (h->pending != HR_STATUS_NONE ? h->pending : h->confirmed))
        return;
    h->pending = want;
    h->status_seq = next_seq(h);
    h->status_backoff_ms = h->retry_ms;
    send_status(h);
}

static void finish_leave(struct hr_host *h, const struct hr_ack *ack)
{
    if (h->left)
        return;
    h->left = 1;
    evtimer_del(h->leave_timer);
    emit(h, HR_HOST_LEFT, HR_MSG_LEAVE, h->leave_seq, ack, HR_STATUS_NONE);
    if (h->own_thread)
        event_base_loopexit(h->base, NULL);
}

static void on_leave_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct hr_host *h = arg;
    if (h->leave_tries >= LEAVE_TRIES) {
        finish_leave(h, NULL);
        return;
    }
    struct hr_request r = h->hb;
    r.type = HR_MSG_LEAVE;
    r.seq = h->leave_seq;
    send_req(h, &r);
    arm(h->leave_timer, 250u << h->leave_tries++);
}

static void on_slots_change(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct hr_host *h = arg;
    if (!h->leaving)
        send_heartbeat(h);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct hr_host *h = arg;
    if (h->leaving)
        return;
    h->leaving = 1;
    evtimer_del(h->hb_timer);
    evtimer_del(h->status_timer);
    h->leave_seq = next_seq(h);
    h->leave_tries = 0;
    on_leave_timer(-1, 0, h);
}

static void on_ack(struct hr_host *h, const struct hr_ack *a)
{
    int ok = a->result == HR_RESULT_OK || a->result == HR_RESULT_DUPLICATE;
    int refused = a->result == HR_RESULT_INVALID || a->result == HR_RESULT_UNAUTHORIZED;
    if (h->leaving) {
        if (a->seq == h->leave_seq)
            finish_leave(h, a);
        return;
    }
    if (a->seq == h->hb_seq && h->hb_waiting) {
        if (ok) {
            h->hb_waiting = 0;
            h->last_ack_ms = hr_mono_ms();
            take_advice(h, a);
            h->unreachable = 0;
            bool slots_changed = h->hb.available_slots != h->slots_stored;
            h->slots_stored = h->hb.available_slots;
            if (!h->registered) {
                h->registered = 1;
                emit(h, HR_HOST_REGISTERED, HR_MSG_HEARTBEAT, a->seq, a, HR_STATUS_NONE);
            }
            if (slots_changed)
                emit(h, HR_HOST_SLOTS_CONFIRMED, HR_MSG_HEARTBEAT, a->seq, a, HR_STATUS_NONE);
            arm(h->hb_timer, next_interval_ms(h));
        } else if (refused) {
            h->hb_waiting = 0;
            emit(h, HR_HOST_REFUSED, HR_MSG_HEARTBEAT, a->seq, a, HR_STATUS_NONE);
            arm(h->hb_timer, next_interval_ms(h));
        } /* retry-later: the timer retransmits with backoff */
        return;
    }
    if (a->seq == h->status_seq && h->pending != HR_STATUS_NONE) {
        if (ok) {
            /* A duplicate also means stored: an earlier copy was applied, or
             * the heartbeat that re-created the entry carried this status. */
            h->confirmed = h->pending;
            h->pending = HR_STATUS_NONE;
            evtimer_del(h->status_timer);
            emit(h, HR_HOST_STATUS_CONFIRMED, HR_MSG_STATUS, a->seq, a, h->confirmed);
            on_status_change(-1, 0, h); /* a newer wish may have come meanwhile */
        } else if (a->result == HR_RESULT_UNKNOWN_HOST) {
            /* The registry forgot us (expired, or its Redis was lost): register
             * again now, with the wanted status; the status retransmission
             * then finds the entry. */
            h->registered = 0;
            if (!h->hb_waiting)
                send_heartbeat(h);
        } else if (refused) {
            h->pending = HR_STATUS_NONE;
            evtimer_del(h->status_timer);
            emit(h, HR_HOST_REFUSED, HR_MSG_STATUS, a->seq, a, HR_STATUS_NONE);
        }
    }
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct hr_host *h = arg;
    uint8_t buf[HR_WIRE_MAX + 1];
    for (int i = 0; i < 64; i++) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0)
            return; /* EAGAIN, or ECONNREFUSED: nobody listening yet; timers resend */
        struct hr_frame f;
        if (hr_wire_decode(buf, (size_t)n, &f) == HR_OK && f.type == HR_MSG_ACK)
            on_ack(h, &f.ack);
    }
}

static void *thread_main(void *arg)
{
    struct hr_host *h = arg;
    event_base_loop(h->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static void use_threads(void)
{
    evthread_use_pthreads();
}

static int make_uuid(char out[HR_UUID_LEN + 1])
{
    uint8_t b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        return -1;
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    hr_uuid_format(b, out);
    return 0;
}

static int copy(char *dst, size_t cap, const char *src)
{
    if (!src)
        return 0;
    if (strlen(src) >= cap)
        return -1;
    strcpy(dst, src);
    return 0;
}

struct hr_host *hr_host_start(struct event_base *base, const struct hr_host_config *cfg, char *err,
                              size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (hr_parse_hostport(cfg->server ? cfg->server : "127.0.0.1:9099", "127.0.0.1", &ss, &sslen,
                          err, errlen) != 0)
        return NULL;
    struct hr_host *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&h->mu, NULL);
    h->fd = -1;
    h->cb = cfg->cb;
    h->cb_arg = cfg->cb_arg;
    h->auth = cfg->auth;
    h->retry_ms = cfg->retry_ms ? cfg->retry_ms : 500;
    h->interval_s = 20; /* until the first ack says otherwise */
    h->ttl_s = 30;
    h->want = cfg->status != HR_STATUS_NONE ? cfg->status : HR_STATUS_IDLE;
    h->confirmed = h->want; /* the registering heartbeat carries it */
    h->hb.type = HR_MSG_HEARTBEAT;
    h->hb.capacity = cfg->capacity ? cfg->capacity : 1;
    h->hb.slots_given = true;
    h->hb.available_slots = h->slots = h->slots_stored = h->hb.capacity;
    if (cfg->host_id ? copy(h->hb.host_id, sizeof(h->hb.host_id), cfg->host_id)
                     : make_uuid(h->hb.host_id)) {
        snprintf(err, errlen, "bad host id");
        goto fail;
    }
    if (copy(h->hb.room_id, sizeof(h->hb.room_id), cfg->room_id) ||
        copy(h->hb.region, sizeof(h->hb.region), cfg->region)) {
        snprintf(err, errlen, "room id or region too long");
        goto fail;
    }
    /* The library's own rules, with the region left to the registry. */
    struct hr_request probe = h->hb;
    struct hr_rules any;
    hr_rules_default(&any);
    probe.region[0] = '\0';
    int rc = hr_request_check(&probe, &any);
    if (rc != HR_OK) {
        snprintf(err, errlen, "%s", hr_strerror(rc));
        goto fail;
    }
    memcpy(h->hb.host_id, probe.host_id, sizeof(h->hb.host_id));

    if (!base) {
        pthread_once(&threads_once, use_threads);
        base = event_base_new();
        h->own_thread = 1;
    }
    h->base = base;
    h->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (!base || h->fd < 0 || connect(h->fd, (struct sockaddr *)&ss, sslen) != 0) {
        snprintf(err, errlen, "cannot set up the socket: %s", strerror(errno));
        goto fail;
    }
    h->read_ev = event_new(base, h->fd, EV_READ | EV_PERSIST, on_read, h);
    h->hb_timer = evtimer_new(base, on_hb_timer, h);
    h->status_timer = evtimer_new(base, on_status_timer, h);
    h->leave_timer = evtimer_new(base, on_leave_timer, h);
    h->status_ev = event_new(base, -1, 0, on_status_change, h);
    h->stop_ev = event_new(base, -1, 0, on_stop, h);
    h->slots_ev = event_new(base, -1, 0, on_slots_change, h);
    if (!h->read_ev || !h->hb_timer || !h->status_timer || !h->leave_timer || !h->status_ev ||
        !h->stop_ev || !h->slots_ev || event_add(h->read_ev, NULL) != 0) {
        snprintf(err, errlen, "cannot create events");
        goto fail;
    }
    send_heartbeat(h);
    if (h->own_thread && pthread_create(&h->thread, NULL, thread_main, h) != 0) {
        snprintf(err, errlen, "cannot start the thread");
        goto fail;
    }
    return h;
fail:
    h->own_thread = h->own_thread ? -1 : 0; /* no thread to join */
    hr_host_free(h);
    return NULL;
}

int hr_host_set_status(struct hr_host *h, enum hr_status status)
{
    if (!hr_status_valid(status))
        return -1;
    pthread_mutex_lock(&h->mu);
    h->want = status;
    pthread_mutex_unlock(&h->mu);
    if (h->own_thread)
        event_active(h->status_ev, EV_TIMEOUT, 0); /* thread-safe: the base has locks */
    else
        on_status_change(-1, 0, h);
    return 0;
}

int hr_host_set_available_slots(struct hr_host *h, uint32_t n)
{
    if (n > h->hb.capacity)
        return -1;
    pthread_mutex_lock(&h->mu);
    h->slots = n;
    pthread_mutex_unlock(&h->mu);
    if (h->own_thread)
        event_active(h->slots_ev, EV_TIMEOUT, 0);
    else
        on_slots_change(-1, 0, h);
    return 0;
}

void hr_host_stop(struct hr_host *h)
{
    if (h->own_thread)
        event_active(h->stop_ev, EV_TIMEOUT, 0);
    else
        on_stop(-1, 0, h);
}

void hr_host_free(struct hr_host *h)
{
    if (!h)
        return;
    if (h->own_thread == 1) {
        hr_host_stop(h);
        pthread_join(h->thread, NULL); /* bounded: the leave gives up after ~4 s */
    }
    struct event *evs[] = {h->read_ev,   h->hb_timer, h->status_timer, h->leave_timer,
                           h->status_ev, h->stop_ev,  h->slots_ev};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i])
            event_free(evs[i]);
    if (h->fd >= 0)
        close(h->fd);
    if (h->own_thread && h->base)
        event_base_free(h->base);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

const char *hr_host_id(const struct hr_host *h)
{
    return h->hb.host_id;
}

int hr_host_send_once(const char *server, const struct hr_request *req,
                      const struct hr_host_auth *auth, uint32_t timeout_ms, uint32_t retries,
                      struct hr_ack *ack, unsigned *attempts, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    uint8_t out[HR_WIRE_MAX], in[HR_WIRE_MAX + 1];
    if (hr_parse_hostport(server, "127.0.0.1", &ss, &sslen, err, errlen) != 0)
        return -1;
    size_t len = encode(auth, req, out, sizeof(out));
    if (len == 0) {
        snprintf(err, errlen, "request does not fit in a datagram");
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    /* connect(): the kernel then only hands us datagrams from the server. */
    if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sslen) != 0) {
        snprintf(err, errlen, "cannot reach the server: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int rc = -1;
    uint32_t wait = timeout_ms;
    for (uint32_t attempt = 0; attempt <= retries; attempt++, wait *= 2) {
        *attempts = attempt + 1;
        if (send(fd, out, len, 0) < 0 && errno != ECONNREFUSED) {
            snprintf(err, errlen, "send: %s", strerror(errno));
            break;
        }
        uint64_t deadline = hr_mono_ms() + wait;
        for (uint64_t now; (now = hr_mono_ms()) < deadline;) {
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, (int)(deadline - now)) <= 0)
                break;
            ssize_t n = recv(fd, in, sizeof(in), 0);
            struct hr_frame f;
            if (n < 0 || hr_wire_decode(in, (size_t)n, &f) != HR_OK || f.type != HR_MSG_ACK ||
                f.ack.seq != req->seq)
                continue; /* not the answer to this request */
            *ack = f.ack;
            rc = 0;
            goto done;
        }
        snprintf(err, errlen, "no ack from %s after %u attempts", server, attempt + 1);
    }
done:
    close(fd);
    return rc;
}
