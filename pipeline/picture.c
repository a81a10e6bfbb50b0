/*
 * picture.c — see picture.h.
 */
#include "picture.h"

#include <errno.h>
#include <stdlib.h>

struct gst_picture {
	struct det_picture pub;
	GstBuffer *buf;
	GstVideoInfo info;
};

static int to_rgb(const struct det_picture *p, uint8_t *dst, int w, int h, size_t stride)
{
	const struct gst_picture *g = (const struct gst_picture *)p;
	GstVideoInfo out;
	GstVideoFrame in_f, out_f;
	int rc = 0;

	if (w <= 0 || h <= 0 || stride < (size_t)w * 3 ||
	    !gst_video_info_set_format(&out, GST_VIDEO_FORMAT_RGB, (guint)w, (guint)h))
		return -EINVAL;
	out.stride[0] = (gint)stride;
	out.size = stride * (size_t)h;
	/* the converter refuses to change the rate or the interlacing */
	GST_VIDEO_INFO_FPS_N(&out) = GST_VIDEO_INFO_FPS_N(&g->info);
	GST_VIDEO_INFO_FPS_D(&out) = GST_VIDEO_INFO_FPS_D(&g->info);
	GST_VIDEO_INFO_INTERLACE_MODE(&out) = GST_VIDEO_INFO_INTERLACE_MODE(&g->info);
	GstBuffer *ob = gst_buffer_new_wrapped_full(0, dst, out.size, 0, out.size, NULL, NULL);
	if (!ob)
		return -ENOMEM;
	if (!gst_video_frame_map(&in_f, (GstVideoInfo *)&g->info, g->buf, GST_MAP_READ)) {
		gst_buffer_unref(ob);
		return -EIO;
	}
	if (!gst_video_frame_map(&out_f, &out, ob, GST_MAP_WRITE)) {
		gst_video_frame_unmap(&in_f);
		gst_buffer_unref(ob);
		return -EIO;
	}
	/* one thread: this runs off the streaming and loop threads anyway */
	GstVideoConverter *cv = gst_video_converter_new(
		(GstVideoInfo *)&g->info, &out,
		gst_structure_new("cfg", GST_VIDEO_CONVERTER_OPT_THREADS, G_TYPE_UINT, 1, NULL));
	if (cv) {
		gst_video_converter_frame(cv, &in_f, &out_f);
		gst_video_converter_free(cv);
	} else {
		rc = -ENOTSUP;
	}
	gst_video_frame_unmap(&out_f);
	gst_video_frame_unmap(&in_f);
	gst_buffer_unref(ob);
	return rc;
}

static void release(struct det_picture *p)
{
	struct gst_picture *g = (struct gst_picture *)p;
	gst_buffer_unref(g->buf);
	free(g);
}

struct det_picture *pipe_picture_new(GstBuffer *buf, const GstVideoInfo *info, bool copy)
{
	struct gst_picture *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->buf = copy ? gst_buffer_copy_deep(buf) : gst_buffer_ref(buf);
	if (!g->buf) {
		free(g);
		return NULL;
	}
	g->info = *info;
	atomic_init(&g->pub.refs, 1);
	g->pub.width = GST_VIDEO_INFO_WIDTH(info);
	g->pub.height = GST_VIDEO_INFO_HEIGHT(info);
	g->pub.to_rgb = to_rgb;
	g->pub.release = release;
	return &g->pub;
}
