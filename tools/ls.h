/* `hostreg ls`: the registry as Redis holds it, by region and status. */
#ifndef HR_TOOLS_LS_H
#define HR_TOOLS_LS_H

int hr_cmd_ls(int argc, char **argv);

#endif
