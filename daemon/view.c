/*
 * view.c — see view.h.
 *
 * Loop thread: the per-stream state (latest result, shared JPEG, viewers),
 * the HTTP handlers, and the delivery of finished encodings.  Encoder
 * thread: picture → RGB (at the requested width) → boxes → JPEG, one job at
 * a time from a bounded queue; finished jobs go back through a mutex-guarded
 * list and event_active().
 *
 * "At most once per result": the default rendering (all boxes, original
 * size) of a stream's latest result is encoded once, when the first
 * snapshot request or due MJPEG viewer wants it, and kept until the next
 * result.  A snapshot with its own parameters (width, filters) gets its own
 * encoding.  Nobody looking: no job, no conversion.
 */
#include "view.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "daemon.h"
#include "draw.h"
#include "frame.h"
#include "http.h"
#include "log.h"
#include "view_page.h"

#define TOPIC "view"
#define VIEW_MAX_JOBS 16          /* queued + running encodings */
#define VIEW_MAX_STREAMS 128      /* streams remembered (removed ones age out) */
#define VIEW_JPEG_QUALITY 80
#define VIEW_VIEWER_BUFFER (1 << 20) /* bytes queued to one viewer before frames drop */
#define VIEW_BOUNDARY "detdframe"
#define VIEW_DEMAND_S 30     /* a snapshot request keeps pictures coming this long */
#define VIEW_WAIT_S 5        /* a snapshot waits this long for a frame with a picture */

struct job;

/* A snapshot request waiting for the stream's shared JPEG. */
struct waiter {
	struct waiter *next;
	struct evhttp_request *req; /* an HTTP snapshot request, or */
	view_jpeg_fn fn;            /* a module's (view_snapshot_request) */
	void *ud;
	int64_t deadline_ns;
};

/* Answer a waiter: the JPEG, or (jpeg NULL) an HTTP error code and reason. */
static void waiter_done(struct waiter *w, const struct det_result *r, const char *etag,
			const uint8_t *jpeg, size_t len, int code, const char *why);

struct viewer {
	struct viewer *next, *prev;
	struct vstream *vs;
	struct view *v;
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	int64_t interval_ns, last_sent_ns;
	uint64_t sent, dropped;
	int64_t stuck_since;
	bool peer_gone;
	struct viewer *next_dead;
};

struct vstream {
	struct vstream *next;
	char id[DET_STREAM_ID_MAX];
	struct det_result *latest; /* with a picture; owns a reference */
	int64_t updated_ns;
	/* the shared default JPEG of latest (seq), or none */
	uint64_t jpeg_seq;
	uint8_t *jpeg;
	size_t jpeg_len;
	bool shared_pending; /* a default job for latest->seq is queued */
	struct waiter *waiters;
	struct viewer *viewers;
	size_t n_viewers;
	uint64_t encodes, viewer_drops;
};

struct job {
	struct job *next;
	struct det_result *r; /* a reference */
	char stream[DET_STREAM_ID_MAX];
	bool shared;
	struct evhttp_request *req; /* !shared: who gets it */
	int out_w;                 /* 0: the picture's size */
	bool boxes;
	double min_score;
	char labels[512]; /* comma-separated; empty = all */
	char etag[320];
	uint8_t *jpeg;
	size_t len;
	int rc;
};

struct view {
	struct daemon *d;
	struct vstream *streams;
	size_t n_streams;
	struct viewer *dead;
	struct event *reaper, *done_ev, *sweep_ev;

	pthread_t thread;
	bool thread_running;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	struct job *todo, *todo_tail, *done;
	size_t n_jobs; /* queued + running + done not yet delivered */

	uint64_t encodes, snapshots, mjpeg_parts, viewer_drops, busy;
	double encode_ms_total; /* under lock: the encoder thread adds to it */
};

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the encoder thread ------------------------------------------------------------ */

static bool label_wanted(const char *list, const char *label)
{
	if (!*list)
		return true;
	size_t n = strlen(label);
	for (const char *p = list; *p;) {
		size_t k = strcspn(p, ",");
		if (k == n && strncmp(p, label, n) == 0)
			return true;
		p += k;
		if (*p == ',')
			p++;
	}
	return false;
}

static void encode(struct job *j)
{
	struct det_picture *pic = j->r->orig;
	int w = pic->width, h = pic->height;
	if (j->out_w > 0 && j->out_w < w) {
		h = (int)lround((double)h * j->out_w / w);
		w = j->out_w;
		if (h < 1)
			h = 1;
	}
	size_t stride = (size_t)w * 3;
	uint8_t *rgb = malloc(stride * (size_t)h);
	if (!rgb) {
		j->rc = -ENOMEM;
		return;
	}
	j->rc = pic->to_rgb(pic, rgb, w, h, stride);
	if (j->rc == 0 && j->boxes && j->r->n_objects > 0) {
		struct draw_box *b = calloc((size_t)j->r->n_objects, sizeof(*b));
		size_t n = 0;
		double sx = (double)w / (j->r->orig_width > 0 ? j->r->orig_width : pic->width);
		double sy = (double)h / (j->r->orig_height > 0 ? j->r->orig_height : pic->height);
		for (int i = 0; b && i < j->r->n_objects; i++) {
			const struct det_object *o = &j->r->objects[i];
			if (o->score < j->min_score || !label_wanted(j->labels, o->label))
				continue;
			b[n++] = (struct draw_box){.x0 = (float)(o->box_px[0] * sx),
						   .y0 = (float)(o->box_px[1] * sy),
						   .x1 = (float)(o->box_px[2] * sx),
						   .y1 = (float)(o->box_px[3] * sy),
						   .label = o->label,
						   .score = o->score,
						   .class_id = o->class_id};
		}
		j->rc = b ? draw_boxes_rgb(rgb, w, h, stride, b, n) : -ENOMEM;
		free(b);
	}
	if (j->rc == 0)
		j->rc = draw_jpeg_encode(rgb, w, h, stride, VIEW_JPEG_QUALITY, &j->jpeg, &j->len);
	free(rgb);
}

static void *encoder_main(void *arg)
{
	struct view *v = arg;
	daemon_block_signals();
	pthread_mutex_lock(&v->lock);
	for (;;) {
		while (!v->stop && !v->todo)
			pthread_cond_wait(&v->cond, &v->lock);
		if (v->stop)
			break;
		struct job *j = v->todo;
		v->todo = j->next;
		if (!v->todo)
			v->todo_tail = NULL;
		pthread_mutex_unlock(&v->lock);

		int64_t t0 = mono_ns();
		encode(j);
		double ms = (double)(mono_ns() - t0) / 1e6;

		pthread_mutex_lock(&v->lock);
		v->encode_ms_total += ms;
		j->next = v->done;
		v->done = j;
		event_active(v->done_ev, 0, 0);
	}
	pthread_mutex_unlock(&v->lock);
	return NULL;
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	det_result_unref(j->r);
	free(j->jpeg);
	free(j);
}

/* Queue a job (loop thread); false when the queue is full. */
static bool submit(struct view *v, struct job *j)
{
	pthread_mutex_lock(&v->lock);
	if (v->n_jobs >= VIEW_MAX_JOBS) {
		pthread_mutex_unlock(&v->lock);
		return false;
	}
	v->n_jobs++;
	j->next = NULL;
	if (v->todo_tail)
		v->todo_tail->next = j;
	else
		v->todo = j;
	v->todo_tail = j;
	pthread_cond_signal(&v->cond);
	pthread_mutex_unlock(&v->lock);
	return true;
}

/* ---- streams ---------------------------------------------------------------------- */

static struct vstream *vs_find(struct view *v, const char *id)
{
	for (struct vstream *s = v->streams; s; s = s->next)
		if (strcmp(s->id, id) == 0)
			return s;
	return NULL;
}

static void vs_drop_jpeg(struct vstream *s)
{
	free(s->jpeg);
	s->jpeg = NULL;
	s->jpeg_len = 0;
	s->jpeg_seq = 0;
}

/* Forget the stream updated longest ago that nobody watches or waits for. */
static void vs_evict(struct view *v)
{
	struct vstream **best = NULL;
	for (struct vstream **p = &v->streams; *p; p = &(*p)->next)
		if (!(*p)->n_viewers && !(*p)->waiters && !(*p)->shared_pending &&
		    (!best || (*p)->updated_ns < (*best)->updated_ns))
			best = p;
	if (!best)
		return;
	struct vstream *s = *best;
	*best = s->next;
	det_result_unref(s->latest);
	vs_drop_jpeg(s);
	free(s);
	v->n_streams--;
}

static struct vstream *vs_get(struct view *v, const char *id)
{
	struct vstream *s = vs_find(v, id);
	if (s)
		return s;
	if (v->n_streams >= VIEW_MAX_STREAMS)
		vs_evict(v);
	if (!(s = calloc(1, sizeof(*s))))
		return NULL;
	snprintf(s->id, sizeof(s->id), "%s", id);
	s->next = v->streams;
	v->streams = s;
	v->n_streams++;
	return s;
}

static void etag_of(char *out, size_t len, const struct det_result *r, const char *params)
{
	snprintf(out, len, "\"%s-%llu-%s\"", r->stream_id, (unsigned long long)r->seq, params);
}

static void add_image_headers(struct evhttp_request *req, const struct det_result *r,
			      const char *etag)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	char date[64], seq[32];
	time_t t = (time_t)(r->capture_wall_ns / 1000000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	snprintf(seq, sizeof(seq), "%llu", (unsigned long long)r->seq);
	evhttp_add_header(h, "Content-Type", "image/jpeg");
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "ETag", etag);
	evhttp_add_header(h, "Last-Modified", date);
	evhttp_add_header(h, "X-Detd-Seq", seq);
}

static void reply_jpeg(struct evhttp_request *req, const struct det_result *r, const char *etag,
		       const uint8_t *jpeg, size_t len)
{
	struct evbuffer *b = evbuffer_new();
	if (!b) {
		http_reply_error(req, 500, "out of memory");
		return;
	}
	add_image_headers(req, r, etag);
	evbuffer_add(b, jpeg, len);
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

static bool queue_shared(struct view *v, struct vstream *s)
{
	if (s->shared_pending || !s->latest)
		return true;
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		return false;
	j->r = det_result_ref(s->latest);
	j->shared = true;
	j->boxes = true;
	snprintf(j->stream, sizeof(j->stream), "%s", s->id);
	if (!submit(v, j)) {
		job_free(j);
		v->busy++;
		return false;
	}
	s->shared_pending = true;
	return true;
}

/* ---- MJPEG viewers ------------------------------------------------------------------- */

static void viewer_kill(struct viewer *w, bool peer_gone)
{
	struct vstream *s = w->vs;
	struct view *v = w->v;
	w->peer_gone = peer_gone;
	if (w->prev)
		w->prev->next = w->next;
	else
		s->viewers = w->next;
	if (w->next)
		w->next->prev = w->prev;
	s->n_viewers--;
	w->next_dead = v->dead;
	v->dead = w;
	event_active(v->reaper, 0, 0);
}

static void viewer_on_close(struct evhttp_connection *c, void *ud)
{
	viewer_kill(ud, true);
}

static void reap(evutil_socket_t fd, short what, void *ud)
{
	struct view *v = ud;
	(void)fd, (void)what;
	while (v->dead) {
		struct viewer *w = v->dead;
		v->dead = w->next_dead;
		if (!w->peer_gone) {
			evhttp_connection_set_closecb(w->conn, NULL, NULL);
			evhttp_connection_free(w->conn);
		} else {
			evhttp_send_reply_end(w->req); /* frees the detached request */
		}
		free(w);
	}
}

/* A viewer that keeps dropping this long is cut: the same rule as for
 * socket and SSE subscribers (ipc.slow_client_timeout_s). */
static double stuck_limit_s(const struct view *v)
{
	return daemon_cfg(v->d)->ipc.slow_client_timeout_s;
}

static size_t viewer_queued(struct viewer *w)
{
	return evbuffer_get_length(bufferevent_get_output(evhttp_connection_get_bufferevent(w->conn)));
}

static void viewer_send(struct viewer *w, const uint8_t *jpeg, size_t len, int64_t now)
{
	struct view *v = w->v;
	if (viewer_queued(w) > VIEW_VIEWER_BUFFER) {
		/* a slow viewer loses frames, never the daemon memory or pace */
		w->dropped++;
		w->vs->viewer_drops++;
		v->viewer_drops++;
		if (!w->stuck_since)
			w->stuck_since = now;
		else if ((double)(now - w->stuck_since) / 1e9 > stuck_limit_s(v))
			viewer_kill(w, false);
		return;
	}
	w->stuck_since = 0;
	struct evbuffer *b = evbuffer_new();
	if (!b)
		return;
	evbuffer_add_printf(b, "--" VIEW_BOUNDARY "\r\nContent-Type: image/jpeg\r\n"
			       "Content-Length: %zu\r\n\r\n",
			    len);
	evbuffer_add(b, jpeg, len);
	evbuffer_add(b, "\r\n", 2);
	evhttp_send_reply_chunk(w->req, b);
	evbuffer_free(b);
	w->last_sent_ns = now;
	w->sent++;
	v->mjpeg_parts++;
}

static bool viewer_due(const struct viewer *w, int64_t now)
{
	return !w->last_sent_ns || now - w->last_sent_ns >= w->interval_ns;
}

static void waiter_done(struct waiter *w, const struct det_result *r, const char *etag,
			const uint8_t *jpeg, size_t len, int code, const char *why)
{
	if (w->fn) {
		w->fn(jpeg ? r->stream_id : NULL, jpeg ? r->seq : 0, jpeg, jpeg ? len : 0, w->ud);
	} else if (jpeg) {
		reply_jpeg(w->req, r, etag, jpeg, len);
	} else {
		if (code == 503)
			evhttp_add_header(evhttp_request_get_output_headers(w->req), "Retry-After",
					  "1");
		http_reply_error(w->req, code, "%s", why ? why : "no picture");
	}
	free(w);
}

int view_snapshot_request(struct view *v, const char *stream, view_jpeg_fn fn, void *ud)
{
	if (!v || !v->thread_running)
		return -ENOTCONN;
	struct vstream *s = vs_find(v, stream);
	if (!s)
		return -ENOENT;
	det_picture_demand(mono_ns() + (int64_t)VIEW_DEMAND_S * 1000000000);
	struct waiter *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fn = fn;
	w->ud = ud;
	w->deadline_ns = mono_ns() + (int64_t)VIEW_WAIT_S * 1000000000;
	if (s->latest && s->jpeg && s->jpeg_seq == s->latest->seq) {
		waiter_done(w, s->latest, NULL, s->jpeg, s->jpeg_len, 200, NULL);
		return 0;
	}
	w->next = s->waiters;
	s->waiters = w;
	if (s->latest && !queue_shared(v, s)) {
		s->waiters = w->next;
		free(w);
		return -EBUSY;
	}
	return 0;
}

void view_snapshot_cancel(struct view *v, void *ud)
{
	for (struct vstream *s = v ? v->streams : NULL; s; s = s->next)
		for (struct waiter **pw = &s->waiters; *pw;) {
			struct waiter *w = *pw;
			if (w->fn && w->ud == ud) {
				*pw = w->next;
				free(w);
			} else {
				pw = &w->next;
			}
		}
}

/* The shared JPEG of s is ready: snapshot waiters and due viewers get it. */
static void deliver_shared(struct view *v, struct vstream *s)
{
	int64_t now = mono_ns();
	char etag[320];
	etag_of(etag, sizeof(etag), s->latest, "full");
	while (s->waiters) {
		struct waiter *w = s->waiters;
		s->waiters = w->next;
		waiter_done(w, s->latest, etag, s->jpeg, s->jpeg_len, 200, NULL);
	}
	for (struct viewer *w = s->viewers, *n; w; w = n) {
		n = w->next; /* viewer_send may cut w */
		if (viewer_due(w, now))
			viewer_send(w, s->jpeg, s->jpeg_len, now);
	}
}

static void done_cb(evutil_socket_t fd, short what, void *ud)
{
	struct view *v = ud;
	(void)fd, (void)what;
	pthread_mutex_lock(&v->lock);
	struct job *list = v->done;
	v->done = NULL;
	pthread_mutex_unlock(&v->lock);

	while (list) {
		struct job *j = list;
		list = j->next;
		pthread_mutex_lock(&v->lock);
		v->n_jobs--;
		pthread_mutex_unlock(&v->lock);
		v->encodes++;
		if (j->rc < 0)
			log_warn(TOPIC, "stream %s: cannot render frame %llu: %s", j->stream,
				 (unsigned long long)j->r->seq, strerror(-j->rc));
		if (!j->shared) {
			if (j->rc < 0)
				http_reply_error(j->req, 500, "cannot render the frame: %s",
						 strerror(-j->rc));
			else
				reply_jpeg(j->req, j->r, j->etag, j->jpeg, j->len);
			job_free(j);
			continue;
		}
		struct vstream *s = vs_find(v, j->stream);
		if (!s) {
			job_free(j);
			continue;
		}
		s->shared_pending = false;
		s->encodes++;
		if (j->rc == 0 && s->latest && s->latest->seq == j->r->seq) {
			vs_drop_jpeg(s);
			s->jpeg = j->jpeg;
			s->jpeg_len = j->len;
			s->jpeg_seq = j->r->seq;
			j->jpeg = NULL;
			deliver_shared(v, s);
		} else if (j->rc == 0 && s->latest) {
			/* a newer result came meanwhile: waiters want the newest */
			if (s->waiters || s->viewers)
				queue_shared(v, s);
		} else {
			while (s->waiters) {
				struct waiter *w = s->waiters;
				s->waiters = w->next;
				waiter_done(w, NULL, NULL, NULL, 0, 500, "cannot render the frame");
			}
		}
		job_free(j);
	}
}

void view_result(struct view *v, struct det_result *r)
{
	if (!v || !r)
		return;
	struct vstream *s = vs_get(v, r->stream_id);
	if (!s)
		return;
	det_result_unref(s->latest); /* the previous picture goes back now */
	s->latest = NULL;
	s->updated_ns = mono_ns();
	vs_drop_jpeg(s);
	if (!r->orig)
		return; /* nobody asked for pictures: a newer frame has none to show */
	s->latest = det_result_ref(r);
	if (s->waiters) {
		queue_shared(v, s);
		return;
	}
	if (!s->viewers)
		return;
	int64_t now = mono_ns();
	for (struct viewer *w = s->viewers; w; w = w->next) {
		if (viewer_due(w, now)) {
			queue_shared(v, s);
			break;
		}
	}
}

/* ---- HTTP ------------------------------------------------------------------------------ */

/* "/streams/<id>/<what>" → id (false if malformed) */
static bool path_stream(struct evhttp_request *req, char *id, size_t len)
{
	const char *p = http_request_path(req) + strlen("/streams/");
	size_t n = strcspn(p, "/");
	if (!n || n >= len)
		return false;
	memcpy(id, p, n);
	id[n] = '\0';
	return true;
}

static void snapshot_handler(struct evhttp_request *req, void *ud)
{
	struct view *v = ud;
	char id[DET_STREAM_ID_MAX];
	struct evkeyvalq q = {0};
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct job *j = NULL;

	if (!path_stream(req, id, sizeof(id))) {
		http_reply_error(req, 404, "no such stream");
		return;
	}
	if (query && evhttp_parse_query_str(query, &q) < 0) {
		http_reply_error(req, 400, "malformed query");
		return;
	}
	int out_w = 0, boxes = 1;
	double min_score = 0;
	const char *labels = "";
	bool custom = false;
	for (struct evkeyval *kv = q.tqh_first; kv; kv = kv->next.tqe_next) {
		char *end;
		if (!strcmp(kv->key, "width")) {
			long x = strtol(kv->value, &end, 10);
			if (*end || x < 16 || x > 8192)
				goto bad;
			out_w = (int)x;
		} else if (!strcmp(kv->key, "boxes")) {
			if (strcmp(kv->value, "0") && strcmp(kv->value, "1"))
				goto bad;
			boxes = kv->value[0] == '1';
		} else if (!strcmp(kv->key, "min_score")) {
			min_score = strtod(kv->value, &end);
			if (*end || !(min_score >= 0 && min_score <= 1))
				goto bad;
		} else if (!strcmp(kv->key, "labels")) {
			labels = kv->value;
			if (strlen(labels) >= sizeof(j->labels))
				goto bad;
		} else {
			evhttp_clear_headers(&q);
			http_reply_error(req, 400, "unknown parameter (width, boxes, min_score, labels)");
			return;
		}
		custom = true;
	}
	struct vstream *s = vs_find(v, id);
	if (!s) {
		evhttp_clear_headers(&q);
		http_reply_error(req, 404, "no frame of stream %s (unknown or none yet)", id);
		return;
	}
	/* pictures are kept from now on, for a while (det_picture_demand) */
	det_picture_demand(mono_ns() + (int64_t)VIEW_DEMAND_S * 1000000000);
	v->snapshots++;
	if (!s->latest && custom) {
		evhttp_clear_headers(&q);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
		http_reply_error(req, 503, "no frame with a picture yet for %s, try again", id);
		return;
	}
	if (!s->latest) { /* the next result brings one: wait for it */
		struct waiter *w = calloc(1, sizeof(*w));
		evhttp_clear_headers(&q);
		if (!w) {
			http_reply_error(req, 500, "out of memory");
			return;
		}
		w->req = req;
		w->deadline_ns = mono_ns() + (int64_t)VIEW_WAIT_S * 1000000000;
		w->next = s->waiters;
		s->waiters = w;
		return;
	}
	char params[160], etag[320];
	if (custom && !(out_w == 0 && boxes && min_score == 0 && !*labels)) {
		/* a stable tag of the parameters (labels by a short hash) */
		unsigned long hash = 5381;
		for (const char *c = labels; *c; c++)
			hash = hash * 33 + (unsigned char)*c;
		snprintf(params, sizeof(params), "w%d-b%d-s%g-l%lx", out_w, boxes, min_score, hash);
	} else {
		custom = false;
		snprintf(params, sizeof(params), "full");
	}
	etag_of(etag, sizeof(etag), s->latest, params);
	const char *inm = evhttp_find_header(evhttp_request_get_input_headers(req), "If-None-Match");
	if (inm && strcmp(inm, etag) == 0) {
		evhttp_clear_headers(&q);
		add_image_headers(req, s->latest, etag);
		evhttp_send_reply(req, 304, "Not Modified", NULL);
		return;
	}
	if (!custom) {
		if (s->jpeg && s->jpeg_seq == s->latest->seq) {
			evhttp_clear_headers(&q);
			reply_jpeg(req, s->latest, etag, s->jpeg, s->jpeg_len);
			return;
		}
		struct waiter *w = calloc(1, sizeof(*w));
		if (!w || !queue_shared(v, s)) {
			free(w);
			evhttp_clear_headers(&q);
			http_reply_error(req, 503, "busy rendering, try again");
			return;
		}
		w->req = req;
		w->deadline_ns = mono_ns() + (int64_t)VIEW_WAIT_S * 1000000000;
		w->next = s->waiters;
		s->waiters = w;
		evhttp_clear_headers(&q);
		return;
	}
	if (!(j = calloc(1, sizeof(*j)))) {
		evhttp_clear_headers(&q);
		http_reply_error(req, 500, "out of memory");
		return;
	}
	j->r = det_result_ref(s->latest);
	j->req = req;
	j->out_w = out_w;
	j->boxes = boxes;
	j->min_score = min_score;
	snprintf(j->labels, sizeof(j->labels), "%s", labels);
	snprintf(j->stream, sizeof(j->stream), "%s", id);
	snprintf(j->etag, sizeof(j->etag), "%s", etag);
	evhttp_clear_headers(&q);
	if (!submit(v, j)) {
		job_free(j);
		v->busy++;
		http_reply_error(req, 503, "busy rendering, try again");
	}
	return;
bad:
	evhttp_clear_headers(&q);
	http_reply_error(req, 400, "bad value for %s",
			 "width (16-8192), boxes (0|1), min_score (0-1) or labels");
}

static void mjpeg_handler(struct evhttp_request *req, void *ud)
{
	struct view *v = ud;
	const struct cfg_http *hc = &daemon_cfg(v->d)->http;
	char id[DET_STREAM_ID_MAX];
	struct evkeyvalq q = {0};
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	double fps = hc->max_viewer_fps;

	if (!path_stream(req, id, sizeof(id))) {
		http_reply_error(req, 404, "no such stream");
		return;
	}
	if (query && evhttp_parse_query_str(query, &q) < 0) {
		http_reply_error(req, 400, "malformed query");
		return;
	}
	for (struct evkeyval *kv = q.tqh_first; kv; kv = kv->next.tqe_next) {
		char *end;
		double f = strtod(kv->value, &end);
		if (strcmp(kv->key, "fps") || *end || !(f > 0)) {
			evhttp_clear_headers(&q);
			http_reply_error(req, 400, "the only parameter is fps (> 0)");
			return;
		}
		fps = fmin(f, hc->max_viewer_fps);
	}
	evhttp_clear_headers(&q);
	size_t total = 0;
	for (struct vstream *s = v->streams; s; s = s->next)
		total += s->n_viewers;
	if (total >= (size_t)hc->max_viewers) {
		http_reply_error(req, 503, "at most %d live viewers (http.max_viewers)",
				 hc->max_viewers);
		return;
	}
	struct vstream *s = vs_get(v, id);
	struct viewer *w = s ? calloc(1, sizeof(*w)) : NULL;
	if (!w) {
		http_reply_error(req, 500, "out of memory");
		return;
	}
	w->v = v;
	w->vs = s;
	w->req = req;
	w->conn = evhttp_request_get_connection(req);
	w->interval_ns = (int64_t)(1e9 / fps);
	w->next = s->viewers;
	if (s->viewers)
		s->viewers->prev = w;
	s->viewers = w;
	s->n_viewers++;
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", "multipart/x-mixed-replace; boundary=" VIEW_BOUNDARY);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "X-Accel-Buffering", "no");
	det_picture_demand(mono_ns() + (int64_t)VIEW_WAIT_S * 1000000000);
	evhttp_send_reply_start(req, 200, "OK");
	evhttp_connection_set_closecb(w->conn, viewer_on_close, w);
	if (s->jpeg && s->latest && s->jpeg_seq == s->latest->seq)
		viewer_send(w, s->jpeg, s->jpeg_len, mono_ns());
	else if (s->latest)
		queue_shared(v, s);
}

static void page_handler(struct evhttp_request *req, void *ud)
{
	struct evbuffer *b = evbuffer_new();
	(void)ud;
	if (!b) {
		http_reply_error(req, 500, "out of memory");
		return;
	}
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", "text/html; charset=utf-8");
	evhttp_add_header(h, "Cache-Control", "no-cache");
	/* the page loads nothing from elsewhere, and nobody may frame it */
	evhttp_add_header(h, "Content-Security-Policy",
			  "default-src 'self'; img-src 'self'; style-src 'unsafe-inline'; "
			  "script-src 'unsafe-inline' 'self'; frame-ancestors 'none'");
	evbuffer_add(b, view_page_html, strlen(view_page_html));
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

/* A viewer that keeps dropping is cut by the sweep as well, when no new
 * frame comes to notice it. */
static void sweep_cb(evutil_socket_t fd, short what, void *ud)
{
	struct view *v = ud;
	int64_t now = mono_ns();
	(void)fd, (void)what;
	for (struct vstream *s = v->streams; s; s = s->next) {
		if (s->viewers) /* live views keep the pictures coming */
			det_picture_demand(now + (int64_t)VIEW_WAIT_S * 1000000000);
		for (struct viewer *w = s->viewers, *n; w; w = n) {
			n = w->next;
			if (w->stuck_since && viewer_queued(w) > VIEW_VIEWER_BUFFER &&
			    (double)(now - w->stuck_since) / 1e9 > stuck_limit_s(v))
				viewer_kill(w, false);
		}
		for (struct waiter **pw = &s->waiters; *pw;) {
			struct waiter *w = *pw;
			if (w->deadline_ns > now || s->shared_pending) {
				pw = &w->next;
				continue;
			}
			*pw = w->next;
			waiter_done(w, NULL, NULL, NULL, 0, 503,
				    "no frame with a result came in time, try again");
		}
	}
}

static void status_fill(struct json_object *o, void *ud)
{
	struct view *v = ud;
	size_t viewers = 0, pictures = 0;
	struct json_object *streams = json_object_new_object();
	for (struct vstream *s = v->streams; s; s = s->next) {
		viewers += s->n_viewers;
		pictures += s->latest != NULL;
		struct json_object *e = json_object_new_object();
		json_object_object_add(e, "viewers", json_object_new_uint64(s->n_viewers));
		json_object_object_add(e, "latest_seq",
				       json_object_new_uint64(s->latest ? s->latest->seq : 0));
		json_object_object_add(e, "encodes", json_object_new_uint64(s->encodes));
		json_object_object_add(e, "viewer_drops", json_object_new_uint64(s->viewer_drops));
		json_object_object_add(streams, s->id, e);
	}
	json_object_object_add(o, "viewers", json_object_new_uint64(viewers));
	json_object_object_add(o, "max_viewers",
			       json_object_new_int(daemon_cfg(v->d)->http.max_viewers));
	json_object_object_add(o, "pictures_held", json_object_new_uint64(pictures));
	json_object_object_add(o, "encodes", json_object_new_uint64(v->encodes));
	pthread_mutex_lock(&v->lock); /* the encoder thread adds to the total */
	double ms_total = v->encode_ms_total;
	pthread_mutex_unlock(&v->lock);
	json_object_object_add(o, "encode_ms_mean",
			       json_object_new_double(v->encodes ? ms_total / (double)v->encodes : 0));
	json_object_object_add(o, "snapshots", json_object_new_uint64(v->snapshots));
	json_object_object_add(o, "mjpeg_parts", json_object_new_uint64(v->mjpeg_parts));
	json_object_object_add(o, "viewer_drops", json_object_new_uint64(v->viewer_drops));
	json_object_object_add(o, "busy", json_object_new_uint64(v->busy));
	json_object_object_add(o, "streams", streams);
}

/* ---- the module ---------------------------------------------------------------------- */

static int mod_start(struct daemon *d, void *ud)
{
	struct view *v = ud;
	struct http *h = daemon_http(d);
	v->d = d;
	if (!h)
		return 0; /* nothing to serve on */
	struct event_base *base = daemon_base(d);
	v->reaper = event_new(base, -1, 0, reap, v);
	v->done_ev = event_new(base, -1, 0, done_cb, v);
	v->sweep_ev = event_new(base, -1, EV_PERSIST, sweep_cb, v);
	if (!v->reaper || !v->done_ev || !v->sweep_ev)
		return -ENOMEM;
	event_add(v->sweep_ev, &(struct timeval){1, 0});
	int rc = -pthread_create(&v->thread, NULL, encoder_main, v);
	if (rc < 0)
		return rc;
	v->thread_running = true;
	http_route_add(h, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/", 0, page_handler, v);
	http_route_add(h, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/streams/*/snapshot.jpg",
		       HTTP_ROUTE_PATTERN, snapshot_handler, v);
	http_route_add(h, EVHTTP_REQ_GET, "/streams/*/mjpeg", HTTP_ROUTE_PATTERN, mjpeg_handler,
		       v);
	http_status_add(h, "view", status_fill, v);
	return 0;
}

static void stop_thread(struct view *v)
{
	if (!v->thread_running)
		return;
	pthread_mutex_lock(&v->lock);
	v->stop = true;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
	pthread_join(v->thread, NULL); /* at most one encoding: milliseconds */
	v->thread_running = false;
}

static int mod_stop(struct daemon *d, void *ud)
{
	struct view *v = ud;
	struct http *h = daemon_http(d);
	stop_thread(v);
	if (h) {
		http_route_remove(h, "/");
		http_route_remove(h, "/streams/*/snapshot.jpg");
		http_route_remove(h, "/streams/*/mjpeg");
	}
	for (struct vstream *s = v->streams; s; s = s->next) {
		while (s->waiters) {
			struct waiter *w = s->waiters;
			s->waiters = w->next;
			waiter_done(w, NULL, NULL, NULL, 0, 503, "stopping");
		}
		while (s->viewers) {
			struct viewer *w = s->viewers;
			evhttp_connection_set_closecb(w->conn, NULL, NULL);
			evhttp_send_reply_end(w->req);
			s->viewers = w->next;
			s->n_viewers--;
			free(w);
		}
	}
	reap(-1, 0, v);
	/* jobs not delivered: their requests get an answer */
	struct job *lists[2] = {v->todo, v->done};
	v->todo = v->todo_tail = v->done = NULL;
	for (int i = 0; i < 2; i++)
		while (lists[i]) {
			struct job *j = lists[i];
			lists[i] = j->next;
			if (!j->shared)
				http_reply_error(j->req, 503, "stopping");
			job_free(j);
		}
	v->n_jobs = 0;
	return 0;
}

int view_module_add(struct daemon *d, struct view **out)
{
	struct view *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->cond, NULL);
	struct daemon_module m = {.name = "view", .start = mod_start, .stop = mod_stop, .ud = v};
	int rc = daemon_module_add(d, &m);
	if (rc < 0) {
		view_free(v);
		return rc;
	}
	*out = v;
	return 0;
}

void view_free(struct view *v)
{
	if (!v)
		return;
	stop_thread(v);
	for (struct vstream *s = v->streams, *n; s; s = n) {
		n = s->next;
		det_result_unref(s->latest);
		vs_drop_jpeg(s);
		free(s);
	}
	if (v->reaper)
		event_free(v->reaper);
	if (v->done_ev)
		event_free(v->done_ev);
	if (v->sweep_ev)
		event_free(v->sweep_ev);
	pthread_cond_destroy(&v->cond);
	pthread_mutex_destroy(&v->lock);
	free(v);
}
