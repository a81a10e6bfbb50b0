/*
 * engine.h — the public face of engine/: models, per-stream state, execution
 * contexts (one per inference worker), backends and the batcher.
 *
 * Ownership and threads:
 *  - struct eng_model is immutable after eng_model_load() returns and may be
 *    shared read-only by any number of threads (weights, packed weights and
 *    the graph live here).
 *  - struct eng_ctx is an execution context: an activation arena and a
 *    backend instance.  One thread at a time; one per worker.
 *  - struct eng_state is one stream's recurrent state (zero at start).  It is
 *    passed to eng_run() together with that stream's frame; one thread at a
 *    time.
 *  - Errors are returned as 0 / -errno; where a message helps the user, the
 *    caller passes an error buffer that receives one line (no newline).
 */
#ifndef DETD_ENGINE_H
#define DETD_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENG_MAX_DETECTIONS 256
#define ENG_LABEL_MAX 48

enum eng_format {
	ENG_FORMAT_AUTO = 0, /* by file content: TFLite identifier "TFL3", else CoDeNet JSON */
	ENG_FORMAT_TFLITE,
	ENG_FORMAT_CODENET,
};

/* The one name table of model formats: "auto", "tflite", "codenet" (config, /status, logs).
 * eng_format_from_name returns -EINVAL for an unknown name; NULL means auto. */
int eng_format_from_name(const char *name, enum eng_format *out);
const char *eng_format_name(enum eng_format f);

struct eng_model_opts {
	const char *path;        /* model file */
	const char *labels_path; /* pbtxt label map or one label per line; may be NULL */
	enum eng_format format;
	bool reference_kernels; /* plain reference kernels only (tests, debugging a mismatch) */
};

struct eng_model_info {
	const char *name;   /* file's base name */
	const char *format; /* "tflite" | "codenet" */
	int input_width, input_height, input_channels;
	bool input_is_float; /* false: raw uint8 RGB bytes go in as they are */
	int n_classes;       /* classes the post-process reports (background excluded) */
	int max_detections;
	int n_ops, n_tensors;
	size_t arena_bytes;   /* activation memory of one context */
	size_t weight_bytes;  /* constant data */
	size_t state_bytes;   /* recurrent state of one stream (0: not recurrent) */
	double gmac;          /* multiply-accumulates of one frame, in 1e9 */
	const char *kernels;  /* CPU kernel set: "ref", "avx2", "avxvnni", "avx512vnni" (TFLite
			       * models; DETD_KERNELS forces one), or NULL */
};

struct eng_detection {
	float box[4]; /* ymin, xmin, ymax, xmax, normalized to the model input, unclipped */
	int class_id; /* 0-based */
	float score;
};

struct eng_detections {
	int n;
	struct eng_detection d[ENG_MAX_DETECTIONS];
};

struct eng_model;
struct eng_state;
struct eng_ctx;

/* Load and validate a model.  On failure returns -errno and writes why to err. */
int eng_model_load(const struct eng_model_opts *opts, struct eng_model **out, char *err,
		   size_t errlen);
void eng_model_destroy(struct eng_model *m); /* NULL-safe; no ctx/state may outlive it */
const struct eng_model_info *eng_model_info(const struct eng_model *m);
/* Label of a 0-based class id: from the label map, else the decimal id (in a
 * thread-local buffer valid until the thread's next call). Never NULL. Any thread. */
const char *eng_model_label(const struct eng_model *m, int class_id);

/* Per-stream recurrent state.  For a model without state this is a valid empty object. */
int eng_state_create(const struct eng_model *m, struct eng_state **out);
void eng_state_reset(struct eng_state *s); /* back to zeros: a stream restarted */
void eng_state_destroy(struct eng_state *s);

/*
 * Backends: a small ops table each, and one static name table used both by
 * config parsing and by /status.  "cpu" is always present.
 */
struct eng_backend_ops;
const struct eng_backend_ops *eng_backend_find(const char *name);
const char *eng_backend_name(const struct eng_backend_ops *b);
/* NULL-terminated list of compiled-in backend names, for config validation. */
const char *const *eng_backend_names(void);

/*
 * An execution context on a backend (NULL → cpu).  threads: compute threads
 * it may use.  On cpu, eng_run() runs the frames of different streams of one
 * batch on up to that many threads at once (one arena each); frames that
 * share a state run in order on one thread.  A context is still used by one
 * thread at a time.
 */
int eng_ctx_create(const struct eng_model *m, const struct eng_backend_ops *backend, int threads,
		   struct eng_ctx **out, char *err, size_t errlen);

/* Where a device backend finds its device (config engine.xrt). */
struct eng_backend_opts {
	int device;         /* XRT device index */
	const char *xclbin; /* bitstream path; NULL: none configured */
	int timeout_ms;     /* one kernel run longer than this fails; <= 0: 1000 */
	/* Tests only: a struct xrt_dev_ops (engine/xrt/xrt_dev.h) the xrt
	 * backends use instead of their own device (a recording layer). */
	const void *device_ops;
};
/* eng_ctx_create with device options (NULL: defaults). */
int eng_ctx_create_opts(const struct eng_model *m, const struct eng_backend_ops *backend,
			const struct eng_backend_opts *bo, int threads, struct eng_ctx **out,
			char *err, size_t errlen);
void eng_ctx_destroy(struct eng_ctx *c);

/*
 * Run n frames.  inputs[i] points at input_height×input_width×input_channels
 * bytes (tightly packed RGB); states[i] is that frame's stream state or NULL
 * (stateless run from zeros).  out[i] receives all post-process outputs of
 * frame i.  Frames of the same stream must come in order within a batch.
 * A backend failure is returned as it is (-errno): re-running on cpu is the
 * batcher's job (its one fallback path, engine/health.h), not eng_run's.
 * After a failure the recurrent states of the batch may hold partial updates.
 */
int eng_run(struct eng_ctx *c, int n, const uint8_t *const *inputs, struct eng_state *const *states,
	    struct eng_detections *out);

/*
 * What a device backend reports about itself (/status, detd-bench).  cpu
 * reports nothing (-ENOTSUP).  Counters are since the context was created.
 */
struct eng_backend_info {
	char backend[16];      /* "xrt", "xrt-sim" */
	char device[64];       /* device name as the runtime gives it */
	char xclbin_uuid[40];  /* of the loaded xclbin, 8-4-4-4-12 hex */
	uint64_t runs;         /* kernel runs */
	uint64_t failures;     /* kernel runs that errored or timed out */
	double ms_per_run;     /* mean wall time of one kernel run (start to done) */
	int nodes_device;      /* graph nodes placed on the device */
	int nodes_cpu;         /* graph nodes left on cpu */
	int blocks;            /* kernel calls per frame (a node may need several tiles) */
};
int eng_ctx_backend_info(const struct eng_ctx *c, struct eng_backend_info *out);
/* Where op i (as in eng_ctx_op_timings) runs: "cpu" or the device backend's name. */
const char *eng_ctx_placement(const struct eng_ctx *c, int op);

/*
 * Debug/test hook: bytes of tensor index (as in the model file) after the
 * last run.  Constants, model outputs and post-process outputs are always
 * available; other activations share arena memory and are available only if
 * watched (else -ENODATA).
 */
int eng_ctx_tensor(const struct eng_ctx *c, int index, const void **data, size_t *bytes);
/* Keep a copy of tensor index (-1: every tensor) after each run, for eng_ctx_tensor(). */
int eng_ctx_watch(struct eng_ctx *c, int index);

/* Per-op timing of the last run, for detd-bench; may be called after eng_run(). */
struct eng_op_timing {
	const char *op_name;
	int index;
	int64_t ns;
	int64_t macs; /* multiply-accumulates of the op per frame (TFLite models; else 0) */
	char shape[48]; /* convolutions: "HxWxC<-HxWxC kKxK sS" (TFLite models; else "") */
};
int eng_ctx_op_timings(const struct eng_ctx *c, const struct eng_op_timing **t, int *n);



/* The batcher and its inference workers (engine/batcher.h, part of this contract). */
#include "batcher.h"
#endif
