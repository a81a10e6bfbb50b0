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

#include "config.h"
#include "daemon.h"
#include "detd-build.h"
#include "log.h"

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
		"  -V, --version          print the version and exit\n"
		"  -h, --help             this help\n\n"
		"Signals: SIGTERM/SIGINT stop gracefully, SIGHUP reloads the configuration.\n"
		"Exit codes: 0 ok, 1 failure, 2 usage, 70 stop timed out, 78 invalid config.\n");
}

static int check_config(const char *path)
{
	struct cfg_errors *errs = calloc(1, sizeof(*errs));
	struct cfg *c = NULL;
	int r;

	if (!errs)
		return EXIT_FAILURE;
	r = cfg_load(path, &c, errs);
	if (r < 0) {
		cfg_errors_print(errs, path, stderr);
		fprintf(stderr, "%s: %zu error%s\n", path, errs->n + errs->dropped,
			errs->n + errs->dropped == 1 ? "" : "s");
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
	enum { OPT_PORT_FILE = 256 };
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 't'},
		{"foreground", no_argument, NULL, 'f'},
		{"log-level", required_argument, NULL, 'l'},
		{"port-file", required_argument, NULL, OPT_PORT_FILE},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct daemon_opts opts = {.config_path = DEFAULT_CONFIG};
	bool check = false;
	struct daemon *d = NULL;
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

	code = daemon_run(d);
	if (code == DAEMON_EXIT_FORCED) {
		/* Some module still runs threads: tearing down under them is unsafe. */
		log_error("main", "exiting without cleanup");
		_exit(code);
	}
	daemon_destroy(d);
	return code;
}
