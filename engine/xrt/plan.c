/*
 * plan.c — lowering CoDeNet layers and TFLite nodes onto detd_accel blocks
 * (see plan.h for what is offloaded and why).  Runs once per model at load
 * time; the result is read-only.
 */
#include "plan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codenet.h"
#include "conv.h"
#include "graph.h"

#define PLAN_ALIGN 64

/* ---- the params blob ------------------------------------------------------- */
struct blob {
	uint8_t *d;
	size_t n, cap;
	int err;
};

/* Reserve `bytes` zeroed bytes at a 64-byte aligned offset. */
static uint32_t blob_take(struct blob *b, size_t bytes)
{
	size_t off = (b->n + PLAN_ALIGN - 1) & ~(size_t)(PLAN_ALIGN - 1);
	if (b->err || off + bytes > UINT32_MAX) {
		b->err = b->err ? b->err : -E2BIG;
		return 0;
	}
	if (off + bytes > b->cap) {
		size_t cap = b->cap ? b->cap : 1 << 16;
		while (cap < off + bytes)
			cap *= 2;
		uint8_t *d = realloc(b->d, cap);
		if (!d) {
			b->err = -ENOMEM;
			return 0;
		}
		memset(d + b->cap, 0, cap - b->cap);
		b->d = d;
		b->cap = cap;
	}
	b->n = off + bytes;
	return (uint32_t)off;
}

static void put32(uint8_t *p, int32_t v)
{
	uint32_t u = (uint32_t)v;
	p[0] = (uint8_t)u;
	p[1] = (uint8_t)(u >> 8);
	p[2] = (uint8_t)(u >> 16);
	p[3] = (uint8_t)(u >> 24);
}

/* ---- one block, whatever the model format --------------------------------- */
/* A stage with its full (untiled) parameters; w holds the stored weight
 * values (int8, uint8 or 4-bit) as ints: pw [c][cin], dw [9][c]. */
struct stage_full {
	uint32_t rq_mode;
	int32_t x_zp, w_zp, out_zp, act_lo, act_hi;
	int16_t *w;
	int32_t *mult, *shift, *bias;
};

struct block_spec {
	uint32_t flags, wbits, stride, deform;
	int32_t pad_t, pad_l, bound;
	int in_h, in_w, cin, c, out_h, out_w, aux_c;
	struct stage_full pw, dw;
};

static void stage_free(struct stage_full *s)
{
	free(s->w);
	free(s->mult);
	free(s->shift);
	free(s->bias);
	memset(s, 0, sizeof(*s));
}

static int stage_alloc(struct stage_full *s, size_t nw, int c)
{
	s->w = calloc(nw ? nw : 1, sizeof(*s->w));
	s->mult = calloc((size_t)c, sizeof(int32_t));
	s->shift = calloc((size_t)c, sizeof(int32_t));
	s->bias = calloc((size_t)c, sizeof(int32_t));
	if (!s->w || !s->mult || !s->shift || !s->bias) {
		stage_free(s);
		return -ENOMEM;
	}
	return 0;
}

static uint32_t put_rq(struct blob *b, const struct stage_full *s, int c0, int nc)
{
	int nc16 = (nc + 15) & ~15;
	uint32_t off = blob_take(b, (size_t)3 * nc16 * 4);
	if (b->err)
		return 0;
	for (int i = 0; i < nc; i++) {
		put32(b->d + off + (size_t)4 * i, s->mult[c0 + i]);
		put32(b->d + off + (size_t)4 * (nc16 + i), s->shift[c0 + i]);
		put32(b->d + off + (size_t)4 * (2 * nc16 + i), s->bias[c0 + i]);
	}
	return off;
}

static void fill_stage(struct accel_stage *a, const struct stage_full *s)
{
	a->rq_mode = s->rq_mode;
	a->x_zp = s->x_zp;
	a->w_zp = s->w_zp;
	a->out_zp = s->out_zp;
	a->act_lo = s->act_lo;
	a->act_hi = s->act_hi;
}

/* Widest output column tile whose mid columns fit the line buffer. */
static int tile_cols(const struct accel_desc *d, int ox0)
{
	int ow = (int)d->out_w - ox0;
	struct accel_desc t = *d;
	for (; ow > 1; ow--) {
		int32_t lo, n;
		accel_mid_range(&t, ox0, ow, (t.flags & ACCEL_F_DW) ? t.pad_l : 0, (int32_t)t.mid_w,
				&lo, &n);
		if (n <= ACCEL_MAX_W)
			break;
	}
	return ow;
}

static int emit_block(struct blob *b, const struct block_spec *s, struct plan_block *pb)
{
	bool pw = s->flags & ACCEL_F_PW, dw = s->flags & ACCEL_F_DW;
	uint32_t in_cw = plan_cw(pw ? s->cin : s->c);
	struct accel_desc proto = {
		.magic = ACCEL_DESC_MAGIC,
		.version = ACCEL_DESC_VERSION,
		.flags = s->flags,
		.wbits = pw ? s->wbits : 8,
		.stride = dw ? s->stride : 1,
		.pad_t = dw ? s->pad_t : 0,
		.pad_l = dw ? s->pad_l : 0,
		.deform = s->deform,
		.bound = s->deform ? s->bound : 0,
		.in_h = (uint32_t)s->in_h,
		.in_w = (uint32_t)s->in_w,
		.in_cw = in_cw,
		.cin = pw ? (uint32_t)s->cin : 0,
		.mid_h = (uint32_t)s->in_h,
		.mid_w = (uint32_t)s->in_w,
		.out_h = (uint32_t)s->out_h,
		.out_w = (uint32_t)s->out_w,
		.out_cw = plan_cw(s->c),
		.aux_cw = s->deform ? plan_cw(s->aux_c) : 0,
	};
	if (pw)
		fill_stage(&proto.pw, &s->pw);
	if (dw)
		fill_stage(&proto.dw, &s->dw);
	/* count the column tiles once */
	int ncols = 0;
	for (int ox0 = 0; ox0 < s->out_w; ox0 += tile_cols(&proto, ox0))
		ncols++;
	int nct = (s->c + ACCEL_MAX_TILE_C - 1) / ACCEL_MAX_TILE_C;
	pb->desc = calloc((size_t)ncols * nct, sizeof(*pb->desc));
	if (!pb->desc)
		return -ENOMEM;
	pb->n_desc = 0;
	for (int c0 = 0; c0 < s->c; c0 += ACCEL_MAX_TILE_C) {
		int nc = s->c - c0 < ACCEL_MAX_TILE_C ? s->c - c0 : ACCEL_MAX_TILE_C;
		int nc16 = (nc + 15) & ~15;
		struct accel_desc t = proto;
		t.c0 = (uint32_t)c0;
		t.nc = (uint32_t)nc;
		if (pw) {
			bool w4 = s->wbits == 4;
			size_t row = w4 ? (size_t)(in_cw + 1) / 2 * 16 : (size_t)in_cw * 16;
			t.pw.w_off = blob_take(b, row * nc);
			if (b->err)
				return b->err;
			for (int co = 0; co < nc; co++) {
				uint8_t *r = b->d + t.pw.w_off + row * co;
				const int16_t *w = s->pw.w + (size_t)(c0 + co) * s->cin;
				for (int ci = 0; ci < s->cin; ci++) {
					if (w4)
						r[ci / 2] |= (uint8_t)((w[ci] & 0xf) << ((ci & 1) * 4));
					else
						r[ci] = (uint8_t)w[ci];
				}
			}
			t.pw.rq_off = put_rq(b, &s->pw, c0, nc);
		}
		if (dw) {
			t.dw.w_off = blob_take(b, (size_t)9 * nc16);
			if (b->err)
				return b->err;
			for (int k = 0; k < 9; k++)
				for (int c = 0; c < nc; c++)
					b->d[t.dw.w_off + (size_t)k * nc16 + c] =
						(uint8_t)s->dw.w[(size_t)k * s->c + c0 + c];
			t.dw.rq_off = put_rq(b, &s->dw, c0, nc);
		}
		if (b->err)
			return b->err;
		for (int ox0 = 0; ox0 < s->out_w;) {
			int ow = tile_cols(&proto, ox0);
			t.oy0 = 0;
			t.oh = (uint32_t)s->out_h;
			t.ox0 = (uint32_t)ox0;
			t.ow = (uint32_t)ow;
			pb->desc[pb->n_desc++] = t;
			ox0 += ow;
		}
	}
	pb->in_h = s->in_h;
	pb->in_w = s->in_w;
	pb->in_c = pw ? s->cin : s->c;
	pb->out_h = s->out_h;
	pb->out_w = s->out_w;
	pb->out_c = s->c;
	pb->aux_c = s->deform ? s->aux_c : 0;
	pb->in_u8 = s->flags & ACCEL_F_IN_U8;
	pb->out_u8 = s->flags & ACCEL_F_OUT_U8;
	pb->macs = (pw ? (uint64_t)s->in_h * s->in_w * s->cin * s->c : 0) +
		   (dw ? (uint64_t)s->out_h * s->out_w * 9 * s->c : 0);
	return 0;
}

/* ---- the plan object ---------------------------------------------------------- */
static struct plan *plan_new(int n_units)
{
	struct plan *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->n_units = n_units;
	p->where = calloc((size_t)(n_units ? n_units : 1), 1);
	p->block_of = malloc(sizeof(int) * (size_t)(n_units ? n_units : 1));
	p->blocks = calloc((size_t)(n_units ? n_units : 1), sizeof(*p->blocks));
	if (!p->where || !p->block_of || !p->blocks) {
		plan_destroy(p);
		return NULL;
	}
	for (int i = 0; i < n_units; i++)
		p->block_of[i] = -1;
	return p;
}

void plan_destroy(struct plan *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->n_blocks; i++)
		free(p->blocks[i].desc);
	free(p->blocks);
	free(p->params);
	free(p->where);
	free(p->block_of);
	free(p);
}

static struct plan_block *add_block(struct plan *p, int u0, int u1, int aux)
{
	struct plan_block *b = &p->blocks[p->n_blocks];
	memset(b, 0, sizeof(*b));
	b->units[0] = u0;
	b->n_units = u1 >= 0 ? 2 : 1;
	if (u1 >= 0)
		b->units[1] = u1;
	b->aux_unit = aux;
	b->in_tensor = b->out_tensor = -1;
	return b;
}

static void commit_block(struct plan *p)
{
	struct plan_block *b = &p->blocks[p->n_blocks];
	for (int i = 0; i < b->n_units; i++) {
		p->where[b->units[i]] = PLAN_ACCEL;
		p->block_of[b->units[i]] = p->n_blocks;
	}
	p->n_blocks++;
}

static int plan_finish(struct plan *p, struct blob *b, struct plan **out, int rc)
{
	if (rc == 0)
		rc = b->err;
	if (rc) {
		free(b->d);
		/* a block that failed half way owns its descriptors */
		if (p)
			free(p->blocks[p->n_blocks].desc);
		plan_destroy(p);
		return rc;
	}
	p->params = b->d;
	p->params_bytes = b->n;
	*out = p;
	return 0;
}

/* ---- CoDeNet ------------------------------------------------------------------ */
/* "stage3.0.branch2.dw" → parent "stage3.0.branch2" */
static bool same_parent(const char *a, const char *b)
{
	const char *da = strrchr(a, '.'), *db = strrchr(b, '.');
	return da && db && da - a == db - b && strncmp(a, b, (size_t)(da - a)) == 0;
}

/* Input resolution divisor of a layer, from its name (the names and the
 * strides are fixed by the architecture: tools/codenet/codenet_arch.py). */
static int cdn_in_div(const char *name)
{
	int s, u;
	char rest[CDN_NAME_MAX];
	if (sscanf(name, "stage%d.%d.%95s", &s, &u, rest) == 3) {
		int d = 4 << (s - 2);
		if (u > 0 || strcmp(rest, "branch1.pw") == 0 || strcmp(rest, "branch2.pw2") == 0)
			return 2 * d;
		return d;
	}
	if (strcmp(name, "conv5") == 0)
		return 32;
	if (sscanf(name, "dec.%d.", &s) == 1)
		return 32 >> s;
	if (strncmp(name, "head.", 5) == 0)
		return 4;
	return 0;
}

static void cdn_stage(struct stage_full *s, const struct cdn_layer *L, bool in_signed)
{
	s->rq_mode = ACCEL_RQ_CDN;
	s->x_zp = in_signed ? 0 : -128;
	s->w_zp = 0;
	s->out_zp = L->relu ? -128 : 0;
	s->act_lo = -128;
	s->act_hi = 127;
	for (int c = 0; c < L->cout; c++) {
		s->mult[c] = L->mq[c];
		s->shift[c] = 0;
		s->bias[c] = L->bq[c];
	}
}

static int cdn_pw_stage(struct stage_full *s, const struct cdn_layer *L, bool in_signed)
{
	if (stage_alloc(s, (size_t)L->cin * L->cout, L->cout))
		return -ENOMEM;
	for (int co = 0; co < L->cout; co++)
		for (int ci = 0; ci < L->cin; ci++) /* wq is [cin][cout] for k = 1 */
			s->w[(size_t)co * L->cin + ci] = L->wq[(size_t)ci * L->cout + co];
	cdn_stage(s, L, in_signed);
	return 0;
}

static int cdn_dw_stage(struct stage_full *s, const struct cdn_layer *L)
{
	if (stage_alloc(s, (size_t)9 * L->cout, L->cout))
		return -ENOMEM;
	memcpy(s->w, L->wq, sizeof(int16_t) * 9 * (size_t)L->cout); /* [9][c] already */
	cdn_stage(s, L, false); /* padded layers only read unsigned tensors */
	return 0;
}

int plan_codenet(const struct cdn_model *m, struct plan **out, char *err, size_t errlen)
{
	const struct cdn_desc *md = cdn_model_desc(m);
	const struct cdn_dcn_cfg *dcn = cdn_model_dcn(m);
	struct plan *p = plan_new(md->n_layers);
	struct blob b = {0};
	int rc = 0;
	if (!p)
		return -ENOMEM;
	if (!md->quant) /* float models: the kernel is integer only */
		return plan_finish(p, &b, out, 0);
	for (int i = 0; i < md->n_layers && rc == 0; i++) {
		const struct cdn_layer *L = cdn_model_layer(m, i);
		const struct cdn_layer *N = cdn_model_layer(m, i + 1);
		const struct cdn_layer *P = cdn_model_layer(m, i - 1);
		int div = cdn_in_div(L->name);
		if (div <= 0)
			continue; /* first conv: cpu */
		int H = md->height / div, W = md->width / div;
		struct block_spec s = {.in_h = H, .in_w = W, .stride = 1, .pad_t = 1, .pad_l = 1};
		int u1 = -1, aux = -1;
		if (L->kind == CDN_L_CONV && L->k == 1 && L->stride == 1 && !L->is_offset &&
		    L->cin <= ACCEL_MAX_CIN) {
			bool in_signed = P && P->kind == CDN_L_DW && !P->relu;
			s.flags = ACCEL_F_PW;
			s.wbits = 4;
			s.cin = L->cin;
			s.c = L->cout;
			s.out_h = H;
			s.out_w = W;
			rc = cdn_pw_stage(&s.pw, L, in_signed);
			if (rc == 0 && N && N->kind == CDN_L_DW && N->k == 3 && N->cin == L->cout &&
			    same_parent(L->name, N->name)) {
				s.flags |= ACCEL_F_DW;
				s.stride = (uint32_t)N->stride;
				s.out_h = (H - 1) / N->stride + 1;
				s.out_w = (W - 1) / N->stride + 1;
				rc = cdn_dw_stage(&s.dw, N);
				u1 = i + 1;
			}
		} else if (L->kind == CDN_L_DW && L->k == 3) {
			s.flags = ACCEL_F_DW;
			s.c = L->cout;
			s.stride = (uint32_t)L->stride;
			s.out_h = (H - 1) / L->stride + 1;
			s.out_w = (W - 1) / L->stride + 1;
			rc = cdn_dw_stage(&s.dw, L);
		} else if (L->kind == CDN_L_DCN_DW && P && P->is_offset && !dcn->mask &&
			   (int)dcn->bound >= 1 && (int)dcn->bound <= ACCEL_MAX_BOUND) {
			/* unbounded offsets need the whole tensor on chip: cpu */
			s.flags = ACCEL_F_DW;
			s.c = L->cout;
			s.out_h = H;
			s.out_w = W;
			s.deform = dcn->square ? ACCEL_DEF_SQUARE : ACCEL_DEF_OFFSET;
			s.bound = (int32_t)dcn->bound;
			s.aux_c = P->cout;
			aux = i - 1;
			rc = cdn_dw_stage(&s.dw, L);
		} else {
			continue;
		}
		if (rc == 0) {
			struct plan_block *pb = add_block(p, i, u1, aux);
			rc = emit_block(&b, &s, pb);
			if (rc == 0)
				commit_block(p);
		}
		stage_free(&s.pw);
		stage_free(&s.dw);
		if (u1 >= 0)
			i++;
	}
	if (rc && err && errlen)
		snprintf(err, errlen, "plan: codenet lowering failed (%d)", rc);
	return plan_finish(p, &b, out, rc);
}

/* ---- TFLite --------------------------------------------------------------------- */
static bool tfl_q8(const struct eng_node *n)
{
	const struct conv_prep *p = n->prep;
	return p && (p->type == ENG_DT_U8 || p->type == ENG_DT_I8) && p->nb == 1 &&
	       n->in[0]->type == p->type && n->out[0]->type == p->type;
}

static bool tfl_is_pw(const struct eng_node *n)
{
	const struct conv_prep *p = n->prep;
	return n->type == ENG_OP_CONV_2D && tfl_q8(n) && p->kh == 1 && p->kw == 1 && p->sh == 1 &&
	       p->sw == 1 && p->ic <= ACCEL_MAX_CIN;
}

static bool tfl_is_dw(const struct eng_node *n)
{
	const struct conv_prep *p = n->prep;
	return n->type == ENG_OP_DEPTHWISE_CONV_2D && tfl_q8(n) && p->kh == 3 && p->kw == 3 &&
	       p->dm == 1 && p->dh == 1 && p->dwl == 1 && p->sh == p->sw &&
	       (p->sh == 1 || p->sh == 2) && p->pt >= 0 && p->pt <= 1 && p->pl >= 0 && p->pl <= 1;
}

static int tfl_stage(struct stage_full *s, const struct eng_node *n)
{
	const struct conv_prep *p = n->prep;
	const struct eng_tensor *f = n->in[1], *bt = n->n_in > 2 ? n->in[2] : NULL;
	size_t nw = (size_t)p->oc * (p->dw ? 9 : (size_t)p->ic);
	if (stage_alloc(s, nw, p->oc))
		return -ENOMEM;
	const uint8_t *w = f->const_data;
	bool u8 = p->type == ENG_DT_U8;
	if (p->dw) /* [1][3][3][oc]: tap-major already */
		for (size_t i = 0; i < nw; i++)
			s->w[i] = u8 ? w[i] : (int8_t)w[i];
	else /* [oc][1][1][ic] */
		for (size_t i = 0; i < nw; i++)
			s->w[i] = u8 ? w[i] : (int8_t)w[i];
	const int32_t *bias = bt && bt->const_data ? bt->const_data : NULL;
	s->rq_mode = ACCEL_RQ_TFL;
	s->x_zp = p->in_zp;
	s->w_zp = p->w_zp;
	s->out_zp = p->out_zp;
	s->act_lo = p->act_lo;
	s->act_hi = p->act_hi;
	for (int c = 0; c < p->oc; c++) {
		s->mult[c] = p->mult[c];
		s->shift[c] = p->shift[c];
		int32_t bv = 0;
		if (bias)
			memcpy(&bv, (const uint8_t *)bias + 4 * (size_t)c, 4); /* may be unaligned */
		s->bias[c] = bv;
	}
	return 0;
}

/* the single node that reads tensor t, or -1 (none, several, or a graph output) */
static int tfl_only_consumer(const struct eng_graph *g, const struct eng_tensor *t)
{
	int who = -1;
	for (int i = 0; i < g->n_outputs; i++)
		if (g->outputs[i] == t->index)
			return -1;
	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_in; k++)
			if (g->nodes[i].in[k] == t) {
				if (who >= 0 && who != i)
					return -1;
				who = i;
			}
	return who;
}

static int tfl_tensor_id(const struct eng_graph *g, const struct eng_tensor *t)
{
	return (int)(t - g->tensors);
}

int plan_tflite(const struct eng_graph *g, struct plan **out, char *err, size_t errlen)
{
	struct plan *p = plan_new(g->n_nodes);
	struct blob b = {0};
	int rc = 0;
	if (!p)
		return -ENOMEM;
	for (int i = 0; i < g->n_nodes && rc == 0; i++) {
		const struct eng_node *n = &g->nodes[i];
		if (p->where[i] == PLAN_ACCEL)
			continue; /* the depthwise half of a fused block */
		bool pw = tfl_is_pw(n), dw = !pw && tfl_is_dw(n);
		if (!pw && !dw)
			continue;
		const struct conv_prep *cp = n->prep;
		const struct eng_node *last = n;
		struct block_spec s = {.in_h = cp->ih, .in_w = cp->iw, .stride = 1};
		bool u8 = cp->type == ENG_DT_U8;
		int u1 = -1;
		if (pw) {
			s.flags = ACCEL_F_PW;
			s.wbits = 8;
			s.cin = cp->ic;
			s.c = cp->oc;
			s.out_h = cp->oh;
			s.out_w = cp->ow;
			rc = tfl_stage(&s.pw, n);
			int j = tfl_only_consumer(g, n->out[0]);
			if (rc == 0 && j > i && tfl_is_dw(&g->nodes[j]) &&
			    g->nodes[j].in[0] == n->out[0] &&
			    ((const struct conv_prep *)g->nodes[j].prep)->type == cp->type) {
				const struct conv_prep *dp = g->nodes[j].prep;
				s.flags |= ACCEL_F_DW;
				s.stride = (uint32_t)dp->sh;
				s.pad_t = dp->pt;
				s.pad_l = dp->pl;
				s.out_h = dp->oh;
				s.out_w = dp->ow;
				rc = tfl_stage(&s.dw, &g->nodes[j]);
				last = &g->nodes[j];
				u1 = j;
			}
		} else {
			s.flags = ACCEL_F_DW;
			s.c = cp->oc;
			s.stride = (uint32_t)cp->sh;
			s.pad_t = cp->pt;
			s.pad_l = cp->pl;
			s.out_h = cp->oh;
			s.out_w = cp->ow;
			rc = tfl_stage(&s.dw, n);
		}
		if (u8)
			s.flags |= ACCEL_F_IN_U8 | ACCEL_F_MID_U8 | ACCEL_F_OUT_U8 | ACCEL_F_W_U8;
		if (rc == 0) {
			struct plan_block *pb = add_block(p, i, u1, -1);
			rc = emit_block(&b, &s, pb);
			pb->in_tensor = tfl_tensor_id(g, n->in[0]);
			pb->out_tensor = tfl_tensor_id(g, last->out[0]);
			if (rc == 0)
				commit_block(p);
		}
		stage_free(&s.pw);
		stage_free(&s.dw);
	}
	if (rc && err && errlen)
		snprintf(err, errlen, "plan: tflite lowering failed (%d)", rc);
	return plan_finish(p, &b, out, rc);
}

/* ---- activations ------------------------------------------------------------- */
void plan_pack(const void *src, int h, int w, int c, void *dst)
{
	size_t row = (size_t)plan_cw(c) * ACCEL_WORD_BYTES;
	const uint8_t *s = src;
	uint8_t *d = dst;
	for (size_t px = 0; px < (size_t)h * w; px++) {
		memcpy(d + px * row, s + px * c, (size_t)c);
		memset(d + px * row + c, 0, row - (size_t)c);
	}
}

void plan_unpack(const void *src, int h, int w, int c, void *dst)
{
	size_t row = (size_t)plan_cw(c) * ACCEL_WORD_BYTES;
	const uint8_t *s = src;
	uint8_t *d = dst;
	for (size_t px = 0; px < (size_t)h * w; px++)
		memcpy(d + px * c, s + px * row, (size_t)c);
}

int plan_csim_block(const struct plan *p, const struct plan_block *b, const void *in,
		    const void *aux, void *out)
{
	size_t ni = plan_tensor_bytes(b->in_h, b->in_w, b->in_c);
	size_t no = plan_tensor_bytes(b->out_h, b->out_w, b->out_c);
	size_t na = b->aux_c ? plan_tensor_bytes(b->in_h, b->in_w, b->aux_c) : ACCEL_WORD_BYTES;
	void *ki = aligned_alloc(PLAN_ALIGN, (ni + PLAN_ALIGN - 1) & ~(size_t)(PLAN_ALIGN - 1));
	void *ko = aligned_alloc(PLAN_ALIGN, (no + PLAN_ALIGN - 1) & ~(size_t)(PLAN_ALIGN - 1));
	void *ka = aligned_alloc(PLAN_ALIGN, (na + PLAN_ALIGN - 1) & ~(size_t)(PLAN_ALIGN - 1));
	int rc = -ENOMEM;
	if (ki && ko && ka) {
		plan_pack(in, b->in_h, b->in_w, b->in_c, ki);
		memset(ka, 0, na);
		if (b->aux_c && aux)
			plan_pack(aux, b->in_h, b->in_w, b->aux_c, ka);
		memset(ko, 0, no);
		uint32_t st = accel_csim_run(b->desc, b->n_desc, p->params, ki, ka, ko);
		rc = st ? -EIO : 0;
		if (!st)
			plan_unpack(ko, b->out_h, b->out_w, b->out_c, out);
	}
	free(ki);
	free(ko);
	free(ka);
	return rc;
}
