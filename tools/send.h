/* `hostreg send`: one request datagram, retransmitted until acked. */
#ifndef HR_TOOLS_SEND_H
#define HR_TOOLS_SEND_H

int hr_cmd_send(int argc, char **argv);

#endif
