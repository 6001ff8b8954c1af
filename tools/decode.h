/* `hostreg decode`: datagrams as hex or base64, decoded and judged. */
#ifndef HR_TOOLS_DECODE_H
#define HR_TOOLS_DECODE_H

int hr_cmd_decode(int argc, char **argv);

#endif
