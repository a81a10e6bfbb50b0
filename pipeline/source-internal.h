/*
 * source-internal.h — private to pipeline/: the contract between the set of
 * streams (sources.c) and one stream (source.c).  Other folders include
 * pipeline.h only.
 */
#ifndef DETD_PIPELINE_SOURCE_INTERNAL_H
#define DETD_PIPELINE_SOURCE_INTERNAL_H

#include <gst/gst.h>

#include "pipeline.h"

/* What the set shares with each of its streams; outlives them all. */
struct pipe_env {
	int model_w, model_h;
	struct pipe_callbacks cb;
	GMainContext *ctx; /* the pipeline thread's context */
	/* Hands a pipeline (with its reference) over to the reaper thread,
	 * which sets it to NULL and unrefs it.  Any thread. */
	void (*retire)(struct pipe_env *env, GstElement *pipeline);
};

struct pipe_source;

/* A stream in state starting (or disabled), not yet started.  Any thread.
 * NULL on ENOMEM; cfg is deep-copied. */
struct pipe_source *pipe_source_new(struct pipe_env *env, const struct cfg_stream *cfg);
struct pipe_source *pipe_source_ref(struct pipe_source *s);
void pipe_source_unref(struct pipe_source *s); /* NULL-safe, any thread */
const char *pipe_source_id(const struct pipe_source *s);

/* No more callbacks for this stream after this returns.  Any thread. */
void pipe_source_close(struct pipe_source *s);

/* Pipeline thread only. */
void pipe_source_start(struct pipe_source *s);
void pipe_source_stop(struct pipe_source *s); /* retire the pipeline for good */
void pipe_source_tick(struct pipe_source *s, int64_t now_mono_ns);

/* Any thread. */
void pipe_source_stats(struct pipe_source *s, struct pipe_stream_stats *out);

#endif
