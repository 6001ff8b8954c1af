/* `hostreg bench`: a UDP load generator that simulates many hosts against
 * hostregd and measures acked throughput, losses and ack latency. */
#ifndef HR_TOOLS_BENCH_H
#define HR_TOOLS_BENCH_H

int hr_cmd_bench(int argc, char **argv);

#endif
