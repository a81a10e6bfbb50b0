/*
 * test_pipeline.c — pipeline/ with real media: the sample video, videotestsrc
 * and a real RTSP server (tools/test-rtsp-server, path in
 * DETD_TEST_RTSP_SERVER).  Each test runs in its own process (Check fork
 * mode) with generous timeouts; waits poll the recorded callbacks, nothing
 * asserts on speed.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gst/gst.h>
#include <json-c/json.h>

#include "pipeline.h"
#include "testutil.h"

#define MODEL_W 256
#define MODEL_H 256
#define MAX_STREAMS 16
#define MAX_TRANS 512

struct stream_rec {
	char id[DET_STREAM_ID_MAX];
	uint64_t frames;
	uint64_t last_seq;
	bool seq_ok;
	bool size_ok;
	uint32_t first_gen, last_gen;
	struct det_frame *last; /* a reference */
};

struct trans {
	char id[DET_STREAM_ID_MAX];
	enum pipe_state from, to;
	char err[PIPE_ERROR_MAX];
};

static struct rec {
	pthread_mutex_t mu;
	struct stream_rec s[MAX_STREAMS];
	int ns;
	struct trans t[MAX_TRANS];
	int nt;
} R = { .mu = PTHREAD_MUTEX_INITIALIZER };

static struct stream_rec *slot(const char *id)
{
	for (int i = 0; i < R.ns; i++)
		if (!strcmp(R.s[i].id, id))
			return &R.s[i];
	if (R.ns == MAX_STREAMS)
		return NULL;
	struct stream_rec *r = &R.s[R.ns++];
	memset(r, 0, sizeof(*r));
	snprintf(r->id, sizeof(r->id), "%s", id);
	r->seq_ok = r->size_ok = true;
	return r;
}

static void on_frame(struct det_frame *f, void *ud)
{
	(void)ud;
	pthread_mutex_lock(&R.mu);
	struct stream_rec *r = slot(f->stream_id);
	if (r) {
		if (f->seq != r->last_seq + 1)
			r->seq_ok = false;
		if (f->width != MODEL_W || f->height != MODEL_H || f->channels != 3 ||
		    f->size != (size_t)MODEL_W * MODEL_H * 3)
			r->size_ok = false;
		if (r->frames == 0)
			r->first_gen = f->stream_gen;
		r->last_gen = f->stream_gen;
		r->last_seq = f->seq;
		r->frames++;
		det_frame_unref(r->last);
		r->last = f;
		f = NULL;
	}
	pthread_mutex_unlock(&R.mu);
	det_frame_unref(f);
}

static void on_state(const char *id, enum pipe_state from, enum pipe_state to, const char *err,
		     void *ud)
{
	(void)ud;
	pthread_mutex_lock(&R.mu);
	if (R.nt < MAX_TRANS) {
		struct trans *t = &R.t[R.nt++];
		snprintf(t->id, sizeof(t->id), "%s", id);
		t->from = from;
		t->to = to;
		snprintf(t->err, sizeof(t->err), "%s", err);
	}
	pthread_mutex_unlock(&R.mu);
}

static const struct pipe_callbacks CBS = { on_frame, on_state, NULL };

static uint64_t frames_of(const char *id)
{
	pthread_mutex_lock(&R.mu);
	uint64_t n = 0;
	for (int i = 0; i < R.ns; i++)
		if (!strcmp(R.s[i].id, id))
			n = R.s[i].frames;
	pthread_mutex_unlock(&R.mu);
	return n;
}

static struct stream_rec rec_of(const char *id)
{
	struct stream_rec out = { 0 };
	pthread_mutex_lock(&R.mu);
	for (int i = 0; i < R.ns; i++)
		if (!strcmp(R.s[i].id, id))
			out = R.s[i];
	out.last = NULL;
	pthread_mutex_unlock(&R.mu);
	return out;
}

/* Index of the first transition of id into `to` at or after index `from`, or -1. */
static int find_trans(const char *id, enum pipe_state to, int from)
{
	pthread_mutex_lock(&R.mu);
	int found = -1;
	for (int i = from; i < R.nt; i++)
		if (!strcmp(R.t[i].id, id) && R.t[i].to == to) {
			found = i;
			break;
		}
	pthread_mutex_unlock(&R.mu);
	return found;
}

static int n_trans(void)
{
	pthread_mutex_lock(&R.mu);
	int n = R.nt;
	pthread_mutex_unlock(&R.mu);
	return n;
}

static void sleep_ms(int ms)
{
	usleep((useconds_t)ms * 1000);
}

static int wait_trans(const char *id, enum pipe_state to, int from, int timeout_ms)
{
	for (int t = 0; t < timeout_ms; t += 20) {
		int i = find_trans(id, to, from);
		if (i >= 0)
			return i;
		sleep_ms(20);
	}
	return find_trans(id, to, from);
}

static bool wait_frames(const char *id, uint64_t n, int timeout_ms)
{
	for (int t = 0; t < timeout_ms; t += 20) {
		if (frames_of(id) >= n)
			return true;
		sleep_ms(20);
	}
	return frames_of(id) >= n;
}

static char *sample_uri(void)
{
	const char *d = getenv("DETD_SHARED_DATA");
	ck_assert_msg(d != NULL, "DETD_SHARED_DATA not set");
	char path[4096];
	snprintf(path, sizeof(path), "%s/traffic/traffic_frames.mp4", d);
	char *abs = realpath(path, NULL);
	ck_assert_msg(abs != NULL, "no sample video at %s", path);
	char *uri = gst_filename_to_uri(abs, NULL);
	free(abs);
	return uri;
}

static struct cfg_stream stream_cfg(const char *id, enum cfg_source_kind kind)
{
	struct cfg_stream c = { 0 };
	c.id = (char *)id;
	c.kind = kind;
	c.enabled = true;
	c.stall_timeout_s = 10.0;
	c.backoff_initial_s = 0.2;
	c.backoff_max_s = 1.0;
	return c;
}

static struct pipe_sources *create(void)
{
	struct pipe_sources *set = NULL;
	ck_assert_int_eq(pipe_sources_create(MODEL_W, MODEL_H, &CBS, &set), 0);
	ck_assert_ptr_nonnull(set);
	return set;
}

/* ---- file ------------------------------------------------------------- */

START_TEST(file_delivers_20_frames)
{
	char *uri = sample_uri();
	struct pipe_sources *set = create();
	struct cfg_stream c = stream_cfg("cam1", CFG_SRC_URI);
	c.uri = uri;
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	ck_assert_int_eq(pipe_sources_add(set, &c), -EEXIST);

	ck_assert_int_ge(wait_trans("cam1", PIPE_STATE_ENDED, 0, 20000), 0);
	struct stream_rec r = rec_of("cam1");
	ck_assert_uint_eq(r.frames, 20);
	ck_assert(r.seq_ok);
	ck_assert(r.size_ok);
	ck_assert_uint_eq(r.last_seq, 20);
	ck_assert(find_trans("cam1", PIPE_STATE_LIVE, 0) >= 0);
	ck_assert(find_trans("cam1", PIPE_STATE_LIVE, 0) < find_trans("cam1", PIPE_STATE_ENDED, 0));

	pthread_mutex_lock(&R.mu);
	struct det_frame *f = slot("cam1")->last;
	ck_assert_int_eq(f->orig_width, 960);
	ck_assert_int_eq(f->orig_height, 540);
	ck_assert_str_eq(f->stream_id, "cam1");
	ck_assert(f->pts_ns >= 0);
	ck_assert(f->capture_wall_ns > 0 && f->capture_mono_ns > 0);
	ck_assert_double_eq_tol(f->map.scale_x, 256.0 / 960.0, 1e-9);
	ck_assert_double_eq_tol(f->map.scale_y, 256.0 / 540.0, 1e-9);
	ck_assert_double_eq(f->map.pad_x, 0);
	ck_assert_double_eq(f->map.pad_y, 0);
	pthread_mutex_unlock(&R.mu);

	struct pipe_stream_stats st;
	ck_assert_int_eq(pipe_sources_stats(set, "cam1", &st), 0);
	ck_assert_int_eq(st.state, PIPE_STATE_ENDED);
	ck_assert_uint_eq(st.frames_delivered, 20);
	ck_assert_uint_eq(st.frames_decoded, 20);
	ck_assert_int_eq(st.orig_width, 960);
	ck_assert_int_eq(st.orig_height, 540);
	ck_assert_uint_eq(st.reconnects, 0);
	ck_assert_str_eq(st.last_error, "");
	for (int i = 0; i < PIPE_DROP__COUNT; i++)
		ck_assert_uint_eq(st.dropped[i], 0);
	ck_assert_int_eq(pipe_sources_stats(set, "nope", &st), -ENOENT);

	struct json_object *j = pipe_stats_to_json(&st);
	ck_assert_ptr_nonnull(j);
	struct json_object *v;
	ck_assert(json_object_object_get_ex(j, "state", &v));
	ck_assert_str_eq(json_object_get_string(v), "ended");
	ck_assert(json_object_object_get_ex(j, "frames_delivered", &v));
	ck_assert_int_eq(json_object_get_int64(v), 20);
	json_object_put(j);

	pipe_sources_destroy(set);
	g_free(uri);
}
END_TEST

START_TEST(file_loops)
{
	char *uri = sample_uri();
	struct pipe_sources *set = create();
	struct cfg_stream c = stream_cfg("loop", CFG_SRC_URI);
	c.uri = uri;
	c.loop = true;
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	ck_assert(wait_frames("loop", 50, 20000));
	struct stream_rec r = rec_of("loop");
	ck_assert(r.seq_ok);
	ck_assert(r.size_ok);
	ck_assert_uint_gt(r.last_gen, r.first_gen); /* each loop is a new generation */
	ck_assert_int_lt(find_trans("loop", PIPE_STATE_ENDED, 0), 0);
	struct pipe_stream_stats st;
	ck_assert_int_eq(pipe_sources_stats(set, "loop", &st), 0);
	ck_assert_int_eq(st.state, PIPE_STATE_LIVE);
	ck_assert_uint_eq(st.reconnects, 0);
	ck_assert(!st.is_live); /* a file: its EOS loops, it is not a lost source */
	ck_assert_str_eq(st.last_error, "");
	pipe_sources_destroy(set);
	g_free(uri);
}
END_TEST

START_TEST(file_rate_limited)
{
	char *uri = sample_uri();
	struct pipe_sources *set = create();
	struct cfg_stream c = stream_cfg("slow", CFG_SRC_URI);
	c.uri = uri;
	c.fps = 10; /* from 30: one frame in three, by timestamp */
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	ck_assert_int_ge(wait_trans("slow", PIPE_STATE_ENDED, 0, 20000), 0);
	struct pipe_stream_stats st;
	ck_assert_int_eq(pipe_sources_stats(set, "slow", &st), 0);
	ck_assert_uint_eq(st.frames_decoded, 20);
	ck_assert_uint_eq(st.frames_delivered, 7); /* t0, t0+100 ms, … t0+600 ms */
	ck_assert_uint_eq(st.dropped[PIPE_DROP_RATE], 13);
	ck_assert_uint_eq(rec_of("slow").frames, 7);
	ck_assert(rec_of("slow").seq_ok);
	pipe_sources_destroy(set);
	g_free(uri);
}
END_TEST

static double row_mean(const struct det_frame *f, int y)
{
	double s = 0;
	for (size_t i = 0; i < f->stride; i++)
		s += f->data[(size_t)y * f->stride + i];
	return s / (double)f->stride;
}

START_TEST(file_letterbox)
{
	char *uri = sample_uri();
	struct pipe_sources *set = create();
	struct cfg_stream c = stream_cfg("lb", CFG_SRC_URI);
	c.uri = uri;
	c.aspect = CFG_ASPECT_LETTERBOX;
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	ck_assert_int_ge(wait_trans("lb", PIPE_STATE_ENDED, 0, 20000), 0);
	ck_assert_uint_eq(frames_of("lb"), 20);

	pthread_mutex_lock(&R.mu);
	const struct det_frame *f = slot("lb")->last;
	/* 960×540 into 256×256: 256×144 centred, 56 rows of border each side. */
	ck_assert_double_eq_tol(f->map.scale_x, 256.0 / 960.0, 1e-9);
	ck_assert_double_eq_tol(f->map.scale_y, 144.0 / 540.0, 1e-9);
	ck_assert_double_eq(f->map.pad_x, 0);
	ck_assert_double_eq(f->map.pad_y, 56);
	/* The picture really is there: black borders, image between. */
	for (int y = 0; y < 56; y++) {
		ck_assert_msg(row_mean(f, y) < 8, "row %d not border: %f", y, row_mean(f, y));
		ck_assert_msg(row_mean(f, 255 - y) < 8, "row %d not border", 255 - y);
	}
	double inside = 0;
	for (int y = 58; y < 198; y++)
		inside += row_mean(f, y);
	ck_assert_msg(inside / 140 > 30, "picture too dark: %f", inside / 140);
	ck_assert_msg(row_mean(f, 57) > 8 && row_mean(f, 198) > 8, "picture edge rows black");

	/* A box over the whole model picture maps back to the original frame. */
	struct det_object o = { .box_norm = { 56.0f / 256, 0, 200.0f / 256, 1 } };
	det_object_map_box(&o, &f->map, 256, 256, f->orig_width, f->orig_height);
	ck_assert_float_eq_tol(o.box_px[0], 0, 0.01);
	ck_assert_float_eq_tol(o.box_px[1], 0, 0.01);
	ck_assert_float_eq_tol(o.box_px[2], 960, 0.01);
	ck_assert_float_eq_tol(o.box_px[3], 540, 0.01);
	pthread_mutex_unlock(&R.mu);
	pipe_sources_destroy(set);
	g_free(uri);
}
END_TEST

START_TEST(mapping_math)
{
	struct det_mapping m;
	pipe_compute_mapping(CFG_ASPECT_LETTERBOX, 320, 240, 1, 1, 256, 256, &m);
	ck_assert_double_eq(m.pad_x, 0);
	ck_assert_double_eq(m.pad_y, 32);
	ck_assert_double_eq_tol(m.scale_x, 0.8, 1e-12);
	ck_assert_double_eq_tol(m.scale_y, 0.8, 1e-12);
	pipe_compute_mapping(CFG_ASPECT_LETTERBOX, 540, 960, 1, 1, 256, 256, &m); /* portrait */
	ck_assert_double_eq(m.pad_x, 56);
	ck_assert_double_eq(m.pad_y, 0);
	ck_assert_double_eq_tol(m.scale_y, 256.0 / 960, 1e-12);
	pipe_compute_mapping(CFG_ASPECT_LETTERBOX, 720, 576, 16, 15, 300, 300, &m); /* PAL 4:3 */
	ck_assert_double_eq(m.pad_x, 0);
	ck_assert_double_eq(m.pad_y, 37); /* 300×225 content, 75 border rows */
	pipe_compute_mapping(CFG_ASPECT_STRETCH, 1920, 1080, 1, 1, 320, 320, &m);
	ck_assert_double_eq_tol(m.scale_x, 320.0 / 1920, 1e-12);
	ck_assert_double_eq_tol(m.scale_y, 320.0 / 1080, 1e-12);
	ck_assert_str_eq(pipe_state_name(PIPE_STATE_BACKOFF), "backoff");
	ck_assert_str_eq(pipe_state_name((enum pipe_state)99), "unknown");
	ck_assert_str_eq(pipe_drop_reason_name(PIPE_DROP_RATE), "rate_limit");
}
END_TEST

START_TEST(rejects_bad_config)
{
	struct pipe_sources *set = create();
	struct cfg_stream c = stream_cfg("x", CFG_SRC_URI);
	ck_assert_int_eq(pipe_sources_add(set, &c), -EINVAL); /* no uri */
	c = stream_cfg("bad id!", CFG_SRC_TEST);
	ck_assert_int_eq(pipe_sources_add(set, &c), -EINVAL);
	c = stream_cfg("", CFG_SRC_TEST);
	ck_assert_int_eq(pipe_sources_add(set, &c), -EINVAL);
	c = stream_cfg("g", CFG_SRC_GST);
	ck_assert_int_eq(pipe_sources_add(set, &c), -EINVAL);
	c = stream_cfg("off", CFG_SRC_TEST);
	c.enabled = false;
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	struct pipe_stream_stats st;
	ck_assert_int_eq(pipe_sources_stats(set, "off", &st), 0);
	ck_assert_int_eq(st.state, PIPE_STATE_DISABLED);
	ck_assert_int_eq(pipe_sources_remove(set, "nope"), -ENOENT);
	ck_assert_int_eq(pipe_sources_create(0, 10, &CBS, &(struct pipe_sources *){ NULL }),
			 -EINVAL);
	pipe_sources_destroy(set);
	pipe_sources_destroy(NULL);
}
END_TEST

/* ---- other source kinds ------------------------------------------------ */

START_TEST(gst_and_test_kinds)
{
	struct pipe_sources *set = create();
	struct cfg_stream c = stream_cfg("pattern", CFG_SRC_TEST);
	c.pattern = "ball";
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	c = stream_cfg("frag", CFG_SRC_GST);
	c.pipeline = "videotestsrc is-live=true pattern=smpte ! "
		     "capsfilter caps=video/x-raw,width=320,height=240";
	c.aspect = CFG_ASPECT_LETTERBOX;
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	c = stream_cfg("broken", CFG_SRC_GST);
	c.pipeline = "nosuchelement ! videoconvert";
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	c = stream_cfg("badpattern", CFG_SRC_TEST);
	c.pattern = "nosuchpattern";
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);

	c = stream_cfg("cam", CFG_SRC_V4L2); /* no camera here: must fail cleanly */
	c.device = "/dev/video-detd-none";
	c.caps = "video/x-raw,width=640,height=480";
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);

	ck_assert(wait_frames("pattern", 10, 15000));
	ck_assert(wait_frames("frag", 10, 15000));
	ck_assert_int_ge(wait_trans("cam", PIPE_STATE_BACKOFF, 0, 10000), 0);
	ck_assert_int_ge(wait_trans("broken", PIPE_STATE_BACKOFF, 0, 10000), 0);
	ck_assert_int_ge(wait_trans("badpattern", PIPE_STATE_BACKOFF, 0, 10000), 0);

	struct pipe_stream_stats st;
	ck_assert_int_eq(pipe_sources_stats(set, "frag", &st), 0);
	ck_assert_int_eq(st.orig_width, 320);
	ck_assert(st.is_live);
	pthread_mutex_lock(&R.mu);
	ck_assert_double_eq(slot("frag")->last->map.pad_y, 32);
	ck_assert(slot("pattern")->seq_ok && slot("frag")->seq_ok);
	pthread_mutex_unlock(&R.mu);
	ck_assert_int_eq(pipe_sources_stats(set, "broken", &st), 0);
	ck_assert_msg(strstr(st.last_error, "nosuchelement") != NULL, "error: %s", st.last_error);
	ck_assert_int_eq(pipe_sources_stats(set, "cam", &st), 0);
	ck_assert_msg(strstr(st.last_error, "/dev/video-detd-none") != NULL, "error: %s",
		      st.last_error);
	ck_assert_int_eq(pipe_sources_stats(set, "badpattern", &st), 0);
	ck_assert_msg(strstr(st.last_error, "nosuchpattern") != NULL, "error: %s", st.last_error);
	pipe_sources_destroy(set);
}
END_TEST

/* Non-square source pixels into a model size where the rounding shows:
 * 720×576 at PAR 16/15 is 4:3, so 300×225 in 300×300 with 37 rows on top
 * and 38 below — the rows videoscale really blacks out. */
START_TEST(letterbox_non_square_pixels)
{
	struct pipe_sources *set = NULL;
	ck_assert_int_eq(pipe_sources_create(300, 300, &CBS, &set), 0);
	struct cfg_stream c = stream_cfg("pal", CFG_SRC_GST);
	c.pipeline = "videotestsrc is-live=true pattern=white ! capsfilter "
		     "caps=video/x-raw,width=720,height=576,pixel-aspect-ratio=16/15";
	c.aspect = CFG_ASPECT_LETTERBOX;
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	ck_assert(wait_frames("pal", 3, 15000));
	pthread_mutex_lock(&R.mu);
	const struct det_frame *f = slot("pal")->last;
	ck_assert_int_eq(f->width, 300);
	ck_assert_int_eq(f->height, 300);
	ck_assert_double_eq(f->map.pad_x, 0);
	ck_assert_double_eq(f->map.pad_y, 37);
	ck_assert_double_eq_tol(f->map.scale_y, 225.0 / 576, 1e-12);
	ck_assert_msg(row_mean(f, 36) < 8, "row 36: %f", row_mean(f, 36));
	ck_assert_msg(row_mean(f, 37) > 200, "row 37: %f", row_mean(f, 37));
	ck_assert_msg(row_mean(f, 261) > 200, "row 261: %f", row_mean(f, 261));
	ck_assert_msg(row_mean(f, 262) < 8, "row 262: %f", row_mean(f, 262));
	pthread_mutex_unlock(&R.mu);
	pipe_sources_destroy(set);
}
END_TEST

/* ---- failures stay local ----------------------------------------------- */

START_TEST(bad_uri_backs_off_others_deliver)
{
	struct pipe_sources *set = create();
	struct cfg_stream c = stream_cfg("good", CFG_SRC_TEST);
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	c = stream_cfg("missing", CFG_SRC_URI);
	c.uri = "file:///nonexistent/detd/nothing.mp4";
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	c = stream_cfg("noscheme", CFG_SRC_URI);
	c.uri = "nosuchscheme://host/x";
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);

	ck_assert_int_ge(wait_trans("missing", PIPE_STATE_BACKOFF, 0, 10000), 0);
	ck_assert_int_ge(wait_trans("noscheme", PIPE_STATE_BACKOFF, 0, 10000), 0);
	/* Retried with backoff, still failing, while "good" keeps flowing. */
	int rec = wait_trans("missing", PIPE_STATE_RECONNECTING, 0, 10000);
	ck_assert_int_ge(rec, 0);
	ck_assert_int_ge(wait_trans("missing", PIPE_STATE_BACKOFF, rec, 10000), 0);
	uint64_t before = frames_of("good");
	ck_assert(wait_frames("good", before + 15, 10000));
	ck_assert_int_lt(find_trans("missing", PIPE_STATE_LIVE, 0), 0);

	struct pipe_stream_stats st;
	ck_assert_int_eq(pipe_sources_stats(set, "missing", &st), 0);
	ck_assert_msg(strstr(st.last_error, "not found") || strstr(st.last_error, "No such file"),
		      "unclear error: '%s'", st.last_error);
	ck_assert(st.last_error_wall_ns > 0);
	ck_assert_uint_ge(st.reconnects, 1);
	ck_assert(st.backoff_s >= 0.2 && st.backoff_s <= 1.0);
	ck_assert_int_eq(pipe_sources_stats(set, "noscheme", &st), 0);
	ck_assert_msg(strstr(st.last_error, "nosuchscheme") != NULL, "unclear error: '%s'",
		      st.last_error);
	ck_assert_int_eq(pipe_sources_stats(set, "good", &st), 0);
	ck_assert_int_eq(st.state, PIPE_STATE_LIVE);
	ck_assert_uint_eq(st.reconnects, 0);
	pipe_sources_destroy(set);
}
END_TEST

START_TEST(eight_files_at_once)
{
	char *uri = sample_uri();
	struct pipe_sources *set = create();
	char ids[8][16];
	for (int i = 0; i < 8; i++) {
		snprintf(ids[i], sizeof(ids[i]), "file%d", i);
		struct cfg_stream c = stream_cfg(ids[i], CFG_SRC_URI);
		c.uri = uri;
		c.stall_timeout_s = 15; /* eight decoders on a small shared machine */
		ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	}
	ck_assert_uint_eq(pipe_sources_count(set), 8);
	for (int i = 0; i < 8; i++)
		ck_assert_int_ge(wait_trans(ids[i], PIPE_STATE_ENDED, 0, 40000), 0);
	struct pipe_stream_stats *all;
	size_t n;
	ck_assert_int_eq(pipe_sources_snapshot(set, &all, &n), 0);
	ck_assert_uint_eq(n, 8);
	for (int i = 0; i < 8; i++) {
		struct stream_rec r = rec_of(ids[i]);
		ck_assert_msg(r.frames == 20, "%s delivered %llu", ids[i],
			      (unsigned long long)r.frames);
		ck_assert(r.seq_ok && r.size_ok);
		ck_assert_str_eq(all[i].id, ids[i]);
		ck_assert_uint_eq(all[i].frames_delivered, 20);
	}
	free(all);
	pipe_sources_destroy(set);
	g_free(uri);
}
END_TEST

START_TEST(remove_while_others_run)
{
	struct pipe_sources *set = create();
	const char *ids[] = { "a", "b", "c" };
	for (int i = 0; i < 3; i++) {
		struct cfg_stream c = stream_cfg(ids[i], CFG_SRC_TEST);
		ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	}
	for (int i = 0; i < 3; i++)
		ck_assert(wait_frames(ids[i], 5, 15000));
	ck_assert_int_eq(pipe_sources_remove(set, "b"), 0);
	uint64_t b_after = frames_of("b");
	ck_assert_uint_eq(pipe_sources_count(set), 2);
	struct pipe_stream_stats st;
	ck_assert_int_eq(pipe_sources_stats(set, "b", &st), -ENOENT);
	uint64_t a0 = frames_of("a"), c0 = frames_of("c");
	ck_assert(wait_frames("a", a0 + 10, 10000));
	ck_assert(wait_frames("c", c0 + 10, 10000));
	ck_assert_uint_eq(frames_of("b"), b_after); /* nothing after remove returned */

	/* The id is free again. */
	struct cfg_stream c = stream_cfg("b", CFG_SRC_TEST);
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	ck_assert(wait_frames("b", b_after + 5, 15000));
	pipe_sources_destroy(set);
}
END_TEST

/* ---- RTSP -------------------------------------------------------------- */

struct server {
	pid_t pid;
	char url[256];
};

/* The server is built only when gst-rtsp-server is installed: the "rtsp"
 * suite is skipped without it. */
static const char *rtsp_missing(void)
{
	const char *exe = getenv("DETD_TEST_RTSP_SERVER");
	return exe && *exe ? NULL
			   : "DETD_TEST_RTSP_SERVER not set (tools/test-rtsp-server needs "
			     "libgstrtspserver-1.0-dev)";
}

/* Starts argv with stdout on a pipe and reads its first line (10 s at most). */
static bool spawn_line(char *const argv[], pid_t *pid_out, char *line, size_t len)
{
	int fds[2];
	ck_assert_int_eq(pipe(fds), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(fds[1]);
	size_t got = 0;
	line[0] = 0;
	for (int t = 0; t < 100 && !strchr(line, '\n'); t++) {
		struct pollfd p = { fds[0], POLLIN, 0 };
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t r = read(fds[0], line + got, len - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		line[got] = 0;
	}
	close(fds[0]);
	char *nl = strchr(line, '\n');
	if (!nl) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return false;
	}
	*nl = 0;
	*pid_out = pid;
	return true;
}

static bool server_start(struct server *sv, int port)
{
	const char *exe = getenv("DETD_TEST_RTSP_SERVER");
	const char *d = getenv("DETD_SHARED_DATA");
	ck_assert_msg(exe && d, "DETD_TEST_RTSP_SERVER/DETD_SHARED_DATA not set");
	char file[4096], portstr[16];
	snprintf(file, sizeof(file), "%s/traffic/traffic_frames.mp4", d);
	snprintf(portstr, sizeof(portstr), "%d", port);
	char *argv[] = { (char *)exe, file, "--port", portstr, NULL };
	return spawn_line(argv, &sv->pid, sv->url, sizeof(sv->url));
}

static void server_kill(struct server *sv)
{
	if (sv->pid > 0) {
		kill(sv->pid, SIGKILL);
		waitpid(sv->pid, NULL, 0);
		sv->pid = 0;
	}
}

static int url_port(const char *url)
{
	const char *p = strrchr(url, ':');
	return p ? atoi(p + 1) : -1;
}

static void rtsp_reconnect(enum cfg_rtsp_transport tr)
{
	struct server sv;
	ck_assert_msg(server_start(&sv, 0), "test RTSP server did not start");
	int port = url_port(sv.url);
	ck_assert_int_gt(port, 0);

	struct pipe_sources *set = create();
	struct cfg_stream c = stream_cfg("rtsp", CFG_SRC_URI);
	c.uri = sv.url;
	c.rtsp_transport = tr;
	c.latency_ms = 100;
	c.stall_timeout_s = 2.0;
	c.backoff_initial_s = 0.3;
	c.backoff_max_s = 1.0;
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	ck_assert_int_ge(wait_trans("rtsp", PIPE_STATE_LIVE, 0, 20000), 0);
	ck_assert(wait_frames("rtsp", 25, 10000)); /* past one loop of the file */
	struct pipe_stream_stats st;
	ck_assert_int_eq(pipe_sources_stats(set, "rtsp", &st), 0);
	ck_assert_int_eq(st.orig_width, 960);
	ck_assert_int_eq(st.orig_height, 540);
	ck_assert(st.is_live);

	int mark = n_trans();
	server_kill(&sv);
	int stalled = wait_trans("rtsp", PIPE_STATE_STALLED, mark, 15000);
	ck_assert_int_ge(stalled, 0);
	int backoff = wait_trans("rtsp", PIPE_STATE_BACKOFF, stalled, 5000);
	ck_assert_int_ge(backoff, 0);
	ck_assert_int_eq(pipe_sources_stats(set, "rtsp", &st), 0);
	ck_assert_str_ne(st.last_error, "");
	/* Down for a while: reconnect attempts fail and back off again. */
	int retry = wait_trans("rtsp", PIPE_STATE_RECONNECTING, backoff, 10000);
	ck_assert_int_ge(retry, 0);
	ck_assert_int_ge(wait_trans("rtsp", PIPE_STATE_BACKOFF, retry, 15000), 0);

	uint64_t before = frames_of("rtsp");
	ck_assert_msg(server_start(&sv, port), "test RTSP server did not restart on %d", port);
	int mark2 = n_trans();
	ck_assert_int_ge(wait_trans("rtsp", PIPE_STATE_LIVE, mark2, 20000), 0);
	ck_assert(wait_frames("rtsp", before + 10, 10000));
	struct stream_rec r = rec_of("rtsp");
	ck_assert(r.seq_ok && r.size_ok);
	ck_assert_uint_gt(r.last_gen, r.first_gen);
	ck_assert_int_eq(pipe_sources_stats(set, "rtsp", &st), 0);
	ck_assert_int_eq(st.state, PIPE_STATE_LIVE);
	ck_assert_uint_ge(st.reconnects, 2);
	pipe_sources_destroy(set);
	server_kill(&sv);
}

START_TEST(rtsp_tcp_reconnects)
{
	rtsp_reconnect(CFG_RTSP_TCP);
}
END_TEST

/* A server that hangs (SIGSTOP) keeps its connections open and sends
 * nothing: only the stall timer can notice.  The other stream keeps
 * delivering while the hung one is torn down and retried. */
START_TEST(rtsp_hung_server_stalls)
{
	struct server sv;
	ck_assert_msg(server_start(&sv, 0), "test RTSP server did not start");
	struct pipe_sources *set = create();
	struct cfg_stream c = stream_cfg("hung", CFG_SRC_URI);
	c.uri = sv.url;
	c.rtsp_transport = CFG_RTSP_TCP;
	c.latency_ms = 100;
	c.stall_timeout_s = 1.5;
	c.backoff_initial_s = 0.3;
	c.backoff_max_s = 0.6;
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	c = stream_cfg("other", CFG_SRC_TEST);
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	ck_assert_int_ge(wait_trans("hung", PIPE_STATE_LIVE, 0, 20000), 0);
	ck_assert(wait_frames("hung", 10, 10000));

	int mark = n_trans();
	kill(sv.pid, SIGSTOP);
	int stalled = wait_trans("hung", PIPE_STATE_STALLED, mark, 15000);
	ck_assert_int_ge(stalled, 0);
	pthread_mutex_lock(&R.mu);
	ck_assert_msg(strstr(R.t[stalled].err, "no frame for") != NULL, "stalled because: %s",
		      R.t[stalled].err);
	pthread_mutex_unlock(&R.mu);
	ck_assert_int_ge(wait_trans("hung", PIPE_STATE_BACKOFF, stalled, 5000), 0);
	int retry = wait_trans("hung", PIPE_STATE_RECONNECTING, stalled, 10000);
	ck_assert_int_ge(retry, 0);
	uint64_t o = frames_of("other");
	ck_assert(wait_frames("other", o + 20, 10000)); /* unaffected */

	kill(sv.pid, SIGCONT);
	ck_assert_int_ge(wait_trans("hung", PIPE_STATE_LIVE, retry, 30000), 0);
	uint64_t h = frames_of("hung");
	ck_assert(wait_frames("hung", h + 10, 10000));
	ck_assert(rec_of("hung").seq_ok);
	pipe_sources_destroy(set);
	server_kill(&sv);
}
END_TEST

START_TEST(rtsp_udp_goes_live)
{
	struct server sv;
	ck_assert_msg(server_start(&sv, 0), "test RTSP server did not start");
	struct pipe_sources *set = create();
	struct cfg_stream c = stream_cfg("rtsp-udp", CFG_SRC_URI);
	c.uri = sv.url;
	c.rtsp_transport = CFG_RTSP_UDP;
	c.latency_ms = 200;
	c.stall_timeout_s = 5.0;
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	ck_assert_int_ge(wait_trans("rtsp-udp", PIPE_STATE_LIVE, 0, 20000), 0);
	ck_assert(wait_frames("rtsp-udp", 10, 10000));
	pipe_sources_destroy(set);
	server_kill(&sv);
}
END_TEST

/* The shipped multi-camera example through the real loader: every stream is
 * accepted; unreachable cameras (TEST-NET addresses, no /dev/video0) never
 * hold anything up, and destroy does not wait for their connect timeouts. */
START_TEST(example_config_streams)
{
	const char *root = getenv("DETD_SOURCE_ROOT");
	ck_assert_ptr_nonnull(root);
	char path[4096];
	snprintf(path, sizeof(path), "%s/config/examples/rtsp-multicam.json", root);
	struct cfg *cfg = NULL;
	struct cfg_errors errs = { 0 };
	int rc = cfg_load(path, &cfg, &errs);
	if (rc < 0)
		cfg_errors_print(&errs, path, stderr);
	ck_assert_int_eq(rc, 0);
	struct pipe_sources *set = create();
	for (size_t i = 0; i < cfg->n_streams; i++)
		ck_assert_int_eq(pipe_sources_add(set, &cfg->streams[i]), 0);
	struct cfg_stream t = stream_cfg("alive", CFG_SRC_TEST);
	ck_assert_int_eq(pipe_sources_add(set, &t), 0);
	ck_assert(wait_frames("alive", 10, 15000));
	ck_assert_int_ge(wait_trans("usb-cam", PIPE_STATE_BACKOFF, 0, 10000), 0);
	struct pipe_stream_stats st;
	ck_assert_int_eq(pipe_sources_stats(set, "garage", &st), 0);
	ck_assert_int_eq(st.state, PIPE_STATE_DISABLED);
	ck_assert_int_eq(pipe_sources_stats(set, "front-door", &st), 0);
	ck_assert(st.state == PIPE_STATE_STARTING || st.state == PIPE_STATE_BACKOFF ||
		  st.state == PIPE_STATE_RECONNECTING);
	ck_assert_uint_eq(pipe_sources_count(set), cfg->n_streams + 1);
	pipe_sources_destroy(set);
	cfg_free(cfg);
}
END_TEST

/* ---- HTTP --------------------------------------------------------------- */

/* Python's http.server has no Range support: the file plays, and a loop
 * seek fails, so looping has to rebuild the pipeline. */
START_TEST(http_file_plays_and_loops)
{
	const char *d = getenv("DETD_SHARED_DATA");
	char dir[4096], line[256], url[300];
	snprintf(dir, sizeof(dir), "%s/traffic", d);
	const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
	char *argv[] = { (char *)py, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
			 "--directory", dir, NULL };
	pid_t pid;
	ck_assert_msg(spawn_line(argv, &pid, line, sizeof(line)), "python3 http.server did not start");
	int port = 0;
	const char *p = strstr(line, " port ");
	ck_assert_msg(p && (port = atoi(p + 6)) > 0, "unexpected: %s", line);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/traffic_frames.mp4", port);

	struct pipe_sources *set = create();
	struct cfg_stream c = stream_cfg("http", CFG_SRC_URI);
	c.uri = url;
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	c = stream_cfg("http-loop", CFG_SRC_URI);
	c.uri = url;
	c.loop = true;
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	ck_assert_int_ge(wait_trans("http", PIPE_STATE_ENDED, 0, 20000), 0);
	ck_assert_uint_eq(frames_of("http"), 20);
	ck_assert(wait_frames("http-loop", 50, 20000));
	struct stream_rec r = rec_of("http-loop");
	ck_assert(r.seq_ok && r.size_ok);
	ck_assert_uint_gt(r.last_gen, r.first_gen);
	struct pipe_stream_stats st;
	ck_assert_int_eq(pipe_sources_stats(set, "http-loop", &st), 0);
	ck_assert_int_eq(st.state, PIPE_STATE_LIVE);
	ck_assert_uint_eq(st.reconnects, 0); /* looped, never failed */
	ck_assert_int_lt(find_trans("http-loop", PIPE_STATE_BACKOFF, 0), 0);
	pipe_sources_destroy(set);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}
END_TEST

/* ---- teardown ---------------------------------------------------------- */

static int thread_count(void)
{
	DIR *d = opendir("/proc/self/task");
	ck_assert_ptr_nonnull(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void run_mix(int ms)
{
	char *uri = sample_uri();
	struct pipe_sources *set = create();
	struct cfg_stream c = stream_cfg("file", CFG_SRC_URI);
	c.uri = uri;
	c.loop = true;
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	c = stream_cfg("pattern", CFG_SRC_TEST);
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	c = stream_cfg("missing", CFG_SRC_URI);
	c.uri = "file:///nonexistent/detd.mp4";
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	c = stream_cfg("gone", CFG_SRC_TEST);
	ck_assert_int_eq(pipe_sources_add(set, &c), 0);
	ck_assert(wait_frames("file", 5, 15000));
	ck_assert(wait_frames("pattern", 5, 15000));
	ck_assert_int_eq(pipe_sources_remove(set, "gone"), 0);
	sleep_ms(ms);
	pipe_sources_destroy(set);
	g_free(uri);
	/* The frames the recorder keeps hold their decoded pictures (GStreamer
	 * buffers): let them go, as a consumer of the frames would. */
	pthread_mutex_lock(&R.mu);
	for (int i = 0; i < R.ns; i++) {
		det_frame_unref(R.s[i].last);
		R.s[i].last = NULL;
	}
	pthread_mutex_unlock(&R.mu);
}

START_TEST(destroy_joins_every_thread)
{
	gst_init(NULL, NULL);
	/* A first round creates GStreamer's process-wide helpers (the system
	 * clock's thread, …); they are not ours and stay. */
	run_mix(300);
	int base = 0;
	for (int t = 0; t < 100; t++) {
		base = thread_count();
		if (base <= 2)
			break;
		sleep_ms(50);
	}
	run_mix(1000);
	int n = thread_count();
	for (int t = 0; t < 100 && n > base; t++) {
		sleep_ms(50);
		n = thread_count();
	}
	ck_assert_msg(n <= base, "%d threads left, %d before", n, base);
}
END_TEST

static GstTracer *leaks_tracer(void)
{
	GList *l = gst_tracing_get_active_tracers();
	GstTracer *found = NULL;
	for (GList *i = l; i; i = i->next)
		if (!found && !strcmp(G_OBJECT_TYPE_NAME(i->data), "GstLeaksTracer"))
			found = gst_object_ref(i->data);
	g_list_free_full(l, gst_object_unref);
	return found;
}

static GHashTable *entries(const GstStructure *cp, const char *field)
{
	GHashTable *h = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	const GValue *list = gst_structure_get_value(cp, field);
	guint n = list ? gst_value_list_get_size(list) : 0;
	for (guint i = 0; i < n; i++) {
		const GstStructure *o = gst_value_get_structure(gst_value_list_get_value(list, i));
		g_hash_table_add(h, g_strdup_printf("%s %s", gst_structure_get_string(o, "type-name"),
						    gst_structure_get_string(o, "address")));
	}
	return h;
}

/* Objects created since activity-start-tracking and never freed since.  The
 * tracer keeps a set of created and a set of freed (type, address) pairs; a
 * pair only in the first is an object that is still alive. */
static guint still_alive(GstTracer *t)
{
	GstStructure *cp = NULL;
	g_signal_emit_by_name(t, "activity-get-checkpoint", &cp);
	ck_assert_ptr_nonnull(cp);
	GHashTable *created = entries(cp, "objects-created-list");
	GHashTable *removed = entries(cp, "objects-removed-list");
	guint n = 0;
	GHashTableIter it;
	gpointer key;
	g_hash_table_iter_init(&it, created);
	while (g_hash_table_iter_next(&it, &key, NULL))
		if (!g_hash_table_contains(removed, key)) {
			fprintf(stderr, "alive: %s\n", (const char *)key);
			n++;
		}
	g_hash_table_unref(created);
	g_hash_table_unref(removed);
	gst_structure_free(cp);
	return n;
}

/*
 * The same check as running with GST_TRACERS=leaks GST_DEBUG=GST_TRACER:7
 * and reading the log at gst_deinit, but scoped to one create/destroy
 * round: a first round loads plugins and GStreamer's process-wide objects,
 * then every object created during the second round must be gone after
 * pipe_sources_destroy().
 */
START_TEST(no_leaked_gst_objects)
{
	setenv("GST_TRACERS", "leaks", 1); /* before gst_init, in this process only */
	gst_init(NULL, NULL);
	GstTracer *t = leaks_tracer();
	ck_assert_msg(t != NULL, "leaks tracer not active");
	run_mix(300);
	g_signal_emit_by_name(t, "activity-start-tracking");
	run_mix(1000);
	guint n = still_alive(t);
	ck_assert_msg(n == 0, "%u GStreamer objects created by a round are still alive", n);
	g_signal_emit_by_name(t, "activity-stop-tracking");
	gst_object_unref(t);
}
END_TEST

static Suite *pipeline_suite(void)
{
	Suite *s = suite_create("pipeline");
	TCase *tc = tcase_create("file");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, mapping_math);
	tcase_add_test(tc, rejects_bad_config);
	tcase_add_test(tc, file_delivers_20_frames);
	tcase_add_test(tc, file_loops);
	tcase_add_test(tc, file_rate_limited);
	tcase_add_test(tc, file_letterbox);
	tcase_add_test(tc, eight_files_at_once);
	suite_add_tcase(s, tc);

	tc = tcase_create("health");
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, gst_and_test_kinds);
	tcase_add_test(tc, letterbox_non_square_pixels);
	tcase_add_test(tc, bad_uri_backs_off_others_deliver);
	tcase_add_test(tc, remove_while_others_run);
	tcase_add_test(tc, example_config_streams);
	suite_add_tcase(s, tc);

	tc = tcase_create("teardown");
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, destroy_joins_every_thread);
	tcase_add_test(tc, no_leaked_gst_objects);
	suite_add_tcase(s, tc);
	return s;
}

/*
 * Under AddressSanitizer: GLib 2.74 (Debian 12) allocates a 16 KiB block in
 * its library constructor and drops the pointer; LeakSanitizer reports it in
 * every process that links GLib.  Suppress exactly allocations made from a
 * shared-library constructor (_dl_init); full unwinding on malloc is needed
 * for that frame to be seen (GLib has no frame pointers).
 * Also GLib-internal: with souphttpsrc, g_object_unref() of an object that
 * has weak references allocates 32 bytes that are never freed, even after
 * gst_deinit() (the leaks tracer sees no GStreamer object left).  Nothing of
 * detd allocates inside g_object_unref(), so that frame is suppressed too.
 * Options given in ASAN_OPTIONS/LSAN_OPTIONS still apply on top of these.
 */
const char *__asan_default_options(void);
const char *__lsan_default_suppressions(void);
const char *__asan_default_options(void)
{
	return "fast_unwind_on_malloc=0:malloc_context_size=8";
}
const char *__lsan_default_suppressions(void)
{
	return "leak:_dl_init\nleak:g_object_unref\n";
}

static Suite *rtsp_suite(void)
{
	Suite *s = suite_create("pipeline-rtsp");
	TCase *tc = tcase_create("rtsp");
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, rtsp_tcp_reconnects);
	tcase_add_test(tc, rtsp_udp_goes_live);
	tcase_add_test(tc, rtsp_hung_server_stalls);
	suite_add_tcase(s, tc);
	return s;
}

static Suite *http_suite(void)
{
	Suite *s = suite_create("pipeline-http");
	TCase *tc = tcase_create("http");
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, http_file_plays_and_loops);
	suite_add_tcase(s, tc);
	return s;
}

static const char *http_missing(void)
{
	return access("/usr/bin/python3", X_OK) == 0 ? NULL
						      : "no /usr/bin/python3 for http.server";
}

static const char *data_missing(void)
{
	return tu_shared_data_has("traffic/traffic_frames.mp4") ? NULL
								: "no sample video in DETD_SHARED_DATA";
}

static const char *rtsp_or_data_missing(void)
{
	const char *why = data_missing();
	return why ? why : rtsp_missing();
}

static const char *http_or_data_missing(void)
{
	const char *why = data_missing();
	return why ? why : http_missing();
}

int main(int argc, char **argv)
{
	static const struct tu_suite suites[] = {
		{NULL, pipeline_suite, data_missing},
		{"rtsp", rtsp_suite, rtsp_or_data_missing},
		{"http", http_suite, http_or_data_missing},
	};
	return tu_main(argc, argv, suites, sizeof(suites) / sizeof(suites[0]));
}
