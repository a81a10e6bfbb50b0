/*
 * test_xrt.c — the FPGA host path (engine/xrt/xrt_backend.c) seen through a
 * recording layer of struct xrt_dev_ops wrapped around the "xrt-sim"
 * device: every call the backend makes is checked against the contract of
 * engine/hls/accel_desc.h and of XRT's buffer model —
 *  - argument order and types per run (0 desc, 1 n_desc, 2 params, 3 in,
 *    4 aux, 5 out), each buffer in the memory group of its argument;
 *  - buffer sizes: desc buffers hold n_desc descriptors, in/out buffers the
 *    packed tensors the descriptors address;
 *  - sync directions: whatever the host wrote is synced to the device before
 *    the run starts, outputs synced from the device after it ends, before
 *    they are read;
 *  - descriptors and tiling: magic/version, tile limits, and the tiles of a
 *    run cover the output exactly once;
 *  - weights and descriptors stay resident: written once at open, never
 *    per frame;
 *  - the detections equal the cpu engine's on the same frames;
 *  - failures (timeout, refused descriptor, wrong argument layout, wrong
 *    kernel) come back as errors with a reason, counted in the info.
 * With XRT built, the same recorder wraps the real XRT calls against
 * Debian's libxrt_noop device (device and buffers work, the kernel does
 * nothing) and a generated xclbin: the whole "xrt" host path without a card.
 */
#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accel_desc.h"
#include "backend.h"
#include "detd-build.h"
#include "engine.h"
#include "log.h"
#include "testutil.h"
#include "xrt_dev.h"
#if DETD_HAVE_XRT
#include <dlfcn.h>
#include <glob.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "xclbin_gen.h"
#endif

#define MAX_BOS 1024

struct rbo {
	void *inner;
	size_t bytes;
	int group;
	bool dirty;        /* written since the last sync to the device */
	bool fresh_out;    /* synced from the device since the last run wrote it */
	bool kernel_wrote; /* a run used it as out and nobody synced it back yet */
	int writes;
	uint8_t *shadow;   /* what the host wrote (descriptors are checked from it) */
};

struct rrun {
	void *inner;
	struct rbo *arg[ACCEL_NARGS];
	uint32_t n_desc;
	int next_arg; /* arguments must be set in order */
};

struct rec {
	const struct xrt_dev_ops *inner;
	void *kernel_inner;
	struct rbo bos[MAX_BOS];
	int n_bos;
	int runs, multi_desc_runs, max_desc;
	int deform_runs; /* runs of deformable blocks (offsets in aux) */
	int fail_run_at;          /* 1-based run that times out (0: none) */
	bool refuse_run;          /* runs report a refused descriptor */
	bool arg1_is_buffer;      /* lie about the kernel's argument layout */
	int violations;
	char first[256];
};

static struct rec R;

__attribute__((format(printf, 1, 2))) static void violation(const char *fmt, ...)
{
	if (!R.violations++) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(R.first, sizeof(R.first), fmt, ap);
		va_end(ap);
	}
}

static int r_dev_open(void *u, int index, void **dev, char *err, size_t errlen)
{
	(void)u;
	return R.inner->dev_open(R.inner->user, index, dev, err, errlen);
}
static void r_dev_close(void *u, void *dev)
{
	(void)u;
	R.inner->dev_close(R.inner->user, dev);
}
static void r_dev_name(void *u, void *dev, char *buf, size_t len)
{
	(void)u;
	R.inner->dev_name(R.inner->user, dev, buf, len);
}
static int r_load_xclbin(void *u, void *dev, const char *path, uint8_t uuid[16], char *err,
			 size_t errlen)
{
	(void)u;
	return R.inner->load_xclbin(R.inner->user, dev, path, uuid, err, errlen);
}
static int r_kernel_open(void *u, void *dev, const uint8_t uuid[16], const char *name,
			 void **kernel, char *err, size_t errlen)
{
	(void)u;
	int r = R.inner->kernel_open(R.inner->user, dev, uuid, name, kernel, err, errlen);
	if (!r)
		R.kernel_inner = *kernel;
	return r;
}
static void r_kernel_close(void *u, void *k)
{
	(void)u;
	R.inner->kernel_close(R.inner->user, k);
}
static int r_arg_group(void *u, void *k, int argno)
{
	(void)u;
	if (argno == 1 && R.arg1_is_buffer)
		return 0;
	return R.inner->arg_group(R.inner->user, k, argno);
}
static int r_bo_alloc(void *u, void *dev, size_t bytes, int group, void **bo)
{
	(void)u;
	if (R.n_bos >= MAX_BOS)
		return -ENOMEM;
	struct rbo *b = &R.bos[R.n_bos];
	int r = R.inner->bo_alloc(R.inner->user, dev, bytes, group, &b->inner);
	if (r)
		return r;
	R.n_bos++;
	b->bytes = bytes;
	b->group = group;
	b->shadow = calloc(1, bytes);
	*bo = b;
	return 0;
}
static void r_bo_free(void *u, void *bo)
{
	(void)u;
	struct rbo *b = bo;
	if (!b)
		return;
	R.inner->bo_free(R.inner->user, b->inner);
	free(b->shadow);
	b->shadow = NULL;
	b->inner = NULL;
}
static int r_bo_write(void *u, void *bo, const void *src, size_t bytes, size_t off)
{
	(void)u;
	struct rbo *b = bo;
	if (off + bytes > b->bytes)
		violation("bo_write of %zu bytes at %zu into a %zu-byte buffer", bytes, off,
			  b->bytes);
	else
		memcpy(b->shadow + off, src, bytes);
	b->dirty = true;
	b->writes++;
	return R.inner->bo_write(R.inner->user, b->inner, src, bytes, off);
}
static int r_bo_read(void *u, void *bo, void *dst, size_t bytes, size_t off)
{
	(void)u;
	struct rbo *b = bo;
	if (!b->fresh_out)
		violation("bo_read of a buffer not synced from the device since the kernel wrote it");
	return R.inner->bo_read(R.inner->user, b->inner, dst, bytes, off);
}
static int r_bo_sync(void *u, void *bo, enum xrt_sync_dir dir, size_t bytes, size_t off)
{
	(void)u;
	struct rbo *b = bo;
	if (off + bytes > b->bytes)
		violation("bo_sync beyond the buffer");
	if (dir == XRT_SYNC_TO_DEVICE) {
		if (b->kernel_wrote)
			violation("sync to device of an output the kernel wrote (wrong direction)");
		b->dirty = false;
	} else {
		if (!b->kernel_wrote)
			violation("sync from device of a buffer no run wrote (wrong direction)");
		b->fresh_out = true;
		b->kernel_wrote = false;
	}
	return R.inner->bo_sync(R.inner->user, b->inner, dir, bytes, off);
}
static int r_run_open(void *u, void *k, void **run)
{
	(void)u;
	struct rrun *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	int rc = R.inner->run_open(R.inner->user, k, &r->inner);
	if (rc) {
		free(r);
		return rc;
	}
	*run = r;
	return 0;
}
static int r_run_set_bo(void *u, void *run, int argno, void *bo)
{
	(void)u;
	struct rrun *r = run;
	struct rbo *b = bo;
	if (argno != r->next_arg++)
		violation("argument %d set out of order", argno);
	if (argno == 1)
		violation("a buffer passed for the scalar n_desc");
	else if (argno >= 0 && argno < ACCEL_NARGS) {
		r->arg[argno] = b;
		int g = R.inner->arg_group(R.inner->user, R.kernel_inner, argno);
		if (b->group != g)
			violation("argument %d: buffer in group %d, the kernel wants %d", argno,
				  b->group, g);
	}
	return R.inner->run_set_bo(R.inner->user, r->inner, argno, b->inner);
}
static int r_run_set_u32(void *u, void *run, int argno, uint32_t v)
{
	(void)u;
	struct rrun *r = run;
	if (argno != r->next_arg++ || argno != 1)
		violation("scalar set as argument %d", argno);
	r->n_desc = v;
	return R.inner->run_set_u32(R.inner->user, r->inner, argno, v);
}

/* The descriptors of one run, from what the host wrote into the desc buffer. */
static void check_descs(const struct rrun *r)
{
	const struct rbo *db = r->arg[0];
	if ((size_t)r->n_desc * sizeof(struct accel_desc) > db->bytes) {
		violation("n_desc %u does not fit a %zu-byte descriptor buffer", r->n_desc,
			  db->bytes);
		return;
	}
	const struct accel_desc *d = (const struct accel_desc *)db->shadow;
	const struct accel_desc *d0 = &d[0];
	size_t in_need = (size_t)d0->in_h * d0->in_w * d0->in_cw * ACCEL_WORD_BYTES;
	size_t out_need = (size_t)d0->out_h * d0->out_w * d0->out_cw * ACCEL_WORD_BYTES;
	if (in_need > r->arg[3]->bytes || out_need > r->arg[5]->bytes)
		violation("in/out buffers (%zu/%zu bytes) smaller than the tensors (%zu/%zu)",
			  r->arg[3]->bytes, r->arg[5]->bytes, in_need, out_need);
	if (d0->deform != ACCEL_DEF_NONE) {
		size_t aux_need = (size_t)d0->in_h * d0->in_w * d0->aux_cw * ACCEL_WORD_BYTES;
		if (!r->arg[4] || aux_need > r->arg[4]->bytes || r->arg[4]->writes == 0)
			violation("deformable run: aux buffer missing, unwritten or smaller than "
				  "the %zu-byte offsets", aux_need);
		R.deform_runs++;
	}
	size_t cmax = (size_t)d0->out_cw * ACCEL_VEC;
	size_t cells = (size_t)d0->out_h * d0->out_w * cmax;
	uint8_t *cover = calloc(cells ? cells : 1, 1);
	int maxc = 0;
	for (uint32_t i = 0; i < r->n_desc && cover; i++) {
		const struct accel_desc *x = &d[i];
		if (x->magic != ACCEL_DESC_MAGIC || x->version != ACCEL_DESC_VERSION)
			violation("descriptor %u: bad magic/version", i);
		if (x->nc == 0 || x->nc > ACCEL_MAX_TILE_C || x->c0 % ACCEL_VEC)
			violation("descriptor %u: channel tile c0 %u nc %u outside the limits", i,
				  x->c0, x->nc);
		if (x->cin > ACCEL_MAX_CIN || x->out_h != d0->out_h || x->out_w != d0->out_w ||
		    x->in_h != d0->in_h || x->in_w != d0->in_w)
			violation("descriptor %u: tensor shape differs within one run", i);
		if (x->oy0 + x->oh > x->out_h || x->ox0 + x->ow > x->out_w || x->c0 + x->nc > cmax) {
			violation("descriptor %u: tile outside the output", i);
			continue;
		}
		const struct accel_stage *st[2] = {(x->flags & ACCEL_F_PW) ? &x->pw : NULL,
						   (x->flags & ACCEL_F_DW) ? &x->dw : NULL};
		for (int k = 0; k < 2; k++)
			if (st[k] && (st[k]->w_off % ACCEL_WORD_BYTES ||
				      st[k]->rq_off % ACCEL_WORD_BYTES ||
				      st[k]->w_off >= r->arg[2]->bytes ||
				      st[k]->rq_off >= r->arg[2]->bytes))
				violation("descriptor %u: params offsets unaligned or outside params",
					  i);
		for (uint32_t y = x->oy0; y < x->oy0 + x->oh; y++)
			for (uint32_t xx = x->ox0; xx < x->ox0 + x->ow; xx++)
				for (uint32_t c = x->c0; c < x->c0 + x->nc; c++) {
					uint8_t *k = &cover[((size_t)y * d0->out_w + xx) * cmax + c];
					if (*k)
						violation("descriptor %u: tiles overlap", i);
					*k = 1;
				}
		if ((int)(x->c0 + x->nc) > maxc)
			maxc = (int)(x->c0 + x->nc);
	}
	/* every output element of the channels written, exactly once */
	for (size_t y = 0; cover && y < d0->out_h; y++)
		for (size_t xx = 0; xx < d0->out_w; xx++)
			for (int c = 0; c < maxc; c++)
				if (!cover[(y * d0->out_w + xx) * cmax + (size_t)c]) {
					violation("output (%zu,%zu,%d) not covered by any tile", y, xx,
						  c);
					y = d0->out_h;
					xx = d0->out_w;
					break;
				}
	free(cover);
	if (r->n_desc > 1)
		R.multi_desc_runs++;
	if ((int)r->n_desc > R.max_desc)
		R.max_desc = (int)r->n_desc;
}

static int r_run_start(void *u, void *run)
{
	(void)u;
	struct rrun *r = run;
	if (r->next_arg != ACCEL_NARGS)
		violation("run started with %d of %d arguments set", r->next_arg, ACCEL_NARGS);
	for (int a = 0; a < ACCEL_NARGS; a++)
		if (a != 1 && r->arg[a] && r->arg[a]->dirty)
			violation("argument %d written but not synced to the device before start", a);
	if (r->arg[0] && r->arg[3] && r->arg[5])
		check_descs(r);
	R.runs++;
	return R.inner->run_start(R.inner->user, r->inner);
}
static enum xrt_run_state r_run_wait(void *u, void *run, unsigned timeout_ms, uint32_t *status)
{
	(void)u;
	struct rrun *r = run;
	enum xrt_run_state s = R.inner->run_wait(R.inner->user, r->inner, timeout_ms, status);
	if (r->arg[5]) {
		r->arg[5]->kernel_wrote = true;
		r->arg[5]->fresh_out = false;
	}
	if (R.fail_run_at && R.runs == R.fail_run_at)
		return XRT_RUN_TIMEOUT;
	if (R.refuse_run) {
		*status = (2u << 8) | ACCEL_E_DIMS;
		return XRT_RUN_REFUSED;
	}
	return s;
}
static void r_run_close(void *u, void *run)
{
	(void)u;
	struct rrun *r = run;
	if (!r)
		return;
	R.inner->run_close(R.inner->user, r->inner);
	free(r);
}

static const struct xrt_dev_ops rec_ops = {
	.name = "recording",
	.dev_open = r_dev_open,
	.dev_close = r_dev_close,
	.dev_name = r_dev_name,
	.load_xclbin = r_load_xclbin,
	.kernel_open = r_kernel_open,
	.kernel_close = r_kernel_close,
	.arg_group = r_arg_group,
	.bo_alloc = r_bo_alloc,
	.bo_free = r_bo_free,
	.bo_write = r_bo_write,
	.bo_read = r_bo_read,
	.bo_sync = r_bo_sync,
	.run_open = r_run_open,
	.run_set_bo = r_run_set_bo,
	.run_set_u32 = r_run_set_u32,
	.run_start = r_run_start,
	.run_wait = r_run_wait,
	.run_close = r_run_close,
};

/* ---- fixtures ---------------------------------------------------------------- */

static uint8_t *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot read %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
	ck_assert(b && fread(b, 1, (size_t)n, f) == (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return b;
}

static char data[1024];

static struct eng_model *load_traffic(void)
{
	const char *d = getenv("DETD_SHARED_DATA");
	ck_assert_msg(d != NULL, "DETD_SHARED_DATA is not set");
	snprintf(data, sizeof(data), "%s/traffic", d);
	char p[1200];
	snprintf(p, sizeof(p), "%s/traffic_model.tflite", data);
	struct eng_model_opts o = {.path = p};
	struct eng_model *m = NULL;
	char err[256];
	ck_assert_msg(eng_model_load(&o, &m, err, sizeof(err)) == 0, "%s", err);
	return m;
}

static uint8_t *frame(int i)
{
	char p[1200];
	size_t n;
	snprintf(p, sizeof(p), "%s/reference/inputs/%04d.rgb", data, i);
	uint8_t *b = read_all(p, &n);
	ck_assert_uint_eq(n, 256 * 256 * 3);
	return b;
}

static void rec_reset(void)
{
	memset(&R, 0, sizeof(R));
	R.inner = &xrt_dev_sim;
}

static int writes_to_resident(void)
{
	/* group 0 holds the descriptors and the params (accel_desc.h, gmem0) */
	int n = 0;
	for (int i = 0; i < R.n_bos; i++)
		if (R.bos[i].group == 0)
			n += R.bos[i].writes;
	return n;
}

/* Three frames, state carried: through the recorder on xrt-sim and on cpu. */
START_TEST(host_path_contract)
{
	rec_reset();
	struct eng_model *m = load_traffic();
	const struct eng_backend_ops *sim = eng_backend_find("xrt-sim");
	ck_assert_ptr_nonnull(sim);
	struct eng_backend_opts bo = {.device = 0, .timeout_ms = 5000, .device_ops = &rec_ops};
	struct eng_ctx *x = NULL, *c = NULL;
	struct eng_state *sx = NULL, *sc = NULL;
	char err[256] = "";
	ck_assert_msg(eng_ctx_create_opts(m, sim, &bo, 1, &x, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(eng_ctx_create(m, NULL, 1, &c, err, sizeof(err)), 0);
	ck_assert_int_eq(eng_state_create(m, &sx), 0);
	ck_assert_int_eq(eng_state_create(m, &sc), 0);
	int resident = writes_to_resident();
	ck_assert_int_gt(resident, 0);
	ck_assert_int_eq(R.runs, 0);

	struct eng_detections dx, dc;
	int runs_per_frame = 0;
	for (int f = 1; f <= 3; f++) {
		uint8_t *img = frame(f);
		const uint8_t *in[1] = {img};
		int before = R.runs;
		ck_assert_int_eq(eng_run(x, 1, in, &sx, &dx), 0);
		ck_assert_int_eq(eng_run(c, 1, in, &sc, &dc), 0);
		free(img);
		if (f == 1)
			runs_per_frame = R.runs - before;
		else
			ck_assert_int_eq(R.runs - before, runs_per_frame);
		ck_assert_int_eq(dx.n, dc.n);
		ck_assert_msg(memcmp(dx.d, dc.d, (size_t)dx.n * sizeof(dx.d[0])) == 0,
			      "frame %d: xrt-sim detections differ from cpu", f);
	}
	ck_assert_msg(R.violations == 0, "%d violations, first: %s", R.violations, R.first);
	/* weights and descriptors went up once, at open */
	ck_assert_int_eq(writes_to_resident(), resident);
	/* layers wider than the kernel's channel tile were tiled */
	ck_assert_int_gt(R.multi_desc_runs, 0);

	struct eng_backend_info info;
	ck_assert_int_eq(eng_ctx_backend_info(x, &info), 0);
	ck_assert_str_eq(info.backend, "xrt-sim");
	ck_assert_uint_eq(info.runs, (uint64_t)R.runs);
	ck_assert_int_eq(info.blocks, runs_per_frame);
	ck_assert_int_gt(info.nodes_device, 0);
	ck_assert_int_gt(info.nodes_cpu, 0);
	ck_assert_uint_eq(info.failures, 0);
	char uuid[40];
	uint8_t u[16];
	xrt_sim_uuid(u);
	xrt_uuid_str(u, uuid, sizeof(uuid));
	ck_assert_str_eq(info.xclbin_uuid, uuid);
	fprintf(stderr, "xrt-sim: %d kernel runs per frame (largest %d descriptors), %d nodes on "
		"the device, %d on cpu, %.1f ms per run\n", runs_per_frame, R.max_desc,
		info.nodes_device, info.nodes_cpu, info.ms_per_run);

	eng_state_destroy(sx);
	eng_state_destroy(sc);
	eng_ctx_destroy(x);
	eng_ctx_destroy(c);
	eng_model_destroy(m);
	for (int i = 0; i < R.n_bos; i++)
		ck_assert_ptr_null(R.bos[i].inner); /* every buffer freed */
}
END_TEST

/* A run that times out or a refused descriptor fails the frame with an
 * error (the batcher's health path takes it from there) and is counted. */
START_TEST(run_failures_reported)
{
	struct eng_model *m = load_traffic();
	const struct eng_backend_ops *sim = eng_backend_find("xrt-sim");
	struct eng_backend_opts bo = {.timeout_ms = 50, .device_ops = &rec_ops};
	char err[256] = "";
	uint8_t *img = frame(1);
	const uint8_t *in[1] = {img};
	struct eng_detections d;
	struct eng_backend_info info;

	rec_reset();
	R.fail_run_at = 3;
	struct eng_ctx *x = NULL;
	ck_assert_msg(eng_ctx_create_opts(m, sim, &bo, 1, &x, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(eng_run(x, 1, in, NULL, &d), -ETIMEDOUT);
	ck_assert_int_eq(eng_ctx_backend_info(x, &info), 0);
	ck_assert_uint_eq(info.failures, 1);
	ck_assert_uint_eq(info.runs, 3);
	/* the context stays usable: the next frame runs */
	ck_assert_int_eq(eng_run(x, 1, in, NULL, &d), 0);
	eng_ctx_destroy(x);

	rec_reset();
	R.refuse_run = true;
	ck_assert_int_eq(eng_ctx_create_opts(m, sim, &bo, 1, &x, err, sizeof(err)), 0);
	ck_assert_int_eq(eng_run(x, 1, in, NULL, &d), -EPROTO);
	eng_ctx_destroy(x);
	free(img);
	eng_model_destroy(m);
}
END_TEST

/* Open-time checks: the kernel's argument layout, an xclbin for "xrt". */
START_TEST(open_checks)
{
	struct eng_model *m = load_traffic();
	const struct eng_backend_ops *sim = eng_backend_find("xrt-sim");
	struct eng_backend_opts bo = {.device_ops = &rec_ops};
	char err[256] = "";
	struct eng_ctx *x = NULL;

	rec_reset();
	R.arg1_is_buffer = true;
	ck_assert_int_eq(eng_ctx_create_opts(m, sim, &bo, 1, &x, err, sizeof(err)), -EPROTO);
	ck_assert_ptr_null(x);
	ck_assert_msg(strstr(err, "argument 1 is a buffer") != NULL, "%s", err);
	for (int i = 0; i < R.n_bos; i++)
		ck_assert_ptr_null(R.bos[i].inner);

#if DETD_HAVE_XRT
	/* "xrt" needs engine.xrt.xclbin; the recorder stands in for the card */
	rec_reset();
	const struct eng_backend_ops *xrt = eng_backend_find("xrt");
	ck_assert_ptr_nonnull(xrt);
	ck_assert_int_eq(eng_ctx_create_opts(m, xrt, &bo, 1, &x, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "engine.xrt.xclbin is not set") != NULL, "%s", err);
#else
	ck_assert_ptr_null(eng_backend_find("xrt"));
#endif
	eng_model_destroy(m);
}
END_TEST

#if DETD_HAVE_XRT
/* XILINX_XRT → a directory whose lib/libxrt_core.so.2 is Debian's LIB
 * (libxrt_noop: devices and buffers that work; libxrt_core: the real shim,
 * which finds no card here). */
static bool xrt_runtime(const char *libname, char *root, size_t len)
{
	glob_t g;
	char pat[128], usr[128];
	snprintf(pat, sizeof(pat), "/usr/lib/*/%s", libname);
	snprintf(usr, sizeof(usr), "/usr/lib/%s", libname);
	const char *lib = NULL;
	if (glob(pat, 0, NULL, &g) == 0 && g.gl_pathc)
		lib = g.gl_pathv[0];
	else if (access(usr, R_OK) == 0)
		lib = usr;
	if (!lib) {
		globfree(&g);
		return false;
	}
	snprintf(root, len, "/tmp/detd-xrt-rt.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
	char d[300], l[320];
	snprintf(d, sizeof(d), "%s/lib", root);
	snprintf(l, sizeof(l), "%s/libxrt_core.so.2", d);
	ck_assert_int_eq(mkdir(d, 0700), 0);
	ck_assert_int_eq(symlink(lib, l), 0);
	globfree(&g);
	return true;
}

/* xclbin: NULL when none was written. */
static void rm_runtime(const char *root, const char *xclbin)
{
	char p[320];
	if (xclbin)
		unlink(xclbin);
	snprintf(p, sizeof(p), "%s/lib/libxrt_core.so.2", root);
	unlink(p);
	snprintf(p, sizeof(p), "%s/lib", root);
	rmdir(p);
	rmdir(root);
}

START_TEST(noop_shim_host_path)
{
	char root[256], xclbin[300];
	if (!xrt_runtime("libxrt_noop.so.2", root, sizeof(root))) {
		/* the same package (libxrt1) as the libxrt_coreutil we link */
		ck_abort_msg("libxrt_noop.so.2 missing beside libxrt_coreutil: broken XRT install");
	}
	setenv("XILINX_XRT", root, 1);
	snprintf(xclbin, sizeof(xclbin), "%s/detd_accel.xclbin", root);
	const uint8_t uuid[16] = {0x64, 0x65, 0x74, 0x64, 0x2d, 0x6e, 0x6f, 0x6f,
				  0x70, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x00, 0x01};
	ck_assert_int_eq(xclbin_gen_write(xclbin, uuid), 0);

	rec_reset();
	R.inner = &xrt_dev_real;
	struct eng_model *m = load_traffic();
	const struct eng_backend_ops *xrt = eng_backend_find("xrt");
	ck_assert_ptr_nonnull(xrt);
	struct eng_backend_opts bo = {.device = 0, .xclbin = xclbin, .timeout_ms = 2000,
				      .device_ops = &rec_ops};
	struct eng_ctx *x = NULL;
	char err[256] = "";
	ck_assert_msg(eng_ctx_create_opts(m, xrt, &bo, 1, &x, err, sizeof(err)) == 0, "%s", err);
	int resident = writes_to_resident();
	uint8_t *img = frame(1);
	const uint8_t *in[1] = {img};
	struct eng_detections d;
	/* the noop kernel computes nothing: only the calls are checked here */
	ck_assert_int_eq(eng_run(x, 1, in, NULL, &d), 0);
	int runs1 = R.runs;
	ck_assert_int_eq(eng_run(x, 1, in, NULL, &d), 0);
	free(img);
	ck_assert_msg(R.violations == 0, "%d violations, first: %s", R.violations, R.first);
	ck_assert_int_eq(R.runs, 2 * runs1);
	ck_assert_int_gt(R.multi_desc_runs, 0);
	ck_assert_int_eq(writes_to_resident(), resident);
	struct eng_backend_info info;
	ck_assert_int_eq(eng_ctx_backend_info(x, &info), 0);
	ck_assert_str_eq(info.backend, "xrt");
	char want[40];
	xrt_uuid_str(uuid, want, sizeof(want));
	ck_assert_str_eq(info.xclbin_uuid, want);
	ck_assert_int_eq(info.blocks, runs1);
	ck_assert_uint_eq(info.runs, (uint64_t)R.runs);
	ck_assert_uint_eq(info.failures, 0);
	fprintf(stderr, "noop shim: %s, xclbin %s, %d kernel runs per frame, all calls in order\n",
		info.device, info.xclbin_uuid, runs1);
	eng_ctx_destroy(x);
	for (int i = 0; i < R.n_bos; i++)
		ck_assert_ptr_null(R.bos[i].inner);

	/* the same runtime, an xclbin whose kernel has another argument layout:
	 * refused at open with the reason */
	rec_reset();
	R.inner = &xrt_dev_real;
	R.arg1_is_buffer = true;
	ck_assert_int_eq(eng_ctx_create_opts(m, xrt, &bo, 1, &x, err, sizeof(err)), -EPROTO);
	ck_assert_msg(strstr(err, "argument 1") != NULL, "%s", err);
	/* a missing xclbin */
	bo.xclbin = "/nonexistent/detd_accel.xclbin";
	ck_assert_int_eq(eng_ctx_create_opts(m, xrt, &bo, 1, &x, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "No such file") != NULL, "%s", err);
	eng_model_destroy(m);
	rm_runtime(root, xclbin);
}
END_TEST

/* Busy threads for probe_in_threaded_process: each keeps taking the locks a
 * forked child would inherit held — the allocator's and the dynamic
 * loader's. */
static atomic_bool churn_stop;

static void *churn(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	while (!atomic_load(&churn_stop)) {
		void *p[16];
		for (int i = 0; i < 16; i++)
			p[i] = malloc(16 + rand_r(&seed) % 65536);
		for (int i = 0; i < 16; i++)
			free(p[i]);
		void *h = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
		if (h)
			dlclose(h);
	}
	return NULL;
}

/*
 * The daemon re-probes the card while its streams and workers run.  The
 * probe must come back with XRT's answer every time, not hang on a lock one
 * of those threads held when the probe process was made (a bare fork() of a
 * threaded process does, now and then: seen as "did not open device 0
 * within 20 s" under ASan, once in five runs of this test with fork()).
 * The real device shim, no card: every one of 200 probes says "no XRT
 * device 0", none takes more than a few seconds.
 */
START_TEST(probe_in_threaded_process)
{
	char root[256];
	if (!xrt_runtime("libxrt_core.so.2", root, sizeof(root))) {
		ck_abort_msg("libxrt_core.so.2 missing beside libxrt_coreutil: broken XRT install");
	}
	setenv("XILINX_XRT", root, 1);
	atomic_store(&churn_stop, false);
	pthread_t t[3];
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1)), 0);
	double worst = 0;
	for (int i = 0; i < 200; i++) {
		char err[256] = "";
		void *dev = NULL;
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		int r = xrt_dev_real.dev_open(NULL, 0, &dev, err, sizeof(err));
		clock_gettime(CLOCK_MONOTONIC, &b);
		double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
		worst = s > worst ? s : worst;
		ck_assert_msg(r == -ENODEV && strstr(err, "no XRT device 0"), "probe %d: %d %s", i, r,
			      err);
		ck_assert_msg(s < 10, "probe %d took %.1f s", i, s);
	}
	atomic_store(&churn_stop, true);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	fprintf(stderr, "200 probes beside 3 busy threads: no device each time, slowest %.2f s\n",
		worst);
	rm_runtime(root, NULL);
}
END_TEST
#endif

/*
 * CoDeNet through the same host path: every W4A8 model of the generated
 * fixtures (plain, bounded, square and rounded deformable decoders, 256² and
 * 512²) on xrt-sim behind the recorder, its detections bit-identical to the
 * cpu engine's on the same input, the device's layers counted, deformable
 * blocks fed their offsets through aux.  SKIP without the fixtures (they need
 * /usr/bin/python3 with torch).
 */
static const struct {
	const char *name;
	bool dcn_on_device; /* a bounded depthwise deformable decoder */
} cdn_models[] = {
	{"s256_dw_q", true},     {"s256_2x_square_q", true}, {"s512_full_q", false},
	{"t_dw_q", false},       {"t_dw_bound_q", true},     {"t_dw_square_q", true},
	{"t_dwconv_q", false},   {"t_full_rounded_square_q", false},
};

START_TEST(codenet_through_device)
{
	const char *fx = getenv("CDN_FIXTURES");
	ck_assert_ptr_nonnull(fx);
	rec_reset();
	char p[1200], err[256] = "";
	const char *name = cdn_models[_i].name;
	snprintf(p, sizeof(p), "%s/%s.json", fx, name);
	struct eng_model_opts o = {.path = p};
	struct eng_model *m = NULL;
	ck_assert_msg(eng_model_load(&o, &m, err, sizeof(err)) == 0, "%s: %s", p, err);
	const struct eng_model_info *inf = eng_model_info(m);
	snprintf(p, sizeof(p), "%s/input_%dx%d.rgb", fx, inf->input_height, inf->input_width);
	size_t n;
	uint8_t *img = read_all(p, &n);
	ck_assert_uint_eq(n, (size_t)inf->input_width * inf->input_height * 3);

	const struct eng_backend_ops *sim = eng_backend_find("xrt-sim");
	struct eng_backend_opts bo = {.device = 0, .timeout_ms = 60000, .device_ops = &rec_ops};
	struct eng_ctx *x = NULL, *c = NULL;
	ck_assert_msg(eng_ctx_create_opts(m, sim, &bo, 1, &x, err, sizeof(err)) == 0, "%s: %s",
		      name, err);
	ck_assert_int_eq(eng_ctx_create(m, NULL, 1, &c, err, sizeof(err)), 0);
	int resident = writes_to_resident();
	struct eng_detections *dx = malloc(sizeof(*dx)), *dc = malloc(sizeof(*dc));
	ck_assert(dx && dc);
	const uint8_t *in[1] = {img};
	for (int rep = 0; rep < 2; rep++) { /* the second run reuses every buffer */
		ck_assert_int_eq(eng_run(x, 1, in, NULL, dx), 0);
		ck_assert_int_eq(eng_run(c, 1, in, NULL, dc), 0);
		ck_assert_int_gt(dc->n, 0);
		ck_assert_int_eq(dx->n, dc->n);
		ck_assert_msg(memcmp(dx->d, dc->d, (size_t)dx->n * sizeof(dx->d[0])) == 0,
			      "%s run %d: xrt-sim detections differ from cpu", name, rep);
	}
	ck_assert_msg(R.violations == 0, "%d violations, first: %s", R.violations, R.first);
	ck_assert_int_eq(writes_to_resident(), resident);
	struct eng_backend_info info;
	ck_assert_int_eq(eng_ctx_backend_info(x, &info), 0);
	ck_assert_int_gt(info.nodes_device, 0);
	ck_assert_int_gt(info.nodes_cpu, 0); /* the first conv at least */
	ck_assert_uint_eq(info.runs, (uint64_t)R.runs);
	ck_assert_int_eq(R.runs, 2 * info.blocks);
	ck_assert_uint_eq(info.failures, 0);
	/* decoders with bounded depthwise deformable layers run them on the device */
	if (cdn_models[_i].dcn_on_device)
		ck_assert_msg(R.deform_runs > 0, "%s: no deformable block on the device", name);
	fprintf(stderr, "%s: %d of %d layers on xrt-sim in %d blocks (%d deformable runs), "
		"%d detections equal to cpu\n", name, info.nodes_device,
		info.nodes_device + info.nodes_cpu, info.blocks, R.deform_runs / 2, dx->n);
	free(dx);
	free(dc);
	free(img);
	eng_ctx_destroy(x);
	eng_ctx_destroy(c);
	eng_model_destroy(m);
	for (int i = 0; i < R.n_bos; i++)
		ck_assert_ptr_null(R.bos[i].inner);
}
END_TEST

int main(int argc, char **argv)
{
	log_set_level(LOG_LVL_ERROR);
	if (argc > 1 && strcmp(argv[1], "codenet") == 0) {
		if (!getenv("CDN_FIXTURES")) {
			fprintf(stderr, "SKIP: no CoDeNet fixtures (CDN_FIXTURES unset: "
					"/usr/bin/python3 without torch)\n");
			return 77;
		}
		Suite *s = suite_create("xrt-codenet");
		TCase *tc = tcase_create("codenet");
		tcase_set_timeout(tc, 900);
		tcase_add_loop_test(tc, codenet_through_device, 0,
				    (int)(sizeof(cdn_models) / sizeof(cdn_models[0])));
		suite_add_tcase(s, tc);
		return run_suite(s);
	}
	Suite *s = suite_create("xrt");
	TCase *tc = tcase_create("host");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, host_path_contract);
	tcase_add_test(tc, run_failures_reported);
	tcase_add_test(tc, open_checks);
#if DETD_HAVE_XRT
	tcase_add_test(tc, noop_shim_host_path);
	tcase_add_test(tc, probe_in_threaded_process);
#endif
	suite_add_tcase(s, tc);
	return run_suite(s);
}
