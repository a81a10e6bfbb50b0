/*
 * xrt_dev.h — internal to engine/xrt/: every call the host backend makes to
 * an FPGA device, as one small table of function pointers.
 *
 * Three tables implement it:
 *  - xrt_dev_real (xrt_real.c, built with XRT): Xilinx XRT's C API
 *    (xrtDeviceOpen, xrtDeviceLoadXclbinFile, xrtPLKernelOpen, xrtBOAlloc,
 *    xrtRunOpen/SetArg/Start/WaitFor/State ...), guarded so that a missing
 *    runtime environment or card never aborts the daemon;
 *  - xrt_dev_sim (xrt_sim.c, always built): the "xrt-sim" software device,
 *    host-memory buffers and a run that calls the kernel's bit-exact
 *    C-simulation (accel_csim_run), so "xrt-sim" exercises the exact host
 *    code path the card takes;
 *  - tests wrap either one in a recording layer (tests/unit/test_xrt.c).
 *
 * Handles are opaque pointers owned by the table that returned them.  Return
 * values are 0 or -errno unless stated.  A device and everything opened on
 * it are used by one thread at a time (the context's owner).
 */
#ifndef DETD_ENGINE_XRT_DEV_H
#define DETD_ENGINE_XRT_DEV_H

#include <stddef.h>
#include <stdint.h>

#include "detd-build.h"

enum xrt_sync_dir {
	XRT_SYNC_TO_DEVICE = 0,
	XRT_SYNC_FROM_DEVICE = 1,
};

enum xrt_run_state {
	XRT_RUN_COMPLETED = 0,
	XRT_RUN_TIMEOUT,   /* not done within the timeout (the run is aborted/abandoned) */
	XRT_RUN_ERROR,     /* the runtime reports an error state */
	XRT_RUN_REFUSED,   /* done, but the kernel returned a non-zero status */
};

struct xrt_dev_ops {
	const char *name; /* "xrt", "xrt-sim", or a wrapper's name */
	void *user;       /* wrappers keep their state here; passed to every call */

	/* Open device index; err gets a one-line reason on failure. */
	int (*dev_open)(void *user, int index, void **dev, char *err, size_t errlen);
	void (*dev_close)(void *user, void *dev); /* NULL-safe */
	/* Device name as the runtime reports it (e.g. the platform/VBNV). */
	void (*dev_name)(void *user, void *dev, char *buf, size_t len);
	/* Load an xclbin file (NULL for xrt-sim: its built-in kernel) and
	 * return its UUID. */
	int (*load_xclbin)(void *user, void *dev, const char *path, uint8_t uuid[16], char *err,
			   size_t errlen);
	int (*kernel_open)(void *user, void *dev, const uint8_t uuid[16], const char *name,
			   void **kernel, char *err, size_t errlen);
	void (*kernel_close)(void *user, void *kernel); /* NULL-safe */
	/* Memory bank group of a buffer argument; -EINVAL for a scalar argument. */
	int (*arg_group)(void *user, void *kernel, int argno);

	int (*bo_alloc)(void *user, void *dev, size_t bytes, int group, void **bo);
	void (*bo_free)(void *user, void *bo); /* NULL-safe */
	int (*bo_write)(void *user, void *bo, const void *src, size_t bytes, size_t offset);
	int (*bo_read)(void *user, void *bo, void *dst, size_t bytes, size_t offset);
	int (*bo_sync)(void *user, void *bo, enum xrt_sync_dir dir, size_t bytes, size_t offset);

	/* One kernel execution: open, set every argument, start, wait. */
	int (*run_open)(void *user, void *kernel, void **run);
	int (*run_set_bo)(void *user, void *run, int argno, void *bo);
	int (*run_set_u32)(void *user, void *run, int argno, uint32_t v);
	int (*run_start)(void *user, void *run);
	/* Wait at most timeout_ms; *status: the kernel's return value where the
	 * device can report it (0 otherwise). */
	enum xrt_run_state (*run_wait)(void *user, void *run, unsigned timeout_ms,
				       uint32_t *status);
	void (*run_close)(void *user, void *run); /* NULL-safe */
};

/* The software device (always built). */
extern const struct xrt_dev_ops xrt_dev_sim;
/* UUID the software device reports for its built-in "xclbin". */
void xrt_sim_uuid(uint8_t uuid[16]);

#if DETD_HAVE_XRT
/* Xilinx XRT (libxrt_coreutil). */
extern const struct xrt_dev_ops xrt_dev_real;
#endif

/* "01234567-89ab-cdef-0123-456789abcdef" into out (>= 37 bytes). */
void xrt_uuid_str(const uint8_t uuid[16], char *out, size_t len);

#endif
