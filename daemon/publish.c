/*
 * publish.c — see publish.h.  Wires metrics, bus, ipc and api into the
 * daemon lifecycle; the only cross-thread part is the stream-state queue.
 */
#include "publish.h"

#include <errno.h>
#include <event2/event.h>
#include <json-c/json.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "bus.h"
#include "config.h"
#include "daemon.h"
#include "http.h"
#include "ipc.h"
#include "log.h"
#include "metrics.h"

#define TOPIC "publish"

struct state_ev {
	char stream[DET_STREAM_ID_MAX];
	char state[32];
	char *error;
};

struct publish {
	struct daemon *d;
	struct metrics *metrics;
	struct bus *bus;
	struct ipc_server *ipc;
	struct api *api;
	struct publish_stream_ops ops;
	bool started;
	/* stream states from other threads: a bounded ring under a mutex */
	pthread_mutex_t lock;
	struct state_ev q[PUBLISH_STATE_QUEUE];
	size_t q_head, q_len;
	uint64_t q_dropped;
	struct event *q_ev;
};

/* ---- api hooks ---- */

static int hook_add(const char *body, size_t len, char *id, size_t id_len, char *err,
		    size_t errlen, void *ud)
{
	struct publish *p = ud;
	if (!p->ops.add) {
		snprintf(err, errlen, "adding streams at run time needs the data path");
		return -ENOTSUP;
	}
	int rc = p->ops.add(body, len, id, id_len, err, errlen, p->ops.ud);
	if (rc == 0 && !bus_stream_exists(p->bus, id))
		bus_stream_add(p->bus, id);
	return rc;
}

static int hook_remove(const char *id, char *err, size_t errlen, void *ud)
{
	struct publish *p = ud;
	if (!p->ops.remove) {
		if (!bus_stream_exists(p->bus, id)) {
			snprintf(err, errlen, "no such stream: %s", id);
			return -ENOENT;
		}
		snprintf(err, errlen, "removing streams at run time needs the data path");
		return -ENOTSUP;
	}
	int rc = p->ops.remove(id, err, errlen, p->ops.ud);
	if (rc == 0)
		bus_stream_remove(p->bus, id);
	return rc;
}

static void hook_describe(const char *id, struct json_object *entry, void *ud)
{
	struct publish *p = ud;
	const struct cfg_stream *s = cfg_stream_find(daemon_cfg(p->d), id);
	if (s) {
		json_object_object_add(entry, "type",
				       json_object_new_string(cfg_source_kind_name(s->kind)));
		const char *src = s->uri ? s->uri : s->device ? s->device : s->pipeline ? s->pipeline
											: s->pattern;
		if (src)
			json_object_object_add(entry, "source", json_object_new_string(src));
		json_object_object_add(entry, "enabled", json_object_new_boolean(s->enabled));
	}
	if (p->ops.describe)
		p->ops.describe(id, entry, p->ops.ud);
}

/* The daemon reloads on SIGHUP from its loop; asking it that way keeps one
 * reload path.  The outcome shows in /status ("reload") and the log. */
static int hook_reload(char *err, size_t errlen, void *ud)
{
	if (kill(getpid(), SIGHUP) < 0) {
		snprintf(err, errlen, "cannot signal the daemon: %s", strerror(errno));
		return -errno;
	}
	return 1;
}

/* ---- state queue ---- */

static void drain_states(evutil_socket_t fd, short what, void *ud)
{
	struct publish *p = ud;
	for (;;) {
		struct state_ev ev;
		pthread_mutex_lock(&p->lock);
		if (!p->q_len) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		ev = p->q[p->q_head];
		p->q_head = (p->q_head + 1) % PUBLISH_STATE_QUEUE;
		p->q_len--;
		pthread_mutex_unlock(&p->lock);
		/* Only for listed streams: a pipeline being removed reports its
		 * last states after the stream left the bus, and they must not
		 * bring it back as a ghost that never gets a frame (issue 15 #4).
		 * Streams are listed before their pipelines start. */
		if (p->bus && bus_stream_exists(p->bus, ev.stream))
			bus_stream_state(p->bus, ev.stream, ev.state, ev.error);
		free(ev.error);
	}
}

void publish_stream_state(struct publish *p, const char *stream, const char *state,
			  const char *error)
{
	if (!p || !stream || !state)
		return;
	struct state_ev ev = {0};
	snprintf(ev.stream, sizeof(ev.stream), "%s", stream);
	snprintf(ev.state, sizeof(ev.state), "%s", state);
	ev.error = error ? strdup(error) : NULL;
	pthread_mutex_lock(&p->lock);
	if (p->q_len == PUBLISH_STATE_QUEUE) {
		free(p->q[p->q_head].error);
		p->q_head = (p->q_head + 1) % PUBLISH_STATE_QUEUE;
		p->q_len--;
		p->q_dropped++;
	}
	p->q[(p->q_head + p->q_len) % PUBLISH_STATE_QUEUE] = ev;
	p->q_len++;
	pthread_mutex_unlock(&p->lock);
	if (p->q_ev)
		event_active(p->q_ev, 0, 0);
}

/* ---- module ---- */

static void status_fill(struct json_object *sec, void *ud)
{
	struct publish *p = ud;
	struct ipc_stats st = {0};
	if (p->ipc)
		ipc_get_stats(p->ipc, &st);
	const struct cfg_ipc *c = &daemon_cfg(p->d)->ipc;
	json_object_object_add(sec, "ipc_path", p->ipc ? json_object_new_string(c->path) : NULL);
	json_object_object_add(sec, "ipc_clients", json_object_new_uint64(st.clients));
	json_object_object_add(sec, "ipc_dropped", json_object_new_uint64(st.dropped));
	json_object_object_add(sec, "ipc_slow_disconnects", json_object_new_uint64(st.slow_disconnects));
	json_object_object_add(sec, "sse_clients", json_object_new_uint64(api_sse_count(p->api)));
	json_object_object_add(sec, "subscriptions", json_object_new_uint64(bus_sub_count(p->bus)));
	json_object_object_add(sec, "replay_ring", json_object_new_int(c->replay_ring));
}

static int mod_start(struct daemon *d, void *ud)
{
	struct publish *p = ud;
	const struct cfg *cfg = daemon_cfg(d);
	struct event_base *base = daemon_base(d);
	int rc = -ENOMEM;
	p->d = d;
	if (!(p->bus = bus_create(cfg->ipc.replay_ring, p->metrics)))
		return -ENOMEM;
	if (!(p->q_ev = event_new(base, -1, 0, drain_states, p)))
		return -ENOMEM;
	for (size_t i = 0; i < cfg->n_streams; i++)
		bus_stream_add(p->bus, cfg->streams[i].id);
	metrics_define(p->metrics, "detd_frames_dropped_total", METRICS_COUNTER,
		       "Frames dropped before inference, per stream and reason", NULL, 0);
	metrics_define(p->metrics, "detd_queue_depth", METRICS_GAUGE,
		       "Items waiting in each internal queue", NULL, 0);
	if (cfg->ipc.enabled) {
		int fd = daemon_listen_fd_take(d, "ipc");
		rc = ipc_create(base, &cfg->ipc, p->bus, p->metrics, fd >= 0 ? fd : -1, &p->ipc);
		if (rc < 0) {
			log_error(TOPIC, "cannot serve %s: %s", cfg->ipc.path, strerror(-rc));
			return rc;
		}
	}
	struct http *h = daemon_http(d);
	if (h) {
		struct api_opts o = {
			.bus = p->bus, .metrics = p->metrics, .http = &cfg->http, .ipc = &cfg->ipc,
			.hooks = {.stream_add = hook_add, .stream_remove = hook_remove,
				  .reload = hook_reload, .stream_describe = hook_describe, .ud = p}};
		if ((rc = api_create(base, h, &o, &p->api)) < 0) {
			log_error(TOPIC, "cannot add the HTTP API: %s", strerror(-rc));
			return rc;
		}
		http_status_add(h, "publish", status_fill, p);
	}
	p->started = true;
	return 0;
}

static int mod_reload(struct daemon *d, const struct cfg *old, const struct cfg *nw, void *ud)
{
	struct publish *p = ud;
	/* streams the reload adds or removes (ones added over HTTP are in
	 * neither config and stay) */
	for (size_t i = 0; i < nw->n_streams; i++)
		if (!bus_stream_exists(p->bus, nw->streams[i].id) &&
		    !(p->ops.runtime && p->ops.runtime(nw->streams[i].id, p->ops.ud)))
			bus_stream_add(p->bus, nw->streams[i].id);
	for (size_t i = 0; i < old->n_streams; i++)
		if (!cfg_stream_find(nw, old->streams[i].id) &&
		    !(p->ops.runtime && p->ops.runtime(old->streams[i].id, p->ops.ud)))
			bus_stream_remove(p->bus, old->streams[i].id);
	ipc_reload(p->ipc, &nw->ipc);
	if (p->api)
		api_reload(p->api, &nw->http, &nw->ipc);
	return 0;
}

static int mod_stop(struct daemon *d, void *ud)
{
	struct publish *p = ud;
	struct http *h = daemon_http(d);
	if (h)
		http_status_remove(h, "publish");
	api_destroy(p->api);
	p->api = NULL;
	ipc_destroy(p->ipc);
	p->ipc = NULL;
	return 0;
}

int publish_module_add(struct daemon *d, struct publish **out)
{
	struct publish *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	if (!(p->metrics = metrics_create())) {
		publish_free(p);
		return -ENOMEM;
	}
	struct daemon_module m = {.name = "publish", .start = mod_start, .reload = mod_reload,
				  .stop = mod_stop, .ud = p};
	int rc = daemon_module_add(d, &m);
	if (rc < 0) {
		publish_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

void publish_free(struct publish *p)
{
	if (!p)
		return;
	api_destroy(p->api);
	ipc_destroy(p->ipc);
	if (p->q_ev)
		event_free(p->q_ev);
	for (size_t i = 0; i < p->q_len; i++)
		free(p->q[(p->q_head + i) % PUBLISH_STATE_QUEUE].error);
	bus_destroy(p->bus);
	metrics_destroy(p->metrics);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

void publish_result(struct det_result *r, void *ud)
{
	struct publish *p = ud;
	/* a result still in flight when its stream was removed must not list
	 * the stream again (the bus would create it) */
	if (p && p->bus && bus_stream_exists(p->bus, r->stream_id))
		bus_publish(p->bus, r);
}

void publish_set_stream_ops(struct publish *p, const struct publish_stream_ops *ops)
{
	if (p && ops)
		p->ops = *ops;
}

struct bus *publish_bus(struct publish *p)
{
	return p ? p->bus : NULL;
}

struct metrics *publish_metrics(struct publish *p)
{
	return p ? p->metrics : NULL;
}
