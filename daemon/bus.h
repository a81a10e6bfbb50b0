/*
 * bus.h — the fan-out of detection results to subscribers (Unix-socket
 * clients, SSE connections), plus what the HTTP API asks about streams: the
 * latest result, state, rates.
 *
 * Owns: per stream the latest result, a bounded replay ring (for resume with
 * "since"), the state reported by the pipeline; the subscriber list; the
 * serialized messages (struct bus_msg, one per message and distinct object
 * filter, shared by every subscriber that gets it — never one per client).
 *
 * Thread: the libevent loop thread only.  Nothing here locks; results arrive
 * from the worker through the daemon's result queue and are handed to
 * bus_publish() on the loop.
 *
 * Numbering: a result is identified by (stream, seq) where seq is the frame
 * number the pipeline gave it (det_result.seq, from 1).  Holes in seq are
 * frames dropped before inference.  If seq goes backwards the stream was
 * re-created: the ring of that stream is cleared.
 */
#ifndef DETD_BUS_H
#define DETD_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

struct bus;
struct bus_sub;
struct metrics;
struct json_object;

/* One serialized message: a JSON object followed by '\n' (and a NUL not counted in len).  Refcounted,
 * loop thread only.  data is immutable. */
struct bus_msg {
	int refs;
	size_t len; /* including the trailing '\n' */
	char data[];
};
struct bus_msg *bus_msg_new(const char *json, size_t len); /* appends '\n' */
struct bus_msg *bus_msg_from_json(struct json_object *obj);
struct bus_msg *bus_msg_ref(struct bus_msg *m);
void bus_msg_unref(struct bus_msg *m); /* NULL-safe */

/* What a subscriber wants.  Empty lists mean "all". */
struct bus_filter {
	char **streams;
	size_t n_streams;
	char **labels;
	size_t n_labels;
	double min_score; /* 0..1 */
};
void bus_filter_clear(struct bus_filter *f); /* frees the lists, zeroes */
/* true when the filter drops objects (labels or min_score): frames left
 * without any object are then not delivered at all. */
bool bus_filter_filters_objects(const struct bus_filter *f);
bool bus_filter_has_stream(const struct bus_filter *f, const char *stream);
/* Validate one stream id / label / score the way subscribe does; for SSE query parsing. */
int bus_filter_add_stream(struct bus_filter *f, const char *id, char *err, size_t errlen);
int bus_filter_add_label(struct bus_filter *f, const char *label, char *err, size_t errlen);
/*
 * Parse the filter fields of a subscribe request ("streams", "labels",
 * "min_score"); other keys are ignored here (the caller checks them).
 * 0 or -EINVAL with a reason in err.  f is cleared first.
 */
int bus_filter_from_json(struct bus_filter *f, struct json_object *req, char *err, size_t errlen);
struct json_object *bus_filter_to_json(const struct bus_filter *f);

/* Called for every message that matches the subscriber.  The callee takes
 * its own reference if it keeps msg.  It may call bus_unsubscribe() on its
 * own subscription (taking effect at once) but must not free other subs. */
typedef void (*bus_deliver_fn)(void *ud, struct bus_msg *msg);

struct bus *bus_create(int replay_ring, struct metrics *metrics /* may be NULL */);
void bus_destroy(struct bus *b); /* NULL-safe; subscriptions must be gone */

/*
 * Publish one result (loop thread).  The bus takes its own references;
 * the caller keeps (and later drops) its own.  Unknown streams are created
 * on the fly with state "running".
 */
void bus_publish(struct bus *b, struct det_result *r);

/* Streams.  add: a configured stream (state "starting"); -EEXIST, -EINVAL. */
int bus_stream_add(struct bus *b, const char *id);
int bus_stream_remove(struct bus *b, const char *id); /* 0 or -ENOENT */
/* A state change (e.g. "starting", "running", "stalled", "reconnecting",
 * "stopped", "error"); error may be NULL.  Sends a status event. */
void bus_stream_state(struct bus *b, const char *id, const char *state, const char *error);
bool bus_stream_exists(struct bus *b, const char *id);
/* ["cam0", …] in the order streams were added. */
struct json_object *bus_stream_ids_json(struct bus *b);
/* {"id":…,"state":…,"error":…,"last_seq":…,"results":…,"fps":…,"last_result_age_s":…}; NULL if unknown. */
struct json_object *bus_stream_json(struct bus *b, const char *id);
struct json_object *bus_streams_json(struct bus *b); /* array of the above */
/* The latest detections message of a stream (borrowed; NULL if none yet). */
struct bus_msg *bus_latest(struct bus *b, const char *id);

/* Subscriptions.  The filter is moved into the bus (f is zeroed). */
struct bus_sub *bus_subscribe(struct bus *b, struct bus_filter *f, bus_deliver_fn fn, void *ud);
void bus_unsubscribe(struct bus_sub *s); /* NULL-safe */
/* Replace the filter (moved in). */
void bus_sub_set_filter(struct bus_sub *s, struct bus_filter *f);
const struct bus_filter *bus_sub_filter(const struct bus_sub *s);
/*
 * Resume: deliver what the ring of stream still holds after seq since
 * (through the subscriber's filter), preceded by a gap message
 * {"type":"gap","stream":…,"from":A,"to":B} when results A..B were
 * published but have left the ring.  Unknown streams: nothing, 0.
 */
int bus_replay(struct bus_sub *s, const char *stream, uint64_t since);
size_t bus_sub_count(struct bus *b);

/*
 * Slow-consumer policy shared by the socket server and SSE: a transport asks
 * before queueing each message.  soft: past it messages are dropped and
 * counted; hard: past it (control replies are not dropped, so a client that
 * floods requests without reading can get there) the client is cut; a client
 * that keeps dropping for timeout_ns is cut too.
 */
struct bus_flow {
	size_t soft, hard;
	int64_t timeout_ns;
	uint64_t pending_drops; /* not yet reported to the client */
	uint64_t total_drops;
	int64_t stuck_since; /* mono ns of the first drop of the current run, 0 = flowing */
};
enum bus_flow_verdict { BUS_FLOW_SEND = 0, BUS_FLOW_DROP, BUS_FLOW_DISCONNECT };
void bus_flow_init(struct bus_flow *f, size_t soft, size_t hard, double timeout_s);
enum bus_flow_verdict bus_flow_offer(struct bus_flow *f, size_t queued, size_t len, int64_t now);
/* The output drained below the soft limit: the run of drops is over. */
void bus_flow_drained(struct bus_flow *f);
/* Still stuck after the timeout (checked by a periodic sweep). */
bool bus_flow_expired(const struct bus_flow *f, size_t queued, int64_t now);
/* {"type":"dropped","count":N} for the pending drops, which are reset; NULL if none. */
struct bus_msg *bus_flow_take_notice(struct bus_flow *f);

/* The detections message for r, all objects (used by tests and /detections/latest). */
struct bus_msg *bus_serialize_result(const struct det_result *r, const bool *keep);

#endif
