/*
 * pipeline.h — the one public header of pipeline/: video ingest.
 *
 * A struct pipe_sources owns one GStreamer pipeline per configured stream and
 * turns whatever the stream carries (file, RTSP, HTTP, V4L2 camera, a
 * gst-launch fragment, a test pattern) into refcounted struct det_frame
 * objects of exactly the model's input size (W×H, packed RGB), rate limited to
 * the stream's fps, and hands each one to a sink callback.
 *
 * Threads
 *  - The caller's thread (the daemon's libevent loop): every pipe_sources_*
 *    function.  None of them blocks on GStreamer: state changes are queued to
 *    the pipeline thread and return at once.
 *  - The pipeline thread (one GLib main loop, owned here): bus messages of all
 *    pipelines, the health timer, building pipelines and their state changes.
 *    on_state is called from it.
 *  - A reaper thread (owned here): sets retired pipelines to NULL and frees
 *    them, so that a slow teardown (a hung RTSP server) never delays the
 *    other streams.
 *  - GStreamer streaming threads: on_frame is called from them.
 * pipe_sources_destroy() joins all of these before it returns.
 *
 * Health of a stream (enum pipe_state):
 *   starting → live → stalled → backoff → reconnecting → live …
 * "stalled" is entered when a live stream stops delivering: no frame for
 * stall_timeout_s, an error, or an end-of-stream on a live source.  The
 * pipeline is then torn down and the stream waits in "backoff" (exponential,
 * with jitter, between backoff_initial_s and backoff_max_s) before
 * "reconnecting" builds a new pipeline.  A stream that fails before it was
 * ever live goes from starting/reconnecting straight to backoff.  A file that
 * ends goes to "ended", or loops (cfg loop=true) from its start.
 */
#ifndef DETD_PIPELINE_H
#define DETD_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "frame.h"

struct json_object;

enum pipe_state {
	PIPE_STATE_STARTING = 0,
	PIPE_STATE_LIVE,
	PIPE_STATE_STALLED,
	PIPE_STATE_BACKOFF,
	PIPE_STATE_RECONNECTING,
	PIPE_STATE_ENDED,    /* a file reached its end and does not loop */
	PIPE_STATE_DISABLED, /* cfg enabled=false: no pipeline is built */
};

/* "starting", "live", …; "unknown" for out-of-range values. */
const char *pipe_state_name(enum pipe_state st);

/* Why a decoded frame did not reach on_frame. */
enum pipe_drop_reason {
	PIPE_DROP_RATE = 0, /* rate limit to cfg fps (deliberate) */
	PIPE_DROP_APPSINK,  /* appsink's bounded queue overflowed (leaky) */
	PIPE_DROP_ALLOC,    /* no memory for a det_frame */
	PIPE_DROP_MAP,      /* buffer could not be mapped or had an unexpected layout */
	PIPE_DROP_STOPPING, /* the pipeline was being torn down (restart/remove) */
	PIPE_DROP__COUNT,
};

const char *pipe_drop_reason_name(enum pipe_drop_reason r);

#define PIPE_ERROR_MAX 256

/* A snapshot of one stream; plain data, owned by the caller. */
struct pipe_stream_stats {
	char id[DET_STREAM_ID_MAX];
	enum pipe_state state;
	bool is_live;            /* the current/last pipeline is a live source */
	uint32_t stream_gen;     /* bumped on every restart and loop */
	uint64_t frames_decoded; /* frames out of the decoder, before rate limiting */
	uint64_t frames_delivered;
	uint64_t dropped[PIPE_DROP__COUNT];
	double fps;               /* delivered frames per second, last ~1 s */
	int64_t last_frame_age_ms; /* -1: no frame yet */
	uint64_t reconnects;      /* pipelines rebuilt after a failure */
	int orig_width, orig_height; /* 0 until known */
	double backoff_s;         /* the delay of the current/last backoff */
	char last_error[PIPE_ERROR_MAX]; /* "" when none */
	int64_t last_error_wall_ns;      /* 0 when none */
};

struct pipe_callbacks {
	/*
	 * A new frame.  The callee takes the reference.  Called from a GStreamer
	 * streaming thread: it must be fast and must not block (the batcher's
	 * submit is non-blocking).  Never called for a stream after
	 * pipe_sources_remove() of it, or pipe_sources_destroy(), has returned.
	 * May be NULL (frames are counted and dropped).
	 */
	void (*on_frame)(struct det_frame *f, void *ud);
	/*
	 * A stream changed state.  Called from the pipeline thread; error is the
	 * reason for stalled/backoff ("" otherwise), valid during the call only.
	 * Same guarantee as on_frame after remove/destroy.  May be NULL.
	 * Neither callback may call pipe_sources_* functions.
	 */
	void (*on_state)(const char *stream_id, enum pipe_state old_state,
			 enum pipe_state new_state, const char *error, void *ud);
	void *ud;
};

struct pipe_sources;

/*
 * The set of streams, empty, delivering frames of model_w×model_h RGB.
 * Initializes GStreamer if needed and starts the pipeline and reaper threads.
 * Returns 0 or -errno (-EINVAL on bad sizes).
 */
int pipe_sources_create(int model_w, int model_h, const struct pipe_callbacks *cb,
			struct pipe_sources **out);

/* Tears every pipeline down and joins every thread; NULL-safe.  Blocks until
 * all pipelines are in NULL state (call it on shutdown, not from a callback). */
void pipe_sources_destroy(struct pipe_sources *set);

/*
 * Adds a stream (cfg is copied).  The pipeline is started asynchronously: a
 * stream that is down never delays the caller.  Returns 0, -EEXIST for a
 * duplicate id, -EINVAL for a config that cannot describe a stream, -ENOMEM.
 * Zero timing fields take defaults: stall 10 s, backoff 1 s … 30 s.
 */
int pipe_sources_add(struct pipe_sources *set, const struct cfg_stream *cfg);

/* Removes a stream; its pipeline is torn down in the background.  0 or -ENOENT. */
int pipe_sources_remove(struct pipe_sources *set, const char *id);

size_t pipe_sources_count(struct pipe_sources *set);

/* Stats of one stream: 0 or -ENOENT. */
int pipe_sources_stats(struct pipe_sources *set, const char *id, struct pipe_stream_stats *out);

/* Stats of all streams, in the order they were added: *out is malloc'd (free()
 * it), *n its length.  0 or -ENOMEM. */
int pipe_sources_snapshot(struct pipe_sources *set, struct pipe_stream_stats **out, size_t *n);

/* One stream's stats as a JSON object (new reference), NULL on ENOMEM. */
struct json_object *pipe_stats_to_json(const struct pipe_stream_stats *st);

/*
 * How a picture of orig_w×orig_h (pixel aspect par_n/par_d) maps into the
 * model's input for the given aspect mode; the same numbers the pipeline puts
 * in det_frame.map.  Letterbox centres the picture like videoscale's
 * add-borders (integer borders, the odd pixel at the bottom/right).
 */
void pipe_compute_mapping(enum cfg_aspect aspect, int orig_w, int orig_h, int par_n, int par_d,
			  int model_w, int model_h, struct det_mapping *out);

#endif
