/*
 * picture.h — internal to pipeline/: a struct det_picture over a decoded
 * GstBuffer (the decoder's own memory, referenced, not copied), converted to
 * RGB only when someone asks (snapshots, the live view).
 *
 * Any thread: the picture is immutable; the conversion makes its own
 * converter per call.
 */
#ifndef DETD_PIPELINE_PICTURE_H
#define DETD_PIPELINE_PICTURE_H

#include <gst/gst.h>
#include <gst/video/video.h>
#include <stdbool.h>

#include "frame.h"

/* A picture holding buf (a new reference, or a deep copy when copy is true:
 * for sources whose buffer pools are small, e.g. V4L2 capture).  NULL on
 * failure. */
struct det_picture *pipe_picture_new(GstBuffer *buf, const GstVideoInfo *info, bool copy);

#endif
