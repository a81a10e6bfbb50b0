/*
 * detd_bench.c — detd-bench: benchmarks.  Modes are separate source files
 * with a <mode>_main(argc, argv) entry; this file only dispatches.
 *   detd-bench e2e …   the data path: sources → batcher → workers (bench_e2e.c)
 *   detd-bench engine …   one model on the CPU engine, per-op latency (bench_engine.c)
 *   detd-bench codenet-ops …  CoDeNet operator study vs torchvision (bench_codenet.c)
 *   detd-bench fpga-model …   performance MODEL of the FPGA kernel (bench_fpga.c)
 */
#include <stdio.h>
#include <string.h>

#include "bench_codenet.h"
#include "bench_e2e.h"
#include "bench_engine.h"
#include "bench_fpga.h"

static void usage(FILE *to)
{
	fprintf(to, "usage: detd-bench MODE [OPTIONS]\n"
		    "modes:\n"
		    "  e2e      N streams of the sample video through batcher and workers\n"
		    "  engine   one model on the engine: per-op and total latency, frames/s, RSS\n"
		    "  codenet-ops  CoDeNet operators vs torchvision.ops.deform_conv2d (table)\n"
		    "  fpga-model   performance/resource MODEL of the FPGA kernel on a part\n"
		    "run `detd-bench MODE --help` for the options of a mode\n");
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "e2e") == 0)
		return bench_e2e_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "engine") == 0)
		return bench_engine_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "codenet-ops") == 0)
		return bench_codenet_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "fpga-model") == 0)
		return bench_fpga_main(argc - 1, argv + 1);
	fprintf(stderr, "detd-bench: unknown mode '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
