/* test_config.c — the JSON config loader: defaults, every kind of error, paths, diff. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "detd-build.h"
#include "testutil.h"

static const char *minimal = "{\"model\": {\"path\": \"/m.tflite\"}}";

/* Parse text expecting failure; returns the errors (static, one test at a time). */
static struct cfg_errors errs;

static int load(const char *json, struct cfg **c)
{
	memset(&errs, 0, sizeof(errs));
	return cfg_load_string(json, "/base", c, &errs);
}

static bool has_error(const char *needle)
{
	for (size_t i = 0; i < errs.n; i++)
		if (strstr(errs.msg[i], needle))
			return true;
	return false;
}

static void dump_errors(void)
{
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "  error: %s\n", errs.msg[i]);
}

/* One bad document, exactly one error that contains `expect`. */
static void expect_one(const char *json, const char *expect)
{
	struct cfg *c = NULL;
	int r = load(json, &c);
	if (r != -EINVAL || errs.n != 1 || !has_error(expect)) {
		fprintf(stderr, "for %s\nexpected one error with \"%s\", got r=%d:\n", json, expect, r);
		dump_errors();
	}
	ck_assert_int_eq(r, -EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert(has_error(expect));
}

START_TEST(defaults_from_minimal)
{
	struct cfg *c = NULL;
	ck_assert_int_eq(load(minimal, &c), 0);
	ck_assert_str_eq(c->log.level, "info");
	ck_assert_str_eq(c->model.path, "/m.tflite");
	ck_assert_ptr_null(c->model.labels);
	ck_assert_str_eq(c->model.format, "auto");
	ck_assert_str_eq(c->engine.backend, "cpu");
	ck_assert_int_eq(c->engine.workers, 1);
	ck_assert_int_eq(c->engine.max_batch, 4);
	ck_assert(c->http.enabled);
	ck_assert_str_eq(c->http.address, "127.0.0.1");
	ck_assert_int_eq(c->http.port, 8080);
	ck_assert(!c->http.allow_mutations);
	ck_assert_uint_eq(c->http.max_header_bytes, 8192);
	ck_assert_str_eq(c->ipc.path, "/run/detd/detd.sock");
	ck_assert_int_eq(c->ipc.mode, 0660);
	ck_assert_uint_eq(c->n_streams, 0);
	ck_assert_ptr_null(c->source_path);
	cfg_free(c);
	cfg_free(NULL);
}
END_TEST

START_TEST(shipped_default_file)
{
	char path[4096];
	struct cfg *c = NULL;
	const char *root = getenv("DETD_SOURCE_ROOT");
	ck_assert_ptr_nonnull(root);
	snprintf(path, sizeof(path), "%s/config/detd.json", root);
	int r = cfg_load(path, &c, &errs);
	if (r)
		cfg_errors_print(&errs, path, stderr);
	ck_assert_int_eq(r, 0);
	ck_assert_uint_eq(c->n_streams, 1);
	ck_assert_str_eq(c->streams[0].id, "cam0");
	ck_assert_int_eq(c->streams[0].kind, CFG_SRC_URI);
	ck_assert(c->streams[0].loop);
	/* relative paths resolve against the config file's directory */
	ck_assert(c->model.path[0] == '/');
	ck_assert_ptr_nonnull(strstr(c->model.path, "/config/../models/traffic_model.tflite"));
	ck_assert_ptr_nonnull(strstr(c->model.labels, "/models/traffic_label_map.pbtxt"));
	ck_assert(strncmp(c->streams[0].uri, "file:///", 8) == 0);
	ck_assert_ptr_nonnull(strstr(c->streams[0].uri, "/models/traffic_frames.mp4"));
	ck_assert_ptr_nonnull(c->source_path);
	cfg_free(c);
}
END_TEST

START_TEST(shipped_examples)
{
	static const char *const files[] = {"config/examples/rtsp-multicam.json",
					    "config/examples/mobiledet-coco.json"};
	const char *root = getenv("DETD_SOURCE_ROOT");
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[4096];
		struct cfg *c = NULL;
		snprintf(path, sizeof(path), "%s/%s", root, files[i]);
		int r = cfg_load(path, &c, &errs);
		if (r)
			cfg_errors_print(&errs, path, stderr);
		ck_assert_int_eq(r, 0);
		ck_assert_uint_gt(c->n_streams, 0);
		cfg_free(c);
	}
}
END_TEST

START_TEST(full_stream_and_paths)
{
	struct cfg *c = NULL;
	const char *json =
		"{\"model\": {\"path\": \"m/x.tflite\", \"labels\": null, \"format\": \"tflite\"},"
		" \"ipc\": {\"mode\": \"0600\", \"group\": \"video\"},"
		" \"streams\": ["
		"  {\"id\": \"door\", \"type\": \"uri\", \"uri\": \"rtsp://cam/1\", \"rtsp_transport\": "
		"\"tcp\", \"latency_ms\": 100, \"fps\": 5, \"aspect\": \"letterbox\", "
		"\"stall_timeout_s\": 3, \"backoff_initial_s\": 0.5, \"backoff_max_s\": 8, "
		"\"enabled\": false},"
		"  {\"id\": \"usb\", \"type\": \"v4l2\"},"
		"  {\"id\": \"synthetic\", \"type\": \"test\", \"fps\": 0},"
		"  {\"id\": \"g\", \"type\": \"gst\", \"pipeline\": \"videotestsrc\"},"
		"  {\"id\": \"f\", \"uri\": \"/abs/v.mp4\", \"loop\": true}"
		"]}";
	ck_assert_int_eq(load(json, &c), 0);
	ck_assert_str_eq(c->model.path, "/base/m/x.tflite");
	ck_assert_str_eq(c->model.format, "tflite");
	ck_assert_int_eq(c->ipc.mode, 0600);
	ck_assert_str_eq(c->ipc.group, "video");
	ck_assert_uint_eq(c->n_streams, 5);
	const struct cfg_stream *s = cfg_stream_find(c, "door");
	ck_assert_ptr_eq(s, &c->streams[0]);
	ck_assert_str_eq(s->uri, "rtsp://cam/1"); /* with a scheme: untouched */
	ck_assert_int_eq(s->rtsp_transport, CFG_RTSP_TCP);
	ck_assert_int_eq(s->aspect, CFG_ASPECT_LETTERBOX);
	ck_assert_double_eq(s->fps, 5);
	ck_assert_double_eq(s->backoff_initial_s, 0.5);
	ck_assert(!s->enabled);
	ck_assert_str_eq(c->streams[1].device, "/dev/video0");
	ck_assert_int_eq(c->streams[1].kind, CFG_SRC_V4L2);
	ck_assert_str_eq(c->streams[2].pattern, "smpte");
	ck_assert_double_eq(c->streams[2].fps, 0);
	ck_assert_str_eq(c->streams[4].uri, "file:///abs/v.mp4");
	ck_assert_ptr_null(cfg_stream_find(c, "nope"));
	ck_assert_str_eq(cfg_source_kind_name(c->streams[3].kind), "gst");

	struct cfg_stream copy;
	ck_assert_int_eq(cfg_stream_copy(&copy, s), 0);
	ck_assert_str_eq(copy.id, "door");
	ck_assert_ptr_ne(copy.id, s->id);
	ck_assert_double_eq(copy.stall_timeout_s, 3);
	cfg_stream_clear(&copy);
	ck_assert_ptr_null(copy.id);
	cfg_free(c);
}
END_TEST

/* engine.xrt: a nested section with defaults, the path resolved like the
 * model's, its own errors with the full path; engine.backend checked
 * against the backends of this build. */
START_TEST(engine_xrt_and_backend)
{
	struct cfg *c = NULL;
	ck_assert_int_eq(load(minimal, &c), 0);
	ck_assert_int_eq(c->engine.xrt.device, 0);
	ck_assert_ptr_null(c->engine.xrt.xclbin);
	ck_assert_int_eq(c->engine.xrt.timeout_ms, 1000);
	cfg_free(c);
	ck_assert_int_eq(load("{\"model\":{\"path\":\"/m\"},\"engine\":{\"backend\":\"xrt-sim\","
			      "\"xrt\":{\"device\":2,\"xclbin\":\"fw/detd.xclbin\"}}}",
			      &c),
			 0);
	ck_assert_str_eq(c->engine.backend, "xrt-sim");
	ck_assert_int_eq(c->engine.xrt.device, 2);
	ck_assert_str_eq(c->engine.xrt.xclbin, "/base/fw/detd.xclbin");
	struct cfg *d = NULL;
	ck_assert_int_eq(load(minimal, &d), 0);
	struct cfg_changes ch;
	ck_assert_int_eq(cfg_diff(d, c, &ch), 0);
	bool seen = false;
	for (size_t i = 0; i < ch.n; i++)
		seen |= strcmp(ch.v[i].path, "engine.xrt.xclbin") == 0 && ch.v[i].restart;
	ck_assert(seen);
	cfg_changes_free(&ch);
	cfg_free(d);
	cfg_free(c);

	expect_one("{\"model\":{\"path\":\"/m\"},\"engine\":{\"xrt\":{\"device\":-1}}}",
		   "engine.xrt.device: must be an integer in [0, 63]");
	expect_one("{\"model\":{\"path\":\"/m\"},\"engine\":{\"xrt\":{\"bitstream\":\"x\"}}}",
		   "engine.xrt.bitstream: unknown key");
	expect_one("{\"model\":{\"path\":\"/m\"},\"engine\":{\"xrt\":3}}",
		   "engine.xrt: must be an object, not an integer");
	expect_one("{\"model\":{\"path\":\"/m\"},\"engine\":{\"backend\":\"gpu\"}}",
		   "engine.backend: unknown backend \"gpu\"");
	const char *xrt = "{\"model\":{\"path\":\"/m\"},\"engine\":{\"backend\":\"xrt\"}}";
#if DETD_HAVE_XRT
	ck_assert_int_eq(load(xrt, &c), 0);
	ck_assert_str_eq(c->engine.backend, "xrt");
	cfg_free(c);
#else
	expect_one(xrt, "engine.backend: \"xrt\" is not available: this detd was built without XRT");
#endif
}
END_TEST

/* Each kind of invalid field, one at a time. */
START_TEST(invalid_wrong_type_bool)
{
	expect_one("{\"model\":{\"path\":\"/m\"},\"http\":{\"enabled\":1}}",
		   "http.enabled: must be a boolean");
}
END_TEST

START_TEST(invalid_int_range)
{
	expect_one("{\"model\":{\"path\":\"/m\"},\"engine\":{\"max_batch\":65}}",
		   "engine.max_batch: must be an integer in [1, 64]");
}
END_TEST

START_TEST(invalid_int_given_fraction)
{
	expect_one("{\"model\":{\"path\":\"/m\"},\"http\":{\"port\":80.5}}",
		   "http.port: must be an integer in [0, 65535]");
}
END_TEST

START_TEST(invalid_number_range_exclusive)
{
	expect_one("{\"model\":{\"path\":\"/m\"},\"streams\":[{\"id\":\"a\",\"uri\":\"x\","
		   "\"fps\":121}]}",
		   "streams[0].fps: must be a number in (0, 120]");
	expect_one("{\"model\":{\"path\":\"/m\"},\"streams\":[{\"id\":\"a\",\"uri\":\"x\","
		   "\"stall_timeout_s\":0}]}",
		   "streams[0].stall_timeout_s: must be a number in (0, 3600]");
	expect_one("{\"model\":{\"path\":\"/m\"},\"engine\":{\"min_score\":\"high\"}}",
		   "engine.min_score: must be a number in [0, 1]");
}
END_TEST

START_TEST(invalid_enum)
{
	expect_one("{\"model\":{\"path\":\"/m\"},\"log\":{\"level\":\"loud\"}}",
		   "log.level: must be one of \"error\", \"warn\", \"info\", \"debug\"");
	expect_one("{\"model\":{\"path\":\"/m\"},\"streams\":[{\"id\":\"a\",\"type\":\"ftp\"}]}",
		   "streams[0].type: must be one of");
}
END_TEST

START_TEST(invalid_strings)
{
	expect_one("{\"model\":{\"path\":\"\"}}", "model.path: must not be empty");
	expect_one("{\"model\":{\"path\":7}}", "model.path: must be a string, not an integer");
	expect_one("{\"model\":{\"path\":null}}", "model.path: must be a string");
	expect_one("{\"model\":{\"path\":\"/m\"},\"streams\":[{\"id\":\"a b\",\"uri\":\"x\"}]}",
		   "streams[0].id: must be 1 to 63 characters");
	expect_one("{\"model\":{\"path\":\"/m\"},\"ipc\":{\"mode\":\"0999\"}}",
		   "ipc.mode: must be an octal permission string");
	expect_one("{\"model\":{\"path\":\"/m\"},\"ipc\":{\"mode\":438}}", "ipc.mode:");
}
END_TEST

START_TEST(invalid_required_and_structure)
{
	expect_one("{}", "model.path: required");
	expect_one("{\"model\":{\"path\":\"/m\"},\"streams\":[{\"uri\":\"x\"}]}",
		   "streams[0].id: required");
	expect_one("{\"model\":{\"path\":\"/m\"},\"streams\":[{\"id\":\"a\"}]}",
		   "streams[0].uri: required with \"type\": \"uri\"");
	expect_one("{\"model\":{\"path\":\"/m\"},\"streams\":{}}", "streams: must be an array");
	expect_one("{\"model\":{\"path\":\"/m\"},\"http\":[]}", "http: must be an object");
	expect_one("[1]", "(top): must be an object");
}
END_TEST

START_TEST(invalid_unknown_keys)
{
	expect_one("{\"model\":{\"path\":\"/m\"},\"extra\":1}", "extra: unknown key");
	expect_one("{\"model\":{\"path\":\"/m\",\"colour\":\"red\"}}", "model.colour: unknown key");
	expect_one("{\"model\":{\"path\":\"/m\"},\"streams\":[{\"id\":\"a\",\"uri\":\"x\",\"fsp\":3}]}",
		   "streams[0].fsp: unknown key");
}
END_TEST

START_TEST(invalid_cross_field)
{
	expect_one("{\"model\":{\"path\":\"/m\"},\"streams\":[{\"id\":\"a\",\"uri\":\"x\"},"
		   "{\"id\":\"a\",\"uri\":\"y\"}]}",
		   "streams[1].id: \"a\" is already used by streams[0]");
	expect_one("{\"model\":{\"path\":\"/m\"},\"streams\":[{\"id\":\"a\",\"type\":\"v4l2\","
		   "\"uri\":\"x\"}]}",
		   "streams[0].uri: only allowed with \"type\": \"uri\"");
	expect_one("{\"model\":{\"path\":\"/m\"},\"streams\":[{\"id\":\"a\",\"uri\":\"x\","
		   "\"backoff_initial_s\":10,\"backoff_max_s\":5}]}",
		   "streams[0].backoff_max_s: must be >= backoff_initial_s");
	expect_one("{\"model\":{\"path\":\"/m\"},\"ipc\":{\"client_buffer_bytes\":100000,"
		   "\"client_hard_limit_bytes\":5000}}",
		   "ipc.client_hard_limit_bytes: must be >=");
}
END_TEST

START_TEST(invalid_json_syntax)
{
	expect_one("{\"model\":\n{\"path\":\"/m\",}\n,}", "line 2: invalid JSON");
	expect_one("{\"model\":{\"path\":\"/m\"}} trailing", "line 1: invalid JSON");
	expect_one("{\"model\":{\"path\":\"/m\"}", "invalid JSON: unexpected end of input");
}
END_TEST

START_TEST(three_errors_at_once)
{
	struct cfg *c = NULL;
	const char *json = "{\"model\": {\"path\": \"/m\"},"
			   " \"engine\": {\"workers\": 0},"
			   " \"streams\": [{\"id\": \"a\", \"uri\": \"x\"},"
			   "               {\"id\": \"b\", \"uri\": \"y\", \"fps\": 500}],"
			   " \"colour\": \"red\"}";
	ck_assert_int_eq(load(json, &c), -EINVAL);
	ck_assert_ptr_null(c);
	dump_errors();
	ck_assert_uint_eq(errs.n, 3);
	ck_assert(has_error("engine.workers: must be an integer in [1, 16]"));
	ck_assert(has_error("streams[1].fps: must be a number in (0, 120]"));
	ck_assert(has_error("colour: unknown key"));
}
END_TEST

START_TEST(file_errors)
{
	struct cfg *c = NULL;
	ck_assert_int_eq(cfg_load("/nonexistent/detd.json", &c, &errs), -ENOENT);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_ptr_nonnull(strstr(errs.msg[0], "cannot open"));
	ck_assert_ptr_null(c);
}
END_TEST

START_TEST(reload_diff)
{
	struct cfg *a = NULL, *b = NULL;
	struct cfg_changes ch;
	const char *ja = "{\"model\":{\"path\":\"/m\"},\"engine\":{\"workers\":1,\"min_score\":0.5},"
			 "\"streams\":[{\"id\":\"a\",\"uri\":\"x\"},{\"id\":\"gone\",\"uri\":\"y\"}]}";
	const char *jb = "{\"model\":{\"path\":\"/m\"},\"engine\":{\"workers\":2,\"min_score\":0.7},"
			 "\"log\":{\"level\":\"debug\"},"
			 "\"streams\":[{\"id\":\"a\",\"uri\":\"x\",\"fps\":5},{\"id\":\"new\",\"uri\":\"z\"}]}";
	ck_assert_int_eq(load(ja, &a), 0);
	ck_assert_int_eq(load(jb, &b), 0);
	ck_assert_int_eq(cfg_diff(a, b, &ch), 0);
	for (size_t i = 0; i < ch.n; i++)
		fprintf(stderr, "  %s %s%s\n", ch.v[i].path, ch.v[i].what,
			ch.v[i].restart ? " (restart)" : "");
	ck_assert_uint_eq(ch.n, 6);
	ck_assert_uint_eq(ch.n_restart, 1);
	bool seen[6] = {0};
	for (size_t i = 0; i < ch.n; i++) {
		const struct cfg_change *x = &ch.v[i];
		if (!strcmp(x->path, "engine.workers") && x->restart)
			seen[0] = true;
		if (!strcmp(x->path, "engine.min_score") && !x->restart)
			seen[1] = true;
		if (!strcmp(x->path, "log.level") && !x->restart)
			seen[2] = true;
		if (!strcmp(x->path, "streams[a].fps") && !strcmp(x->what, "changed"))
			seen[3] = true;
		if (!strcmp(x->path, "streams[gone]") && !strcmp(x->what, "removed"))
			seen[4] = true;
		if (!strcmp(x->path, "streams[new]") && !strcmp(x->what, "added"))
			seen[5] = true;
	}
	for (int i = 0; i < 6; i++)
		ck_assert_msg(seen[i], "change %d missing", i);
	cfg_changes_free(&ch);

	/* the reloaded config keeps the running value of what needs a restart */
	ck_assert_int_eq(cfg_keep_restart_fields(b, a), 0);
	ck_assert_int_eq(b->engine.workers, 1);
	ck_assert_double_eq(b->engine.min_score, 0.7);
	ck_assert_str_eq(b->log.level, "debug");
	ck_assert_int_eq(cfg_diff(a, b, &ch), 0);
	ck_assert_uint_eq(ch.n_restart, 0);
	cfg_changes_free(&ch);

	/* identical configs: no change */
	ck_assert_int_eq(cfg_diff(a, a, &ch), 0);
	ck_assert_uint_eq(ch.n, 0);
	cfg_changes_free(&ch);
	cfg_free(a);
	cfg_free(b);
}
END_TEST

START_TEST(one_stream_object)
{
	struct cfg *c = NULL;
	struct cfg_stream s;
	struct cfg_errors e;
	const char *ok = "{\"id\": \"cam9\", \"uri\": \"v.mp4\", \"fps\": 2}";
	const char *dup = "{\"id\": \"a\", \"uri\": \"v.mp4\"}";
	const char *bad = "{\"id\": \"x\", \"uri\": 3, \"fps\": -1, \"zoom\": 2}";

	ck_assert_int_eq(load("{\"model\":{\"path\":\"/m\"},\"streams\":[{\"id\":\"a\",\"uri\":\"x\"}]}",
			      &c),
			 0);
	ck_assert_int_eq(cfg_stream_parse(ok, strlen(ok), c, &s, &e), 0);
	ck_assert_str_eq(s.id, "cam9");
	ck_assert_double_eq(s.fps, 2);
	ck_assert(strncmp(s.uri, "file://", 7) == 0);
	cfg_stream_clear(&s);

	ck_assert_int_eq(cfg_stream_parse(dup, strlen(dup), c, &s, &e), -EINVAL);
	ck_assert_uint_eq(e.n, 1);
	ck_assert_ptr_nonnull(strstr(e.msg[0], "id: \"a\" is already used"));
	ck_assert_ptr_null(s.id);

	ck_assert_int_eq(cfg_stream_parse(bad, strlen(bad), c, &s, &e), -EINVAL);
	ck_assert_uint_eq(e.n, 3);
	/* paths are relative to the object: no "streams[...]" prefix, no leading dot */
	ck_assert(strncmp(e.msg[0], "uri:", 4) == 0 || strncmp(e.msg[0], "fps:", 4) == 0 ||
		  strncmp(e.msg[0], "zoom:", 5) == 0);
	ck_assert_int_eq(cfg_stream_parse("{", 1, NULL, &s, &e), -EINVAL);
	/* without a config, relative paths resolve against the working directory */
	char cwd[4096], want[4200];
	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	snprintf(want, sizeof(want), "file://%s/v.mp4", cwd);
	ck_assert_int_eq(cfg_stream_parse(dup, strlen(dup), NULL, &s, &e), 0);
	ck_assert_str_eq(s.uri, want);
	cfg_stream_clear(&s);
	cfg_free(c);
}
END_TEST

START_TEST(too_many_errors_are_counted)
{
	char json[8192];
	size_t len = 0;
	struct cfg *c = NULL;
	len += (size_t)snprintf(json + len, sizeof(json) - len, "{\"model\":{\"path\":\"/m\"}");
	for (int i = 0; i < CFG_MAX_ERRORS + 5; i++)
		len += (size_t)snprintf(json + len, sizeof(json) - len, ",\"bad%d\":1", i);
	snprintf(json + len, sizeof(json) - len, "}");
	ck_assert_int_eq(load(json, &c), -EINVAL);
	ck_assert_uint_eq(errs.n, CFG_MAX_ERRORS);
	ck_assert_uint_eq(errs.dropped, 5);
}
END_TEST

START_TEST(mutations_never_crash)
{
	/* Every truncation and a byte substitution at every position of a full
	 * config must either load or fail with at least one error, never crash
	 * or leak (the sanitizer build runs this too). */
	const char *json =
		"{\"log\":{\"level\":\"debug\"},\"model\":{\"path\":\"m\",\"labels\":null},"
		"\"engine\":{\"workers\":2,\"min_score\":0.25},\"ipc\":{\"mode\":\"0600\"},"
		"\"streams\":[{\"id\":\"a\",\"uri\":\"x\",\"fps\":5},"
		"{\"id\":\"t\",\"type\":\"test\"}]}";
	size_t len = strlen(json);
	char *buf = malloc(len + 1);
	static const char subst[] = {'"', '1', '}', ']', ',', 'x', '-', ':', '[', '{'};
	size_t loaded = 0, failed = 0;

	ck_assert_ptr_nonnull(buf);
	for (size_t cut = 0; cut <= len; cut++) {
		struct cfg *c = NULL;
		memcpy(buf, json, cut);
		buf[cut] = '\0';
		int r = load(buf, &c);
		ck_assert(r == 0 || (r == -EINVAL && errs.n > 0));
		r == 0 ? loaded++ : failed++;
		cfg_free(c);
	}
	for (size_t pos = 0; pos < len; pos++) {
		for (size_t k = 0; k < sizeof(subst); k++) {
			struct cfg *c = NULL;
			memcpy(buf, json, len + 1);
			buf[pos] = subst[k];
			int r = load(buf, &c);
			ck_assert(r == 0 || (r == -EINVAL && errs.n > 0));
			r == 0 ? loaded++ : failed++;
			cfg_free(c);
		}
	}
	ck_assert_uint_gt(loaded, 0); /* e.g. the full text and harmless substitutions */
	ck_assert_uint_gt(failed, 0);
	free(buf);
}
END_TEST

START_TEST(too_many_streams)
{
	char json[16384];
	size_t len = 0;
	struct cfg *c = NULL;
	len += (size_t)snprintf(json + len, sizeof(json) - len,
				"{\"model\":{\"path\":\"/m\"},\"streams\":[");
	for (int i = 0; i < CFG_MAX_STREAMS + 1; i++)
		len += (size_t)snprintf(json + len, sizeof(json) - len, "%s{\"id\":\"s%d\",\"uri\":\"x\"}",
					i ? "," : "", i);
	snprintf(json + len, sizeof(json) - len, "]}");
	ck_assert_int_eq(load(json, &c), -EINVAL);
	ck_assert(has_error("streams: at most 64 streams"));
}
END_TEST

START_TEST(mqtt_section)
{
	struct cfg *c = NULL, *d = NULL;
	struct cfg_changes ch;
	char host[64];
	int port;
	bool tls;

	ck_assert_int_eq(load(minimal, &c), 0);
	ck_assert(!c->mqtt.enabled);
	ck_assert_str_eq(c->mqtt.broker, "mqtt://127.0.0.1:1883");
	ck_assert_int_eq(c->mqtt.qos, 0);
	ck_assert_uint_eq(c->mqtt.queue_messages, 1000);
	ck_assert_uint_eq(c->mqtt.streams.n, 0);
	cfg_free(c);

	ck_assert_int_eq(load("{\"model\":{\"path\":\"/m\"},\"mqtt\":{\"broker\":"
			      "\"mqtts://broker.lan:8884\",\"ca_file\":\"ca.pem\",\"username\":\"u\","
			      "\"password_file\":\"pw\",\"streams\":[\"cam0\",\"cam1\"],"
			      "\"labels\":[\"stop sign\"],\"min_score\":0.6}}",
			      &c),
			 0);
	ck_assert_str_eq(c->mqtt.ca_file, "/base/ca.pem");
	ck_assert_str_eq(c->mqtt.password_file, "/base/pw");
	ck_assert_uint_eq(c->mqtt.streams.n, 2);
	ck_assert(cfg_strlist_has(&c->mqtt.streams, "cam1"));
	ck_assert(!cfg_strlist_has(&c->mqtt.streams, "cam2"));
	ck_assert_str_eq(c->mqtt.labels.v[0], "stop sign");
	ck_assert_int_eq(cfg_mqtt_broker_parse(c->mqtt.broker, host, sizeof(host), &port, &tls), 0);
	ck_assert_str_eq(host, "broker.lan");
	ck_assert_int_eq(port, 8884);
	ck_assert(tls);
	ck_assert_int_eq(cfg_mqtt_broker_parse("mqtt://[::1]", host, sizeof(host), &port, &tls), 0);
	ck_assert_str_eq(host, "::1");
	ck_assert_int_eq(port, 0);
	ck_assert_int_eq(cfg_mqtt_broker_parse("tcp://x:1", host, sizeof(host), &port, &tls),
			 -EINVAL);
	ck_assert_int_eq(cfg_mqtt_broker_parse("mqtt://x:99999", host, sizeof(host), &port, &tls),
			 -EINVAL);

	/* filters reload, the broker needs a restart */
	ck_assert_int_eq(load("{\"model\":{\"path\":\"/m\"},\"mqtt\":{\"broker\":"
			      "\"mqtts://other\",\"username\":\"u\",\"password_file\":\"pw\","
			      "\"ca_file\":\"ca.pem\",\"streams\":[\"cam0\"],"
			      "\"labels\":[\"stop sign\"],\"min_score\":0.6}}",
			      &d),
			 0);
	ck_assert_int_eq(cfg_diff(c, d, &ch), 0);
	bool broker = false, streams = false;
	for (size_t i = 0; i < ch.n; i++) {
		broker |= !strcmp(ch.v[i].path, "mqtt.broker") && ch.v[i].restart;
		streams |= !strcmp(ch.v[i].path, "mqtt.streams") && !ch.v[i].restart;
	}
	ck_assert(broker && streams);
	ck_assert_uint_eq(ch.n, 2);
	cfg_changes_free(&ch);
	cfg_free(c);
	cfg_free(d);

	expect_one("{\"model\":{\"path\":\"/m\"},\"mqtt\":{\"broker\":\"tcp://x\"}}",
		   "mqtt.broker: must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]");
	expect_one("{\"model\":{\"path\":\"/m\"},\"mqtt\":{\"ca_file\":\"x\"}}",
		   "mqtt.ca_file: TLS files need an mqtts:// broker");
	expect_one("{\"model\":{\"path\":\"/m\"},\"mqtt\":{\"password_file\":\"x\"}}",
		   "mqtt.password_file: needs mqtt.username");
	expect_one("{\"model\":{\"path\":\"/m\"},\"mqtt\":{\"qos\":2}}",
		   "mqtt.qos: must be an integer in [0, 1]");
	expect_one("{\"model\":{\"path\":\"/m\"},\"mqtt\":{\"streams\":[\"ok\",\"bad id\"]}}",
		   "mqtt.streams[1]: must be 1 to 63 characters");
	expect_one("{\"model\":{\"path\":\"/m\"},\"mqtt\":{\"labels\":\"person\"}}",
		   "mqtt.labels: must be an array of at most 256 strings");
	expect_one("{\"model\":{\"path\":\"/m\"},\"mqtt\":{\"topic_prefix\":\"a/#\"}}",
		   "mqtt.topic_prefix: must be 1 to 128 bytes");
	expect_one("{\"model\":{\"path\":\"/m\"},\"mqtt\":{\"reconnect_min_s\":10,"
		   "\"reconnect_max_s\":5}}",
		   "mqtt.reconnect_max_s: must be >= reconnect_min_s");
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("config");
	TCase *t = tcase_create("config");
	tcase_add_test(t, defaults_from_minimal);
	tcase_add_test(t, engine_xrt_and_backend);
	tcase_add_test(t, shipped_default_file);
	tcase_add_test(t, shipped_examples);
	tcase_add_test(t, full_stream_and_paths);
	tcase_add_test(t, invalid_wrong_type_bool);
	tcase_add_test(t, invalid_int_range);
	tcase_add_test(t, invalid_int_given_fraction);
	tcase_add_test(t, invalid_number_range_exclusive);
	tcase_add_test(t, invalid_enum);
	tcase_add_test(t, invalid_strings);
	tcase_add_test(t, invalid_required_and_structure);
	tcase_add_test(t, invalid_unknown_keys);
	tcase_add_test(t, invalid_cross_field);
	tcase_add_test(t, invalid_json_syntax);
	tcase_add_test(t, three_errors_at_once);
	tcase_add_test(t, file_errors);
	tcase_add_test(t, reload_diff);
	tcase_add_test(t, one_stream_object);
	tcase_add_test(t, too_many_errors_are_counted);
	tcase_add_test(t, mutations_never_crash);
	tcase_add_test(t, too_many_streams);
	tcase_add_test(t, mqtt_section);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
