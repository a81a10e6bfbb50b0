/*
 * results.h — the one crossing from the inference workers to the libevent
 * loop: a bounded queue of struct det_result plus event_active() on a user
 * event.
 *
 * Full policy: the oldest queued result is dropped and counted (per stream
 * and in total); a worker never waits for the loop.
 *
 * On the loop, each result is handed to the handler (the bus), and the
 * latest result of each stream is kept for /status, /detections/latest and
 * the demo.
 *
 * Threads: results_push() from any thread (workers); everything else on the
 * loop thread.  Requires evthread_use_pthreads() before the event_base was
 * created.
 */
#ifndef DETD_RESULTS_H
#define DETD_RESULTS_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

struct event_base;
struct results;

/* Called on the loop with a borrowed reference: det_result_ref() it to keep it. */
typedef void (*results_fn)(struct det_result *r, void *user);

#define RESULTS_STREAMS_MAX 256

/* capacity: queued results at most (>= 1).  fn may be NULL.  0 or -errno. */
int results_create(struct event_base *base, size_t capacity, results_fn fn, void *user,
		   struct results **out);
/* NULL-safe; queued results are released without being delivered. */
void results_destroy(struct results *q);

/* Any thread.  Takes the reference.  0, or -ENOBUFS when the oldest result was dropped. */
int results_push(struct results *q, struct det_result *r);

/* Loop: deliver everything queued now (shutdown, after the workers were joined). */
void results_flush(struct results *q);

struct results_stats {
	uint64_t pushed, delivered, dropped_full;
	size_t depth, capacity, high_water;
};
void results_stats(struct results *q, struct results_stats *st);

/* A snapshot of one stream's counters. */
struct results_stream {
	char stream_id[DET_STREAM_ID_MAX];
	uint64_t delivered, dropped_full;
	/* borrowed, valid until the loop runs on; NULL before the first result */
	struct det_result *latest;
};
/* Loop: the stream's snapshot, 0 or -ENOENT. */
int results_stream(struct results *q, const char *stream_id, struct results_stream *out);
/* Loop: every stream seen, in first-seen order (snapshots). */
void results_foreach(struct results *q, void (*fn)(const struct results_stream *s, void *user),
		     void *user);
/* Loop: forget a removed stream's latest result and counters. */
void results_forget(struct results *q, const char *stream_id);

#endif
