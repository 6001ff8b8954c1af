/* The service manager's readiness protocol (sd_notify(3), libsystemd): a
 * program run as Type=notify tells systemd when it is ready, reloading or
 * stopping. Outside systemd (no NOTIFY_SOCKET) each call does nothing. */
#ifndef HR_SDNOTIFY_H
#define HR_SDNOTIFY_H

/* Sends `state` ("READY=1", "STOPPING=1", "STATUS=...", several joined by
 * newlines); logs a failure at debug level. */
void hr_sd_notify(const char *state);

#endif
