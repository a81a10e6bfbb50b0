/*
 * cdn_model.c — CoDeNet model: the JSON architecture, the layer list, the
 * weights bound from the safetensors file, execution contexts and cdn_run().
 *
 * The network is written once (walk()), mirroring network() in
 * tools/codenet/codenet_arch.py; the loader runs it in "spec" mode (no data)
 * to list the layers the file must provide, cdn_run() runs it on data.
 * A model is read-only after cdn_model_load(); a context is one thread's.
 *
 * Memory of a run: the walk allocates and releases tensors in the same order
 * on every frame, so cdn_ctx_create() walks once in "plan" mode (shapes
 * only), records each tensor's size and lifetime, and places them in one
 * arena (largest first, lowest offset that overlaps no tensor alive at the
 * same time, as engine/graph.c does for TFLite graphs), plus one workspace
 * for the largest per-thread scratch of any operator.  cdn_run() then only
 * hands out offsets: no malloc per operator or per frame (trace copies, a
 * debugging aid, excepted).
 */
#include "codenet.h"

#include <errno.h>
#include <json-c/json.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define CDN_MAX_LAYERS 512

enum dec_kind { DEC_CONV3, DEC_DWCONV3, DEC_FULL, DEC_DW };

struct cdn_model {
	struct cdn_desc desc;
	int ch[5], rep[3], dec[3], head;
	bool stride4;
	enum dec_kind kind;
	struct cdn_dcn_cfg dcn;
	char **labels;
	int n_layers;
	struct cdn_layer layers[CDN_MAX_LAYERS];
};

/* One tensor of the walk, in allocation order. */
struct cdn_slot {
	size_t bytes, off;
	int born, died; /* walk steps; died INT_MAX: alive after the run (heads) */
};

struct cdn_ctx {
	const struct cdn_model *m;
	int threads;
	struct cdn_par par; /* .threads == threads */
	bool trace;
	struct cdn_slot *slots;
	int n_slots;
	unsigned char *arena; /* CDN_WS_ALIGN aligned */
	size_t arena_bytes;
	void *ws; /* operator scratch, CDN_WS_ALIGN aligned */
	size_t ws_bytes;
	struct cdn_ten heads[3]; /* in the arena */
	struct cdn_ten *traces; /* n_layers */
	int64_t *ns;            /* n_layers */
	float *deq[3];
	cdn_offload_fn offload; /* a device's layers (engine/xrt); NULL: all cpu */
	void *offload_user;
};

struct walker {
	struct cdn_model *m; /* spec mode: layers are appended */
	struct cdn_ctx *c;   /* NULL in spec mode */
	int li;
	int err;
	char errmsg[160];
	/* Plan mode (c set, plan true): no data, slots and scratch recorded. */
	bool plan;
	int step;       /* allocation/release events so far */
	int slot;       /* next slot to hand out */
	int slot_cap;   /* plan mode: capacity of c->slots */
	size_t scratch; /* plan mode: largest per-thread scratch */
};

/* ---- tensors ------------------------------------------------------------- */
static size_t ten_bytes(const struct walker *w, int h, int wd, int c)
{
	size_t n = (size_t)h * wd * c;
	return (n ? n : 1) * (w->m->desc.quant ? 1 : sizeof(float));
}

static void plan_fail(struct walker *w, int err, const char *msg)
{
	if (!w->err) {
		w->err = err;
		snprintf(w->errmsg, sizeof(w->errmsg), "%s", msg);
	}
}

/* The next tensor of the walk: plan mode records it, a run takes its planned
 * place in the arena.  t.slot identifies it for ten_put(). */
static struct cdn_ten ten_new(struct walker *w, int h, int wd, int c, bool sgn)
{
	struct cdn_ten t = {.h = h, .w = wd, .c = c, .sgn = sgn};
	if (!w->c)
		return t;
	struct cdn_ctx *ctx = w->c;
	size_t bytes = ten_bytes(w, h, wd, c);
	int i = w->slot++;
	t.slot = i + 1;
	if (w->plan) {
		if (i >= w->slot_cap) {
			int cap = w->slot_cap ? 2 * w->slot_cap : 256;
			struct cdn_slot *ns = realloc(ctx->slots, (size_t)cap * sizeof(*ns));
			if (!ns) {
				plan_fail(w, -ENOMEM, "out of memory planning the arena");
				t.slot = 0;
				return t;
			}
			ctx->slots = ns;
			w->slot_cap = cap;
		}
		ctx->slots[i] = (struct cdn_slot){.bytes = bytes, .born = w->step++,
						  .died = INT_MAX};
		ctx->n_slots = i + 1;
		return t;
	}
	if (w->err)
		return t;
	/* The walk is the same on every run; anything else is a bug. */
	if (i >= ctx->n_slots || ctx->slots[i].bytes != bytes) {
		plan_fail(w, -EINVAL, "tensor does not match the arena plan");
		return t;
	}
	void *p = ctx->arena + ctx->slots[i].off;
	if (w->m->desc.quant)
		t.q = p;
	else
		t.f = p;
	return t;
}

/* The walk is done with a tensor (a run: nothing to free, the arena place is
 * reused by later tensors per the plan). */
static void ten_put(struct walker *w, struct cdn_ten *t)
{
	if (w->plan && t->slot > 0 && t->slot <= w->c->n_slots &&
	    w->c->slots[t->slot - 1].died == INT_MAX)
		w->c->slots[t->slot - 1].died = w->step++;
	t->f = NULL;
	t->q = NULL;
	t->slot = 0;
}

/* Plan mode: an operator needs this much scratch per thread. */
static void plan_scratch(struct walker *w, size_t per_thread)
{
	if (per_thread > w->scratch)
		w->scratch = per_thread;
}

static void ten_free(struct cdn_ten *t)
{
	free(t->f);
	free(t->q);
	t->f = NULL;
	t->q = NULL;
}

static bool ten_ok(const struct cdn_ten *t)
{
	return t->f || t->q;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void trace_out(struct walker *w, int li, const struct cdn_ten *t, int64_t t0)
{
	struct cdn_ctx *c = w->c;
	c->ns[li] = now_ns() - t0;
	if (!c->trace || w->err)
		return;
	struct cdn_ten *d = &c->traces[li];
	ten_free(d);
	*d = *t;
	size_t bytes = (size_t)t->h * t->w * t->c * (t->f ? sizeof(float) : 1);
	if (t->f) {
		d->f = malloc(bytes ? bytes : 1);
		if (d->f)
			memcpy(d->f, t->f, bytes);
	} else {
		d->q = malloc(bytes ? bytes : 1);
		if (d->q)
			memcpy(d->q, t->q, bytes);
	}
}

/* ---- the operators of the walk --------------------------------------------- */
static struct cdn_layer *spec_add(struct walker *w, const char *name, enum cdn_lkind kind, int cin,
				  int cout, int k, int stride, bool relu)
{
	struct cdn_model *m = w->m;
	if (m->n_layers >= CDN_MAX_LAYERS) {
		if (!w->err) {
			w->err = -E2BIG;
			snprintf(w->errmsg, sizeof(w->errmsg), "more than %d layers", CDN_MAX_LAYERS);
		}
		return NULL;
	}
	struct cdn_layer *L = &m->layers[m->n_layers++];
	snprintf(L->name, sizeof(L->name), "%s", name);
	L->kind = kind;
	L->cin = cin;
	L->cout = cout;
	L->k = k;
	L->stride = stride;
	L->relu = relu;
	return L;
}

/* The device's turn first: 0 it made out, 1 the cpu operator runs, < 0 error. */
static int offload(struct walker *w, int li, const struct cdn_ten *x, const struct cdn_ten *aux,
		   struct cdn_ten *out)
{
	struct cdn_ctx *c = w->c;
	if (!c->offload)
		return 1;
	int r = c->offload(c->offload_user, li, x, aux, out);
	if (r < 0) {
		w->err = r;
		snprintf(w->errmsg, sizeof(w->errmsg), "layer %s on the device: %s",
			 w->m->layers[li].name, strerror(-r));
	}
	return r;
}

static struct cdn_ten w_conv(struct walker *w, const char *name, const struct cdn_ten *x, int k,
			     int stride, bool dw, bool relu, int cout)
{
	int oh = (x->h + 2 * (k / 2) - k) / stride + 1, ow = (x->w + 2 * (k / 2) - k) / stride + 1;
	if (dw)
		cout = x->c;
	if (!w->c) {
		struct cdn_layer *L = spec_add(w, name, dw ? CDN_L_DW : CDN_L_CONV, x->c, cout, k,
					       stride, relu);
		if (L)
			w->m->desc.gmac += (double)oh * ow * cout * k * k * (dw ? 1 : x->c) * 1e-9;
		return (struct cdn_ten){.h = oh, .w = ow, .c = cout, .sgn = !relu};
	}
	int li = w->li++;
	const struct cdn_layer *L = &w->m->layers[li];
	struct cdn_ten out = ten_new(w, oh, ow, cout, !relu);
	if (w->plan) {
		plan_scratch(w, cdn_op_conv_scratch(L, w->m->desc.quant, x, &out));
		return out;
	}
	if (w->err || !ten_ok(x))
		return out;
	int64_t t0 = now_ns();
	int r = offload(w, li, x, NULL, &out);
	if (r > 0)
		r = cdn_op_conv_ws(L, x, &out, &w->c->par, w->c->ws);
	if (r < 0 && !w->err)
		w->err = r;
	trace_out(w, li, &out, t0);
	return out;
}

static struct cdn_ten w_dcn(struct walker *w, const char *n, const struct cdn_ten *x, int cout,
			    bool depthwise)
{
	char name[CDN_NAME_MAX];
	struct cdn_model *m = w->m;
	int offc = m->dcn.square ? 1 : m->dcn.mask ? 27 : 18;
	if (depthwise)
		cout = x->c;
	if (!w->c) {
		snprintf(name, sizeof(name), "%s.offset", n);
		struct cdn_layer *L = spec_add(w, name, CDN_L_CONV, x->c, offc, 3, 1, false);
		if (L)
			L->is_offset = true;
		snprintf(name, sizeof(name), "%s.dcn", n);
		spec_add(w, name, depthwise ? CDN_L_DCN_DW : CDN_L_DCN_FULL, x->c, cout, 3, 1, true);
		m->desc.gmac += (double)x->h * x->w * (offc * 9.0 * x->c +
						      (depthwise ? 9.0 * cout : 9.0 * x->c * cout)) * 1e-9;
		return (struct cdn_ten){.h = x->h, .w = x->w, .c = cout};
	}
	snprintf(name, sizeof(name), "%s.offset", n);
	struct cdn_ten off = w_conv(w, name, x, 3, 1, false, false, offc);
	int li = w->li++;
	const struct cdn_layer *L = &m->layers[li];
	struct cdn_ten out = ten_new(w, x->h, x->w, cout, false);
	if (w->plan)
		plan_scratch(w, cdn_op_dcn_scratch(L, m->desc.quant, x, &out));
	else if (!w->err && ten_ok(x) && ten_ok(&off)) {
		int64_t t0 = now_ns();
		int r = offload(w, li, x, &off, &out);
		if (r > 0)
			r = cdn_op_dcn_ws(L, &m->dcn, x, &off, &out, &w->c->par, w->c->ws);
		if (r < 0 && !w->err)
			w->err = r;
		trace_out(w, li, &out, t0);
	}
	ten_put(w, &off);
	return out;
}

static struct cdn_ten w_maxpool(struct walker *w, const struct cdn_ten *x)
{
	struct cdn_ten out = ten_new(w, (x->h - 1) / 2 + 1, (x->w - 1) / 2 + 1, x->c, x->sgn);
	if (w->c && !w->err && ten_ok(x))
		cdn_op_maxpool3s2(x, &out);
	return out;
}

static struct cdn_ten w_upsample(struct walker *w, const struct cdn_ten *x)
{
	struct cdn_ten out = ten_new(w, 2 * x->h, 2 * x->w, x->c, x->sgn);
	if (w->c && !w->err && ten_ok(x))
		cdn_op_upsample2(x, &out);
	return out;
}

static void w_split(struct walker *w, const struct cdn_ten *x, struct cdn_ten *a, struct cdn_ten *b)
{
	*a = ten_new(w, x->h, x->w, x->c / 2, x->sgn);
	*b = ten_new(w, x->h, x->w, x->c / 2, x->sgn);
	if (w->c && !w->err && ten_ok(x))
		cdn_op_split(x, a, b);
}

static struct cdn_ten w_concat(struct walker *w, const struct cdn_ten *a, const struct cdn_ten *b)
{
	struct cdn_ten out = ten_new(w, a->h, a->w, a->c + b->c, a->sgn);
	if (w->c && !w->err && ten_ok(a) && ten_ok(b))
		cdn_op_concat_shuffle(a, b, &out);
	return out;
}

/* The network; mirrors network() in tools/codenet/codenet_arch.py.  Consumes x. */
static void walk(struct walker *w, struct cdn_ten *x0, struct cdn_ten heads[3])
{
	const struct cdn_model *m = w->m;
	char n[64], name[CDN_NAME_MAX];
	struct cdn_ten x = w_conv(w, "first.conv", x0, 3, m->stride4 ? 4 : 2, false, true, m->ch[0]);
	ten_put(w, x0);
	if (!m->stride4) {
		struct cdn_ten y = w_maxpool(w, &x);
		ten_put(w, &x);
		x = y;
	}
	int cin = m->ch[0];
	for (int si = 0; si < 3; si++) {
		int half = m->ch[si + 1] / 2;
		for (int u = 0; u < m->rep[si]; u++) {
			struct cdn_ten b1, x2, t, t2, b2;
			snprintf(n, sizeof(n), "stage%d.%d", si + 2, u);
			if (u == 0) {
				snprintf(name, sizeof(name), "%s.branch1.dw", n);
				t = w_conv(w, name, &x, 3, 2, true, false, cin);
				snprintf(name, sizeof(name), "%s.branch1.pw", n);
				b1 = w_conv(w, name, &t, 1, 1, false, true, half);
				ten_put(w, &t);
				x2 = x; /* borrowed: freed below */
			} else {
				w_split(w, &x, &b1, &x2);
				ten_put(w, &x);
			}
			snprintf(name, sizeof(name), "%s.branch2.pw1", n);
			t = w_conv(w, name, &x2, 1, 1, false, true, half);
			ten_put(w, &x2);
			snprintf(name, sizeof(name), "%s.branch2.dw", n);
			t2 = w_conv(w, name, &t, 3, u == 0 ? 2 : 1, true, false, half);
			ten_put(w, &t);
			snprintf(name, sizeof(name), "%s.branch2.pw2", n);
			b2 = w_conv(w, name, &t2, 1, 1, false, true, half);
			ten_put(w, &t2);
			x = w_concat(w, &b1, &b2);
			ten_put(w, &b1);
			ten_put(w, &b2);
		}
		cin = m->ch[si + 1];
	}
	struct cdn_ten y = w_conv(w, "conv5", &x, 1, 1, false, true, m->ch[4]);
	ten_put(w, &x);
	x = y;
	for (int i = 0; i < 3; i++) {
		int c = m->dec[i];
		struct cdn_ten t;
		snprintf(n, sizeof(n), "dec.%d", i);
		switch (m->kind) {
		case DEC_CONV3:
			snprintf(name, sizeof(name), "%s.conv", n);
			y = w_conv(w, name, &x, 3, 1, false, true, c);
			break;
		case DEC_DWCONV3:
			snprintf(name, sizeof(name), "%s.pw", n);
			t = w_conv(w, name, &x, 1, 1, false, true, c);
			snprintf(name, sizeof(name), "%s.conv", n);
			y = w_conv(w, name, &t, 3, 1, true, true, c);
			ten_put(w, &t);
			break;
		case DEC_FULL:
			y = w_dcn(w, n, &x, c, false);
			break;
		case DEC_DW:
			snprintf(name, sizeof(name), "%s.pw", n);
			t = w_conv(w, name, &x, 1, 1, false, true, c);
			y = w_dcn(w, n, &t, c, true);
			ten_put(w, &t);
			break;
		}
		ten_put(w, &x);
		x = w_upsample(w, &y);
		ten_put(w, &y);
	}
	static const char *const hn[3] = {"hm", "wh", "reg"};
	const int nout[3] = {m->desc.classes, 2, 2};
	for (int h = 0; h < 3; h++) {
		struct cdn_ten a, b;
		snprintf(name, sizeof(name), "head.%s.pw", hn[h]);
		a = w_conv(w, name, &x, 1, 1, false, true, m->head);
		snprintf(name, sizeof(name), "head.%s.dw", hn[h]);
		b = w_conv(w, name, &a, 3, 1, true, true, m->head);
		ten_put(w, &a);
		snprintf(name, sizeof(name), "head.%s.out", hn[h]);
		heads[h] = w_conv(w, name, &b, 1, 1, false, false, nout[h]);
		ten_put(w, &b);
	}
	ten_put(w, &x);
}

/* ---- JSON ---------------------------------------------------------------- */
__attribute__((format(printf, 4, 5))) static int jerr(char *err, size_t errlen,
							const char *path, const char *fmt, ...)
{
	char b[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b, sizeof(b), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "%s: %s", path, b);
	return -EINVAL;
}

static bool get_int(struct json_object *o, const char *key, int lo, int hi, int *v, bool required)
{
	struct json_object *x;
	if (!json_object_object_get_ex(o, key, &x))
		return !required;
	if (!json_object_is_type(x, json_type_int))
		return false;
	int64_t i = json_object_get_int64(x);
	if (i < lo || i > hi)
		return false;
	*v = (int)i;
	return true;
}

static bool get_ints(struct json_object *o, const char *key, int n, int lo, int hi, int *v)
{
	struct json_object *x;
	if (!json_object_object_get_ex(o, key, &x))
		return false;
	if (!json_object_is_type(x, json_type_array) || (int)json_object_array_length(x) != n)
		return false;
	for (int i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(x, (size_t)i);
		if (!json_object_is_type(e, json_type_int))
			return false;
		int64_t k = json_object_get_int64(e);
		if (k < lo || k > hi)
			return false;
		v[i] = (int)k;
	}
	return true;
}

static const char *get_str(struct json_object *o, const char *key)
{
	struct json_object *x;
	if (!json_object_object_get_ex(o, key, &x) || !json_object_is_type(x, json_type_string))
		return NULL;
	return json_object_get_string(x);
}

static bool get_bool(struct json_object *o, const char *key, bool *v)
{
	struct json_object *x;
	if (!json_object_object_get_ex(o, key, &x))
		return true;
	if (!json_object_is_type(x, json_type_boolean))
		return false;
	*v = json_object_get_boolean(x);
	return true;
}

static bool get_num(struct json_object *o, const char *key, double lo, double hi, double *v)
{
	struct json_object *x;
	if (!json_object_object_get_ex(o, key, &x))
		return true;
	if (!json_object_is_type(x, json_type_double) && !json_object_is_type(x, json_type_int))
		return false;
	double d = json_object_get_double(x);
	if (!(d >= lo && d <= hi))
		return false;
	*v = d;
	return true;
}

static bool only_keys(struct json_object *o, const char *const *keys, const char **bad)
{
	json_object_object_foreach(o, k, v)
	{
		(void)v;
		bool found = false;
		for (int i = 0; keys[i] && !found; i++)
			found = !strcmp(keys[i], k);
		if (!found) {
			*bad = k;
			return false;
		}
	}
	return true;
}

static int parse_arch(struct cdn_model *m, struct json_object *j, const char *path,
		      const char **weights, char *err, size_t errlen)
{
	static const char *const top[] = {"format", "version", "backbone", "width",
					  "stage_channels", "stage_repeats", "input",
					  "first_layer", "decoder_channels", "head_channels", "dcn",
					  "classes", "labels", "quantization", "decode", "weights",
					  NULL};
	static const char *const dk[] = {"kind", "mask", "square", "rounded", "bound", NULL};
	static const char *const ik[] = {"width", "height", NULL};
	static const char *const ck[] = {"max_detections", "score_threshold", NULL};
	static const int std1[5] = {24, 116, 232, 464, 1024}, std2[5] = {24, 244, 488, 976, 2048},
			 stdr[3] = {4, 8, 4};
	const char *s, *bad = NULL;
	struct json_object *o;
	int v;

	if (!json_object_is_type(j, json_type_object))
		return jerr(err, errlen, path, "%s", "not a JSON object");
	if (!only_keys(j, top, &bad))
		return jerr(err, errlen, path, "unknown key \"%s\"", bad);
	if (!(s = get_str(j, "format")) || strcmp(s, "codenet"))
		return jerr(err, errlen, path, "%s", "format must be \"codenet\"");
	if (!get_int(j, "version", 1, 1, &v, true))
		return jerr(err, errlen, path, "%s", "version must be 1");
	if (!(s = get_str(j, "backbone")) || strcmp(s, "shufflenetv2"))
		return jerr(err, errlen, path, "%s", "backbone must be \"shufflenetv2\"");
	if (!(s = get_str(j, "width")))
		return jerr(err, errlen, path, "%s", "width missing");
	const int *stdc = !strcmp(s, "1.0x") ? std1 : !strcmp(s, "2.0x") ? std2 : NULL;
	if (!stdc && strcmp(s, "custom"))
		return jerr(err, errlen, path, "%s", "width must be 1.0x, 2.0x or custom");
	bool have_c = json_object_object_get_ex(j, "stage_channels", NULL);
	bool have_r = json_object_object_get_ex(j, "stage_repeats", NULL);
	if (have_c && !get_ints(j, "stage_channels", 5, 2, 4096, m->ch))
		return jerr(err, errlen, path, "%s", "stage_channels: 5 integers in [2,4096]");
	if (have_r && !get_ints(j, "stage_repeats", 3, 1, 16, m->rep))
		return jerr(err, errlen, path, "%s", "stage_repeats: 3 integers in [1,16]");
	if (stdc) {
		if ((have_c && memcmp(m->ch, stdc, sizeof(m->ch))) ||
		    (have_r && memcmp(m->rep, stdr, sizeof(m->rep))))
			return jerr(err, errlen, path, "stage channels/repeats do not match width %s",
				    s);
		memcpy(m->ch, stdc, sizeof(m->ch));
		memcpy(m->rep, stdr, sizeof(m->rep));
	} else if (!have_c || !have_r) {
		return jerr(err, errlen, path, "%s", "width custom needs stage_channels and stage_repeats");
	}
	for (int i = 0; i < 5; i++)
		if (m->ch[i] % 2)
			return jerr(err, errlen, path, "%s", "stage_channels must be even");
	if (!json_object_object_get_ex(j, "input", &o) || !json_object_is_type(o, json_type_object) ||
	    !only_keys(o, ik, &bad) || !get_int(o, "width", 32, 2048, &m->desc.width, true) ||
	    !get_int(o, "height", 32, 2048, &m->desc.height, true) || m->desc.width % 32 ||
	    m->desc.height % 32)
		return jerr(err, errlen, path, "%s",
			    "input: {width, height}, multiples of 32 in [32,2048]");
	if (!(s = get_str(j, "first_layer")) ||
	    (strcmp(s, "stride4") && strcmp(s, "stride2_maxpool")))
		return jerr(err, errlen, path, "%s", "first_layer must be stride4 or stride2_maxpool");
	m->stride4 = !strcmp(s, "stride4");
	m->dec[0] = 256, m->dec[1] = 128, m->dec[2] = 64;
	if (json_object_object_get_ex(j, "decoder_channels", NULL) &&
	    !get_ints(j, "decoder_channels", 3, 1, 4096, m->dec))
		return jerr(err, errlen, path, "%s", "decoder_channels: 3 integers in [1,4096]");
	m->head = 64;
	if (!get_int(j, "head_channels", 1, 4096, &m->head, false))
		return jerr(err, errlen, path, "%s", "head_channels: integer in [1,4096]");
	if (!json_object_object_get_ex(j, "dcn", &o) || !json_object_is_type(o, json_type_object) ||
	    !only_keys(o, dk, &bad) || !(s = get_str(o, "kind")))
		return jerr(err, errlen, path, "%s", "dcn: {kind, mask, square, rounded, bound}");
	if (!strcmp(s, "conv3x3"))
		m->kind = DEC_CONV3;
	else if (!strcmp(s, "dwconv3x3"))
		m->kind = DEC_DWCONV3;
	else if (!strcmp(s, "full"))
		m->kind = DEC_FULL;
	else if (!strcmp(s, "depthwise"))
		m->kind = DEC_DW;
	else
		return jerr(err, errlen, path, "%s",
			    "dcn.kind must be conv3x3, dwconv3x3, full or depthwise");
	double bound = 0;
	if (!get_bool(o, "mask", &m->dcn.mask) || !get_bool(o, "square", &m->dcn.square) ||
	    !get_bool(o, "rounded", &m->dcn.rounded) || !get_num(o, "bound", 0, 64, &bound))
		return jerr(err, errlen, path, "%s",
			    "dcn: mask/square/rounded are booleans, bound a number in [0,64]");
	if (m->kind != DEC_FULL && m->kind != DEC_DW)
		m->dcn = (struct cdn_dcn_cfg){0};
	else
		m->dcn.bound = (float)bound;
	if (!get_int(j, "classes", 1, 1000, &m->desc.classes, true))
		return jerr(err, errlen, path, "%s", "classes: integer in [1,1000]");
	if (!(s = get_str(j, "quantization")) || (strcmp(s, "float") && strcmp(s, "w4a8")))
		return jerr(err, errlen, path, "%s", "quantization must be float or w4a8");
	m->desc.quant = !strcmp(s, "w4a8");
	if (m->desc.quant && m->dcn.mask)
		return jerr(err, errlen, path, "%s", "w4a8 has no DCNv2 mask (float only)");
	m->desc.max_det = 100;
	m->desc.thresh = 0.1f;
	if (json_object_object_get_ex(j, "decode", &o)) {
		double th = 0.1;
		if (!json_object_is_type(o, json_type_object) || !only_keys(o, ck, &bad) ||
		    !get_int(o, "max_detections", 1, ENG_MAX_DETECTIONS, &m->desc.max_det, false) ||
		    !get_num(o, "score_threshold", 0, 1, &th))
			return jerr(err, errlen, path, "decode: max_detections in [1,%s], score_threshold in [0,1]",
				    "256");
		m->desc.thresh = (float)th;
	}
	if (json_object_object_get_ex(j, "labels", &o)) {
		if (!json_object_is_type(o, json_type_array) ||
		    (int)json_object_array_length(o) != m->desc.classes)
			return jerr(err, errlen, path, "%s", "labels: an array with one string per class");
		m->labels = calloc((size_t)m->desc.classes, sizeof(char *));
		if (!m->labels)
			return -ENOMEM;
		for (int i = 0; i < m->desc.classes; i++) {
			struct json_object *e = json_object_array_get_idx(o, (size_t)i);
			if (!json_object_is_type(e, json_type_string) ||
			    strlen(json_object_get_string(e)) >= ENG_LABEL_MAX)
				return jerr(err, errlen, path, "labels: strings shorter than %s bytes",
					    "48");
			m->labels[i] = strdup(json_object_get_string(e));
			if (!m->labels[i])
				return -ENOMEM;
		}
	}
	if (!(*weights = get_str(j, "weights")) || !**weights)
		return jerr(err, errlen, path, "%s", "weights: the safetensors file name");
	return 0;
}

/* ---- weights -------------------------------------------------------------- */
static int bind_layer(struct cdn_model *m, struct cdn_layer *L, const struct cdn_st *st,
		      int *used, char *err, size_t errlen)
{
	char n[CDN_NAME_MAX + 16];
	bool dw = L->kind == CDN_L_DW || L->kind == CDN_L_DCN_DW;
	int cpg = dw ? 1 : L->cin; /* input channels per group */
	int wd[4] = {L->cout, cpg, L->k, L->k}, cd[1] = {L->cout};
	size_t kk = (size_t)L->k * L->k, nw = (size_t)L->cout * cpg * kk;
	const void *wp, *bp, *mp = NULL;
	int r;
	snprintf(n, sizeof(n), "%s.weight", L->name);
	r = cdn_st_get(st, n, m->desc.quant ? CDN_I8 : CDN_F32, 4, wd, &wp, err, errlen);
	if (r < 0)
		return r;
	snprintf(n, sizeof(n), "%s.bias", L->name);
	r = cdn_st_get(st, n, m->desc.quant ? CDN_I32 : CDN_F32, 1, cd, &bp, err, errlen);
	if (r < 0)
		return r;
	*used += 2;
	if (m->desc.quant) {
		snprintf(n, sizeof(n), "%s.scale", L->name);
		r = cdn_st_get(st, n, CDN_I32, 1, cd, &mp, err, errlen);
		if (r < 0)
			return r;
		(*used)++;
		if (!strncmp(L->name, "head.", 5) && strstr(L->name, ".out")) {
			int one[1] = {1};
			const void *op;
			snprintf(n, sizeof(n), "%s.oscale", L->name);
			r = cdn_st_get(st, n, CDN_F32, 1, one, &op, err, errlen);
			if (r < 0)
				return r;
			(*used)++;
			memcpy(&L->oscale, op, sizeof(float));
			if (!(isfinite(L->oscale) && L->oscale > 0)) {
				snprintf(err, errlen, "tensor %s: must be a positive number", n);
				return -EINVAL;
			}
		}
	}
	/* repack: [tap][cin][cout] for GEMM layers, [tap][c] for depthwise */
	size_t K = dw ? kk : kk * L->cin;
	size_t packed = dw ? kk * L->cout : K * L->cout;
	if (m->desc.quant) {
		L->wq = malloc(packed * sizeof(int16_t));
		L->mq = malloc(sizeof(int32_t) * L->cout);
		L->bq = malloc(sizeof(int32_t) * L->cout);
		if (!L->wq || !L->mq || !L->bq)
			return -ENOMEM;
		memcpy(L->mq, mp, sizeof(int32_t) * L->cout);
		memcpy(L->bq, bp, sizeof(int32_t) * L->cout);
		for (int c = 0; c < L->cout; c++) {
			if (L->mq[c] < 0 || L->mq[c] > 65535 || L->bq[c] < -(1 << 30) ||
			    L->bq[c] > (1 << 30)) {
				snprintf(err, errlen,
					 "%s: multiplier %d outside [0,65535] or bias %d outside ±2^30",
					 L->name, L->mq[c], L->bq[c]);
				return -EINVAL;
			}
		}
		const int8_t *w8 = wp;
		for (size_t i = 0; i < nw; i++) {
			int v = w8[i];
			if (v < -7 || v > 7) {
				snprintf(err, errlen, "%s.weight: value %d is not a 4-bit weight in [-7,7]",
					 L->name, v);
				return -EINVAL;
			}
		}
		for (int o = 0; o < L->cout; o++)
			for (int ci = 0; ci < cpg; ci++)
				for (size_t t = 0; t < kk; t++) {
					int v = w8[((size_t)o * cpg + ci) * kk + t];
					if (dw)
						L->wq[t * L->cout + o] = (int16_t)v;
					else
						L->wq[(t * L->cin + ci) * L->cout + o] = (int16_t)v;
				}
		if (cdn_layer_pack(L) < 0)
			return -ENOMEM;
	} else {
		float *tmp = malloc(nw * sizeof(float));
		L->wf = malloc(packed * sizeof(float));
		L->bf = malloc(sizeof(float) * L->cout);
		if (!tmp || !L->wf || !L->bf) {
			free(tmp);
			return -ENOMEM;
		}
		memcpy(tmp, wp, nw * sizeof(float));
		memcpy(L->bf, bp, sizeof(float) * L->cout);
		bool finite = true;
		for (size_t i = 0; i < nw; i++)
			finite &= isfinite(tmp[i]);
		for (int c = 0; c < L->cout; c++)
			finite &= isfinite(L->bf[c]);
		if (!finite) {
			free(tmp);
			snprintf(err, errlen, "%s: weights must be finite", L->name);
			return -EINVAL;
		}
		for (int o = 0; o < L->cout; o++)
			for (int ci = 0; ci < cpg; ci++)
				for (size_t t = 0; t < kk; t++) {
					float v = tmp[((size_t)o * cpg + ci) * kk + t];
					if (dw)
						L->wf[t * L->cout + o] = v;
					else
						L->wf[(t * L->cin + ci) * L->cout + o] = v;
				}
		free(tmp);
	}
	m->desc.weight_bytes += m->desc.quant ? (nw + 1) / 2 + 8 * (size_t)L->cout
					      : 4 * (nw + (size_t)L->cout);
	return 0;
}

int cdn_model_load(const char *json_path, struct cdn_model **out, char *err, size_t errlen)
{
	struct cdn_model *m = calloc(1, sizeof(*m));
	struct json_object *j = NULL;
	struct cdn_st *st = NULL;
	char *dir = NULL, *wpath = NULL;
	const char *weights = NULL;
	int r;
	if (!m)
		return -ENOMEM;
	j = json_object_from_file(json_path);
	if (!j) {
		snprintf(err, errlen, "%s: cannot read or parse JSON (%s)", json_path,
			 json_util_get_last_err() ? json_util_get_last_err() : "?");
		r = -EINVAL;
		goto fail;
	}
	r = parse_arch(m, j, json_path, &weights, err, errlen);
	if (r < 0)
		goto fail;
	/* the layer list, from the same walk the run uses */
	struct walker w = {.m = m};
	struct cdn_ten in = {.h = m->desc.height, .w = m->desc.width, .c = 3};
	struct cdn_ten heads[3];
	walk(&w, &in, heads);
	if (w.err) {
		snprintf(err, errlen, "%s: %s", json_path, w.errmsg);
		r = w.err;
		goto fail;
	}
	m->desc.n_layers = m->n_layers;
	m->desc.out_h = heads[0].h;
	m->desc.out_w = heads[0].w;
	/* weights file, relative to the JSON's folder */
	dir = strdup(json_path);
	if (!dir) {
		r = -ENOMEM;
		goto fail;
	}
	if (weights[0] == '/') {
		wpath = strdup(weights);
	} else if (asprintf(&wpath, "%s/%s", dirname(dir), weights) < 0) {
		wpath = NULL;
	}
	if (!wpath) {
		r = -ENOMEM;
		goto fail;
	}
	r = cdn_st_open(wpath, &st, err, errlen);
	if (r < 0)
		goto fail;
	int used = 0;
	for (int i = 0; i < m->n_layers; i++) {
		char e2[256];
		r = bind_layer(m, &m->layers[i], st, &used, e2, sizeof(e2));
		if (r < 0) {
			if (r == -ENOMEM)
				snprintf(e2, sizeof(e2), "out of memory");
			snprintf(err, errlen, "%s: %s", wpath, e2);
			goto fail;
		}
	}
	if (used != cdn_st_count(st)) {
		/* find one tensor no layer asked for, to name it */
		const char *extra = "?";
		for (int i = 0; i < cdn_st_count(st); i++) {
			const char *tn = cdn_st_at(st, i)->name;
			bool known = false;
			for (int l = 0; l < m->n_layers && !known; l++) {
				size_t ln = strlen(m->layers[l].name);
				known = !strncmp(tn, m->layers[l].name, ln) && tn[ln] == '.' &&
					(!strcmp(tn + ln, ".weight") || !strcmp(tn + ln, ".bias") ||
					 (m->desc.quant && (!strcmp(tn + ln, ".scale") ||
							    !strcmp(tn + ln, ".oscale"))));
			}
			if (!known) {
				extra = tn;
				break;
			}
		}
		snprintf(err, errlen, "%s: unexpected tensor %s", wpath, extra);
		r = -EINVAL;
		goto fail;
	}
	cdn_st_close(st);
	json_object_put(j);
	free(dir);
	free(wpath);
	*out = m;
	return 0;
fail:
	cdn_st_close(st);
	if (j)
		json_object_put(j);
	free(dir);
	free(wpath);
	cdn_model_destroy(m);
	return r;
}

void cdn_model_destroy(struct cdn_model *m)
{
	if (!m)
		return;
	for (int i = 0; i < m->n_layers; i++) {
		struct cdn_layer *L = &m->layers[i];
		free(L->wf);
		free(L->bf);
		free(L->wq);
		free(L->wq2);
		cdn_layer_vk_free(L);
		free(L->mq);
		free(L->bq);
	}
	if (m->labels)
		for (int i = 0; i < m->desc.classes; i++)
			free(m->labels[i]);
	free(m->labels);
	free(m);
}

const struct cdn_desc *cdn_model_desc(const struct cdn_model *m)
{
	return &m->desc;
}

const char *cdn_model_label(const struct cdn_model *m, int class_id)
{
	if (!m->labels || class_id < 0 || class_id >= m->desc.classes)
		return NULL;
	return m->labels[class_id];
}

int cdn_model_set_vk(struct cdn_model *m, cdn_vk_fn fn)
{
	int r = 0;
	for (int i = 0; fn && !r && i < m->n_layers; i++)
		r = cdn_layer_pack_vk(&m->layers[i], fn);
	if (!fn || r)
		for (int i = 0; i < m->n_layers; i++)
			cdn_layer_vk_free(&m->layers[i]);
	return r;
}

const struct cdn_layer *cdn_model_layer(const struct cdn_model *m, int i)
{
	return i >= 0 && i < m->n_layers ? &m->layers[i] : NULL;
}

const struct cdn_dcn_cfg *cdn_model_dcn(const struct cdn_model *m)
{
	return &m->dcn;
}

/* ---- contexts ------------------------------------------------------------- */
static size_t ws_align(size_t v)
{
	return (v + CDN_WS_ALIGN - 1) & ~(size_t)(CDN_WS_ALIGN - 1);
}

static int cmp_slot_size(const void *a, const void *b, void *arg)
{
	const struct cdn_slot *s = arg;
	int x = *(const int *)a, y = *(const int *)b;
	if (s[x].bytes != s[y].bytes)
		return s[x].bytes < s[y].bytes ? 1 : -1;
	return x - y;
}

static int cmp_off(const void *a, const void *b)
{
	const struct cdn_slot *x = *(const struct cdn_slot *const *)a;
	const struct cdn_slot *y = *(const struct cdn_slot *const *)b;
	return (x->off > y->off) - (x->off < y->off);
}

static bool live_together(const struct cdn_slot *a, const struct cdn_slot *b)
{
	return a->born <= b->died && b->born <= a->died;
}

/* Walks the network without data, then places every tensor: largest first,
 * at the lowest offset that overlaps no tensor alive at the same time. */
static int plan_arena(struct cdn_ctx *c)
{
	const struct cdn_model *m = c->m;
	struct walker w = {.m = (struct cdn_model *)m, .c = c, .plan = true};
	struct cdn_ten in = ten_new(&w, m->desc.height, m->desc.width, 3, false);
	struct cdn_ten heads[3];
	walk(&w, &in, heads);
	if (w.err) {
		log_error("codenet", "planning the arena: %s", w.errmsg);
		return w.err;
	}
	int n = c->n_slots;
	int *order = malloc((size_t)n * sizeof(*order));
	const struct cdn_slot **near = malloc((size_t)n * sizeof(*near));
	if (!order || !near) {
		free(order);
		free(near);
		return -ENOMEM;
	}
	for (int i = 0; i < n; i++)
		order[i] = i;
	qsort_r(order, (size_t)n, sizeof(*order), cmp_slot_size, c->slots);
	size_t total = 0;
	for (int k = 0; k < n; k++) {
		struct cdn_slot *s = &c->slots[order[k]];
		size_t size = ws_align(s->bytes);
		int nn = 0;
		for (int j = 0; j < k; j++)
			if (live_together(s, &c->slots[order[j]]))
				near[nn++] = &c->slots[order[j]];
		qsort(near, (size_t)nn, sizeof(*near), cmp_off);
		size_t cur = 0;
		for (int j = 0; j < nn; j++) {
			if (near[j]->off >= cur + size)
				break;
			size_t end = near[j]->off + ws_align(near[j]->bytes);
			if (end > cur)
				cur = end;
		}
		s->off = cur;
		if (cur + size > total)
			total = cur + size;
	}
	free(order);
	free(near);
	/* Invariant: tensors alive at the same time never share bytes. */
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++) {
			const struct cdn_slot *a = &c->slots[i], *b = &c->slots[j];
			if (live_together(a, b) && a->off < b->off + b->bytes &&
			    b->off < a->off + a->bytes) {
				log_error("codenet", "arena plan: tensors %d and %d overlap", i, j);
				return -EINVAL;
			}
		}
	c->arena_bytes = total ? total : CDN_WS_ALIGN;
	c->ws_bytes = w.scratch ? cdn_op_ws_bytes(w.scratch, c->threads) : 0;
	c->arena = aligned_alloc(CDN_WS_ALIGN, c->arena_bytes);
	if (c->ws_bytes)
		c->ws = aligned_alloc(CDN_WS_ALIGN, c->ws_bytes);
	if (!c->arena || (c->ws_bytes && !c->ws))
		return -ENOMEM;
	return 0;
}

int cdn_ctx_create(const struct cdn_model *m, int threads, struct cdn_ctx **out)
{
	struct cdn_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->m = m;
	c->threads = threads < 1 ? 1 : threads;
	c->par = (struct cdn_par){.threads = c->threads};
	c->traces = calloc((size_t)m->n_layers, sizeof(*c->traces));
	c->ns = calloc((size_t)m->n_layers, sizeof(*c->ns));
	int r = c->traces && c->ns ? plan_arena(c) : -ENOMEM;
	if (r < 0) {
		cdn_ctx_destroy(c);
		return r;
	}
	*out = c;
	return 0;
}

void cdn_ctx_memory(const struct cdn_ctx *c, size_t *arena, size_t *ws, size_t *naive)
{
	size_t sum = 0;
	for (int i = 0; i < c->n_slots; i++)
		sum += c->slots[i].bytes;
	*arena = c->arena_bytes;
	*ws = c->ws_bytes;
	*naive = sum;
}

void cdn_ctx_destroy(struct cdn_ctx *c)
{
	if (!c)
		return;
	for (int h = 0; h < 3; h++)
		free(c->deq[h]);
	if (c->traces)
		for (int i = 0; i < c->m->n_layers; i++)
			ten_free(&c->traces[i]);
	free(c->traces);
	free(c->ns);
	free(c->slots);
	free(c->arena);
	free(c->ws);
	free(c);
}

void cdn_ctx_set_trace(struct cdn_ctx *c, bool on)
{
	c->trace = on;
}

void cdn_ctx_set_offload(struct cdn_ctx *c, cdn_offload_fn fn, void *user)
{
	c->offload = fn;
	c->offload_user = user;
}

void cdn_ctx_set_runner(struct cdn_ctx *c,
			void (*run)(void *user, int threads, int n, cdn_par_fn fn, void *arg),
			void *user)
{
	c->par.run = run;
	c->par.user = user;
}

int cdn_run(struct cdn_ctx *c, const uint8_t *rgb, struct eng_detections *out)
{
	const struct cdn_model *m = c->m;
	struct walker w = {.m = (struct cdn_model *)m, .c = c};
	const struct cdn_desc *d = &m->desc;
	out->n = 0;
	for (int h = 0; h < 3; h++) /* in the arena: this run overwrites them */
		ten_put(&w, &c->heads[h]);
	struct cdn_ten in = ten_new(&w, d->height, d->width, 3, false);
	if (w.err)
		return w.err;
	size_t n = (size_t)d->height * d->width * 3;
	for (size_t i = 0; i < n; i++) {
		if (in.f)
			in.f[i] = (float)rgb[i] / 255.0f;
		else
			in.q[i] = (int8_t)(rgb[i] - 128);
	}
	walk(&w, &in, c->heads);
	if (w.err) {
		log_error("codenet", "run failed: %s", w.errmsg[0] ? w.errmsg : "out of memory");
		for (int h = 0; h < 3; h++)
			ten_put(&w, &c->heads[h]);
		return w.err;
	}
	const float *f[3];
	for (int h = 0; h < 3; h++) {
		struct cdn_ten *t = &c->heads[h];
		if (t->f) {
			f[h] = t->f;
			continue;
		}
		size_t cnt = (size_t)t->h * t->w * t->c;
		float *q = realloc(c->deq[h], cnt * sizeof(float));
		if (!q)
			return -ENOMEM;
		c->deq[h] = q;
		float s = m->layers[m->n_layers - 3 * 3 + 3 * h + 2].oscale;
		for (size_t i = 0; i < cnt; i++)
			q[i] = (float)t->q[i] * s;
		f[h] = q;
	}
	return cdn_decode(f[0], f[1], f[2], c->heads[0].h, c->heads[0].w, d->classes, d->width,
			  d->height, d->max_det, d->thresh, out);
}

int cdn_ctx_head(const struct cdn_ctx *c, int which, const struct cdn_ten **t)
{
	if (which < 0 || which > 2 || !ten_ok(&c->heads[which]))
		return -ENOENT;
	*t = &c->heads[which];
	return 0;
}

int cdn_ctx_trace(const struct cdn_ctx *c, int layer, const struct cdn_ten **t)
{
	if (layer < 0 || layer >= c->m->n_layers || !ten_ok(&c->traces[layer]))
		return -ENOENT;
	*t = &c->traces[layer];
	return 0;
}

int64_t cdn_ctx_layer_ns(const struct cdn_ctx *c, int layer)
{
	return layer >= 0 && layer < c->m->n_layers ? c->ns[layer] : 0;
}
