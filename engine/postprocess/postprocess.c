/*
 * postprocess.c — TFLite_Detection_PostProcess (see postprocess.h).
 *
 * Inputs: box encodings [1,N,>=4] (ty,tx,th,tw), class scores [1,N,C(+1)],
 * anchors [N,4] (yc,xc,h,w); uint8 inputs are dequantized first.  Outputs
 * (float): boxes [1,M,4] (ymin,xmin,ymax,xmax), classes [1,M] (0-based,
 * background removed), scores [1,M], num_detections [1].  Entries past
 * num_detections are zero.  All working memory is the per-context scratch
 * sized at prepare.  Inference worker thread.
 */
#include "postprocess.h"

#include <math.h>

#include "ops/kernels.h"
#include "ops/simd.h"

struct pp_prep {
	int n;     /* anchors */
	int enc;   /* values per box encoding (>= 4) */
	int cwb;   /* classes with background */
	int nc;    /* classes */
	int label_off;
	int cats;  /* classes reported per anchor (fast NMS) */
	int out_m; /* output rows */
	struct eng_postprocess_opts o;
	bool simd; /* AVX2 suppression loop */
	/* constant anchors: whether one has a negative height or width (1) or
	 * none (0), found at prepare; -1: the anchors are an input, checked per call */
	int anchors_neg;
	/* scratch layout (byte offsets) */
	size_t off_boxes, off_scores, off_max, off_cls, off_keep_i, off_keep_v, off_sorted,
		off_tmp, off_active, off_sel, off_cand_i, off_cand_v, off_cand_tmp, off_sboxes,
		off_radix;
};

void pp_argsort_desc(const float *values, int *idx, int n, int *tmp)
{
	/* bottom-up merge sort: stable, O(n log n), no allocation */
	for (int w = 1; w < n; w *= 2) {
		for (int lo = 0; lo < n; lo += 2 * w) {
			int mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
			int i = lo, j = mid, k = lo;
			while (i < mid && j < hi) {
				/* take from the right only if strictly greater: keeps ties in order */
				if (values[idx[j]] > values[idx[i]])
					tmp[k++] = idx[j++];
				else
					tmp[k++] = idx[i++];
			}
			while (i < mid)
				tmp[k++] = idx[i++];
			while (j < hi)
				tmp[k++] = idx[j++];
		}
		memcpy(idx, tmp, (size_t)n * sizeof(*idx));
	}
}

void pp_radix_argsort_desc(const float *values, int n, int *idx, uint32_t *work)
{
	uint32_t *key = work, *key2 = work + n;
	int *idx2 = (int *)(work + 2 * (size_t)n);
	for (int i = 0; i < n; i++) {
		float v = values[i] + 0.0f; /* -0.0 becomes +0.0: they compare equal */
		uint32_t u;
		memcpy(&u, &v, sizeof(u));
		/* ascending float order as unsigned keys, then inverted for descending */
		u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
		key[i] = ~u;
		idx[i] = i;
	}
	/* three stable counting passes of 11, 11 and 10 bits */
	for (int pass = 0; pass < 3; pass++) {
		const int shift = pass * 11;
		size_t count[2049] = {0};
		for (int i = 0; i < n; i++)
			count[((key[i] >> shift) & 0x7FF) + 1]++;
		for (int d = 0; d < 2048; d++)
			count[d + 1] += count[d];
		for (int i = 0; i < n; i++) {
			size_t at = count[(key[i] >> shift) & 0x7FF]++;
			key2[at] = key[i];
			idx2[at] = idx[i];
		}
		memcpy(key, key2, (size_t)n * sizeof(*key));
		memcpy(idx, idx2, (size_t)n * sizeof(*idx));
	}
}

/* ---- libstdc++'s heap algorithms on an index array, comp(a, b) = v[a] > v[b] ---- */

static inline bool gt(const float *v, int a, int b)
{
	return v[a] > v[b];
}

static void heap_push(const float *v, int *h, int hole, int top, int value)
{
	int parent = (hole - 1) / 2;
	while (hole > top && gt(v, h[parent], value)) {
		h[hole] = h[parent];
		hole = parent;
		parent = (hole - 1) / 2;
	}
	h[hole] = value;
}

static void heap_adjust(const float *v, int *h, int hole, int len, int value)
{
	const int top = hole;
	int child = hole;
	while (child < (len - 1) / 2) {
		child = 2 * (child + 1);
		if (gt(v, h[child], h[child - 1]))
			child--;
		h[hole] = h[child];
		hole = child;
	}
	if ((len & 1) == 0 && child == (len - 2) / 2) {
		child = 2 * (child + 1);
		h[hole] = h[child - 1];
		hole = child - 1;
	}
	heap_push(v, h, hole, top, value);
}

void pp_partial_argsort_desc(const float *values, int n, int k, int *idx)
{
	if (k == 1 && n > 0) {
		int best = 0;
		for (int i = 1; i < n; i++)
			if (values[i] > values[best])
				best = i;
		idx[0] = best;
		return;
	}
	for (int i = 0; i < n; i++)
		idx[i] = i;
	if (k > n)
		k = n;
	if (k <= 0)
		return;
	/* make_heap over [0, k) */
	if (k >= 2)
		for (int parent = (k - 2) / 2;; parent--) {
			heap_adjust(values, idx, parent, k, idx[parent]);
			if (parent == 0)
				break;
		}
	/* heap select: anything better than the heap's worst replaces it */
	for (int i = k; i < n; i++)
		if (gt(values, idx[i], idx[0])) {
			int value = idx[i];
			idx[i] = idx[0];
			heap_adjust(values, idx, 0, k, value);
		}
	/* sort_heap */
	for (int last = k; last > 1;) {
		--last;
		int value = idx[last];
		idx[last] = idx[0];
		heap_adjust(values, idx, 0, last, value);
	}
}

static size_t take(size_t *off, size_t bytes)
{
	size_t at = *off;
	*off += (bytes + 63) & ~(size_t)63;
	return at;
}

static void pp_release(struct eng_node *n)
{
	free(n->prep);
	n->prep = NULL;
}

/* Dequantization parameters of the box encodings and anchors. */
struct pp_src {
	bool bu8, au8;
	float bzp, bsc, azp, asc;
	const uint8_t *bq, *aq;
	const float *bf, *af;
};

static struct pp_src pp_src_of(const struct eng_tensor *be, const void *bd,
			       const struct eng_tensor *an, const void *ad)
{
	const bool bu8 = be->type == ENG_DT_U8, au8 = an->type == ENG_DT_U8;
	return (struct pp_src){.bu8 = bu8, .au8 = au8,
			       .bzp = bu8 ? (float)t_zp(be) : 0.0f, .bsc = bu8 ? t_scale(be) : 0.0f,
			       .azp = au8 ? (float)t_zp(an) : 0.0f, .asc = au8 ? t_scale(an) : 0.0f,
			       .bq = bd, .aq = ad, .bf = bd, .af = ad};
}

/* Anchor i's value k (yc, xc, h, w), dequantized as the reference: (float(q) - float(zp)) * scale */
static inline float anchor_val(const struct pp_src *s, int i, int k)
{
	size_t a = (size_t)i * 4 + (size_t)k;
	return s->au8 ? ((float)s->aq[a] - s->azp) * s->asc : s->af[a];
}

/* Whether one of the n anchors has a negative height or width (its decoded box
 * may be inverted, which the reference rejects after decoding them all). */
static int anchors_negative(const struct pp_src *s, int n)
{
	for (int i = 0; i < n; i++)
		if (anchor_val(s, i, 2) < 0.0f || anchor_val(s, i, 3) < 0.0f)
			return 1;
	return 0;
}

static int pp_prepare(struct eng_node *n, char *err, size_t errlen)
{
	int rc = ops_check_io(n, 3, 4, err, errlen);
	if (rc)
		return rc;
	const struct eng_tensor *be = n->in[0], *cs = n->in[1], *an = n->in[2];
	const struct eng_postprocess_opts *o = &n->opts.pp;
	if (be->ndim != 3 || cs->ndim != 3 || an->ndim != 2 || be->dims[0] != 1 || cs->dims[0] != 1) {
		KERR(err, errlen, "expects box encodings [1,N,4], scores [1,N,C], anchors [N,4]");
		return -EINVAL;
	}
	int na = be->dims[1];
	if (cs->dims[1] != na || an->dims[0] != na || an->dims[1] != 4 || be->dims[2] < 4 || na <= 0) {
		KERR(err, errlen, "anchor counts differ: boxes %d, scores %d, anchors %d", na,
		     cs->dims[1], an->dims[0]);
		return -EINVAL;
	}
	for (int i = 0; i < 3; i++) {
		const struct eng_tensor *t = n->in[i];
		if (t->type != ENG_DT_F32 && t->type != ENG_DT_U8) {
			KERR(err, errlen, "input %d must be float32 or uint8", i);
			return -ENOTSUP;
		}
		rc = ops_check_q8(t, i == 0 ? "box encodings" : (i == 1 ? "scores" : "anchors"), err,
				  errlen);
		if (rc)
			return rc;
	}
	int cwb = cs->dims[2];
	if (o->num_classes <= 0 || cwb < o->num_classes || cwb - o->num_classes > 1) {
		KERR(err, errlen, "num_classes %d does not fit %d score columns", o->num_classes, cwb);
		return -EINVAL;
	}
	/* detections_per_class only matters to regular NMS (TFLite ignores it otherwise) */
	if (o->max_detections <= 0 || o->max_classes_per_detection <= 0 ||
	    (o->use_regular_nms && o->detections_per_class <= 0)) {
		KERR(err, errlen,
		     "max_detections %d, max_classes_per_detection %d%s must be > 0",
		     o->max_detections, o->max_classes_per_detection,
		     o->use_regular_nms ? " and detections_per_class (regular NMS)" : "");
		return -EINVAL;
	}
	/* bounds a hostile flexbuffer cannot push past (products stay in int) */
	if (o->max_detections > (1 << 16) || o->max_classes_per_detection > (1 << 12) ||
	    (o->use_regular_nms && o->detections_per_class > (1 << 20)) ||
	    o->num_classes > (1 << 16)) {
		KERR(err, errlen, "post-process options out of range");
		return -EINVAL;
	}
	if (!(o->nms_iou_threshold > 0.0f && o->nms_iou_threshold <= 1.0f)) {
		KERR(err, errlen, "nms_iou_threshold %g outside (0,1]", (double)o->nms_iou_threshold);
		return -EINVAL;
	}
	if (o->y_scale == 0.0f || o->x_scale == 0.0f || o->h_scale == 0.0f || o->w_scale == 0.0f) {
		KERR(err, errlen, "zero box coder scale");
		return -EINVAL;
	}
	struct pp_prep *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->n = na;
	p->enc = be->dims[2];
	p->cwb = cwb;
	p->nc = o->num_classes;
	p->label_off = cwb - o->num_classes;
	p->cats = o->max_classes_per_detection < p->nc ? o->max_classes_per_detection : p->nc;
	p->out_m = o->use_regular_nms ? o->max_detections
				      : o->max_detections * o->max_classes_per_detection;
	p->o = *o;
	p->simd = simd_have_avx2();
	p->anchors_neg = -1;
	for (int i = 0; i < 4; i++) {
		const struct eng_tensor *t = n->out[i];
		size_t want = i == 0 ? (size_t)p->out_m * 4 : (i == 3 ? 1 : (size_t)p->out_m);
		if (t->type != ENG_DT_F32 || t_numel(t) < want) {
			KERR(err, errlen, "output %d must be float32 with %zu elements", i, want);
			free(p);
			return -EINVAL;
		}
	}
	size_t off = 0, N = (size_t)na;
	size_t cand = N + (size_t)o->max_detections;
	p->off_boxes = take(&off, N * 4 * sizeof(float));
	p->off_scores = take(&off, N * (size_t)cwb * sizeof(float));
	p->off_max = take(&off, N * sizeof(float));
	p->off_cls = take(&off, N * (size_t)p->nc * sizeof(int));
	p->off_keep_i = take(&off, N * sizeof(int));
	p->off_keep_v = take(&off, cand * sizeof(float));
	p->off_sorted = take(&off, N * sizeof(int));
	p->off_radix = take(&off, 3 * N * sizeof(uint32_t));
	p->off_tmp = take(&off, cand * sizeof(int));
	p->off_active = take(&off, N);
	p->off_sboxes = take(&off, N * 4 * sizeof(float));
	p->off_sel = take(&off, cand * sizeof(int));
	p->off_cand_i = take(&off, cand * sizeof(int));
	p->off_cand_v = take(&off, cand * sizeof(float));
	p->off_cand_tmp = take(&off, (cand > (size_t)p->nc ? cand : (size_t)p->nc) * sizeof(int));
	n->scratch_bytes = off;
	if (an->is_const && an->const_data) {
		const struct pp_src a = pp_src_of(be, NULL, an, an->const_data);
		p->anchors_neg = anchors_negative(&a, na);
	}
	n->prep = p;
	return 0;
}

/* std::max / std::min as the reference uses them (no libm calls, same NaN-free results) */
static inline float maxf(float a, float b)
{
	return a < b ? b : a;
}

static inline float minf(float a, float b)
{
	return b < a ? b : a;
}

static float iou(const float *bi, const float *bj)
{
	float ai = (bi[2] - bi[0]) * (bi[3] - bi[1]);
	float aj = (bj[2] - bj[0]) * (bj[3] - bj[1]);
	if (ai <= 0 || aj <= 0)
		return 0.0f;
	float ymin = maxf(bi[0], bj[0]), xmin = maxf(bi[1], bj[1]);
	float ymax = minf(bi[2], bj[2]), xmax = minf(bi[3], bj[3]);
	float inter = maxf(ymax - ymin, 0.0f) * maxf(xmax - xmin, 0.0f);
	return inter / (ai + aj - inter);
}

/* Box j of the sorted candidates, from the structure-of-arrays copy. */
static inline void sbox(const float *sb, size_t stride, int j, float out[4])
{
	out[0] = sb[j];
	out[1] = sb[stride + (size_t)j];
	out[2] = sb[2 * stride + (size_t)j];
	out[3] = sb[3 * stride + (size_t)j];
}

/* Deactivate the candidates in [j, kept) that box a overlaps by more than the
 * threshold; returns how many.  Plain loop: the reference order of tests. */
static int suppress_scalar(const struct pp_prep *p, const float a[4], const float *sb,
			   size_t stride, uint8_t *active, int j, int kept)
{
	int gone = 0;
	for (; j < kept; j++) {
		if (!active[j])
			continue;
		float b[4];
		sbox(sb, stride, j, b);
		/* disjoint boxes have IoU 0, never above a threshold > 0: skip the division */
		if (b[0] >= a[2] || b[2] <= a[0] || b[1] >= a[3] || b[3] <= a[1])
			continue;
		if (iou(a, b) > p->o.nms_iou_threshold) {
			active[j] = 0;
			gone++;
		}
	}
	return gone;
}

/*
 * Same result, 8 candidates at a time: the IoU itself is computed in vector
 * form with the scalar's operations in the scalar's order (std::max/min as
 * "a < b ? b : a" / "b < a ? b : a", no FMA), so every lane's value and
 * comparison are bit-identical to iou().
 */
TGT static int suppress_avx2(const struct pp_prep *p, const float a[4], const float *sb,
			     size_t stride, uint8_t *active, int j, int kept)
{
	const float area_a = (a[2] - a[0]) * (a[3] - a[1]);
	if (area_a <= 0)
		return 0; /* iou() is 0 for every candidate */
	const __m256 a0 = _mm256_set1_ps(a[0]), a1 = _mm256_set1_ps(a[1]);
	const __m256 a2 = _mm256_set1_ps(a[2]), a3 = _mm256_set1_ps(a[3]);
	const __m256 va = _mm256_set1_ps(area_a), zero = _mm256_setzero_ps();
	const __m256 thr = _mm256_set1_ps(p->o.nms_iou_threshold);
	int gone = 0;
	for (; j + 8 <= kept; j += 8) {
		int64_t act8;
		memcpy(&act8, active + j, 8);
		if (act8 == 0)
			continue;
		__m256 b0 = _mm256_loadu_ps(sb + j), b1 = _mm256_loadu_ps(sb + stride + (size_t)j);
		__m256 b2 = _mm256_loadu_ps(sb + 2 * stride + (size_t)j);
		__m256 b3 = _mm256_loadu_ps(sb + 3 * stride + (size_t)j);
		__m256 area_b = _mm256_mul_ps(_mm256_sub_ps(b2, b0), _mm256_sub_ps(b3, b1));
		/* max(a, b) = a < b ? b : a;  min(a, b) = b < a ? b : a */
		__m256 ymin = _mm256_blendv_ps(a0, b0, _mm256_cmp_ps(a0, b0, _CMP_LT_OQ));
		__m256 xmin = _mm256_blendv_ps(a1, b1, _mm256_cmp_ps(a1, b1, _CMP_LT_OQ));
		__m256 ymax = _mm256_blendv_ps(a2, b2, _mm256_cmp_ps(b2, a2, _CMP_LT_OQ));
		__m256 xmax = _mm256_blendv_ps(a3, b3, _mm256_cmp_ps(b3, a3, _CMP_LT_OQ));
		__m256 dy = _mm256_sub_ps(ymax, ymin), dx = _mm256_sub_ps(xmax, xmin);
		dy = _mm256_blendv_ps(dy, zero, _mm256_cmp_ps(dy, zero, _CMP_LT_OQ));
		dx = _mm256_blendv_ps(dx, zero, _mm256_cmp_ps(dx, zero, _CMP_LT_OQ));
		__m256 inter = _mm256_mul_ps(dy, dx);
		__m256 iouv = _mm256_div_ps(inter, _mm256_sub_ps(_mm256_add_ps(va, area_b), inter));
		__m256 hit = _mm256_and_ps(_mm256_cmp_ps(iouv, thr, _CMP_GT_OQ),
					   _mm256_cmp_ps(area_b, zero, _CMP_NLE_UQ));
		unsigned m = (unsigned)_mm256_movemask_ps(hit);
		while (m) {
			int k = j + __builtin_ctz(m);
			m &= m - 1;
			if (active[k]) {
				active[k] = 0;
				gone++;
			}
		}
	}
	return gone + suppress_scalar(p, a, sb, stride, active, j, kept);
}

/* Single-class NMS over scores[0..n): selected anchor indices in sel, returns count. */
static int nms_single(const struct pp_prep *p, uint8_t *s, const float *boxes,
		      const float *scores, int max_out, int *sel)
{
	int *keep_i = (int *)(s + p->off_keep_i);
	float *keep_v = (float *)(s + p->off_keep_v);
	int *sorted = (int *)(s + p->off_sorted);
	uint8_t *active = s + p->off_active;
	int kept = 0;
	for (int i = 0; i < p->n; i++)
		if (scores[i] >= p->o.nms_score_threshold) {
			keep_v[kept] = scores[i];
			keep_i[kept++] = i;
		}
	pp_radix_argsort_desc(keep_v, kept, sorted, (uint32_t *)(s + p->off_radix));
	int out_size = kept < max_out ? kept : max_out;
	int n_sel = 0, n_active = kept;
	if (kept > 0)
		memset(active, 1, (size_t)kept);
	/* boxes in sorted order, one array per coordinate: the suppression loop
	 * then streams through memory and vectorizes */
	float *sb = (float *)(s + p->off_sboxes);
	const size_t stride = (size_t)p->n;
	for (int i = 0; i < kept; i++) {
		const float *b = boxes + (size_t)keep_i[sorted[i]] * 4;
		sb[i] = b[0];
		sb[stride + (size_t)i] = b[1];
		sb[2 * stride + (size_t)i] = b[2];
		sb[3 * stride + (size_t)i] = b[3];
	}
	for (int i = 0; i < kept; i++) {
		if (n_active == 0 || n_sel >= out_size)
			break;
		if (!active[i])
			continue;
		sel[n_sel++] = keep_i[sorted[i]];
		active[i] = 0;
		n_active--;
		float a[4];
		sbox(sb, stride, i, a);
		n_active -= p->simd ? suppress_avx2(p, a, sb, stride, active, i + 1, kept)
				    : suppress_scalar(p, a, sb, stride, active, i + 1, kept);
	}
	return n_sel;
}

/* nms_single() or an equivalent. */
typedef int (*pp_nms_fn)(const struct pp_prep *p, uint8_t *s, const float *boxes,
			 const float *scores, int max_out, int *sel);

/* Regular NMS on decoded boxes into zeroed outputs: per class, then the best
 * max_detections overall. */
static int pp_regular(const struct pp_prep *p, uint8_t *s, const float *boxes, const void *cd,
		      bool su8, double ssc, int32_t szp, float *ob, float *oc, float *os, float *on,
		      pp_nms_fn nms)
{
	float *scores = (float *)(s + p->off_scores);
	int *sel = (int *)(s + p->off_sel);
	const uint8_t *sq = cd;
	/* regular NMS needs every class column: dequantize all scores once */
	if (su8) {
		size_t ns = (size_t)p->n * p->cwb;
		for (size_t i = 0; i < ns; i++)
			scores[i] = (float)(ssc * (double)((int32_t)sq[i] - szp));
	} else {
		scores = (float *)cd;
	}

	/* regular NMS: per class, then keep the best max_detections overall */
	float *cls_scores = (float *)(s + p->off_max);
	int *cand_i = (int *)(s + p->off_cand_i);
	float *cand_v = (float *)(s + p->off_cand_v);
	int *order = (int *)(s + p->off_tmp);
	int n_cand = 0;
	/* As TFLite (LiteRT) does it: at most min(detections_per_class,
	 * max_detections) per class, each class's selection merged stably into
	 * the running best list (earlier classes first among equal scores), the
	 * list cut to max_detections after every class. */
	int per_class = p->o.detections_per_class < p->o.max_detections ? p->o.detections_per_class
									  : p->o.max_detections;
	float *mv = (float *)(s + p->off_keep_v);
	for (int c = 0; c < p->nc; c++) {
		for (int r = 0; r < p->n; r++)
			cls_scores[r] = scores[(size_t)r * p->cwb + c + p->label_off];
		int n_sel = nms(p, s, boxes, cls_scores, per_class, sel);
		int keep = n_cand + n_sel < p->o.max_detections ? n_cand + n_sel
								: p->o.max_detections;
		int i = 0, j = 0;
		for (int k = 0; k < keep; k++) {
			/* take the new one only when strictly better: a stable merge */
			bool take_new = j < n_sel &&
					(i >= n_cand || cls_scores[sel[j]] > cand_v[i]);
			if (take_new) {
				order[k] = sel[j] * p->cwb + c + p->label_off;
				mv[k] = cls_scores[sel[j]];
				j++;
			} else {
				order[k] = cand_i[i];
				mv[k] = cand_v[i];
				i++;
			}
		}
		memcpy(cand_i, order, (size_t)keep * sizeof(*cand_i));
		memcpy(cand_v, mv, (size_t)keep * sizeof(*cand_v));
		n_cand = keep;
	}
	for (int k = 0; k < n_cand; k++) {
		int a = cand_i[k] / p->cwb;
		int c = cand_i[k] - a * p->cwb - p->label_off;
		memcpy(ob + (size_t)k * 4, boxes + (size_t)a * 4, 4 * sizeof(float));
		oc[k] = (float)c;
		os[k] = cand_v[k];
	}
	on[0] = (float)n_cand;
	return 0;
}


/* Box i decoded into b (ymin, xmin, ymax, xmax): decoding in double like the
 * reference.  Both kernels call this one function so the arithmetic is the same. */
static inline void decode_box(const struct pp_prep *p, const struct pp_src *s, int i, float b[4])
{
	size_t e = (size_t)i * p->enc;
	float t4[4], a4[4];
	for (int k = 0; k < 4; k++) {
		t4[k] = s->bu8 ? ((float)s->bq[e + k] - s->bzp) * s->bsc : s->bf[e + k];
		a4[k] = anchor_val(s, i, k);
	}
	float yc = (float)((double)t4[0] / (double)p->o.y_scale * (double)a4[2] + (double)a4[0]);
	float xc = (float)((double)t4[1] / (double)p->o.x_scale * (double)a4[3] + (double)a4[1]);
	float hh = (float)(0.5 * exp((double)t4[2] / (double)p->o.h_scale) * (double)a4[2]);
	float hw = (float)(0.5 * exp((double)t4[3] / (double)p->o.w_scale) * (double)a4[3]);
	b[0] = yc - hh;
	b[1] = xc - hw;
	b[2] = yc + hh;
	b[3] = xc + hw;
}

static int pp_eval(const struct eng_node *n, const struct eng_exec *x)
{
	const struct pp_prep *p = n->prep;
	uint8_t *s = x->scratch;
	float *boxes = (float *)(s + p->off_boxes);
	float *scores = (float *)(s + p->off_scores);
	const struct eng_tensor *be = n->in[0], *cs = n->in[1], *an = n->in[2];
	const void *bd = eng_tdata(x, be), *cd = eng_tdata(x, cs), *ad = eng_tdata(x, an);
	float *ob = eng_tdata(x, n->out[0]), *oc = eng_tdata(x, n->out[1]);
	float *os = eng_tdata(x, n->out[2]), *on = eng_tdata(x, n->out[3]);

	const struct pp_src src = pp_src_of(be, bd, an, ad);
	for (int i = 0; i < p->n; i++) {
		float *b = boxes + (size_t)i * 4;
		decode_box(p, &src, i, b);
		if (b[0] > b[2] || b[1] > b[3])
			return -EINVAL; /* NaN-free but inverted: the reference rejects these too */
	}
	memset(ob, 0, (size_t)p->out_m * 4 * sizeof(float));
	memset(oc, 0, (size_t)p->out_m * sizeof(float));
	memset(os, 0, (size_t)p->out_m * sizeof(float));
	int *sel = (int *)(s + p->off_sel);
	const bool su8 = cs->type == ENG_DT_U8;
	const double ssc = (double)t_scale(cs);
	const int32_t szp = t_zp(cs);
	const uint8_t *sq = cd;

	if (!p->o.use_regular_nms) {
		float *maxs = (float *)(s + p->off_max);
		int *cls = (int *)(s + p->off_cls);
		/* One anchor's scores at a time: uint8 scores are dequantized into a
		 * row buffer (the reference's float(scale · (q − zp))), float ones used
		 * in place. */
		float *rowbuf = scores;
		for (int r = 0; r < p->n; r++) {
			const float *bs;
			if (su8) {
				for (int c = 0; c < p->cwb; c++)
					rowbuf[c] = (float)(ssc * (double)((int32_t)sq[(size_t)r * p->cwb + c] - szp));
				bs = rowbuf + p->label_off;
			} else {
				bs = (const float *)cd + (size_t)r * p->cwb + p->label_off;
			}
			int *ci = cls + (size_t)r * p->nc;
			pp_partial_argsort_desc(bs, p->nc, p->cats, ci);
			maxs[r] = bs[ci[0]];
		}
		int n_sel = nms_single(p, s, boxes, maxs, p->o.max_detections, sel);
		int row = 0;
		for (int k = 0; k < n_sel; k++) {
			int a = sel[k];
			const int *ci = cls + (size_t)a * p->nc;
			for (int c = 0; c < p->cats; c++) {
				int off = p->o.max_classes_per_detection * row + c;
				size_t at = (size_t)a * p->cwb + p->label_off + (size_t)ci[c];
				memcpy(ob + (size_t)off * 4, boxes + (size_t)a * 4, 4 * sizeof(float));
				oc[off] = (float)ci[c];
				os[off] = su8 ? (float)(ssc * (double)((int32_t)sq[at] - szp)) : ((const float *)cd)[at];
			}
			row++;
		}
		on[0] = (float)row;
		return 0;
	}

	return pp_regular(p, s, boxes, cd, su8, ssc, szp, ob, oc, os, on, nms_single);
}

/* ---- fast kernel: same output, less work ---------------------------------------- */

/*
 * Why each shortcut is exact:
 *  - Candidate order.  The reference keeps anchors with max score >= threshold
 *    and sorts them stably by that float, descending.  With uint8 scores the
 *    dequantized value is a function of the quantized one; when that table is
 *    strictly increasing (checked per call; always so for scale > 0) equal
 *    floats are equal q, so a stable counting sort on the max q over 256
 *    buckets gives the very same order, and the max of the floats is lut[max q].
 *    Its positions are placed a range of buckets at a time, only as far as
 *    the NMS below reads them (pp_order_fill): the same order, fewer writes.
 *    Float scores keep the reference's filter and radix sort.
 *  - Greedy NMS.  A candidate is selected iff no box selected before it
 *    overlaps it by more than the threshold, and the loop ends at
 *    max_detections: testing each candidate against the (<= max_detections)
 *    selected boxes, in sorted order, is the reference's result without
 *    touching the candidates after the last selection.
 *  - Lazy decoding.  Only candidates examined are decoded.  The reference also
 *    rejects the call if ANY decoded box is inverted; that needs a negative
 *    anchor height or width (hh, hw >= 0 or NaN otherwise, and float
 *    rounding is monotonic), so any such anchor makes us decode and check all
 *    boxes first, exactly like the reference.
 *  - Classes per detection are ranked only for the selected anchors, by the
 *    reference's own partial sort on the same row of floats.
 *  - Regular NMS decodes every box (any class may reach any anchor) and keeps
 *    the reference's per-class sort; only the greedy loop is the early-out one.
 */

/* The largest of n >= 1 bytes: 16 at a time (the last 16 overlapping) where
 * there are 16, which is most of a frame's post-processing otherwise. */
static uint8_t max_u8(const uint8_t *v, int n)
{
#ifdef __SSE2__
	if (n >= 16) {
		__m128i m = _mm_loadu_si128((const __m128i *)(const void *)v);
		for (int c = 16; c < n; c += 16) {
			int at = c + 16 <= n ? c : n - 16;
			m = _mm_max_epu8(m, _mm_loadu_si128((const __m128i *)(const void *)(v + at)));
		}
		m = _mm_max_epu8(m, _mm_srli_si128(m, 8));
		m = _mm_max_epu8(m, _mm_srli_si128(m, 4));
		m = _mm_max_epu8(m, _mm_srli_si128(m, 2));
		m = _mm_max_epu8(m, _mm_srli_si128(m, 1));
		return (uint8_t)_mm_cvtsi128_si32(m);
	}
#endif
	uint8_t m = v[0];
	for (int c = 1; c < n; c++)
		m = v[c] > m ? v[c] : m;
	return m;
}

/* Row r's class scores (background removed) as the reference's floats, in buf
 * when dequantized. */
static const float *score_row(const struct pp_prep *p, const void *cd, bool su8, const float *lut,
			      int r, float *buf)
{
	if (!su8)
		return (const float *)cd + (size_t)r * p->cwb + p->label_off;
	const uint8_t *q = (const uint8_t *)cd + (size_t)r * p->cwb + p->label_off;
	for (int c = 0; c < p->nc; c++)
		buf[c] = lut[q[c]];
	return buf;
}

/* Candidate b is kept unless one of the n selected boxes overlaps it by more
 * than the threshold (the reference's test, same argument order). */
static bool survives(const struct pp_prep *p, const float *selbox, int n, const float b[4])
{
	for (int k = 0; k < n; k++) {
		const float *a = selbox + (size_t)k * 4;
		/* disjoint boxes have IoU 0, never above a threshold > 0 */
		if (b[0] >= a[2] || b[2] <= a[0] || b[1] >= a[3] || b[3] <= a[1])
			continue;
		if (iou(a, b) > p->o.nms_iou_threshold)
			return false;
	}
	return true;
}

/* nms_single()'s result: the reference's candidates and sort, then each
 * candidate tested against the selected boxes only, up to max_out. */
static int nms_single_fast(const struct pp_prep *p, uint8_t *s, const float *boxes,
			   const float *scores, int max_out, int *sel)
{
	int *keep_i = (int *)(s + p->off_keep_i);
	float *keep_v = (float *)(s + p->off_keep_v);
	int *sorted = (int *)(s + p->off_sorted);
	float *selbox = (float *)(s + p->off_sboxes);
	int kept = 0;
	for (int i = 0; i < p->n; i++)
		if (scores[i] >= p->o.nms_score_threshold) {
			keep_v[kept] = scores[i];
			keep_i[kept++] = i;
		}
	pp_radix_argsort_desc(keep_v, kept, sorted, (uint32_t *)(s + p->off_radix));
	int n_sel = 0;
	for (int i = 0; i < kept && n_sel < max_out; i++) {
		int r = keep_i[sorted[i]];
		const float *b = boxes + (size_t)r * 4;
		if (survives(p, selbox, n_sel, b)) {
			memcpy(selbox + (size_t)n_sel * 4, b, 4 * sizeof(float));
			sel[n_sel++] = r;
		}
	}
	return n_sel;
}

/* Each anchor's best class score byte (background left out). */
static void pp_maxq(const struct pp_prep *p, const void *cd, uint8_t *maxq)
{
	const uint8_t *sq = cd;
	int r = 0;
#ifdef __SSE2__
	if (p->cwb == 4) { /* four anchors per 16 bytes: the class bytes masked, max of a dword's bytes */
		const __m128i keep = _mm_set1_epi32((int32_t)(0xffffffffu << (8 * p->label_off)));
		const __m128i low = _mm_set1_epi32(0xff);
		for (; r + 4 <= p->n; r += 4) {
			__m128i v = _mm_and_si128(
				_mm_loadu_si128((const __m128i *)(const void *)(sq + (size_t)r * 4)), keep);
			v = _mm_max_epu8(v, _mm_srli_epi32(v, 16));
			v = _mm_max_epu8(v, _mm_srli_epi32(v, 8));
			v = _mm_and_si128(v, low); /* byte 0 of each dword: its maximum */
			v = _mm_packus_epi16(_mm_packs_epi32(v, v), v);
			int32_t four = _mm_cvtsi128_si32(v);
			memcpy(maxq + r, &four, 4);
		}
	}
#endif
	for (; r < p->n; r++)
		maxq[r] = max_u8(sq + (size_t)r * p->cwb + p->label_off, p->nc);
}

/* count[255 - q] = how many of the n bytes are q; four tables for bytes
 * side by side, so that equal neighbours do not wait on each other's
 * increments. */
static void pp_histogram(const uint8_t *maxq, int n, int *count)
{
	int c4[4][256];
	memset(c4, 0, sizeof(c4));
	int r = 0;
	for (; r + 4 <= n; r += 4) {
		c4[0][255 - maxq[r]]++;
		c4[1][255 - maxq[r + 1]]++;
		c4[2][255 - maxq[r + 2]]++;
		c4[3][255 - maxq[r + 3]]++;
	}
	for (; r < n; r++)
		c4[0][255 - maxq[r]]++;
	for (int b = 0; b < 256; b++)
		count[b] = c4[0][b] + c4[1][b] + c4[2][b] + c4[3][b];
}

/*
 * The counting sort's order, placed lazily: the early-out NMS rarely looks
 * past the first few hundred candidates (the traffic model's 40 detections
 * take ~350 of 26880), so buckets are placed a range at a time, one pass over
 * the maxima each, as far as the loop gets.
 */
struct pp_buckets {
	int start[257]; /* bucket b's first position in the order; start[256]: all */
	int passing;    /* buckets [0, passing) pass the score threshold */
	int filled;     /* buckets [0, filled) are in the order */
};

/* Place buckets from bk->filled on until at least `want` positions are filled
 * (or every passing bucket is). */
static void pp_order_fill(struct pp_buckets *bk, const uint8_t *maxq, int n, int *order, int want)
{
	const int b0 = bk->filled;
	int b1 = b0 + 1;
	while (b1 < bk->passing && bk->start[b1] < want)
		b1++;
	/* bytes of maxq in the range: q in (255 - b1, 255 - b0] */
	const int qlo = 256 - b1, qhi = 255 - b0;
	int pos[256];
	memcpy(pos + b0, bk->start + b0, (size_t)(b1 - b0) * sizeof(int));
	for (int r = 0; r < n; r++) {
		const int q = maxq[r];
		if (q >= qlo && q <= qhi) /* rare on the first range: well predicted */
			order[pos[255 - q]++] = r;
	}
	bk->filled = b1;
}

static int pp_eval_fast(const struct eng_node *n, const struct eng_exec *x)
{
	const struct pp_prep *p = n->prep;
	uint8_t *s = x->scratch;
	const struct eng_tensor *be = n->in[0], *cs = n->in[1], *an = n->in[2];
	const void *bd = eng_tdata(x, be), *cd = eng_tdata(x, cs), *ad = eng_tdata(x, an);
	float *ob = eng_tdata(x, n->out[0]), *oc = eng_tdata(x, n->out[1]);
	float *os = eng_tdata(x, n->out[2]), *on = eng_tdata(x, n->out[3]);
	const struct pp_src src = pp_src_of(be, bd, an, ad);

	if (p->o.use_regular_nms) {
		/* every class may reach any anchor: decode them all, as the reference */
		float *boxes = (float *)(s + p->off_boxes);
		for (int i = 0; i < p->n; i++) {
			float *b = boxes + (size_t)i * 4;
			decode_box(p, &src, i, b);
			if (b[0] > b[2] || b[1] > b[3])
				return -EINVAL;
		}
		memset(ob, 0, (size_t)p->out_m * 4 * sizeof(float));
		memset(oc, 0, (size_t)p->out_m * sizeof(float));
		memset(os, 0, (size_t)p->out_m * sizeof(float));
		return pp_regular(p, s, boxes, cd, cs->type == ENG_DT_U8, (double)t_scale(cs), t_zp(cs),
				  ob, oc, os, on, nms_single_fast);
	}

	/* all boxes decoded up front only when one could be inverted */
	float *boxes = NULL;
	if (p->anchors_neg > 0 || (p->anchors_neg < 0 && anchors_negative(&src, p->n)))
		boxes = (float *)(s + p->off_boxes);
	if (boxes)
		for (int i = 0; i < p->n; i++) {
			float *b = boxes + (size_t)i * 4;
			decode_box(p, &src, i, b);
			if (b[0] > b[2] || b[1] > b[3])
				return -EINVAL;
		}

	const bool su8 = cs->type == ENG_DT_U8;
	const double ssc = (double)t_scale(cs);
	const int32_t szp = t_zp(cs);
	float lut[256];
	bool bucket = su8;
	if (su8)
		for (int q = 0; q < 256; q++) {
			lut[q] = (float)(ssc * (double)(q - szp));
			if (q > 0 && !(lut[q] > lut[q - 1]))
				bucket = false;
		}
	const float thr = p->o.nms_score_threshold;
	int *order = (int *)(s + p->off_sorted); /* candidate anchors, best first */
	int kept = 0;
	struct pp_buckets bk;
	if (bucket) {
		/* stable counting sort of the anchors by max q, descending (bucket b:
		 * max q = 255 - b), placed lazily (pp_order_fill) */
		uint8_t *maxq = s + p->off_active;
		pp_maxq(p, cd, maxq);
		int count[256], at = 0;
		pp_histogram(maxq, p->n, count);
		bk.passing = 0;
		for (int b = 0; b < 256; b++) {
			bk.start[b] = at;
			if (lut[255 - b] >= thr) { /* else dropped, as the reference's filter */
				at += count[b];
				bk.passing = b + 1; /* lut increasing: the passing buckets come first */
			}
		}
		bk.start[256] = at;
		bk.filled = 0;
		kept = at;
	} else {
		/* the reference's candidate list and sort */
		int *keep_i = (int *)(s + p->off_keep_i);
		float *keep_v = (float *)(s + p->off_keep_v);
		int *sorted = (int *)(s + p->off_cand_i);
		int *ci = (int *)(s + p->off_cand_tmp);
		float *rowbuf = (float *)(s + p->off_scores);
		for (int r = 0; r < p->n; r++) {
			const float *bs = score_row(p, cd, su8, lut, r, rowbuf);
			pp_partial_argsort_desc(bs, p->nc, p->cats, ci);
			float v = bs[ci[0]];
			if (v >= thr) {
				keep_v[kept] = v;
				keep_i[kept++] = r;
			}
		}
		pp_radix_argsort_desc(keep_v, kept, sorted, (uint32_t *)(s + p->off_radix));
		for (int i = 0; i < kept; i++)
			order[i] = keep_i[sorted[i]];
	}

	/* greedy NMS against the selected boxes only, stopping at max_detections */
	int *sel = (int *)(s + p->off_sel);
	float *selbox = (float *)(s + p->off_sboxes);
	const int max_out = p->o.max_detections;
	int n_sel = 0;
	for (int i = 0; i < kept && n_sel < max_out; i++) {
		if (bucket && i >= bk.start[bk.filled])
			pp_order_fill(&bk, s + p->off_active, p->n, order, i + 16 * max_out);
		int r = order[i];
		float *b = selbox + (size_t)n_sel * 4;
		if (boxes)
			memcpy(b, boxes + (size_t)r * 4, 4 * sizeof(float));
		else
			decode_box(p, &src, r, b);
		if (survives(p, selbox, n_sel, b))
			sel[n_sel++] = r;
	}

	memset(ob, 0, (size_t)p->out_m * 4 * sizeof(float));
	memset(oc, 0, (size_t)p->out_m * sizeof(float));
	memset(os, 0, (size_t)p->out_m * sizeof(float));
	int *ci = (int *)(s + p->off_cand_tmp);
	float *rowbuf = (float *)(s + p->off_scores);
	for (int k = 0; k < n_sel; k++) {
		const float *bs = score_row(p, cd, su8, lut, sel[k], rowbuf);
		pp_partial_argsort_desc(bs, p->nc, p->cats, ci);
		for (int c = 0; c < p->cats; c++) {
			int off = p->o.max_classes_per_detection * k + c;
			memcpy(ob + (size_t)off * 4, selbox + (size_t)k * 4, 4 * sizeof(float));
			oc[off] = (float)ci[c];
			os[off] = bs[ci[c]];
		}
	}
	on[0] = (float)n_sel;
	return 0;
}

const struct eng_kernel eng_k_postprocess = {"TFLite_Detection_PostProcess", pp_prepare, pp_eval,
					     pp_release};
const struct eng_kernel eng_k_postprocess_fast = {"TFLite_Detection_PostProcess", pp_prepare,
						  pp_eval_fast, pp_release};
