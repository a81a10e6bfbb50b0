/*
 * test_h264dec.c — detdh264dec (pipeline/h264dec.c) on the sample video.
 *
 * Both detdh264dec and avdec_h264 decode with libavcodec's H.264 decoder, so
 * their pictures must be identical, byte for byte, frame for frame: that is
 * the check of the element's frame matching, strides and plane offsets, on
 * both of its output paths (planes wrapped with a GstVideoMeta when
 * downstream takes one, copied otherwise).  Also: byte-stream input, the
 * element being chosen by uridecodebin (and not when DETD_H264DEC=off),
 * and damaged input ending in EOS or an error message, never a crash
 * (under the sanitizer build: never a bad memory access).
 *
 * Suites: default (needs the sample video), "avdec" (also needs gst-libav's
 * avdec_h264 to compare with).  Each test is its own process (Check fork
 * mode), so the once-per-process registration can be tested both ways.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gst/video/video.h>

#include "detd-build.h"
#include "h264dec.h"
#include "testutil.h"

#define MAX_FRAMES 64

static char video_path[4096];

static void setup(void)
{
	const char *d = getenv("DETD_SHARED_DATA");
	snprintf(video_path, sizeof(video_path), "%s/traffic/traffic_frames.mp4", d ? d : ".");
	gst_init(NULL, NULL);
}

/* One decoded sequence: the visible bytes of every plane of every frame. */
struct seq {
	int n;
	GstVideoFormat fmt;
	int w, h;
	GByteArray *frame[MAX_FRAMES];
	int meta_buffers;  /* buffers seen at the probe with a multi-memory GstVideoMeta */
	int probe_buffers; /* buffers seen at the probe */
};

static void seq_clear(struct seq *s)
{
	for (int i = 0; i < s->n; i++)
		g_byte_array_unref(s->frame[i]);
	memset(s, 0, sizeof(*s));
}

static GstPadProbeReturn count_meta(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
	(void)pad;
	struct seq *s = data;
	GstBuffer *b = GST_PAD_PROBE_INFO_BUFFER(info);
	s->probe_buffers++;
	if (gst_buffer_get_video_meta(b) && gst_buffer_n_memory(b) > 1)
		s->meta_buffers++;
	return GST_PAD_PROBE_OK;
}

/* Runs `desc` (a gst-launch line ending in "appsink name=out"; an element
 * named "probe" gets a buffer probe on its sink pad) to EOS and records the
 * frames.  Returns false on an error message. */
static bool run_decode(const char *desc, struct seq *s)
{
	memset(s, 0, sizeof(*s));
	GError *err = NULL;
	GstElement *p = gst_parse_launch(desc, &err);
	ck_assert_msg(p && !err, "parse '%s': %s", desc, err ? err->message : "?");
	GstElement *sink = gst_bin_get_by_name(GST_BIN(p), "out");
	ck_assert_ptr_nonnull(sink);
	g_object_set(sink, "sync", FALSE, NULL);
	GstElement *probe = gst_bin_get_by_name(GST_BIN(p), "probe");
	if (probe) {
		GstPad *pad = gst_element_get_static_pad(probe, "sink");
		gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, count_meta, s, NULL);
		gst_object_unref(pad);
		gst_object_unref(probe);
	}
	ck_assert_int_ne(gst_element_set_state(p, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
	bool ok = true;
	for (;;) {
		GstSample *smp = gst_app_sink_try_pull_sample(GST_APP_SINK(sink), 10 * GST_SECOND);
		if (!smp) {
			ok = gst_app_sink_is_eos(GST_APP_SINK(sink));
			break;
		}
		GstVideoInfo vi;
		ck_assert(gst_video_info_from_caps(&vi, gst_sample_get_caps(smp)));
		GstVideoFrame vf;
		ck_assert(gst_video_frame_map(&vf, &vi, gst_sample_get_buffer(smp), GST_MAP_READ));
		ck_assert_int_lt(s->n, MAX_FRAMES);
		GByteArray *a = g_byte_array_new();
		for (guint pl = 0; pl < GST_VIDEO_FRAME_N_PLANES(&vf); pl++) {
			const guint8 *d = GST_VIDEO_FRAME_PLANE_DATA(&vf, pl);
			gint st = GST_VIDEO_FRAME_PLANE_STRIDE(&vf, pl);
			guint row = (guint)(GST_VIDEO_FRAME_COMP_WIDTH(&vf, pl) *
					    GST_VIDEO_FRAME_COMP_PSTRIDE(&vf, pl));
			for (int y = 0; y < GST_VIDEO_FRAME_COMP_HEIGHT(&vf, pl); y++)
				g_byte_array_append(a, d + (gsize)y * (gsize)st, row);
		}
		gst_video_frame_unmap(&vf);
		s->fmt = GST_VIDEO_INFO_FORMAT(&vi);
		s->w = GST_VIDEO_INFO_WIDTH(&vi);
		s->h = GST_VIDEO_INFO_HEIGHT(&vi);
		s->frame[s->n++] = a;
		gst_sample_unref(smp);
	}
	GstBus *bus = gst_element_get_bus(p);
	GstMessage *m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
	if (m) {
		GError *e = NULL;
		gst_message_parse_error(m, &e, NULL);
		fprintf(stderr, "pipeline error: %s\n", e ? e->message : "?");
		g_clear_error(&e);
		gst_message_unref(m);
		ok = false;
	}
	gst_object_unref(bus);
	gst_element_set_state(p, GST_STATE_NULL);
	gst_object_unref(sink);
	gst_object_unref(p);
	return ok;
}

static void assert_same(const struct seq *a, const struct seq *b, const char *what)
{
	ck_assert_msg(a->n == b->n, "%s: %d vs %d frames", what, a->n, b->n);
	ck_assert_msg(a->fmt == b->fmt && a->w == b->w && a->h == b->h, "%s: formats differ", what);
	for (int i = 0; i < a->n; i++) {
		ck_assert_msg(a->frame[i]->len == b->frame[i]->len, "%s: frame %d size", what, i);
		ck_assert_msg(!memcmp(a->frame[i]->data, b->frame[i]->data, a->frame[i]->len),
			      "%s: frame %d differs", what, i);
	}
}

static char *launch(const char *middle, const char *dec, const char *tail)
{
	return g_strdup_printf("filesrc location=\"%s\" ! qtdemux ! h264parse %s ! %s name=dec %s "
			       "! appsink name=out",
			       video_path, middle, dec, tail);
}

/* The sample video is 20 frames of 960×540 4:2:0; the two decoders agree
 * on every byte, through the copy path (appsink takes no GstVideoMeta) and
 * through the zero-copy path (videoconvert does). */
START_TEST(same_pictures_as_avdec_h264)
{
	ck_assert(pipe_h264dec_register());
	struct seq ref, copy, ref_y444, wrap;
	char *d;
	ck_assert(run_decode(d = launch("", "avdec_h264", ""), &ref));
	g_free(d);
	ck_assert(run_decode(d = launch("", PIPE_H264DEC_NAME, ""), &copy));
	g_free(d);
	ck_assert_int_eq(ref.n, 20);
	ck_assert_int_eq(ref.fmt, GST_VIDEO_FORMAT_I420);
	ck_assert_int_eq(ref.w, 960);
	ck_assert_int_eq(ref.h, 540);
	assert_same(&ref, &copy, "copy path");

	const char *conv = "! videoconvert name=probe ! video/x-raw,format=Y444";
	ck_assert(run_decode(d = launch("", "avdec_h264", conv), &ref_y444));
	g_free(d);
	ck_assert(run_decode(d = launch("", PIPE_H264DEC_NAME, conv), &wrap));
	g_free(d);
	assert_same(&ref_y444, &wrap, "zero-copy path");
	ck_assert_int_eq(wrap.probe_buffers, 20);
	ck_assert_msg(wrap.meta_buffers == 20, "%d of 20 buffers wrapped", wrap.meta_buffers);
	seq_clear(&ref);
	seq_clear(&copy);
	seq_clear(&ref_y444);
	seq_clear(&wrap);
}
END_TEST

/* Annex B input (as from an RTSP camera's byte-stream depayloader) decodes
 * to the same pictures as the avcC input of the file. */
START_TEST(byte_stream_input)
{
	ck_assert(pipe_h264dec_register());
	struct seq avc, bs;
	char *d;
	ck_assert(run_decode(d = launch("", PIPE_H264DEC_NAME, ""), &avc));
	g_free(d);
	ck_assert(run_decode(d = launch("! video/x-h264,stream-format=byte-stream,alignment=au",
					PIPE_H264DEC_NAME, ""),
			     &bs));
	g_free(d);
	ck_assert_int_eq(avc.n, 20);
	assert_same(&avc, &bs, "byte-stream");
	seq_clear(&avc);
	seq_clear(&bs);
}
END_TEST

static void element_added(GstBin *bin, GstBin *sub, GstElement *el, gpointer data)
{
	(void)bin;
	(void)sub;
	GstElementFactory *f = gst_element_get_factory(el);
	if (f)
		g_hash_table_insert(data, el, g_strdup(GST_OBJECT_NAME(f)));
}

static void element_removed(GstBin *bin, GstBin *sub, GstElement *el, gpointer data)
{
	(void)bin;
	(void)sub;
	g_hash_table_remove(data, el);
}

/* The H.264 decoder in uridecodebin once the sample video prerolled (an
 * element decodebin tried and removed again does not count), "none" if
 * none; the pipeline must not have posted an error. */
static char *decoder_chosen(void)
{
	char *uri = gst_filename_to_uri(video_path, NULL);
	char *desc = g_strdup_printf("uridecodebin uri=\"%s\" ! fakesink name=out", uri);
	GstElement *p = gst_parse_launch(desc, NULL);
	ck_assert_ptr_nonnull(p);
	GHashTable *live = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
	g_signal_connect(p, "deep-element-added", G_CALLBACK(element_added), live);
	g_signal_connect(p, "deep-element-removed", G_CALLBACK(element_removed), live);
	gst_element_set_state(p, GST_STATE_PAUSED);
	ck_assert_int_eq(gst_element_get_state(p, NULL, NULL, 10 * GST_SECOND),
			 GST_STATE_CHANGE_SUCCESS);
	GstBus *bus = gst_element_get_bus(p);
	GstMessage *err = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
	ck_assert_msg(err == NULL, "uridecodebin posted an error");
	gst_object_unref(bus);
	char *found = NULL;
	GHashTableIter it;
	gpointer name;
	g_hash_table_iter_init(&it, live);
	while (!found && g_hash_table_iter_next(&it, NULL, &name))
		if (!strcmp(name, PIPE_H264DEC_NAME) || g_str_has_prefix(name, "avdec_h264") ||
		    !strcmp(name, "openh264dec"))
			found = g_strdup(name);
	gst_element_set_state(p, GST_STATE_NULL);
	g_signal_handlers_disconnect_by_data(p, live);
	gst_object_unref(p);
	g_hash_table_unref(live);
	g_free(desc);
	g_free(uri);
	return found ? found : g_strdup("none");
}

START_TEST(uridecodebin_chooses_it)
{
	ck_assert(pipe_h264dec_register());
	char *dec = decoder_chosen();
	ck_assert_str_eq(dec, PIPE_H264DEC_NAME);
	g_free(dec);
}
END_TEST

static bool libavcodec_mapped(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	ck_assert_ptr_nonnull(f);
	char line[1024];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, "/libavcodec.so") != NULL;
	fclose(f);
	return found;
}

/* libavcodec is loaded by the first H.264 decode, not before: a daemon
 * without H.264 streams does not carry it. */
START_TEST(libavcodec_loaded_on_first_use)
{
	ck_assert(pipe_h264dec_register());
	ck_assert_msg(!libavcodec_mapped(), "libavcodec mapped before any H.264 stream");
	struct seq s;
	char *d = launch("", PIPE_H264DEC_NAME, "");
	ck_assert(run_decode(d, &s));
	g_free(d);
	ck_assert_int_eq(s.n, 20);
	ck_assert(libavcodec_mapped());
	seq_clear(&s);
}
END_TEST

/* When libavcodec cannot be loaded the element refuses READY without an
 * error message, and uridecodebin decodes with the next H.264 decoder. */
START_TEST(unloadable_libavcodec_falls_back)
{
	setenv("DETD_TEST_AVCODEC", "libavcodec-does-not-exist.so.0", 1);
	ck_assert(pipe_h264dec_register());
	char *dec = decoder_chosen();
	ck_assert_str_ne(dec, PIPE_H264DEC_NAME);
	ck_assert_str_ne(dec, "none");
	g_free(dec);
}
END_TEST

START_TEST(off_in_environment)
{
	setenv("DETD_H264DEC", "off", 1);
	ck_assert(!pipe_h264dec_register());
	ck_assert_ptr_null(gst_element_factory_find(PIPE_H264DEC_NAME));
	char *dec = decoder_chosen();
	ck_assert_str_ne(dec, PIPE_H264DEC_NAME);
	g_free(dec);
}
END_TEST

/* Damage: every buffer after the first key frame gets bytes overwritten,
 * every fifth is cut short. */
static GstPadProbeReturn damage(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
	(void)pad;
	guint32 *state = data;
	GstBuffer *b = gst_buffer_make_writable(GST_PAD_PROBE_INFO_BUFFER(info));
	GST_PAD_PROBE_INFO_DATA(info) = b;
	gsize n = gst_buffer_get_size(b);
	if (++state[1] == 1 || n < 8)
		return GST_PAD_PROBE_OK;
	GstMapInfo m;
	if (gst_buffer_map(b, &m, GST_MAP_WRITE)) {
		for (int k = 0; k < 24; k++) {
			state[0] = state[0] * 1103515245u + 12345u;
			gsize at = 4 + (state[0] >> 8) % (m.size - 4); /* keep the NAL length */
			m.data[at] = (guint8)(state[0] >> 24);
		}
		gst_buffer_unmap(b, &m);
	}
	if (state[1] % 5 == 0)
		gst_buffer_resize(b, 0, (gssize)(n / 2));
	return GST_PAD_PROBE_OK;
}

START_TEST(damaged_input_ends_cleanly)
{
	ck_assert(pipe_h264dec_register());
	for (guint32 seed = 1; seed <= 8; seed++) {
		char *desc = g_strdup_printf("filesrc location=\"%s\" ! qtdemux ! h264parse ! "
					     "identity name=hurt ! " PIPE_H264DEC_NAME
					     " max-errors=-1 ! videoconvert ! fakesink",
					     video_path);
		GstElement *p = gst_parse_launch(desc, NULL);
		g_free(desc);
		ck_assert_ptr_nonnull(p);
		guint32 state[2] = { seed, 0 };
		GstElement *hurt = gst_bin_get_by_name(GST_BIN(p), "hurt");
		GstPad *pad = gst_element_get_static_pad(hurt, "src");
		gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, damage, state, NULL);
		gst_object_unref(pad);
		gst_object_unref(hurt);
		gst_element_set_state(p, GST_STATE_PLAYING);
		GstBus *bus = gst_element_get_bus(p);
		GstMessage *m = gst_bus_timed_pop_filtered(bus, 20 * GST_SECOND,
							   GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
		ck_assert_msg(m != NULL, "seed %u: neither EOS nor an error", seed);
		ck_assert_uint_gt(state[1], 10);
		gst_message_unref(m);
		gst_object_unref(bus);
		gst_element_set_state(p, GST_STATE_NULL);
		gst_object_unref(p);
	}
}
END_TEST

/* An access unit larger than any coded picture buffer is refused with an
 * error (max-errors 0: the first one is posted), not copied. */
START_TEST(oversized_access_unit_refused)
{
	ck_assert(pipe_h264dec_register());
	GstElement *p = gst_parse_launch(
		"appsrc name=src format=time caps=video/x-h264,stream-format=byte-stream,"
		"alignment=au,width=64,height=64,framerate=30/1 ! " PIPE_H264DEC_NAME
		" max-errors=0 ! fakesink",
		NULL);
	ck_assert_ptr_nonnull(p);
	GstElement *src = gst_bin_get_by_name(GST_BIN(p), "src");
	gst_element_set_state(p, GST_STATE_PLAYING);
	/* not written: refused before it is read */
	GstBuffer *b = gst_buffer_new_allocate(NULL, ((gsize)64 << 20) + 1, NULL);
	GST_BUFFER_PTS(b) = 0;
	gst_app_src_push_buffer(GST_APP_SRC(src), b);
	GstBus *bus = gst_element_get_bus(p);
	GstMessage *m = gst_bus_timed_pop_filtered(bus, 20 * GST_SECOND, GST_MESSAGE_ERROR);
	ck_assert_msg(m != NULL, "no error for a 64 MiB access unit");
	GError *e = NULL;
	gst_message_parse_error(m, &e, NULL);
	ck_assert_msg(e && strstr(e->message, "too large"), "error: %s", e ? e->message : "?");
	g_clear_error(&e);
	gst_message_unref(m);
	gst_object_unref(bus);
	gst_element_set_state(p, GST_STATE_NULL);
	gst_object_unref(src);
	gst_object_unref(p);
}
END_TEST

/* A test case of s with the fixture and timeout every test here uses. */
static TCase *add_tcase(Suite *s, const char *name)
{
	TCase *tc = tcase_create(name);
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return tc;
}

static Suite *h264dec_suite(void)
{
	Suite *s = suite_create("h264dec");
	TCase *tc = add_tcase(s, "decode");
	tcase_add_test(tc, byte_stream_input);
	tcase_add_test(tc, uridecodebin_chooses_it);
	tcase_add_test(tc, off_in_environment);
	tcase_add_test(tc, libavcodec_loaded_on_first_use);
	tcase_add_test(tc, damaged_input_ends_cleanly);
	tcase_add_test(tc, oversized_access_unit_refused);
	return s;
}

static Suite *avdec_suite(void)
{
	Suite *s = suite_create("h264dec-avdec");
	TCase *tc = add_tcase(s, "avdec");
	tcase_add_test(tc, same_pictures_as_avdec_h264);
	tcase_add_test(tc, unloadable_libavcodec_falls_back);
	return s;
}

static const char *data_missing(void)
{
	if (!tu_shared_data_has("traffic/traffic_frames.mp4"))
		return "no sample video in DETD_SHARED_DATA";
	if (!DETD_HAVE_AVCODEC)
		return "built without libavcodec (meson -Davcodec=disabled or no libavcodec-dev)";
	return NULL;
}

static const char *avdec_missing(void)
{
	const char *why = data_missing();
	if (why)
		return why;
	gst_init(NULL, NULL); /* no test of this suite depends on registering late */
	GstElementFactory *f = gst_element_factory_find("avdec_h264");
	if (!f)
		return "no avdec_h264 to compare with (gstreamer1.0-libav)";
	gst_object_unref(f);
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct tu_suite suites[] = {
		{NULL, h264dec_suite, data_missing},
		{"avdec", avdec_suite, avdec_missing},
	};
	return tu_main(argc, argv, suites, sizeof(suites) / sizeof(suites[0]));
}
