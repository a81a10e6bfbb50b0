/*
 * detd-ingest — runs pipeline/ alone on some streams and prints their stats
 * as JSON lines: a demo of ingest without a model, a way to measure what
 * decoding costs, and the harness for GStreamer's leaks tracer (it calls
 * gst_deinit() at the end, where the tracer reports):
 *
 *   GST_TRACERS=leaks GST_DEBUG=GST_TRACER:7 detd-ingest --seconds 3 URI...
 *
 * Usage: detd-ingest [--size WxH] [--seconds N] [--fps F] [--loop] [--letterbox]
 *                    [--tcp|--udp] SOURCE...
 * A SOURCE is a URI (file://, rtsp://, http://), "test:PATTERN", "v4l2:/dev/videoN"
 * or "gst:FRAGMENT".  A plain path is taken as a file.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gst/gst.h>
#include <json-c/json.h>

#include "pipeline.h"

static atomic_ullong frames;

static void on_frame(struct det_frame *f, void *ud)
{
	(void)ud;
	atomic_fetch_add(&frames, 1);
	det_frame_unref(f);
}

static void print_stats(struct pipe_sources *set, double t)
{
	struct pipe_stream_stats *st;
	size_t n;
	if (pipe_sources_snapshot(set, &st, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct json_object *o = pipe_stats_to_json(&st[i]);
		json_object_object_add(o, "t", json_object_new_double(t));
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	}
	fflush(stdout);
	free(st);
}

static int usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--size WxH] [--seconds N] [--fps F] [--loop] [--letterbox] "
		"[--tcp|--udp] SOURCE...\n",
		argv0);
	return 2;
}

int main(int argc, char **argv)
{
	int w = 256, h = 256;
	double seconds = 5, fps = 0;
	bool loop = false, letterbox = false;
	enum cfg_rtsp_transport tr = CFG_RTSP_AUTO;
	int first = argc;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--size") && i + 1 < argc) {
			if (sscanf(argv[++i], "%dx%d", &w, &h) != 2)
				return usage(argv[0]);
		} else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
			seconds = atof(argv[++i]);
		} else if (!strcmp(argv[i], "--fps") && i + 1 < argc) {
			fps = atof(argv[++i]);
		} else if (!strcmp(argv[i], "--loop")) {
			loop = true;
		} else if (!strcmp(argv[i], "--letterbox")) {
			letterbox = true;
		} else if (!strcmp(argv[i], "--tcp")) {
			tr = CFG_RTSP_TCP;
		} else if (!strcmp(argv[i], "--udp")) {
			tr = CFG_RTSP_UDP;
		} else if (argv[i][0] == '-') {
			return usage(argv[0]);
		} else {
			first = i;
			break;
		}
	}
	if (first >= argc)
		return usage(argv[0]);

	gst_init(NULL, NULL);
	struct pipe_callbacks cb = { on_frame, NULL, NULL };
	struct pipe_sources *set;
	int rc = pipe_sources_create(w, h, &cb, &set);
	if (rc < 0) {
		fprintf(stderr, "detd-ingest: %s\n", strerror(-rc));
		return 1;
	}
	for (int i = first; i < argc; i++) {
		char id[32];
		snprintf(id, sizeof(id), "s%d", i - first);
		struct cfg_stream c = { 0 };
		char *owned = NULL;
		c.id = id;
		c.enabled = true;
		c.fps = fps;
		c.loop = loop;
		c.aspect = letterbox ? CFG_ASPECT_LETTERBOX : CFG_ASPECT_STRETCH;
		c.rtsp_transport = tr;
		c.latency_ms = 200;
		const char *a = argv[i];
		if (!strncmp(a, "test:", 5)) {
			c.kind = CFG_SRC_TEST;
			c.pattern = (char *)a + 5;
		} else if (!strncmp(a, "v4l2:", 5)) {
			c.kind = CFG_SRC_V4L2;
			c.device = (char *)a + 5;
		} else if (!strncmp(a, "gst:", 4)) {
			c.kind = CFG_SRC_GST;
			c.pipeline = (char *)a + 4;
		} else if (strstr(a, "://")) {
			c.kind = CFG_SRC_URI;
			c.uri = (char *)a;
		} else {
			c.kind = CFG_SRC_URI;
			char *abs = realpath(a, NULL);
			owned = gst_filename_to_uri(abs ? abs : a, NULL);
			free(abs);
			c.uri = owned;
		}
		rc = pipe_sources_add(set, &c);
		g_free(owned);
		if (rc < 0) {
			fprintf(stderr, "detd-ingest: %s: %s\n", a, strerror(-rc));
			pipe_sources_destroy(set);
			return 1;
		}
	}
	for (double t = 1; t <= seconds; t += 1) {
		sleep(1);
		print_stats(set, t);
	}
	pipe_sources_destroy(set);
	fprintf(stderr, "detd-ingest: %llu frames\n", (unsigned long long)atomic_load(&frames));
	gst_deinit();
	return 0;
}
