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
#include "publish.h"

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
};
static struct glue glue;

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
	publish_stream_state(ud, id, name, error && error[0] ? error : NULL);
}

/* Loop: POST /streams. */
static int stream_add(const char *body, size_t len, char *id_out, size_t id_len, char *err,
		      size_t errlen, void *ud)
{
	struct glue *g = ud;
	struct flow *f = flow_module_flow(g->flow);
	if (!f) {
		snprintf(err, errlen, "the data path is not running");
		return -EAGAIN;
	}
	struct cfg_errors *errs = calloc(1, sizeof(*errs));
	struct cfg_stream cs = {0};
	if (!errs)
		return -ENOMEM;
	int r = cfg_stream_parse(body, len, daemon_cfg(g->d), &cs, errs);
	if (r < 0) {
		snprintf(err, errlen, "%s", errs->n ? errs->msg[0] : "invalid stream");
		free(errs);
		return r;
	}
	free(errs);
	r = flow_stream_add(f, &cs);
	if (r == 0)
		snprintf(id_out, id_len, "%s", cs.id);
	else
		snprintf(err, errlen, "stream %s: %s", cs.id, strerror(-r));
	cfg_stream_clear(&cs);
	return r;
}

/* Loop: DELETE /streams/{id}. */
static int stream_remove(const char *id, char *err, size_t errlen, void *ud)
{
	struct glue *g = ud;
	struct flow *f = flow_module_flow(g->flow);
	int r = f ? flow_stream_remove(f, id) : -EAGAIN;
	if (r < 0)
		snprintf(err, errlen, "stream %s: %s", id, strerror(-r));
	return r;
}

/* Loop: GET /streams/{id} gets the pipeline and batcher numbers too. */
static void stream_describe(const char *id, struct json_object *entry, void *ud)
{
	struct glue *g = ud;
	struct flow *f = flow_module_flow(g->flow);
	if (f)
		flow_describe_stream(f, id, entry);
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

	/* The data path comes after the publishers: it starts last, stops first
	 * and flushes its last results into the bus. */
	flow_o.on_result = publish_result;
	flow_o.on_state = stream_state;
	flow_o.ud = pub;
	r = flow_module_add(d, &flow_o, &flow);
	if (r < 0) {
		log_error("main", "cannot register the data path: %s", strerror(-r));
		publish_free(pub);
		daemon_destroy(d);
		return EXIT_FAILURE;
	}
	glue.d = d;
	glue.flow = flow;
	publish_set_stream_ops(pub, &(struct publish_stream_ops){
		.add = stream_add, .remove = stream_remove, .describe = stream_describe,
		.ud = &glue});
	metrics_add_collector(publish_metrics(pub), flow_metrics, &glue);

	code = daemon_run(d);
	if (code == DAEMON_EXIT_FORCED) {
		/* Some module still runs threads: tearing down under them is unsafe. */
		log_error("main", "exiting without cleanup");
		_exit(code);
	}
	flow_module_free(flow);
	publish_free(pub); /* uses the loop: before the daemon frees it */
	daemon_destroy(d);
	return code;
}
