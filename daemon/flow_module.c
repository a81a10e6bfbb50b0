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
 *
 * The stream set (issue 15 #4).  One source of truth for what runs:
 *   running = (streams of the file − file streams DELETEd over HTTP)
 *             ∪ streams POSTed over HTTP
 * HTTP streams are run-time state kept here (lost on restart); a DELETE of
 * a file stream lasts until the file stops listing that id (or a restart).
 * A SIGHUP applies the file's changes to its own, undeleted streams only;
 * a file stream whose id is taken by a running HTTP stream, or a total
 * above CFG_MAX_STREAMS, rejects the whole reload (check hook: counted as
 * failed, last_error says why).  POST answers 409 for an id that runs and
 * for a 65th stream.
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
	struct cfg_stream *http; /* streams POSTed over HTTP */
	size_t n_http;
	char (*deleted)[DET_STREAM_ID_MAX]; /* file streams DELETEd over HTTP */
	size_t n_deleted;
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

/* ---- the stream set ---- */

static const struct cfg_stream *http_find(const struct flow_module *m, const char *id)
{
	for (size_t i = 0; i < m->n_http; i++)
		if (strcmp(m->http[i].id, id) == 0)
			return &m->http[i];
	return NULL;
}

static bool is_deleted(const struct flow_module *m, const char *id)
{
	for (size_t i = 0; i < m->n_deleted; i++)
		if (strcmp(m->deleted[i], id) == 0)
			return true;
	return false;
}

/* A stream of the file that the file decides about (not deleted, not
 * shadowed by an HTTP stream of the same id). */
static bool file_owned(const struct flow_module *m, const char *id)
{
	return !is_deleted(m, id) && !http_find(m, id);
}

static size_t running_count(const struct flow_module *m, const struct cfg *c)
{
	size_t n = m->n_http;
	for (size_t i = 0; i < c->n_streams; i++)
		n += file_owned(m, c->streams[i].id);
	return n;
}

const struct cfg_stream *flow_module_stream(const struct flow_module *m, const char *id,
					    bool *from_http)
{
	const struct cfg_stream *s = m ? http_find(m, id) : NULL;
	if (from_http)
		*from_http = s != NULL;
	if (s || !m)
		return s;
	s = find(daemon_cfg(m->d), id);
	return s && !is_deleted(m, id) ? s : NULL;
}

bool flow_module_stream_runtime(const struct flow_module *m, const char *id)
{
	return m && (http_find(m, id) || is_deleted(m, id));
}

int flow_module_stream_add(struct flow_module *m, const struct cfg_stream *s, char *err,
			   size_t errlen)
{
	if (!m->flow) {
		snprintf(err, errlen, "the data path is not running");
		return -EAGAIN;
	}
	if (flow_module_stream(m, s->id, NULL)) {
		snprintf(err, errlen, "stream %s: the id is in use", s->id);
		return -EEXIST;
	}
	if (running_count(m, daemon_cfg(m->d)) >= CFG_MAX_STREAMS) {
		snprintf(err, errlen, "stream %s: at most %d streams run at a time", s->id,
			 CFG_MAX_STREAMS);
		return -ENOSPC;
	}
	struct cfg_stream *n = realloc(m->http, (m->n_http + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	m->http = n;
	int rc = cfg_stream_copy(&m->http[m->n_http], s);
	if (rc < 0)
		return rc;
	rc = flow_stream_add(m->flow, s);
	if (rc < 0) {
		cfg_stream_clear(&m->http[m->n_http]);
		snprintf(err, errlen, "stream %s: %s", s->id, strerror(-rc));
		return rc;
	}
	m->n_http++;
	return 0;
}

int flow_module_stream_remove(struct flow_module *m, const char *id, char *err, size_t errlen)
{
	if (!m->flow) {
		snprintf(err, errlen, "the data path is not running");
		return -EAGAIN;
	}
	const struct cfg_stream *h = http_find(m, id);
	bool file = !h && flow_module_stream(m, id, NULL);
	if (!h && !file) {
		snprintf(err, errlen, "no such stream: %s", id);
		return -ENOENT;
	}
	if (file) {
		char (*d)[DET_STREAM_ID_MAX] = realloc(m->deleted, (m->n_deleted + 1) * sizeof(*d));
		if (!d)
			return -ENOMEM;
		m->deleted = d;
	}
	int rc = flow_stream_remove(m->flow, id);
	if (rc < 0 && rc != -ENOENT) {
		snprintf(err, errlen, "stream %s: %s", id, strerror(-rc));
		return rc;
	}
	if (h) {
		size_t i = (size_t)(h - m->http);
		cfg_stream_clear(&m->http[i]);
		m->http[i] = m->http[--m->n_http];
	} else {
		snprintf(m->deleted[m->n_deleted++], DET_STREAM_ID_MAX, "%s", id);
	}
	return 0;
}

/* Before a reload swaps the file in: the file must not take an id that an
 * HTTP stream holds, and the total must stay within the limit. */
static int mod_check(struct daemon *d, const struct cfg *nw, char *err, size_t errlen, void *ud)
{
	(void)d;
	struct flow_module *m = ud;
	for (size_t i = 0; i < nw->n_streams; i++) {
		const char *id = nw->streams[i].id;
		if (!is_deleted(m, id) && http_find(m, id)) {
			snprintf(err, errlen, "streams[%zu].id: \"%s\" is the id of a stream added "
					      "over HTTP (DELETE /streams/%s first, or rename it)",
				 i, id, id);
			return -EEXIST;
		}
	}
	size_t n = running_count(m, nw);
	if (n > CFG_MAX_STREAMS) {
		snprintf(err, errlen, "streams: %zu would run with the %zu added over HTTP, at most "
				      "%d may", n, m->n_http, CFG_MAX_STREAMS);
		return -ENOSPC;
	}
	return 0;
}

/* Streams added, removed or changed in the file are applied (only those the
 * file decides about, see the top); the model and engine need a restart
 * (the daemon says so). */
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
		if (!file_owned(m, o->id))
			continue;
		if (!n || stream_changed(o, n)) {
			int r = flow_stream_remove(m->flow, o->id);
			if (r < 0 && r != -ENOENT)
				rc = r;
		}
	}
	for (size_t i = 0; i < nw->n_streams; i++) {
		const struct cfg_stream *n = &nw->streams[i], *o = find(old, n->id);
		if (!file_owned(m, n->id))
			continue;
		if (!o || stream_changed(o, n)) {
			int r = flow_stream_add(m->flow, n);
			if (r < 0) {
				log_error(TOPIC, "reload: stream %s: %s", n->id, strerror(-r));
				rc = r;
			}
		}
	}
	/* a DELETE lasts until the file stops listing the stream */
	for (size_t i = 0; i < m->n_deleted;) {
		if (!find(nw, m->deleted[i]))
			memcpy(m->deleted[i], m->deleted[--m->n_deleted], DET_STREAM_ID_MAX);
		else
			i++;
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
				   .stop = mod_stop, .ud = m, .check = mod_check};
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
	for (size_t i = 0; i < m->n_http; i++)
		cfg_stream_clear(&m->http[i]);
	free(m->http);
	free(m->deleted);
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
