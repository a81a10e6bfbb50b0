/*
 * fuzz_config.c — libFuzzer target: the JSON config loader (config/config.c)
 * from a buffer: the whole file (cfg_load_string), then on success what a
 * reload does with it (diff against itself and the default, keep the
 * restart-only fields), and the same bytes as a POST /streams body
 * (cfg_stream_parse).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static struct cfg *defaults;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct cfg_errors errs;
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	if (!defaults && cfg_load_string("{\"model\":{\"path\":\"m.tflite\"}}", "/base", &defaults,
					 NULL) < 0)
		abort();

	struct cfg *c = NULL;
	memset(&errs, 0, sizeof(errs));
	if (cfg_load_string(s, "/base/dir", &c, &errs) == 0) {
		struct cfg_changes ch = {0};
		if (cfg_diff(defaults, c, &ch) == 0)
			cfg_changes_free(&ch);
		if (cfg_diff(c, c, &ch) == 0) {
			if (ch.n != 0)
				abort(); /* a config differs from itself */
			cfg_changes_free(&ch);
		}
		struct cfg *again = NULL;
		if (cfg_load_string(s, "/base/dir", &again, NULL) == 0) {
			cfg_keep_restart_fields(again, defaults);
			cfg_free(again);
		}
		for (size_t i = 0; i < c->n_streams; i++) {
			struct cfg_stream copy = {0};
			if (cfg_stream_copy(&copy, &c->streams[i]) == 0)
				cfg_stream_clear(&copy);
			if (!cfg_stream_find(c, c->streams[i].id))
				abort();
		}
	} else if (errs.n == 0 && errs.dropped == 0) {
		abort(); /* a rejected config always says why */
	}
	cfg_free(c);

	struct cfg_stream st = {0};
	memset(&errs, 0, sizeof(errs));
	if (cfg_stream_parse(s, size, defaults, &st, &errs) == 0)
		cfg_stream_clear(&st);
	free(s);
	return 0;
}
