#include "sdnotify.h"

#include "log.h"

#include <string.h>
#include <systemd/sd-daemon.h>

void hr_sd_notify(const char *state)
{
    int rc = sd_notify(0, state);
    if (rc < 0)
        HR_LOG(HR_LOG_DEBUG, "sd_notify(%.*s): %s", (int)strcspn(state, "\n"), state,
               strerror(-rc));
}
