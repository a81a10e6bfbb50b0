/*
 * peak.c — the core's int8 multiply-accumulate rate, for the "% of peak"
 * columns of bench/README.md: independent chains of one instruction in a
 * loop, as many chains as the registers allow (no spills: checked with
 * objdump), one thread.  Not part of the build:
 *
 *   gcc -O2 -mavx2 -mavxvnni -mavx512f -mavx512bw -mavx512vnni bench/peak.c -o /tmp/peak && /tmp/peak
 *
 * Prints instructions/s and GOP/s (2 ops per multiply-accumulate) for
 * vpdpbusd zmm (64 MACs), {vex} vpdpbusd ymm (32) and vpmaddwd ymm + vpaddd
 * (16).  A part whose instructions the CPU lacks is skipped with a line
 * that says so.
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define C12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define C10(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9)
#define C7(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6)

int main(void)
{
	const long iters = 100000000;
	int sink = 0;
	double t0, t;
	if (!__builtin_cpu_supports("avx512vnni"))
		printf("vpdpbusd zmm:       skipped (no AVX-512 VNNI)\n");
	else {
		__m512i u = _mm512_set1_epi32(0x01020304), w = _mm512_set1_epi32(0x01010101);
#define D(i) __m512i a##i = _mm512_set1_epi32(i);
		C12(D)
		t0 = now();
		for (long n = 0; n < iters; n++) {
#define S(i) a##i = _mm512_dpbusd_epi32(a##i, u, w);
			C12(S)
			__asm__ volatile("" : "+v"(u));
		}
		t = now() - t0;
#define R(i) sink += _mm512_reduce_add_epi32(a##i);
		C12(R)
		printf("vpdpbusd zmm:       %.2f G/s = %6.1f GOP/s\n", iters * 12 / t / 1e9,
		       iters * 12 / t * 128 / 1e9);
		fflush(stdout);
	}
	if (!__builtin_cpu_supports("avxvnni"))
		printf("vpdpbusd ymm:       skipped (no AVX-VNNI)\n");
	else {
		__m256i u = _mm256_set1_epi32(0x01020304), w = _mm256_set1_epi32(0x01010101);
#define D2(i) __m256i b##i = _mm256_set1_epi32(i);
		C10(D2)
		t0 = now();
		for (long n = 0; n < iters; n++) {
#define S2(i) b##i = _mm256_dpbusd_avx_epi32(b##i, u, w);
			C10(S2)
			__asm__ volatile("" : "+v"(u));
		}
		t = now() - t0;
#define R2(i) sink += _mm256_extract_epi32(b##i, 0);
		C10(R2)
		printf("vpdpbusd ymm:       %.2f G/s = %6.1f GOP/s\n", iters * 10 / t / 1e9,
		       iters * 10 / t * 64 / 1e9);
		fflush(stdout);
	}
	{
		__m256i x = _mm256_set1_epi32(0x00020003);
#define D3(i) __m256i c##i = _mm256_set1_epi32(i), w##i = _mm256_set1_epi32(i + 1);
		C7(D3)
		t0 = now();
		for (long n = 0; n < iters; n++) {
#define S3(i) c##i = _mm256_add_epi32(c##i, _mm256_madd_epi16(x, w##i));
			C7(S3)
			__asm__ volatile("" : "+v"(x));
		}
		t = now() - t0;
#define R3(i) sink += _mm256_extract_epi32(c##i, 0);
		C7(R3)
		printf("vpmaddwd+vpaddd ymm: %.2f G/s = %6.1f GOP/s\n", iters * 7 / t / 1e9,
		       iters * 7 / t * 32 / 1e9);
	}
	return sink == 42;
}
