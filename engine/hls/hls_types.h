/*
 * hls_types.h — the few arbitrary-width integer and stream types the
 * detd_accel kernel needs, written for this project (no vendor headers are
 * available here; this is not a copy of them).
 *
 * xint<W>   a W-bit two's-complement integer (1 ≤ W ≤ 32): assignment wraps,
 *           like a W-bit register; sat() saturates instead.
 * xuint<W>  the unsigned counterpart.
 * word128   one AXI data beat: 16 bytes (16 int8 channels, 32 int4 weights).
 * fifo<T>   a FIFO between DATAFLOW processes.  In C-simulation it is an
 *           unbounded queue (processes run one after the other, as in the
 *           vendor's C-sim); in hardware a FIFO of the STREAM pragma's depth.
 *
 * Under __SYNTHESIS__ (Vitis HLS) they are the tool's ap_int / hls::stream;
 * the widths here are the widths the hardware uses, so the C-sim wraps and
 * saturates exactly where the RTL would.
 */
#ifndef DETD_ENGINE_HLS_TYPES_H
#define DETD_ENGINE_HLS_TYPES_H

#include <stdint.h>

#ifdef __SYNTHESIS__
/* Vitis HLS: the tool's own types (its headers ship with the tool) */
#include <ap_int.h>
#include <hls_stream.h>
namespace detd_hls {
template <int W> using xint = ap_int<W>;
template <int W> using xuint = ap_uint<W>;
template <typename T> using fifo = hls::stream<T>;
template <int W> inline ap_int<W> sat_int(int64_t x)
{
	const int64_t hi = ((int64_t)1 << (W - 1)) - 1, lo = -((int64_t)1 << (W - 1));
	return ap_int<W>(x < lo ? lo : x > hi ? hi : x);
}
} // namespace detd_hls
#else
#include <deque>

namespace detd_hls {

template <int W> struct xint {
	static_assert(W >= 1 && W <= 32, "xint width");
	int32_t v;
	xint() : v(0) {}
	xint(int64_t x) : v(wrap(x)) {}
	static int32_t wrap(int64_t x)
	{
		/* keep the low W bits, sign-extend bit W−1 */
		uint64_t m = (W == 32) ? 0xffffffffull : ((1ull << W) - 1);
		uint64_t u = (uint64_t)x & m;
		if (u & (1ull << (W - 1)))
			u |= ~m;
		return (int32_t)(int64_t)u;
	}
	static xint sat(int64_t x)
	{
		const int64_t hi = ((int64_t)1 << (W - 1)) - 1, lo = -((int64_t)1 << (W - 1));
		xint r;
		r.v = (int32_t)(x < lo ? lo : x > hi ? hi : x);
		return r;
	}
	operator int32_t() const { return v; }
};

template <int W> struct xuint {
	static_assert(W >= 1 && W <= 32, "xuint width");
	uint32_t v;
	xuint() : v(0) {}
	xuint(uint64_t x) : v((uint32_t)(x & ((W == 32) ? 0xffffffffull : ((1ull << W) - 1)))) {}
	operator uint32_t() const { return v; }
};

} // namespace detd_hls
#endif

namespace detd_hls {
struct word128 {
	uint8_t b[16];
	int32_t s8(int i) const { return (int8_t)b[i]; }
	int32_t u8(int i) const { return b[i]; }
	/* signed 4-bit lane i of 32 (even lanes in the low nibble) */
	int32_t s4(int i) const
	{
		uint32_t n = (b[i >> 1] >> ((i & 1) * 4)) & 0xf;
		return (int32_t)n - ((n & 8) ? 16 : 0);
	}
	void set8(int i, int32_t v) { b[i] = (uint8_t)(v & 0xff); }
	uint32_t u32(int i) const
	{
		return (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 |
		       (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24;
	}
};

} // namespace detd_hls

#ifndef __SYNTHESIS__
namespace detd_hls {
template <int W> inline xint<W> sat_int(int64_t x)
{
	return xint<W>::sat(x);
}

template <typename T> class fifo {
public:
	fifo() {}
	void write(const T &x) { q_.push_back(x); }
	T read()
	{
		/* reading an empty FIFO deadlocks the hardware: make it loud */
		if (q_.empty())
			__builtin_trap();
		T x = q_.front();
		q_.pop_front();
		return x;
	}
	bool empty() const { return q_.empty(); }

private:
	std::deque<T> q_;
};
} // namespace detd_hls
#endif

#endif
