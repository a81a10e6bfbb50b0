/*
 * batcher.h — gathers frames of many streams into batches for the inference
 * workers (included by engine.h; other folders include engine.h only).
 *
 * Model: one slot per stream where the newest frame wins (a replaced frame is
 * unref'd and counted as dropped-stale).  A batch is cut when max_batch slots
 * are ready or max_wait_ms have passed since the oldest waiting slot was
 * filled; streams are taken round-robin.  A stream with a frame in flight is
 * not batched again until that frame is done, so its recurrent state
 * (struct eng_state, owned by the batcher, one per stream) is used by one
 * worker at a time and frames of a stream finish in order.  The state is
 * reset when frame->stream_gen changes.
 *
 * Workers: opts.workers threads, each with its own eng_ctx on the configured
 * backend (weights shared read-only through the model), plus a "cpu"
 * context when the backend is another one.  This is detd's one fallback
 * path (engine/health.h): a backend context that cannot be opened, a run
 * that fails or one that exceeds deadline_ms marks the backend unhealthy; a
 * failed batch is run again on "cpu" and later batches go to cpu until a
 * re-probe (exponential backoff) succeeds.  Only a failure of "cpu" itself
 * is fatal at create.  Every submitted frame yields exactly one result or
 * one counted drop (by reason, per stream).
 *
 * Threads:
 *  - eng_batcher_submit() is called from GStreamer streaming threads and
 *    never blocks for long (one mutex, no I/O, no allocation).
 *  - on_result runs on a worker thread; the callee owns the result.
 *  - create/destroy/stop/add/remove/stats: any thread (the daemon uses the
 *    main loop); stop and destroy join the workers.
 */
#ifndef DETD_ENGINE_BATCHER_H
#define DETD_ENGINE_BATCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

struct eng_model;
struct eng_backend_ops;
struct eng_batcher;

enum eng_drop_reason {
	ENG_DROP_STALE = 0,  /* replaced by a newer frame of the same stream */
	ENG_DROP_SHUTDOWN,   /* batcher stopped with the frame still waiting */
	ENG_DROP_ERROR,      /* every backend failed on it */
	ENG_DROP_NO_STREAM,  /* stream unknown or removed */
	ENG_DROP__COUNT
};

/* "stale", "shutdown", "error", "no_stream" (for /status and metrics). */
const char *eng_drop_reason_name(enum eng_drop_reason r);

typedef void (*eng_result_fn)(struct det_result *r, void *user);

struct eng_batcher_opts {
	const struct eng_model *model;         /* must outlive the batcher */
	const struct eng_backend_ops *backend; /* NULL → cpu */
	struct eng_backend_opts backend_opts;  /* device, xclbin (copied), timeout */
	int workers;     /* inference threads, >= 1 */
	int threads;     /* compute threads per worker context, >= 1 */
	int max_batch;   /* 1..ENG_BATCH_MAX */
	int max_wait_ms; /* >= 0 */
	int deadline_ms; /* 0: no deadline */
	double min_score;
	int test_delay_ms; /* test only: the primary backend sleeps this long per run */
	bool test_fail;    /* test only: the primary backend fails every run */
	eng_result_fn on_result;
	void *user;
};

#define ENG_BATCH_MAX 64
#define ENG_BATCHER_STREAMS_MAX 256

/* Creates the contexts and starts the workers.  -errno and a line in err on failure. */
int eng_batcher_create(const struct eng_batcher_opts *opts, struct eng_batcher **out, char *err,
		       size_t errlen);
/*
 * Stop accepting frames, let the workers run what is waiting (drain=true) or
 * drop it as ENG_DROP_SHUTDOWN (drain=false), then join them.  Idempotent.
 * After it returns no on_result call is running or will run.
 */
void eng_batcher_stop(struct eng_batcher *b, bool drain);
void eng_batcher_destroy(struct eng_batcher *b); /* NULL-safe; stops with drain=false first */

/* engine.min_score is reloadable: results of batches cut from now on use it. */
void eng_batcher_set_min_score(struct eng_batcher *b, double min_score);

/* Streams are added before their source starts; -EEXIST, -ENOSPC, -EINVAL. */
int eng_batcher_add_stream(struct eng_batcher *b, const char *stream_id);
/* The waiting frame is dropped (no_stream); a frame in flight still yields its result. -ENOENT. */
int eng_batcher_remove_stream(struct eng_batcher *b, const char *stream_id);

/*
 * Hand a frame over (the batcher takes the caller's reference, also on
 * error).  Sets frame->enqueue_mono_ns.  Returns 0, -ENOENT (unknown stream,
 * counted as no_stream), -ESHUTDOWN (stopped, counted as shutdown).
 */
int eng_batcher_submit(struct eng_batcher *b, struct det_frame *frame);

/* The configured backend as the one fallback path sees it (engine/health.h). */
struct eng_backend_health {
	char name[24];
	bool healthy;
	uint64_t failures;      /* runs that failed */
	uint64_t open_failures; /* contexts that could not be opened (no device, xclbin …) */
	uint64_t deadline_misses;
	uint64_t fallback_runs; /* batches re-run on cpu */
	uint64_t probes;        /* tries of the unhealthy backend */
	int64_t next_probe_ms;  /* unhealthy: ms until the next try (0: due) */
	char last_error[160];
};

struct eng_batcher_stats {
	uint64_t batches;
	uint64_t frames_run;     /* frames in all batches */
	double mean_batch;       /* frames_run / batches */
	double infer_ms_p50, infer_ms_p99; /* per batch run, over the last runs */
	double latency_ms_p50, latency_ms_p99; /* capture → result, last frames */
	double fps;              /* results per second over the last seconds */
	uint64_t submitted, results;
	uint64_t drops[ENG_DROP__COUNT]; /* all streams, incl. removed and unknown */
	int queue_depth;         /* frames waiting in slots */
	int in_flight;           /* frames being run */
	int n_streams;
	struct eng_backend_health primary;
	bool primary_is_cpu;
	bool have_device;                /* device below is valid (the primary reported it) */
	struct eng_backend_info device;  /* of the last primary run of any worker */
};

struct eng_stream_stats {
	char stream_id[DET_STREAM_ID_MAX];
	uint64_t submitted, results;
	uint64_t drops[ENG_DROP__COUNT];
	uint64_t last_seq;       /* of the last result */
	int waiting;             /* 0/1: a frame in the slot */
	bool in_flight;
	uint32_t state_resets;
};

int eng_batcher_stats(struct eng_batcher *b, struct eng_batcher_stats *st);
/* -ENOENT when the stream is unknown. */
int eng_batcher_stream_stats(struct eng_batcher *b, const char *stream_id,
			     struct eng_stream_stats *st);
/* Calls fn for every stream (in add order) with a snapshot; fn must not call the batcher. */
void eng_batcher_foreach_stream(struct eng_batcher *b,
				void (*fn)(const struct eng_stream_stats *st, void *user),
				void *user);

/*
 * Heartbeat of worker i (0..opts.workers-1) for the service watchdog: how
 * long it has been running its current batch (including the cpu re-run and
 * the on_result calls), 0 while it waits for work or when i is out of range.
 * Lock-free (one atomic per worker): any thread, even while a worker is stuck.
 */
int64_t eng_batcher_worker_busy_ns(struct eng_batcher *b, int i, int64_t now_ns);

#endif
