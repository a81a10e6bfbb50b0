/*
 * bus.c — see bus.h.  Loop thread only.
 *
 * Publishing one result: serialize the full message once (it is also the
 * stream's "latest" and goes into the replay ring); subscribers whose filter
 * drops objects get a filtered serialization, cached per distinct set of kept
 * objects for the duration of this publish, so N subscribers with the same
 * filter still cost one serialization.
 */
#include "bus.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"

#define TOPIC "bus"
#define FPS_WINDOW_NS 2000000000LL
#define MAX_FILTER_ITEMS 256

struct ring_entry {
	struct det_result *r;
	struct bus_msg *full;
};

struct stream {
	char id[DET_STREAM_ID_MAX];
	char state[32];
	char *error;
	uint64_t last_seq;
	uint64_t evicted_max; /* highest seq that left the ring: resume gaps start here */
	uint64_t results;
	struct ring_entry *ring; /* capacity = bus->ring_cap; oldest at head */
	size_t ring_head, ring_len;
	struct bus_msg *latest;
	int64_t last_result_mono;
	int64_t win_start;
	uint64_t win_count;
	double fps;
	struct stream *next;
};

struct bus_sub {
	struct bus *bus;
	struct bus_filter f;
	bus_deliver_fn fn;
	void *ud;
	bool dead; /* unsubscribed during a publish: freed after the loop */
	struct bus_sub *next;
};

struct bus {
	int ring_cap;
	struct metrics *metrics;
	struct stream *streams, *streams_tail;
	struct bus_sub *subs;
	size_t n_subs;
	int publishing; /* >0 while iterating subs */
	/* batch-size derivation: results of one batch share their inference times */
	int64_t batch_start, batch_end;
	int batch_n;
};

/* ---- messages ---- */

struct bus_msg *bus_msg_new(const char *json, size_t len)
{
	struct bus_msg *m = malloc(sizeof(*m) + len + 2);
	if (!m)
		return NULL;
	m->refs = 1;
	memcpy(m->data, json, len);
	m->data[len] = '\n';
	m->data[len + 1] = '\0'; /* not part of the message; lets tests and logs use it as a string */
	m->len = len + 1;
	return m;
}

struct bus_msg *bus_msg_from_json(struct json_object *obj)
{
	size_t len = 0;
	const char *s = json_object_to_json_string_length(
		obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	return s ? bus_msg_new(s, len) : NULL;
}

struct bus_msg *bus_msg_ref(struct bus_msg *m)
{
	if (m)
		m->refs++;
	return m;
}

void bus_msg_unref(struct bus_msg *m)
{
	if (m && --m->refs == 0)
		free(m);
}

/* ---- filters ---- */

void bus_filter_clear(struct bus_filter *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n_streams; i++)
		free(f->streams[i]);
	for (size_t i = 0; i < f->n_labels; i++)
		free(f->labels[i]);
	free(f->streams);
	free(f->labels);
	memset(f, 0, sizeof(*f));
}

bool bus_filter_filters_objects(const struct bus_filter *f)
{
	return f->n_labels > 0 || f->min_score > 0;
}

bool bus_filter_has_stream(const struct bus_filter *f, const char *stream)
{
	if (f->n_streams == 0)
		return true;
	for (size_t i = 0; i < f->n_streams; i++)
		if (strcmp(f->streams[i], stream) == 0)
			return true;
	return false;
}

static bool has_label(const struct bus_filter *f, const char *label)
{
	for (size_t i = 0; i < f->n_labels; i++)
		if (strcmp(f->labels[i], label) == 0)
			return true;
	return false;
}

static int push_str(char ***list, size_t *n, const char *s)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*list)[i], s) == 0)
			return 0; /* duplicates are harmless, keep one */
	char **p = realloc(*list, (*n + 1) * sizeof(char *));
	if (!p)
		return -ENOMEM;
	*list = p;
	if (!(p[*n] = strdup(s)))
		return -ENOMEM;
	(*n)++;
	return 0;
}

static bool valid_stream_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= DET_STREAM_ID_MAX)
		return false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

int bus_filter_add_stream(struct bus_filter *f, const char *id, char *err, size_t errlen)
{
	if (!valid_stream_id(id)) {
		snprintf(err, errlen, "invalid stream id (expected [A-Za-z0-9_.-]{1,%d})",
			 DET_STREAM_ID_MAX - 1);
		return -EINVAL;
	}
	if (f->n_streams >= MAX_FILTER_ITEMS) {
		snprintf(err, errlen, "too many streams in filter (max %d)", MAX_FILTER_ITEMS);
		return -EINVAL;
	}
	int rc = push_str(&f->streams, &f->n_streams, id);
	if (rc < 0)
		snprintf(err, errlen, "out of memory");
	return rc;
}

int bus_filter_add_label(struct bus_filter *f, const char *label, char *err, size_t errlen)
{
	size_t n = strlen(label);
	if (n == 0 || n >= DET_LABEL_MAX) {
		snprintf(err, errlen, "invalid label (1..%d bytes)", DET_LABEL_MAX - 1);
		return -EINVAL;
	}
	if (f->n_labels >= MAX_FILTER_ITEMS) {
		snprintf(err, errlen, "too many labels in filter (max %d)", MAX_FILTER_ITEMS);
		return -EINVAL;
	}
	int rc = push_str(&f->labels, &f->n_labels, label);
	if (rc < 0)
		snprintf(err, errlen, "out of memory");
	return rc;
}

static int list_from_json(struct bus_filter *f, struct json_object *req, const char *key,
			  char *err, size_t errlen)
{
	struct json_object *v;
	if (!json_object_object_get_ex(req, key, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_array)) {
		snprintf(err, errlen, "%s: expected an array of strings", key);
		return -EINVAL;
	}
	size_t n = json_object_array_length(v);
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(v, i);
		if (!json_object_is_type(e, json_type_string)) {
			snprintf(err, errlen, "%s[%zu]: expected a string", key, i);
			return -EINVAL;
		}
		char sub[160];
		int rc = key[0] == 's' ? bus_filter_add_stream(f, json_object_get_string(e), sub,
								 sizeof(sub))
				       : bus_filter_add_label(f, json_object_get_string(e), sub,
								sizeof(sub));
		if (rc < 0) {
			snprintf(err, errlen, "%s[%zu]: %s", key, i, sub);
			return rc;
		}
	}
	return 0;
}

int bus_filter_from_json(struct bus_filter *f, struct json_object *req, char *err, size_t errlen)
{
	memset(f, 0, sizeof(*f));
	int rc = list_from_json(f, req, "streams", err, errlen);
	if (rc == 0)
		rc = list_from_json(f, req, "labels", err, errlen);
	struct json_object *v;
	if (rc == 0 && json_object_object_get_ex(req, "min_score", &v) &&
	    !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_double) &&
		    !json_object_is_type(v, json_type_int)) {
			snprintf(err, errlen, "min_score: expected a number");
			rc = -EINVAL;
		} else {
			double d = json_object_get_double(v);
			if (!(d >= 0.0 && d <= 1.0)) {
				snprintf(err, errlen, "min_score: expected a number in [0, 1]");
				rc = -EINVAL;
			}
			f->min_score = d;
		}
	}
	if (rc < 0)
		bus_filter_clear(f);
	return rc;
}

struct json_object *bus_filter_to_json(const struct bus_filter *f)
{
	struct json_object *o = json_object_new_object();
	struct json_object *s = json_object_new_array(), *l = json_object_new_array();
	for (size_t i = 0; i < f->n_streams; i++)
		json_object_array_add(s, json_object_new_string(f->streams[i]));
	for (size_t i = 0; i < f->n_labels; i++)
		json_object_array_add(l, json_object_new_string(f->labels[i]));
	json_object_object_add(o, "streams", s);
	json_object_object_add(o, "labels", l);
	json_object_object_add(o, "min_score", json_object_new_double(f->min_score));
	return o;
}

/* ---- serialization ---- */

/* Short decimal form: json-c would print 0.5f as 0.5000000000000000 otherwise. */
static struct json_object *jnum(double v, int decimals)
{
	char buf[48];
	snprintf(buf, sizeof(buf), "%.*f", decimals, v);
	char *dot = strchr(buf, '.');
	if (dot) {
		char *e = buf + strlen(buf) - 1;
		while (e > dot && *e == '0')
			*e-- = '\0';
		if (e == dot)
			*e = '\0';
	}
	if (strcmp(buf, "-0") == 0)
		strcpy(buf, "0");
	return json_object_new_double_s(v, buf);
}

static struct json_object *iso_time(int64_t wall_ns)
{
	char buf[64];
	time_t sec = (time_t)(wall_ns / 1000000000LL);
	struct tm tm;
	gmtime_r(&sec, &tm);
	/* not strftime(): glibc's calls tzset() each time, a stat of /etc/localtime per message */
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (int)((wall_ns / 1000000) % 1000));
	return json_object_new_string(buf);
}

static double ms_between(int64_t a, int64_t b)
{
	return (a > 0 && b >= a) ? (double)(b - a) / 1e6 : -1;
}

struct bus_msg *bus_serialize_result(const struct det_result *r, const bool *keep)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("detections"));
	json_object_object_add(o, "stream", json_object_new_string(r->stream_id));
	json_object_object_add(o, "seq", json_object_new_uint64(r->seq));
	json_object_object_add(o, "pts_ns",
			       r->pts_ns >= 0 ? json_object_new_int64(r->pts_ns) : NULL);
	json_object_object_add(o, "capture_time",
			       r->capture_wall_ns > 0 ? iso_time(r->capture_wall_ns) : NULL);
	json_object_object_add(o, "capture_ns", json_object_new_int64(r->capture_wall_ns));
	json_object_object_add(o, "width", json_object_new_int(r->orig_width));
	json_object_object_add(o, "height", json_object_new_int(r->orig_height));
	if (r->backend[0])
		json_object_object_add(o, "backend", json_object_new_string(r->backend));
	struct json_object *objs = json_object_new_array();
	double w = r->orig_width > 0 ? r->orig_width : 1, h = r->orig_height > 0 ? r->orig_height : 1;
	for (int i = 0; i < r->n_objects; i++) {
		if (keep && !keep[i])
			continue;
		const struct det_object *d = &r->objects[i];
		struct json_object *od = json_object_new_object();
		json_object_object_add(od, "label", json_object_new_string(d->label));
		json_object_object_add(od, "class_id", json_object_new_int(d->class_id));
		json_object_object_add(od, "score", jnum(d->score, 4));
		struct json_object *bp = json_object_new_array(), *bn = json_object_new_array();
		for (int k = 0; k < 4; k++) {
			json_object_array_add(bp, jnum(d->box_px[k], 1));
			json_object_array_add(bn, jnum(d->box_px[k] / ((k & 1) ? h : w), 4));
		}
		json_object_object_add(od, "box", bp);
		json_object_object_add(od, "box_norm", bn);
		json_object_array_add(objs, od);
	}
	json_object_object_add(o, "objects", objs);
	struct json_object *t = json_object_new_object();
	const struct det_timings *tt = &r->t;
	json_object_object_add(t, "queue_ms", jnum(ms_between(tt->capture_mono_ns, tt->enqueue_mono_ns), 3));
	json_object_object_add(t, "batch_wait_ms", jnum(ms_between(tt->enqueue_mono_ns, tt->infer_start_mono_ns), 3));
	json_object_object_add(t, "inference_ms", jnum(ms_between(tt->infer_start_mono_ns, tt->infer_end_mono_ns), 3));
	json_object_object_add(t, "total_ms", jnum(ms_between(tt->capture_mono_ns, tt->infer_end_mono_ns), 3));
	json_object_object_add(o, "timings", t);
	struct bus_msg *m = bus_msg_from_json(o);
	json_object_put(o);
	return m;
}

/* ---- streams ---- */

static struct stream *find_stream(struct bus *b, const char *id)
{
	for (struct stream *s = b->streams; s; s = s->next)
		if (strcmp(s->id, id) == 0)
			return s;
	return NULL;
}

static struct stream *new_stream(struct bus *b, const char *id, const char *state)
{
	if (!valid_stream_id(id))
		return NULL;
	struct stream *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	if (b->ring_cap > 0 && !(s->ring = calloc((size_t)b->ring_cap, sizeof(*s->ring)))) {
		free(s);
		return NULL;
	}
	snprintf(s->id, sizeof(s->id), "%s", id);
	snprintf(s->state, sizeof(s->state), "%s", state);
	if (b->streams_tail)
		b->streams_tail->next = s;
	else
		b->streams = s;
	b->streams_tail = s;
	return s;
}

static void ring_clear(struct stream *s, int cap)
{
	for (size_t i = 0; i < s->ring_len; i++) {
		struct ring_entry *e = &s->ring[(s->ring_head + i) % (size_t)cap];
		det_result_unref(e->r);
		bus_msg_unref(e->full);
	}
	s->ring_head = s->ring_len = 0;
}

static void stream_free(struct bus *b, struct stream *s)
{
	ring_clear(s, b->ring_cap > 0 ? b->ring_cap : 1);
	free(s->ring);
	bus_msg_unref(s->latest);
	free(s->error);
	free(s);
}

int bus_stream_add(struct bus *b, const char *id)
{
	if (!b || !id || !valid_stream_id(id))
		return -EINVAL;
	if (find_stream(b, id))
		return -EEXIST;
	return new_stream(b, id, "starting") ? 0 : -ENOMEM;
}

int bus_stream_remove(struct bus *b, const char *id)
{
	struct stream *prev = NULL;
	for (struct stream *s = b->streams; s; prev = s, s = s->next) {
		if (strcmp(s->id, id) != 0)
			continue;
		bus_stream_state(b, id, "removed", NULL); /* tell subscribers first */
		if (prev)
			prev->next = s->next;
		else
			b->streams = s->next;
		if (b->streams_tail == s)
			b->streams_tail = prev;
		if (b->metrics)
			metrics_forget(b->metrics, "stream", id);
		stream_free(b, s);
		return 0;
	}
	return -ENOENT;
}

bool bus_stream_exists(struct bus *b, const char *id)
{
	return find_stream(b, id) != NULL;
}

static void sweep_dead(struct bus *b)
{
	for (struct bus_sub **pp = &b->subs; *pp;) {
		struct bus_sub *s = *pp;
		if (s->dead) {
			*pp = s->next;
			bus_filter_clear(&s->f);
			free(s);
		} else {
			pp = &s->next;
		}
	}
}

void bus_stream_state(struct bus *b, const char *id, const char *state, const char *error)
{
	if (!b || !id || !state)
		return;
	struct stream *s = find_stream(b, id);
	if (!s && strcmp(state, "removed") != 0 && !(s = new_stream(b, id, state)))
		return;
	if (s) {
		if (b->metrics) {
			/* one 0/1 series per state that was ever seen: the usual enum idiom */
			metrics_gauge_set(b->metrics, "detd_stream_state", 0, "stream", id, "state",
					  s->state, NULL);
			metrics_gauge_set(b->metrics, "detd_stream_state", 1, "stream", id, "state",
					  state, NULL);
		}
		snprintf(s->state, sizeof(s->state), "%s", state);
		free(s->error);
		s->error = error ? strdup(error) : NULL;
	}
	log_debug(TOPIC, "stream %s: %s%s%s", id, state, error ? ": " : "", error ? error : "");

	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("status"));
	json_object_object_add(o, "stream", json_object_new_string(id));
	json_object_object_add(o, "state", json_object_new_string(state));
	json_object_object_add(o, "error", error ? json_object_new_string(error) : NULL);
	json_object_object_add(o, "time", iso_time(det_wall_ns()));
	struct bus_msg *m = bus_msg_from_json(o);
	json_object_put(o);
	if (!m)
		return;
	b->publishing++;
	for (struct bus_sub *sub = b->subs; sub; sub = sub->next)
		if (!sub->dead && bus_filter_has_stream(&sub->f, id))
			sub->fn(sub->ud, m);
	if (--b->publishing == 0)
		sweep_dead(b);
	bus_msg_unref(m);
}

struct json_object *bus_stream_ids_json(struct bus *b)
{
	struct json_object *a = json_object_new_array();
	for (struct stream *s = b->streams; s; s = s->next)
		json_object_array_add(a, json_object_new_string(s->id));
	return a;
}

static double stream_fps(const struct stream *s, int64_t now)
{
	/* a stream that stopped delivering is at 0, not at its last rate */
	if (!s->last_result_mono || now - s->last_result_mono > 2 * FPS_WINDOW_NS)
		return 0;
	return s->fps;
}

struct json_object *bus_stream_json(struct bus *b, const char *id)
{
	struct stream *s = find_stream(b, id);
	if (!s)
		return NULL;
	int64_t now = det_mono_ns();
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(s->id));
	json_object_object_add(o, "state", json_object_new_string(s->state));
	json_object_object_add(o, "error", s->error ? json_object_new_string(s->error) : NULL);
	json_object_object_add(o, "last_seq", json_object_new_uint64(s->last_seq));
	json_object_object_add(o, "results", json_object_new_uint64(s->results));
	json_object_object_add(o, "fps", jnum(stream_fps(s, now), 2));
	json_object_object_add(o, "last_result_age_s",
			       s->last_result_mono ? jnum((double)(now - s->last_result_mono) / 1e9, 3)
						   : NULL);
	json_object_object_add(o, "replay_ring", json_object_new_int((int)s->ring_len));
	return o;
}

struct json_object *bus_streams_json(struct bus *b)
{
	struct json_object *a = json_object_new_array();
	for (struct stream *s = b->streams; s; s = s->next)
		json_object_array_add(a, bus_stream_json(b, s->id));
	return a;
}

struct bus_msg *bus_latest(struct bus *b, const char *id)
{
	struct stream *s = find_stream(b, id);
	return s ? s->latest : NULL;
}

/* ---- create / destroy ---- */

static void collect(struct metrics *m, void *ud)
{
	struct bus *b = ud;
	int64_t now = det_mono_ns();
	for (struct stream *s = b->streams; s; s = s->next)
		metrics_gauge_set(m, "detd_stream_fps", stream_fps(s, now), "stream", s->id, NULL);
}

struct bus *bus_create(int replay_ring, struct metrics *metrics)
{
	struct bus *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->ring_cap = replay_ring > 0 ? replay_ring : 0;
	b->metrics = metrics;
	if (metrics) {
		static const double lat[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
					     0.25,  0.5,    1,     2.5,  5};
		static const double bsz[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32};
		metrics_define(metrics, "detd_results_total", METRICS_COUNTER,
			       "Detection results published, per stream", NULL, 0);
		metrics_define(metrics, "detd_objects_total", METRICS_COUNTER,
			       "Detected objects published, per stream", NULL, 0);
		metrics_define(metrics, "detd_stream_fps", METRICS_GAUGE,
			       "Results per second over the last seconds, per stream", NULL, 0);
		metrics_define(metrics, "detd_stream_state", METRICS_GAUGE,
			       "1 for the current state of each stream, 0 for states it left", NULL, 0);
		metrics_define(metrics, "detd_inference_seconds", METRICS_HISTOGRAM,
			       "Inference time of the batch a result came from", lat,
			       sizeof(lat) / sizeof(lat[0]));
		metrics_define(metrics, "detd_result_latency_seconds", METRICS_HISTOGRAM,
			       "Capture to publish time of a result", lat, sizeof(lat) / sizeof(lat[0]));
		metrics_define(metrics, "detd_batch_size", METRICS_HISTOGRAM,
			       "Frames per inference batch (derived from results sharing one run)",
			       bsz, sizeof(bsz) / sizeof(bsz[0]));
		metrics_add_collector(metrics, collect, b);
	}
	return b;
}

void bus_destroy(struct bus *b)
{
	if (!b)
		return;
	if (b->metrics)
		metrics_remove_collector(b->metrics, collect, b);
	if (b->subs)
		log_warn(TOPIC, "destroyed with %zu subscriptions left", b->n_subs);
	for (struct bus_sub *s = b->subs; s;) {
		struct bus_sub *n = s->next;
		bus_filter_clear(&s->f);
		free(s);
		s = n;
	}
	for (struct stream *s = b->streams; s;) {
		struct stream *n = s->next;
		stream_free(b, s);
		s = n;
	}
	free(b);
}

/* ---- publish ---- */

static void note_batch(struct bus *b, const struct det_result *r)
{
	if (!b->metrics || !r->t.infer_start_mono_ns)
		return;
	if (r->t.infer_start_mono_ns == b->batch_start && r->t.infer_end_mono_ns == b->batch_end) {
		b->batch_n++;
		return;
	}
	/* a new run: the previous one is complete (results of a batch arrive together) */
	if (b->batch_n > 0)
		metrics_observe(b->metrics, "detd_batch_size", b->batch_n, NULL);
	b->batch_start = r->t.infer_start_mono_ns;
	b->batch_end = r->t.infer_end_mono_ns;
	b->batch_n = 1;
	if (r->t.infer_end_mono_ns > r->t.infer_start_mono_ns)
		metrics_observe(b->metrics, "detd_inference_seconds",
				(double)(r->t.infer_end_mono_ns - r->t.infer_start_mono_ns) / 1e9,
				NULL);
}

struct filt_cache {
	bool *keep;
	struct bus_msg *msg; /* NULL: nothing matched, do not deliver */
};

/* keep[] for sub's filter; returns the number of kept objects */
static int compute_keep(const struct bus_filter *f, const struct det_result *r, bool *keep)
{
	int n = 0;
	for (int i = 0; i < r->n_objects; i++) {
		const struct det_object *o = &r->objects[i];
		keep[i] = o->score >= f->min_score && (f->n_labels == 0 || has_label(f, o->label));
		n += keep[i];
	}
	return n;
}

/* The message for sub; uses/extends the per-publish cache.  NULL = skip. */
static struct bus_msg *msg_for(const struct bus_filter *f, const struct det_result *r,
			       struct bus_msg *full, struct filt_cache *cache, size_t *n_cache,
			       size_t cap_cache, bool *scratch)
{
	if (!bus_filter_filters_objects(f))
		return full;
	int kept = compute_keep(f, r, scratch);
	if (kept == 0)
		return NULL;
	if (kept == r->n_objects)
		return full;
	size_t nb = (size_t)r->n_objects * sizeof(bool);
	for (size_t i = 0; i < *n_cache; i++)
		if (memcmp(cache[i].keep, scratch, nb) == 0)
			return cache[i].msg;
	struct bus_msg *m = bus_serialize_result(r, scratch);
	if (*n_cache < cap_cache) {
		bool *k = malloc(nb ? nb : 1);
		if (k) {
			memcpy(k, scratch, nb);
			cache[*n_cache].keep = k;
			cache[*n_cache].msg = m;
			(*n_cache)++;
			return m;
		}
	}
	/* cache full: deliver uncached; caller unrefs via the overflow slot */
	cache[cap_cache].msg = m;
	return m;
}

void bus_publish(struct bus *b, struct det_result *r)
{
	if (!b || !r)
		return;
	struct stream *s = find_stream(b, r->stream_id);
	if (!s && !(s = new_stream(b, r->stream_id, "running"))) {
		log_warn(TOPIC, "dropping a result of invalid stream id");
		return;
	}
	struct bus_msg *full = bus_serialize_result(r, NULL);
	if (!full) {
		log_warn(TOPIC, "out of memory serializing a result of %s", s->id);
		return;
	}
	int64_t now = det_mono_ns();
	if (r->seq <= s->last_seq) {
		log_info(TOPIC, "stream %s: seq restarted (%llu after %llu), replay ring cleared",
			 s->id, (unsigned long long)r->seq, (unsigned long long)s->last_seq);
		ring_clear(s, b->ring_cap > 0 ? b->ring_cap : 1);
		s->evicted_max = 0;
	}
	s->last_seq = r->seq;
	s->results++;
	s->last_result_mono = now;
	if (!s->win_start || now - s->win_start > 4 * FPS_WINDOW_NS) {
		s->win_start = now;
		s->win_count = 0;
	}
	s->win_count++;
	if (now - s->win_start >= FPS_WINDOW_NS) {
		s->fps = (double)s->win_count / ((double)(now - s->win_start) / 1e9);
		s->win_start = now;
		s->win_count = 0;
	}
	bus_msg_unref(s->latest);
	s->latest = bus_msg_ref(full);
	if (b->ring_cap > 0) {
		size_t cap = (size_t)b->ring_cap;
		if (s->ring_len == cap) {
			struct ring_entry *old = &s->ring[s->ring_head];
			s->evicted_max = old->r->seq;
			det_result_unref(old->r);
			bus_msg_unref(old->full);
			s->ring_head = (s->ring_head + 1) % cap;
			s->ring_len--;
		}
		struct ring_entry *e = &s->ring[(s->ring_head + s->ring_len) % cap];
		e->r = det_result_ref(r);
		e->full = bus_msg_ref(full);
		s->ring_len++;
	} else {
		s->evicted_max = r->seq;
	}
	if (b->metrics) {
		metrics_counter_add(b->metrics, "detd_results_total", 1, "stream", s->id, NULL);
		metrics_counter_add(b->metrics, "detd_objects_total", r->n_objects, "stream", s->id, NULL);
		if (r->t.capture_mono_ns > 0 && now > r->t.capture_mono_ns)
			metrics_observe(b->metrics, "detd_result_latency_seconds",
					(double)(now - r->t.capture_mono_ns) / 1e9, NULL);
		note_batch(b, r);
	}

	enum { CACHE = 8 };
	struct filt_cache cache[CACHE + 1];
	size_t n_cache = 0;
	bool *scratch = malloc(r->n_objects > 0 ? (size_t)r->n_objects * sizeof(bool) : 1);
	b->publishing++;
	for (struct bus_sub *sub = b->subs; sub; sub = sub->next) {
		if (sub->dead || !bus_filter_has_stream(&sub->f, s->id))
			continue;
		if (!scratch && bus_filter_filters_objects(&sub->f))
			continue; /* out of memory: filtered subscribers miss this one */
		cache[CACHE].msg = NULL;
		struct bus_msg *m = msg_for(&sub->f, r, full, cache, &n_cache, CACHE, scratch);
		if (m)
			sub->fn(sub->ud, m);
		bus_msg_unref(cache[CACHE].msg);
	}
	if (--b->publishing == 0)
		sweep_dead(b);
	for (size_t i = 0; i < n_cache; i++) {
		free(cache[i].keep);
		bus_msg_unref(cache[i].msg);
	}
	free(scratch);
	bus_msg_unref(full);
}

/* ---- subscriptions ---- */

struct bus_sub *bus_subscribe(struct bus *b, struct bus_filter *f, bus_deliver_fn fn, void *ud)
{
	if (!b || !fn)
		return NULL;
	struct bus_sub *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->bus = b;
	if (f) {
		s->f = *f;
		memset(f, 0, sizeof(*f));
	}
	s->fn = fn;
	s->ud = ud;
	s->next = b->subs;
	b->subs = s;
	b->n_subs++;
	return s;
}

void bus_unsubscribe(struct bus_sub *s)
{
	if (!s)
		return;
	struct bus *b = s->bus;
	if (s->dead)
		return;
	s->dead = true;
	b->n_subs--;
	if (b->publishing == 0)
		sweep_dead(b);
}

void bus_sub_set_filter(struct bus_sub *s, struct bus_filter *f)
{
	bus_filter_clear(&s->f);
	s->f = *f;
	memset(f, 0, sizeof(*f));
}

const struct bus_filter *bus_sub_filter(const struct bus_sub *s)
{
	return &s->f;
}

size_t bus_sub_count(struct bus *b)
{
	return b ? b->n_subs : 0;
}

int bus_replay(struct bus_sub *sub, const char *stream, uint64_t since)
{
	struct bus *b = sub->bus;
	struct stream *s = find_stream(b, stream);
	if (!s || sub->dead || !bus_filter_has_stream(&sub->f, stream))
		return 0;
	b->publishing++;
	if (s->evicted_max > since) {
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "type", json_object_new_string("gap"));
		json_object_object_add(o, "stream", json_object_new_string(s->id));
		json_object_object_add(o, "from", json_object_new_uint64(since + 1));
		json_object_object_add(o, "to", json_object_new_uint64(s->evicted_max));
		struct bus_msg *m = bus_msg_from_json(o);
		json_object_put(o);
		if (m)
			sub->fn(sub->ud, m);
		bus_msg_unref(m);
	}
	size_t cap = b->ring_cap > 0 ? (size_t)b->ring_cap : 1;
	for (size_t i = 0; i < s->ring_len && !sub->dead; i++) {
		struct ring_entry *e = &s->ring[(s->ring_head + i) % cap];
		if (e->r->seq <= since)
			continue;
		struct bus_msg *m = e->full, *own = NULL;
		if (bus_filter_filters_objects(&sub->f)) {
			bool *keep = malloc(e->r->n_objects > 0 ? (size_t)e->r->n_objects : 1);
			int kept = keep ? compute_keep(&sub->f, e->r, keep) : 0;
			m = kept == 0 ? NULL : kept == e->r->n_objects ? e->full
				      : (own = bus_serialize_result(e->r, keep));
			free(keep);
		}
		if (m)
			sub->fn(sub->ud, m);
		bus_msg_unref(own);
	}
	if (--b->publishing == 0)
		sweep_dead(b);
	return 0;
}

/* ---- slow consumers ---- */

void bus_flow_init(struct bus_flow *f, size_t soft, size_t hard, double timeout_s)
{
	memset(f, 0, sizeof(*f));
	f->soft = soft;
	f->hard = hard > soft ? hard : soft;
	f->timeout_ns = (int64_t)(timeout_s * 1e9);
}

enum bus_flow_verdict bus_flow_offer(struct bus_flow *f, size_t queued, size_t len, int64_t now)
{
	if (queued > f->hard)
		return BUS_FLOW_DISCONNECT;
	if (queued + len <= f->soft) {
		f->stuck_since = 0;
		return BUS_FLOW_SEND;
	}
	f->pending_drops++;
	f->total_drops++;
	if (!f->stuck_since)
		f->stuck_since = now ? now : 1;
	else if (f->timeout_ns > 0 && now - f->stuck_since > f->timeout_ns)
		return BUS_FLOW_DISCONNECT;
	return BUS_FLOW_DROP;
}

void bus_flow_drained(struct bus_flow *f)
{
	f->stuck_since = 0;
}

bool bus_flow_expired(const struct bus_flow *f, size_t queued, int64_t now)
{
	if (queued > f->hard)
		return true;
	return f->stuck_since && f->timeout_ns > 0 && now - f->stuck_since > f->timeout_ns;
}

struct bus_msg *bus_flow_take_notice(struct bus_flow *f)
{
	if (!f->pending_drops)
		return NULL;
	char buf[64];
	int n = snprintf(buf, sizeof(buf), "{\"type\":\"dropped\",\"count\":%llu}",
			 (unsigned long long)f->pending_drops);
	f->pending_drops = 0;
	return bus_msg_new(buf, (size_t)n);
}
