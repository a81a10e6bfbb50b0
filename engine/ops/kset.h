/*
 * kset.h — CPU kernel sets of the engine and how one is chosen.  Internal to
 * engine/.
 *
 * A kernel set is a family of kernel variants built for one instruction set
 * (engine/ops/x86/ holds the sources compiled with the matching -m flags).
 * The set is chosen once per model load: the best one the CPU and the OS
 * support (CPUID and XGETBV, through __builtin_cpu_supports), or the one named
 * by the environment variable DETD_KERNELS (ref | avx2 | avxvnni | avx512vnni),
 * which is an error if this machine cannot run it.  Every set gives the same
 * bytes as the reference kernels.  Pure functions; any thread.
 */
#ifndef DETD_ENGINE_OPS_KSET_H
#define DETD_ENGINE_OPS_KSET_H

#include <stdbool.h>
#include <stddef.h>

enum eng_kset {
	ENG_KS_REF = 0,     /* plain reference loops */
	ENG_KS_AVX2,        /* AVX2 + FMA: the VNNI kernels with vpdpbusd emulated by vpmaddwd */
	ENG_KS_AVXVNNI,     /* 256-bit u8×s8 vpdpbusd (AVX-VNNI) */
	ENG_KS_AVX512VNNI,  /* 512-bit u8×s8 vpdpbusd (AVX-512 VNNI + BW + VL) */
	ENG_KS__COUNT
};

const char *eng_kset_name(enum eng_kset ks);
/* -EINVAL for an unknown name. */
int eng_kset_from_name(const char *name, enum eng_kset *out);
/* Whether this CPU and OS can run the set (the reference set always can). */
bool eng_kset_usable(enum eng_kset ks);
/* Whether set ks runs here with AVX-512 VBMI too: its 8-bit table lookups may
 * then use vpermi2b (ops_lut8). */
bool eng_kset_has_vbmi(enum eng_kset ks);
/* The fastest usable set. */
enum eng_kset eng_kset_best(void);
/*
 * The set to use: DETD_KERNELS when set, else eng_kset_best().  -EINVAL (unknown
 * name) or -ENOTSUP (this CPU lacks the instructions) with a message in err.
 */
int eng_kset_select(enum eng_kset *out, char *err, size_t errlen);

#endif
