/*
 * daemon.c — process lifecycle (see daemon.h): config, loop, signals,
 * systemd notification, inherited sockets, ordered start/reload/stop of the
 * registered modules, /healthz and the top of /status.
 *
 * Everything here runs on the main loop thread.  Signals arrive through
 * libevent's evsignal (its handler only writes to a socketpair), so the
 * reactions below run as ordinary loop callbacks.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <json-c/json.h>

#include "detd-build.h"
#include "frame.h"
#include "http.h"
#include "log.h"
#include "notify.h"

#define MAX_LISTEN_FDS 16

struct listen_fd {
	int fd; /* -1 once taken */
	char *name;
};

struct daemon {
	struct event_base *base;
	struct cfg *cfg;
	char *config_path;
	char *log_level_override;
	char *port_file;
	int (*check_cfg)(const struct cfg *c, struct cfg_errors *errs);
	struct http *http;

	struct event *sig_term, *sig_int, *sig_hup;
	struct event *watchdog;
	uint64_t watchdog_usec;
	daemon_alive_fn alive;
	void *alive_ud;
	bool wd_stalled;           /* pings withheld: the liveness check failed */
	char wd_saved_status[256]; /* STATUS= to restore if the check recovers */
	struct event *stop_timer;

	size_t n_modules;
	struct daemon_module modules[DAEMON_MAX_MODULES];
	bool started[DAEMON_MAX_MODULES];
	bool stop_pending[DAEMON_MAX_MODULES];
	size_t n_pending;

	size_t n_listen;
	struct listen_fd listen[MAX_LISTEN_FDS];

	int64_t start_mono_ns;
	int64_t start_wall_ns;
	bool stopping;
	bool forced;
	int exit_code;
	char status[256];

	unsigned reloads_ok, reloads_failed;
	int64_t last_reload_wall_ns;
	char last_reload_error[CFG_ERROR_LEN];
};

static const int handled_signals[] = {SIGTERM, SIGINT, SIGHUP};

void daemon_block_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(handled_signals) / sizeof(handled_signals[0]); i++)
		sigaddset(&set, handled_signals[i]);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

struct event_base *daemon_base(struct daemon *d)
{
	return d->base;
}
const struct cfg *daemon_cfg(const struct daemon *d)
{
	return d->cfg;
}
struct http *daemon_http(struct daemon *d)
{
	return d->http;
}
const char *daemon_config_path(const struct daemon *d)
{
	return d->config_path;
}
bool daemon_stopping(const struct daemon *d)
{
	return d->stopping;
}

void daemon_status(struct daemon *d, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->status, sizeof(d->status), fmt, ap);
	va_end(ap);
	notify_send("STATUS=%s", d->status);
}

int daemon_listen_fd_take(struct daemon *d, const char *name)
{
	for (size_t i = 0; i < d->n_listen; i++) {
		if (d->listen[i].fd >= 0 && strcmp(d->listen[i].name, name) == 0) {
			int fd = d->listen[i].fd;
			d->listen[i].fd = -1;
			return fd;
		}
	}
	return -ENOENT;
}

int daemon_module_add(struct daemon *d, const struct daemon_module *m)
{
	if (!m || !m->name)
		return -EINVAL;
	if (d->n_modules == DAEMON_MAX_MODULES)
		return -ENOSPC;
	d->modules[d->n_modules++] = *m;
	return 0;
}

/* ---- stop ---------------------------------------------------------------------- */

static void finish_stop(struct daemon *d)
{
	if (d->stop_timer)
		evtimer_del(d->stop_timer);
	log_info("daemon", "stopped");
	event_base_loopexit(d->base, NULL);
}

void daemon_module_stopped(struct daemon *d, const char *name)
{
	for (size_t i = 0; i < d->n_modules; i++) {
		if (d->stop_pending[i] && strcmp(d->modules[i].name, name) == 0) {
			d->stop_pending[i] = false;
			d->n_pending--;
			log_debug("daemon", "module %s stopped", name);
			if (d->stopping && d->n_pending == 0)
				finish_stop(d);
			return;
		}
	}
}

static void stop_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	for (size_t i = 0; i < d->n_modules; i++)
		if (d->stop_pending[i])
			log_error("daemon", "module %s did not stop within %d ms", d->modules[i].name,
				  DAEMON_STOP_TIMEOUT_MS);
	d->forced = true;
	d->exit_code = DAEMON_EXIT_FORCED;
	event_base_loopbreak(d->base);
}

/* Stop started modules in reverse order; returns once all are stopped or pending. */
static void stop_modules(struct daemon *d)
{
	for (size_t i = d->n_modules; i-- > 0;) {
		if (!d->started[i])
			continue;
		d->started[i] = false;
		int r = d->modules[i].stop ? d->modules[i].stop(d, d->modules[i].ud) : 0;
		if (r == DAEMON_STOP_PENDING) {
			d->stop_pending[i] = true;
			d->n_pending++;
		} else if (r < 0) {
			log_warn("daemon", "module %s: stop failed: %s", d->modules[i].name,
				 strerror(-r));
		}
	}
}

void daemon_stop(struct daemon *d, int exit_code)
{
	struct timeval tv = {DAEMON_STOP_TIMEOUT_MS / 1000, (DAEMON_STOP_TIMEOUT_MS % 1000) * 1000};

	if (d->stopping)
		return;
	d->stopping = true;
	d->exit_code = exit_code;
	notify_send("STOPPING=1");
	log_info("daemon", "stopping");
	/* Armed before the modules run: a module that blocks in stop() is a bug
	 * the timer cannot fix, but one that never reports back is covered. */
	evtimer_add(d->stop_timer, &tv);
	stop_modules(d);
	if (d->n_pending == 0)
		finish_stop(d);
}

/* ---- reload -------------------------------------------------------------------- */

static void apply_log_level(struct daemon *d)
{
	const char *lvl = d->log_level_override ? d->log_level_override : d->cfg->log.level;
	if (lvl && log_set_level_name(lvl) < 0)
		log_warn("daemon", "unknown log level %s", lvl);
}

static void reload(struct daemon *d)
{
	struct cfg_errors *errs = calloc(1, sizeof(*errs));
	struct cfg *nw = NULL, *old;
	struct cfg_changes ch = {0};
	int r;

	notify_send("RELOADING=1");
	log_info("daemon", "reloading %s", d->config_path);
	d->last_reload_wall_ns = det_wall_ns();
	d->last_reload_error[0] = '\0'; /* this reload's error, not a previous one's */
	if (!errs) {
		r = -ENOMEM;
		goto bad;
	}
	/* Reading the file blocks the loop briefly; it is one small local file,
	 * and a reload is rare and operator-triggered. */
	r = cfg_load(d->config_path, &nw, errs);
	/* A model that would not load is a failed reload now, not a failed
	 * restart later; the load blocks the loop as long as a start's does. */
	if (r == 0 && d->check_cfg)
		r = d->check_cfg(nw, errs);
	if (r < 0) {
		for (size_t i = 0; i < errs->n; i++)
			log_error("config", "%s: %s", d->config_path, errs->msg[i]);
		if (errs->dropped)
			log_error("config", "%s: %zu more errors", d->config_path, errs->dropped);
		snprintf(d->last_reload_error, sizeof(d->last_reload_error), "%s",
			 errs->n ? errs->msg[0] : strerror(-r));
		goto bad;
	}
	r = cfg_diff(d->cfg, nw, &ch);
	if (r < 0)
		goto bad;
	for (size_t i = 0; i < ch.n; i++) {
		if (ch.v[i].restart)
			log_warn("config", "%s %s: needs a restart to take effect; keeping the "
					   "running value",
				 ch.v[i].path, ch.v[i].what);
		else
			log_info("config", "%s %s", ch.v[i].path, ch.v[i].what);
	}
	r = cfg_keep_restart_fields(nw, d->cfg);
	if (r < 0)
		goto bad;
	for (size_t i = 0; i < d->n_modules; i++) {
		if (!d->started[i] || !d->modules[i].check)
			continue;
		char why[CFG_ERROR_LEN] = "";
		r = d->modules[i].check(d, nw, why, sizeof(why), d->modules[i].ud);
		if (r < 0) {
			log_error("config", "%s: %s", d->config_path, why[0] ? why : strerror(-r));
			snprintf(d->last_reload_error, sizeof(d->last_reload_error), "%s",
				 why[0] ? why : strerror(-r));
			goto bad;
		}
	}
	old = d->cfg;
	d->cfg = nw;
	nw = NULL;
	apply_log_level(d);
	int failed = 0;
	for (size_t i = 0; i < d->n_modules; i++) {
		if (!d->started[i] || !d->modules[i].reload)
			continue;
		int mr = d->modules[i].reload(d, old, d->cfg, d->modules[i].ud);
		if (mr < 0) {
			log_error("daemon", "module %s: reload failed: %s", d->modules[i].name,
				  strerror(-mr));
			if (!failed)
				snprintf(d->last_reload_error, sizeof(d->last_reload_error),
					 "module %s: %s", d->modules[i].name, strerror(-mr));
			failed = mr;
		}
	}
	cfg_free(old);
	if (failed) {
		/* the new file is in place, but not all of it took effect: a
		 * failure, never an "ok" */
		d->reloads_failed++;
		log_error("daemon", "reload partly failed: %s", d->last_reload_error);
		cfg_changes_free(&ch);
		free(errs);
		notify_send("READY=1\nSTATUS=%s (reload failed: %s)", d->status,
			    d->last_reload_error);
		return;
	}
	d->reloads_ok++;
	d->last_reload_error[0] = '\0';
	log_info("daemon", "reloaded: %zu changes, %zu need a restart", ch.n, ch.n_restart);
	cfg_changes_free(&ch);
	free(errs);
	notify_send("READY=1\nSTATUS=%s (reloaded)", d->status);
	return;
bad:
	d->reloads_failed++;
	if (!d->last_reload_error[0])
		snprintf(d->last_reload_error, sizeof(d->last_reload_error), "%s", strerror(-r));
	log_error("daemon", "reload failed, still running on the previous configuration");
	cfg_changes_free(&ch);
	cfg_free(nw);
	free(errs);
	notify_send("READY=1\nSTATUS=%s (reload failed: %s)", d->status, d->last_reload_error);
}

/* ---- signals, watchdog --------------------------------------------------------- */

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	if (sig == SIGHUP) {
		if (!d->stopping)
			reload(d);
		return;
	}
	if (d->stopping && d->n_pending) {
		/* A second Ctrl-C while modules drain: the operator wants out now. */
		log_warn("daemon", "second stop signal: not waiting for the modules");
		d->forced = true;
		event_base_loopbreak(d->base);
		return;
	}
	log_info("daemon", "%s received", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	daemon_stop(d, 0);
}

static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	char why[160] = "";

	if (d->alive && d->alive(d->alive_ud, why, sizeof(why)) < 0) {
		/* No ping: systemd's WatchdogSec= runs out and it restarts us.
		 * Logged once, not at every tick. */
		if (!d->wd_stalled) {
			d->wd_stalled = true;
			log_error("daemon", "watchdog: %s; not pinging the service manager", why);
			snprintf(d->wd_saved_status, sizeof(d->wd_saved_status), "%s", d->status);
			daemon_status(d, "hung: %s", why);
		}
		return;
	}
	if (d->wd_stalled) {
		d->wd_stalled = false;
		log_warn("daemon", "watchdog: the data path recovered; pinging again");
		daemon_status(d, "%s", d->wd_saved_status);
	}
	notify_send("WATCHDOG=1");
}

uint64_t daemon_watchdog_usec(const struct daemon *d)
{
	return d->watchdog_usec;
}

void daemon_set_liveness(struct daemon *d, daemon_alive_fn fn, void *ud)
{
	d->alive = fn;
	d->alive_ud = ud;
}

/* ---- HTTP endpoints owned here ------------------------------------------------- */

static void healthz(struct evhttp_request *req, void *ud)
{
	struct daemon *d = ud;
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "status", json_object_new_string(d->stopping ? "stopping" : "ok"));
	http_reply_json(req, d->stopping ? 503 : 200, o);
}

static void status_root(struct json_object *o, void *ud)
{
	struct daemon *d = ud;
	json_object_object_add(o, "name", json_object_new_string("detd"));
	json_object_object_add(o, "version", json_object_new_string(DETD_VERSION));
	json_object_object_add(o, "pid", json_object_new_int((int)getpid()));
	json_object_object_add(o, "state",
			       json_object_new_string(d->stopping ? "stopping" : "running"));
	/* json-c prints doubles with 17 digits; a fixed 3-decimal text reads better */
	char up[32];
	double up_s = (double)(det_mono_ns() - d->start_mono_ns) / 1e9;
	snprintf(up, sizeof(up), "%.3f", up_s);
	json_object_object_add(o, "uptime_s", json_object_new_double_s(up_s, up));
	json_object_object_add(o, "started_at_unix_ms",
			       json_object_new_int64(d->start_wall_ns / 1000000));
	json_object_object_add(o, "config", json_object_new_string(d->cfg->source_path ? d->cfg->source_path : d->config_path));
	json_object_object_add(o, "log_level",
			       json_object_new_string(log_level_name(log_get_level())));
	json_object_object_add(o, "http_port", json_object_new_int(http_port(d->http)));
	json_object_object_add(o, "streams_configured", json_object_new_int((int)d->cfg->n_streams));

	struct json_object *rl = json_object_new_object();
	json_object_object_add(rl, "ok", json_object_new_int((int)d->reloads_ok));
	json_object_object_add(rl, "failed", json_object_new_int((int)d->reloads_failed));
	if (d->last_reload_wall_ns)
		json_object_object_add(rl, "last_unix_ms",
				       json_object_new_int64(d->last_reload_wall_ns / 1000000));
	if (d->last_reload_error[0])
		json_object_object_add(rl, "last_error",
				       json_object_new_string(d->last_reload_error));
	json_object_object_add(o, "reloads", rl);

	struct json_object *mods = json_object_new_array();
	for (size_t i = 0; i < d->n_modules; i++)
		json_object_array_add(mods, json_object_new_string(d->modules[i].name));
	json_object_object_add(o, "modules", mods);
}

/* ---- life ---------------------------------------------------------------------- */

static int write_port_file(const char *path, int port)
{
	char tmp[4096];
	FILE *f;
	/* write + rename: a test polling the file never reads half a number */
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f, "%d\n", port);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		int r = -errno;
		unlink(tmp);
		return r;
	}
	return 0;
}

int daemon_create(const struct daemon_opts *opts, struct daemon **out)
{
	struct daemon *d;
	struct cfg_errors *errs;
	char **names = NULL;
	int r, n;

	/* libevent's locking must be set up before any event_base exists. */
	if (evthread_use_pthreads() < 0)
		return -ENOSYS;
	d = calloc(1, sizeof(*d));
	errs = calloc(1, sizeof(*errs));
	if (!d || !errs) {
		free(d);
		free(errs);
		return -ENOMEM;
	}
	d->start_mono_ns = det_mono_ns();
	d->start_wall_ns = det_wall_ns();
	d->config_path = strdup(opts->config_path);
	d->log_level_override = opts->log_level ? strdup(opts->log_level) : NULL;
	d->port_file = opts->port_file ? strdup(opts->port_file) : NULL;
	if (!d->config_path) {
		r = -ENOMEM;
		goto fail;
	}
	d->check_cfg = opts->check_cfg;
	r = cfg_load(opts->config_path, &d->cfg, errs);
	if (r == 0 && d->check_cfg)
		r = d->check_cfg(d->cfg, errs);
	if (r < 0) {
		for (size_t i = 0; i < errs->n; i++)
			log_error("config", "%s: %s", opts->config_path, errs->msg[i]);
		if (errs->dropped)
			log_error("config", "%s: %zu more errors", opts->config_path, errs->dropped);
		r = -EINVAL;
		goto fail;
	}
	apply_log_level(d);

	d->base = event_base_new();
	if (!d->base) {
		r = -ENOMEM;
		goto fail;
	}
	d->sig_term = evsignal_new(d->base, SIGTERM, signal_cb, d);
	d->sig_int = evsignal_new(d->base, SIGINT, signal_cb, d);
	d->sig_hup = evsignal_new(d->base, SIGHUP, signal_cb, d);
	d->stop_timer = evtimer_new(d->base, stop_timeout_cb, d);
	d->watchdog = event_new(d->base, -1, EV_PERSIST, watchdog_cb, d);
	if (!d->sig_term || !d->sig_int || !d->sig_hup || !d->stop_timer || !d->watchdog) {
		r = -ENOMEM;
		goto fail;
	}

	d->watchdog_usec = notify_watchdog_usec();
	n = notify_listen_fds(&names);
	for (int i = 0; i < n && names; i++) {
		if (d->n_listen == MAX_LISTEN_FDS) {
			close(3 + i);
			continue;
		}
		d->listen[d->n_listen].fd = 3 + i;
		d->listen[d->n_listen].name = names[i];
		names[i] = NULL;
		log_info("daemon", "inherited socket fd %d named \"%s\"", 3 + i,
			 d->listen[d->n_listen].name);
		d->n_listen++;
	}
	for (int i = 0; i < n && names; i++)
		free(names[i]);
	free(names);
	free(errs);
	*out = d;
	return 0;
fail:
	free(errs);
	daemon_destroy(d);
	return r;
}

int daemon_run(struct daemon *d)
{
	uint64_t wd;
	int r;
	size_t i;

	/* A peer closing a socket must be an EPIPE, not a dead daemon. */
	signal(SIGPIPE, SIG_IGN);
	if (event_add(d->sig_term, NULL) < 0 || event_add(d->sig_int, NULL) < 0 ||
	    event_add(d->sig_hup, NULL) < 0) {
		log_error("daemon", "cannot install signal handlers");
		return EXIT_FAILURE;
	}

	if (d->cfg->http.enabled) {
		int fd = daemon_listen_fd_take(d, "http");
		r = http_create(d->base, &d->cfg->http, fd >= 0 ? fd : -1, &d->http);
		if (r < 0)
			return EXIT_FAILURE;
		if (http_route_add(d->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/healthz", 0, healthz,
				   d) < 0 ||
		    http_status_add(d->http, "", status_root, d) < 0) {
			log_error("daemon", "cannot register the HTTP endpoints");
			return EXIT_FAILURE;
		}
		log_info("http", "listening on %s:%d%s", d->cfg->http.address, http_port(d->http),
			 fd >= 0 ? " (socket activation)" : "");
		if (d->port_file && (r = write_port_file(d->port_file, http_port(d->http))) < 0)
			log_warn("daemon", "cannot write %s: %s", d->port_file, strerror(-r));
	}

	for (i = 0; i < d->n_modules; i++) {
		if (!d->modules[i].start) {
			d->started[i] = true;
			continue;
		}
		r = d->modules[i].start(d, d->modules[i].ud);
		if (r < 0) {
			log_error("daemon", "module %s failed to start: %s", d->modules[i].name,
				  strerror(-r));
			d->stopping = true;
			notify_send("STOPPING=1");
			stop_modules(d);
			/* Pending stops get the same bounded time as a normal stop. */
			if (d->n_pending) {
				struct timeval tv = {DAEMON_STOP_TIMEOUT_MS / 1000,
						     (DAEMON_STOP_TIMEOUT_MS % 1000) * 1000};
				evtimer_add(d->stop_timer, &tv);
				event_base_dispatch(d->base);
			}
			return d->forced ? DAEMON_EXIT_FORCED : EXIT_FAILURE;
		}
		d->started[i] = true;
		log_debug("daemon", "module %s started", d->modules[i].name);
	}

	for (i = 0; i < d->n_listen; i++)
		if (d->listen[i].fd >= 0)
			log_warn("daemon", "inherited socket \"%s\" (fd %d) is not used by any module",
				 d->listen[i].name, d->listen[i].fd);

	wd = d->watchdog_usec;
	if (wd) {
		/* Half the interval, as systemd recommends: one late tick is not fatal. */
		struct timeval tv = {(time_t)(wd / 2 / 1000000), (suseconds_t)(wd / 2 % 1000000)};
		event_add(d->watchdog, &tv);
		log_info("daemon", "watchdog every %llu ms", (unsigned long long)(wd / 2000));
	}
	snprintf(d->status, sizeof(d->status), "running: %zu streams configured%s",
		 d->cfg->n_streams, d->http ? ", HTTP up" : "");
	if (d->http)
		snprintf(d->status + strlen(d->status), sizeof(d->status) - strlen(d->status),
			 " on port %d", http_port(d->http));
	notify_send("READY=1\nSTATUS=%s\nMAINPID=%d", d->status, (int)getpid());
	log_info("daemon", "detd %s ready (pid %d, config %s)", DETD_VERSION, (int)getpid(),
		 d->config_path);

	event_base_dispatch(d->base);
	return d->forced ? DAEMON_EXIT_FORCED : d->exit_code;
}

void daemon_destroy(struct daemon *d)
{
	if (!d)
		return;
	http_destroy(d->http);
	if (d->sig_term)
		event_free(d->sig_term);
	if (d->sig_int)
		event_free(d->sig_int);
	if (d->sig_hup)
		event_free(d->sig_hup);
	if (d->stop_timer)
		event_free(d->stop_timer);
	if (d->watchdog)
		event_free(d->watchdog);
	for (size_t i = 0; i < d->n_listen; i++) {
		if (d->listen[i].fd >= 0)
			close(d->listen[i].fd);
		free(d->listen[i].name);
	}
	if (d->base)
		event_base_free(d->base);
	cfg_free(d->cfg);
	free(d->config_path);
	free(d->log_level_override);
	free(d->port_file);
	free(d);
}
