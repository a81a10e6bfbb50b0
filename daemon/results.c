/*
 * results.c — bounded result queue from the workers to the loop (see
 * results.h).  Owns the ring of queued results, the user event that wakes
 * the loop, and the per-stream table of latest results and counters.
 *
 * Threads: results_push() on worker threads; the event callback and every
 * other function on the libevent loop.  q->mu guards the ring and the
 * per-stream counters; `latest` pointers are only touched on the loop.
 */
#include "results.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"

#define TOPIC "results"
#define DELIVER_MAX 256 /* per wake-up, so a flood cannot hog the loop */

struct rstream {
	char id[DET_STREAM_ID_MAX];
	uint64_t delivered, dropped_full;
	struct det_result *latest; /* loop only */
};

struct results {
	struct event_base *base;
	struct event *ev;
	results_fn fn;
	void *user;

	pthread_mutex_t mu;
	struct det_result **ring;
	size_t cap, head, count; /* head: oldest */
	bool armed;              /* event_active() issued, callback not yet run */
	uint64_t pushed, delivered, dropped_full;
	size_t high_water;
	struct rstream streams[RESULTS_STREAMS_MAX];
	int n_streams;
};

/* Under q->mu.  Creates the entry if there is room. */
static struct rstream *stream_get(struct results *q, const char *id)
{
	for (int i = 0; i < q->n_streams; i++)
		if (strcmp(q->streams[i].id, id) == 0)
			return &q->streams[i];
	if (q->n_streams >= RESULTS_STREAMS_MAX)
		return NULL;
	struct rstream *s = &q->streams[q->n_streams++];
	memset(s, 0, sizeof(*s));
	memcpy(s->id, id, sizeof(s->id));
	s->id[sizeof(s->id) - 1] = '\0';
	return s;
}

/* Loop: deliver up to max results; true when some remain. */
static bool deliver(struct results *q, size_t max)
{
	for (size_t k = 0; k < max; k++) {
		pthread_mutex_lock(&q->mu);
		if (q->count == 0) {
			q->armed = false;
			pthread_mutex_unlock(&q->mu);
			return false;
		}
		struct det_result *r = q->ring[q->head];
		q->ring[q->head] = NULL;
		q->head = (q->head + 1) % q->cap;
		q->count--;
		q->delivered++;
		struct rstream *s = stream_get(q, r->stream_id);
		struct det_result *old = NULL;
		if (s) {
			s->delivered++;
			old = s->latest;
			s->latest = det_result_ref(r);
		}
		pthread_mutex_unlock(&q->mu);
		det_result_unref(old);
		if (q->fn)
			q->fn(r, q->user);
		det_result_unref(r);
	}
	pthread_mutex_lock(&q->mu);
	bool more = q->count > 0;
	if (!more)
		q->armed = false;
	pthread_mutex_unlock(&q->mu);
	return more;
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct results *q = arg;
	if (deliver(q, DELIVER_MAX))
		event_active(q->ev, EV_READ, 0); /* the rest on the next loop turn */
}

int results_create(struct event_base *base, size_t capacity, results_fn fn, void *user,
		   struct results **out)
{
	*out = NULL;
	if (!base || capacity < 1)
		return -EINVAL;
	struct results *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->ring = calloc(capacity, sizeof(*q->ring));
	q->ev = event_new(base, -1, 0, on_event, q);
	if (!q->ring || !q->ev) {
		free(q->ring);
		if (q->ev)
			event_free(q->ev);
		free(q);
		return -ENOMEM;
	}
	q->base = base;
	q->cap = capacity;
	q->fn = fn;
	q->user = user;
	pthread_mutex_init(&q->mu, NULL);
	*out = q;
	return 0;
}

void results_destroy(struct results *q)
{
	if (!q)
		return;
	event_free(q->ev);
	for (size_t i = 0; i < q->count; i++)
		det_result_unref(q->ring[(q->head + i) % q->cap]);
	for (int i = 0; i < q->n_streams; i++)
		det_result_unref(q->streams[i].latest);
	free(q->ring);
	pthread_mutex_destroy(&q->mu);
	free(q);
}

int results_push(struct results *q, struct det_result *r)
{
	if (!q || !r) {
		det_result_unref(r);
		return -EINVAL;
	}
	struct det_result *dropped = NULL;
	bool wake = false;
	pthread_mutex_lock(&q->mu);
	q->pushed++;
	if (q->count == q->cap) {
		dropped = q->ring[q->head];
		q->head = (q->head + 1) % q->cap;
		q->count--;
		q->dropped_full++;
		struct rstream *s = stream_get(q, dropped->stream_id);
		if (s)
			s->dropped_full++;
	}
	q->ring[(q->head + q->count) % q->cap] = r;
	q->count++;
	if (q->count > q->high_water)
		q->high_water = q->count;
	if (!q->armed) {
		q->armed = true;
		wake = true;
	}
	pthread_mutex_unlock(&q->mu);
	/* event_active is thread safe with evthread_use_pthreads(); one wake-up
	 * per batch of pushes is enough, the callback drains the ring. */
	if (wake)
		event_active(q->ev, EV_READ, 0);
	if (dropped) {
		log_debug(TOPIC, "queue full: dropped %s #%llu", dropped->stream_id,
			  (unsigned long long)dropped->seq);
		det_result_unref(dropped);
		return -ENOBUFS;
	}
	return 0;
}

void results_flush(struct results *q)
{
	if (q)
		while (deliver(q, DELIVER_MAX))
			;
}

void results_stats(struct results *q, struct results_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!q)
		return;
	pthread_mutex_lock(&q->mu);
	st->pushed = q->pushed;
	st->delivered = q->delivered;
	st->dropped_full = q->dropped_full;
	st->depth = q->count;
	st->capacity = q->cap;
	st->high_water = q->high_water;
	pthread_mutex_unlock(&q->mu);
}

static void snap(const struct rstream *s, struct results_stream *out)
{
	memcpy(out->stream_id, s->id, sizeof(out->stream_id));
	out->delivered = s->delivered;
	out->dropped_full = s->dropped_full;
	out->latest = s->latest;
}

int results_stream(struct results *q, const char *stream_id, struct results_stream *out)
{
	int rc = -ENOENT;
	pthread_mutex_lock(&q->mu);
	for (int i = 0; i < q->n_streams; i++) {
		if (strcmp(q->streams[i].id, stream_id) == 0) {
			snap(&q->streams[i], out);
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&q->mu);
	return rc;
}

void results_foreach(struct results *q, void (*fn)(const struct results_stream *s, void *user),
		     void *user)
{
	/* Snapshot first so fn may call back into results_*. */
	struct results_stream *all = calloc(RESULTS_STREAMS_MAX, sizeof(*all));
	if (!all)
		return;
	pthread_mutex_lock(&q->mu);
	int n = q->n_streams;
	for (int i = 0; i < n; i++)
		snap(&q->streams[i], &all[i]);
	pthread_mutex_unlock(&q->mu);
	for (int i = 0; i < n; i++)
		fn(&all[i], user);
	free(all);
}

void results_forget(struct results *q, const char *stream_id)
{
	struct det_result *old = NULL;
	pthread_mutex_lock(&q->mu);
	for (int i = 0; i < q->n_streams; i++) {
		if (strcmp(q->streams[i].id, stream_id) == 0) {
			old = q->streams[i].latest;
			memmove(&q->streams[i], &q->streams[i + 1],
				(size_t)(q->n_streams - i - 1) * sizeof(q->streams[0]));
			q->n_streams--;
			break;
		}
	}
	pthread_mutex_unlock(&q->mu);
	det_result_unref(old);
}
