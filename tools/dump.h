/* `hostreg dump`: hostreg datagrams from a pcap/pcapng file or a live
 * interface (libpcap), one line each, with totals. */
#ifndef HR_TOOLS_DUMP_H
#define HR_TOOLS_DUMP_H

int hr_cmd_dump(int argc, char **argv);

#endif
