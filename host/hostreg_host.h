/* hostreg host library: what a game or streaming host embeds to be found.
 *
 *   struct hr_host_config cfg = {.server = "registry.example:9099", .room_id = "room-42",
 *                                .region = "eu-central", .cb = on_event};
 *   struct hr_host *h = hr_host_start(NULL, &cfg, err, sizeof(err)); // its own thread
 *   ...                                  // a client connects:
 *   hr_host_set_status(h, HR_STATUS_BUSY);
 *   ...
 *   hr_host_free(h);                      // sends leave, waits for its ack (bounded)
 *
 * It heartbeats on its own schedule (the interval the registry's acks ask for,
 * with up to 25% jitter, so 20-25 s by default), retransmits a status change
 * with backoff until the registry acknowledges it (across a registry restart),
 * re-registers when the registry has forgotten the host, and says what happens
 * through one callback. It runs on the caller's libevent base or on a thread
 * of its own. Not thread-safe except hr_host_set_status() in own-thread mode. */
#ifndef HOSTREG_HOST_H
#define HOSTREG_HOST_H

#include "request.h"

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct hr_host;

enum hr_host_event {
    HR_HOST_REGISTERED,       /* the registry acked the first heartbeat (or again, after loss) */
    HR_HOST_STATUS_CONFIRMED, /* a status change is stored */
    HR_HOST_REFUSED,          /* an ack refused a request: see result and reason */
    HR_HOST_UNREACHABLE,      /* no ack for a whole TTL: the entry may have expired */
    HR_HOST_LEFT,             /* the leave was acked, or given up on */
    HR_HOST_SLOTS_CONFIRMED,  /* a change of free slots is stored (available_slots) */
};

struct hr_host_event_info {
    enum hr_host_event event;
    enum hr_msg_type request; /* the request the ack answered */
    uint64_t seq;
    enum hr_result result;    /* of that ack (HR_RESULT_NONE for UNREACHABLE, LEFT unacked) */
    uint32_t reason;          /* enum hr_err, for HR_RESULT_INVALID */
    enum hr_status status;    /* the status now confirmed (STATUS_CONFIRMED) */
    uint32_t available_slots; /* the free slots now stored (SLOTS_CONFIRMED) */
};

/* Called on the library's loop thread; `ev` is valid only during the call.
 * It may call hr_host_set_status() but not hr_host_free(). */
typedef void hr_host_cb(struct hr_host *h, const struct hr_host_event_info *ev, void *arg);

/* The key a host signs its datagrams with (what `hostreg key` prints for it):
 * for a registry started with --key-file. */
struct hr_host_auth {
    uint8_t key[32];
    uint8_t key_id; /* 0: no authentication */
};

struct hr_host_config {
    const char *server;    /* "host:port"; NULL: 127.0.0.1:9099 */
    const char *host_id;   /* NULL: a random UUID v4 */
    const char *room_id;   /* required */
    const char *region;    /* NULL: the registry's default region */
    enum hr_status status; /* the status to register with; NONE: idle */
    uint32_t retry_ms;     /* first retransmission; doubled up to 8 s. 0: 500 ms */
    hr_host_cb *cb;        /* may be NULL */
    void *cb_arg;
    struct hr_host_auth auth; /* key_id 0: unauthenticated */
    uint32_t capacity;        /* sessions the host serves at once (every slot free at start);
                                 0: 1 */
};

/* Starts heartbeating now. base NULL: on a thread of its own. Returns NULL
 * with a reason in err when the configuration or the socket is unusable. */
struct hr_host *hr_host_start(struct event_base *base, const struct hr_host_config *cfg, char *err,
                              size_t errlen);

/* Asks for a new status; it is retransmitted until the registry acks it, and
 * HR_HOST_STATUS_CONFIRMED follows. 0, or -1 for a bad status. */
int hr_host_set_status(struct hr_host *h, enum hr_status status);

/* Tells the registry how many of the host's slots are free now
 * (0..capacity; 0: it is never matched): a heartbeat goes out at once and
 * every later one carries it; HR_HOST_SLOTS_CONFIRMED follows its ack. Each client a find gives the
 * host takes a slot in the registry; report them free again when their sessions end. 0, or -1 for
 * more than the capacity. Thread-safe like hr_host_set_status(). */
int hr_host_set_available_slots(struct hr_host *h, uint32_t n);

/* Stops heartbeating and sends a leave (retransmitted a few times);
 * HR_HOST_LEFT follows. Then call hr_host_free(). */
void hr_host_stop(struct hr_host *h);

/* Own-thread mode: stops (if not yet), waits for HR_HOST_LEFT (the leave is
 * sent 4 times, 250 ms to 2 s apart: 3.75 s at most when nobody answers), and
 * joins the thread. Caller's-base mode: frees at once (a leave not acked yet
 * is abandoned). hr_host_free(NULL) does nothing. */
void hr_host_free(struct hr_host *h);

/* The hostId in use (generated or given). */
const char *hr_host_id(const struct hr_host *h);

/* One request, retransmitted (same seq) every timeout_ms, doubling, up to
 * `retries` more times, until an ack with its seq comes: a blocking helper
 * for tools; signed when auth is given (key_id > 0). Returns 0 with *ack filled (and *attempts the
 * number of sends), -1 when no ack came or the server address is bad (err says which). */
int hr_host_send_once(const char *server, const struct hr_request *req,
                      const struct hr_host_auth *auth, uint32_t timeout_ms, uint32_t retries,
                      struct hr_ack *ack, unsigned *attempts, char *err, size_t errlen);

#endif
