/*
 * publish.h — the publishing side of detd as one daemon module ("publish"):
 * the metrics registry, the result bus, the Unix-socket server (ipc.h) and
 * the HTTP API for streams, detections, events and metrics (api.h).
 *
 * Register it before the data path so results have somewhere to go (the
 * data path stops first and flushes its last results into the bus).  The
 * bus and the registry live until publish_free(), after daemon_run().
 *
 * Threads: the loop, except publish_stream_state() which any thread may
 * call (GStreamer/GLib threads report stream states): it queues the event
 * (bounded: past PUBLISH_STATE_QUEUE pending events the oldest are dropped
 * and counted) and wakes the loop.
 */
#ifndef DETD_PUBLISH_H
#define DETD_PUBLISH_H

#include <stdbool.h>
#include <stddef.h>

#include "frame.h"

struct daemon;
struct bus;
struct metrics;
struct publish;
struct json_object;

#define PUBLISH_STATE_QUEUE 256

/* What the data path offers for POST/DELETE /streams (0 or -errno + err). */
struct publish_stream_ops {
	int (*add)(const char *body, size_t len, char *id_out, size_t id_len, char *err,
		   size_t errlen, void *ud);
	int (*remove)(const char *id, char *err, size_t errlen, void *ud);
	void (*describe)(const char *id, struct json_object *entry, void *ud);
	void *ud;
	/* True when the id is decided at run time (added or deleted over HTTP):
	 * a reload neither lists nor unlists it.  May be NULL. */
	bool (*runtime)(const char *id, void *ud);
};

int publish_module_add(struct daemon *d, struct publish **out);
void publish_free(struct publish *p); /* NULL-safe; after daemon_run() */

/* Loop thread; borrowed reference (the bus takes its own). */
void publish_result(struct det_result *r, void *publish);
/* Any thread.  state: "starting", "running", "stalled", "reconnecting", "stopped", "error". */
void publish_stream_state(struct publish *p, const char *stream, const char *state,
			  const char *error);
/* Loop thread, before or after start. */
void publish_set_stream_ops(struct publish *p, const struct publish_stream_ops *ops);

struct bus *publish_bus(struct publish *p);         /* NULL before start */
struct metrics *publish_metrics(struct publish *p); /* always (created with the module) */

#endif
