/* bench_codenet.h — detd-bench codenet-ops (bench_codenet.c). */
#ifndef DETD_BENCH_CODENET_H
#define DETD_BENCH_CODENET_H
int bench_codenet_main(int argc, char **argv);
#endif
