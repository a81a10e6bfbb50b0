/*
 * main.c — detd's command line and the wiring of its modules.
 *
 * Runs on the main thread.  This is the ONE place that knows which
 * subsystems exist: each one is registered as a struct daemon_module (see
 * daemon.h) in the order it must start; they stop in reverse.
 *
 * detd always runs in the foreground (systemd's Type=notify supervises it;
 * classic double-fork daemonizing would only hide the process from it).
 * --foreground is accepted for familiarity and scripts.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "config.h"
#include "daemon.h"
#include "detd-build.h"
#include "flow.h"
#include "log.h"
#include "metrics.h"
#include "pipeline.h"
#include "mqtt.h"
#include "publish.h"
#include "view.h"

#define DEFAULT_CONFIG DETD_SYSCONFDIR "/detd/detd.json"

static void usage(FILE *to)
{
	fprintf(to,
		"Usage: detd [OPTIONS]\n"
		"Edge video object-detection daemon.\n\n"
		"  -c, --config FILE      configuration file (default " DEFAULT_CONFIG ")\n"
		"  -t, --check-config [FILE]  validate the configuration and exit (0 ok, 78 invalid)\n"
		"  -f, --foreground       run in the foreground (detd always does)\n"
		"  -l, --log-level LEVEL  error|warn|info|debug; overrides log.level\n"
		"      --port-file FILE   write the bound HTTP port to FILE once listening\n"
		"      --print-detections[=text|json]  print every result on stdout\n"
		"                         (text: \"cam0 #12 pickup_suv_van 0.50 [551,302 712,410]\")\n"
		"      --dump-frames DIR  debug: write each decoded model input to DIR\n"
		"  -V, --version          print the version and exit\n"
		"  -h, --help             this help\n\n"
		"Signals: SIGTERM/SIGINT stop gracefully, SIGHUP reloads the configuration.\n"
		"Exit codes: 0 ok, 1 failure, 2 usage, 70 stop timed out, 78 invalid config.\n");
}

#if defined(__SANITIZE_ADDRESS__)
/*
 * Sanitizer builds only.  GLib (loaded for GStreamer) allocates a block in
 * its library constructor and keeps it for the life of the process; LSan
 * reports it as a leak.  Suppress exactly that (allocations made while the
 * dynamic loader runs constructors), which needs full malloc stacks.  Set
 * here rather than in the environment so that every way of starting detd
 * (systemd-socket-activate clears the environment) gets it.
 */
const char *__asan_default_options(void);
const char *__lsan_default_suppressions(void);
const char *__asan_default_options(void)
{
	return "fast_unwind_on_malloc=0";
}
const char *__lsan_default_suppressions(void)
{
	return "leak:_dl_init\n";
}
#endif

/* ---- glue between the data path (flow.h) and the publishers (publish.h) ---- */

struct glue {
	struct daemon *d;
	struct flow_module *flow;
	struct publish *pub;
	struct view *view;
};
static struct glue glue;

/* Loop: a result goes to the publishers and to the live view. */
static void on_result(struct det_result *r, void *ud)
{
	struct glue *g = ud;
	publish_result(r, g->pub);
	view_result(g->view, r);
}

/* Pipeline thread: the pipeline's states in the publishers' words. */
static void stream_state(const char *id, int old_state, int new_state, const char *error,
			 void *ud)
{
	(void)old_state;
	static const char *const names[] = {
		[PIPE_STATE_STARTING] = "starting",	[PIPE_STATE_LIVE] = "running",
		[PIPE_STATE_STALLED] = "stalled",	[PIPE_STATE_BACKOFF] = "reconnecting",
		[PIPE_STATE_RECONNECTING] = "reconnecting", [PIPE_STATE_ENDED] = "stopped",
		[PIPE_STATE_DISABLED] = "stopped",
	};
	const char *name = new_state >= 0 && new_state <= PIPE_STATE_DISABLED ? names[new_state]
									    : "error";
	publish_stream_state(((struct glue *)ud)->pub, id, name, error && error[0] ? error : NULL);
}

/* Loop: POST /streams.  The stream set (flow_module.c) decides about ids
 * and the limit, so the parse does not look at the file's streams. */
static int stream_add(const char *body, size_t len, char *id_out, size_t id_len, char *err,
		      size_t errlen, void *ud)
{
	struct glue *g = ud;
	struct cfg_errors *errs = calloc(1, sizeof(*errs));
	struct cfg_stream cs = {0};
	if (!errs)
		return -ENOMEM;
	struct cfg paths = *daemon_cfg(g->d); /* relative paths: only source_path is read */
	paths.n_streams = 0;
	paths.streams = NULL;
	int r = cfg_stream_parse(body, len, &paths, &cs, errs);
	if (r < 0) {
		snprintf(err, errlen, "%s", errs->n ? errs->msg[0] : "invalid stream");
		free(errs);
		return r;
	}
	free(errs);
	/* A gst-launch fragment can read, write or connect anywhere the daemon
	 * can: over HTTP only when the operator said so (issue 15). */
	if (cs.kind == CFG_SRC_GST && !daemon_cfg(g->d)->http.allow_gst_streams) {
		snprintf(err, errlen, "\"type\":\"gst\" streams over HTTP need http.allow_gst_streams");
		cfg_stream_clear(&cs);
		return -EPERM;
	}
	r = flow_module_stream_add(g->flow, &cs, err, errlen);
	if (r == 0)
		snprintf(id_out, id_len, "%s", cs.id);
	cfg_stream_clear(&cs);
	return r == -ENOSPC ? -EEXIST : r; /* 409 as well: the set is full */
}

/* Loop: DELETE /streams/{id}. */
static int stream_remove(const char *id, char *err, size_t errlen, void *ud)
{
	struct glue *g = ud;
	return flow_module_stream_remove(g->flow, id, err, errlen);
}

/* Loop: GET /streams/{id} gets the running definition (the file's or the
 * one POSTed), its origin, and the pipeline and batcher numbers. */
static void stream_describe(const char *id, struct json_object *entry, void *ud)
{
	struct glue *g = ud;
	struct flow *f = flow_module_flow(g->flow);
	bool from_http = false;
	const struct cfg_stream *s = flow_module_stream(g->flow, id, &from_http);
	if (s) {
		json_object_object_add(entry, "type",
				       json_object_new_string(cfg_source_kind_name(s->kind)));
		const char *src = s->uri ? s->uri : s->device ? s->device : s->pipeline ? s->pipeline
											: s->pattern;
		json_object_object_add(entry, "source", src ? json_object_new_string(src) : NULL);
		json_object_object_add(entry, "enabled", json_object_new_boolean(s->enabled));
		json_object_object_add(entry, "origin",
				       json_object_new_string(from_http ? "http" : "config"));
	}
	if (f)
		flow_describe_stream(f, id, entry);
}

/* Loop: a reload of the file leaves streams decided at run time alone. */
static bool stream_runtime(const char *id, void *ud)
{
	struct glue *g = ud;
	return flow_module_stream_runtime(g->flow, id);
}

/* Scrape time (loop): the data path's drop counters and queue depths as
 * metrics, read from the same numbers /status shows. */
static void mirror_counts(struct metrics *m, const char *stream, const char *prefix,
			  struct json_object *counts)
{
	if (!counts || !json_object_is_type(counts, json_type_object))
		return;
	json_object_object_foreach(counts, reason, v)
	{
		char r[64];
		snprintf(r, sizeof(r), "%s%s", prefix, reason);
		metrics_counter_set(m, "detd_frames_dropped_total", json_object_get_double(v),
				    "stream", stream, "reason", r, NULL);
	}
}

static void flow_metrics(struct metrics *m, void *ud)
{
	struct glue *g = ud;
	struct flow *f = flow_module_flow(g->flow);
	if (!f)
		return;
	struct json_object *eng = json_object_new_object(), *st = json_object_new_object(), *v;
	flow_status_engine(eng, f);
	flow_status_streams(st, f);
	if (json_object_object_get_ex(eng, "queue_depth", &v))
		metrics_gauge_set(m, "detd_queue_depth", json_object_get_double(v), "queue",
				  "batcher", NULL);
	if (json_object_object_get_ex(eng, "in_flight", &v))
		metrics_gauge_set(m, "detd_queue_depth", json_object_get_double(v), "queue",
				  "inference", NULL);
	if (json_object_object_get_ex(eng, "result_queue", &v) &&
	    json_object_object_get_ex(v, "depth", &v))
		metrics_gauge_set(m, "detd_queue_depth", json_object_get_double(v), "queue",
				  "results", NULL);
	json_object_object_foreach(st, id, s)
	{
		struct json_object *p, *b, *r;
		if (json_object_object_get_ex(s, "pipeline", &p))
			mirror_counts(m, id, "pipeline_", json_object_object_get(p, "dropped"));
		if (json_object_object_get_ex(s, "batcher", &b))
			mirror_counts(m, id, "batcher_", json_object_object_get(b, "drops"));
		if (json_object_object_get_ex(s, "results", &r) &&
		    json_object_object_get_ex(r, "dropped_full", &v))
			metrics_counter_set(m, "detd_frames_dropped_total",
					    json_object_get_double(v), "stream", id, "reason",
					    "result_queue_full", NULL);
	}
	/* the one fallback path, from the same numbers as /status */
	struct json_object *h;
	if (json_object_object_get_ex(eng, "backend_health", &h)) {
		const char *name = json_object_get_string(json_object_object_get(h, "name"));
		metrics_gauge_set(m, "detd_backend_healthy",
				  json_object_get_boolean(json_object_object_get(h, "healthy")),
				  "backend", name, NULL);
		static const char *const ev[] = {"failures", "open_failures", "deadline_misses",
						 "fallback_runs", "probes"};
		for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]); i++)
			if (json_object_object_get_ex(h, ev[i], &v))
				metrics_counter_set(m, "detd_backend_events_total",
						    json_object_get_double(v), "backend", name,
						    "event", ev[i], NULL);
	}
	json_object_put(eng);
	json_object_put(st);
}

static int check_config(const char *path)
{
	struct cfg_errors *errs = calloc(1, sizeof(*errs));
	struct cfg *c = NULL;
	int r;

	if (!errs)
		return EXIT_FAILURE;
	r = cfg_load(path, &c, errs);
	if (r == 0)
		r = flow_check_model(c, errs); /* as deep as a start */
	if (r < 0) {
		cfg_errors_print(errs, path, stderr);
		fprintf(stderr, "%s: %zu error%s\n", path, errs->n + errs->dropped,
			errs->n + errs->dropped == 1 ? "" : "s");
		cfg_free(c);
		free(errs);
		return CFG_EXIT_CONFIG;
	}
	printf("%s: ok (%zu stream%s)\n", path, c->n_streams, c->n_streams == 1 ? "" : "s");
	cfg_free(c);
	free(errs);
	return 0;
}

int main(int argc, char **argv)
{
	enum { OPT_PORT_FILE = 256, OPT_PRINT, OPT_DUMP };
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 't'},
		{"foreground", no_argument, NULL, 'f'},
		{"log-level", required_argument, NULL, 'l'},
		{"port-file", required_argument, NULL, OPT_PORT_FILE},
		{"print-detections", optional_argument, NULL, OPT_PRINT},
		{"dump-frames", required_argument, NULL, OPT_DUMP},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	/* glibc gives each thread that mallocs its own arena (up to 8 per core),
	 * and the decoder, streaming and worker threads each keep freed frames
	 * in theirs: two arenas bound that at no measurable cost in contention
	 * (bench/README.md, e2e memory). */
	mallopt(M_ARENA_MAX, 2);
	struct daemon_opts opts = {.config_path = DEFAULT_CONFIG, .check_cfg = flow_check_model};
	bool check = false;
	struct daemon *d = NULL;
	struct flow_module_opts flow_o = {0};
	struct flow_module *flow = NULL;
	int opt, r, code;

	log_init();
	while ((opt = getopt_long(argc, argv, "c:tfl:Vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			opts.config_path = optarg;
			break;
		case 't':
			check = true;
			break;
		case 'f':
			break;
		case 'l':
			if (log_set_level_name(optarg) < 0) {
				fprintf(stderr, "detd: unknown log level '%s'\n", optarg);
				return 2;
			}
			opts.log_level = optarg;
			break;
		case OPT_PORT_FILE:
			opts.port_file = optarg;
			break;
		case OPT_PRINT:
			if (!optarg || strcmp(optarg, "text") == 0) {
				flow_o.print = FLOW_PRINT_TEXT;
			} else if (strcmp(optarg, "json") == 0) {
				flow_o.print = FLOW_PRINT_JSON;
			} else {
				fprintf(stderr, "detd: --print-detections=text|json\n");
				return 2;
			}
			break;
		case OPT_DUMP:
			flow_o.dump_dir = optarg;
			break;
		case 'V':
			printf("detd %s\n", DETD_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	/* `detd --check-config FILE` reads naturally: accept the file as operand. */
	if (check && optind + 1 == argc)
		opts.config_path = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, "detd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (check)
		return check_config(opts.config_path);

	r = daemon_create(&opts, &d);
	if (r == -EINVAL)
		return CFG_EXIT_CONFIG;
	if (r < 0) {
		log_error("main", "cannot start: %s", strerror(-r));
		return EXIT_FAILURE;
	}

	/*
	 * Modules, in start order (stop is the reverse).  Engine, sources,
	 * bus, ipc, ... register here as they land, e.g.
	 *   daemon_module_add(d, &(struct daemon_module){"engine", eng_mod_start, ...});
	 */

	struct publish *pub = NULL;
	r = publish_module_add(d, &pub);
	if (r < 0) {
		log_error("main", "cannot register the publishers: %s", strerror(-r));
		daemon_destroy(d);
		return EXIT_FAILURE;
	}

	/* The live view, then the sinks that read the bus (MQTT takes its
	 * snapshots from the view): they start after the bus and stop after
	 * the data path flushed its last results into it. */
	struct view *view = NULL;
	r = view_module_add(d, &view);
	if (r < 0) {
		log_error("main", "cannot register the live view: %s", strerror(-r));
		publish_free(pub);
		daemon_destroy(d);
		return EXIT_FAILURE;
	}
	struct mqtt *mqtt = NULL;
	r = mqtt_module_add(d, pub, view, &mqtt);
	if (r < 0) {
		log_error("main", "cannot register the MQTT sink: %s", strerror(-r));
		view_free(view);
		publish_free(pub);
		daemon_destroy(d);
		return EXIT_FAILURE;
	}

	/* The data path comes after the publishers: it starts last, stops first
	 * and flushes its last results into the bus. */
	glue.pub = pub;
	glue.view = view;
	flow_o.on_result = on_result;
	flow_o.on_state = stream_state;
	flow_o.ud = &glue;
	r = flow_module_add(d, &flow_o, &flow);
	if (r < 0) {
		log_error("main", "cannot register the data path: %s", strerror(-r));
		view_free(view);
		mqtt_free(mqtt);
		publish_free(pub);
		daemon_destroy(d);
		return EXIT_FAILURE;
	}
	glue.d = d;
	glue.flow = flow;
	publish_set_stream_ops(pub, &(struct publish_stream_ops){
		.add = stream_add, .remove = stream_remove, .describe = stream_describe,
		.runtime = stream_runtime, .ud = &glue});
	metrics_add_collector(publish_metrics(pub), flow_metrics, &glue);
	metrics_define(publish_metrics(pub), "detd_backend_healthy", METRICS_GAUGE,
		       "1 while the configured backend serves batches, 0 while cpu stands in",
		       NULL, 0);
	metrics_define(publish_metrics(pub), "detd_backend_events_total", METRICS_COUNTER,
		       "Backend failures, open failures, deadline misses, cpu fallback runs, "
		       "probes", NULL, 0);

	code = daemon_run(d);
	if (code == DAEMON_EXIT_FORCED) {
		/* Some module still runs threads: tearing down under them is unsafe. */
		log_error("main", "exiting without cleanup");
		_exit(code);
	}
	flow_module_free(flow);
	mqtt_free(mqtt);
	view_free(view);
	publish_free(pub); /* uses the loop: before the daemon frees it */
	daemon_destroy(d);
	return code;
}
