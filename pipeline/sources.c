/*
 * sources.c — the set of streams: the list, the pipeline thread (one GLib
 * main loop for the bus watches and the health timer of every pipeline) and
 * the reaper thread (pipelines going to NULL state).
 *
 * The public functions are called from the daemon's loop thread and never
 * wait for GStreamer: they edit the list under a short lock and queue the
 * rest to the pipeline thread with g_main_context_invoke.  Tearing a pipeline
 * down can block (rtspsrc talking to a dead server, a v4l2 driver); the
 * reaper does it so that the pipeline thread keeps serving the other streams.
 * The reaper queue holds at most one pipeline per stream restart in
 * progress, bounded by the backoff delays.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "h264dec.h"
#include "handoff.h"
#include "log.h"
#include "source-internal.h"

#define TOPIC "pipeline"
#define TICK_MS 50

struct pipe_sources {
	struct pipe_env env; /* first: retire() finds the set from it */
	pthread_mutex_t lock; /* the list */
	GPtrArray *list;     /* struct pipe_source *, one reference each */
	GMainLoop *loop;
	GSource *tick;
	GThread *loop_thread;
	GAsyncQueue *reap_q;
	GThread *reaper;
};

static char reaper_stop; /* the sentinel that ends the reaper */

static gpointer reaper_main(gpointer data)
{
	struct pipe_sources *set = data;
	for (;;) {
		gpointer p = g_async_queue_pop(set->reap_q);
		if (p == &reaper_stop)
			break;
		DET_HANDOFF_ACQUIRE(p);
		gst_element_set_state(GST_ELEMENT(p), GST_STATE_NULL);
		gst_object_unref(p); /* frees the run, which unrefs its source */
	}
	return NULL;
}

static void retire(struct pipe_env *env, GstElement *pipeline)
{
	struct pipe_sources *set = (struct pipe_sources *)env;
	DET_HANDOFF_RELEASE(pipeline);
	g_async_queue_push(set->reap_q, pipeline);
}

static gpointer loop_main(gpointer data)
{
	struct pipe_sources *set = data;
	g_main_context_push_thread_default(set->env.ctx);
	g_main_loop_run(set->loop);
	g_main_context_pop_thread_default(set->env.ctx);
	return NULL;
}

/* Copies the list with a reference on each source. */
static GPtrArray *list_copy(struct pipe_sources *set)
{
	pthread_mutex_lock(&set->lock);
	GPtrArray *a = g_ptr_array_new_full(set->list->len, (GDestroyNotify)pipe_source_unref);
	for (guint i = 0; i < set->list->len; i++)
		g_ptr_array_add(a, pipe_source_ref(g_ptr_array_index(set->list, i)));
	pthread_mutex_unlock(&set->lock);
	return a;
}

static gboolean tick_cb(gpointer data)
{
	struct pipe_sources *set = data;
	GPtrArray *a = list_copy(set);
	int64_t now = det_mono_ns();
	for (guint i = 0; i < a->len; i++)
		pipe_source_tick(g_ptr_array_index(a, i), now);
	g_ptr_array_unref(a);
	return G_SOURCE_CONTINUE;
}

int pipe_sources_create(int model_w, int model_h, const struct pipe_callbacks *cb,
			struct pipe_sources **out)
{
	*out = NULL;
	if (model_w <= 0 || model_h <= 0 || model_w > 16384 || model_h > 16384)
		return -EINVAL;
	if (!gst_is_initialized())
		gst_init(NULL, NULL);
	pipe_h264dec_register();
	struct pipe_sources *set = calloc(1, sizeof(*set));
	if (!set)
		return -ENOMEM;
	set->env.model_w = model_w;
	set->env.model_h = model_h;
	if (cb)
		set->env.cb = *cb;
	set->env.retire = retire;
	set->env.ctx = g_main_context_new();
	pthread_mutex_init(&set->lock, NULL);
	set->list = g_ptr_array_new_with_free_func((GDestroyNotify)pipe_source_unref);
	set->loop = g_main_loop_new(set->env.ctx, FALSE);
	set->reap_q = g_async_queue_new();
	set->tick = g_timeout_source_new(TICK_MS);
	g_source_set_callback(set->tick, tick_cb, set, NULL);
	g_source_attach(set->tick, set->env.ctx);

	GError *err = NULL;
	set->reaper = g_thread_try_new("detd-reaper", reaper_main, set, &err);
	if (!set->reaper)
		goto fail;
	set->loop_thread = g_thread_try_new("detd-pipeline", loop_main, set, &err);
	if (!set->loop_thread)
		goto fail;
	*out = set;
	return 0;
fail:
	log_error(TOPIC, "cannot start a thread: %s", err ? err->message : "?");
	g_clear_error(&err);
	pipe_sources_destroy(set);
	return -EAGAIN;
}

struct stop_all {
	struct pipe_sources *set;
	GPtrArray *sources;
};

static gboolean stop_all_and_quit_cb(gpointer data)
{
	struct stop_all *sa = data;
	DET_HANDOFF_ACQUIRE(sa);
	for (guint i = 0; i < sa->sources->len; i++)
		pipe_source_stop(g_ptr_array_index(sa->sources, i));
	g_main_loop_quit(sa->set->loop);
	return G_SOURCE_REMOVE;
}

void pipe_sources_destroy(struct pipe_sources *set)
{
	if (!set)
		return;
	struct stop_all sa = { set, NULL };
	pthread_mutex_lock(&set->lock);
	sa.sources = set->list;
	set->list = g_ptr_array_new_with_free_func((GDestroyNotify)pipe_source_unref);
	pthread_mutex_unlock(&set->lock);
	for (guint i = 0; i < sa.sources->len; i++)
		pipe_source_close(g_ptr_array_index(sa.sources, i));

	if (set->loop_thread) {
		/* Sources leave in the order they were added, after everything
		 * queued to the pipeline thread before. */
		DET_HANDOFF_RELEASE(&sa);
		g_main_context_invoke(set->env.ctx, stop_all_and_quit_cb, &sa);
		g_thread_join(set->loop_thread);
	} else {
		for (guint i = 0; i < sa.sources->len; i++)
			pipe_source_stop(g_ptr_array_index(sa.sources, i));
	}
	if (set->reaper) {
		g_async_queue_push(set->reap_q, &reaper_stop);
		g_thread_join(set->reaper);
	}
	g_ptr_array_unref(sa.sources);
	g_ptr_array_unref(set->list);
	g_source_destroy(set->tick);
	g_source_unref(set->tick);
	g_main_loop_unref(set->loop);
	/* Frees sources still queued (with their references), now that no
	 * streaming thread can queue more. */
	g_main_context_unref(set->env.ctx);
	g_async_queue_unref(set->reap_q);
	pthread_mutex_destroy(&set->lock);
	free(set);
	/* GStreamer's task pool parks finished streaming threads in GLib's
	 * pool of unused threads; let them go rather than linger for 15 s. */
	g_thread_pool_stop_unused_threads();
}

static bool valid_id(const char *id)
{
	if (!id || !*id || strlen(id) >= DET_STREAM_ID_MAX)
		return false;
	for (const char *p = id; *p; p++)
		if (!g_ascii_isalnum(*p) && *p != '_' && *p != '.' && *p != '-')
			return false;
	return true;
}

static bool nonempty(const char *s)
{
	return s && *s;
}

static int validate(const struct cfg_stream *c)
{
	if (!valid_id(c->id))
		return -EINVAL;
	switch (c->kind) {
	case CFG_SRC_URI:
		return nonempty(c->uri) ? 0 : -EINVAL;
	case CFG_SRC_V4L2:
		return nonempty(c->device) ? 0 : -EINVAL;
	case CFG_SRC_GST:
		return nonempty(c->pipeline) ? 0 : -EINVAL;
	case CFG_SRC_TEST:
		return 0;
	}
	return -EINVAL;
}

/* Objects queued to the pipeline thread come with a hand-off mark for TSan
 * (common/handoff.h): GLib's queue synchronises them with a GMutex. */
static gboolean start_cb(gpointer data)
{
	DET_HANDOFF_ACQUIRE(data);
	pipe_source_start(data);
	return G_SOURCE_REMOVE;
}

static gboolean stop_cb(gpointer data)
{
	DET_HANDOFF_ACQUIRE(data);
	pipe_source_stop(data);
	return G_SOURCE_REMOVE;
}

static void unref_notify(gpointer data)
{
	pipe_source_unref(data);
}

static gint find_locked(struct pipe_sources *set, const char *id)
{
	for (guint i = 0; i < set->list->len; i++)
		if (strcmp(pipe_source_id(g_ptr_array_index(set->list, i)), id) == 0)
			return (gint)i;
	return -1;
}

int pipe_sources_add(struct pipe_sources *set, const struct cfg_stream *cfg)
{
	int rc = validate(cfg);
	if (rc < 0 || cfg->fps < 0)
		return -EINVAL;
	struct pipe_source *s = pipe_source_new(&set->env, cfg);
	if (!s)
		return -ENOMEM;
	pthread_mutex_lock(&set->lock);
	if (find_locked(set, cfg->id) >= 0) {
		pthread_mutex_unlock(&set->lock);
		pipe_source_unref(s);
		return -EEXIST;
	}
	g_ptr_array_add(set->list, pipe_source_ref(s));
	pthread_mutex_unlock(&set->lock);
	DET_HANDOFF_RELEASE(s);
	if (cfg->enabled)
		g_main_context_invoke_full(set->env.ctx, G_PRIORITY_DEFAULT, start_cb, s,
					   unref_notify);
	else
		pipe_source_unref(s);
	return 0;
}

int pipe_sources_remove(struct pipe_sources *set, const char *id)
{
	if (!id)
		return -ENOENT;
	pthread_mutex_lock(&set->lock);
	gint i = find_locked(set, id);
	struct pipe_source *s = i >= 0 ? g_ptr_array_steal_index(set->list, (guint)i) : NULL;
	pthread_mutex_unlock(&set->lock);
	if (!s)
		return -ENOENT;
	pipe_source_close(s);
	/* Hands the list's reference to the pipeline thread. */
	DET_HANDOFF_RELEASE(s);
	g_main_context_invoke_full(set->env.ctx, G_PRIORITY_DEFAULT, stop_cb, s, unref_notify);
	return 0;
}

size_t pipe_sources_count(struct pipe_sources *set)
{
	pthread_mutex_lock(&set->lock);
	size_t n = set->list->len;
	pthread_mutex_unlock(&set->lock);
	return n;
}

int pipe_sources_stats(struct pipe_sources *set, const char *id, struct pipe_stream_stats *out)
{
	struct pipe_source *s = NULL;
	pthread_mutex_lock(&set->lock);
	gint i = id ? find_locked(set, id) : -1;
	if (i >= 0)
		s = pipe_source_ref(g_ptr_array_index(set->list, (guint)i));
	pthread_mutex_unlock(&set->lock);
	if (!s)
		return -ENOENT;
	pipe_source_stats(s, out);
	pipe_source_unref(s);
	return 0;
}

int pipe_sources_snapshot(struct pipe_sources *set, struct pipe_stream_stats **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	GPtrArray *a = list_copy(set);
	struct pipe_stream_stats *st = calloc(a->len ? a->len : 1, sizeof(*st));
	if (!st) {
		g_ptr_array_unref(a);
		return -ENOMEM;
	}
	for (guint i = 0; i < a->len; i++)
		pipe_source_stats(g_ptr_array_index(a, i), &st[i]);
	*n = a->len;
	*out = st;
	g_ptr_array_unref(a);
	return 0;
}
