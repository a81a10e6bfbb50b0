/*
 * daemon.h — the public face of daemon/: the process lifecycle that every
 * other subsystem plugs into (see also http.h for the HTTP route table).
 *
 * The daemon owns the libevent loop, the loaded config, signals (SIGTERM /
 * SIGINT graceful stop, SIGHUP reload), systemd notification (READY,
 * STATUS, WATCHDOG, RELOADING, STOPPING), inherited listening sockets and
 * the HTTP server with /healthz and /status.
 *
 * Modules.  Subsystems (engine, sources, bus, ipc, ...) register a
 * struct daemon_module before daemon_run().  Order is the registration
 * order:
 *   start   — in order, on the loop thread before READY=1; may add HTTP
 *             routes and /status sections; a negative return aborts the
 *             start-up (modules already started are stopped in reverse).
 *   reload  — in order, after a valid new config was swapped in (old is
 *             still valid during the call, freed right after).  Only fields
 *             marked reloadable differ between old and nw: the daemon keeps
 *             the non-reloadable ones of the running config and logs that
 *             they need a restart.  A negative return is logged, nothing
 *             is rolled back.
 *   check   — optional, before a reload swaps the config in: a negative
 *             return (with a reason in err) rejects the whole reload, which
 *             then counts as failed and changes nothing.  A reload hook that
 *             fails also counts the reload as failed (reloads.failed,
 *             last_error), though what it applied stays.
 *   stop    — in REVERSE order, on SIGTERM/SIGINT or daemon_stop().  Return
 *             0 when stopped, or DAEMON_STOP_PENDING and call
 *             daemon_module_stopped() from a later loop callback when done
 *             (e.g. after joining a thread signalled through event_active).
 *             If modules are not done within DAEMON_STOP_TIMEOUT_MS the
 *             daemon gives up: daemon_run() returns DAEMON_EXIT_FORCED and
 *             main() exits without tearing anything down.  A second
 *             SIGTERM/SIGINT while modules are pending does the same at once.
 * Modules must not keep pointers into the config across a reload other
 * than through daemon_cfg(); threads get copies (cfg_stream_copy()).
 *
 * Threads: all functions are for the main loop thread, except
 * daemon_block_signals() which every other thread calls first thing.
 */
#ifndef DETD_DAEMON_H
#define DETD_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct event_base;
struct http;
struct daemon;

#define DAEMON_STOP_PENDING 1
#define DAEMON_STOP_TIMEOUT_MS 1500
#define DAEMON_EXIT_FORCED 70 /* EX_SOFTWARE: a module did not stop in time */
#define DAEMON_MAX_MODULES 16

struct daemon_module {
	const char *name;
	int (*start)(struct daemon *d, void *ud);
	int (*reload)(struct daemon *d, const struct cfg *old, const struct cfg *nw, void *ud);
	int (*stop)(struct daemon *d, void *ud);
	void *ud;
	int (*check)(struct daemon *d, const struct cfg *nw, char *err, size_t errlen, void *ud);
};

struct daemon_opts {
	const char *config_path;
	const char *log_level; /* from the command line: overrides log.level, also on reload */
	const char *port_file; /* write the bound HTTP port there once listening; may be NULL */
	/* Checks beyond the loader's (the model and labels load), run on the
	 * start-up config and on every reload: an error fails the start with
	 * CFG_EXIT_CONFIG or the reload.  0 or -errno with errs filled; may be NULL. */
	int (*check_cfg)(const struct cfg *c, struct cfg_errors *errs);
};

/*
 * Load the config and prepare the loop (nothing listens yet).  Returns 0,
 * -EINVAL for an invalid config (every error already logged: exit with
 * CFG_EXIT_CONFIG), or another -errno.
 */
int daemon_create(const struct daemon_opts *opts, struct daemon **out);
int daemon_module_add(struct daemon *d, const struct daemon_module *m);
/* Listen, start modules, READY=1, run the loop; returns the process exit code. */
int daemon_run(struct daemon *d);
void daemon_destroy(struct daemon *d); /* NULL-safe; after daemon_run() returned */

struct event_base *daemon_base(struct daemon *d);
const struct cfg *daemon_cfg(const struct daemon *d);
struct http *daemon_http(struct daemon *d); /* NULL when http.enabled is false */
const char *daemon_config_path(const struct daemon *d);

/*
 * Take an inherited (socket-activated) listening fd by its name
 * (FileDescriptorName= in the .socket unit, e.g. "http", "ipc").  The caller
 * owns the fd.  -ENOENT when there is none.
 */
int daemon_listen_fd_take(struct daemon *d, const char *name);

/* Ask for a graceful stop with this exit code (e.g. a fatal module error). */
void daemon_stop(struct daemon *d, int exit_code);
bool daemon_stopping(const struct daemon *d);
void daemon_module_stopped(struct daemon *d, const char *name);

/* Replace the STATUS= line shown by systemctl status. */
void daemon_status(struct daemon *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Service watchdog.  daemon_watchdog_usec(): the interval the service
 * manager asked for (WATCHDOG_USEC), 0 without a watchdog.  A module that
 * can tell whether its threads make progress registers a liveness check
 * (one at a time; fn NULL removes it): while it returns < 0 the daemon sends
 * no WATCHDOG=1, so systemd kills and restarts a hung daemon; the reason is
 * logged once and shown in STATUS=.  Called from the loop at every tick.
 */
typedef int (*daemon_alive_fn)(void *ud, char *why, size_t whylen);
uint64_t daemon_watchdog_usec(const struct daemon *d);
void daemon_set_liveness(struct daemon *d, daemon_alive_fn fn, void *ud);

/* Block the daemon's signals in the calling thread (call first in every thread). */
void daemon_block_signals(void);

#endif
