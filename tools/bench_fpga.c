/*
 * bench_fpga.c — detd-bench fpga-model: a performance and resource MODEL of
 * the detd_accel kernel (engine/hls/accel.cpp) on a given model and part.
 * Nothing here runs on an FPGA; the numbers are computed, not measured.
 *
 * Per block (engine/xrt/plan.c lowering) and per descriptor it counts the
 * kernel's loop trip counts at the initiation intervals the pragmas ask for:
 *   params  one 128-bit beat per II=1 iteration (weights + requant)
 *   read    mid rows × mid cols × input words          (II=1)
 *   pw      per pixel: fill (input words) + ceil(nc/PE_OUT)·ceil(cin/16)·II_w
 *           MAC beats + requant (RQ_PW cycles per output word)
 *   dw      fill (mid words) + out pixels × words × II_dw (2 plain, 5 deformable)
 *   write   out pixels × words                          (II=1)
 * tile cycles = params + max(read, pw, dw, write) (DATAFLOW overlaps the
 * four) + a fixed latency per descriptor; a block's time is the larger of
 * its cycles at the part's clock and its AXI bytes at the part's usable
 * bandwidth, plus an assumed host cost per kernel run (one run per block).  CPU layers (first conv, offset convs, split/shuffle, upsample,
 * decode; TFLite's non-conv ops) are not in the fps: they run on the
 * part's Arm cores, overlapped with the next frame's accelerator work.
 */
#include "bench_fpga.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accel_desc.h"
#include "codenet.h"
#include "log.h"
#include "model.h"
#include "plan.h"

/* Parts.  Resource counts are the vendors' published totals for the device
 * (BRAM in 36 Kb blocks); bandwidth is what one kernel can expect to use:
 * ~60% of the DDR peak on the Zynq parts (shared with the Arm cores), the
 * kernel's own three 128-bit AXI ports on the U50 (HBM is not the limit). */
struct part {
	const char *name, *device;
	double mhz;
	int dsp, bram36, uram;
	double gbps; /* usable GB/s for the kernel */
	const char *mem;
	double cpu_gmacs; /* ASSUMED int8 GMAC/s of the host cores for the cpu layers */
	const char *cpu;
	double launch_us; /* ASSUMED host cost of one kernel run (XRT start + wait) */
};

static const struct part PARTS[] = {
	{"ultra96", "Zynq UltraScale+ ZU3EG (Ultra96-V2)", 250, 360, 216, 0, 5.1,
	 "LPDDR4 32-bit 2133 MT/s, 8.5 GB/s peak, 60% usable", 2.0, "4x Cortex-A53 1.2 GHz", 40},
	{"kv260", "Kria K26 SOM (ZU5EV-class XCK26)", 300, 1248, 144, 64, 11.5,
	 "DDR4 64-bit 2400 MT/s, 19.2 GB/s peak, 60% usable", 2.5, "4x Cortex-A53 1.33 GHz", 40},
	{"u50", "Alveo U50 (XCU50, VU35P-class)", 300, 5952, 1344, 640, 14.4,
	 "HBM2 316 GB/s; bound by the kernel's 3 x 128-bit AXI ports at 300 MHz", 50.0,
	 "x86 host (this machine's class)", 15},
};

/* The kernel's micro-architecture choices the model charges for. */
struct arch {
	int pe_out;     /* 1×1 output channels per beat (16 inputs each) */
	int ii_w8;      /* MAC beats per 16 inputs with W8 weights (DSPs not packed) */
	int ii_dw;      /* depthwise beats per word, plain: 3 columns from each
			   dual-port row bank: 2 */
	int ii_def;     /* depthwise beats per word for deformable taps (9 random reads
			   from a dual-port line buffer: ceil(9/2)) */
	int rq_pw;      /* cycles per 16-channel word of the 1×1 requant (4 lanes) */
	int lat;        /* fixed cycles per descriptor (AXI latency, pipeline fill) */
};

static const struct arch ARCH_DEFAULT = {ACCEL_PE_OUT, 2, 2, 5, 4, 300};

static int bram36_for(long depth, int width)
{
	int best = 1 << 30;
	/* aspect ratios of one 36 Kb block (depth × width); the cheapest wins */
	static const int dw[][2] = {{32768, 1}, {16384, 2}, {8192, 4}, {4096, 9}, {2048, 18},
				    {1024, 36}, {512, 72}};
	for (int i = 0; i < 7; i++) {
		long n = ((depth + dw[i][0] - 1) / dw[i][0]) * ((width + dw[i][1] - 1) / dw[i][1]);
		if (n < best)
			best = (int)n;
	}
	return best;
}

struct res {
	int dsp, bram36, uram;
};

static struct res resources(const struct arch *a)
{
	struct res r = {0, 0, 0};
	/* 1×1: 16·PE_OUT MACs per beat; two 4-bit-weight MACs share one DSP48E2
	 * (they share the activation), W8 uses the same DSPs unpacked (ii_w8) */
	r.dsp += 16 * a->pe_out / 2;
	/* depthwise: 16 channels × 9 taps, one DSP each */
	r.dsp += 16 * 9;
	/* requant: 32×32 multiply ≈ 4 DSPs per lane; dw 16 lanes, 1×1 4 lanes */
	r.dsp += 4 * 16 + 4 * 4;
	/* weights: 16 memories (one per input lane), PE_OUT weights per word */
	r.bram36 += 16 * bram36_for((long)(ACCEL_MAX_CIN / 16) * (ACCEL_MAX_TILE_C / a->pe_out),
				    8 * a->pe_out);
	/* line buffer: one memory per row, 16 lanes × 9 bits per word */
	r.bram36 += ACCEL_LB_ROWS * bram36_for((long)ACCEL_MAX_W * ACCEL_MAX_TILE_C / 16, 144);
	/* three stream FIFOs (depth 64 × 128 bits) and the AXI adapters (≈2 each) */
	r.bram36 += 3 * bram36_for(64, 128) + 3 * 2;
	return r;
}

struct tally {
	double cycles, bytes;
	double us, us_compute, us_mem;
	uint64_t macs;
};

static void desc_cost(const struct accel_desc *d, const struct arch *a, struct tally *t)
{
	bool pw = d->flags & ACCEL_F_PW, dw = d->flags & ACCEL_F_DW;
	int32_t my0, mh, mx0, mw;
	accel_mid_range(d, (int32_t)d->oy0, (int32_t)d->oh, dw ? d->pad_t : 0, (int32_t)d->mid_h,
			&my0, &mh);
	accel_mid_range(d, (int32_t)d->ox0, (int32_t)d->ow, dw ? d->pad_l : 0, (int32_t)d->mid_w,
			&mx0, &mw);
	double ncw = (d->nc + 15) / 16, nc16 = ncw * 16;
	double inw = pw ? (d->cin + 15) / 16 : ncw;
	double mpix = (double)mh * mw, opix = (double)d->oh * d->ow;
	double params = 0, bytes = 0;
	if (pw) {
		double row = d->wbits == 4 ? (d->in_cw + 1) / 2 : d->in_cw;
		params += d->nc * row + 3 * nc16 / 4;
	}
	if (dw)
		params += 9 * ncw + 3 * nc16 / 4;
	double read = mpix * inw;
	double c_pw = mpix * ncw;
	if (pw) {
		double iiw = d->wbits == 8 ? a->ii_w8 : 1;
		double mac = ceil((double)d->nc / a->pe_out) * ((d->cin + 15) / 16) * iiw;
		c_pw = mpix * (inw + mac + ncw * a->rq_pw);
	}
	double c_dw = mpix * ncw;
	if (dw)
		c_dw += opix * ncw * (d->deform ? a->ii_def : a->ii_dw);
	double write = opix * ncw;
	double m = read;
	m = c_pw > m ? c_pw : m;
	m = c_dw > m ? c_dw : m;
	m = write > m ? write : m;
	t->cycles += params + m + a->lat;
	bytes = 16 * (params + read + write + (d->deform ? opix * d->aux_cw : 0));
	t->bytes += bytes;
}

static const char *unit_name(const struct cdn_model *cm, const struct eng_graph *g, int u,
			     char *buf, size_t n)
{
	if (cm)
		return cdn_model_layer(cm, u)->name;
	snprintf(buf, n, "#%d %s", u, eng_op_name(g->nodes[u].type));
	return buf;
}

static double run_model(const struct plan *p, const struct part *pt, const struct arch *a,
			const struct cdn_model *cm, const struct eng_graph *g, bool table,
			double *accel_macs)
{
	double total_us = 0;
	*accel_macs = 0;
	if (table)
		printf("%-44s %-15s %9s %5s %10s %9s %9s %9s %s\n", "block", "in→out (HxWxC)", "MMAC",
		       "desc", "cycles", "KiB", "comp µs", "mem µs", "bound");
	for (int i = 0; i < p->n_blocks; i++) {
		const struct plan_block *b = &p->blocks[i];
		struct tally t = {0};
		for (uint32_t k = 0; k < b->n_desc; k++)
			desc_cost(&b->desc[k], a, &t);
		t.us_compute = t.cycles / pt->mhz;
		t.us_mem = t.bytes / (pt->gbps * 1e3);
		t.us = (t.us_compute > t.us_mem ? t.us_compute : t.us_mem) + pt->launch_us;
		total_us += t.us;
		*accel_macs += (double)b->macs;
		if (table) {
			char n0[64], n1[64], name[140], shp[64];
			const char *a0 = unit_name(cm, g, b->units[0], n0, sizeof(n0));
			if (b->n_units > 1)
				snprintf(name, sizeof(name), "%s + %s", a0,
					 strrchr(unit_name(cm, g, b->units[1], n1, sizeof(n1)), cm ? '.' : '#'));
			else
				snprintf(name, sizeof(name), "%s", a0);
			snprintf(shp, sizeof(shp), "%dx%dx%d→%d", b->in_h, b->in_w, b->in_c, b->out_c);
			printf("%-44.44s %-15s %9.2f %5u %10.0f %9.1f %9.1f %9.1f %s\n", name, shp,
			       (double)b->macs * 1e-6, b->n_desc, t.cycles, t.bytes / 1024.0,
			       t.us_compute, t.us_mem, t.us_compute >= t.us_mem ? "compute" : "memory");
		}
	}
	return total_us;
}

static void usage(FILE *to)
{
	fprintf(to, "usage: detd-bench fpga-model --model M [--part ultra96|kv260|u50] [--pe-out N]\n"
		    "                              [--mhz F] [--no-table]\n"
		    "  M: a CoDeNet .json (W4A8) or a quantized .tflite.\n"
		    "  A MODEL of the detd_accel kernel (engine/hls): cycles from its loop bounds at\n"
		    "  the requested IIs, AXI bytes vs the part's bandwidth, DSP/BRAM vs the part's\n"
		    "  budget.  Nothing is measured; no FPGA is used.\n");
}

int bench_fpga_main(int argc, char **argv)
{
	const char *model = NULL, *part = "ultra96";
	struct arch a = ARCH_DEFAULT;
	double mhz = 0;
	bool table = true;
	static const struct option lo[] = {{"model", required_argument, 0, 'm'},
					   {"part", required_argument, 0, 'p'},
					   {"pe-out", required_argument, 0, 'e'},
					   {"mhz", required_argument, 0, 'f'},
					   {"no-table", no_argument, 0, 'n'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "m:p:e:f:nh", lo, NULL)) != -1) {
		switch (ch) {
		case 'm': model = optarg; break;
		case 'p': part = optarg; break;
		case 'e': a.pe_out = atoi(optarg); break;
		case 'f': mhz = atof(optarg); break;
		case 'n': table = false; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	const struct part *pt = NULL;
	for (size_t i = 0; i < sizeof(PARTS) / sizeof(PARTS[0]); i++)
		if (strcmp(PARTS[i].name, part) == 0)
			pt = &PARTS[i];
	if (!model || !pt || a.pe_out < 1 || a.pe_out > ACCEL_MAX_TILE_C ||
	    (a.pe_out & (a.pe_out - 1))) {
		usage(stderr);
		return 2;
	}
	struct part pcopy = *pt;
	if (mhz > 0)
		pcopy.mhz = mhz;
	pt = &pcopy;
	log_set_level(LOG_LVL_ERROR);
	char err[512] = "";
	struct plan *p = NULL;
	struct cdn_model *cm = NULL;
	struct eng_model *em = NULL;
	double model_macs = 0;
	size_t n = strlen(model);
	int rc;
	if (n > 5 && strcmp(model + n - 5, ".json") == 0) {
		rc = cdn_model_load(model, &cm, err, sizeof(err));
		if (rc == 0) {
			model_macs = cdn_model_desc(cm)->gmac * 1e9;
			rc = plan_codenet(cm, &p, err, sizeof(err));
		}
	} else {
		struct eng_model_opts o = {.path = model};
		rc = eng_model_load(&o, &em, err, sizeof(err));
		if (rc == 0) {
			model_macs = (double)em->g.macs;
			rc = plan_tflite(&em->g, &p, err, sizeof(err));
		}
	}
	if (rc) {
		fprintf(stderr, "detd-bench fpga-model: %s: %s\n", model, err);
		cdn_model_destroy(cm);
		eng_model_destroy(em);
		return 1;
	}
	printf("detd_accel performance MODEL (computed from loop bounds, not measured)\n");
	printf("model %s\npart  %s: %s, %.0f MHz, %d DSP, %d BRAM36, %d URAM; %s → %.1f GB/s\n",
	       model, pt->name, pt->device, pt->mhz, pt->dsp, pt->bram36, pt->uram, pt->mem,
	       pt->gbps);
	printf("arch  PE 16x%d (1x1), 16x9 (dw), W8 II %d, dw II %d, deformable dw II %d, 1x1 requant %d cyc/word, %d cyc/descriptor\n",
	       a.pe_out, a.ii_w8, a.ii_dw, a.ii_def, a.rq_pw, a.lat);
	printf("host  one kernel run per block, ASSUMED %.0f µs each (XRT start/wait), included in the times\n\n",
	       pt->launch_us);
	if (p->n_blocks == 0) {
		printf("nothing offloaded: the kernel runs quantized models only (W4A8 CoDeNet, "
		       "uint8/int8 TFLite)\n");
		plan_destroy(p);
		cdn_model_destroy(cm);
		eng_model_destroy(em);
		return 1;
	}
	double accel_macs;
	double us = run_model(p, pt, &a, cm, em ? &em->g : NULL, table, &accel_macs);
	struct res r = resources(&a);
	printf("\noffloaded: %d blocks, %.3f of %.3f GMAC (%.1f%%); cpu: %.3f GMAC\n", p->n_blocks,
	       accel_macs * 1e-9, model_macs * 1e-9, 100 * accel_macs / (model_macs ? model_macs : 1),
	       (model_macs - accel_macs) * 1e-9);
	printf("weights+requant resident: %.1f KiB\n", p->params_bytes / 1024.0);
	printf("accelerator time %.2f ms/frame → %.1f fps (accelerator only; MACs per cycle = %.0f%% of the 1x1 array)\n",
	       us * 1e-3, 1e6 / us, 100 * accel_macs / (us * pt->mhz * 16 * a.pe_out));
	printf("resources: DSP %d/%d (%.0f%%), BRAM36 %d/%d (%.0f%%), URAM %d/%d%s\n", r.dsp,
	       pt->dsp, 100.0 * r.dsp / pt->dsp, r.bram36, pt->bram36, 100.0 * r.bram36 / pt->bram36,
	       r.uram, pt->uram,
	       r.dsp <= pt->dsp && r.bram36 <= pt->bram36 ? "  (fits)" : "  (DOES NOT FIT)");
	double cpu_ms = (model_macs - accel_macs) * 1e-9 / pt->cpu_gmacs * 1e3;
	printf("cpu layers: %.3f GMAC at an ASSUMED %.1f GMAC/s (%s) ≈ %.2f ms → whole frame "
	       "%.1f fps pipelined (accelerator and cpu on different frames), %.1f fps serial\n",
	       (model_macs - accel_macs) * 1e-9, pt->cpu_gmacs, pt->cpu, cpu_ms,
	       1e3 / (us * 1e-3 > cpu_ms ? us * 1e-3 : cpu_ms), 1e3 / (us * 1e-3 + cpu_ms));
	printf("\nparallelism sweep on %s:\n%8s %8s %8s %10s %8s\n", pt->name, "PE_OUT", "DSP",
	       "BRAM36", "ms/frame", "fps");
	for (int pe = 4; pe <= 64; pe *= 2) {
		struct arch s = a;
		s.pe_out = pe;
		double am;
		double u = run_model(p, pt, &s, cm, em ? &em->g : NULL, false, &am);
		struct res rr = resources(&s);
		printf("%8d %8d %8d %10.2f %8.1f%s\n", pe, rr.dsp, rr.bram36, u * 1e-3, 1e6 / u,
		       rr.dsp <= pt->dsp && rr.bram36 <= pt->bram36 ? "" : "  does not fit");
	}
	plan_destroy(p);
	cdn_model_destroy(cm);
	eng_model_destroy(em);
	return 0;
}
