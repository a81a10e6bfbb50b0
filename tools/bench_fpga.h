/* bench_fpga.h — detd-bench fpga-model (bench_fpga.c): a performance MODEL of the FPGA kernel. */
#ifndef DETD_BENCH_FPGA_H
#define DETD_BENCH_FPGA_H
int bench_fpga_main(int argc, char **argv);
#endif
