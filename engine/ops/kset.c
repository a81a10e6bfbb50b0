/*
 * kset.c — kernel set names, CPU feature checks and the DETD_KERNELS override
 * (kset.h).  Any thread.
 */
#include "kset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* AVX-VNNI (VEX-encoded vpdpbusd) is CPUID.(EAX=7,ECX=1):EAX[4].  Read it
 * directly: clang 14's __builtin_cpu_supports does not know the name.  The
 * OS's YMM state is covered by the avx2 check that always accompanies it. */
static bool cpu_has_avxvnni(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid_count(7, 1, &a, &b, &c, &d))
		return false;
	return (a >> 4) & 1;
}
#endif

static const char *const names[ENG_KS__COUNT] = {
	[ENG_KS_REF] = "ref",
	[ENG_KS_AVX2] = "avx2",
	[ENG_KS_AVXVNNI] = "avxvnni",
	[ENG_KS_AVX512VNNI] = "avx512vnni",
};

const char *eng_kset_name(enum eng_kset ks)
{
	return (int)ks >= 0 && ks < ENG_KS__COUNT ? names[ks] : "unknown";
}

int eng_kset_from_name(const char *name, enum eng_kset *out)
{
	for (int i = 0; name && i < ENG_KS__COUNT; i++)
		if (strcmp(name, names[i]) == 0) {
			*out = (enum eng_kset)i;
			return 0;
		}
	return -EINVAL;
}

bool eng_kset_usable(enum eng_kset ks)
{
#if defined(__x86_64__) || defined(__i386__)
	/* libgcc's checks include the OS's XCR0 state (XGETBV), so a feature the
	 * kernel does not save on context switch reads as absent. */
	__builtin_cpu_init();
	switch (ks) {
	case ENG_KS_REF:
		return true;
	case ENG_KS_AVX2: /* every AVX2 CPU has FMA too; the float requantization needs it */
		return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	case ENG_KS_AVXVNNI:
		return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
		       cpu_has_avxvnni();
	case ENG_KS_AVX512VNNI:
		return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
		       __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
		       __builtin_cpu_supports("avx512vnni");
	default:
		return false;
	}
#else
	return ks == ENG_KS_REF;
#endif
}

bool eng_kset_has_vbmi(enum eng_kset ks)
{
#if defined(__x86_64__) || defined(__i386__)
	return ks == ENG_KS_AVX512VNNI && eng_kset_usable(ks) && __builtin_cpu_supports("avx512vbmi");
#else
	(void)ks;
	return false;
#endif
}

enum eng_kset eng_kset_best(void)
{
	for (int i = ENG_KS__COUNT - 1; i > ENG_KS_REF; i--)
		if (eng_kset_usable((enum eng_kset)i))
			return (enum eng_kset)i;
	return ENG_KS_REF;
}

int eng_kset_select(enum eng_kset *out, char *err, size_t errlen)
{
	const char *env = getenv("DETD_KERNELS");
	if (!env || !*env) {
		*out = eng_kset_best();
		return 0;
	}
	enum eng_kset ks;
	if (eng_kset_from_name(env, &ks)) {
		if (err && errlen)
			snprintf(err, errlen,
				 "DETD_KERNELS=%s: unknown kernel set (ref, avx2, avxvnni, avx512vnni)",
				 env);
		return -EINVAL;
	}
	if (!eng_kset_usable(ks)) {
		if (err && errlen)
			snprintf(err, errlen,
				 "DETD_KERNELS=%s: this CPU (or OS) lacks the instructions of that "
				 "kernel set; best available: %s",
				 env, names[eng_kset_best()]);
		return -ENOTSUP;
	}
	*out = ks;
	return 0;
}
