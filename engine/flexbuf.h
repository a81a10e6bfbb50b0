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
 * Look key up in the map at the root of buf and convert its value the way
 * TFLite's flexbuffers accessors do (AsDouble / AsInt64): int, uint, float
 * and bool of any width, inline or indirect; a numeric string is parsed; an
 * untyped vector gives its size; any other type reads as 0.
 * Returns 0, -ENOENT when the key is absent or its value is null (TFLite's
 * IsNull(): the caller's default applies), -EINVAL when buf is malformed (why
 * goes to err), -ENOTSUP for a non-map root.
 */
int eng_flex_map_number(const uint8_t *buf, size_t len, const char *key, double *val, char *err,
			size_t errlen);
/* The same, integer conversion: floats truncate toward zero. */
int eng_flex_map_int(const uint8_t *buf, size_t len, const char *key, int64_t *val, char *err,
		     size_t errlen);

#endif
