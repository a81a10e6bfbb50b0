/*
 * h264dec.c — detdh264dec: H.264 → raw video on libavcodec, for detd's own
 * pipelines (see h264dec.h).
 *
 * Why detd decodes H.264 itself instead of using avdec_h264 (issue #11,
 * memory): gst-libav links libavformat and libavfilter as well as
 * libavcodec, and loading their dependency trees (flite voices, librsvg,
 * srt, libplacebo, …) costs every detd process ~20 MB of resident pages
 * (measured: dlopen of libavcodec alone 16.9 MB RSS, with libavformat and
 * libavfilter 37.4 MB), and per 960×540 stream avdec_h264 measured ~12 MB
 * of anonymous memory against ~9 MB here.  This element:
 *
 *  - depends on libavcodec and libavutil only;
 *  - decodes on the streaming thread (thread_count 1: the streams already
 *    decode in parallel with each other and with inference, and each frame
 *    thread would hold its own pictures);
 *  - hands libavcodec's pictures downstream without a copy: every plane
 *    becomes a read-only GstMemory that holds a reference to the AVFrame,
 *    described by a GstVideoMeta (strides, plane offsets), so a picture
 *    returns to libavcodec's pool as soon as the last GStreamer buffer
 *    using it is gone — a frame the rate limit drops right after the decoder
 *    costs no memory at all.  When downstream cannot take a GstVideoMeta,
 *    the planes are copied into a buffer of the negotiated layout instead.
 *
 * Frames are matched to GStreamer's by carrying system_frame_number in the
 * packet's pts (libavcodec returns it on the frame it belongs to, in output
 * order).  Formats: 8-bit 4:2:0/4:2:2/4:4:4 and monochrome, 10-bit 4:2:0;
 * anything else is a clear not-negotiated error naming the format.
 */
#include "h264dec.h"

#include "detd-build.h"

#if DETD_HAVE_AVCODEC

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gst/gst.h>
#include <gst/video/video.h>
#include <gst/video/gstvideodecoder.h>
#include <libavcodec/avcodec.h>
#include <libavutil/error.h>
#include <libavutil/frame.h>
#include <libavutil/log.h>
#include <libavutil/pixdesc.h>
#include <libavutil/macros.h>
#include <libavcodec/version_major.h>
#include <libavutil/version.h>

#include "log.h"

#define TOPIC "h264dec"

/*
 * libavcodec and libavutil are opened with dlopen() when the first
 * detdh264dec goes from NULL to READY, not linked: the libraries and their
 * dependency tree cost ~17 MB of resident pages (13.7 MB of them file pages
 * of ~90 libraries), which a daemon without an H.264 stream (test patterns,
 * MJPEG cameras, CoDeNet) should not pay.  The sonames are the ones of the
 * headers this was built with.  If they cannot be loaded the element refuses
 * READY, and decodebin goes on to the next H.264 decoder (avdec_h264).
 * Never closed: the functions stay valid for the life of the process.
 */
#define LAV_CODEC_FNS(X)                                                                  \
	X(avcodec_find_decoder) X(avcodec_alloc_context3) X(avcodec_open2)               \
	X(avcodec_free_context) X(avcodec_send_packet) X(avcodec_receive_frame)          \
	X(avcodec_flush_buffers) X(av_packet_alloc) X(av_packet_free)
#define LAV_UTIL_FNS(X)                                                                   \
	X(av_frame_alloc) X(av_frame_free) X(av_frame_clone) X(av_frame_unref)           \
	X(av_mallocz) X(av_realloc) X(av_freep) X(av_strerror) X(av_get_pix_fmt_name)    \
	X(av_log_set_callback)

static struct {
#define LAV_MEMBER(f) __typeof__(&f) f;
	LAV_CODEC_FNS(LAV_MEMBER) LAV_UTIL_FNS(LAV_MEMBER)
#undef LAV_MEMBER
} L;

#define LAVCODEC_SONAME "libavcodec.so." AV_STRINGIFY(LIBAVCODEC_VERSION_MAJOR)
#define LAVUTIL_SONAME "libavutil.so." AV_STRINGIFY(LIBAVUTIL_VERSION_MAJOR)

/* pthread_once, not g_once: GLib's futex-based once is invisible to
 * ThreadSanitizer, which then reports the readers of what it published. */
static pthread_once_t lav_once = PTHREAD_ONCE_INIT;
static gboolean lav_ok;
static char lav_error[256];

static void av_log_cb(void *avcl, int level, const char *fmt, va_list ap);

static bool lav_sym(void *h, const char *lib, const char *name, void *slot)
{
	void *p = dlsym(h, name);
	if (!p) {
		snprintf(lav_error, sizeof(lav_error), "%s has no %s", lib, name);
		return false;
	}
	memcpy(slot, &p, sizeof(p)); /* object to function pointer, as POSIX allows */
	return true;
}

static void lav_load_once(void)
{
	/* DETD_TEST_AVCODEC: another name, for the test of the fallback */
	const char *cname = getenv("DETD_TEST_AVCODEC");
	void *u = dlopen(LAVUTIL_SONAME, RTLD_NOW | RTLD_LOCAL);
	void *c = u ? dlopen(cname && *cname ? cname : LAVCODEC_SONAME, RTLD_NOW | RTLD_LOCAL)
		    : NULL;
	if (!u || !c) {
		const char *e = dlerror();
		snprintf(lav_error, sizeof(lav_error), "%s", e ? e : "dlopen failed");
	} else {
		bool ok = true;
#define LAV_LOAD_C(f) ok = ok && lav_sym(c, LAVCODEC_SONAME, #f, &L.f);
#define LAV_LOAD_U(f) ok = ok && lav_sym(u, LAVUTIL_SONAME, #f, &L.f);
		LAV_CODEC_FNS(LAV_LOAD_C)
		LAV_UTIL_FNS(LAV_LOAD_U)
#undef LAV_LOAD_C
#undef LAV_LOAD_U
		if (ok) {
			L.av_log_set_callback(av_log_cb);
			lav_ok = TRUE;
		}
	}
	if (!lav_ok)
		log_warn(TOPIC, "cannot load libavcodec (%s): H.264 goes to GStreamer's "
				"decoders", lav_error);
}

/* Once per process; true when every function is there. */
static gboolean lav_load(void)
{
	pthread_once(&lav_once, lav_load_once);
	return lav_ok;
}

/* av_err2str() without its link-time reference to av_strerror. */
static const char *errstr(int r, char *buf, size_t len)
{
	if (L.av_strerror(r, buf, len) < 0)
		snprintf(buf, len, "error %d", r);
	return buf;
}

#define DETD_TYPE_H264_DEC (detd_h264_dec_get_type())
G_DECLARE_FINAL_TYPE(DetdH264Dec, detd_h264_dec, DETD, H264_DEC, GstVideoDecoder)

struct _DetdH264Dec {
	GstVideoDecoder parent;
	AVCodecContext *ctx;
	AVPacket *pkt;
	AVFrame *frame;
	GstVideoCodecState *in_state; /* a reference; the caps set_format saw */
	uint8_t *pad_buf;             /* input copy with libavcodec's zeroed tail */
	size_t pad_cap;
	gboolean downstream_meta;     /* decide_allocation: GstVideoMeta is fine */
	/* What the current output state was made from. */
	GstVideoFormat out_fmt;
	int out_w, out_h, out_range;
};

G_DEFINE_TYPE(DetdH264Dec, detd_h264_dec, GST_TYPE_VIDEO_DECODER)

#define SRC_FORMATS "{ I420, Y42B, Y444, GRAY8, I420_10LE }"

/* Largest access unit taken (no picture exceeds the coded picture buffer:
 * 37.5 MB for High profile up to level 5.2, the 4K levels). */
#define PACKET_MAX (64 << 20)

static GstStaticPadTemplate sink_tmpl = GST_STATIC_PAD_TEMPLATE(
	"sink", GST_PAD_SINK, GST_PAD_ALWAYS,
	GST_STATIC_CAPS("video/x-h264, stream-format = (string) { avc, byte-stream }, "
			"alignment = (string) au"));
static GstStaticPadTemplate src_tmpl = GST_STATIC_PAD_TEMPLATE(
	"src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(GST_VIDEO_CAPS_MAKE(SRC_FORMATS)));

static GstVideoFormat map_format(int pix_fmt, int *full_range)
{
	*full_range = 0;
	switch (pix_fmt) {
	case AV_PIX_FMT_YUVJ420P:
		*full_range = 1;
		/* fallthrough */
	case AV_PIX_FMT_YUV420P:
		return GST_VIDEO_FORMAT_I420;
	case AV_PIX_FMT_YUVJ422P:
		*full_range = 1;
		/* fallthrough */
	case AV_PIX_FMT_YUV422P:
		return GST_VIDEO_FORMAT_Y42B;
	case AV_PIX_FMT_YUVJ444P:
		*full_range = 1;
		/* fallthrough */
	case AV_PIX_FMT_YUV444P:
		return GST_VIDEO_FORMAT_Y444;
	case AV_PIX_FMT_GRAY8:
		return GST_VIDEO_FORMAT_GRAY8;
	case AV_PIX_FMT_YUV420P10LE:
		return GST_VIDEO_FORMAT_I420_10LE;
	default:
		return GST_VIDEO_FORMAT_UNKNOWN;
	}
}

/* libavcodec's AVCOL_* values are the ISO/IEC 23001-8 code points of the
 * stream's VUI, which GStreamer converts directly.  Unspecified (2) keeps
 * GStreamer's default for the picture size, as avdec_h264 does. */
static void set_colorimetry(GstVideoInfo *info, const AVFrame *f, int full_range)
{
	GstVideoColorimetry *c = &info->colorimetry;
	if (f->color_range == AVCOL_RANGE_JPEG || full_range)
		c->range = GST_VIDEO_COLOR_RANGE_0_255;
	else if (f->color_range == AVCOL_RANGE_MPEG)
		c->range = GST_VIDEO_COLOR_RANGE_16_235;
	if (f->colorspace != AVCOL_SPC_UNSPECIFIED && f->colorspace != AVCOL_SPC_RGB) {
		GstVideoColorMatrix m = gst_video_color_matrix_from_iso((guint)f->colorspace);
		if (m != GST_VIDEO_COLOR_MATRIX_UNKNOWN)
			c->matrix = m;
	}
	if (f->color_primaries != AVCOL_PRI_UNSPECIFIED) {
		GstVideoColorPrimaries p = gst_video_color_primaries_from_iso((guint)f->color_primaries);
		if (p != GST_VIDEO_COLOR_PRIMARIES_UNKNOWN)
			c->primaries = p;
	}
	if (f->color_trc != AVCOL_TRC_UNSPECIFIED) {
		GstVideoTransferFunction t = gst_video_transfer_function_from_iso((guint)f->color_trc);
		if (t != GST_VIDEO_TRANSFER_UNKNOWN)
			c->transfer = t;
	}
}

static void close_codec(DetdH264Dec *self)
{
	L.avcodec_free_context(&self->ctx); /* NULL-safe, frees extradata */
	self->out_fmt = GST_VIDEO_FORMAT_UNKNOWN;
}

static gboolean open_codec(DetdH264Dec *self)
{
	close_codec(self);
	const AVCodec *codec = L.avcodec_find_decoder(AV_CODEC_ID_H264);
	if (!codec) {
		GST_ELEMENT_ERROR(self, LIBRARY, INIT, ("libavcodec has no H.264 decoder"), (NULL));
		return FALSE;
	}
	self->ctx = L.avcodec_alloc_context3(codec);
	if (!self->ctx)
		return FALSE;
	self->ctx->thread_count = 1;
	/* avcC (stream-format=avc): the SPS/PPS and the NAL length size. */
	const GstStructure *s = gst_caps_get_structure(self->in_state->caps, 0);
	const GValue *cd = gst_structure_get_value(s, "codec_data");
	if (cd && G_VALUE_HOLDS(cd, GST_TYPE_BUFFER)) {
		GstBuffer *b = gst_value_get_buffer(cd);
		gsize n = gst_buffer_get_size(b);
		if (n > 0 && n < (1u << 20)) {
			self->ctx->extradata = L.av_mallocz(n + AV_INPUT_BUFFER_PADDING_SIZE);
			if (!self->ctx->extradata) {
				close_codec(self);
				return FALSE;
			}
			gst_buffer_extract(b, 0, self->ctx->extradata, n);
			self->ctx->extradata_size = (int)n;
		}
	}
	int r = L.avcodec_open2(self->ctx, codec, NULL);
	if (r < 0) {
		char eb[AV_ERROR_MAX_STRING_SIZE];
		GST_ELEMENT_ERROR(self, LIBRARY, INIT, ("cannot open the H.264 decoder"),
				  ("avcodec_open2: %s", errstr(r, eb, sizeof(eb))));
		close_codec(self);
		return FALSE;
	}
	return TRUE;
}

static gboolean ensure_output_state(DetdH264Dec *self, const AVFrame *f)
{
	GstVideoDecoder *dec = GST_VIDEO_DECODER(self);
	int full = 0;
	GstVideoFormat fmt = map_format(f->format, &full);
	if (fmt == GST_VIDEO_FORMAT_UNKNOWN) {
		const char *name = L.av_get_pix_fmt_name(f->format);
		GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("unsupported H.264 picture format '%s'",
							 name ? name : "?"),
				  ("detdh264dec decodes 8-bit 4:2:0/4:2:2/4:4:4/gray and 10-bit "
				   "4:2:0 (DETD_H264DEC=off uses GStreamer's decoders)"));
		return FALSE;
	}
	if (fmt == self->out_fmt && f->width == self->out_w && f->height == self->out_h &&
	    (int)f->color_range == self->out_range && !gst_pad_check_reconfigure(dec->srcpad))
		return TRUE;
	GstVideoCodecState *st =
		gst_video_decoder_set_output_state(dec, fmt, f->width, f->height, self->in_state);
	if (!st)
		return FALSE;
	if (f->sample_aspect_ratio.num > 0 && f->sample_aspect_ratio.den > 0) {
		st->info.par_n = f->sample_aspect_ratio.num;
		st->info.par_d = f->sample_aspect_ratio.den;
	}
	set_colorimetry(&st->info, f, full);
	/* Pictures leave in display order, has_b_frames pictures late: a live
	 * pipeline must know, or a synchronising sink sees them as late. */
	if (st->info.fps_n > 0 && st->info.fps_d > 0) {
		GstClockTime lat = gst_util_uint64_scale((guint64)self->ctx->has_b_frames,
							 (guint64)st->info.fps_d * GST_SECOND,
							 (guint64)st->info.fps_n);
		gst_video_decoder_set_latency(dec, lat, lat);
	}
	gst_video_codec_state_unref(st);
	if (!gst_video_decoder_negotiate(dec))
		return FALSE;
	self->out_fmt = fmt;
	self->out_w = f->width;
	self->out_h = f->height;
	self->out_range = (int)f->color_range;
	return TRUE;
}

static void frame_unref_notify(gpointer data)
{
	AVFrame *f = data;
	L.av_frame_free(&f);
}

/* The planes of f as one GstBuffer of read-only memories that keep f's
 * pictures alive (one AVFrame reference per memory, since downstream may
 * keep a memory longer than the buffer). */
static GstBuffer *wrap_frame(const AVFrame *f, const GstVideoInfo *info)
{
	guint np = GST_VIDEO_INFO_N_PLANES(info);
	gsize offset[GST_VIDEO_MAX_PLANES] = { 0 };
	gint stride[GST_VIDEO_MAX_PLANES] = { 0 };
	GstBuffer *buf = gst_buffer_new();
	gsize off = 0;
	for (guint i = 0; i < np; i++) {
		if (!f->data[i] || f->linesize[i] <= 0) {
			gst_buffer_unref(buf);
			return NULL;
		}
		int ph = GST_VIDEO_FORMAT_INFO_SCALE_HEIGHT(info->finfo, i, f->height);
		gsize size = (gsize)f->linesize[i] * (gsize)ph;
		AVFrame *ref = L.av_frame_clone(f);
		if (!ref) {
			gst_buffer_unref(buf);
			return NULL;
		}
		gst_buffer_append_memory(buf, gst_memory_new_wrapped(GST_MEMORY_FLAG_READONLY,
								     f->data[i], size, 0, size, ref,
								     frame_unref_notify));
		offset[i] = off;
		stride[i] = f->linesize[i];
		off += size;
	}
	gst_buffer_add_video_meta_full(buf, GST_VIDEO_FRAME_FLAG_NONE, GST_VIDEO_INFO_FORMAT(info),
				       (guint)f->width, (guint)f->height, np, offset, stride);
	return buf;
}

/* Downstream without GstVideoMeta: the wrapped planes copied into a buffer
 * of the negotiated layout (gst_video_frame_copy). */
static GstFlowReturn copy_frame(DetdH264Dec *self, const AVFrame *f, GstVideoCodecFrame *out,
				const GstVideoInfo *info)
{
	GstBuffer *src = wrap_frame(f, info);
	if (!src)
		return GST_FLOW_ERROR;
	GstFlowReturn fr = gst_video_decoder_allocate_output_frame(GST_VIDEO_DECODER(self), out);
	GstVideoFrame sf, df;
	if (fr == GST_FLOW_OK) {
		if (!gst_video_frame_map(&sf, (GstVideoInfo *)info, src, GST_MAP_READ)) {
			fr = GST_FLOW_ERROR;
		} else {
			if (gst_video_frame_map(&df, (GstVideoInfo *)info, out->output_buffer,
						GST_MAP_WRITE)) {
				if (!gst_video_frame_copy(&df, &sf))
					fr = GST_FLOW_ERROR;
				gst_video_frame_unmap(&df);
			} else {
				fr = GST_FLOW_ERROR;
			}
			gst_video_frame_unmap(&sf);
		}
	}
	gst_buffer_unref(src);
	return fr;
}

static GstFlowReturn push_frame(DetdH264Dec *self, const AVFrame *f)
{
	GstVideoDecoder *dec = GST_VIDEO_DECODER(self);
	/* After a flush libavcodec may still return a picture of a packet whose
	 * GstVideoCodecFrame is gone: nothing to attach it to. */
	if (f->pts == AV_NOPTS_VALUE || f->pts < 0 || f->pts > G_MAXUINT32)
		return GST_FLOW_OK;
	/* system_frame_number is a guint32 (past 2^31 after 2.3 years at 30 fps);
	 * get_frame() compares it as one, through an int */
	GstVideoCodecFrame *out = gst_video_decoder_get_frame(dec, (int)(guint32)f->pts);
	if (!out)
		return GST_FLOW_OK;
	if (!ensure_output_state(self, f)) {
		gst_video_decoder_release_frame(dec, out);
		return GST_FLOW_NOT_NEGOTIATED;
	}
	GstVideoCodecState *st = gst_video_decoder_get_output_state(dec);
	GstFlowReturn fr = GST_FLOW_OK;
	if (self->downstream_meta) {
		out->output_buffer = wrap_frame(f, &st->info);
		if (!out->output_buffer)
			fr = GST_FLOW_ERROR;
	} else {
		fr = copy_frame(self, f, out, &st->info);
	}
	gst_video_codec_state_unref(st);
	if (fr != GST_FLOW_OK) {
		gst_video_decoder_release_frame(dec, out);
		if (fr == GST_FLOW_ERROR)
			GST_ELEMENT_ERROR(self, RESOURCE, FAILED, ("out of memory for a picture"),
					  (NULL));
		return fr;
	}
	return gst_video_decoder_finish_frame(dec, out);
}

/* Every picture libavcodec has ready. */
static GstFlowReturn receive_all(DetdH264Dec *self)
{
	for (;;) {
		int r = L.avcodec_receive_frame(self->ctx, self->frame);
		if (r == AVERROR(EAGAIN) || r == AVERROR_EOF)
			return GST_FLOW_OK;
		if (r < 0) {
			GstFlowReturn fr = GST_FLOW_OK;
			char eb[AV_ERROR_MAX_STRING_SIZE];
			GST_VIDEO_DECODER_ERROR(self, 1, STREAM, DECODE, ("H.264 decoding failed"),
						("avcodec_receive_frame: %s", errstr(r, eb, sizeof(eb))), fr);
			return fr;
		}
		GstFlowReturn fr = push_frame(self, self->frame);
		L.av_frame_unref(self->frame);
		if (fr != GST_FLOW_OK)
			return fr;
	}
}

static GstFlowReturn drain(DetdH264Dec *self)
{
	if (!self->ctx)
		return GST_FLOW_OK;
	GstFlowReturn fr = GST_FLOW_OK;
	if (L.avcodec_send_packet(self->ctx, NULL) == 0)
		fr = receive_all(self);
	/* After end of stream libavcodec accepts packets again only once flushed. */
	L.avcodec_flush_buffers(self->ctx);
	return fr;
}

static GstFlowReturn handle_frame(GstVideoDecoder *dec, GstVideoCodecFrame *frame)
{
	DetdH264Dec *self = DETD_H264_DEC(dec);
	if (!self->ctx) {
		gst_video_decoder_drop_frame(dec, frame);
		return GST_FLOW_NOT_NEGOTIATED;
	}
	GstMapInfo m;
	if (!gst_buffer_map(frame->input_buffer, &m, GST_MAP_READ)) {
		gst_video_decoder_drop_frame(dec, frame);
		return GST_FLOW_ERROR;
	}
	/* One access unit beyond any level's coded picture buffer is not H.264:
	 * refuse it rather than grow pad_buf without a limit. */
	if (m.size > PACKET_MAX) {
		gst_buffer_unmap(frame->input_buffer, &m);
		gst_video_decoder_drop_frame(dec, frame);
		GstFlowReturn fr = GST_FLOW_OK;
		GST_VIDEO_DECODER_ERROR(self, 1, STREAM, DECODE, ("H.264 access unit too large"),
					("%zu bytes, at most %d", (size_t)m.size, PACKET_MAX), fr);
		return fr;
	}
	/* libavcodec reads up to AV_INPUT_BUFFER_PADDING_SIZE bytes past the
	 * data, which must be zero: copy (compressed, so small). */
	size_t need = m.size + AV_INPUT_BUFFER_PADDING_SIZE;
	if (need > self->pad_cap) {
		uint8_t *nb = L.av_realloc(self->pad_buf, need);
		if (!nb) {
			gst_buffer_unmap(frame->input_buffer, &m);
			gst_video_decoder_drop_frame(dec, frame);
			GST_ELEMENT_ERROR(self, RESOURCE, FAILED, ("out of memory"), (NULL));
			return GST_FLOW_ERROR;
		}
		self->pad_buf = nb;
		self->pad_cap = need;
	}
	memcpy(self->pad_buf, m.data, m.size);
	memset(self->pad_buf + m.size, 0, AV_INPUT_BUFFER_PADDING_SIZE);
	gst_buffer_unmap(frame->input_buffer, &m);

	AVPacket *pkt = self->pkt;
	pkt->data = self->pad_buf;
	pkt->size = (int)m.size;
	pkt->pts = frame->system_frame_number;
	pkt->dts = AV_NOPTS_VALUE;
	pkt->flags = GST_VIDEO_CODEC_FRAME_IS_SYNC_POINT(frame) ? AV_PKT_FLAG_KEY : 0;
	/* The base class keeps the frame in its list until a picture finishes
	 * it (push_frame) or a later one makes it stale. */
	gst_video_codec_frame_unref(frame);

	int r = L.avcodec_send_packet(self->ctx, pkt);
	if (r == AVERROR(EAGAIN)) { /* pictures pending: take them, then retry */
		GstFlowReturn fr = receive_all(self);
		if (fr != GST_FLOW_OK)
			return fr;
		r = L.avcodec_send_packet(self->ctx, pkt);
	}
	if (r < 0) {
		GstFlowReturn fr = GST_FLOW_OK;
		char eb[AV_ERROR_MAX_STRING_SIZE];
		GST_VIDEO_DECODER_ERROR(self, 1, STREAM, DECODE, ("H.264 decoding failed"),
					("avcodec_send_packet: %s", errstr(r, eb, sizeof(eb))), fr);
		if (fr != GST_FLOW_OK)
			return fr;
	}
	return receive_all(self);
}

static gboolean set_format(GstVideoDecoder *dec, GstVideoCodecState *state)
{
	DetdH264Dec *self = DETD_H264_DEC(dec);
	/* New caps (new SPS/PPS in codec_data): finish what the old context
	 * holds, then start over with the new extradata. */
	if (self->ctx && drain(self) != GST_FLOW_OK)
		GST_DEBUG_OBJECT(self, "pictures of the old caps dropped (flushing or downstream error)");
	if (self->in_state)
		gst_video_codec_state_unref(self->in_state);
	self->in_state = gst_video_codec_state_ref(state);
	return open_codec(self);
}

static gboolean decide_allocation(GstVideoDecoder *dec, GstQuery *query)
{
	DetdH264Dec *self = DETD_H264_DEC(dec);
	self->downstream_meta = gst_query_find_allocation_meta(query, GST_VIDEO_META_API_TYPE, NULL);
	return GST_VIDEO_DECODER_CLASS(detd_h264_dec_parent_class)->decide_allocation(dec, query);
}

static gboolean flush(GstVideoDecoder *dec)
{
	DetdH264Dec *self = DETD_H264_DEC(dec);
	if (self->ctx)
		L.avcodec_flush_buffers(self->ctx);
	return TRUE;
}

/* drain (before new caps from upstream) and finish (end of stream) alike */
static GstFlowReturn drain_vfunc(GstVideoDecoder *dec)
{
	return drain(DETD_H264_DEC(dec));
}

static gboolean start(GstVideoDecoder *dec)
{
	DetdH264Dec *self = DETD_H264_DEC(dec);
	self->pkt = L.av_packet_alloc();
	self->frame = L.av_frame_alloc();
	return self->pkt && self->frame;
}

static gboolean stop(GstVideoDecoder *dec)
{
	DetdH264Dec *self = DETD_H264_DEC(dec);
	close_codec(self);
	L.av_packet_free(&self->pkt);
	L.av_frame_free(&self->frame);
	L.av_freep(&self->pad_buf);
	self->pad_cap = 0;
	if (self->in_state) {
		gst_video_codec_state_unref(self->in_state);
		self->in_state = NULL;
	}
	return TRUE;
}

static GstStateChangeReturn change_state(GstElement *el, GstStateChange t)
{
	/* No error message: decodebin takes a refused READY as "try the next
	 * decoder"; lav_load() has logged why, once. */
	if (t == GST_STATE_CHANGE_NULL_TO_READY && !lav_load())
		return GST_STATE_CHANGE_FAILURE;
	return GST_ELEMENT_CLASS(detd_h264_dec_parent_class)->change_state(el, t);
}

static void detd_h264_dec_class_init(DetdH264DecClass *klass)
{
	GstElementClass *ec = GST_ELEMENT_CLASS(klass);
	ec->change_state = change_state;
	GstVideoDecoderClass *vc = GST_VIDEO_DECODER_CLASS(klass);
	gst_element_class_add_static_pad_template(ec, &sink_tmpl);
	gst_element_class_add_static_pad_template(ec, &src_tmpl);
	gst_element_class_set_static_metadata(ec, "detd H.264 decoder", "Codec/Decoder/Video",
					      "H.264 decoding on libavcodec, pictures passed on "
					      "without a copy",
					      "detd");
	vc->start = start;
	vc->stop = stop;
	vc->set_format = set_format;
	vc->handle_frame = handle_frame;
	vc->flush = flush;
	vc->drain = drain_vfunc;
	vc->finish = drain_vfunc;
	vc->decide_allocation = decide_allocation;
}

static void detd_h264_dec_init(DetdH264Dec *self)
{
	GstVideoDecoder *dec = GST_VIDEO_DECODER(self);
	gst_video_decoder_set_packetized(dec, TRUE);
	gst_video_decoder_set_needs_format(dec, TRUE);
	self->out_fmt = GST_VIDEO_FORMAT_UNKNOWN;
}

/* libavcodec's own messages (concealed slice errors and the like) go to the
 * debug level of our logger, not to stderr. */
static void av_log_cb(void *avcl, int level, const char *fmt, va_list ap)
{
	(void)avcl;
	if (level > AV_LOG_ERROR || log_get_level() < LOG_LVL_DEBUG)
		return;
	char line[256];
	vsnprintf(line, sizeof(line), fmt, ap);
	size_t n = strlen(line);
	if (n > 0 && line[n - 1] == '\n')
		line[n - 1] = 0;
	log_debug(TOPIC, "libavcodec: %s", line);
}

static pthread_once_t registered_once = PTHREAD_ONCE_INIT; /* see lav_once */
static gboolean registered;

static void register_once(void)
{
	const char *env = getenv("DETD_H264DEC");
	if (env && (!strcmp(env, "off") || !strcmp(env, "0")))
		return;
	registered = gst_element_register(NULL, PIPE_H264DEC_NAME, GST_RANK_PRIMARY + 1,
					  DETD_TYPE_H264_DEC);
	if (!registered)
		log_warn(TOPIC, "cannot register %s; GStreamer's H.264 decoders are used",
			 PIPE_H264DEC_NAME);
}

bool pipe_h264dec_register(void)
{
	pthread_once(&registered_once, register_once);
	return registered;
}

#else /* !DETD_HAVE_AVCODEC */

bool pipe_h264dec_register(void)
{
	return false;
}

#endif
