/*
 * batcher.h — gathers frames of many streams into batches for the inference
 * workers (included by engine.h; other folders include engine.h only).
 *
 * Threads: eng_batcher_submit() is called from GStreamer streaming threads and
 * never blocks for long (one mutex, no I/O).  Results are handed to on_result
 * on a worker thread; the callee takes ownership of the result.
 * Sketch — the batcher issue fills in the details.
 */
#ifndef DETD_ENGINE_BATCHER_H
#define DETD_ENGINE_BATCHER_H

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

#endif
