/*
 * flow.h — the daemon's data path: model → pipeline sources → batcher and
 * inference workers → result queue → the loop (bus, latest result, printing).
 *
 * Owns the loaded model, the batcher (with its workers), the set of pipeline
 * sources and the result queue, and wires them together:
 *   pipeline on_frame (GStreamer thread) → eng_batcher_submit()
 *   worker on_result → results_push() → loop → opts.on_result (the bus)
 *
 * Threads: every flow_* function on the libevent loop.  flow_stop() blocks
 * while pipelines go to NULL and workers finish the frames they hold (the
 * ordered shutdown: sources → workers → results flushed on the loop); it is
 * meant for shutdown only.
 */
#ifndef DETD_FLOW_H
#define DETD_FLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "frame.h"

struct event_base;
struct json_object;
struct flow;

enum flow_print { FLOW_PRINT_NONE = 0, FLOW_PRINT_TEXT, FLOW_PRINT_JSON };

struct flow_opts {
	const struct cfg *cfg;    /* streams, model, engine; read during create only */
	struct event_base *base;
	size_t result_queue;      /* capacity of the result queue (0: 256) */
	enum flow_print print;    /* print each result on stdout (demo, tests) */
	const char *dump_dir;     /* debug: write each decoded model input as
				     <dir>/<stream>-<gen>-<seq>.rgb; NULL: off */
	/* Loop thread, borrowed reference (ref it to keep it); may be NULL. */
	void (*on_result)(struct det_result *r, void *ud);
	/* Pipeline thread: a stream changed state (pipeline.h's enum as int). */
	void (*on_state)(const char *stream_id, int old_state, int new_state, const char *error,
			 void *ud);
	void *ud;
};

/*
 * Load the model and its labels exactly as flow_create() would, then free
 * them: --check-config, start-up and SIGHUP use it so that a config that
 * cannot start is rejected as a config error.  Errors name the key
 * ("model.path: ...", "model.labels: ...").  0 or -EINVAL (-ENOMEM).  Any
 * thread; blocks for the model load.
 */
int flow_check_model(const struct cfg *c, struct cfg_errors *errs);

/* Loads the model, starts the workers and every configured stream.  -errno and err. */
int flow_create(const struct flow_opts *opts, struct flow **out, char *err, size_t errlen);
/* Ordered shutdown of the data path; idempotent.  Loop thread. */
void flow_stop(struct flow *f);
/* The blocking part of flow_stop() (sources to NULL, workers drained and
 * joined), for a helper thread; flow_stop() on the loop afterwards only
 * flushes the result queue. */
void flow_stop_threads(struct flow *f);
void flow_destroy(struct flow *f); /* NULL-safe; stops first */

/* Streams at run time (cfg is copied).  0, -EEXIST, -ENOENT, -EINVAL, -ENOMEM. */
int flow_stream_add(struct flow *f, const struct cfg_stream *cfg);
int flow_stream_remove(struct flow *f, const char *id);

/* Reloadable engine settings (engine.min_score). */
void flow_reload_engine(struct flow *f, const struct cfg_engine *e);

/*
 * Worker liveness for the service watchdog.  arm: a batch running longer
 * than max(watchdog_usec / 2, 2 x engine.deadline_ms) means a hung worker
 * (watchdog_usec 0: never).  check: 0 while no worker is hung, -ETIMEDOUT
 * with a line in why otherwise.  /status shows it as engine.worker_liveness.
 */
void flow_watchdog_arm(struct flow *f, uint64_t watchdog_usec);
int flow_check_alive(struct flow *f, char *why, size_t whylen);

/* /status sections: fill an (empty) object. */
void flow_status_engine(struct json_object *section, void *flow);
void flow_status_streams(struct json_object *section, void *flow);

/* Loop: add "pipeline", "batcher" and "result_queue" objects of stream id to entry. */
void flow_describe_stream(struct flow *f, const char *id, struct json_object *entry);

/* The latest result of a stream (borrowed, loop thread), NULL if none. */
struct det_result *flow_latest(struct flow *f, const char *stream_id);
/* The model's input size, for callers that build their own sources. */
void flow_input_size(const struct flow *f, int *w, int *h);

/* One text line for r's objects, "cam0 #12 pickup_suv_van 0.50 [551,302 712,410]" each. */
void flow_print_text(const struct det_result *r, FILE *to);
/* One JSON line for r with exact floats (tests compare with the engine). */
void flow_print_json(const struct det_result *r, FILE *to);

/* ---- as a daemon module (flow_module.c) ---- */
struct daemon;
struct flow_module;
struct flow_module_opts {
	enum flow_print print;
	const char *dump_dir;
	void (*on_result)(struct det_result *r, void *ud);
	void (*on_state)(const char *stream_id, int old_state, int new_state, const char *error,
			 void *ud);
	void (*started)(struct flow *f, void *ud); /* after start, e.g. to register routes */
	void *ud;
};
/* Register the data path as daemon module "flow" (after the publishers). */
int flow_module_add(struct daemon *d, const struct flow_module_opts *o, struct flow_module **out);
/* After daemon_run() returned; NULL-safe. */
void flow_module_free(struct flow_module *m);
struct flow *flow_module_flow(struct flow_module *m); /* NULL before start */

/*
 * The stream set across HTTP and SIGHUP (flow_module.c explains the rule).
 * Loop thread.  add: 0, -EEXIST (the id runs), -ENOSPC (CFG_MAX_STREAMS
 * run), -EAGAIN (not started), -errno; s is copied.  remove: 0, -ENOENT.
 */
int flow_module_stream_add(struct flow_module *m, const struct cfg_stream *s, char *err,
			   size_t errlen);
int flow_module_stream_remove(struct flow_module *m, const char *id, char *err, size_t errlen);
/* The definition of a running stream (HTTP's or the file's), NULL if none. */
const struct cfg_stream *flow_module_stream(const struct flow_module *m, const char *id,
					    bool *from_http);
/* True for ids decided at run time (HTTP streams, deleted file streams):
 * a reload of the file leaves them alone. */
bool flow_module_stream_runtime(const struct flow_module *m, const char *id);

#endif
