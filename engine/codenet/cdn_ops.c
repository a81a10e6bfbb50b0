/*
 * cdn_ops.c — CoDeNet operators, float and W4A8 integer, NHWC.
 *
 * Convolutions (regular and full deformable) build one output row's columns
 * (im2col, or deformable im2col with bilinear sampling) and multiply them
 * with the packed weights [k·k·cin][cout]; depthwise ones (plain and
 * deformable) work per pixel on whole channel vectors, so the bilinear
 * weights of a tap are computed once and applied to every channel.
 * Integer layers accumulate w·q in int32 (q = a+128 for unsigned tensors,
 * out-of-image taps contribute q = 0, i.e. a stored −128) and finish with
 * cdn_requant(), the definition in tools/codenet/codenet_quant.py.
 *
 * DW_EXACT: depthwise layers (plain and deformable, 9 taps) accumulate in
 * int16: |w| ≤ 7 (the loader checks it) and |q| ≤ 255 bound a sum by
 * 9·7·255 = 16065, so int16 is exact and the loops run 16 lanes wide.
 *
 * Work is split by output rows (struct cdn_par: the engine's pool, or cdn_parallel);
 * each thread gets its own scratch.  Everything here is reentrant.
 */
#include "codenet.h"
#include "ops/x86/vk.h"

#include <errno.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CDN_MAX_THREADS 64

/* Per-pixel channel loops (depthwise, deformable sampling, requantization) are
 * left to the vectorizer; on x86-64 an AVX2 clone is picked at load time (the
 * baseline SSE2 has no 32-bit vector multiply).  Not under ThreadSanitizer:
 * the clone's ifunc resolver runs while the dynamic loader relocates, before
 * the TSan runtime is up, and its instrumented entry crashes the process. */
#if defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define CDN_VEC __attribute__((target_clones("avx2", "default")))
#else
#define CDN_VEC
#endif

/* ---- threads ----------------------------------------------------------- */
struct par_job {
	void (*fn)(void *arg, int tid, int begin, int end);
	void *arg;
	int tid, begin, end;
};

static void *par_main(void *p)
{
	struct par_job *j = p;
	j->fn(j->arg, j->tid, j->begin, j->end);
	return NULL;
}

int cdn_parallel(int threads, int n, cdn_par_fn fn, void *arg)
{
	if (threads > n)
		threads = n;
	if (threads > CDN_MAX_THREADS)
		threads = CDN_MAX_THREADS;
	if (threads <= 1) {
		if (n > 0)
			fn(arg, 0, 0, n);
		return 0;
	}
	struct par_job jobs[CDN_MAX_THREADS];
	pthread_t tids[CDN_MAX_THREADS];
	bool started[CDN_MAX_THREADS] = {false};
	int r = 0;
	for (int t = 0; t < threads; t++) {
		jobs[t] = (struct par_job){fn, arg, t, (int)((int64_t)n * t / threads),
					   (int)((int64_t)n * (t + 1) / threads)};
	}
	for (int t = 1; t < threads; t++) {
		int e = pthread_create(&tids[t], NULL, par_main, &jobs[t]);
		if (e == 0)
			started[t] = true;
		else
			r = -e;
	}
	par_main(&jobs[0]);
	for (int t = 1; t < threads; t++) {
		if (started[t])
			pthread_join(tids[t], NULL);
		else
			par_main(&jobs[t]); /* could not start: do it here */
	}
	return r;
}

/* ---- scalar helpers ------------------------------------------------------ */
/* The requantization (codenet_quant.py).  ">> 16" on a negative int64 is an
 * arithmetic shift (floor) with GCC and clang, which is what the definition
 * asks for; implementation-defined in ISO C, so checked in test_requant. */
static inline int8_t requant(int32_t acc, int32_t m, int32_t bias, bool relu)
{
	acc = acc < -(1 << 23) ? -(1 << 23) : acc > (1 << 23) - 1 ? (1 << 23) - 1 : acc;
	int64_t v = (((int64_t)acc * m + (1 << 15)) >> 16) + bias;
	if (relu)
		return (int8_t)((v < 0 ? 0 : v > 255 ? 255 : v) - 128);
	return (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
}

int8_t cdn_requant(int32_t acc, int32_t m, int32_t bias, bool relu)
{
	return requant(acc, m, bias, relu);
}

CDN_VEC static void requant_vec(const int32_t *acc, int n, const int32_t *m, const int32_t *b,
				bool relu, int8_t *out)
{
	if (relu)
		for (int c = 0; c < n; c++)
			out[c] = requant(acc[c], m[c], b[c], true);
	else
		for (int c = 0; c < n; c++)
			out[c] = requant(acc[c], m[c], b[c], false);
}

float cdn_sigmoid(float x)
{
	return 1.0f / (1.0f + expf(-x));
}

static inline int16_t qval(int8_t a, bool sgn)
{
	return sgn ? a : (int16_t)(a + 128);
}

/* ---- GEMM: C[n][M] = bias + A[n][K] · B[K][M] ------------------------------
 * K is walked in blocks so the slice of B in use stays in L2 while every row
 * of the output tile passes over it; four output rows share each B load. */
#define KB 128

/* end of the K block that starts at k0 */
static inline int kb_end(int k0, int K)
{
	return k0 + KB < K ? k0 + KB : K;
}

static void gemm_f32_ref(int n, int K, int M, const float *A, size_t lda, const float *B,
			 float *C)
{
	for (int k0 = 0; k0 < K; k0 += KB) {
		int k1 = kb_end(k0, K);
		int i = 0;
		for (; i + 4 <= n; i += 4) {
			float *c0 = C + (size_t)i * M, *c1 = c0 + M, *c2 = c1 + M, *c3 = c2 + M;
			const float *a0 = A + (size_t)i * lda, *a1 = a0 + lda, *a2 = a1 + lda,
				    *a3 = a2 + lda;
			for (int k = k0; k < k1; k++) {
				const float *b = B + (size_t)k * M;
				float x0 = a0[k], x1 = a1[k], x2 = a2[k], x3 = a3[k];
				for (int m = 0; m < M; m++) {
					float w = b[m];
					c0[m] += x0 * w;
					c1[m] += x1 * w;
					c2[m] += x2 * w;
					c3[m] += x3 * w;
				}
			}
		}
		for (; i < n; i++) {
			float *c0 = C + (size_t)i * M;
			const float *a0 = A + (size_t)i * lda;
			for (int k = k0; k < k1; k++) {
				const float *b = B + (size_t)k * M;
				float x0 = a0[k];
				for (int m = 0; m < M; m++)
					c0[m] += x0 * b[m];
			}
		}
	}
}

#if defined(__x86_64__)
/* The same product with 8-wide FMA: a 4-row × 16-column tile of C stays in
 * registers over a K block (8 accumulators, 2 loads of B + 4 broadcasts of A
 * per 8 FMAs).  Chosen at run time when the CPU has AVX2 and FMA. */
__attribute__((target("avx2,fma"))) static void gemm_f32_avx2(int n, int K, int M,
							       const float *A, size_t lda,
							       const float *B, float *C)
{
	for (int k0 = 0; k0 < K; k0 += KB) {
		int k1 = kb_end(k0, K);
		int i = 0;
		for (; i + 4 <= n; i += 4) {
			const float *a0 = A + (size_t)i * lda, *a1 = a0 + lda, *a2 = a1 + lda,
				    *a3 = a2 + lda;
			float *c0 = C + (size_t)i * M, *c1 = c0 + M, *c2 = c1 + M, *c3 = c2 + M;
			int m = 0;
			for (; m + 16 <= M; m += 16) {
				__m256 x00 = _mm256_loadu_ps(c0 + m), x01 = _mm256_loadu_ps(c0 + m + 8);
				__m256 x10 = _mm256_loadu_ps(c1 + m), x11 = _mm256_loadu_ps(c1 + m + 8);
				__m256 x20 = _mm256_loadu_ps(c2 + m), x21 = _mm256_loadu_ps(c2 + m + 8);
				__m256 x30 = _mm256_loadu_ps(c3 + m), x31 = _mm256_loadu_ps(c3 + m + 8);
				for (int k = k0; k < k1; k++) {
					const float *b = B + (size_t)k * M + m;
					__m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
					__m256 v = _mm256_broadcast_ss(a0 + k);
					x00 = _mm256_fmadd_ps(v, b0, x00);
					x01 = _mm256_fmadd_ps(v, b1, x01);
					v = _mm256_broadcast_ss(a1 + k);
					x10 = _mm256_fmadd_ps(v, b0, x10);
					x11 = _mm256_fmadd_ps(v, b1, x11);
					v = _mm256_broadcast_ss(a2 + k);
					x20 = _mm256_fmadd_ps(v, b0, x20);
					x21 = _mm256_fmadd_ps(v, b1, x21);
					v = _mm256_broadcast_ss(a3 + k);
					x30 = _mm256_fmadd_ps(v, b0, x30);
					x31 = _mm256_fmadd_ps(v, b1, x31);
				}
				_mm256_storeu_ps(c0 + m, x00), _mm256_storeu_ps(c0 + m + 8, x01);
				_mm256_storeu_ps(c1 + m, x10), _mm256_storeu_ps(c1 + m + 8, x11);
				_mm256_storeu_ps(c2 + m, x20), _mm256_storeu_ps(c2 + m + 8, x21);
				_mm256_storeu_ps(c3 + m, x30), _mm256_storeu_ps(c3 + m + 8, x31);
			}
			for (; m + 8 <= M; m += 8) {
				__m256 x0 = _mm256_loadu_ps(c0 + m), x1 = _mm256_loadu_ps(c1 + m);
				__m256 x2 = _mm256_loadu_ps(c2 + m), x3 = _mm256_loadu_ps(c3 + m);
				for (int k = k0; k < k1; k++) {
					__m256 b0 = _mm256_loadu_ps(B + (size_t)k * M + m);
					x0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + k), b0, x0);
					x1 = _mm256_fmadd_ps(_mm256_broadcast_ss(a1 + k), b0, x1);
					x2 = _mm256_fmadd_ps(_mm256_broadcast_ss(a2 + k), b0, x2);
					x3 = _mm256_fmadd_ps(_mm256_broadcast_ss(a3 + k), b0, x3);
				}
				_mm256_storeu_ps(c0 + m, x0), _mm256_storeu_ps(c1 + m, x1);
				_mm256_storeu_ps(c2 + m, x2), _mm256_storeu_ps(c3 + m, x3);
			}
			for (; m < M; m++) {
				float s0 = c0[m], s1 = c1[m], s2 = c2[m], s3 = c3[m];
				for (int k = k0; k < k1; k++) {
					float w = B[(size_t)k * M + m];
					s0 += a0[k] * w, s1 += a1[k] * w, s2 += a2[k] * w, s3 += a3[k] * w;
				}
				c0[m] = s0, c1[m] = s1, c2[m] = s2, c3[m] = s3;
			}
		}
		for (; i < n; i++) {
			const float *a0 = A + (size_t)i * lda;
			float *c0 = C + (size_t)i * M;
			int m = 0;
			for (; m + 8 <= M; m += 8) {
				__m256 x0 = _mm256_loadu_ps(c0 + m);
				for (int k = k0; k < k1; k++)
					x0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + k),
							     _mm256_loadu_ps(B + (size_t)k * M + m), x0);
				_mm256_storeu_ps(c0 + m, x0);
			}
			for (; m < M; m++) {
				float s0 = c0[m];
				for (int k = k0; k < k1; k++)
					s0 += a0[k] * B[(size_t)k * M + m];
				c0[m] = s0;
			}
		}
	}
}

static bool simd_ok;
static pthread_once_t simd_once = PTHREAD_ONCE_INIT;

static void simd_probe(void)
{
	/* DETD_CODENET_PORTABLE=1 forces the portable GEMMs (tests compare them) */
	const char *e = getenv("DETD_CODENET_PORTABLE");
	simd_ok = !(e && *e && *e != '0') && __builtin_cpu_supports("avx2") &&
		  __builtin_cpu_supports("fma");
}

static bool have_avx2_fma(void)
{
	pthread_once(&simd_once, simd_probe);
	return simd_ok;
}
#endif

static void gemm_f32(int n, int K, int M, const float *A, size_t lda, const float *B,
		     const float *bias, float *C, bool relu)
{
	for (int i = 0; i < n; i++)
		memcpy(C + (size_t)i * M, bias, sizeof(float) * M);
#if defined(__x86_64__)
	if (have_avx2_fma())
		gemm_f32_avx2(n, K, M, A, lda, B, C);
	else
#endif
		gemm_f32_ref(n, K, M, A, lda, B, C);
	if (relu)
		for (size_t j = 0; j < (size_t)n * M; j++)
			C[j] = C[j] > 0 ? C[j] : 0;
}

/* int16 columns × int16 weights → int32 accumulators acc[n][M] (exact: any order) */
static void gemm_i16_ref(int n, int K, int M, const int16_t *A, size_t lda, const int16_t *B,
			 int32_t *acc)
{
	for (int k0 = 0; k0 < K; k0 += KB) {
		int k1 = kb_end(k0, K);
		int i = 0;
		for (; i + 4 <= n; i += 4) {
			int32_t *c0 = acc + (size_t)i * M, *c1 = c0 + M, *c2 = c1 + M, *c3 = c2 + M;
			const int16_t *a0 = A + (size_t)i * lda, *a1 = a0 + lda, *a2 = a1 + lda,
				      *a3 = a2 + lda;
			for (int k = k0; k < k1; k++) {
				const int16_t *b = B + (size_t)k * M;
				int32_t x0 = a0[k], x1 = a1[k], x2 = a2[k], x3 = a3[k];
				if ((x0 | x1 | x2 | x3) == 0)
					continue;
				for (int m = 0; m < M; m++) {
					int32_t w = b[m];
					c0[m] += x0 * w;
					c1[m] += x1 * w;
					c2[m] += x2 * w;
					c3[m] += x3 * w;
				}
			}
		}
		for (; i < n; i++) {
			int32_t *c0 = acc + (size_t)i * M;
			const int16_t *a0 = A + (size_t)i * lda;
			for (int k = k0; k < k1; k++) {
				const int16_t *b = B + (size_t)k * M;
				int32_t x0 = a0[k];
				if (!x0)
					continue;
				for (int m = 0; m < M; m++)
					c0[m] += x0 * b[m];
			}
		}
	}
}

#if defined(__x86_64__)
static int32_t a_pair(const int16_t *a, int k, int K)
{
	uint16_t lo = (uint16_t)a[k], hi = k + 1 < K ? (uint16_t)a[k + 1] : 0;
	return (int32_t)((uint32_t)hi << 16 | lo);
}

/* vpmaddwd on pairs of K: B2 is [K/2][M][2] (see cdn_layer_pack); a 4 × 16
 * tile of int32 accumulators stays in registers.  Exact like the reference. */
__attribute__((target("avx2"))) static void gemm_i16_avx2(int n, int K, int M, const int16_t *A,
							  size_t lda, const int16_t *B2,
							  int32_t *acc)
{
	int K2 = (K + 1) / 2;
	for (int k0 = 0; k0 < K2; k0 += KB / 2) {
		int k1 = k0 + KB / 2 < K2 ? k0 + KB / 2 : K2;
		int i = 0;
		for (; i + 4 <= n; i += 4) {
			const int16_t *a0 = A + (size_t)i * lda, *a1 = a0 + lda, *a2 = a1 + lda,
				      *a3 = a2 + lda;
			int32_t *c0 = acc + (size_t)i * M, *c1 = c0 + M, *c2 = c1 + M, *c3 = c2 + M;
			int m = 0;
			for (; m + 16 <= M; m += 16) {
#define LD(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define ST(p, v) _mm256_storeu_si256((__m256i *)(void *)(p), v)
				__m256i x00 = LD(c0 + m), x01 = LD(c0 + m + 8), x10 = LD(c1 + m),
					x11 = LD(c1 + m + 8), x20 = LD(c2 + m), x21 = LD(c2 + m + 8),
					x30 = LD(c3 + m), x31 = LD(c3 + m + 8);
				for (int k = k0; k < k1; k++) {
					const int16_t *b = B2 + ((size_t)k * M + m) * 2;
					__m256i b0 = LD(b), b1 = LD(b + 16), v;
					v = _mm256_set1_epi32(a_pair(a0, 2 * k, K));
					x00 = _mm256_add_epi32(x00, _mm256_madd_epi16(v, b0));
					x01 = _mm256_add_epi32(x01, _mm256_madd_epi16(v, b1));
					v = _mm256_set1_epi32(a_pair(a1, 2 * k, K));
					x10 = _mm256_add_epi32(x10, _mm256_madd_epi16(v, b0));
					x11 = _mm256_add_epi32(x11, _mm256_madd_epi16(v, b1));
					v = _mm256_set1_epi32(a_pair(a2, 2 * k, K));
					x20 = _mm256_add_epi32(x20, _mm256_madd_epi16(v, b0));
					x21 = _mm256_add_epi32(x21, _mm256_madd_epi16(v, b1));
					v = _mm256_set1_epi32(a_pair(a3, 2 * k, K));
					x30 = _mm256_add_epi32(x30, _mm256_madd_epi16(v, b0));
					x31 = _mm256_add_epi32(x31, _mm256_madd_epi16(v, b1));
				}
				ST(c0 + m, x00), ST(c0 + m + 8, x01), ST(c1 + m, x10), ST(c1 + m + 8, x11);
				ST(c2 + m, x20), ST(c2 + m + 8, x21), ST(c3 + m, x30), ST(c3 + m + 8, x31);
			}
			for (; m + 8 <= M; m += 8) {
				__m256i x0 = LD(c0 + m), x1 = LD(c1 + m), x2 = LD(c2 + m), x3 = LD(c3 + m);
				for (int k = k0; k < k1; k++) {
					__m256i b0 = LD(B2 + ((size_t)k * M + m) * 2);
					x0 = _mm256_add_epi32(x0, _mm256_madd_epi16(
									  _mm256_set1_epi32(a_pair(a0, 2 * k, K)), b0));
					x1 = _mm256_add_epi32(x1, _mm256_madd_epi16(
									  _mm256_set1_epi32(a_pair(a1, 2 * k, K)), b0));
					x2 = _mm256_add_epi32(x2, _mm256_madd_epi16(
									  _mm256_set1_epi32(a_pair(a2, 2 * k, K)), b0));
					x3 = _mm256_add_epi32(x3, _mm256_madd_epi16(
									  _mm256_set1_epi32(a_pair(a3, 2 * k, K)), b0));
				}
				ST(c0 + m, x0), ST(c1 + m, x1), ST(c2 + m, x2), ST(c3 + m, x3);
			}
			for (; m < M; m++)
				for (int k = k0; k < k1; k++)
					for (int j = 0; j < 2 && 2 * k + j < K; j++) {
						int32_t w = B2[((size_t)k * M + m) * 2 + j];
						c0[m] += a0[2 * k + j] * w, c1[m] += a1[2 * k + j] * w;
						c2[m] += a2[2 * k + j] * w, c3[m] += a3[2 * k + j] * w;
					}
		}
		for (; i < n; i++) {
			const int16_t *a0 = A + (size_t)i * lda;
			int32_t *c0 = acc + (size_t)i * M;
			int m = 0;
			for (; m + 8 <= M; m += 8) {
				__m256i x0 = LD(c0 + m);
				for (int k = k0; k < k1; k++)
					x0 = _mm256_add_epi32(
						x0, _mm256_madd_epi16(_mm256_set1_epi32(a_pair(a0, 2 * k, K)),
								      LD(B2 + ((size_t)k * M + m) * 2)));
				ST(c0 + m, x0);
			}
			for (; m < M; m++)
				for (int k = k0; k < k1; k++)
					for (int j = 0; j < 2 && 2 * k + j < K; j++)
						c0[m] += a0[2 * k + j] * B2[((size_t)k * M + m) * 2 + j];
#undef LD
#undef ST
		}
	}
}
#endif

static void gemm_i16(int n, int K, int M, const int16_t *A, size_t lda, const int16_t *B,
		     const int16_t *B2, int32_t *acc)
{
	memset(acc, 0, sizeof(int32_t) * (size_t)n * M);
#if defined(__x86_64__)
	if (B2 && have_avx2_fma()) {
		gemm_i16_avx2(n, K, M, A, lda, B2, acc);
		return;
	}
#endif
	gemm_i16_ref(n, K, M, A, lda, B, acc);
}

int cdn_layer_pack(struct cdn_layer *L)
{
	if (!L->wq || (L->kind != CDN_L_CONV && L->kind != CDN_L_DCN_FULL))
		return 0;
	size_t K = (size_t)L->k * L->k * L->cin, K2 = (K + 1) / 2, M = (size_t)L->cout;
	free(L->wq2);
	L->wq2 = calloc(K2 * M * 2, sizeof(int16_t));
	if (!L->wq2)
		return -ENOMEM;
	for (size_t k = 0; k < K; k++)
		for (size_t m = 0; m < M; m++)
			L->wq2[((k / 2) * M + m) * 2 + k % 2] = L->wq[k * M + m];
	return 0;
}

int cdn_layer_pack_vk(struct cdn_layer *L, cdn_vk_fn fn)
{
	if (!L->wq || !fn || (L->kind != CDN_L_CONV && L->kind != CDN_L_DCN_FULL))
		return 0;
	cdn_layer_vk_free(L);
	const int K = L->k * L->k * L->cin, K4 = (K + 3) & ~3, N = L->cout;
	const int NP = (N + VK_NALIGN - 1) / VK_NALIGN * VK_NALIGN;
	int8_t *w = aligned_alloc(64, ((size_t)NP * K4 + 63) & ~(size_t)63);
	int32_t *ct = calloc(2 * (size_t)NP, sizeof(int32_t));
	L->vk[0] = calloc(1, sizeof(struct vk_gemm));
	L->vk[1] = calloc(1, sizeof(struct vk_gemm));
	if (!w || !ct || !L->vk[0] || !L->vk[1]) {
		free(w);
		free(ct);
		free(L->vk[0]);
		free(L->vk[1]);
		L->vk[0] = L->vk[1] = NULL;
		return -ENOMEM;
	}
	memset(w, 0, (size_t)NP * K4);
	for (int n = 0; n < N; n++) {
		int32_t sum = 0;
		for (int k = 0; k < K; k++) {
			int16_t v = L->wq[(size_t)k * N + n]; /* |v| <= 7: the loader checks it */
			w[vk_pack_index(K4, k, n)] = (int8_t)v;
			sum += v;
		}
		ct[NP + n] = -128 * sum; /* signed inputs go in as q + 128 */
	}
	for (int i = 0; i < 2; i++)
		*L->vk[i] = (struct vk_gemm){.K4 = K4, .N = N, .NP = NP, .w = w, .cterm = ct + i * NP};
	L->vkfn = fn;
	return 0;
}

void cdn_layer_vk_free(struct cdn_layer *L)
{
	if (L->vk[0]) {
		free((void *)L->vk[0]->w);
		free((void *)L->vk[0]->cterm);
	}
	free(L->vk[0]);
	free(L->vk[1]);
	L->vk[0] = L->vk[1] = NULL;
	L->vkfn = NULL;
}

/* Rows per VNNI call, and the bytes gemm_q needs beyond the int16 columns. */
#define VKQ_ROWS 64
static size_t vkq_scratch(const struct cdn_layer *L, size_t K)
{
	size_t K4 = (K + 3) & ~(size_t)3;
	return L->vk[0] ? (size_t)VKQ_ROWS * K4 + 32 + vk_scratch_bytes((int)K4, VKQ_ROWS) : 0;
}

/* acc[n][cout] = the int16 columns · the layer's weights: on the VNNI GEMM
 * when the layer is packed for it (the columns narrowed to bytes, VKQ_ROWS
 * at a time, in u8), else gemm_i16.  Exact either way. */
static void gemm_q(const struct cdn_layer *L, bool sgn, int n, int K, const int16_t *col,
		   int32_t *acc, uint8_t *u8)
{
	if (!L->vk[0]) {
		gemm_i16(n, K, L->cout, col, K, L->wq, L->wq2, acc);
		return;
	}
	const struct vk_gemm *g = L->vk[sgn];
	const int K4 = g->K4;
	const int16_t off = sgn ? 128 : 0;
	uint8_t *tail = u8 + (((size_t)VKQ_ROWS * K4 + 31) & ~(size_t)31); /* the GEMM's scratch */
	for (int r0 = 0; r0 < n; r0 += VKQ_ROWS) {
		int m = n - r0 < VKQ_ROWS ? n - r0 : VKQ_ROWS;
		for (int r = 0; r < m; r++) {
			const int16_t *src = col + (size_t)(r0 + r) * K;
			uint8_t *d = u8 + (size_t)r * K4;
			for (int k = 0; k < K; k++)
				d[k] = (uint8_t)(src[k] + off);
			for (int k = K; k < K4; k++)
				d[k] = 0;
		}
		L->vkfn(g, u8, (size_t)K4, m, acc + (size_t)r0 * L->cout, (size_t)L->cout, tail);
	}
}

static void requant_row(const int32_t *acc, int n, const struct cdn_layer *L, int8_t *out)
{
	for (int i = 0; i < n; i++)
		requant_vec(acc + (size_t)i * L->cout, L->cout, L->mq, L->bq, L->relu,
			    out + (size_t)i * L->cout);
}

/* ---- regular convolution -------------------------------------------------- */
struct conv_job {
	const struct cdn_layer *L;
	const struct cdn_ten *in;
	struct cdn_ten *out;
	void *scratch[CDN_MAX_THREADS];
	size_t scratch_bytes;
	int err;
};

/* im2col of one output row, float or q (int16) */
static void im2col_f32(const struct cdn_ten *in, const struct cdn_layer *L, int oy, int ow,
		       float *col)
{
	int k = L->k, p = k / 2, C = in->c;
	size_t K = (size_t)k * k * C;
	for (int ox = 0; ox < ow; ox++) {
		float *dst = col + ox * K;
		for (int ky = 0; ky < k; ky++) {
			int iy = oy * L->stride + ky - p;
			for (int kx = 0; kx < k; kx++, dst += C) {
				int ix = ox * L->stride + kx - p;
				if (iy < 0 || iy >= in->h || ix < 0 || ix >= in->w)
					memset(dst, 0, sizeof(float) * C);
				else
					memcpy(dst, in->f + ((size_t)iy * in->w + ix) * C,
					       sizeof(float) * C);
			}
		}
	}
}

CDN_VEC static void im2col_q(const struct cdn_ten *in, const struct cdn_layer *L, int oy, int ow,
		     int16_t *col)
{
	int k = L->k, p = k / 2, C = in->c;
	size_t K = (size_t)k * k * C;
	for (int ox = 0; ox < ow; ox++) {
		int16_t *dst = col + ox * K;
		for (int ky = 0; ky < k; ky++) {
			int iy = oy * L->stride + ky - p;
			for (int kx = 0; kx < k; kx++, dst += C) {
				int ix = ox * L->stride + kx - p;
				if (iy < 0 || iy >= in->h || ix < 0 || ix >= in->w) {
					memset(dst, 0, sizeof(int16_t) * C);
				} else {
					const int8_t *s = in->q + ((size_t)iy * in->w + ix) * C;
					for (int c = 0; c < C; c++)
						dst[c] = qval(s[c], in->sgn);
				}
			}
		}
	}
}

static void conv_rows(void *arg, int tid, int y0, int y1)
{
	struct conv_job *j = arg;
	const struct cdn_layer *L = j->L;
	const struct cdn_ten *in = j->in;
	struct cdn_ten *out = j->out;
	int ow = out->w;
	size_t K = (size_t)L->k * L->k * in->c;
	for (int y = y0; y < y1; y++) {
		if (in->f) {
			float *o = out->f + (size_t)y * ow * L->cout;
			if (L->k == 1 && L->stride == 1) {
				gemm_f32(ow, (int)K, L->cout, in->f + (size_t)y * in->w * in->c, K, L->wf,
					 L->bf, o, L->relu);
			} else {
				float *col = j->scratch[tid];
				im2col_f32(in, L, y, ow, col);
				gemm_f32(ow, (int)K, L->cout, col, K, L->wf, L->bf, o, L->relu);
			}
		} else {
			int16_t *col = j->scratch[tid];
			size_t colb = (ow * K * sizeof(int16_t) + 63) & ~(size_t)63;
			int32_t *acc = (int32_t *)(void *)((char *)j->scratch[tid] + colb);
			uint8_t *u8 = (uint8_t *)j->scratch[tid] + colb +
				      (((size_t)ow * L->cout * sizeof(int32_t) + 63) & ~(size_t)63);
			im2col_q(in, L, y, ow, col);
			gemm_q(L, in->sgn, ow, (int)K, col, acc, u8);
			requant_row(acc, ow, L, out->q + (size_t)y * ow * L->cout);
		}
	}
}

/* depthwise 3×3, stride 1 or 2, pad 1 */
CDN_VEC static void dw_rows(void *arg, int tid, int y0, int y1)
{
	struct conv_job *j = arg;
	const struct cdn_layer *L = j->L;
	const struct cdn_ten *in = j->in;
	struct cdn_ten *out = j->out;
	int C = in->c, s = L->stride;
	int32_t *acc = j->scratch[tid];
	int16_t *a16 = (int16_t *)(void *)(acc + in->c);
	for (int y = y0; y < y1; y++) {
		for (int x = 0; x < out->w; x++) {
			size_t op = ((size_t)y * out->w + x) * C;
			if (in->f) {
				float *o = out->f + op;
				memcpy(o, L->bf, sizeof(float) * C);
				for (int t = 0; t < 9; t++) {
					int iy = y * s + t / 3 - 1, ix = x * s + t % 3 - 1;
					if (iy < 0 || iy >= in->h || ix < 0 || ix >= in->w)
						continue;
					const float *p = in->f + ((size_t)iy * in->w + ix) * C;
					const float *w = L->wf + (size_t)t * C;
					for (int c = 0; c < C; c++)
						o[c] += w[c] * p[c];
				}
				if (L->relu)
					for (int c = 0; c < C; c++)
						o[c] = o[c] > 0 ? o[c] : 0;
			} else {
				memset(a16, 0, sizeof(int16_t) * C);
				for (int t = 0; t < 9; t++) {
					int iy = y * s + t / 3 - 1, ix = x * s + t % 3 - 1;
					if (iy < 0 || iy >= in->h || ix < 0 || ix >= in->w)
						continue;
					const int8_t *p = in->q + ((size_t)iy * in->w + ix) * C;
					const int16_t *w = L->wq + (size_t)t * C;
					/* q = a + zq, hoisted so the loop vectorizes; int16
					 * sums are exact for 9 taps of 4-bit weights (DW_EXACT) */
					int16_t zq = in->sgn ? 0 : 128;
					for (int c = 0; c < C; c++)
						a16[c] = (int16_t)(a16[c] + w[c] * (int16_t)(p[c] + zq));
				}
				for (int c = 0; c < C; c++)
					acc[c] = a16[c];
				requant_vec(acc, C, L->mq, L->bq, L->relu, out->q + op);
			}
		}
	}
}

static int clamp_threads(int threads)
{
	if (threads < 1)
		threads = 1;
	if (threads > CDN_MAX_THREADS)
		threads = CDN_MAX_THREADS;
	return threads;
}

/* ---- scratch ------------------------------------------------------------- */
static size_t ws_slice(size_t bytes)
{
	return (bytes + CDN_WS_ALIGN - 1) & ~(size_t)(CDN_WS_ALIGN - 1);
}

size_t cdn_op_ws_bytes(size_t per_thread, int threads)
{
	return ws_slice(per_thread) * (size_t)clamp_threads(threads);
}

/* Slices the workspace: thread t's scratch at t·slice. */
static void ws_split(void *ws, size_t per_thread, int threads, void **scratch)
{
	for (int t = 0; t < threads; t++)
		scratch[t] = per_thread ? (char *)ws + (size_t)t * ws_slice(per_thread) : NULL;
}

/* A workspace of its own, for callers without a planned one (tools, tests). */
static void *ws_alloc(size_t per_thread, int threads, int *r)
{
	*r = 0;
	if (!per_thread)
		return NULL;
	void *ws = aligned_alloc(CDN_WS_ALIGN, cdn_op_ws_bytes(per_thread, threads));
	if (!ws)
		*r = -ENOMEM;
	return ws;
}

size_t cdn_op_conv_scratch(const struct cdn_layer *L, bool quant, const struct cdn_ten *in,
			   const struct cdn_ten *out)
{
	size_t K = (size_t)L->k * L->k * in->c;
	if (L->kind == CDN_L_DW)
		return quant ? (sizeof(int32_t) + sizeof(int16_t)) * in->c : 0;
	if (quant)
		return ((out->w * K * sizeof(int16_t) + 63) & ~(size_t)63) +
		       (((size_t)out->w * L->cout * sizeof(int32_t) + 63) & ~(size_t)63) +
		       vkq_scratch(L, K);
	if (!(L->k == 1 && L->stride == 1))
		return out->w * K * sizeof(float);
	return 0;
}

/* fn over [0, n) as par says. */
static void par_run(const struct cdn_par *par, int threads, int n, cdn_par_fn fn, void *arg)
{
	if (par->run)
		par->run(par->user, threads, n, fn, arg);
	else
		cdn_parallel(threads, n, fn, arg);
}

int cdn_op_conv_ws(const struct cdn_layer *L, const struct cdn_ten *in, struct cdn_ten *out,
		   const struct cdn_par *par, void *ws)
{
	struct conv_job j = {.L = L, .in = in, .out = out};
	int threads = clamp_threads(par->threads);
	j.scratch_bytes = cdn_op_conv_scratch(L, !in->f, in, out);
	if (j.scratch_bytes && !ws)
		return -EINVAL;
	ws_split(ws, j.scratch_bytes, threads, j.scratch);
	par_run(par, threads, out->h, L->kind == CDN_L_DW ? dw_rows : conv_rows, &j);
	return 0;
}

int cdn_op_conv(const struct cdn_layer *L, const struct cdn_ten *in, struct cdn_ten *out,
		int threads)
{
	int r;
	void *ws = ws_alloc(cdn_op_conv_scratch(L, !in->f, in, out), threads, &r);
	const struct cdn_par par = {.threads = threads};
	if (r == 0)
		r = cdn_op_conv_ws(L, in, out, &par, ws);
	free(ws);
	return r;
}

/* ---- deformable convolution ---------------------------------------------- */
struct dcn_job {
	const struct cdn_layer *L;
	const struct cdn_dcn_cfg *cfg;
	const struct cdn_ten *in, *off;
	struct cdn_ten *out;
	void *scratch[CDN_MAX_THREADS];
};

/* One tap's bilinear sample: up to four corners (index into the pixel grid,
 * weight); n = 0 when the point lies entirely outside (reads zero). */
struct taps4 {
	int n;
	size_t idx[4];
	float w[4];
};

/* v clamped to [-b, b]; a NaN v passes through unchanged */
static inline float clamp_sym_f(float v, float b)
{
	return v < -b ? -b : v > b ? b : v;
}

static inline int clamp_sym_i(int v, int b)
{
	return v < -b ? -b : v > b ? b : v;
}

static void float_pos(const struct cdn_dcn_cfg *cfg, const float *o, int y, int x, int t,
		      float *py, float *px)
{
	int ky = t / 3 - 1, kx = t % 3 - 1;
	if (cfg->square) {
		float s = o[0];
		if (cfg->rounded)
			s = nearbyintf(s);
		float d = 1 + s;
		d = d < 0 ? 0 : d;
		if (cfg->bound > 0 && d > cfg->bound)
			d = cfg->bound;
		*py = (float)y + (float)ky * d;
		*px = (float)x + (float)kx * d;
	} else {
		float dy = o[2 * t], dx = o[2 * t + 1];
		if (cfg->rounded) {
			dy = nearbyintf(dy);
			dx = nearbyintf(dx);
		}
		if (cfg->bound > 0) {
			float b = cfg->bound;
			dy = clamp_sym_f(dy, b);
			dx = clamp_sym_f(dx, b);
		}
		*py = (float)(y + ky) + dy;
		*px = (float)(x + kx) + dx;
	}
}

static void bilinear(float py, float px, int H, int W, float scale, struct taps4 *s)
{
	s->n = 0;
	/* also rejects NaN, and keeps the int conversions below in range */
	if (!(py > -1.0f && py < (float)H && px > -1.0f && px < (float)W))
		return;
	float fy = floorf(py), fx = floorf(px);
	int y0 = (int)fy, x0 = (int)fx;
	float ly = py - fy, lx = px - fx, hy = 1 - ly, hx = 1 - lx;
	const int cy[4] = {y0, y0, y0 + 1, y0 + 1}, cx[4] = {x0, x0 + 1, x0, x0 + 1};
	const float cw[4] = {hy * hx, hy * lx, ly * hx, ly * lx};
	for (int i = 0; i < 4; i++) {
		if (cy[i] < 0 || cy[i] >= H || cx[i] < 0 || cx[i] >= W || cw[i] == 0.0f)
			continue;
		s->idx[s->n] = (size_t)cy[i] * W + cx[i];
		s->w[s->n] = cw[i] * scale;
		s->n++;
	}
}

/* integer positions: the offset layer's int8 output is in pixels */
static bool int_pos(const struct cdn_dcn_cfg *cfg, const int8_t *o, int y, int x, int t, int H,
		    int W, size_t *idx)
{
	int B = (int)floorf(cfg->bound);
	int ky = t / 3 - 1, kx = t % 3 - 1, py, px;
	if (cfg->square) {
		int d = 1 + o[0];
		d = d < 0 ? 0 : d;
		if (B > 0 && d > B)
			d = B;
		py = y + ky * d;
		px = x + kx * d;
	} else {
		int dy = o[2 * t], dx = o[2 * t + 1];
		if (B > 0) {
			dy = clamp_sym_i(dy, B);
			dx = clamp_sym_i(dx, B);
		}
		py = y + ky + dy;
		px = x + kx + dx;
	}
	if (py < 0 || py >= H || px < 0 || px >= W)
		return false;
	*idx = (size_t)py * W + px;
	return true;
}

static void float_taps(const struct dcn_job *j, int y, int x, struct taps4 tp[9])
{
	const struct cdn_ten *in = j->in, *off = j->off;
	const float *o = off->f + ((size_t)y * off->w + x) * off->c;
	for (int t = 0; t < 9; t++) {
		float py, px;
		float_pos(j->cfg, o, y, x, t, &py, &px);
		float m = j->cfg->mask ? cdn_sigmoid(o[18 + t]) : 1.0f;
		bilinear(py, px, in->h, in->w, m, &tp[t]);
	}
}

CDN_VEC static void dcn_full_rows(void *arg, int tid, int y0, int y1)
{
	struct dcn_job *j = arg;
	const struct cdn_layer *L = j->L;
	const struct cdn_ten *in = j->in, *off = j->off;
	struct cdn_ten *out = j->out;
	int C = in->c, W = out->w;
	size_t K = (size_t)9 * C;
	for (int y = y0; y < y1; y++) {
		if (in->f) {
			float *col = j->scratch[tid];
			for (int x = 0; x < W; x++) {
				struct taps4 tp[9];
				float_taps(j, y, x, tp);
				for (int t = 0; t < 9; t++) {
					float *d = col + x * K + (size_t)t * C;
					memset(d, 0, sizeof(float) * C);
					for (int i = 0; i < tp[t].n; i++) {
						const float *p = in->f + tp[t].idx[i] * C;
						float w = tp[t].w[i];
						for (int c = 0; c < C; c++)
							d[c] += w * p[c];
					}
				}
			}
			gemm_f32(W, (int)K, L->cout, col, K, L->wf, L->bf,
				 out->f + (size_t)y * W * L->cout, L->relu);
		} else {
			int16_t *col = j->scratch[tid];
			size_t colb = (W * K * sizeof(int16_t) + 63) & ~(size_t)63;
			int32_t *acc = (int32_t *)(void *)((char *)j->scratch[tid] + colb);
			uint8_t *u8 = (uint8_t *)j->scratch[tid] + colb +
				      (((size_t)W * L->cout * sizeof(int32_t) + 63) & ~(size_t)63);
			for (int x = 0; x < W; x++) {
				const int8_t *o = off->q + ((size_t)y * off->w + x) * off->c;
				for (int t = 0; t < 9; t++) {
					int16_t *d = col + x * K + (size_t)t * C;
					size_t idx;
					if (!int_pos(j->cfg, o, y, x, t, in->h, in->w, &idx)) {
						memset(d, 0, sizeof(int16_t) * C);
						continue;
					}
					const int8_t *p = in->q + idx * C;
					for (int c = 0; c < C; c++)
						d[c] = qval(p[c], in->sgn);
				}
			}
			gemm_q(L, in->sgn, W, (int)K, col, acc, u8);
			requant_row(acc, W, L, out->q + (size_t)y * W * L->cout);
		}
	}
}

CDN_VEC static void dcn_dw_rows(void *arg, int tid, int y0, int y1)
{
	struct dcn_job *j = arg;
	const struct cdn_layer *L = j->L;
	const struct cdn_ten *in = j->in, *off = j->off;
	struct cdn_ten *out = j->out;
	int C = in->c, W = out->w;
	for (int y = y0; y < y1; y++) {
		for (int x = 0; x < W; x++) {
			size_t op = ((size_t)y * W + x) * C;
			if (in->f) {
				struct taps4 tp[9];
				float_taps(j, y, x, tp);
				float *o = out->f + op;
				memcpy(o, L->bf, sizeof(float) * C);
				for (int t = 0; t < 9; t++) {
					const float *w = L->wf + (size_t)t * C;
					/* the tap's bilinear weights, folded into the kernel
					 * weight once, then one pass over the channel vector */
					for (int i = 0; i < tp[t].n; i++) {
						const float *p = in->f + tp[t].idx[i] * C;
						float b = tp[t].w[i];
						for (int c = 0; c < C; c++)
							o[c] += w[c] * (b * p[c]);
					}
				}
				if (L->relu)
					for (int c = 0; c < C; c++)
						o[c] = o[c] > 0 ? o[c] : 0;
			} else {
				int32_t *acc = j->scratch[tid];
				int16_t *a16 = (int16_t *)(void *)(acc + C);
				const int8_t *o = off->q + ((size_t)y * off->w + x) * off->c;
				memset(a16, 0, sizeof(int16_t) * C);
				for (int t = 0; t < 9; t++) {
					size_t idx;
					if (!int_pos(j->cfg, o, y, x, t, in->h, in->w, &idx))
						continue;
					const int8_t *p = in->q + idx * C;
					const int16_t *w = L->wq + (size_t)t * C;
					int16_t zq = in->sgn ? 0 : 128;
					for (int c = 0; c < C; c++)
						a16[c] = (int16_t)(a16[c] + w[c] * (int16_t)(p[c] + zq));
				}
				for (int c = 0; c < C; c++)
					acc[c] = a16[c];
				requant_vec(acc, C, L->mq, L->bq, true, out->q + op);
			}
		}
	}
}

size_t cdn_op_dcn_scratch(const struct cdn_layer *L, bool quant, const struct cdn_ten *in,
			  const struct cdn_ten *out)
{
	size_t K = (size_t)9 * in->c;
	if (L->kind == CDN_L_DCN_DW)
		return quant ? (sizeof(int32_t) + sizeof(int16_t)) * in->c : 0;
	if (!quant)
		return out->w * K * sizeof(float);
	return ((out->w * K * sizeof(int16_t) + 63) & ~(size_t)63) +
	       (((size_t)out->w * L->cout * sizeof(int32_t) + 63) & ~(size_t)63) +
	       vkq_scratch(L, K);
}

int cdn_op_dcn_ws(const struct cdn_layer *L, const struct cdn_dcn_cfg *cfg,
		  const struct cdn_ten *in, const struct cdn_ten *off, struct cdn_ten *out,
		  const struct cdn_par *par, void *ws)
{
	struct dcn_job j = {.L = L, .cfg = cfg, .in = in, .off = off, .out = out};
	int threads = clamp_threads(par->threads);
	size_t b = cdn_op_dcn_scratch(L, !in->f, in, out);
	if (b && !ws)
		return -EINVAL;
	ws_split(ws, b, threads, j.scratch);
	par_run(par, threads, out->h, L->kind == CDN_L_DCN_DW ? dcn_dw_rows : dcn_full_rows, &j);
	return 0;
}

int cdn_op_dcn(const struct cdn_layer *L, const struct cdn_dcn_cfg *cfg, const struct cdn_ten *in,
	       const struct cdn_ten *off, struct cdn_ten *out, int threads)
{
	int r;
	void *ws = ws_alloc(cdn_op_dcn_scratch(L, !in->f, in, out), threads, &r);
	const struct cdn_par par = {.threads = threads};
	if (r == 0)
		r = cdn_op_dcn_ws(L, cfg, in, off, out, &par, ws);
	free(ws);
	return r;
}

/* ---- data movement -------------------------------------------------------- */
void cdn_op_maxpool3s2(const struct cdn_ten *in, struct cdn_ten *out)
{
	int C = in->c;
	for (int y = 0; y < out->h; y++)
		for (int x = 0; x < out->w; x++) {
			size_t op = ((size_t)y * out->w + x) * C;
			for (int c = 0; c < C; c++) {
				float mf = -INFINITY;
				int mq = -128;
				for (int t = 0; t < 9; t++) {
					int iy = 2 * y + t / 3 - 1, ix = 2 * x + t % 3 - 1;
					if (iy < 0 || iy >= in->h || ix < 0 || ix >= in->w)
						continue;
					size_t ip = ((size_t)iy * in->w + ix) * C + c;
					if (in->f) {
						if (in->f[ip] > mf)
							mf = in->f[ip];
					} else if (in->q[ip] > mq) {
						mq = in->q[ip];
					}
				}
				if (in->f)
					out->f[op + c] = mf;
				else
					out->q[op + c] = (int8_t)mq;
			}
		}
}

void cdn_op_upsample2(const struct cdn_ten *in, struct cdn_ten *out)
{
	size_t es = in->f ? sizeof(float) : 1;
	size_t row = (size_t)in->c * es;
	const char *src = in->f ? (const char *)in->f : (const char *)in->q;
	char *dst = out->f ? (char *)out->f : (char *)out->q;
	for (int y = 0; y < out->h; y++)
		for (int x = 0; x < out->w; x++)
			memcpy(dst + ((size_t)y * out->w + x) * row,
			       src + ((size_t)(y / 2) * in->w + x / 2) * row, row);
}

void cdn_op_split(const struct cdn_ten *in, struct cdn_ten *a, struct cdn_ten *b)
{
	size_t es = in->f ? sizeof(float) : 1;
	size_t half = (size_t)(in->c / 2) * es;
	const char *src = in->f ? (const char *)in->f : (const char *)in->q;
	char *da = a->f ? (char *)a->f : (char *)a->q;
	char *db = b->f ? (char *)b->f : (char *)b->q;
	for (size_t p = 0; p < (size_t)in->h * in->w; p++) {
		memcpy(da + p * half, src + p * 2 * half, half);
		memcpy(db + p * half, src + p * 2 * half + half, half);
	}
}

void cdn_op_concat_shuffle(const struct cdn_ten *a, const struct cdn_ten *b, struct cdn_ten *out)
{
	int C = a->c;
	for (size_t p = 0; p < (size_t)a->h * a->w; p++) {
		if (a->f) {
			const float *x = a->f + p * C, *y = b->f + p * C;
			float *o = out->f + p * 2 * C;
			for (int c = 0; c < C; c++) {
				o[2 * c] = x[c];
				o[2 * c + 1] = y[c];
			}
		} else {
			const int8_t *x = a->q + p * C, *y = b->q + p * C;
			int8_t *o = out->q + p * 2 * C;
			for (int c = 0; c < C; c++) {
				o[2 * c] = x[c];
				o[2 * c + 1] = y[c];
			}
		}
	}
}

/* ---- CenterNet decoding --------------------------------------------------- */
struct cand {
	float v;
	uint32_t idx; /* class-major: c·H·W + y·W + x */
};

static int cmp_cand(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->v != y->v)
		return x->v > y->v ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx ? 1 : 0;
}

int cdn_decode(const float *hm, const float *wh, const float *reg, int H, int W, int C,
	       int in_w, int in_h, int max_det, float thresh, struct eng_detections *out)
{
	size_t n = 0, cap = 1024;
	struct cand *cd = malloc(cap * sizeof(*cd));
	out->n = 0;
	if (!cd)
		return -ENOMEM;
	for (int c = 0; c < C; c++)
		for (int y = 0; y < H; y++)
			for (int x = 0; x < W; x++) {
				float v = hm[((size_t)y * W + x) * C + c];
				bool peak = true;
				for (int t = 0; t < 9 && peak; t++) {
					int yy = y + t / 3 - 1, xx = x + t % 3 - 1;
					if (yy < 0 || yy >= H || xx < 0 || xx >= W)
						continue;
					if (hm[((size_t)yy * W + xx) * C + c] > v)
						peak = false;
				}
				if (!peak)
					continue;
				if (n == cap) {
					struct cand *nc = realloc(cd, 2 * cap * sizeof(*cd));
					if (!nc) {
						free(cd);
						return -ENOMEM;
					}
					cd = nc;
					cap *= 2;
				}
				cd[n++] = (struct cand){v, (uint32_t)(((size_t)c * H + y) * W + x)};
			}
	qsort(cd, n, sizeof(*cd), cmp_cand);
	if (max_det > ENG_MAX_DETECTIONS)
		max_det = ENG_MAX_DETECTIONS;
	for (size_t i = 0; i < n && i < (size_t)max_det; i++) {
		int c = (int)(cd[i].idx / ((uint32_t)H * W));
		int rem = (int)(cd[i].idx % ((uint32_t)H * W));
		int y = rem / W, x = rem % W;
		float score = cdn_sigmoid(cd[i].v);
		if (score < thresh)
			continue;
		size_t p = ((size_t)y * W + x) * 2;
		float cx = (float)x + reg[p], cy = (float)y + reg[p + 1];
		float w = wh[p], h = wh[p + 1];
		struct eng_detection *d = &out->d[out->n++];
		d->class_id = c;
		d->score = score;
		d->box[1] = (cx - w * 0.5f) * 4.0f / (float)in_w;
		d->box[3] = (cx + w * 0.5f) * 4.0f / (float)in_w;
		d->box[0] = (cy - h * 0.5f) * 4.0f / (float)in_h;
		d->box[2] = (cy + h * 0.5f) * 4.0f / (float)in_h;
	}
	free(cd);
	return 0;
}
