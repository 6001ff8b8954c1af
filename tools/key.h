/* `hostreg key`: the key a host signs its datagrams with. */
#ifndef HR_TOOLS_KEY_H
#define HR_TOOLS_KEY_H

int hr_cmd_key(int argc, char **argv);

#endif
