/* bench_engine.h — `detd-bench engine` (bench_engine.c), dispatched from detd-bench's main. */
#ifndef DETD_BENCH_ENGINE_H
#define DETD_BENCH_ENGINE_H
int bench_engine_main(int argc, char **argv);
#endif
