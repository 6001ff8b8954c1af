/* A complete host program using the hostreg host library: it registers,
 * pretends a client connects after 5 s (busy) and leaves after 10 s (idle),
 * and sends a leave on Ctrl-C. Build: see README.md ("Host library").
 *
 *   hostreg-host-example [SERVER [ROOM [REGION]]] */
#include "hostreg_host.h"

#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void on_event(struct hr_host *h, const struct hr_host_event_info *ev, void *arg)
{
    (void)arg;
    switch (ev->event) {
    case HR_HOST_REGISTERED:
        printf("registered as %s\n", hr_host_id(h));
        break;
    case HR_HOST_STATUS_CONFIRMED:
        printf("status %s confirmed\n", hr_status_name(ev->status));
        break;
    case HR_HOST_REFUSED:
        printf("refused: %s (reason %u)\n", hr_result_name(ev->result), ev->reason);
        break;
    case HR_HOST_UNREACHABLE:
        printf("registry unreachable, still trying\n");
        break;
    case HR_HOST_LEFT:
        printf("left the registry%s\n", ev->result ? "" : " (leave not acknowledged)");
        break;
    case HR_HOST_SLOTS_CONFIRMED:
        printf("%u free slots stored\n", ev->available_slots);
        break;
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    struct hr_host_config cfg = {
        .server = argc > 1 ? argv[1] : "127.0.0.1:9099",
        .room_id = argc > 2 ? argv[2] : "room-example",
        .region = argc > 3 ? argv[3] : NULL,
        .cb = on_event,
    };
    char err[256];
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    struct hr_host *h = hr_host_start(NULL, &cfg, err, sizeof(err)); /* its own thread */
    if (!h) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    for (int t = 0; !stop; t++) {
        if (t == 5)
            hr_host_set_status(h, HR_STATUS_BUSY); /* a client connected */
        if (t == 10)
            hr_host_set_status(h, HR_STATUS_IDLE); /* the session ended */
        sleep(1);
    }
    hr_host_free(h); /* sends the leave and waits for its ack (at most a few seconds) */
    return 0;
}
