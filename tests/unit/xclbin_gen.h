/*
 * xclbin_gen.h — writes a minimal xclbin describing the detd_accel kernel
 * (tests only, built with XRT): no bitstream, just the sections XRT reads to
 * load it and open the kernel — MEM_TOPOLOGY (four banks), IP_LAYOUT (one
 * compute unit detd_accel:detd_accel_1), CONNECTIVITY (argument → bank, as
 * accel_desc.h's bundles) and EMBEDDED_METADATA (the kernel's arguments).
 * Debian's libxrt_noop device accepts it, so the whole host path runs
 * without a card.
 */
#ifndef DETD_TEST_XCLBIN_GEN_H
#define DETD_TEST_XCLBIN_GEN_H

#include <stdint.h>

/* 0 or -errno.  uuid: the UUID to put in the header. */
int xclbin_gen_write(const char *path, const uint8_t uuid[16]);

#endif
