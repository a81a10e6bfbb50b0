/*
 * tflite.h — internal to engine/: the TFLite flatbuffer reader.
 *
 * Reads subgraph 0 of a .tflite file into a struct eng_graph: tensors with
 * shapes, types and quantization exactly as the file gives them, constant
 * data copied into one aligned block, nodes with their options.  Every
 * offset, length, index and vtable entry is checked against the file first;
 * nothing of the input buffer is referenced after it returns.
 * Runs on the loading thread only.
 */
#ifndef DETD_ENGINE_TFLITE_H
#define DETD_ENGINE_TFLITE_H

#include <stddef.h>
#include <stdint.h>

#include "graph.h"

/* True when buf carries the TFLite file identifier ("TFL3" at bytes 4..8). */
int eng_tflite_sniff(const uint8_t *buf, size_t len);

/*
 * Parse buf into g (zeroed by the caller).  On failure returns -EINVAL
 * (malformed), -ENOTSUP (valid but unsupported) or -ENOMEM, writes a message
 * starting with "model: " to err, and leaves g safe for eng_graph_free().
 */
int eng_tflite_parse(const uint8_t *buf, size_t len, struct eng_graph *g, char *err,
		     size_t errlen);

/* TFLite's name of a builtin operator code ("CONV_2D"), or NULL if unknown. */
const char *eng_tflite_builtin_name(int32_t code);

#endif
