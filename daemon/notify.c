/*
 * notify.c — sd_notify, watchdog interval and socket activation (notify.h).
 * Main loop thread only; keeps no state besides what the environment says.
 */
#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "detd-build.h"
#include "log.h"

/* Tests build this file once more with DETD_NOTIFY_OWN defined, so that
 * the fallback protocol code is tested in builds that have libsystemd too. */
#if DETD_HAVE_SYSTEMD && !defined(DETD_NOTIFY_OWN)
#define USE_LIBSYSTEMD 1
#include <systemd/sd-daemon.h>
#else
#define USE_LIBSYSTEMD 0
#endif

#if !USE_LIBSYSTEMD
/* NOTIFY_SOCKET: a path or "@abstract"; one datagram per message. */
static int own_notify(const char *msg)
{
	const char *e = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len;
	int fd, r = 0;

	if (!e || !*e)
		return 0;
	len = strlen(e);
	if ((e[0] != '/' && e[0] != '@') || len >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, e, len);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
		r = -errno;
	close(fd);
	return r;
}
#endif

void notify_send(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int r;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
#if USE_LIBSYSTEMD
	r = sd_notify(0, msg);
#else
	r = own_notify(msg);
#endif
	if (r < 0)
		log_warn("notify", "cannot notify the service manager: %s", strerror(-r));
	else
		log_debug("notify", "sent %s", msg);
}

uint64_t notify_watchdog_usec(void)
{
#if USE_LIBSYSTEMD
	uint64_t usec = 0;
	if (sd_watchdog_enabled(0, &usec) > 0)
		return usec;
	return 0;
#else
	const char *u = getenv("WATCHDOG_USEC"), *p = getenv("WATCHDOG_PID");
	char *end;
	if (!u)
		return 0;
	if (p && strtol(p, NULL, 10) != (long)getpid())
		return 0; /* meant for another process */
	unsigned long long v = strtoull(u, &end, 10);
	return *end || v == 0 ? 0 : (uint64_t)v;
#endif
}

void notify_free_names(char **names)
{
	if (!names)
		return;
	for (char **n = names; *n; n++)
		free(*n);
	free(names);
}

int notify_listen_fds(char ***names)
{
	*names = NULL;
#if USE_LIBSYSTEMD
	char **sd_names = NULL;
	int n = sd_listen_fds_with_names(1, &sd_names);
	if (n <= 0) {
		notify_free_names(sd_names);
		return n < 0 ? n : 0;
	}
	if (!sd_names) {
		sd_names = calloc((size_t)n + 1, sizeof(char *));
		for (int i = 0; sd_names && i < n; i++)
			sd_names[i] = strdup("unknown");
	}
	*names = sd_names;
	return n;
#else
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	const char *fdnames = getenv("LISTEN_FDNAMES");
	char **v;
	int n;

	if (!pid || !fds || strtol(pid, NULL, 10) != (long)getpid())
		return 0;
	n = atoi(fds);
	if (n <= 0 || n > 64)
		return 0;
	v = calloc((size_t)n + 1, sizeof(char *));
	if (!v)
		return -ENOMEM;
	char *copy = fdnames ? strdup(fdnames) : NULL, *save = NULL;
	char *tok = copy ? strtok_r(copy, ":", &save) : NULL;
	for (int i = 0; i < n; i++) {
		v[i] = strdup(tok ? tok : "unknown");
		tok = tok ? strtok_r(NULL, ":", &save) : NULL;
		fcntl(3 + i, F_SETFD, FD_CLOEXEC);
	}
	free(copy);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	*names = v;
	return n;
#endif
}
