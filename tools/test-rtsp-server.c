/*
 * test-rtsp-server.c — a real RTSP server (gst-rtsp-server) that serves one
 * H.264 MP4 file in an endless loop, for the pipeline tests and demos.
 *
 *   test-rtsp-server FILE [--port N] [--mount /path] [--address A]
 *
 * Prints its URL ("rtsp://127.0.0.1:PORT/MOUNT") on stdout once it accepts
 * connections; --port 0 (the default) picks a free port.  SIGINT/SIGTERM stop
 * it cleanly.
 *
 * How: the file's H.264 access units are demuxed once into memory; every
 * client gets its own media whose appsrc replays them in decode order, paced
 * on the pipeline clock, with timestamps shifted by one file duration per
 * loop.  No re-encoding, so it costs next to no CPU.  Each loop starts with
 * the file's IDR frame, which h264parse (config-interval=-1) prefixes with
 * SPS/PPS, so a client may join at any loop.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib-unix.h>
#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gst/rtsp-server/rtsp-server.h>

#if defined(__SANITIZE_ADDRESS__)
/* GLib 2.74's constructor keeps a block LeakSanitizer calls leaked: not ours
 * (see tests/unit/test_pipeline.c). */
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
#endif

struct clip {
	GPtrArray *bufs; /* GstBuffer*, decode order */
	GstCaps *caps;
	GstClockTime period; /* one loop */
};

struct feed {
	const struct clip *clip;
	guint64 index;
	GstClockTime base; /* running time of loop 0, set at the first push */
	gboolean started;
};

static struct clip clip;

static int load_clip(const char *path)
{
	GError *err = NULL;
	GstElement *p = gst_parse_launch(
		"filesrc name=f ! qtdemux ! h264parse config-interval=-1 ! "
		"video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=s sync=false",
		&err);
	if (!p) {
		fprintf(stderr, "test-rtsp-server: %s\n", err ? err->message : "parse error");
		g_clear_error(&err);
		return -1;
	}
	GstElement *f = gst_bin_get_by_name(GST_BIN(p), "f");
	GstElement *s = gst_bin_get_by_name(GST_BIN(p), "s");
	g_object_set(f, "location", path, NULL);
	gst_object_unref(f);
	clip.bufs = g_ptr_array_new_with_free_func((GDestroyNotify)gst_buffer_unref);
	gst_element_set_state(p, GST_STATE_PLAYING);
	GstClockTime dur_sum = 0;
	GstSample *smp;
	while ((smp = gst_app_sink_pull_sample(GST_APP_SINK(s)))) {
		if (!clip.caps)
			clip.caps = gst_caps_ref(gst_sample_get_caps(smp));
		GstBuffer *b = gst_buffer_ref(gst_sample_get_buffer(smp));
		dur_sum += GST_BUFFER_DURATION_IS_VALID(b) ? GST_BUFFER_DURATION(b)
							   : GST_SECOND / 30;
		g_ptr_array_add(clip.bufs, b);
		gst_sample_unref(smp);
	}
	GstBus *bus = gst_element_get_bus(p);
	GstMessage *m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
	if (m) {
		gst_message_parse_error(m, &err, NULL);
		fprintf(stderr, "test-rtsp-server: %s: %s\n", path, err->message);
		g_clear_error(&err);
		gst_message_unref(m);
	}
	gst_object_unref(bus);
	gst_element_set_state(p, GST_STATE_NULL);
	gst_object_unref(s);
	gst_object_unref(p);
	clip.period = dur_sum;
	if (clip.bufs->len == 0 || !clip.caps) {
		fprintf(stderr, "test-rtsp-server: no H.264 video in %s\n", path);
		return -1;
	}
	return 0;
}

static GstClockTime running_time(GstElement *e)
{
	GstClock *c = gst_element_get_clock(e);
	if (!c)
		return 0;
	GstClockTime now = gst_clock_get_time(c);
	gst_object_unref(c);
	GstClockTime base = gst_element_get_base_time(e);
	return now > base ? now - base : 0;
}

/* appsrc wants data: wait until the next access unit is due, then push it.
 * Blocking here is fine: this is the appsrc's own streaming thread. */
static void need_data(GstAppSrc *src, guint length, gpointer data)
{
	struct feed *fd = data;
	const struct clip *c = fd->clip;
	guint n = c->bufs->len;
	GstBuffer *orig = g_ptr_array_index(c->bufs, fd->index % n);
	guint64 loop = fd->index / n;
	if (!fd->started) {
		fd->base = running_time(GST_ELEMENT(src)) + 50 * GST_MSECOND;
		fd->started = TRUE;
	}
	GstClockTime shift = fd->base + loop * c->period;
	GstClockTime dts = GST_BUFFER_DTS_IS_VALID(orig) ? GST_BUFFER_DTS(orig)
							 : GST_BUFFER_PTS(orig);
	GstClockTime due = shift + dts;
	GstClockTime now = running_time(GST_ELEMENT(src));
	if (due > now + 20 * GST_MSECOND)
		g_usleep((due - now - 20 * GST_MSECOND) / 1000);

	GstBuffer *b = gst_buffer_copy(orig);
	GST_BUFFER_DTS(b) = shift + dts;
	GST_BUFFER_PTS(b) = shift + GST_BUFFER_PTS(orig);
	if (fd->index % n == 0 && loop > 0)
		GST_BUFFER_FLAG_SET(b, GST_BUFFER_FLAG_DISCONT);
	fd->index++;
	gst_app_src_push_buffer(src, b);
}

static void media_configure(GstRTSPMediaFactory *factory, GstRTSPMedia *media, gpointer data)
{
	GstElement *el = gst_rtsp_media_get_element(media);
	GstElement *src = gst_bin_get_by_name_recurse_up(GST_BIN(el), "src");
	struct feed *fd = g_new0(struct feed, 1);
	fd->clip = &clip;
	g_object_set_data_full(G_OBJECT(media), "feed", fd, g_free);
	g_object_set(src, "caps", clip.caps, "format", GST_FORMAT_TIME, "is-live", TRUE,
		     "max-bytes", (guint64)(256 * 1024), NULL);
	g_signal_connect(src, "need-data", G_CALLBACK(need_data), fd);
	gst_object_unref(src);
	gst_object_unref(el);
}

static gboolean on_signal(gpointer loop)
{
	g_main_loop_quit(loop);
	return G_SOURCE_REMOVE;
}

int main(int argc, char **argv)
{
	const char *file = NULL, *mount = "/test", *address = "127.0.0.1";
	int port = 0;
	gst_init(&argc, &argv);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--mount") && i + 1 < argc)
			mount = argv[++i];
		else if (!strcmp(argv[i], "--address") && i + 1 < argc)
			address = argv[++i];
		else if (argv[i][0] != '-' && !file)
			file = argv[i];
		else {
			fprintf(stderr, "usage: %s FILE [--port N] [--mount /path] [--address A]\n",
				argv[0]);
			return 2;
		}
	}
	if (!file || port < 0 || port > 65535 || mount[0] != '/') {
		fprintf(stderr, "usage: %s FILE [--port N] [--mount /path] [--address A]\n",
			argv[0]);
		return 2;
	}
	if (load_clip(file) < 0)
		return 1;

	GMainLoop *loop = g_main_loop_new(NULL, FALSE);
	GstRTSPServer *server = gst_rtsp_server_new();
	char service[16];
	snprintf(service, sizeof(service), "%d", port);
	gst_rtsp_server_set_address(server, address);
	gst_rtsp_server_set_service(server, service);

	GstRTSPMediaFactory *factory = gst_rtsp_media_factory_new();
	gst_rtsp_media_factory_set_launch(factory,
					  "( appsrc name=src ! h264parse config-interval=-1 ! "
					  "rtph264pay name=pay0 pt=96 config-interval=-1 )");
	gst_rtsp_media_factory_set_shared(factory, FALSE);
	g_signal_connect(factory, "media-configure", G_CALLBACK(media_configure), NULL);
	GstRTSPMountPoints *mounts = gst_rtsp_server_get_mount_points(server);
	gst_rtsp_mount_points_add_factory(mounts, mount, factory);
	g_object_unref(mounts);

	if (gst_rtsp_server_attach(server, NULL) == 0) {
		fprintf(stderr, "test-rtsp-server: cannot listen on %s:%s\n", address, service);
		return 1;
	}
	g_unix_signal_add(SIGINT, on_signal, loop);
	g_unix_signal_add(SIGTERM, on_signal, loop);
	printf("rtsp://%s:%d%s\n", address, gst_rtsp_server_get_bound_port(server), mount);
	fflush(stdout);

	g_main_loop_run(loop);

	g_object_unref(server);
	g_main_loop_unref(loop);
	g_ptr_array_unref(clip.bufs);
	gst_caps_unref(clip.caps);
	return 0;
}
