/* hostreg: the operator's and host developer's command line, one program
 * with a table of subcommands (as wg(8) does). */
#include "bench.h"
#include "config.h"
#include "decode.h"
#include "dump.h"
#include "key.h"
#include "ls.h"
#include "send.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"send", hr_cmd_send, "send one heartbeat, status or leave datagram and print the ack"},
    {"decode", hr_cmd_decode, "decode datagrams given as hex or base64 and give the verdict"},
    {"bench", hr_cmd_bench, "load hostregd with simulated hosts; throughput, losses, latency"},
    {"key", hr_cmd_key, "print the key a host signs its datagrams with"},
    {"ls", hr_cmd_ls, "list the hosts in the registry by region and status"},
    {"dump", hr_cmd_dump, "decode the hostreg datagrams of a pcap file or a live interface"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: hostreg <command> [arguments]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'hostreg <command> --help' describes each one; 'hostreg --version' says which "
               "build this is.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("hostreg %s\n", hr_version());
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "hostreg: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
