/*
 * bench_codenet.c — `detd-bench codenet-ops`: the CoDeNet operator study.
 *
 * The table puts the engine's operators (detd-codenet-ops) next to
 * torchvision.ops.deform_conv2d on the same shapes and thread counts, so the
 * driver is the Python script tools/codenet/bench_ops.py (it needs Debian's
 * python3-torch); this mode only runs it with this build's paths.  Extra
 * arguments are passed on (--threads, --shapes, --reps, --models).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench_codenet.h"

#ifndef DETD_SOURCE_ROOT
#define DETD_SOURCE_ROOT "."
#endif
#ifndef DETD_BUILD_ROOT
#define DETD_BUILD_ROOT "build"
#endif

int bench_codenet_main(int argc, char **argv)
{
	static const char *py = "/usr/bin/python3";
	const char *args[64];
	int n = 0;
	args[n++] = py;
	args[n++] = DETD_SOURCE_ROOT "/tools/codenet/bench_ops.py";
	args[n++] = "--build";
	args[n++] = DETD_BUILD_ROOT;
	for (int i = 1; i < argc && n < 63; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	execv(py, (char *const *)args);
	fprintf(stderr, "detd-bench codenet-ops: cannot run %s: %s\n", py, strerror(errno));
	return 1;
}
