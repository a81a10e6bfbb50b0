/* bench_e2e.h — `detd-bench e2e` (bench_e2e.c), dispatched from detd-bench's main. */
#ifndef DETD_BENCH_E2E_H
#define DETD_BENCH_E2E_H
int bench_e2e_main(int argc, char **argv);
#endif
