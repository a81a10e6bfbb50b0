/*
 * fuzz_tflite.c — libFuzzer target: the TFLite reader and model load
 * (engine/tflite.c, flexbuf.c, graph.c via eng_model_load_mem()), then, for
 * a model that loads and is small, one inference on a zero frame so the
 * shapes and quantization parameters the reader accepted are also run.
 * A load must either succeed or fail with a "model: ..." message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "log.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct eng_model *m = NULL;
	char err[256] = "";
	log_set_level(LOG_LVL_ERROR);
	int r = eng_model_load_mem("fuzz.tflite", data, size, ENG_FORMAT_TFLITE, NULL, false, &m,
				   err, sizeof(err));
	if (r < 0) {
		if (m || strncmp(err, "model: ", 7) != 0)
			abort(); /* failures are clean and say why */
		return 0;
	}
	const struct eng_model_info *mi = eng_model_info(m);
	if (mi->gmac < 0.01 && mi->arena_bytes < (16u << 20) && mi->input_width > 0 &&
	    mi->input_height > 0 && mi->input_channels > 0 &&
	    (size_t)mi->input_width * mi->input_height * mi->input_channels < (1u << 20)) {
		struct eng_ctx *ctx = NULL;
		struct eng_state *st = NULL;
		if (eng_ctx_create(m, NULL, 1, &ctx, err, sizeof(err)) == 0 &&
		    eng_state_create(m, &st) == 0) {
			size_t n = (size_t)mi->input_width * mi->input_height * mi->input_channels *
				   (mi->input_is_float ? 4 : 1);
			uint8_t *in = calloc(1, n);
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
