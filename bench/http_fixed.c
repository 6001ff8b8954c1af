/* bench reference: the evhttp ceiling. Answers every request with the fixed
 * 25-byte body of a heartbeat answer, on one libevent loop, with the same
 * server limits as hostreg-gateway: the gateway minus JSON, rules and Redis.
 *   hostreg-bench-http-fixed PORT */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>

static void on_request(struct evhttp_request *req, void *arg)
{
    struct evbuffer *b = arg;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evbuffer_add_reference(evhttp_request_get_output_buffer(req), "{\"success\":true,\"ttl\":30}",
                           25, NULL, NULL);
    (void)b;
    evhttp_send_reply(req, 200, "OK", NULL);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    evhttp_set_max_headers_size(http, 8192);
    evhttp_set_max_body_size(http, 65536);
    evhttp_set_timeout(http, 10);
    evhttp_set_gencb(http, on_request, NULL);
    if (!evhttp_bind_socket_with_handle(http, "127.0.0.1", (ev_uint16_t)atoi(argv[1]))) {
        fprintf(stderr, "cannot listen on %s\n", argv[1]);
        return 1;
    }
    event_base_dispatch(base);
    return 0;
}
