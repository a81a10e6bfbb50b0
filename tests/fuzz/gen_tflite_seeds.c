/*
 * gen_tflite_seeds.c — writes the tiny TFLite seed models of the fuzz
 * corpus (tests/fuzz/corpus/tflite/).  Not built by meson; regenerate with
 *   cc -std=c11 -o /tmp/gen tests/fuzz/gen_tflite_seeds.c && /tmp/gen tests/fuzz/corpus/tflite
 * Each model: 2 tensors a,b of shape [1,4,4,C] (float32 or uint8 with
 * quantization), input a, output b, one operator b = OP(a[, a]).  Real
 * detectors are far bigger; these give the fuzzer every table of the format
 * in a few hundred bytes.  Offsets always point forward, as in
 * tests/unit/test_tflite.c's builder.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct fbb {
	uint8_t b[4096];
	size_t n;
};

static void align4(struct fbb *f)
{
	while (f->n & 3)
		f->b[f->n++] = 0;
}
static void w32(struct fbb *f, size_t at, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		f->b[at + i] = (uint8_t)(v >> (8 * i));
}
/* a table with nf 4-byte slots; fields in mask present */
static size_t table(struct fbb *f, int nf, unsigned present)
{
	align4(f);
	size_t vt = f->n;
	f->b[f->n++] = (uint8_t)(4 + 2 * nf);
	f->b[f->n++] = 0;
	f->b[f->n++] = (uint8_t)(4 + 4 * nf);
	f->b[f->n++] = 0;
	for (int i = 0; i < nf; i++) {
		unsigned off = (present >> i) & 1 ? 4 + 4 * (unsigned)i : 0;
		f->b[f->n++] = (uint8_t)off;
		f->b[f->n++] = 0;
	}
	align4(f);
	size_t t = f->n;
	w32(f, t, (uint32_t)(t - vt));
	memset(f->b + t + 4, 0, 4 * (size_t)nf);
	f->n = t + 4 + 4 * (size_t)nf;
	return t;
}
static size_t fld(size_t t, int i) { return t + 4 + 4 * (size_t)i; }
static void set_u32(struct fbb *f, size_t t, int i, uint32_t v) { w32(f, fld(t, i), v); }
static void set_ref(struct fbb *f, size_t t, int i, size_t to) { w32(f, fld(t, i), (uint32_t)(to - fld(t, i))); }
static size_t vec32(struct fbb *f, int n, const int32_t *v)
{
	align4(f);
	size_t p = f->n;
	w32(f, p, (uint32_t)n);
	for (int i = 0; i < n; i++)
		w32(f, p + 4 + 4 * (size_t)i, v ? (uint32_t)v[i] : 0);
	f->n = p + 4 + 4 * (size_t)n;
	return p;
}
static void vec_set_ref(struct fbb *f, size_t vec, int i, size_t to)
{
	size_t at = vec + 4 + 4 * (size_t)i;
	w32(f, at, (uint32_t)(to - at));
}
static size_t str(struct fbb *f, const char *s)
{
	align4(f);
	size_t p = f->n, k = strlen(s);
	w32(f, p, (uint32_t)k);
	memcpy(f->b + p + 4, s, k + 1);
	f->n = p + 4 + k + 1;
	return p;
}
/* float vector (for quantization scale) */
static size_t vecf(struct fbb *f, float v)
{
	uint32_t u;
	memcpy(&u, &v, 4);
	int32_t i = (int32_t)u;
	return vec32(f, 1, &i);
}
/* int64 vector with one element (zero point) */
static size_t vec64(struct fbb *f, int64_t v)
{
	align4(f);
	if ((f->n + 4) & 7) /* the elements (after the length) 8-aligned */
		f->b[f->n++] = 0, f->b[f->n++] = 0, f->b[f->n++] = 0, f->b[f->n++] = 0;
	size_t p = f->n;
	w32(f, p, 1);
	w32(f, p + 4, (uint32_t)v);
	w32(f, p + 8, (uint32_t)(v >> 32));
	f->n = p + 12;
	return p;
}

static size_t tensor(struct fbb *f, const char *name, int c, int type, bool quant)
{
	size_t t = table(f, 5, quant ? 0x1f : 0xf);
	int32_t shape[4] = {1, 4, 4, c};
	set_ref(f, t, 0, vec32(f, 4, shape));
	set_u32(f, t, 1, (uint32_t)type);
	set_u32(f, t, 2, 0); /* buffer 0: no data */
	set_ref(f, t, 3, str(f, name));
	if (quant) {
		size_t q = table(f, 4, 0xc); /* QuantizationParameters: 2 scale, 3 zero_point */
		set_ref(f, q, 2, vecf(f, 0.05f));
		set_ref(f, q, 3, vec64(f, 128));
		set_ref(f, t, 4, q);
	}
	return t;
}

static size_t model(struct fbb *f, int code, int n_in, int type, bool quant)
{
	memset(f, 0, sizeof(*f));
	f->n = 8;
	memcpy(f->b + 4, "TFL3", 4);
	size_t m = table(f, 5, 0x17);
	w32(f, 0, (uint32_t)m);
	set_u32(f, m, 0, 3);
	size_t ocs = vec32(f, 1, NULL);
	set_ref(f, m, 1, ocs);
	size_t oc = table(f, 4, 0x9);
	vec_set_ref(f, ocs, 0, oc);
	set_u32(f, oc, 0, (uint32_t)(code < 127 ? code : 127));
	set_u32(f, oc, 3, (uint32_t)code);
	size_t bufs = vec32(f, 1, NULL);
	set_ref(f, m, 4, bufs);
	vec_set_ref(f, bufs, 0, table(f, 1, 0));
	size_t sgs = vec32(f, 1, NULL);
	set_ref(f, m, 2, sgs);
	size_t sg = table(f, 5, 0xf);
	vec_set_ref(f, sgs, 0, sg);
	size_t ts = vec32(f, 2, NULL);
	set_ref(f, sg, 0, ts);
	vec_set_ref(f, ts, 0, tensor(f, "a", 3, type, quant));
	vec_set_ref(f, ts, 1, tensor(f, "b", 3, type, quant));
	int32_t zero = 0, one = 1, ins[2] = {0, 0};
	set_ref(f, sg, 1, vec32(f, 1, &zero));
	set_ref(f, sg, 2, vec32(f, 1, &one));
	size_t ops = vec32(f, 1, NULL);
	set_ref(f, sg, 3, ops);
	size_t op = table(f, 3, 0x7);
	vec_set_ref(f, ops, 0, op);
	set_ref(f, op, 1, vec32(f, n_in, ins));
	set_ref(f, op, 2, vec32(f, 1, &one));
	return f->n;
}

int main(int argc, char **argv)
{
	static const struct { const char *name; int code, n_in, type; bool quant; } v[] = {
		{"add_f32", 0, 2, 0, false},      {"add_u8", 0, 2, 3, true},
		{"mul_f32", 18, 2, 0, false},     {"logistic_u8", 14, 1, 3, true},
		{"relu6_f32", 21, 1, 0, false},   {"avgpool_f32", 1, 1, 0, false},
		{"quantize_u8", 114, 1, 3, true}, {"hardswish_f32", 117, 1, 0, false},
	};
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct fbb f;
		size_t n = model(&f, v[i].code, v[i].n_in, v[i].type, v[i].quant);
		char p[4096];
		snprintf(p, sizeof(p), "%s/%s.tflite", argv[1], v[i].name);
		FILE *o = fopen(p, "wb");
		if (!o || fwrite(f.b, 1, n, o) != n || fclose(o) != 0)
			return 1;
	}
	return 0;
}
