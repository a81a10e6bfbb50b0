/*
 * source.c — one stream: its GStreamer pipeline, its health state machine
 * and its counters.
 *
 * The pipeline is
 *
 *   <source part> → videoscale → videoconvert → capsfilter(RGB, W×H) → appsink
 *
 * where the source part is uridecodebin (file/rtsp/http; rtspsrc is tuned in
 * "source-setup"), v4l2src [→ capsfilter] → decodebin, a gst-launch fragment,
 * or videotestsrc.  Scaling happens before colour conversion so that the
 * conversion works on model-sized pictures.  Rate limiting is timestamp
 * decimation in a probe on videoscale's sink pad: dropped frames are never
 * scaled.  The appsink is bounded (max-buffers 2, drop) and its sample is
 * copied into a det_frame at once, so GStreamer's buffers go back to the
 * decoder's pool immediately.
 *
 * Pacing: the appsink syncs on the clock (sync=true) for every kind of
 * source.  A file is therefore delivered at its natural rate, like a camera
 * would deliver it; decoding a file as fast as possible would only make the
 * batcher (newest frame per stream wins) drop most of it.  For live sources
 * sync costs only the configured latency.
 *
 * Threads: pipe_source_start/stop/tick and the bus watch run on the pipeline
 * thread (sources.c); the probes and the appsink callback on GStreamer
 * streaming threads; pipe_source_stats/close on any thread.  Each build of
 * the pipeline is a struct pipe_run that lives exactly as long as its
 * GstPipeline object, so streaming-thread callbacks of a pipeline that is
 * being torn down by the reaper still see valid memory; they check that
 * their run is still the current one before delivering anything.
 */
#include "source-internal.h"

#include <errno.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gst/app/gstappsink.h>
#include <gst/video/video.h>

#include "handoff.h"
#include "picture.h"
#include "log.h"

#define TOPIC "pipeline"

#define DEFAULT_STALL_S 10.0
#define DEFAULT_BACKOFF_INITIAL_S 1.0
#define DEFAULT_BACKOFF_MAX_S 30.0
#define APPSINK_MAX_BUFFERS 2
#define FPS_WINDOW_NS 1000000000LL

struct pipe_run {
	struct pipe_source *src; /* holds a reference */
	GstElement *pipeline;    /* not a reference: the run lives inside it */
	GstElement *sink;
	GstElement *head;        /* videoscale: where the source part links to */
	GSource *bus_watch;      /* pipeline thread */

	/* Streaming thread of this run only (the chain after the decoder has
	 * no queue, so probes and the appsink callback share one thread). */
	bool have_next;
	int64_t next_t, last_t;
	GstCaps *sink_caps; /* last caps seen at the appsink, a reference */
	GstVideoInfo sink_info;
	/* The decoded picture of the frame now on its way to the appsink (the
	 * head probe sets it, the appsink callback takes it): original size,
	 * unconverted, for snapshots of exactly the frame the engine saw. */
	GstBuffer *orig_buf;
	GstVideoInfo orig_info;
	bool orig_info_ok;
	gint linked;        /* atomic: the video pad of the source part is linked */
	char last_warning[128]; /* pipeline thread: explains a later EOS */
	bool loop_seeking;      /* pipeline thread: a loop seek was sent … */
	uint64_t loop_seek_delivered; /* … when this many frames were delivered */
};

struct pipe_source {
	atomic_int refs;
	struct pipe_env *env;
	struct cfg_stream cfg; /* deep copy, read-only */
	char id[DET_STREAM_ID_MAX];

	/* Pipeline thread only. */
	struct pipe_run *run;
	int64_t state_since_ns;
	int64_t backoff_until_ns;
	unsigned backoff_attempt;
	bool stopped;
	uint64_t fps_mark_frames;
	int64_t fps_mark_ns;

	pthread_mutex_t lock; /* everything below, short sections only */
	enum pipe_state state;
	struct pipe_run *cur; /* == run; read by streaming threads */
	bool is_live;
	bool run_got_frame;
	uint32_t gen;
	uint64_t decoded, delivered, sink_in, pulled, reconnects;
	uint64_t dropped[PIPE_DROP__COUNT];
	double fps, backoff_s;
	int64_t last_frame_ns;
	int orig_w, orig_h;
	struct det_mapping map;
	char last_error[PIPE_ERROR_MAX];
	int64_t last_error_wall_ns;

	/* Held around on_frame/on_state so that close() is a barrier: after it,
	 * no callback runs.  Lock order: deliver_lock before lock. */
	pthread_mutex_t deliver_lock;
	bool closing;
	uint64_t seq;
};

static const char *const state_names[] = {
	[PIPE_STATE_STARTING] = "starting", [PIPE_STATE_LIVE] = "live",
	[PIPE_STATE_STALLED] = "stalled",   [PIPE_STATE_BACKOFF] = "backoff",
	[PIPE_STATE_RECONNECTING] = "reconnecting", [PIPE_STATE_ENDED] = "ended",
	[PIPE_STATE_DISABLED] = "disabled",
};

const char *pipe_state_name(enum pipe_state st)
{
	if ((unsigned)st >= sizeof(state_names) / sizeof(state_names[0]))
		return "unknown";
	return state_names[st];
}

static const char *const drop_names[PIPE_DROP__COUNT] = {
	[PIPE_DROP_RATE] = "rate_limit", [PIPE_DROP_APPSINK] = "appsink_full",
	[PIPE_DROP_ALLOC] = "no_memory",  [PIPE_DROP_MAP] = "bad_buffer",
	[PIPE_DROP_STOPPING] = "stopping",
};

const char *pipe_drop_reason_name(enum pipe_drop_reason r)
{
	if ((unsigned)r >= PIPE_DROP__COUNT)
		return "unknown";
	return drop_names[r];
}

void pipe_compute_mapping(enum cfg_aspect aspect, int orig_w, int orig_h, int par_n, int par_d,
			  int model_w, int model_h, struct det_mapping *out)
{
	memset(out, 0, sizeof(*out));
	out->scale_x = out->scale_y = 1.0;
	if (orig_w <= 0 || orig_h <= 0 || model_w <= 0 || model_h <= 0)
		return;
	if (aspect != CFG_ASPECT_LETTERBOX) {
		out->scale_x = (double)model_w / orig_w;
		out->scale_y = (double)model_h / orig_h;
		return;
	}
	if (par_n <= 0 || par_d <= 0)
		par_n = par_d = 1;
	/* Display aspect n/d of the picture; the output has square pixels.
	 * Same integer arithmetic as videoscale's add-borders. */
	gint n, d;
	if (!gst_util_fraction_multiply(orig_w, orig_h, par_n, par_d, &n, &d)) {
		n = orig_w;
		d = orig_h;
	}
	int cw = model_w, ch = model_h;
	int to_h = (int)gst_util_uint64_scale_int((guint64)model_w, d, n);
	if (to_h <= model_h) {
		ch = to_h;
	} else {
		cw = (int)gst_util_uint64_scale_int((guint64)model_h, n, d);
	}
	out->pad_x = (double)((model_w - cw) / 2);
	out->pad_y = (double)((model_h - ch) / 2);
	out->scale_x = (double)cw / orig_w;
	out->scale_y = (double)ch / orig_h;
}

/* ---- lifetime ---------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
	return s ? g_strdup(s) : NULL;
}

struct pipe_source *pipe_source_new(struct pipe_env *env, const struct cfg_stream *cfg)
{
	struct pipe_source *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	atomic_init(&s->refs, 1);
	s->env = env;
	s->cfg = *cfg;
	s->cfg.id = g_strdup(cfg->id);
	s->cfg.uri = dup_or_null(cfg->uri);
	s->cfg.device = dup_or_null(cfg->device);
	s->cfg.caps = dup_or_null(cfg->caps);
	s->cfg.pipeline = dup_or_null(cfg->pipeline);
	s->cfg.pattern = dup_or_null(cfg->pattern);
	if (s->cfg.stall_timeout_s <= 0)
		s->cfg.stall_timeout_s = DEFAULT_STALL_S;
	if (s->cfg.backoff_initial_s <= 0)
		s->cfg.backoff_initial_s = DEFAULT_BACKOFF_INITIAL_S;
	if (s->cfg.backoff_max_s <= 0)
		s->cfg.backoff_max_s = DEFAULT_BACKOFF_MAX_S;
	if (s->cfg.backoff_max_s < s->cfg.backoff_initial_s)
		s->cfg.backoff_max_s = s->cfg.backoff_initial_s;
	g_strlcpy(s->id, cfg->id, sizeof(s->id));
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->deliver_lock, NULL);
	s->state = cfg->enabled ? PIPE_STATE_STARTING : PIPE_STATE_DISABLED;
	s->last_frame_ns = -1;
	s->map.scale_x = s->map.scale_y = 1.0;
	return s;
}

struct pipe_source *pipe_source_ref(struct pipe_source *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

void pipe_source_unref(struct pipe_source *s)
{
	if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	g_free(s->cfg.id);
	g_free(s->cfg.uri);
	g_free(s->cfg.device);
	g_free(s->cfg.caps);
	g_free(s->cfg.pipeline);
	g_free(s->cfg.pattern);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->deliver_lock);
	free(s);
}

const char *pipe_source_id(const struct pipe_source *s)
{
	return s->id;
}

void pipe_source_close(struct pipe_source *s)
{
	pthread_mutex_lock(&s->deliver_lock);
	s->closing = true;
	pthread_mutex_unlock(&s->deliver_lock);
}

static void run_free(gpointer data)
{
	struct pipe_run *run = data;
	DET_HANDOFF_ACQUIRE(run); /* the streaming threads have stopped */
	if (run->sink_caps)
		gst_caps_unref(run->sink_caps);
	gst_buffer_replace(&run->orig_buf, NULL);
	pipe_source_unref(run->src);
	g_free(run);
}

/* ---- state machine (pipeline thread) ----------------------------------- */

static void record_error(struct pipe_source *s, const char *msg)
{
	pthread_mutex_lock(&s->lock);
	g_strlcpy(s->last_error, msg, sizeof(s->last_error));
	s->last_error_wall_ns = det_wall_ns();
	pthread_mutex_unlock(&s->lock);
}

static void set_state(struct pipe_source *s, enum pipe_state st, const char *why)
{
	pthread_mutex_lock(&s->lock);
	enum pipe_state old = s->state;
	s->state = st;
	pthread_mutex_unlock(&s->lock);
	s->state_since_ns = det_mono_ns();
	if (old == st)
		return;
	if (st == PIPE_STATE_BACKOFF || st == PIPE_STATE_STALLED)
		log_warn(TOPIC, "stream '%s': %s → %s: %s", s->id, pipe_state_name(old),
			 pipe_state_name(st), why ? why : "");
	else
		log_info(TOPIC, "stream '%s': %s → %s", s->id, pipe_state_name(old),
			 pipe_state_name(st));
	pthread_mutex_lock(&s->deliver_lock);
	if (!s->closing && s->env->cb.on_state)
		s->env->cb.on_state(s->id, old, st, why ? why : "", s->env->cb.ud);
	pthread_mutex_unlock(&s->deliver_lock);
}

/* Detach the current pipeline and hand it to the reaper. */
static void stop_run(struct pipe_source *s)
{
	struct pipe_run *run = s->run;
	if (!run)
		return;
	s->run = NULL;
	pthread_mutex_lock(&s->lock);
	s->cur = NULL;
	pthread_mutex_unlock(&s->lock);
	if (run->bus_watch) {
		g_source_destroy(run->bus_watch);
		g_source_unref(run->bus_watch);
		run->bus_watch = NULL;
	}
	/* The run is freed with its pipeline, in the reaper. */
	s->env->retire(s->env, run->pipeline);
}

static double next_backoff(struct pipe_source *s)
{
	double base = s->cfg.backoff_initial_s * ldexp(1.0, (int)MIN(s->backoff_attempt, 30u));
	if (base > s->cfg.backoff_max_s)
		base = s->cfg.backoff_max_s;
	s->backoff_attempt++;
	/* ±20 % jitter so that cameras behind one switch do not reconnect in
	 * lockstep, kept within the configured bounds. */
	double d = base * (0.8 + 0.4 * g_random_double());
	if (d < s->cfg.backoff_initial_s)
		d = s->cfg.backoff_initial_s;
	if (d > s->cfg.backoff_max_s)
		d = s->cfg.backoff_max_s;
	return d;
}

/* The stream failed: tear it down and wait before rebuilding it. */
static void fail(struct pipe_source *s, const char *why)
{
	record_error(s, why);
	pthread_mutex_lock(&s->lock);
	enum pipe_state st = s->state;
	pthread_mutex_unlock(&s->lock);
	if (st == PIPE_STATE_LIVE)
		set_state(s, PIPE_STATE_STALLED, why);
	stop_run(s);
	double d = next_backoff(s);
	pthread_mutex_lock(&s->lock);
	s->backoff_s = d;
	pthread_mutex_unlock(&s->lock);
	s->backoff_until_ns = det_mono_ns() + (int64_t)(d * 1e9);
	set_state(s, PIPE_STATE_BACKOFF, why);
}

static void check_live(struct pipe_source *s)
{
	pthread_mutex_lock(&s->lock);
	bool got = s->run_got_frame && s->cur;
	enum pipe_state st = s->state;
	pthread_mutex_unlock(&s->lock);
	if (got && (st == PIPE_STATE_STARTING || st == PIPE_STATE_RECONNECTING)) {
		/* Data flows, so the latency query now tells a live source (whose
		 * EOS is a failure) from a file (whose EOS is its end).  The state
		 * change's NO_PREROLL is not reliable when going to PLAYING at once.
		 * Asked upstream of the chain: a sink with sync=true calls itself live. */
		gboolean live = FALSE;
		if (s->run) {
			GstQuery *q = gst_query_new_latency();
			GstPad *pad = gst_element_get_static_pad(s->run->head, "sink");
			if (gst_pad_peer_query(pad, q))
				gst_query_parse_latency(q, &live, NULL, NULL);
			gst_object_unref(pad);
			gst_query_unref(q);
		}
		if (live) {
			pthread_mutex_lock(&s->lock);
			s->is_live = true;
			pthread_mutex_unlock(&s->lock);
		}
		s->backoff_attempt = 0;
		set_state(s, PIPE_STATE_LIVE, NULL);
	}
}

static gboolean check_live_cb(gpointer data)
{
	struct pipe_source *s = data;
	DET_HANDOFF_ACQUIRE(s);
	if (!s->stopped)
		check_live(s);
	return G_SOURCE_REMOVE;
}

static void unref_notify(gpointer data)
{
	pipe_source_unref(data);
}

/* ---- streaming-thread callbacks ---------------------------------------- */

static void count_drop(struct pipe_source *s, enum pipe_drop_reason r)
{
	pthread_mutex_lock(&s->lock);
	s->dropped[r]++;
	pthread_mutex_unlock(&s->lock);
}

static int64_t buffer_time(GstBuffer *buf)
{
	GstClockTime t = GST_BUFFER_PTS(buf);
	if (!GST_CLOCK_TIME_IS_VALID(t))
		t = GST_BUFFER_DTS(buf);
	return GST_CLOCK_TIME_IS_VALID(t) ? (int64_t)t : det_mono_ns();
}

/* On videoscale's sink pad: count decoded frames, decimate to fps, learn the
 * original size from the caps. */
static GstPadProbeReturn head_probe_run(GstPadProbeInfo *info, struct pipe_run *run)
{
	struct pipe_source *s = run->src;

	if (info->type & GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM) {
		GstEvent *ev = GST_PAD_PROBE_INFO_EVENT(info);
		if (GST_EVENT_TYPE(ev) == GST_EVENT_CAPS) {
			GstCaps *caps;
			GstVideoInfo vi;
			gst_event_parse_caps(ev, &caps);
			if (gst_video_info_from_caps(&vi, caps)) {
				struct det_mapping m;
				run->orig_info = vi;
				run->orig_info_ok = true;
				pipe_compute_mapping(s->cfg.aspect, GST_VIDEO_INFO_WIDTH(&vi),
						     GST_VIDEO_INFO_HEIGHT(&vi),
						     GST_VIDEO_INFO_PAR_N(&vi),
						     GST_VIDEO_INFO_PAR_D(&vi), s->env->model_w,
						     s->env->model_h, &m);
				pthread_mutex_lock(&s->lock);
				if (s->cur == run) {
					s->orig_w = GST_VIDEO_INFO_WIDTH(&vi);
					s->orig_h = GST_VIDEO_INFO_HEIGHT(&vi);
					s->map = m;
				}
				pthread_mutex_unlock(&s->lock);
			}
		} else if (GST_EVENT_TYPE(ev) == GST_EVENT_FLUSH_STOP ||
			   GST_EVENT_TYPE(ev) == GST_EVENT_STREAM_START) {
			run->have_next = false; /* a loop or a new stream: restart the rate grid */
		}
		return GST_PAD_PROBE_OK;
	}

	GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER(info);
	bool drop = false;
	if (s->cfg.fps > 0 && buf) {
		int64_t period = (int64_t)(1e9 / s->cfg.fps);
		int64_t t = buffer_time(buf);
		if (run->have_next && t < run->last_t)
			run->have_next = false; /* timestamps went back */
		if (!run->have_next) {
			run->have_next = true;
			run->next_t = t + period;
		} else if (t >= run->next_t - period / 4) {
			/* A quarter period of tolerance absorbs timestamp jitter
			 * of live sources at a rate equal to the source's. */
			run->next_t += period;
			if (run->next_t <= t)
				run->next_t = t + period;
		} else {
			drop = true;
		}
		run->last_t = t;
	}
	pthread_mutex_lock(&s->lock);
	s->decoded++;
	if (drop)
		s->dropped[PIPE_DROP_RATE]++;
	pthread_mutex_unlock(&s->lock);
	if (!drop && buf && det_picture_demanded())
		gst_buffer_replace(&run->orig_buf, buf);
	return drop ? GST_PAD_PROBE_DROP : GST_PAD_PROBE_OK;
}

/* The run's fields these callbacks keep (rate grid, original picture) are
 * used by one streaming thread at a time, in data-flow order; the hand-off
 * marks say so to TSan (common/handoff.h). */
static GstPadProbeReturn head_probe(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
	(void)pad;
	DET_HANDOFF_ACQUIRE(data);
	GstPadProbeReturn r = head_probe_run(info, data);
	DET_HANDOFF_RELEASE(data);
	return r;
}

/* On the appsink's sink pad: what reaches the appsink, to see its drops. */
static GstPadProbeReturn sink_probe(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
	struct pipe_run *run = data;
	DET_HANDOFF_ACQUIRE(run);
	pthread_mutex_lock(&run->src->lock);
	run->src->sink_in++;
	pthread_mutex_unlock(&run->src->lock);
	return GST_PAD_PROBE_OK;
}

static bool copy_frame(struct pipe_run *run, GstSample *sample, struct det_frame *f)
{
	GstCaps *caps = gst_sample_get_caps(sample);
	GstBuffer *buf = gst_sample_get_buffer(sample);
	if (!caps || !buf)
		return false;
	if (caps != run->sink_caps) {
		if (!gst_video_info_from_caps(&run->sink_info, caps))
			return false;
		gst_caps_replace(&run->sink_caps, caps);
	}
	const GstVideoInfo *vi = &run->sink_info;
	if (GST_VIDEO_INFO_FORMAT(vi) != GST_VIDEO_FORMAT_RGB ||
	    GST_VIDEO_INFO_WIDTH(vi) != f->width || GST_VIDEO_INFO_HEIGHT(vi) != f->height)
		return false;
	GstVideoFrame vf;
	if (!gst_video_frame_map(&vf, (GstVideoInfo *)vi, buf, GST_MAP_READ))
		return false;
	const uint8_t *src = GST_VIDEO_FRAME_PLANE_DATA(&vf, 0);
	size_t sstride = (size_t)GST_VIDEO_FRAME_PLANE_STRIDE(&vf, 0);
	for (int y = 0; y < f->height; y++)
		memcpy(f->data + (size_t)y * f->stride, src + (size_t)y * sstride, f->stride);
	gst_video_frame_unmap(&vf);
	GstClockTime pts = GST_BUFFER_PTS(buf);
	f->pts_ns = GST_CLOCK_TIME_IS_VALID(pts) ? (int64_t)pts : -1;
	return true;
}

static void new_sample_run(GstAppSink *sink, struct pipe_run *run)
{
	struct pipe_source *s = run->src;
	GstSample *sample = gst_app_sink_pull_sample(sink);
	if (!sample)
		return; /* flushing */
	int64_t mono = det_mono_ns(), wall = det_wall_ns();

	pthread_mutex_lock(&s->lock);
	s->pulled++;
	pthread_mutex_unlock(&s->lock);

	struct det_frame *f = det_frame_new(s->env->model_w, s->env->model_h, 3);
	if (!f) {
		gst_sample_unref(sample);
		count_drop(s, PIPE_DROP_ALLOC);
		return;
	}
	bool ok = copy_frame(run, sample, f);
	/* The picture it came from, if the probe saw the same timestamp (it is
	 * the same thread, so it is this frame's unless an element in between
	 * made up frames).  V4L2 pools are small: copy rather than hold. */
	GstBuffer *sbuf = gst_sample_get_buffer(sample);
	if (ok && run->orig_buf && run->orig_info_ok && sbuf && det_picture_demanded() &&
	    GST_BUFFER_PTS(run->orig_buf) == GST_BUFFER_PTS(sbuf))
		f->orig = pipe_picture_new(run->orig_buf, &run->orig_info,
					   s->cfg.kind == CFG_SRC_V4L2);
	gst_buffer_replace(&run->orig_buf, NULL);
	gst_sample_unref(sample); /* the GStreamer buffer goes back now */
	if (!ok) {
		det_frame_unref(f);
		count_drop(s, PIPE_DROP_MAP);
		return;
	}
	f->capture_mono_ns = mono;
	f->capture_wall_ns = wall;
	g_strlcpy(f->stream_id, s->id, sizeof(f->stream_id));

	bool first = false;
	pthread_mutex_lock(&s->deliver_lock);
	pthread_mutex_lock(&s->lock);
	bool current = !s->closing && s->cur == run;
	if (current) {
		f->stream_gen = s->gen;
		f->orig_width = s->orig_w;
		f->orig_height = s->orig_h;
		f->map = s->map;
		s->delivered++;
		s->last_frame_ns = mono;
		first = !s->run_got_frame;
		s->run_got_frame = true;
	} else {
		s->dropped[PIPE_DROP_STOPPING]++;
	}
	pthread_mutex_unlock(&s->lock);
	if (current) {
		f->seq = ++s->seq;
		f->enqueue_mono_ns = det_mono_ns();
		if (s->env->cb.on_frame)
			s->env->cb.on_frame(f, s->env->cb.ud); /* takes the reference */
		else
			det_frame_unref(f);
		f = NULL;
	}
	pthread_mutex_unlock(&s->deliver_lock);
	det_frame_unref(f);

	if (first) { /* tell the pipeline thread now rather than at its next tick */
		DET_HANDOFF_RELEASE(s);
		g_main_context_invoke_full(s->env->ctx, G_PRIORITY_DEFAULT, check_live_cb,
					   pipe_source_ref(s), unref_notify);
	}
}

static GstFlowReturn on_new_sample(GstAppSink *sink, gpointer data)
{
	DET_HANDOFF_ACQUIRE(data);
	new_sample_run(sink, data);
	DET_HANDOFF_RELEASE(data);
	return GST_FLOW_OK;
}

/* ---- building ---------------------------------------------------------- */

static bool caps_are_video(GstPad *pad)
{
	GstCaps *caps = gst_pad_get_current_caps(pad);
	if (!caps)
		caps = gst_pad_query_caps(pad, NULL);
	bool video = false;
	if (caps && gst_caps_get_size(caps) > 0) {
		const char *name = gst_structure_get_name(gst_caps_get_structure(caps, 0));
		video = g_str_has_prefix(name, "video/");
	}
	if (caps)
		gst_caps_unref(caps);
	return video;
}

/* A dynamic pad of uridecodebin/decodebin: the first video pad feeds the
 * chain; anything else (audio, a second video) goes to a fakesink so that
 * it never stalls the demuxer with not-linked. */
static void on_pad_added(GstElement *el, GstPad *pad, gpointer data)
{
	struct pipe_run *run = data;
	DET_HANDOFF_ACQUIRE(run);
	if (GST_PAD_DIRECTION(pad) != GST_PAD_SRC)
		return;
	if (caps_are_video(pad) && g_atomic_int_compare_and_exchange(&run->linked, 0, 1)) {
		GstPad *sinkpad = gst_element_get_static_pad(run->head, "sink");
		GstPadLinkReturn r = gst_pad_link(pad, sinkpad);
		gst_object_unref(sinkpad);
		if (r == GST_PAD_LINK_OK)
			return;
		log_warn(TOPIC, "stream '%s': cannot link video pad: %s", run->src->id,
			 gst_pad_link_get_name(r));
	}
	GstElement *fs = gst_element_factory_make("fakesink", NULL);
	if (!fs)
		return;
	g_object_set(fs, "sync", FALSE, "async", FALSE, NULL);
	gst_bin_add(GST_BIN(run->pipeline), fs);
	GstPad *sinkpad = gst_element_get_static_pad(fs, "sink");
	gst_pad_link(pad, sinkpad);
	gst_object_unref(sinkpad);
	gst_element_sync_state_with_parent(fs);
}

/* Every element the decodebins create (pipeline thread or a streaming
 * thread).  libav decoders default to one frame thread per core: each thread
 * holds its own decoding context and pictures in flight and adds a frame of
 * latency, ~7.5 MB per 960×540 H.264 stream here.  The streams already decode
 * in parallel with each other and with inference, so one thread per decoder
 * costs no throughput once there is more than one stream. */
static void on_deep_element_added(GstBin *bin, GstBin *sub, GstElement *el, gpointer data)
{
	(void)bin;
	(void)sub;
	(void)data;
	GstElementFactory *fac = gst_element_get_factory(el);
	if (!fac || !g_str_has_prefix(GST_OBJECT_NAME(fac), "avdec_"))
		return;
	if (g_object_class_find_property(G_OBJECT_GET_CLASS(el), "max-threads"))
		g_object_set(el, "max-threads", 1, NULL);
}

/* uridecodebin made its source element: tune rtspsrc. */
static void on_source_setup(GstElement *uridecodebin, GstElement *src, gpointer data)
{
	struct pipe_run *run = data;
	DET_HANDOFF_ACQUIRE(run);
	const struct cfg_stream *c = &run->src->cfg;
	GstElementFactory *fac = gst_element_get_factory(src);
	if (!fac || strcmp(GST_OBJECT_NAME(fac), "rtspsrc") != 0)
		return;
	if (c->rtsp_transport == CFG_RTSP_TCP)
		gst_util_set_object_arg(G_OBJECT(src), "protocols", "tcp");
	else if (c->rtsp_transport == CFG_RTSP_UDP)
		gst_util_set_object_arg(G_OBJECT(src), "protocols", "udp+udp-mcast");
	if (c->latency_ms > 0)
		g_object_set(src, "latency", (guint)c->latency_ms, NULL);
	/* A dead server must not hold a connection attempt longer than the
	 * stall timeout (rtspsrc's default is 20 s). */
	g_object_set(src, "tcp-timeout", (guint64)(c->stall_timeout_s * 1e6), NULL);
}

static GstElement *make(const char *factory, char *err, size_t errlen)
{
	GstElement *e = gst_element_factory_make(factory, NULL);
	if (!e)
		snprintf(err, errlen, "GStreamer element '%s' is not installed", factory);
	return e;
}

static bool set_enum_nick(GstElement *e, const char *prop, const char *nick, char *err,
			  size_t errlen)
{
	GParamSpec *ps = g_object_class_find_property(G_OBJECT_GET_CLASS(e), prop);
	if (!ps || !G_IS_PARAM_SPEC_ENUM(ps))
		return false;
	GEnumClass *ec = G_PARAM_SPEC_ENUM(ps)->enum_class;
	GEnumValue *v = g_enum_get_value_by_nick(ec, nick);
	if (!v)
		v = g_enum_get_value_by_name(ec, nick);
	if (!v) {
		snprintf(err, errlen, "unknown %s '%s'", prop, nick);
		return false;
	}
	g_object_set(e, prop, v->value, NULL);
	return true;
}

/*
 * Adds the source part to the pipeline and links it to run->head (now, or
 * from pad-added).  Returns false with err filled.
 */
static bool build_source_part(struct pipe_run *run, char *err, size_t errlen)
{
	const struct cfg_stream *c = &run->src->cfg;
	GstBin *bin = GST_BIN(run->pipeline);
	GstElement *src = NULL, *last = NULL;

	switch (c->kind) {
	case CFG_SRC_URI:
		if (!(src = make("uridecodebin", err, errlen)))
			return false;
		g_object_set(src, "uri", c->uri, NULL);
		g_signal_connect(src, "source-setup", G_CALLBACK(on_source_setup), run);
		g_signal_connect(src, "pad-added", G_CALLBACK(on_pad_added), run);
		gst_bin_add(bin, src);
		return true;
	case CFG_SRC_V4L2: {
		if (!(src = make("v4l2src", err, errlen)))
			return false;
		g_object_set(src, "device", c->device, NULL);
		gst_bin_add(bin, src);
		last = src;
		if (c->caps && *c->caps) {
			GstCaps *caps = gst_caps_from_string(c->caps);
			if (!caps) {
				snprintf(err, errlen, "invalid caps '%s'", c->caps);
				return false;
			}
			GstElement *cf = make("capsfilter", err, errlen);
			if (!cf) {
				gst_caps_unref(caps);
				return false;
			}
			g_object_set(cf, "caps", caps, NULL);
			gst_caps_unref(caps);
			gst_bin_add(bin, cf);
			if (!gst_element_link(last, cf)) {
				snprintf(err, errlen, "cannot link v4l2src to caps '%s'", c->caps);
				return false;
			}
			last = cf;
		}
		/* decodebin passes raw video through and decodes MJPEG/H.264
		 * cameras. */
		GstElement *dec = make("decodebin", err, errlen);
		if (!dec)
			return false;
		g_signal_connect(dec, "pad-added", G_CALLBACK(on_pad_added), run);
		gst_bin_add(bin, dec);
		if (!gst_element_link(last, dec)) {
			snprintf(err, errlen, "cannot link v4l2src to decodebin");
			return false;
		}
		return true;
	}
	case CFG_SRC_GST: {
		GError *gerr = NULL;
		src = gst_parse_bin_from_description(c->pipeline, TRUE, &gerr);
		if (!src) {
			snprintf(err, errlen, "invalid pipeline fragment: %s",
				 gerr ? gerr->message : "parse error");
			g_clear_error(&gerr);
			return false;
		}
		if (gerr) { /* a recoverable parse warning: keep the bin */
			log_warn(TOPIC, "stream '%s': pipeline fragment: %s", run->src->id,
				 gerr->message);
			g_clear_error(&gerr);
		}
		gst_bin_add(bin, src);
		if (!gst_element_link(src, run->head)) {
			snprintf(err, errlen,
				 "pipeline fragment does not end in a raw video source pad");
			return false;
		}
		g_atomic_int_set(&run->linked, 1);
		return true;
	}
	case CFG_SRC_TEST:
		if (!(src = make("videotestsrc", err, errlen)))
			return false;
		g_object_set(src, "is-live", TRUE, NULL);
		if (c->pattern && *c->pattern && !set_enum_nick(src, "pattern", c->pattern, err, errlen)) {
			gst_object_unref(gst_object_ref_sink(src));
			return false;
		}
		gst_bin_add(bin, src);
		if (!gst_element_link(src, run->head)) {
			snprintf(err, errlen, "cannot link videotestsrc");
			return false;
		}
		g_atomic_int_set(&run->linked, 1);
		return true;
	}
	snprintf(err, errlen, "unknown source kind %d", (int)c->kind);
	return false;
}

static struct pipe_run *build(struct pipe_source *s, char *err, size_t errlen)
{
	struct pipe_run *run = g_new0(struct pipe_run, 1);
	char name[DET_STREAM_ID_MAX + 16];
	snprintf(name, sizeof(name), "detd-%s", s->id);
	run->pipeline = gst_pipeline_new(name);
	run->src = pipe_source_ref(s);
	/* From here the run is owned by the pipeline and freed with it. */
	g_object_set_data_full(G_OBJECT(run->pipeline), "detd-run", run, run_free);

	GstElement *scale = make("videoscale", err, errlen);
	GstElement *conv = make("videoconvert", err, errlen);
	GstElement *cf = make("capsfilter", err, errlen);
	GstElement *sink = make("appsink", err, errlen);
	if (!scale || !conv || !cf || !sink) {
		GstElement *all[] = { scale, conv, cf, sink };
		for (size_t i = 0; i < 4; i++)
			if (all[i])
				gst_object_unref(gst_object_ref_sink(all[i]));
		goto fail;
	}
	gst_bin_add_many(GST_BIN(run->pipeline), scale, conv, cf, sink, NULL);
	g_signal_connect(run->pipeline, "deep-element-added", G_CALLBACK(on_deep_element_added),
			 NULL);
	run->head = scale;
	run->sink = sink;

	bool letterbox = s->cfg.aspect == CFG_ASPECT_LETTERBOX;
	g_object_set(scale, "add-borders", letterbox ? TRUE : FALSE, NULL);
	GstCaps *caps = gst_caps_new_simple("video/x-raw", "format", G_TYPE_STRING, "RGB", "width",
					    G_TYPE_INT, s->env->model_w, "height", G_TYPE_INT,
					    s->env->model_h, NULL);
	if (letterbox) /* square output pixels make videoscale add borders */
		gst_caps_set_simple(caps, "pixel-aspect-ratio", GST_TYPE_FRACTION, 1, 1, NULL);
	g_object_set(cf, "caps", caps, NULL);
	gst_caps_unref(caps);

	/* enable-last-sample=false: the sink must not keep a buffer alive. */
	g_object_set(sink, "max-buffers", (guint)APPSINK_MAX_BUFFERS, "drop", TRUE, "sync", TRUE,
		     "qos", FALSE, "enable-last-sample", FALSE, "emit-signals", FALSE, NULL);
	GstAppSinkCallbacks cbs = { 0 };
	cbs.new_sample = on_new_sample;
	gst_app_sink_set_callbacks(GST_APP_SINK(sink), &cbs, run, NULL);

	if (!gst_element_link_many(scale, conv, cf, sink, NULL)) {
		snprintf(err, errlen, "cannot link the conversion chain");
		goto fail;
	}
	GstPad *pad = gst_element_get_static_pad(scale, "sink");
	gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM,
			  head_probe, run, NULL);
	gst_object_unref(pad);
	pad = gst_element_get_static_pad(sink, "sink");
	gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, sink_probe, run, NULL);
	gst_object_unref(pad);

	if (!build_source_part(run, err, errlen))
		goto fail;
	return run;
fail:
	gst_object_unref(run->pipeline); /* frees run */
	return NULL;
}

/* "message: cause (element)" from an error message.  The cause is the last
 * line of the debug text when it has one ("No such file ..."). */
static void error_text(GstMessage *msg, char *out, size_t outlen)
{
	GError *gerr = NULL;
	gchar *dbg = NULL;
	gst_message_parse_error(msg, &gerr, &dbg);
	const char *detail = NULL;
	if (dbg) {
		const char *nl = strrchr(dbg, '\n');
		if (nl && nl[1])
			detail = nl + 1;
	}
	char head[160];
	g_strlcpy(head, gerr ? gerr->message : "error", sizeof(head));
	size_t n = strlen(head);
	if (detail && n > 0 && head[n - 1] == '.') /* "Resource not found.: …" reads badly */
		head[n - 1] = 0;
	snprintf(out, outlen, "%s%s%s (%s)", head, detail ? ": " : "", detail ? detail : "",
		 GST_OBJECT_NAME(GST_MESSAGE_SRC(msg)));
	log_debug(TOPIC, "error debug: %s", dbg ? dbg : "");
	g_clear_error(&gerr);
	g_free(dbg);
}

static gboolean bus_cb(GstBus *bus, GstMessage *msg, gpointer data);

static void start_run(struct pipe_source *s)
{
	char err[PIPE_ERROR_MAX] = "";
	struct pipe_run *run = build(s, err, sizeof(err));
	if (!run) {
		fail(s, err);
		return;
	}
	s->run = run;
	pthread_mutex_lock(&s->lock);
	s->cur = run;
	s->run_got_frame = false;
	pthread_mutex_unlock(&s->lock);

	GstBus *bus = gst_pipeline_get_bus(GST_PIPELINE(run->pipeline));
	run->bus_watch = gst_bus_create_watch(bus);
	g_source_set_callback(run->bus_watch, (GSourceFunc)(void (*)(void))bus_cb, run, NULL);
	g_source_attach(run->bus_watch, s->env->ctx);

	DET_HANDOFF_RELEASE(run); /* to the streaming threads */
	GstStateChangeReturn r = gst_element_set_state(run->pipeline, GST_STATE_PLAYING);
	if (r == GST_STATE_CHANGE_FAILURE) {
		GstMessage *m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
		if (m) {
			error_text(m, err, sizeof(err));
			gst_message_unref(m);
		} else {
			snprintf(err, sizeof(err), "pipeline failed to start");
		}
		gst_object_unref(bus);
		fail(s, err);
		return;
	}
	gst_object_unref(bus);
	bool live = r == GST_STATE_CHANGE_NO_PREROLL || s->cfg.kind == CFG_SRC_V4L2 ||
		    s->cfg.kind == CFG_SRC_TEST ||
		    (s->cfg.kind == CFG_SRC_URI && g_str_has_prefix(s->cfg.uri, "rtsp"));
	pthread_mutex_lock(&s->lock);
	s->is_live = live;
	pthread_mutex_unlock(&s->lock);
}

static void bump_gen(struct pipe_source *s)
{
	pthread_mutex_lock(&s->lock);
	s->gen++;
	pthread_mutex_unlock(&s->lock);
}

static void on_eos(struct pipe_source *s)
{
	pthread_mutex_lock(&s->lock);
	bool live = s->is_live;
	pthread_mutex_unlock(&s->lock);
	check_live(s); /* a short file may end before the first tick */
	if (live) {
		/* rtspsrc, for one, warns about the lost connection and then
		 * sends EOS: the warning is the better explanation. */
		char why[PIPE_ERROR_MAX];
		const char *w = s->run ? s->run->last_warning : "";
		snprintf(why, sizeof(why), "end of stream from a live source%s%s%s", *w ? " (" : "",
			 w, *w ? ")" : "");
		fail(s, why);
		return;
	}
	if (!s->cfg.loop) {
		stop_run(s);
		set_state(s, PIPE_STATE_ENDED, NULL);
		return;
	}
	/* Loop: a discontinuity for recurrent models, so a new generation. */
	bump_gen(s);
	pthread_mutex_lock(&s->lock);
	s->run->loop_seek_delivered = s->delivered;
	pthread_mutex_unlock(&s->lock);
	s->run->loop_seeking = true;
	if (gst_element_seek_simple(s->run->pipeline, GST_FORMAT_TIME,
				    GST_SEEK_FLAG_FLUSH | GST_SEEK_FLAG_KEY_UNIT, 0))
		return;
	log_info(TOPIC, "stream '%s': cannot seek, rebuilding to loop", s->id);
	stop_run(s);
	start_run(s);
}

/* An error right after a loop seek, before any frame of the next round. */
static bool loop_seek_failed(struct pipe_source *s, struct pipe_run *run)
{
	if (!run->loop_seeking)
		return false;
	pthread_mutex_lock(&s->lock);
	bool none_since = s->delivered == run->loop_seek_delivered && !s->is_live;
	pthread_mutex_unlock(&s->lock);
	return none_since;
}

static gboolean bus_cb(GstBus *bus, GstMessage *msg, gpointer data)
{
	struct pipe_run *run = data;
	struct pipe_source *s = run->src;
	if (s->run != run || s->stopped)
		return G_SOURCE_CONTINUE; /* cannot happen: the watch dies with the run */
	char text[PIPE_ERROR_MAX];
	switch (GST_MESSAGE_TYPE(msg)) {
	case GST_MESSAGE_ERROR:
		error_text(msg, text, sizeof(text));
		if (loop_seek_failed(s, run)) {
			/* An HTTP server without Range support, for one, accepts
			 * the seek and fails after: loop by rebuilding instead. */
			log_info(TOPIC, "stream '%s': cannot seek to loop (%s), rebuilding", s->id,
				 text);
			stop_run(s);
			start_run(s);
			break;
		}
		fail(s, text);
		break;
	case GST_MESSAGE_EOS:
		on_eos(s);
		break;
	case GST_MESSAGE_WARNING: {
		GError *gerr = NULL;
		gst_message_parse_warning(msg, &gerr, NULL);
		log_warn(TOPIC, "stream '%s': %s", s->id, gerr ? gerr->message : "warning");
		g_strlcpy(run->last_warning, gerr ? gerr->message : "", sizeof(run->last_warning));
		g_clear_error(&gerr);
		break;
	}
	default:
		break;
	}
	return G_SOURCE_CONTINUE;
}

/* ---- pipeline-thread entry points -------------------------------------- */

void pipe_source_start(struct pipe_source *s)
{
	if (s->stopped || s->run || !s->cfg.enabled)
		return;
	pthread_mutex_lock(&s->lock);
	s->gen++;
	pthread_mutex_unlock(&s->lock);
	s->fps_mark_ns = det_mono_ns();
	set_state(s, PIPE_STATE_STARTING, NULL);
	start_run(s);
}

void pipe_source_stop(struct pipe_source *s)
{
	s->stopped = true;
	stop_run(s);
}

void pipe_source_tick(struct pipe_source *s, int64_t now)
{
	if (s->stopped)
		return;
	pthread_mutex_lock(&s->lock);
	enum pipe_state st = s->state;
	int64_t last = s->last_frame_ns;
	uint64_t delivered = s->delivered;
	pthread_mutex_unlock(&s->lock);
	int64_t stall_ns = (int64_t)(s->cfg.stall_timeout_s * 1e9);
	char why[96];

	switch (st) {
	case PIPE_STATE_LIVE:
		if (s->run && now - MAX(last, s->state_since_ns) > stall_ns) {
			snprintf(why, sizeof(why), "no frame for %.1f s", s->cfg.stall_timeout_s);
			fail(s, why);
		}
		break;
	case PIPE_STATE_STARTING:
	case PIPE_STATE_RECONNECTING:
		check_live(s);
		pthread_mutex_lock(&s->lock);
		st = s->state;
		pthread_mutex_unlock(&s->lock);
		if (st != PIPE_STATE_LIVE && s->run && now - s->state_since_ns > stall_ns) {
			snprintf(why, sizeof(why), "no frame within %.1f s of starting",
				 s->cfg.stall_timeout_s);
			fail(s, why);
		}
		break;
	case PIPE_STATE_BACKOFF:
		if (now >= s->backoff_until_ns) {
			pthread_mutex_lock(&s->lock);
			s->reconnects++;
			s->gen++;
			pthread_mutex_unlock(&s->lock);
			set_state(s, PIPE_STATE_RECONNECTING, NULL);
			start_run(s);
		}
		break;
	default:
		break;
	}

	if (now - s->fps_mark_ns >= FPS_WINDOW_NS) {
		double fps = (double)(delivered - s->fps_mark_frames) * 1e9 /
			     (double)(now - s->fps_mark_ns);
		pthread_mutex_lock(&s->lock);
		s->fps = fps;
		pthread_mutex_unlock(&s->lock);
		s->fps_mark_frames = delivered;
		s->fps_mark_ns = now;
	}
}

void pipe_source_stats(struct pipe_source *s, struct pipe_stream_stats *out)
{
	memset(out, 0, sizeof(*out));
	int64_t now = det_mono_ns();
	g_strlcpy(out->id, s->id, sizeof(out->id));
	pthread_mutex_lock(&s->lock);
	out->state = s->state;
	out->is_live = s->is_live;
	out->stream_gen = s->gen;
	out->frames_decoded = s->decoded;
	out->frames_delivered = s->delivered;
	memcpy(out->dropped, s->dropped, sizeof(out->dropped));
	/* The appsink drops silently; what entered it and was never pulled
	 * was dropped, except the one frame that may be in its render call. */
	if (s->sink_in > s->pulled + 1)
		out->dropped[PIPE_DROP_APPSINK] += s->sink_in - s->pulled - 1;
	out->fps = s->fps;
	out->last_frame_age_ms = s->last_frame_ns < 0 ? -1 : (now - s->last_frame_ns) / 1000000;
	out->reconnects = s->reconnects;
	out->orig_width = s->orig_w;
	out->orig_height = s->orig_h;
	out->backoff_s = s->backoff_s;
	g_strlcpy(out->last_error, s->last_error, sizeof(out->last_error));
	out->last_error_wall_ns = s->last_error_wall_ns;
	pthread_mutex_unlock(&s->lock);
}
