/*
 * flexbuf.h — internal to engine/: a minimal, bounds-checked FlexBuffers
 * reader, enough for the custom options of TFLite_Detection_PostProcess (a
 * map of numbers keyed by name).  Pure functions; any thread.
 */
#ifndef DETD_ENGINE_FLEXBUF_H
#define DETD_ENGINE_FLEXBUF_H

#include <stddef.h>
#include <stdint.h>

/*
 * Look key up in the map at the root of buf and convert its value (int,
 * uint, float, bool, or their indirect forms) to a double.
 * Returns 0, -ENOENT when the key is absent, -EINVAL when buf is malformed
 * or the value is not a number (why goes to err), -ENOTSUP for a non-map root.
 */
int eng_flex_map_number(const uint8_t *buf, size_t len, const char *key, double *val, char *err,
			size_t errlen);

#endif
