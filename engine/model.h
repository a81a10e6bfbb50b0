/*
 * model.h — internal to engine/: the loaded model, per-stream state and
 * execution context behind the opaque types of engine.h.
 */
#ifndef DETD_ENGINE_MODEL_H
#define DETD_ENGINE_MODEL_H

#include "backend.h"
#include "engine.h"
#include "graph.h"

/* A model input carried from the paired output of the previous frame. */
struct eng_state_slot {
	int in, out;   /* tensor indices */
	size_t bytes;
	size_t offset; /* into struct eng_state's data */
};

struct eng_model {
	struct eng_model_info info;
	char *name;
	struct eng_graph g;
	int image_input; /* tensor index */
	int pp_node;     /* node index of the post-process */
	int pp_max;      /* detections the post-process writes */
	int n_state;
	struct eng_state_slot *state;
	char **labels; /* by 0-based class id; entries may be NULL */
	int n_labels;
};

struct eng_state {
	const struct eng_model *m;
	size_t bytes;
	uint8_t *data;
};

/* eng_model_load() on a file already in memory (tests feed corrupted copies). */
int eng_model_load_mem(const char *name, const uint8_t *buf, size_t len, enum eng_format fmt,
		       const char *labels_path, bool reference_kernels, struct eng_model **out,
		       char *err, size_t errlen);

/* Label map: pbtxt (item { name id }, ids from 1) or one label per line. */
int eng_labels_load(const char *path, char ***labels, int *n, char *err, size_t errlen);
void eng_labels_free(char **labels, int n);

#endif
