/*
 * accel.cpp — the detd_accel kernel: 1×1 conv → requant → 3×3 depthwise
 * (plain or deformable) → requant, configured per call by accel_desc
 * (accel_desc.h holds the contract).  Synthesizable HLS C++: static sizes,
 * no recursion, no heap in the kernel body; the pragmas are for Vitis HLS
 * and are ignored by the host compiler, which builds this same file as the
 * bit-exact C-simulation (accel_csim_run at the end).
 *
 * Structure of one descriptor (one tile):
 *   load_params   weights of the tile (W4 or W8) and per-channel requant → BRAM
 *   DATAFLOW {
 *     read_input  AXI burst of the tile's input pixels → s_in
 *     stage_pw    per pixel: Σ over cin words, PE_OUT×16 MACs per beat → s_mid
 *     stage_dw    line buffer of ACCEL_LB_ROWS mid rows; 9 taps × 16 channels
 *                 per beat, taps positioned by the offsets (aux) → s_out
 *     write_out   s_out → AXI
 *   }
 * The C-sim runs the processes one after the other (FIFOs are unbounded
 * queues there); in hardware they overlap.
 */
#include "accel_desc.h"
#include "hls_types.h"

#include <string.h>

#ifndef __SYNTHESIS__
#include <new>
#endif

using namespace detd_hls;

namespace {

typedef xint<9> wval;  /* weight − zero point: [−255, 255] */
typedef xint<9> xval;  /* activation − zero point */
typedef xint<32> acc_t;

struct rq_params {
	int32_t mult[ACCEL_MAX_TILE_C];
	int32_t shift[ACCEL_MAX_TILE_C];
	int32_t bias[ACCEL_MAX_TILE_C];
};

/* mid values minus the zero point; rows in a ring indexed by row % LB_ROWS */
struct line_buf {
	xval v[ACCEL_LB_ROWS][ACCEL_MAX_W][ACCEL_MAX_TILE_C];
};

struct tile_params {
	wval pw[ACCEL_MAX_TILE_C][ACCEL_MAX_CIN];
	wval dw[9][ACCEL_MAX_TILE_C];
	rq_params rq_pw, rq_dw;
};

/* ---- requantization ------------------------------------------------------ */
/* round(a·b / 2^31), ties away from zero; the one overflow case saturates */
int32_t srdhm(int32_t a, int32_t b)
{
	if (a == INT32_MIN && b == INT32_MIN)
		return INT32_MAX;
	int64_t ab = (int64_t)a * b;
	int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
	return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* x / 2^e, rounded to nearest, ties away from zero */
int32_t rdbpot(int32_t x, int e)
{
	int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
	int32_t rem = x & mask;
	int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
	return (x >> e) + (rem > thr ? 1 : 0);
}

int32_t requant(int32_t acc, uint32_t mode, int32_t mult, int32_t shift, int32_t bias,
		const accel_stage &st)
{
	int64_t v;
	if (mode == ACCEL_RQ_CDN) {
		xint<24> a = sat_int<24>(acc); /* the 24-bit accumulator register */
		/* >> of a negative value: arithmetic shift (floor), as the RTL does */
		v = (((int64_t)(int32_t)a * mult + (1 << 15)) >> 16) + bias;
	} else {
		/* TFLite: the left shift is an int32 multiply (wraps), count mod 32 */
		int32_t x = (int32_t)((uint32_t)acc + (uint32_t)bias);
		int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
		int32_t sh = (int32_t)((uint32_t)x * ((uint32_t)1 << (left & 31)));
		v = rdbpot(srdhm(sh, mult), right);
	}
	v += st.out_zp;
	return (int32_t)(v < st.act_lo ? st.act_lo : v > st.act_hi ? st.act_hi : v);
}

/* ---- checks ----------------------------------------------------------------- */
uint32_t check_stage(const accel_stage &s)
{
	if (s.rq_mode != ACCEL_RQ_CDN && s.rq_mode != ACCEL_RQ_TFL)
		return ACCEL_E_RQ;
	if (s.act_lo > s.act_hi || (s.w_off & 15) || (s.rq_off & 15))
		return (s.act_lo > s.act_hi) ? ACCEL_E_RQ : ACCEL_E_ALIGN;
	return ACCEL_OK;
}

uint32_t check_desc(const accel_desc &d)
{
	if (d.magic != ACCEL_DESC_MAGIC || d.version != ACCEL_DESC_VERSION)
		return ACCEL_E_MAGIC;
	bool pw = d.flags & ACCEL_F_PW, dw = d.flags & ACCEL_F_DW;
	if (!pw && !dw)
		return ACCEL_E_STAGES;
	if (d.in_h < 1 || d.in_w < 1 || d.in_h > ACCEL_MAX_DIM || d.in_w > ACCEL_MAX_DIM ||
	    d.mid_h != d.in_h || d.mid_w != d.in_w || d.out_h < 1 || d.out_w < 1 ||
	    d.out_h > ACCEL_MAX_DIM || d.out_w > ACCEL_MAX_DIM || d.oh < 1 || d.ow < 1 ||
	    d.oy0 + d.oh > d.out_h || d.ox0 + d.ow > d.out_w || d.in_cw < 1 || d.out_cw < 1)
		return ACCEL_E_DIMS;
	if (dw) {
		if ((d.stride != 1 && d.stride != 2) || d.pad_t < 0 || d.pad_t > 1 || d.pad_l < 0 ||
		    d.pad_l > 1)
			return ACCEL_E_DIMS;
		/* out = the depthwise output size for this stride and padding */
		if ((int64_t)(d.out_h - 1) * d.stride + 3 - d.pad_t > (int64_t)d.mid_h + 1 ||
		    (int64_t)(d.out_w - 1) * d.stride + 3 - d.pad_l > (int64_t)d.mid_w + 1)
			return ACCEL_E_DIMS;
	} else if (d.stride != 1 || d.out_h != d.mid_h || d.out_w != d.mid_w || d.deform) {
		return ACCEL_E_DIMS;
	}
	int32_t x0, nx;
	accel_mid_range(&d, (int32_t)d.ox0, (int32_t)d.ow, dw ? d.pad_l : 0, (int32_t)d.mid_w, &x0,
			&nx);
	if (nx < 1 || nx > ACCEL_MAX_W)
		return ACCEL_E_DIMS;
	if (d.nc < 1 || d.nc > ACCEL_MAX_TILE_C || (d.c0 & 15) ||
	    (d.c0 + d.nc + 15) / 16 > d.out_cw)
		return ACCEL_E_CHAN;
	if ((d.flags & ACCEL_F_W_U8) && pw && d.wbits != 8)
		return ACCEL_E_RQ;
	if (pw && (d.cin < 1 || d.cin > ACCEL_MAX_CIN || d.cin > d.in_cw * 16 ||
		   (d.wbits != 4 && d.wbits != 8)))
		return d.cin > ACCEL_MAX_CIN || d.cin < 1 ? ACCEL_E_CHAN : ACCEL_E_RQ;
	if (!pw && (d.c0 + d.nc + 15) / 16 > d.in_cw)
		return ACCEL_E_CHAN;
	/* the flags of a stage's output and the next one's input must agree */
	if (!pw && !!(d.flags & ACCEL_F_MID_U8) != !!(d.flags & ACCEL_F_IN_U8))
		return ACCEL_E_RQ;
	if (!dw && !!(d.flags & ACCEL_F_MID_U8) != !!(d.flags & ACCEL_F_OUT_U8))
		return ACCEL_E_RQ;
	if (d.deform != ACCEL_DEF_NONE) {
		if (!dw || d.deform > ACCEL_DEF_SQUARE || d.bound < 1 || d.bound > ACCEL_MAX_BOUND ||
		    d.stride != 1 || d.pad_t != 1 || d.pad_l != 1 || d.aux_cw < 1 ||
		    d.aux_cw > ACCEL_MAX_AUX_CW ||
		    d.aux_cw * 16 < (d.deform == ACCEL_DEF_SQUARE ? 1u : 18u))
			return ACCEL_E_DEFORM;
	}
	uint32_t e;
	if (pw && (e = check_stage(d.pw)) != ACCEL_OK)
		return e;
	if (dw && (e = check_stage(d.dw)) != ACCEL_OK)
		return e;
	return ACCEL_OK;
}

/* ---- parameters → on-chip memories --------------------------------------- */
void load_rq(const word128 *params, uint32_t off, int nc16, rq_params &rq)
{
	const word128 *p = params + off / 16;
	for (int a = 0; a < 3; a++) {
		int32_t *dst = a == 0 ? rq.mult : a == 1 ? rq.shift : rq.bias;
		for (int i = 0; i < nc16 / 4; i++) {
#pragma HLS PIPELINE II = 1
			word128 w = p[a * (nc16 / 4) + i];
			for (int j = 0; j < 4; j++)
				dst[4 * i + j] = (int32_t)w.u32(j);
		}
	}
}

void load_params(const accel_desc &d, const word128 *params, tile_params &tp)
{
	int nc16 = (int)((d.nc + 15) & ~15u);
	if (d.flags & ACCEL_F_PW) {
		bool w4 = d.wbits == 4;
		int row = w4 ? (int)(d.in_cw + 1) / 2 : (int)d.in_cw; /* words per output channel */
		int per = w4 ? 32 : 16;
		int32_t zp = d.pw.w_zp;
		bool u8 = d.flags & ACCEL_F_W_U8;
		const word128 *p = params + d.pw.w_off / 16;
	load_pw:
		for (int co = 0; co < (int)d.nc; co++)
			for (int i = 0; i < row; i++) {
#pragma HLS PIPELINE II = 1
				word128 w = p[co * row + i];
				for (int j = 0; j < per; j++) {
					int ci = i * per + j;
					if (ci >= ACCEL_MAX_CIN)
						break;
					int32_t v = w4 ? w.s4(j) : (u8 ? w.u8(j) : w.s8(j));
					/* beyond cin: 0, so the MAC beat needs no bound */
					tp.pw[co][ci] = ci < (int)d.cin ? wval(v - zp) : wval(0);
				}
			}
		load_rq(params, d.pw.rq_off, nc16, tp.rq_pw);
	}
	if (d.flags & ACCEL_F_DW) {
		int32_t zp = d.dw.w_zp;
		bool u8 = d.flags & ACCEL_F_W_U8;
		const word128 *p = params + d.dw.w_off / 16;
	load_dw:
		for (int t = 0; t < 9; t++)
			for (int i = 0; i < nc16 / 16; i++) {
#pragma HLS PIPELINE II = 1
				word128 w = p[t * (nc16 / 16) + i];
				for (int j = 0; j < 16; j++)
					tp.dw[t][16 * i + j] = wval((u8 ? w.u8(j) : w.s8(j)) - zp);
			}
		load_rq(params, d.dw.rq_off, nc16, tp.rq_dw);
	}
}

/* ---- DATAFLOW processes ----------------------------------------------------- */
struct geom {
	int32_t my0, mh, mx0, mw; /* mid rectangle of the tile */
	int ncw;                  /* channel words of the tile */
	int inw;                  /* input words read per pixel */
};

void read_input(const accel_desc &d, const geom &g, const word128 *in, fifo<word128> &s_in)
{
	int w0 = (d.flags & ACCEL_F_PW) ? 0 : (int)d.c0 / 16;
read_rows:
	for (int y = g.my0; y < g.my0 + g.mh; y++)
		for (int x = g.mx0; x < g.mx0 + g.mw; x++)
			for (int i = 0; i < g.inw; i++) {
#pragma HLS PIPELINE II = 1
				s_in.write(in[((size_t)y * d.in_w + x) * d.in_cw + w0 + i]);
			}
}

void stage_pw(const accel_desc &d, const geom &g, const tile_params &tp, fifo<word128> &s_in,
	      fifo<word128> &s_mid)
{
	int npix = g.mh * g.mw;
	if (!(d.flags & ACCEL_F_PW)) {
	pass:
		for (int i = 0; i < npix * g.ncw; i++) {
#pragma HLS PIPELINE II = 1
			s_mid.write(s_in.read());
		}
		return;
	}
	bool in_u8 = d.flags & ACCEL_F_IN_U8, mid_u8 = d.flags & ACCEL_F_MID_U8;
	xval xb[ACCEL_MAX_CIN];
#pragma HLS ARRAY_PARTITION variable = xb cyclic factor = 16
	int32_t acc[ACCEL_MAX_TILE_C];
#pragma HLS ARRAY_PARTITION variable = acc complete
pixels:
	for (int p = 0; p < npix; p++) {
		for (int i = 0; i < g.inw; i++) {
#pragma HLS PIPELINE II = 1
			word128 w = s_in.read();
			for (int j = 0; j < 16; j++)
				xb[16 * i + j] = xval((in_u8 ? w.u8(j) : w.s8(j)) - d.pw.x_zp);
		}
		for (int co = 0; co < (int)d.nc; co++)
			acc[co] = 0;
		/* one beat = 16 input channels × ACCEL_PE_OUT output channels */
	mac:
		for (int co0 = 0; co0 < (int)d.nc; co0 += ACCEL_PE_OUT)
			for (int ci0 = 0; ci0 < (int)d.cin; ci0 += 16) {
#pragma HLS PIPELINE II = 1
				for (int k = 0; k < ACCEL_PE_OUT; k++) {
					int co = co0 + k;
					if (co >= (int)d.nc)
						break;
					int32_t s = 0;
					for (int j = 0; j < 16; j++)
						s += (int32_t)tp.pw[co][ci0 + j] * (int32_t)xb[ci0 + j];
					acc[co] = acc_t((int64_t)acc[co] + s);
				}
			}
		for (int i = 0; i < g.ncw; i++) {
#pragma HLS PIPELINE II = 1
			word128 o;
			for (int j = 0; j < 16; j++) {
				int c = 16 * i + j;
				int32_t v = 0;
				if (c < (int)d.nc)
					v = requant(acc[c], d.pw.rq_mode, tp.rq_pw.mult[c],
						    tp.rq_pw.shift[c], tp.rq_pw.bias[c], d.pw);
				(void)mid_u8; /* the byte is the same for int8 and uint8 */
				o.set8(j, v);
			}
			s_mid.write(o);
		}
	}
}

/* position of tap t for output centre (cy, cx): false when outside the image */
bool tap_pos(const accel_desc &d, const word128 *ow, int32_t cy, int32_t cx, int t, int32_t *py,
	     int32_t *px)
{
	int32_t ky = t / 3 - 1, kx = t % 3 - 1;
	int32_t b = d.bound;
	if (d.deform == ACCEL_DEF_OFFSET) {
		int32_t dy = ow[(2 * t) / 16].s8((2 * t) % 16);
		int32_t dx = ow[(2 * t + 1) / 16].s8((2 * t + 1) % 16);
		dy = dy < -b ? -b : dy > b ? b : dy;
		dx = dx < -b ? -b : dx > b ? b : dx;
		*py = cy + ky + dy;
		*px = cx + kx + dx;
	} else if (d.deform == ACCEL_DEF_SQUARE) {
		int32_t s = ow[0].s8(0) + 1;
		s = s < 0 ? 0 : s > b ? b : s;
		*py = cy + ky * s;
		*px = cx + kx * s;
	} else {
		*py = cy + ky;
		*px = cx + kx;
	}
	return *py >= 0 && *py < (int32_t)d.mid_h && *px >= 0 && *px < (int32_t)d.mid_w;
}

void stage_dw(const accel_desc &d, const geom &g, const tile_params &tp, const word128 *aux,
	      fifo<word128> &s_mid, fifo<word128> &s_out, line_buf &lbuf)
{
	if (!(d.flags & ACCEL_F_DW)) {
	pass:
		for (int i = 0; i < g.mh * g.mw * g.ncw; i++) {
#pragma HLS PIPELINE II = 1
			s_out.write(s_mid.read());
		}
		return;
	}
	bool mid_u8 = d.flags & ACCEL_F_MID_U8;
	xval(&lb)[ACCEL_LB_ROWS][ACCEL_MAX_W][ACCEL_MAX_TILE_C] = lbuf.v;
	int32_t loaded = g.my0; /* next mid row to pull from s_mid */
	int32_t s = (int32_t)d.stride;
rows:
	for (int32_t y = (int32_t)d.oy0; y < (int32_t)(d.oy0 + d.oh); y++) {
		int32_t cy = y * s + 1 - d.pad_t;
		int32_t need = cy + accel_extent(&d);
		if (need > g.my0 + g.mh - 1)
			need = g.my0 + g.mh - 1;
	fill:
		for (; loaded <= need; loaded++) {
			int r = loaded % ACCEL_LB_ROWS;
			for (int x = 0; x < g.mw; x++)
				for (int i = 0; i < g.ncw; i++) {
#pragma HLS PIPELINE II = 1
					word128 w = s_mid.read();
					for (int j = 0; j < 16; j++)
						lb[r][x][16 * i + j] =
							xval((mid_u8 ? w.u8(j) : w.s8(j)) - d.dw.x_zp);
				}
		}
	cols:
		for (int32_t x = (int32_t)d.ox0; x < (int32_t)(d.ox0 + d.ow); x++) {
			int32_t cx = x * s + 1 - d.pad_l;
			word128 offs[ACCEL_MAX_AUX_CW] = {};
			if (d.deform != ACCEL_DEF_NONE)
				for (uint32_t i = 0; i < d.aux_cw; i++)
					offs[i] = aux[((size_t)cy * d.mid_w + cx) * d.aux_cw + i];
			for (int i = 0; i < g.ncw; i++) {
				/* 3 columns per row bank, 2 ports each: II 2 (deformable taps
				 * may share a row: the tool raises it, the model charges 5) */
#pragma HLS PIPELINE II = 2
				int32_t acc[16];
				for (int j = 0; j < 16; j++)
					acc[j] = 0;
				for (int t = 0; t < 9; t++) {
					int32_t py, px;
					if (!tap_pos(d, offs, cy, cx, t, &py, &px))
						continue;
					const xval *v = lb[py % ACCEL_LB_ROWS][px - g.mx0];
					for (int j = 0; j < 16; j++)
						acc[j] += (int32_t)tp.dw[t][16 * i + j] *
							  (int32_t)v[16 * i + j];
				}
				word128 o;
				for (int j = 0; j < 16; j++) {
					int c = 16 * i + j;
					int32_t r = 0;
					if (c < (int)d.nc)
						r = requant(acc[j], d.dw.rq_mode, tp.rq_dw.mult[c],
							    tp.rq_dw.shift[c], tp.rq_dw.bias[c], d.dw);
					o.set8(j, r);
				}
				s_out.write(o);
			}
		}
	}
	/* rows of the tile's mid range below the last output's window */
drain:
	for (; loaded < g.my0 + g.mh; loaded++)
		for (int i = 0; i < g.mw * g.ncw; i++)
			(void)s_mid.read();
}

void write_out(const accel_desc &d, const geom &g, fifo<word128> &s_out, word128 *out)
{
	int w0 = (int)d.c0 / 16;
write_rows:
	for (uint32_t y = d.oy0; y < d.oy0 + d.oh; y++)
		for (uint32_t x = d.ox0; x < d.ox0 + d.ow; x++)
			for (int i = 0; i < g.ncw; i++) {
#pragma HLS PIPELINE II = 1
				out[((size_t)y * d.out_w + x) * d.out_cw + w0 + i] = s_out.read();
			}
}

/* only the four processes: the DATAFLOW region overlaps them */
void dataflow_tile(const accel_desc &d, const geom &g, const tile_params &tp, const word128 *in,
		   const word128 *aux, word128 *out, line_buf &lb)
{
#pragma HLS DATAFLOW
	fifo<word128> s_in, s_mid, s_out;
#pragma HLS STREAM variable = s_in depth = 64
#pragma HLS STREAM variable = s_mid depth = 64
#pragma HLS STREAM variable = s_out depth = 64
	read_input(d, g, in, s_in);
	stage_pw(d, g, tp, s_in, s_mid);
	stage_dw(d, g, tp, aux, s_mid, s_out, lb);
	write_out(d, g, s_out, out);
}

uint32_t accel_core(const accel_desc *desc, uint32_t n_desc, const word128 *params,
		    const word128 *in, const word128 *aux, word128 *out, tile_params &tp,
		    line_buf &lb)
{
descs:
	for (uint32_t i = 0; i < n_desc; i++) {
		accel_desc d;
		memcpy(&d, &desc[i], sizeof(d));
		uint32_t e = check_desc(d);
		if (e != ACCEL_OK)
			return (i << 8) | e;
		geom g;
		bool dw = d.flags & ACCEL_F_DW;
		accel_mid_range(&d, (int32_t)d.oy0, (int32_t)d.oh, dw ? d.pad_t : 0,
				(int32_t)d.mid_h, &g.my0, &g.mh);
		accel_mid_range(&d, (int32_t)d.ox0, (int32_t)d.ow, dw ? d.pad_l : 0,
				(int32_t)d.mid_w, &g.mx0, &g.mw);
		g.ncw = (int)(d.nc + 15) / 16;
		g.inw = (d.flags & ACCEL_F_PW) ? (int)(d.cin + 15) / 16 : g.ncw;
		load_params(d, params, tp);
		dataflow_tile(d, g, tp, in, aux, out, lb);
	}
	return ACCEL_OK;
}

} // namespace

/* The synthesized top function.  The weight memories and the line buffer
 * are the kernel's BRAM/URAM: static here (one kernel instance). */
extern "C" uint32_t detd_accel(const accel_desc *desc, uint32_t n_desc, const word128 *params,
			       const word128 *in, const word128 *aux, word128 *out)
{
#pragma HLS INTERFACE m_axi port = desc offset = slave bundle = gmem0 depth = 64
#pragma HLS INTERFACE m_axi port = params offset = slave bundle = gmem0 max_read_burst_length = 64
#pragma HLS INTERFACE m_axi port = in offset = slave bundle = gmem1 max_read_burst_length = 64
#pragma HLS INTERFACE m_axi port = aux offset = slave bundle = gmem3
#pragma HLS INTERFACE m_axi port = out offset = slave bundle = gmem2 max_write_burst_length = 64
#pragma HLS INTERFACE s_axilite port = desc
#pragma HLS INTERFACE s_axilite port = n_desc
#pragma HLS INTERFACE s_axilite port = params
#pragma HLS INTERFACE s_axilite port = in
#pragma HLS INTERFACE s_axilite port = aux
#pragma HLS INTERFACE s_axilite port = out
#pragma HLS INTERFACE s_axilite port = return
	static tile_params tp;
#pragma HLS ARRAY_PARTITION variable = tp.pw cyclic factor = 16 dim = 2
#pragma HLS ARRAY_PARTITION variable = tp.pw cyclic factor = 8 dim = 1 // ACCEL_PE_OUT
#pragma HLS ARRAY_PARTITION variable = tp.dw cyclic factor = 16 dim = 2
	static line_buf lb;
#pragma HLS ARRAY_PARTITION variable = lb.v cyclic factor = 16 dim = 3
#pragma HLS ARRAY_PARTITION variable = lb.v complete dim = 1
	return accel_core(desc, n_desc, params, in, aux, out, tp, lb);
}

#ifndef __SYNTHESIS__
/* ---- C-simulation entry (host build only) --------------------------------- */
/* Own buffers per call (heap, ~0.9 MB): any thread, no shared state. */
extern "C" uint32_t accel_csim_run(const struct accel_desc *d, uint32_t n_desc, const void *params,
				   const void *in, const void *aux, void *out)
{
	tile_params *tp = new (std::nothrow) tile_params;
	line_buf *lb = new (std::nothrow) line_buf;
	uint32_t r = ACCEL_E_NOMEM;
	if (tp && lb)
		r = accel_core(d, n_desc, static_cast<const word128 *>(params),
			       static_cast<const word128 *>(in), static_cast<const word128 *>(aux),
			       static_cast<word128 *>(out), *tp, *lb);
	delete tp;
	delete lb;
	return r;
}
#endif
