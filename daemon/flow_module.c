/*
 * flow_module.c — the data path (flow.c) as a daemon module: started after
 * the publishers so results have somewhere to go, stopped first.
 *
 * Stop is the ordered shutdown of the data path and must not block the
 * loop: a helper thread sets the pipelines to NULL and joins the workers
 * (flow_stop_threads), then wakes the loop with event_active(); the loop
 * flushes the last results and reports the module stopped.  A batch cannot
 * be interrupted, so when one is still running after FLOW_STOP_BUDGET_MS (a
 * slow backend, a sanitizer build) the module reports itself stopped anyway
 * (the daemon would otherwise give up and exit without cleanup) and
 * flow_module_free() joins the stopper after the loop and publishes the
 * batch's results then.
 *
 * Threads: the loop, plus the short-lived stopper thread.
 */
#include "flow.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "daemon.h"
#include "http.h"
#include "log.h"

#define TOPIC "flow"
#define FLOW_STOP_BUDGET_MS 1000 /* below the daemon's DAEMON_STOP_TIMEOUT_MS */

struct flow_module {
	struct flow_module_opts o;
	struct daemon *d;
	struct flow *flow;
	struct event *stopped_ev; /* the stopper thread is done */
	struct event *budget_ev;  /* FLOW_STOP_BUDGET_MS passed */
	pthread_t stopper;
	bool stopping;
	bool stopper_running; /* started and not joined */
	bool reported;        /* daemon_module_stopped() called */
};

static int alive(void *ud, char *why, size_t whylen)
{
	struct flow_module *m = ud;
	return m->flow && !m->stopping ? flow_check_alive(m->flow, why, whylen) : 0;
}

static int mod_start(struct daemon *d, void *ud)
{
	struct flow_module *m = ud;
	char err[512] = "";
	struct flow_opts fo = {.cfg = daemon_cfg(d), .base = daemon_base(d), .print = m->o.print,
			       .dump_dir = m->o.dump_dir, .on_result = m->o.on_result,
			       .on_state = m->o.on_state, .ud = m->o.ud};
	int rc = flow_create(&fo, &m->flow, err, sizeof(err));
	if (rc < 0) {
		log_error(TOPIC, "cannot start the data path: %s", err[0] ? err : strerror(-rc));
		return rc;
	}
	struct http *h = daemon_http(d);
	if (h) {
		http_status_add(h, "engine", flow_status_engine, m->flow);
		http_status_add(h, "streams", flow_status_streams, m->flow);
	}
	flow_watchdog_arm(m->flow, daemon_watchdog_usec(d));
	daemon_set_liveness(d, alive, m);
	if (m->o.started)
		m->o.started(m->flow, m->o.ud);
	return 0;
}

static void *stopper_main(void *arg)
{
	struct flow_module *m = arg;
	daemon_block_signals();
	flow_stop_threads(m->flow);
	event_active(m->stopped_ev, EV_READ, 0);
	return NULL;
}

/* Loop (or main after the loop): join the stopper, publish the last results. */
static void finish_stop(struct flow_module *m)
{
	if (m->stopper_running) {
		pthread_join(m->stopper, NULL);
		m->stopper_running = false;
	}
	flow_stop(m->flow); /* the threads are gone: only flushes the results */
}

/* Loop: the stopper is done. */
static void on_stopped(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct flow_module *m = arg;
	finish_stop(m);
	if (m->budget_ev)
		event_del(m->budget_ev);
	if (!m->reported) {
		m->reported = true;
		log_info(TOPIC, "data path stopped");
		daemon_module_stopped(m->d, "flow");
	}
}

/* Loop: a batch is still running; let the daemon go on closing. */
static void on_budget(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct flow_module *m = arg;
	if (m->reported)
		return;
	m->reported = true;
	log_warn(TOPIC, "a batch is still running after %d ms; its results are published "
			"when it ends", FLOW_STOP_BUDGET_MS);
	daemon_module_stopped(m->d, "flow");
}

static int mod_stop(struct daemon *d, void *ud)
{
	struct flow_module *m = ud;
	if (!m->flow || m->stopping)
		return 0;
	struct http *h = daemon_http(d);
	if (h) {
		http_status_remove(h, "engine");
		http_status_remove(h, "streams");
	}
	m->stopping = true;
	daemon_set_liveness(d, NULL, NULL);
	m->stopped_ev = event_new(daemon_base(d), -1, 0, on_stopped, m);
	m->budget_ev = evtimer_new(daemon_base(d), on_budget, m);
	if (!m->stopped_ev || !m->budget_ev ||
	    pthread_create(&m->stopper, NULL, stopper_main, m) != 0) {
		/* no thread: stop here, blocking the loop for the shutdown */
		flow_stop(m->flow);
		return 0;
	}
	m->stopper_running = true;
	struct timeval tv = {FLOW_STOP_BUDGET_MS / 1000, (FLOW_STOP_BUDGET_MS % 1000) * 1000};
	evtimer_add(m->budget_ev, &tv);
	return DAEMON_STOP_PENDING;
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool stream_changed(const struct cfg_stream *a, const struct cfg_stream *b)
{
	return a->kind != b->kind || !same_str(a->uri, b->uri) || !same_str(a->device, b->device) ||
	       !same_str(a->caps, b->caps) || !same_str(a->pipeline, b->pipeline) ||
	       !same_str(a->pattern, b->pattern) || a->fps != b->fps || a->loop != b->loop ||
	       a->aspect != b->aspect || a->enabled != b->enabled ||
	       a->rtsp_transport != b->rtsp_transport || a->latency_ms != b->latency_ms;
}

static const struct cfg_stream *find(const struct cfg *c, const char *id)
{
	for (size_t i = 0; i < c->n_streams; i++)
		if (strcmp(c->streams[i].id, id) == 0)
			return &c->streams[i];
	return NULL;
}

/* Streams added, removed or changed in the file are applied; the model and
 * engine need a restart (the daemon says so). */
static int mod_reload(struct daemon *d, const struct cfg *old, const struct cfg *nw, void *ud)
{
	(void)d;
	struct flow_module *m = ud;
	if (!m->flow)
		return 0;
	int rc = 0;
	flow_reload_engine(m->flow, &nw->engine);
	for (size_t i = 0; i < old->n_streams; i++) {
		const struct cfg_stream *o = &old->streams[i], *n = find(nw, o->id);
		if (!n || stream_changed(o, n)) {
			int r = flow_stream_remove(m->flow, o->id);
			if (r < 0 && r != -ENOENT)
				rc = r;
		}
	}
	for (size_t i = 0; i < nw->n_streams; i++) {
		const struct cfg_stream *n = &nw->streams[i], *o = find(old, n->id);
		if (!o || stream_changed(o, n)) {
			int r = flow_stream_add(m->flow, n);
			if (r < 0) {
				log_error(TOPIC, "reload: stream %s: %s", n->id, strerror(-r));
				rc = r;
			}
		}
	}
	return rc;
}

int flow_module_add(struct daemon *d, const struct flow_module_opts *o, struct flow_module **out)
{
	struct flow_module *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->o = *o;
	m->d = d;
	struct daemon_module dm = {.name = "flow", .start = mod_start, .reload = mod_reload,
				   .stop = mod_stop, .ud = m};
	int rc = daemon_module_add(d, &dm);
	if (rc < 0) {
		free(m);
		return rc;
	}
	*out = m;
	return 0;
}

void flow_module_free(struct flow_module *m)
{
	if (!m)
		return;
	if (m->stopping)
		finish_stop(m); /* a batch outlived the stop budget: wait for it now */
	flow_destroy(m->flow);
	if (m->stopped_ev)
		event_free(m->stopped_ev);
	if (m->budget_ev)
		event_free(m->budget_ev);
	free(m);
}

struct flow *flow_module_flow(struct flow_module *m)
{
	return m ? m->flow : NULL;
}
