/*
 * xrt_sim.c — the "xrt-sim" software device behind struct xrt_dev_ops.
 *
 * Each buffer has a host side (what bo_write/bo_read touch) and a device
 * side (what the kernel reads and writes), copied only by bo_sync, exactly
 * as on the card: a host path that forgets a sync or syncs the wrong way
 * computes garbage here too.  The kernel is the detd_accel HLS source
 * compiled with the host compiler (accel_csim_run); its memory-bank layout
 * is the one accel_desc.h documents.  No state outside the handles; one
 * thread per device.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accel_desc.h"
#include "xrt_dev.h"

struct sim_dev {
	int index;
	bool loaded;
};

struct sim_bo {
	size_t bytes;
	int group;
	uint8_t *host, *dev;
};

struct sim_kernel {
	struct sim_dev *d;
};

struct sim_run {
	struct sim_kernel *k;
	struct sim_bo *bo[ACCEL_NARGS];
	uint32_t n_desc;
	bool n_desc_set, started;
	uint32_t status;
	int rc;
};

void xrt_sim_uuid(uint8_t uuid[16])
{
	/* Fixed: "detd_accel" C-sim, descriptor version in the last byte. */
	static const uint8_t u[16] = {0xde, 0x7d, 0xac, 0xce, 0x15, 0x13, 0x40, 0x00,
				      0x80, 0x00, 0x43, 0x53, 0x49, 0x4d, 0x00, ACCEL_DESC_VERSION};
	memcpy(uuid, u, 16);
}

static int sim_dev_open(void *user, int index, void **dev, char *err, size_t errlen)
{
	(void)user;
	struct sim_dev *d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "xrt-sim: out of memory");
		return -ENOMEM;
	}
	d->index = index;
	*dev = d;
	return 0;
}

static void sim_dev_close(void *user, void *dev)
{
	(void)user;
	free(dev);
}

static void sim_dev_name(void *user, void *dev, char *buf, size_t len)
{
	(void)user;
	snprintf(buf, len, "xrt-sim:%d (detd_accel C-simulation)", ((struct sim_dev *)dev)->index);
}

static int sim_load_xclbin(void *user, void *dev, const char *path, uint8_t uuid[16], char *err,
			   size_t errlen)
{
	(void)user;
	(void)path; /* the simulated device has its kernel built in */
	(void)err;
	(void)errlen;
	((struct sim_dev *)dev)->loaded = true;
	xrt_sim_uuid(uuid);
	return 0;
}

static int sim_kernel_open(void *user, void *dev, const uint8_t uuid[16], const char *name,
			   void **kernel, char *err, size_t errlen)
{
	(void)user;
	struct sim_dev *d = dev;
	uint8_t mine[16];
	xrt_sim_uuid(mine);
	if (!d->loaded || memcmp(uuid, mine, 16) != 0) {
		snprintf(err, errlen, "xrt-sim: no xclbin with that UUID loaded");
		return -ENOENT;
	}
	if (strcmp(name, ACCEL_KERNEL_NAME) != 0) {
		snprintf(err, errlen, "xrt-sim: no kernel '%s' (it has '%s')", name,
			 ACCEL_KERNEL_NAME);
		return -ENOENT;
	}
	struct sim_kernel *k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->d = d;
	*kernel = k;
	return 0;
}

static void sim_kernel_close(void *user, void *kernel)
{
	(void)user;
	free(kernel);
}

/* One group per AXI bundle of accel_desc.h: gmem0 desc + params, gmem1 in,
 * gmem2 out, gmem3 aux.  (On a card the group ids come from the xclbin's
 * connectivity, e.g. every port on the one DDR bank of a Zynq.) */
static int sim_arg_group(void *user, void *kernel, int argno)
{
	(void)user;
	(void)kernel;
	static const int group[ACCEL_NARGS] = {0, -EINVAL, 0, 1, 3, 2};
	return argno >= 0 && argno < ACCEL_NARGS ? group[argno] : -EINVAL;
}

static int sim_bo_alloc(void *user, void *dev, size_t bytes, int group, void **bo)
{
	(void)user;
	(void)dev;
	if (!bytes || group < 0)
		return -EINVAL;
	struct sim_bo *b = calloc(1, sizeof(*b));
	size_t n = (bytes + 63) & ~(size_t)63;
	if (!b)
		return -ENOMEM;
	b->bytes = bytes;
	b->group = group;
	b->host = aligned_alloc(64, n);
	b->dev = aligned_alloc(64, n);
	if (!b->host || !b->dev) {
		free(b->host);
		free(b->dev);
		free(b);
		return -ENOMEM;
	}
	/* device memory starts as garbage, like DDR after power-up */
	memset(b->host, 0, n);
	memset(b->dev, 0xcd, n);
	*bo = b;
	return 0;
}

static void sim_bo_free(void *user, void *bo)
{
	(void)user;
	struct sim_bo *b = bo;
	if (!b)
		return;
	free(b->host);
	free(b->dev);
	free(b);
}

static bool in_bounds(const struct sim_bo *b, size_t bytes, size_t off)
{
	return off <= b->bytes && bytes <= b->bytes - off;
}

static int sim_bo_write(void *user, void *bo, const void *src, size_t bytes, size_t off)
{
	(void)user;
	struct sim_bo *b = bo;
	if (!in_bounds(b, bytes, off))
		return -EINVAL;
	memcpy(b->host + off, src, bytes);
	return 0;
}

static int sim_bo_read(void *user, void *bo, void *dst, size_t bytes, size_t off)
{
	(void)user;
	struct sim_bo *b = bo;
	if (!in_bounds(b, bytes, off))
		return -EINVAL;
	memcpy(dst, b->host + off, bytes);
	return 0;
}

static int sim_bo_sync(void *user, void *bo, enum xrt_sync_dir dir, size_t bytes, size_t off)
{
	(void)user;
	struct sim_bo *b = bo;
	if (!in_bounds(b, bytes, off))
		return -EINVAL;
	if (dir == XRT_SYNC_TO_DEVICE)
		memcpy(b->dev + off, b->host + off, bytes);
	else
		memcpy(b->host + off, b->dev + off, bytes);
	return 0;
}

static int sim_run_open(void *user, void *kernel, void **run)
{
	(void)user;
	struct sim_run *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->k = kernel;
	*run = r;
	return 0;
}

static int sim_run_set_bo(void *user, void *run, int argno, void *bo)
{
	(void)user;
	struct sim_run *r = run;
	if (sim_arg_group(NULL, r->k, argno) < 0)
		return -EINVAL; /* a buffer for a scalar argument */
	r->bo[argno] = bo;
	return 0;
}

static int sim_run_set_u32(void *user, void *run, int argno, uint32_t v)
{
	(void)user;
	struct sim_run *r = run;
	if (argno != 1)
		return -EINVAL; /* n_desc is the only scalar */
	r->n_desc = v;
	r->n_desc_set = true;
	return 0;
}

static int sim_run_start(void *user, void *run)
{
	(void)user;
	struct sim_run *r = run;
	for (int i = 0; i < ACCEL_NARGS; i++)
		if (i != 1 && !r->bo[i])
			return -EINVAL; /* XRT refuses to start with an argument unset */
	if (!r->n_desc_set || (size_t)r->n_desc * sizeof(struct accel_desc) > r->bo[0]->bytes)
		return -EINVAL;
	r->started = true;
	/* The C-sim is synchronous: the run is done when start returns. */
	r->status = accel_csim_run((const struct accel_desc *)r->bo[0]->dev, r->n_desc,
				   r->bo[2]->dev, r->bo[3]->dev, r->bo[4]->dev, r->bo[5]->dev);
	return 0;
}

static enum xrt_run_state sim_run_wait(void *user, void *run, unsigned timeout_ms,
				       uint32_t *status)
{
	(void)user;
	(void)timeout_ms;
	struct sim_run *r = run;
	*status = r->status;
	if (!r->started)
		return XRT_RUN_ERROR;
	return r->status ? XRT_RUN_REFUSED : XRT_RUN_COMPLETED;
}

static void sim_run_close(void *user, void *run)
{
	(void)user;
	free(run);
}

const struct xrt_dev_ops xrt_dev_sim = {
	.name = "xrt-sim",
	.dev_open = sim_dev_open,
	.dev_close = sim_dev_close,
	.dev_name = sim_dev_name,
	.load_xclbin = sim_load_xclbin,
	.kernel_open = sim_kernel_open,
	.kernel_close = sim_kernel_close,
	.arg_group = sim_arg_group,
	.bo_alloc = sim_bo_alloc,
	.bo_free = sim_bo_free,
	.bo_write = sim_bo_write,
	.bo_read = sim_bo_read,
	.bo_sync = sim_bo_sync,
	.run_open = sim_run_open,
	.run_set_bo = sim_run_set_bo,
	.run_set_u32 = sim_run_set_u32,
	.run_start = sim_run_start,
	.run_wait = sim_run_wait,
	.run_close = sim_run_close,
};
