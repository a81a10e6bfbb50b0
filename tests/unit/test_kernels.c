/*
 * test_kernels.c — the CPU kernel sets (engine/ops/kset.c) and the VNNI
 * convolution (engine/ops/conv_vnni.c, engine/ops/x86/vk_gemm.c) against the
 * reference kernels, byte for byte, on random shapes: odd sizes, every
 * padding edge, strides, dilations, zero points at the ends of the type,
 * per-channel scales, M/N/K that are not multiples of the tiles, several
 * blocks of rows and several threads; convs on im2col rows and on windows read
 * in place; the narrowing stores' requantization lane by lane near integers;
 * the 8-bit table lookup.
 *
 * The VNNI GEMM is checked twice: as built for the engine (native
 * instructions) and built from the same source against SIMDe (portable).
 * One suite per kind, so that meson shows each as run or SKIP (exit 77):
 *   (no argument)  kernel set names and selection, ops_lut8: runs everywhere
 *   simde          both VNNI widths and the VBMI lookup through SIMDe: needs libsimde-dev
 *   avx2, avxvnni, avx512vnni   that set natively: needs the CPU's instructions
 *   vbmi           the VBMI lookup natively: needs AVX-512 VBMI
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "kset.h"
#include "testutil.h"

/* ---- tensors and nodes ------------------------------------------------------ */

#define MAXT 8
struct tslot {
	struct eng_tensor t;
	float scale[512];
	int64_t zp[512];
};
static struct tslot slots[MAXT];
static int nslots;

static struct eng_tensor *mk(enum eng_dtype type, const int *dims, int ndim, float scale,
			     int64_t zp, void *data)
{
	ck_assert_int_lt(nslots, MAXT);
	struct tslot *s = &slots[nslots++];
	memset(s, 0, sizeof(*s));
	struct eng_tensor *t = &s->t;
	t->index = nslots - 1;
	t->type = type;
	t->ndim = ndim;
	size_t n = 1;
	for (int i = 0; i < ndim; i++) {
		t->dims[i] = dims[i];
		n *= (size_t)dims[i];
	}
	t->bytes = n * (type == ENG_DT_I32 ? 4 : 1);
	t->is_const = true;
	t->const_data = data;
	t->has_quant = true;
	s->scale[0] = scale;
	s->zp[0] = zp;
	t->q.n = 1;
	t->q.scale = s->scale;
	t->q.zero_point = s->zp;
	return t;
}

/* Run a prepared node with n->scratch_bytes of scratch and the given threads. */
static void eval_node(const struct eng_kernel *k, struct eng_node *n, int threads)
{
	void *scratch = n->scratch_bytes ? aligned_alloc(64, (n->scratch_bytes + 63) & ~(size_t)63)
					 : NULL;
	struct eng_exec x = {.arena = NULL, .scratch = scratch, .threads = threads};
	ck_assert_int_eq(k->eval(n, &x), 0);
	free(scratch);
}

static void run_kernel(const struct eng_kernel *k, struct eng_node *n, int threads)
{
	char err[200] = "";
	ck_assert_msg(k->prepare(n, err, sizeof(err)) == 0, "prepare: %s", err);
	eval_node(k, n, threads);
	k->release(n);
}

/* The GEMM variants under test. */
enum variant { V_512, V_256, V_2, V_512_SIMDE, V_256_SIMDE, V_2_SIMDE, V__COUNT };
static const char *const vnames[V__COUNT] = {"avx512vnni", "avxvnni", "avx2",
					     "avx512vnni (SIMDe)", "avxvnni (SIMDe)", "avx2 (SIMDe)"};

struct vfns {
	vk_gemm_fn gemm;
	vk_dw_fn dw;
	int vl;
	vk_add_fn add;
	vk_gemm_rows_fn rows;
	int gt; /* the depthwise's taps a group (conv_vnni_dw_prepare) */
};

/* NULL fns: the variant cannot run here. */
static struct vfns variant_fns(enum variant v)
{
	switch (v) {
	case V_512:
		if (eng_kset_usable(ENG_KS_AVX512VNNI))
			return (struct vfns){vk512_gemm, vk512_dw, 16, vk512_add, vk512_gemm_rows, 4};
		break;
	case V_256:
		if (eng_kset_usable(ENG_KS_AVXVNNI))
			return (struct vfns){vk256_gemm, vk256_dw, 8, vk256_add, vk256_gemm_rows, 4};
		break;
	case V_2:
		if (eng_kset_usable(ENG_KS_AVX2))
			return (struct vfns){vk2_gemm, vk2_dw, 8, vk2_add, vk2_gemm_rows, 2};
		break;
#ifdef HAVE_SIMDE
	case V_512_SIMDE:
		return (struct vfns){vk512s_gemm, vk512s_dw, 16, vk512s_add, vk512s_gemm_rows, 4};
	case V_256_SIMDE:
		return (struct vfns){vk256s_gemm, vk256s_dw, 8, vk256s_add, vk256s_gemm_rows, 4};
	case V_2_SIMDE:
		return (struct vfns){vk2s_gemm, vk2s_dw, 8, vk2s_add, vk2s_gemm_rows, 2};
#endif
	default:
		break;
	}
	return (struct vfns){NULL, NULL, 0, NULL, NULL, 0};
}

/* Run a conv node on the VNNI path of fns (it must qualify); gather: windows
 * read in place where the shape allows (else im2col rows). */
static void run_vnni(struct eng_node *n, const struct vfns *fns, int threads, bool gather)
{
	char err[200] = "";
	bool dw = n->type == ENG_OP_DEPTHWISE_CONV_2D;
	ck_assert_msg(conv_prepare_common(n, dw, err, sizeof(err)) == 0, "prepare: %s", err);
	if (dw)
		ck_assert_int_eq(conv_vnni_dw_prepare(n, n->prep, fns->dw, fns->vl, fns->gt), 0);
	else
		ck_assert_int_eq(conv_vnni_prepare(n, n->prep, fns->gemm, gather ? fns->rows : NULL),
				 0);
	ck_assert_ptr_nonnull(((struct conv_prep *)n->prep)->vnni);
	void *scratch = aligned_alloc(64, (n->scratch_bytes + 64) & ~(size_t)63);
	struct eng_exec x = {.arena = NULL, .scratch = scratch, .threads = threads};
	ck_assert_int_eq(conv_vnni_eval(n, &x), 0);
	free(scratch);
	conv_vnni_free(n->prep);
	conv_release(n);
}

static int pick(const int *v, int n)
{
	return v[rand() % n];
}

struct shape {
	bool s8;
	int nb, ih, iw, ic, oc, kh, kw, st, dil;
	enum eng_padding pad;
};

/*
 * One random conv: reference vs fn (or vs kernel k when fn is NULL), byte for
 * byte.  size: SMALL images, BIG ones (several row blocks, parallel split), or
 * DEEP ones (few rows, many channels: one or two row blocks, so that threads
 * split the channels, as in a network's last layers).
 */
enum size { SMALL, BIG, DEEP };
static void random_case(unsigned seed, const struct vfns *fn, const struct eng_kernel *k,
			bool dw, enum size size, int threads, const char *what)
{
	const bool big = size == BIG;
	srand(seed);
	nslots = 0;
	struct shape s;
	s.s8 = rand() % 3 == 0;
	enum eng_dtype t = s.s8 ? ENG_DT_I8 : ENG_DT_U8;
	s.nb = rand() % 4 == 0 ? 2 : 1;
	s.ih = 1 + rand() % (big ? 48 : 15);
	s.iw = 1 + rand() % (big ? 48 : 15);
	/* multiples of 4 take the direct 1×1 path, others im2col */
	s.ic = rand() % 2 ? 4 * (1 + rand() % 18) : 1 + rand() % 70;
	s.oc = rand() % 5 == 0 ? pick((const int[]){16, 32, 48, 64, 96}, 5) : 1 + rand() % 70;
	s.kh = pick((const int[]){1, 1, 1, 2, 3, 3, 5}, 7);
	s.kw = rand() % 4 == 0 ? pick((const int[]){1, 2, 3}, 3) : s.kh;
	s.st = pick((const int[]){1, 1, 2, 3}, 4);
	s.dil = rand() % 4 == 0 ? 2 : 1;
	s.pad = rand() % 3 == 0 ? ENG_PAD_VALID : ENG_PAD_SAME;
	if (size == DEEP) { /* ≥ 2M MACs (the threshold for splitting an op) */
		s.ih = 3 + rand() % 8;
		s.iw = 3 + rand() % 8;
		s.ic = rand() % 2 ? 4 * (64 + rand() % 90) : 250 + rand() % 300;
		s.oc = 33 + rand() % 200;
		s.kh = s.kw = rand() % 2 ? 1 : 3;
		s.st = 1;
		s.dil = 1;
	}
	if (dw) { /* depthwise: channels past 64 (several chunks), kernels up to 7×7 */
		s.ic = s.oc = rand() % 3 == 0 ? 64 + rand() % 150 : s.oc;
		s.kh = rand() % 5 == 0 ? 7 : s.kh;
		s.kw = rand() % 4 == 0 ? s.kw : s.kh;
	}
	int eh = (s.kh - 1) * s.dil + 1, ew = (s.kw - 1) * s.dil + 1;
	if (s.pad == ENG_PAD_VALID && (s.ih < eh || s.iw < ew))
		s.pad = ENG_PAD_SAME;
	int oh = s.pad == ENG_PAD_SAME ? (s.ih + s.st - 1) / s.st : (s.ih - eh) / s.st + 1;
	int ow = s.pad == ENG_PAD_SAME ? (s.iw + s.st - 1) / s.st : (s.iw - ew) / s.st + 1;

	/* zero points at the ends of the type as often as in the middle */
	int64_t zx = s.s8 ? pick((const int[]){-128, 0, 127, rand() % 256 - 128}, 4)
			  : pick((const int[]){0, 128, 255, rand() % 256}, 4);
	int64_t zy = s.s8 ? rand() % 256 - 128 : rand() % 256;
	int64_t zw = s.s8 ? 0 : pick((const int[]){0, 128, 255, rand() % 256}, 4);
	/* weights: full range (w - zw may leave int8: the row-sum term), near zw,
	 * or near zw with a few at the ends of the range, as in real models (only
	 * some channels need the row-sum term: per vector in the depthwise) */
	int wmode = rand() % 3;
	bool narrow = wmode != 0;
	size_t nx = (size_t)s.nb * s.ih * s.iw * s.ic, K = (size_t)s.kh * s.kw * s.ic;
	size_t nw = dw ? (size_t)s.oc * s.kh * s.kw : (size_t)s.oc * K, ny = (size_t)s.nb * oh * ow * s.oc;
	uint8_t *x = malloc(nx), *w = malloc(nw), *y0 = malloc(ny), *y1 = malloc(ny);
	int32_t *b = malloc((size_t)s.oc * sizeof(*b));
	for (size_t i = 0; i < nx; i++)
		x[i] = (uint8_t)rand();
	for (size_t i = 0; i < nw; i++) {
		int v = narrow ? (int)zw + rand() % 161 - 80 : rand() % 256;
		if (wmode == 2 && rand() % 40 == 0)
			v = rand() % 2 ? 0 : 255;
		if (s.s8)
			v = narrow ? rand() % 161 - 80 : rand() % 256 - 128;
		w[i] = (uint8_t)(s.s8 ? v : (v < 0 ? 0 : v > 255 ? 255 : v));
	}
	/* a few weights far from zw, as in real uint8 models (one to three a layer):
	 * the conv clamps them and adds the rest by extra K groups */
	if (!s.s8 && wmode == 1 && rand() % 2)
		for (int i = 1 + rand() % 4; i > 0; i--)
			w[(size_t)rand() % nw] = rand() % 2 ? 0 : 255;
	bool huge_bias = rand() % 5 == 0;
	for (int i = 0; i < s.oc; i++)
		b[i] = huge_bias ? (rand() % 2000001 - 1000000) * 16 : rand() % 20001 - 10000;
	float sx = 0.005f + (float)(rand() % 100) / 1000.0f, sw = 0.002f + (float)(rand() % 50) / 1000.0f;
	/* output scales from tiny (left shifts) to large (right shifts) */
	float sy = rand() % 4 == 0 ? 0.0004f : 0.02f + (float)(rand() % 200) / 100.0f;
	/* or scales whose ratio is c·2^-k (multiplier 2^30 or 3·2^29): most outputs
	 * then sit on exact ties, where the float requantization must defer to
	 * the 64-bit one (vk_gemm.c) and rounding differs by sign */
	bool ties = rand() % 3 == 0;
	if (ties) {
		sx = ldexpf(1.0f, -(4 + rand() % 4));
		sw = ldexpf((float)(1 + rand() % 3), -(4 + rand() % 4));
		sy = ldexpf(1.0f, -(rand() % 3));
	}

	struct eng_tensor *in[3];
	in[0] = mk(t, (const int[]){s.nb, s.ih, s.iw, s.ic}, 4, sx, zx, x);
	in[1] = dw ? mk(t, (const int[]){1, s.kh, s.kw, s.oc}, 4, sw, zw, w)
		   : mk(t, (const int[]){s.oc, s.kh, s.kw, s.ic}, 4, sw, zw, w);
	in[2] = mk(ENG_DT_I32, (const int[]){s.oc}, 1, sx * sw, 0, b);
	if (s.s8) { /* per-channel filter scales */
		struct tslot *ws = (struct tslot *)in[1];
		for (int i = 0; i < s.oc; i++) {
			ws->scale[i] = ties ? ldexpf((float)(1 + rand() % 3), -(4 + rand() % 4))
					    : 0.0005f + (float)(rand() % 100) / 2000.0f;
			ws->zp[i] = 0;
		}
		in[1]->q.n = s.oc;
		in[1]->q.axis = dw ? 3 : 0;
	}
	struct eng_tensor *o0[1] = {mk(t, (const int[]){s.nb, oh, ow, s.oc}, 4, sy, zy, y0)};
	struct eng_tensor *o1[1] = {mk(t, (const int[]){s.nb, oh, ow, s.oc}, 4, sy, zy, y1)};
	struct eng_conv_opts o = {.padding = s.pad, .stride_w = s.st, .stride_h = s.st,
				  .dilation_w = s.dil, .dilation_h = s.dil, .depth_multiplier = 1,
				  .act = pick((const int[]){ENG_ACT_NONE, ENG_ACT_RELU, ENG_ACT_RELU6}, 3)};
	bool bias = rand() % 5 != 0;
	struct eng_node n0 = {.type = dw ? ENG_OP_DEPTHWISE_CONV_2D : ENG_OP_CONV_2D, .n_in = bias ? 3 : 2, .in = in, .n_out = 1,
			      .out = o0, .opts.conv = o};
	struct eng_node n1 = n0;
	n1.out = o1;
	run_kernel(eng_kernel_get_ref(n0.type), &n0, 1);
	memset(y1, 0xA5, ny);
	if (fn)
		run_vnni(&n1, fn, threads, seed % 2 == 0);
	else
		run_kernel(k, &n1, threads);
	for (size_t i = 0; i < ny; i++)
		if (y0[i] != y1[i])
			ck_abort_msg("%s %s seed %u: byte %zu ref %u got %u (%s b%d %dx%dx%d -> %d k%dx%d "
				     "s%d d%d %s zx%lld zw%lld %s%s threads %d)",
				     dw ? "depthwise" : "conv", what, seed, i, y0[i], y1[i], s.s8 ? "int8" : "uint8", s.nb, s.ih,
				     s.iw, s.ic, s.oc, s.kh, s.kw, s.st, s.dil,
				     s.pad == ENG_PAD_SAME ? "same" : "valid", (long long)zx,
				     (long long)zw, narrow ? "narrow" : "full", ties ? " ties" : "",
				     threads);
	free(x);
	free(w);
	free(y0);
	free(y1);
	free(b);
}

/* ---- tests -------------------------------------------------------------------- */

START_TEST(kernel_set_names_and_selection)
{
	for (int i = 0; i < ENG_KS__COUNT; i++) {
		enum eng_kset ks;
		ck_assert_int_eq(eng_kset_from_name(eng_kset_name((enum eng_kset)i), &ks), 0);
		ck_assert_int_eq(ks, i);
	}
	enum eng_kset ks = ENG_KS_AVX2;
	ck_assert_int_eq(eng_kset_from_name("sse9", &ks), -EINVAL);
	ck_assert(eng_kset_usable(ENG_KS_REF));
	ck_assert(eng_kset_usable(eng_kset_best()));
	char err[200];
	unsetenv("DETD_KERNELS");
	ck_assert_int_eq(eng_kset_select(&ks, err, sizeof(err)), 0);
	ck_assert_int_eq(ks, eng_kset_best());
	setenv("DETD_KERNELS", "avx1024", 1);
	ck_assert_int_eq(eng_kset_select(&ks, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "DETD_KERNELS=avx1024"));
	for (int i = 0; i < ENG_KS__COUNT; i++) {
		setenv("DETD_KERNELS", eng_kset_name((enum eng_kset)i), 1);
		int rc = eng_kset_select(&ks, err, sizeof(err));
		if (eng_kset_usable((enum eng_kset)i)) {
			ck_assert_int_eq(rc, 0);
			ck_assert_int_eq(ks, i);
		} else {
			ck_assert_int_eq(rc, -ENOTSUP);
			ck_assert_ptr_nonnull(strstr(err, "lacks"));
		}
	}
	/* the CPU this runs on, for the log */
	fprintf(stderr, "kernel sets usable here:");
	for (int i = 0; i < ENG_KS__COUNT; i++)
		if (eng_kset_usable((enum eng_kset)i))
			fprintf(stderr, " %s", eng_kset_name((enum eng_kset)i));
	fprintf(stderr, " (best %s)\n", eng_kset_name(eng_kset_best()));
}
END_TEST

/* The VNNI GEMM variant _i against the reference conv on random shapes. */
START_TEST(vnni_conv_matches_reference)
{
	struct vfns fn = variant_fns((enum variant)_i);
	ck_assert_msg(fn.gemm, "%s cannot run here (the suite's check let it)", vnames[_i]);
	const bool simde = _i >= V_512_SIMDE;
	const unsigned n = simde ? 120 : 400;
	for (int dw = 0; dw < 2; dw++) {
		for (unsigned s = 1; s <= n; s++)
			random_case(s, &fn, NULL, dw, SMALL, 1, vnames[_i]);
		/* larger images: several row blocks and tiles, split over threads */
		for (unsigned s = 1; s <= (simde ? 6 : 30); s++)
			random_case(1000 + s, &fn, NULL, dw, BIG, 1 + (int)(s % 3), vnames[_i]);
	}
	/* few rows, deep: the channels split over threads (column slices) */
	for (unsigned s = 1; s <= (simde ? 3 : 12); s++)
		random_case(2000 + s, &fn, NULL, false, DEEP, 2 + (int)(s % 3), vnames[_i]);
	fprintf(stderr, "%s: %u random convs and %u depthwise byte-identical to the reference\n",
		vnames[_i], n + (simde ? 9 : 42), n + (simde ? 6 : 30));
}
END_TEST

/* Every usable kernel set's CONV_2D entry (what models get), any thread count. */
START_TEST(every_kernel_set_conv_matches_reference)
{
	enum eng_kset ks = (enum eng_kset)_i;
	ck_assert(eng_kset_usable(ks));
	for (int dw = 0; dw < 2; dw++) {
		const struct eng_kernel *k =
			eng_kernel_get_set(dw ? ENG_OP_DEPTHWISE_CONV_2D : ENG_OP_CONV_2D, ks);
		for (unsigned s = 1; s <= 60; s++)
			random_case(5000 + s, NULL, k, dw, s % 4 == 0 ? BIG : s % 4 == 1 && !dw ? DEEP : SMALL,
				    1 + (int)(s % 3), eng_kset_name(ks));
	}
}
END_TEST

/*
 * The narrowing stores' requantization against quant.h, lane by lane, where
 * the float path is most likely to be wrong: for each of 32 channels (random
 * multipliers and right shifts, from tiny to large scales, half-away or
 * half-up rounding, uint8 or int8, with and without an activation clamp) a run
 * of 256 consecutive accumulators centred where the result crosses an integer
 * (or, with tie scales, sits on one).  A GEMM with K = 4 and weight 1 makes
 * acc = cterm + u for u = 0..255.
 */
START_TEST(vnni_requantization_exact_near_integers)
{
	struct vfns fn = variant_fns((enum variant)_i);
	ck_assert_msg(fn.gemm, "%s cannot run here (the suite's check let it)", vnames[_i]);
	enum { N = 32, M = 256 };
	static uint8_t a[M * 4], y[M * N];
	int8_t *w = aligned_alloc(64, (size_t)N * 4);
	int32_t cterm[N], mult[N];
	int shift[N];
	for (int r = 0; r < M; r++) {
		memset(a + r * 4, 0, 4);
		a[r * 4] = (uint8_t)r;
	}
	memset(w, 0, (size_t)N * 4);
	for (int n = 0; n < N; n++)
		w[vk_pack_index(4, 0, n)] = 1;
	srand(4242);
	unsigned long lanes = 0;
	for (int it = 0; it < (_i >= V_512_SIMDE ? 150 : 800); it++) {
		const bool s8 = it % 3 == 0, round_up = it % 4 == 1, ties = it % 5 == 2;
		const int32_t zp = s8 ? rand() % 256 - 128 : rand() % 256;
		int32_t lo = s8 ? -128 : 0, hi = s8 ? 127 : 255;
		if (it % 2) /* an activation clamp at the zero point (RELU) */
			lo = zp;
		for (int n = 0; n < N; n++) {
			double m = ties ? ldexp(1.0 + rand() % 3, -(rand() % 12))
					: exp(-(double)(rand() % 2000) / 100.0) * (0.5 + (double)rand() / RAND_MAX);
			q_quantize_multiplier(m, &mult[n], &shift[n]);
			if (shift[n] > 0) { /* the float path is for right shifts */
				q_quantize_multiplier(0.7, &mult[n], &shift[n]);
				m = 0.7;
			}
			/* the accumulator where the output crosses integer t, minus 128 */
			double t = (double)(rand() % 300 - 150) + (ties ? 0.5 : 0.0);
			double acc0 = (t - (double)zp) / m;
			if (acc0 > 2e9 || acc0 < -2e9)
				acc0 = 0;
			cterm[n] = (int32_t)acc0 - 128 + rand() % 3 - 1;
		}
		struct vk_rq q;
		ck_assert_int_eq(vk_rq_fill(&q, N, N, mult, shift, zp, lo, hi, s8, round_up), 0);
		struct vk_gemm g = {.K4 = 4, .N = N, .NP = N, .w = w, .cterm = cterm, .rq = q};
		uint8_t scratch[4096] __attribute__((aligned(64)));
		fn.gemm(&g, a, 4, M, y, N, scratch);
		for (int r = 0; r < M; r++)
			for (int n = 0; n < N; n++) {
				int32_t acc = (int32_t)((uint32_t)cterm[n] + (uint32_t)r);
				int32_t v = (round_up ? q_mul_by_qm_up(acc, mult[n], shift[n])
						      : q_mul_by_qm(acc, mult[n], shift[n])) + zp;
				v = v < lo ? lo : v > hi ? hi : v;
				uint8_t want = (uint8_t)v;
				ck_assert_msg(y[r * N + n] == want,
					      "%s it %d: acc %d mult %d shift %d zp %d [%d, %d] %s%s: %u, want %u",
					      vnames[_i], it, acc, mult[n], shift[n], zp, lo, hi,
					      s8 ? "int8" : "uint8", round_up ? " half-up" : "",
					      y[r * N + n], want);
				lanes++;
			}
		vk_rq_free(&q);
	}
	free(w);
	fprintf(stderr, "%s: %lu requantized lanes near integers byte-identical to quant.h\n",
		vnames[_i], lanes);
}
END_TEST

/*
 * ADD of two same-shape tensors on the VNNI variant _i (through the kernel
 * entry's prepare) against the reference: lengths across the vector widths
 * and the parallel blocks, both types, scales from tiny to large (left and
 * right shifts), zero points at the ends, with and without RELU6, 1-3 threads;
 * some runs with every pair of input bytes.
 */
static void random_adds(vk_add_fn add, const char *name)
{
	const int runs = 300;
	srand(77);
	for (int it = 0; it < runs; it++) {
		nslots = 0;
		int len = it % 10 == 0 ? 4096 * (1 + rand() % 3) + rand() % 100 : 1 + rand() % 200;
		/* every 7th: all 65536 input pairs (the float path's error bound, vk_rq.c) */
		const bool pairs = it % 7 == 3;
		len = pairs ? 65536 : len;
		bool s8 = rand() % 2;
		enum eng_dtype t = s8 ? ENG_DT_I8 : ENG_DT_U8;
		uint8_t *a = malloc((size_t)len), *b = malloc((size_t)len), *y0 = malloc((size_t)len),
			*y1 = malloc((size_t)len);
		for (int i = 0; i < len; i++) {
			a[i] = pairs ? (uint8_t)i : (uint8_t)rand();
			b[i] = pairs ? (uint8_t)(i >> 8) : (uint8_t)rand();
		}
		float sa = 0.0005f + (float)(rand() % 1000) / 400.0f, sb = 0.0005f + (float)(rand() % 1000) / 300.0f;
		float so = rand() % 5 == 0 ? 0.0002f : 0.002f + (float)(rand() % 1000) / 200.0f;
		int64_t off = s8 ? 128 : 0;
		int64_t za = pick((const int[]){0, 255, rand() % 256}, 3) - off;
		int64_t zb = pick((const int[]){0, 255, rand() % 256}, 3) - off;
		int64_t zo = rand() % 256 - off;
		struct eng_tensor *in[2] = {mk(t, (const int[]){1, 1, len, 1}, 4, sa, za, a),
					    mk(t, (const int[]){1, 1, len, 1}, 4, sb, zb, b)};
		struct eng_tensor *o0[1] = {mk(t, (const int[]){1, 1, len, 1}, 4, so, zo, y0)};
		struct eng_tensor *o1[1] = {mk(t, (const int[]){1, 1, len, 1}, 4, so, zo, y1)};
		struct eng_node n0 = {.type = ENG_OP_ADD, .n_in = 2, .in = in, .n_out = 1, .out = o0};
		n0.opts.act.act = rand() % 3 == 0 ? ENG_ACT_RELU6 : ENG_ACT_NONE;
		struct eng_node n1 = n0;
		n1.out = o1;
		run_kernel(eng_kernel_get_ref(ENG_OP_ADD), &n0, 1);
		char err[200] = "";
		ck_assert_msg(add_vnni_prepare(&n1, add, err, sizeof(err)) == 0, "prepare: %s", err);
		memset(y1, 0xA5, (size_t)len);
		eval_node(&eng_k_add_avx512vnni, &n1, 1 + it % 3);
		eng_k_add_avx512vnni.release(&n1);
		for (int i = 0; i < len; i++)
			if (y0[i] != y1[i])
				ck_abort_msg("ADD %s run %d: element %d ref %u got %u (%s len %d sa %g sb %g "
					     "so %g za %lld zb %lld zo %lld)",
					     name, it, i, y0[i], y1[i], s8 ? "int8" : "uint8", len, sa,
					     sb, so, (long long)za, (long long)zb, (long long)zo);
		free(a);
		free(b);
		free(y0);
		free(y1);
	}
	fprintf(stderr, "%s: %d random ADDs byte-identical to the reference\n", name, runs);
}

START_TEST(vnni_add_matches_reference)
{
	struct vfns fn = variant_fns((enum variant)_i);
	ck_assert_msg(fn.add, "ADD %s cannot run here", vnames[_i]);
	random_adds(fn.add, vnames[_i]);
}
END_TEST

/*
 * The float requantization paths are taken where they should be (the
 * equivalence tests pass either way, so a path that silently stopped being
 * chosen would only show as lost speed): a conv-like scale with a right
 * shift and a valid zero point, TFLite's ADD multipliers; not a left shift,
 * not a zero point outside the type.
 */
START_TEST(float_requantization_chosen)
{
	int32_t m;
	int sh;
	struct vk_rq q;
	q_quantize_multiplier(0.004, &m, &sh); /* a typical conv: right shift 7 */
	ck_assert_int_lt(sh, 0);
	int32_t ms[16];
	int shs[16];
	for (int i = 0; i < 16; i++) {
		ms[i] = m;
		shs[i] = sh;
	}
	ck_assert_int_eq(vk_rq_fill(&q, 16, 16, ms, shs, 128, 0, 255, false, false), 0);
	ck_assert(q.fast && q.uniform && q.fneg);
	vk_rq_free(&q);
	ck_assert_int_eq(vk_rq_fill(&q, 1, 1, &m, &sh, 300, 0, 255, false, false), 0);
	ck_assert(!q.fast); /* |zq| > 128: outside the error bound */
	vk_rq_free(&q);
	int32_t mb;
	int shb;
	q_quantize_multiplier(3.0, &mb, &shb); /* a left shift */
	ck_assert_int_eq(vk_rq_fill(&q, 1, 1, &mb, &shb, 0, 0, 255, false, false), 0);
	ck_assert(!q.fast);
	vk_rq_free(&q);
	/* ADD, TFLite's recipe for scales 0.02 and 0.03 into 0.04 */
	int32_t m1, m2, mo;
	int s1, s2, so;
	const double twice = 2 * 0.03;
	q_quantize_multiplier(0.02 / twice, &m1, &s1);
	q_quantize_multiplier(0.03 / twice, &m2, &s2);
	q_quantize_multiplier(twice / ((double)(1 << 20) * 0.04), &mo, &so);
	struct vk_add a = {.zx = 120, .zr = 130, .s8 = false};
	vk_add_fill_fast(&a, m1, s1, m2, s2, mo, so, 128);
	ck_assert(a.fast);
	ck_assert(a.frac_min > 0.0f && a.frac_min <= 2.0f / 256.0f);
	vk_add_fill_fast(&a, m1, 1, m2, s2, mo, so, 128); /* a left shift on an input */
	ck_assert(!a.fast);
}
END_TEST

/*
 * A 256-entry table lookup (fn, or ops_lut8 when NULL) against the byte loop:
 * lengths across the 64-byte vectors and their masked tails, unaligned, in
 * place, and nothing written past the end.
 */
static void check_lut(vk_lut_fn fn, const char *name)
{
	enum { MAXN = 4200, GUARD = 80 };
	static uint8_t x[MAXN + GUARD], y[MAXN + GUARD + 4], want[MAXN + GUARD];
	uint8_t lut[256];
	srand(77);
	unsigned cases = 0;
	for (int n = 0; n <= MAXN; n += n < 300 ? 1 : 389) {
		for (int i = 0; i < 256; i++)
			lut[i] = (uint8_t)rand();
		for (int i = 0; i < MAXN + GUARD; i++)
			x[i] = (uint8_t)rand();
		const int off = n % 4; /* output alignment */
		memset(y, 0xC3, sizeof(y));
		if (fn)
			fn(lut, x, y + off, (size_t)n);
		else
			ops_lut8(y + off, x, (size_t)n, lut, eng_kset_has_vbmi(ENG_KS_AVX512VNNI));
		for (int i = 0; i < n; i++)
			if (y[off + i] != lut[x[i]])
				ck_abort_msg("%s: n %d byte %d: %u, want lut[%u] = %u", name, n, i,
					     y[off + i], x[i], lut[x[i]]);
		for (int i = off + n; i < (int)sizeof(y); i++)
			ck_assert_msg(y[i] == 0xC3, "%s: n %d wrote byte %d past the end", name, n, i - off - n);
		for (int i = 0; i < off; i++)
			ck_assert_msg(y[i] == 0xC3, "%s: n %d wrote before the start", name, n);
		/* in place */
		for (int i = 0; i < n; i++)
			want[i] = lut[x[i]];
		if (fn)
			fn(lut, x, x, (size_t)n);
		else
			ops_lut8(x, x, (size_t)n, lut, eng_kset_has_vbmi(ENG_KS_AVX512VNNI));
		ck_assert_msg(memcmp(x, want, (size_t)n) == 0, "%s: n %d in place differs", name, n);
		cases++;
	}
	fprintf(stderr, "%s: %u table lookups byte-identical to the byte loop\n", name, cases);
}

/* What the engine's 8-bit table ops run on this CPU with the avx512vnni set. */
START_TEST(ops_lut8_matches_byte_loop)
{
	check_lut(NULL, "ops_lut8");
}
END_TEST

/* The VBMI lookup: _i 0 native, 1 SIMDe. */
START_TEST(vbmi_lut_matches_byte_loop)
{
#ifdef HAVE_SIMDE
	vk_lut_fn fn = _i ? vk512s_lut : vk512_lut;
#else
	vk_lut_fn fn = vk512_lut;
#endif
	check_lut(fn, _i ? "vbmi lut (SIMDe)" : "vbmi lut");
}
END_TEST

static TCase *kernels_tcase(Suite *s)
{
	TCase *tc = tcase_create("kernels");
	tcase_set_timeout(tc, 300);
	suite_add_tcase(s, tc);
	return tc;
}

static Suite *sets_suite(void)
{
	Suite *s = suite_create("kernels");
	TCase *tc = kernels_tcase(s);
	tcase_add_test(tc, kernel_set_names_and_selection);
	tcase_add_test(tc, float_requantization_chosen);
	tcase_add_test(tc, ops_lut8_matches_byte_loop);
	return s;
}

static Suite *simde_suite(void)
{
	Suite *s = suite_create("kernels-simde");
	TCase *tc = kernels_tcase(s);
	tcase_add_loop_test(tc, vnni_conv_matches_reference, V_512_SIMDE, V__COUNT);
	tcase_add_loop_test(tc, vnni_add_matches_reference, V_512_SIMDE, V__COUNT);
	tcase_add_loop_test(tc, vnni_requantization_exact_near_integers, V_512_SIMDE, V__COUNT);
	tcase_add_loop_test(tc, vbmi_lut_matches_byte_loop, 1, 2);
	return s;
}

static const char *simde_missing(void)
{
#ifdef HAVE_SIMDE
	return NULL;
#else
	return "built without libsimde-dev (the portable VNNI builds)";
#endif
}

/* One native kernel set: its model-facing CONV_2D/DEPTHWISE entries, and for
 * the VNNI sets the GEMM, depthwise and ADD variants directly. */
static Suite *set_suite(const char *name, enum eng_kset ks, enum variant v)
{
	Suite *s = suite_create(name); /* Check keeps the pointer: a literal */
	TCase *tc = kernels_tcase(s);
	tcase_add_loop_test(tc, every_kernel_set_conv_matches_reference, (int)ks, (int)ks + 1);
	tcase_add_loop_test(tc, vnni_conv_matches_reference, (int)v, (int)v + 1);
	tcase_add_loop_test(tc, vnni_add_matches_reference, (int)v, (int)v + 1);
	tcase_add_loop_test(tc, vnni_requantization_exact_near_integers, (int)v, (int)v + 1);
	return s;
}

static Suite *avx2_suite(void)
{
	return set_suite("kernels-avx2", ENG_KS_AVX2, V_2);
}
static Suite *avxvnni_suite(void)
{
	return set_suite("kernels-avxvnni", ENG_KS_AVXVNNI, V_256);
}
static Suite *avx512vnni_suite(void)
{
	return set_suite("kernels-avx512vnni", ENG_KS_AVX512VNNI, V_512);
}

static Suite *vbmi_suite(void)
{
	Suite *s = suite_create("kernels-vbmi");
	tcase_add_loop_test(kernels_tcase(s), vbmi_lut_matches_byte_loop, 0, 1);
	return s;
}

static const char *vbmi_missing(void)
{
	return eng_kset_has_vbmi(ENG_KS_AVX512VNNI) ? NULL : "this CPU lacks AVX-512 VBMI";
}

static const char *set_missing(enum eng_kset ks)
{
	return eng_kset_usable(ks) ? NULL : "this CPU lacks the kernel set's instructions";
}
static const char *avx2_missing(void)
{
	return set_missing(ENG_KS_AVX2);
}
static const char *avxvnni_missing(void)
{
	return set_missing(ENG_KS_AVXVNNI);
}
static const char *avx512vnni_missing(void)
{
	return set_missing(ENG_KS_AVX512VNNI);
}

int main(int argc, char **argv)
{
	static const struct tu_suite suites[] = {
		{NULL, sets_suite, NULL},
		{"simde", simde_suite, simde_missing},
		{"avx2", avx2_suite, avx2_missing},
		{"avxvnni", avxvnni_suite, avxvnni_missing},
		{"avx512vnni", avx512vnni_suite, avx512vnni_missing},
		{"vbmi", vbmi_suite, vbmi_missing},
	};
	return tu_main(argc, argv, suites, sizeof(suites) / sizeof(suites[0]));
}
