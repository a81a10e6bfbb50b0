/*
 * h264dec.h — detdh264dec, the H.264 decoder element detd registers for its
 * own pipelines (GStreamer element on libavcodec alone).
 *
 * Registered process-wide as a static element of rank PRIMARY + 1, so
 * decodebin/uridecodebin choose it over avdec_h264.  DETD_H264DEC=off in the
 * environment leaves it unregistered (then GStreamer's own choice, normally
 * avdec_h264, decodes: for side-by-side measurements and as a way out).
 */
#ifndef DETD_PIPE_H264DEC_H
#define DETD_PIPE_H264DEC_H

#include <stdbool.h>

/* Idempotent and thread-safe; gst_init() must have run.  Returns true when
 * the element is registered (false: built without libavcodec, or disabled). */
bool pipe_h264dec_register(void);

/* The factory name, for tests and logs. */
#define PIPE_H264DEC_NAME "detdh264dec"

#endif
