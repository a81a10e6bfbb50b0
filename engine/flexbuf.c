/*
 * flexbuf.c — bounds-checked FlexBuffers map lookup (see flexbuf.h).
 *
 * Layout used (FlexBuffers documentation): the last byte of the buffer is
 * the root's byte width, the byte before it the root's packed type (type <<
 * 2 | log2 of the child width), and the root value sits just before those.
 * A map's value points back to its values vector; in front of the values are
 * [keys vector offset][keys byte width][count]; after them one packed type
 * byte per value.  Keys are offsets to NUL-terminated strings.  Every
 * position is checked against the buffer before it is read.
 */
#include "flexbuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	FX_NULL = 0,
	FX_INT = 1,
	FX_UINT = 2,
	FX_FLOAT = 3,
	FX_INDIRECT_INT = 6,
	FX_INDIRECT_UINT = 7,
	FX_INDIRECT_FLOAT = 8,
	FX_MAP = 9,
	FX_STRING = 5,
	FX_VECTOR = 10,
	FX_BOOL = 26,
};

struct fx {
	const uint8_t *b;
	size_t n;
	char *err;
	size_t errlen;
};

static int fx_fail(struct fx *f, const char *what)
{
	if (f->err && f->errlen)
		snprintf(f->err, f->errlen, "flexbuffer (%zu bytes): %s", f->n, what);
	return -EINVAL;
}

static int valid_width(uint64_t w)
{
	return w == 1 || w == 2 || w == 4 || w == 8;
}

static int rd_u(struct fx *f, uint64_t pos, unsigned w, uint64_t *v)
{
	if (!valid_width(w) || pos > f->n || f->n - pos < w)
		return fx_fail(f, "read outside the buffer");
	uint64_t x = 0;
	for (unsigned i = 0; i < w; i++)
		x |= (uint64_t)f->b[pos + i] << (8 * i);
	*v = x;
	return 0;
}

static int rd_i(struct fx *f, uint64_t pos, unsigned w, int64_t *v)
{
	uint64_t u;
	int r = rd_u(f, pos, w, &u);
	if (r)
		return r;
	if (w < 8 && (u >> (8 * w - 1)) & 1)
		u |= ~(uint64_t)0 << (8 * w);
	*v = (int64_t)u;
	return 0;
}

static int rd_f(struct fx *f, uint64_t pos, unsigned w, double *v)
{
	uint64_t u;
	int r = rd_u(f, pos, w, &u);
	if (r)
		return r;
	if (w == 4) {
		uint32_t u32 = (uint32_t)u;
		float x;
		memcpy(&x, &u32, 4);
		*v = x;
	} else if (w == 8) {
		double x;
		memcpy(&x, &u, 8);
		*v = x;
	} else {
		return fx_fail(f, "float of unsupported width");
	}
	return 0;
}

/* pos - off, checked: offsets in FlexBuffers always point backwards. */
static int back(struct fx *f, uint64_t pos, uint64_t off, uint64_t *out)
{
	if (off > pos)
		return fx_fail(f, "offset points before the buffer");
	*out = pos - off;
	return 0;
}

/* Compare the NUL-terminated key at pos with key; -1 on overrun. */
static int key_eq(struct fx *f, uint64_t pos, const char *key)
{
	size_t kl = strlen(key);
	if (pos >= f->n)
		return -1;
	const uint8_t *s = f->b + pos;
	size_t room = f->n - pos;
	const uint8_t *nul = memchr(s, 0, room);
	if (!nul)
		return -1;
	return (size_t)(nul - s) == kl && memcmp(s, key, kl) == 0;
}

/* A located map value: its type, where its bytes are and how wide they are. */
struct fx_val {
	unsigned type;
	uint64_t pos;   /* inline value, or the target of an indirect/string/vector */
	unsigned width; /* width at pos */
};

/* Find key in the root map; -ENOENT when absent or null (TFLite's IsNull()). */
static int fx_find(struct fx *f, const char *key, struct fx_val *out)
{
	const uint8_t *buf = f->b;
	size_t len = f->n;
	int r;
	if (!buf || len < 3)
		return fx_fail(f, "too short");
	unsigned rbw = buf[len - 1];
	unsigned rpacked = buf[len - 2];
	if (!valid_width(rbw) || rbw > len - 2)
		return fx_fail(f, "bad root width");
	if ((rpacked >> 2) != FX_MAP) {
		if (f->err && f->errlen)
			snprintf(f->err, f->errlen, "flexbuffer: root is type %u, not a map",
				 rpacked >> 2);
		return -ENOTSUP;
	}
	unsigned cw = 1u << (rpacked & 3);
	uint64_t root = len - 2 - rbw, off, data, size, kpos, koff, keys, kbw, ksize;
	if ((r = rd_u(f, root, rbw, &off)) || (r = back(f, root, off, &data)))
		return r;
	if (data < 3 * (uint64_t)cw)
		return fx_fail(f, "map header before the buffer");
	if ((r = rd_u(f, data - cw, cw, &size)))
		return r;
	if (size > len)
		return fx_fail(f, "map size larger than the buffer");
	kpos = data - 3 * (uint64_t)cw;
	if ((r = rd_u(f, kpos, cw, &koff)) || (r = back(f, kpos, koff, &keys)) ||
	    (r = rd_u(f, data - 2 * (uint64_t)cw, cw, &kbw)))
		return r;
	if (!valid_width(kbw) || keys < kbw)
		return fx_fail(f, "bad keys vector");
	if ((r = rd_u(f, keys - kbw, (unsigned)kbw, &ksize)))
		return r;
	if (ksize != size)
		return fx_fail(f, "keys and values differ in count");
	uint64_t types = data + size * cw;
	if (types > len || len - types < size || keys + size * kbw > len)
		return fx_fail(f, "map runs past the end");

	for (uint64_t i = 0; i < size; i++) {
		uint64_t kel = keys + i * kbw, kv = 0, kstr = 0;
		if ((r = rd_u(f, kel, (unsigned)kbw, &kv)) || (r = back(f, kel, kv, &kstr)))
			return r;
		int eq = key_eq(f, kstr, key);
		if (eq < 0)
			return fx_fail(f, "key string runs past the end");
		if (!eq)
			continue;
		uint64_t el = data + i * cw, u = 0, p = 0;
		unsigned t = buf[types + i];
		out->type = t >> 2;
		out->pos = el;
		out->width = cw;
		switch (out->type) {
		case FX_NULL:
			return -ENOENT;
		case FX_INDIRECT_INT:
		case FX_INDIRECT_UINT:
		case FX_INDIRECT_FLOAT:
		case FX_STRING:
		case FX_VECTOR:
			if ((r = rd_u(f, el, cw, &u)) || (r = back(f, el, u, &p)))
				return r;
			out->pos = p;
			out->width = 1u << (t & 3);
			break;
		default:
			break;
		}
		return 0;
	}
	return -ENOENT;
}

/* The size field in front of a string or untyped vector. */
static int fx_size(struct fx *f, const struct fx_val *v, uint64_t *n)
{
	if (v->pos < v->width)
		return fx_fail(f, "size field before the buffer");
	return rd_u(f, v->pos - v->width, v->width, n);
}

/* The NUL-terminated string at v, bounded, converted as TFLite's flexbuffers does. */
static int fx_string(struct fx *f, const struct fx_val *v, char *s, size_t cap)
{
	uint64_t n;
	int r = fx_size(f, v, &n);
	if (r)
		return r;
	if (v->pos > f->n || f->n - v->pos < n)
		return fx_fail(f, "string runs past the end");
	size_t k = n < cap - 1 ? (size_t)n : cap - 1;
	memcpy(s, f->b + v->pos, k);
	s[k] = 0;
	return 0;
}

int eng_flex_map_int(const uint8_t *buf, size_t len, const char *key, int64_t *val, char *err,
		     size_t errlen)
{
	struct fx f = {buf, len, err, errlen};
	struct fx_val v;
	uint64_t u;
	double d;
	char s[64], *end;
	int r = fx_find(&f, key, &v);
	if (r)
		return r;
	switch (v.type) {
	case FX_INT:
	case FX_INDIRECT_INT:
	case FX_BOOL:
		return rd_i(&f, v.pos, v.width, val);
	case FX_UINT:
	case FX_INDIRECT_UINT:
		if ((r = rd_u(&f, v.pos, v.width, &u)))
			return r;
		*val = (int64_t)u;
		return 0;
	case FX_FLOAT:
	case FX_INDIRECT_FLOAT:
		if ((r = rd_f(&f, v.pos, v.width, &d)))
			return r;
		/* C++ truncates toward zero; out of range is undefined there: refuse it */
		if (!(d > -9.2e18 && d < 9.2e18))
			return fx_fail(&f, "float value out of integer range");
		*val = (int64_t)d;
		return 0;
	case FX_STRING:
		if ((r = fx_string(&f, &v, s, sizeof(s))))
			return r;
		errno = 0;
		*val = strtoll(s, &end, 10);
		if (end == s || *end || errno)
			*val = 0;
		return 0;
	case FX_VECTOR:
		if ((r = fx_size(&f, &v, &u)))
			return r;
		*val = (int64_t)u;
		return 0;
	default:
		/* maps, keys, typed vectors, blobs: TFLite's flexbuffers reads 0 */
		*val = 0;
		return 0;
	}
}

int eng_flex_map_number(const uint8_t *buf, size_t len, const char *key, double *val, char *err,
			size_t errlen)
{
	struct fx f = {buf, len, err, errlen};
	struct fx_val v;
	char s[64], *end;
	int r = fx_find(&f, key, &v);
	if (r)
		return r;
	if (v.type == FX_FLOAT || v.type == FX_INDIRECT_FLOAT)
		return rd_f(&f, v.pos, v.width, val);
	if (v.type == FX_STRING) {
		if ((r = fx_string(&f, &v, s, sizeof(s))))
			return r;
		*val = strtod(s, &end);
		if (end == s)
			*val = 0;
		return 0;
	}
	int64_t i;
	if ((r = eng_flex_map_int(buf, len, key, &i, err, errlen)))
		return r;
	/* unsigned values above INT64_MAX: read them as such */
	if ((v.type == FX_UINT || v.type == FX_INDIRECT_UINT) && i < 0)
		*val = (double)(uint64_t)i;
	else
		*val = (double)i;
	return 0;
}
