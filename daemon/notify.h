/*
 * notify.h — systemd service manager protocol, daemon-internal (other
 * folders use daemon.h): sd_notify messages, the watchdog interval and
 * socket activation.  Uses libsystemd when built with it, otherwise a small
 * implementation of the same documented protocols (NOTIFY_SOCKET datagrams,
 * LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES).
 *
 * Threads: main loop thread only.
 */
#ifndef DETD_NOTIFY_H
#define DETD_NOTIFY_H

#include <stdint.h>

/* Send one notification ("READY=1\nSTATUS=..."); a no-op without NOTIFY_SOCKET. */
void notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Watchdog interval in microseconds requested by the manager, 0 if none. */
uint64_t notify_watchdog_usec(void);

/*
 * Inherited listening sockets.  Returns how many (fds are 3..3+n-1) and
 * sets *names to a NULL-terminated array of n names ("unknown" when the
 * manager gave none); free with notify_free_names().  Clears the LISTEN_*
 * variables so children do not inherit them.
 */
int notify_listen_fds(char ***names);
void notify_free_names(char **names);

#endif
