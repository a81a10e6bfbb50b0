/*
 * testutil.h — boilerplate shared by the Check unit tests.
 */
#ifndef DETD_TESTUTIL_H
#define DETD_TESTUTIL_H

#include <check.h>
#include <stdlib.h>

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

#endif
