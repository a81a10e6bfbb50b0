/*
 * cdn_safetensors.c — strict reader of safetensors files (CoDeNet weights and
 * the parity fixtures).
 *
 * Layout: u64 little-endian header length N, N bytes of JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {}},
 * then the data; offsets are relative to the data start.  Everything is
 * checked before use: the header fits the file, every entry has a known
 * dtype, a shape whose element count times the element size equals its byte
 * range, a range inside the data section, and ranges do not overlap.
 *
 * The whole file is read into memory once (the loader's thread); the object
 * is read-only afterwards.
 */
#include "codenet.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ST_MAX_FILE ((size_t)1 << 31)
#define ST_MAX_HEADER ((size_t)64 << 20)
#define ST_MAX_TENSORS 100000

struct cdn_st {
	uint8_t *file;
	size_t file_bytes;
	size_t data_off;
	int n;
	struct cdn_st_tensor *t;
};

static size_t dtype_size(enum cdn_dtype d)
{
	switch (d) {
	case CDN_F32:
	case CDN_I32:
		return 4;
	case CDN_I8:
		return 1;
	}
	return 0;
}

static int parse_dtype(const char *s, enum cdn_dtype *d)
{
	if (!strcmp(s, "F32"))
		*d = CDN_F32;
	else if (!strcmp(s, "I32"))
		*d = CDN_I32;
	else if (!strcmp(s, "I8"))
		*d = CDN_I8;
	else
		return -1;
	return 0;
}

const char *cdn_dtype_name(enum cdn_dtype d)
{
	return d == CDN_F32 ? "F32" : d == CDN_I32 ? "I32" : d == CDN_I8 ? "I8" : "?";
}

static int cmp_range(const void *a, const void *b)
{
	const struct cdn_st_tensor *x = *(const struct cdn_st_tensor *const *)a;
	const struct cdn_st_tensor *y = *(const struct cdn_st_tensor *const *)b;
	return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

static int read_file(const char *path, uint8_t **out, size_t *bytes, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > ST_MAX_FILE) {
		snprintf(err, errlen, "%s: not a regular file of at most 2 GiB", path);
		fclose(f);
		return -EINVAL;
	}
	size_t n = (size_t)st.st_size;
	uint8_t *buf = malloc(n ? n : 1);
	if (!buf) {
		fclose(f);
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	if (fread(buf, 1, n, f) != n) {
		snprintf(err, errlen, "%s: short read", path);
		free(buf);
		fclose(f);
		return -EIO;
	}
	fclose(f);
	*out = buf;
	*bytes = n;
	return 0;
}

static int parse_entry(struct cdn_st *st, const char *name, struct json_object *e,
		       struct cdn_st_tensor *t, size_t data_bytes, char *err, size_t errlen)
{
	struct json_object *dt, *shape, *offs;
	if (strlen(name) == 0 || strlen(name) >= CDN_NAME_MAX) {
		snprintf(err, errlen, "tensor name empty or longer than %d bytes", CDN_NAME_MAX - 1);
		return -EINVAL;
	}
	if (!json_object_is_type(e, json_type_object) ||
	    !json_object_object_get_ex(e, "dtype", &dt) || !json_object_is_type(dt, json_type_string) ||
	    !json_object_object_get_ex(e, "shape", &shape) ||
	    !json_object_is_type(shape, json_type_array) ||
	    !json_object_object_get_ex(e, "data_offsets", &offs) ||
	    !json_object_is_type(offs, json_type_array) || json_object_array_length(offs) != 2) {
		snprintf(err, errlen, "tensor %s: needs dtype, shape and data_offsets[2]", name);
		return -EINVAL;
	}
	snprintf(t->name, sizeof(t->name), "%s", name);
	if (parse_dtype(json_object_get_string(dt), &t->dtype) < 0) {
		snprintf(err, errlen, "tensor %s: unsupported dtype %s (F32, I32, I8)", name,
			 json_object_get_string(dt));
		return -EINVAL;
	}
	size_t nd = json_object_array_length(shape);
	if (nd > CDN_MAX_DIMS) {
		snprintf(err, errlen, "tensor %s: more than %d dimensions", name, CDN_MAX_DIMS);
		return -EINVAL;
	}
	t->ndim = (int)nd;
	uint64_t count = 1;
	for (size_t i = 0; i < nd; i++) {
		struct json_object *d = json_object_array_get_idx(shape, i);
		if (!json_object_is_type(d, json_type_int)) {
			snprintf(err, errlen, "tensor %s: shape entries must be integers", name);
			return -EINVAL;
		}
		int64_t v = json_object_get_int64(d);
		if (v < 0 || v > (1 << 30)) {
			snprintf(err, errlen, "tensor %s: dimension %lld out of range", name,
				 (long long)v);
			return -EINVAL;
		}
		t->dims[i] = (int)v;
		count *= (uint64_t)v;
		if (count > ST_MAX_FILE) {
			snprintf(err, errlen, "tensor %s: too many elements", name);
			return -EINVAL;
		}
	}
	int64_t b[2];
	for (int i = 0; i < 2; i++) {
		struct json_object *o = json_object_array_get_idx(offs, (size_t)i);
		if (!json_object_is_type(o, json_type_int)) {
			snprintf(err, errlen, "tensor %s: data_offsets must be integers", name);
			return -EINVAL;
		}
		b[i] = json_object_get_int64(o);
	}
	if (b[0] < 0 || b[1] < b[0] || (uint64_t)b[1] > data_bytes) {
		snprintf(err, errlen, "tensor %s: data_offsets [%lld, %lld] outside the %zu data bytes",
			 name, (long long)b[0], (long long)b[1], data_bytes);
		return -EINVAL;
	}
	t->begin = (size_t)b[0];
	t->bytes = (size_t)(b[1] - b[0]);
	if ((uint64_t)t->bytes != count * dtype_size(t->dtype)) {
		snprintf(err, errlen, "tensor %s: %zu bytes for %llu elements of %s", name, t->bytes,
			 (unsigned long long)count, cdn_dtype_name(t->dtype));
		return -EINVAL;
	}
	t->count = (size_t)count;
	t->data = st->file + st->data_off + t->begin;
	return 0;
}

int cdn_st_open(const char *path, struct cdn_st **out, char *err, size_t errlen)
{
	struct cdn_st *st = calloc(1, sizeof(*st));
	struct json_object *hdr = NULL;
	struct json_tokener *tok = NULL;
	struct cdn_st_tensor **sorted = NULL;
	int r;
	if (!st)
		return -ENOMEM;
	r = read_file(path, &st->file, &st->file_bytes, err, errlen);
	if (r < 0)
		goto fail;
	r = -EINVAL;
	if (st->file_bytes < 8) {
		snprintf(err, errlen, "%s: shorter than the 8-byte header length", path);
		goto fail;
	}
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | st->file[i];
	if (n < 2 || n > ST_MAX_HEADER || n > st->file_bytes - 8) {
		snprintf(err, errlen, "%s: header length %llu does not fit the file (%zu bytes)", path,
			 (unsigned long long)n, st->file_bytes);
		goto fail;
	}
	st->data_off = 8 + (size_t)n;
	tok = json_tokener_new();
	if (!tok) {
		r = -ENOMEM;
		goto fail;
	}
	hdr = json_tokener_parse_ex(tok, (const char *)st->file + 8, (int)n);
	if (!hdr || json_tokener_get_error(tok) != json_tokener_success) {
		snprintf(err, errlen, "%s: header is not valid JSON", path);
		goto fail;
	}
	/* only padding may follow the JSON object inside the header */
	for (size_t i = (size_t)json_tokener_get_parse_end(tok); i < n; i++) {
		uint8_t ch = st->file[8 + i];
		if (ch != ' ' && ch != '\n' && ch != '\t' && ch != '\r') {
			snprintf(err, errlen, "%s: garbage after the header JSON", path);
			goto fail;
		}
	}
	if (!json_object_is_type(hdr, json_type_object)) {
		snprintf(err, errlen, "%s: header is not a JSON object", path);
		goto fail;
	}
	int cnt = json_object_object_length(hdr);
	if (cnt > ST_MAX_TENSORS) {
		snprintf(err, errlen, "%s: too many tensors", path);
		goto fail;
	}
	st->t = calloc((size_t)(cnt ? cnt : 1), sizeof(*st->t));
	if (!st->t) {
		r = -ENOMEM;
		goto fail;
	}
	size_t data_bytes = st->file_bytes - st->data_off;
	json_object_object_foreach(hdr, key, val)
	{
		if (!strcmp(key, "__metadata__"))
			continue;
		char e2[200];
		if (parse_entry(st, key, val, &st->t[st->n], data_bytes, e2, sizeof(e2)) < 0) {
			snprintf(err, errlen, "%s: %s", path, e2);
			goto fail;
		}
		st->n++;
	}
	/* ranges must not overlap (names are unique: json-c keeps one per key) */
	sorted = calloc((size_t)(st->n ? st->n : 1), sizeof(*sorted));
	if (!sorted) {
		r = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < st->n; i++)
		sorted[i] = &st->t[i];
	qsort(sorted, (size_t)st->n, sizeof(*sorted), cmp_range);
	for (int i = 1; i < st->n; i++) {
		if (sorted[i]->begin < sorted[i - 1]->begin + sorted[i - 1]->bytes) {
			snprintf(err, errlen, "%s: tensors %s and %s overlap", path, sorted[i - 1]->name,
				 sorted[i]->name);
			goto fail;
		}
	}
	free(sorted);
	json_object_put(hdr);
	json_tokener_free(tok);
	*out = st;
	return 0;
fail:
	free(sorted);
	if (hdr)
		json_object_put(hdr);
	if (tok)
		json_tokener_free(tok);
	cdn_st_close(st);
	return r;
}

void cdn_st_close(struct cdn_st *st)
{
	if (!st)
		return;
	free(st->t);
	free(st->file);
	free(st);
}

int cdn_st_count(const struct cdn_st *st)
{
	return st->n;
}

const struct cdn_st_tensor *cdn_st_at(const struct cdn_st *st, int i)
{
	return i >= 0 && i < st->n ? &st->t[i] : NULL;
}

const struct cdn_st_tensor *cdn_st_find(const struct cdn_st *st, const char *name)
{
	for (int i = 0; i < st->n; i++)
		if (!strcmp(st->t[i].name, name))
			return &st->t[i];
	return NULL;
}

int cdn_st_get(const struct cdn_st *st, const char *name, enum cdn_dtype dtype, int ndim,
	       const int *dims, const void **data, char *err, size_t errlen)
{
	const struct cdn_st_tensor *t = cdn_st_find(st, name);
	if (!t) {
		snprintf(err, errlen, "tensor %s missing", name);
		return -ENOENT;
	}
	if (t->dtype != dtype) {
		snprintf(err, errlen, "tensor %s: dtype %s, expected %s", name,
			 cdn_dtype_name(t->dtype), cdn_dtype_name(dtype));
		return -EINVAL;
	}
	bool ok = t->ndim == ndim;
	for (int i = 0; ok && i < ndim; i++)
		ok = t->dims[i] == dims[i];
	if (!ok) {
		char want[96] = "", got[96] = "";
		for (int i = 0; i < ndim; i++)
			snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%d", i ? "," : "",
				 dims[i]);
		for (int i = 0; i < t->ndim; i++)
			snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%d", i ? "," : "",
				 t->dims[i]);
		snprintf(err, errlen, "tensor %s: shape [%s], expected [%s]", name, got, want);
		return -EINVAL;
	}
	*data = t->data;
	return 0;
}
