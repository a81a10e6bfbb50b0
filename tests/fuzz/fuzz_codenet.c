/*
 * fuzz_codenet.c — libFuzzer target: the CoDeNet reader (engine/codenet:
 * architecture JSON + safetensors weights) through the engine's model load.
 * An input is the JSON, a NUL byte, then the safetensors bytes; they are
 * written to files in a private temporary directory (the reader works on
 * paths), the JSON's "weights" names the file "w.safetensors".  A model
 * that loads and is small is run once on a zero frame.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"

static char dir[] = "/tmp/detd-fuzz-cdn.XXXXXX";
static char json_path[64], st_path[64];

static int put(const char *path, const uint8_t *b, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t w = n ? fwrite(b, 1, n, f) : 0;
	return fclose(f) == 0 && w == n ? 0 : -1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (!mkdtemp(dir))
		abort();
	snprintf(json_path, sizeof(json_path), "%s/m.json", dir);
	snprintf(st_path, sizeof(st_path), "%s/w.safetensors", dir);
	log_set_level(LOG_LVL_ERROR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t jn = nul ? (size_t)(nul - data) : size;
	if (put(json_path, data, jn) < 0 ||
	    put(st_path, nul ? nul + 1 : data, nul ? size - jn - 1 : 0) < 0)
		abort();
	struct eng_model_opts o = {.path = json_path, .format = ENG_FORMAT_CODENET};
	struct eng_model *m = NULL;
	char err[256] = "";
	if (eng_model_load(&o, &m, err, sizeof(err)) < 0) {
		if (m || !err[0])
			abort(); /* failures are clean and say why */
		return 0;
	}
	const struct eng_model_info *mi = eng_model_info(m);
	if (mi->gmac < 0.05 && mi->input_width <= 128 && mi->input_height <= 128) {
		struct eng_ctx *ctx = NULL;
		struct eng_state *st = NULL;
		if (eng_ctx_create(m, NULL, 1, &ctx, err, sizeof(err)) == 0 &&
		    eng_state_create(m, &st) == 0) {
			size_t n = (size_t)mi->input_width * mi->input_height * mi->input_channels;
			uint8_t *in = calloc(1, n ? n : 1);
			static struct eng_detections out;
			const uint8_t *ins[1] = {in};
			struct eng_state *sts[1] = {st};
			if (in)
				eng_run(ctx, 1, ins, sts, &out);
			free(in);
		}
		eng_state_destroy(st);
		eng_ctx_destroy(ctx);
	}
	eng_model_destroy(m);
	return 0;
}
