/*
 * testutil.h — boilerplate shared by the Check unit tests.
 *
 * Skipping (the one convention of tests/unit).  Check has no per-case skip,
 * and a case that returns early when its fixture is absent is counted as a
 * pass.  So a case that needs something that may be missing here
 * (../shared/data, generated fixtures, the RTSP test server, a CPU feature)
 * goes into a Suite of its own, and meson registers that suite as a test of
 * its own: the executable run with the suite's name as its argument.
 * tu_main() runs the suite named by argv[1] (the default one without an
 * argument); when the suite's requirement is missing it prints
 * "SKIP: <suite>: <reason>" and exits 77, which meson reports as SKIP.
 * Inside such a suite the requirement is asserted, never returned from.
 */
#ifndef DETD_TESTUTIL_H
#define DETD_TESTUTIL_H

#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TU_EXIT_SKIP 77

/* Run every test of s (Check's default fork mode, CK_NORMAL output) and
 * return the process exit status: EXIT_FAILURE if any test failed. */
static inline int run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* Print the reason and return the exit status meson shows as SKIP. */
static inline int tu_skip(const char *what, const char *why)
{
	printf("SKIP: %s: %s\n", what, why);
	fflush(stdout);
	return TU_EXIT_SKIP;
}

struct tu_suite {
	const char *name;              /* NULL: the default suite (run without argument) */
	Suite *(*make)(void);
	const char *(*missing)(void);  /* NULL, or returns NULL when all is there, else why not */
};

static inline int tu_main(int argc, char **argv, const struct tu_suite *v, size_t n)
{
	const char *want = argc > 1 ? argv[1] : NULL;
	for (size_t i = 0; i < n; i++) {
		if (want ? !v[i].name || strcmp(v[i].name, want) != 0 : v[i].name != NULL)
			continue;
		const char *why = v[i].missing ? v[i].missing() : NULL;
		if (why)
			return tu_skip(v[i].name ? v[i].name : argv[0], why);
		return run_suite(v[i].make());
	}
	fprintf(stderr, "%s: no suite \"%s\"\n", argv[0], want ? want : "(default)");
	return EXIT_FAILURE;
}

/* True when DETD_SHARED_DATA is set and the file rel under it is readable
 * (for the "missing" functions of suites that need ../shared/data). */
static inline bool tu_shared_data_has(const char *rel)
{
	const char *d = getenv("DETD_SHARED_DATA");
	char p[4096];
	if (!d || snprintf(p, sizeof(p), "%s/%s", d, rel) >= (int)sizeof(p))
		return false;
	return access(p, R_OK) == 0;
}

#endif
