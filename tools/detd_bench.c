/*
 * detd_bench.c — detd-bench: benchmarks.  Modes are separate source files
 * with a <mode>_main(argc, argv) entry; this file only dispatches.
 *   detd-bench engine …   one model on the CPU engine, per-op latency (bench_engine.c)
 */
#include <stdio.h>
#include <string.h>

#include "bench_engine.h"

static void usage(FILE *to)
{
	fprintf(to, "usage: detd-bench MODE [OPTIONS]\n"
		    "modes:\n"
		    "  engine   one model on the engine: per-op and total latency, frames/s, RSS\n"
		    "run `detd-bench MODE --help` for the options of a mode\n");
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "engine") == 0)
		return bench_engine_main(argc - 1, argv + 1);
	fprintf(stderr, "detd-bench: unknown mode '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
