/*
 * backend.c — the static table of compiled-in backends; config parsing and
 * /status both use it, so a name means the same thing everywhere.
 * Read-only data; any thread.
 */
#include <string.h>

#include "backend.h"
#include "detd-build.h"
#include "engine.h"

static const struct eng_backend_ops *const backends[] = {
	&eng_backend_cpu,
	&eng_backend_xrt_sim,
#if DETD_HAVE_XRT
	&eng_backend_xrt,
#endif
};

#define N_BACKENDS (sizeof(backends) / sizeof(backends[0]))

static const char *const names[N_BACKENDS + 1] = {
	"cpu",
	"xrt-sim",
#if DETD_HAVE_XRT
	"xrt",
#endif
	NULL,
};

const struct eng_backend_ops *eng_backend_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < N_BACKENDS; i++)
		if (strcmp(backends[i]->name, name) == 0)
			return backends[i];
	return NULL;
}

const char *eng_backend_name(const struct eng_backend_ops *b)
{
	return b ? b->name : "none";
}

const char *const *eng_backend_names(void)
{
	return names;
}
