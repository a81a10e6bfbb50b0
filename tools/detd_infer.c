/*
 * detd-infer — run a detection model on files, one JSON line per input.
 *
 *   detd-infer --model M [--labels L] [--dump-tensor INDEX:FILE]...
 *              [--min-score X] [--backend NAME] INPUT...
 *
 * INPUT is either a raw file of exactly the model's input bytes (H×W×3 RGB,
 * e.g. the reference .rgb files) or a PNG or JPEG image, which is stretched to the
 * model's input size with bilinear interpolation (pixel centres aligned, no
 * letterbox — close to, not byte-identical with, GStreamer's videoscale).
 * Inputs run in order as one stream: recurrent state is carried from one to
 * the next.  Every post-process output is printed unless --min-score is
 * given.  --dump-tensor appends the bytes of tensor INDEX (as in the model
 * file) to FILE after each input.  Errors go to stderr; exit status 1 on a
 * runtime error, 2 on bad usage.
 * Single-threaded.
 */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <png.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "log.h"

#ifndef DETD_HAVE_JPEG
#define DETD_HAVE_JPEG 0
#endif
#if DETD_HAVE_JPEG
#include <jpeglib.h>
#endif

#define MAX_DUMPS 16
#define MAX_INPUT_FILE (256u << 20)

struct dump {
	int index;
	const char *path;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: detd-infer --model M [--labels L] [--dump-tensor INDEX:FILE]... "
		   "[--min-score X] [--backend NAME] INPUT...\n"
		   "  INPUT: raw .rgb of exactly the model's input bytes, or a PNG/JPEG (stretched "
		   "to the input size, bilinear)\n");
}

static uint8_t *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	uint8_t *b = NULL;
	size_t cap = 0, n = 0;
	for (;;) {
		if (n == cap) {
			if (cap >= MAX_INPUT_FILE) {
				errno = EFBIG;
				goto fail;
			}
			cap = cap ? cap * 2 : 1 << 20;
			uint8_t *nb = realloc(b, cap);
			if (!nb)
				goto fail;
			b = nb;
		}
		size_t k = fread(b + n, 1, cap - n, f);
		n += k;
		if (k == 0)
			break;
	}
	if (ferror(f)) {
		errno = EIO;
		goto fail;
	}
	fclose(f);
	*len = n;
	return b;
fail:
	fclose(f);
	free(b);
	return NULL;
}

/* Decode a PNG from memory into tightly packed 8-bit RGB. */
struct memsrc {
	const uint8_t *b;
	size_t n, pos;
};

static void png_read_mem(png_structp png, png_bytep out, png_size_t len)
{
	struct memsrc *m = png_get_io_ptr(png);
	if (len > m->n - m->pos)
		png_error(png, "truncated PNG");
	memcpy(out, m->b + m->pos, len);
	m->pos += len;
}

static uint8_t *decode_png(const uint8_t *buf, size_t len, int *w, int *h, char *err,
			   size_t errlen)
{
	png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop info = png ? png_create_info_struct(png) : NULL;
	uint8_t *volatile rgb = NULL;
	png_bytep *volatile rows = NULL;
	struct memsrc src = {buf, len, 0};
	if (!png || !info) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (setjmp(png_jmpbuf(png))) {
		snprintf(err, errlen, "not a valid PNG");
		goto fail;
	}
	png_set_read_fn(png, &src, png_read_mem);
	png_read_info(png, info);
	png_uint_32 pw = png_get_image_width(png, info), ph = png_get_image_height(png, info);
	if (pw == 0 || ph == 0 || pw > 16384 || ph > 16384) {
		snprintf(err, errlen, "PNG of %ux%u pixels", (unsigned)pw, (unsigned)ph);
		goto fail;
	}
	/* Whatever the PNG holds, ask libpng for 8-bit RGB. */
	png_set_strip_16(png);
	png_set_palette_to_rgb(png);
	png_set_expand_gray_1_2_4_to_8(png);
	png_set_gray_to_rgb(png);
	png_set_strip_alpha(png);
	png_set_interlace_handling(png);
	png_read_update_info(png, info);
	if (png_get_rowbytes(png, info) != (size_t)pw * 3) {
		snprintf(err, errlen, "PNG does not convert to 8-bit RGB");
		goto fail;
	}
	rgb = malloc((size_t)pw * ph * 3);
	rows = malloc(ph * sizeof(*rows));
	if (!rgb || !rows) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (png_uint_32 y = 0; y < ph; y++)
		rows[y] = rgb + (size_t)y * pw * 3;
	png_read_image(png, rows);
	png_read_end(png, NULL);
	png_destroy_read_struct(&png, &info, NULL);
	free(rows);
	*w = (int)pw;
	*h = (int)ph;
	return rgb;
fail:
	png_destroy_read_struct(png ? &png : NULL, info ? &info : NULL, NULL);
	free(rows);
	free(rgb);
	return NULL;
}

#if DETD_HAVE_JPEG
struct jerr {
	struct jpeg_error_mgr mgr;
	jmp_buf jb;
	char msg[JMSG_LENGTH_MAX];
};

static void jpeg_fail(j_common_ptr ci)
{
	struct jerr *e = (struct jerr *)ci->err;
	ci->err->format_message(ci, e->msg);
	longjmp(e->jb, 1);
}

/* libjpeg only warns about corrupt or truncated data and fills in grey; a
 * detector fed such a frame answers nonsense, so treat it as an error. */
static void jpeg_warn(j_common_ptr ci, int level)
{
	if (level < 0)
		jpeg_fail(ci);
}

static uint8_t *decode_jpeg(const uint8_t *buf, size_t len, int *w, int *h, char *err,
			    size_t errlen)
{
	struct jpeg_decompress_struct ci;
	struct jerr je;
	uint8_t *volatile rgb = NULL;
	memset(&ci, 0, sizeof(ci));
	ci.err = jpeg_std_error(&je.mgr);
	je.mgr.error_exit = jpeg_fail;
	je.mgr.emit_message = jpeg_warn;
	if (setjmp(je.jb)) {
		snprintf(err, errlen, "not a valid JPEG: %s", je.msg);
		jpeg_destroy_decompress(&ci);
		free(rgb);
		return NULL;
	}
	jpeg_create_decompress(&ci);
	jpeg_mem_src(&ci, buf, (unsigned long)len);
	jpeg_read_header(&ci, TRUE);
	ci.out_color_space = JCS_RGB;
	jpeg_start_decompress(&ci);
	if (ci.output_components != 3 || ci.output_width == 0 || ci.output_height == 0 ||
	    ci.output_width > 16384 || ci.output_height > 16384) {
		snprintf(err, errlen, "JPEG of %ux%u pixels, %d components", ci.output_width,
			 ci.output_height, ci.output_components);
		jpeg_destroy_decompress(&ci);
		return NULL;
	}
	rgb = malloc((size_t)ci.output_width * ci.output_height * 3);
	if (!rgb) {
		snprintf(err, errlen, "out of memory");
		jpeg_destroy_decompress(&ci);
		return NULL;
	}
	while (ci.output_scanline < ci.output_height) {
		JSAMPROW row = rgb + (size_t)ci.output_scanline * ci.output_width * 3;
		jpeg_read_scanlines(&ci, &row, 1);
	}
	jpeg_finish_decompress(&ci);
	*w = (int)ci.output_width;
	*h = (int)ci.output_height;
	jpeg_destroy_decompress(&ci);
	return rgb;
}
#endif

/* Bilinear stretch of RGB sw×sh to dw×dh, pixel centres aligned. */
static void resize_bilinear(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh)
{
	for (int y = 0; y < dh; y++) {
		float fy = ((float)y + 0.5f) * (float)sh / (float)dh - 0.5f;
		if (fy < 0)
			fy = 0;
		int y0 = (int)fy, y1 = y0 + 1 < sh ? y0 + 1 : sh - 1;
		float wy = fy - (float)y0;
		for (int x = 0; x < dw; x++) {
			float fx = ((float)x + 0.5f) * (float)sw / (float)dw - 0.5f;
			if (fx < 0)
				fx = 0;
			int x0 = (int)fx, x1 = x0 + 1 < sw ? x0 + 1 : sw - 1;
			float wx = fx - (float)x0;
			for (int c = 0; c < 3; c++) {
				float a = src[((size_t)y0 * sw + x0) * 3 + c];
				float b = src[((size_t)y0 * sw + x1) * 3 + c];
				float d = src[((size_t)y1 * sw + x0) * 3 + c];
				float e = src[((size_t)y1 * sw + x1) * 3 + c];
				float v = (a * (1 - wx) + b * wx) * (1 - wy) + (d * (1 - wx) + e * wx) * wy;
				dst[((size_t)y * dw + x) * 3 + c] = (uint8_t)(v + 0.5f);
			}
		}
	}
}

/* The model input for one file into img (w×h×3); message on failure. */
static int load_input(const char *path, uint8_t *img, int w, int h, char *err, size_t errlen)
{
	size_t len, want = (size_t)w * h * 3;
	uint8_t *b = read_all(path, &len);
	if (!b) {
		snprintf(err, errlen, "%s", strerror(errno));
		return -1;
	}
	int r = 0;
	bool png = len >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0;
	bool jpeg = len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff;
#if DETD_HAVE_JPEG
	if (png || jpeg) {
		int pw, ph;
		uint8_t *rgb = png ? decode_png(b, len, &pw, &ph, err, errlen)
				   : decode_jpeg(b, len, &pw, &ph, err, errlen);
#else
	if (png) {
		int pw, ph;
		uint8_t *rgb = decode_png(b, len, &pw, &ph, err, errlen);
#endif
		if (!rgb) {
			r = -1;
		} else {
			if (pw == w && ph == h)
				memcpy(img, rgb, want);
			else
				resize_bilinear(rgb, pw, ph, img, w, h);
			free(rgb);
		}
	} else if (jpeg) {
		snprintf(err, errlen, "JPEG input needs a build with libjpeg; convert it to PNG");
		r = -1;
	} else if (len != want) {
		snprintf(err, errlen, "%zu bytes; a raw input must be exactly %dx%dx3 = %zu bytes", len,
			 w, h, want);
		r = -1;
	} else {
		memcpy(img, b, want);
	}
	free(b);
	return r;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"model", required_argument, NULL, 'm'},
		{"labels", required_argument, NULL, 'l'},
		{"dump-tensor", required_argument, NULL, 'd'},
		{"min-score", required_argument, NULL, 's'},
		{"backend", required_argument, NULL, 'b'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *model = NULL, *labels = NULL, *backend = "cpu";
	struct dump dumps[MAX_DUMPS];
	int n_dumps = 0, c;
	double min_score = -1e300;
	char *end;
	while ((c = getopt_long(argc, argv, "m:l:d:s:b:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'm': model = optarg; break;
		case 'l': labels = optarg; break;
		case 'b': backend = optarg; break;
		case 's':
			min_score = strtod(optarg, &end);
			if (end == optarg || *end) {
				fprintf(stderr, "detd-infer: --min-score: not a number: %s\n", optarg);
				return 2;
			}
			break;
		case 'd': {
			char *colon = strchr(optarg, ':');
			long ix = strtol(optarg, &end, 10);
			if (!colon || end != colon || ix < 0 || !colon[1] || n_dumps >= MAX_DUMPS) {
				fprintf(stderr, "detd-infer: --dump-tensor wants INDEX:FILE (at most %d)\n",
					MAX_DUMPS);
				return 2;
			}
			dumps[n_dumps].index = (int)ix;
			dumps[n_dumps++].path = colon + 1;
			break;
		}
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!model || optind >= argc) {
		usage(stderr);
		return 2;
	}
	log_set_level(LOG_LVL_WARN);

	char err[512] = "";
	struct eng_model_opts mo = {.path = model, .labels_path = labels};
	struct eng_model *m = NULL;
	struct eng_ctx *ctx = NULL;
	struct eng_state *st = NULL;
	struct eng_detections *det = malloc(sizeof(*det));
	uint8_t *img = NULL;
	int rc = 1;
	const struct eng_backend_ops *be = eng_backend_find(backend);
	if (!be) {
		fprintf(stderr, "detd-infer: unknown backend '%s'\n", backend);
		rc = 2;
		goto out;
	}
	if (eng_model_load(&mo, &m, err, sizeof(err))) {
		fprintf(stderr, "detd-infer: %s\n", err);
		goto out;
	}
	const struct eng_model_info *inf = eng_model_info(m);
	if (eng_ctx_create(m, be, 1, &ctx, err, sizeof(err))) {
		fprintf(stderr, "detd-infer: %s\n", err);
		goto out;
	}
	if (eng_state_create(m, &st) || !det)
		goto out;
	for (int i = 0; i < n_dumps; i++) {
		if (eng_ctx_watch(ctx, dumps[i].index)) {
			fprintf(stderr, "detd-infer: --dump-tensor: no tensor %d (the model has %d)\n",
				dumps[i].index, inf->n_tensors);
			rc = 2;
			goto out;
		}
		FILE *f = fopen(dumps[i].path, "ab");
		if (!f) {
			fprintf(stderr, "detd-infer: %s: %s\n", dumps[i].path, strerror(errno));
			goto out;
		}
		fclose(f);
	}
	img = malloc((size_t)inf->input_width * inf->input_height * 3);
	if (!img)
		goto out;
	json_c_set_serialization_double_format("%.9g", JSON_C_OPTION_GLOBAL);

	for (int a = optind; a < argc; a++) {
		const char *path = argv[a];
		if (load_input(path, img, inf->input_width, inf->input_height, err, sizeof(err))) {
			fprintf(stderr, "detd-infer: %s: %s\n", path, err);
			goto out;
		}
		const uint8_t *ins[1] = {img};
		struct eng_state *sts[1] = {st};
		int r = eng_run(ctx, 1, ins, sts, det);
		if (r) {
			fprintf(stderr, "detd-infer: %s: inference failed: %s\n", path, strerror(-r));
			goto out;
		}
		json_object *line = json_object_new_object(), *arr = json_object_new_array();
		json_object_object_add(line, "input", json_object_new_string(path));
		for (int i = 0; i < det->n; i++) {
			const struct eng_detection *d = &det->d[i];
			if (d->score < min_score)
				continue;
			json_object *o = json_object_new_object(), *box = json_object_new_array();
			json_object_object_add(o, "class_id", json_object_new_int(d->class_id));
			json_object_object_add(o, "label",
					       json_object_new_string(eng_model_label(m, d->class_id)));
			json_object_object_add(o, "score", json_object_new_double(d->score));
			for (int k = 0; k < 4; k++)
				json_object_array_add(box, json_object_new_double(d->box[k]));
			json_object_object_add(o, "box", box);
			json_object_array_add(arr, o);
		}
		json_object_object_add(line, "detections", arr);
		printf("%s\n", json_object_to_json_string_ext(line, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		fflush(stdout);
		json_object_put(line);
		for (int i = 0; i < n_dumps; i++) {
			const void *data;
			size_t bytes;
			if (eng_ctx_tensor(ctx, dumps[i].index, &data, &bytes)) {
				fprintf(stderr, "detd-infer: tensor %d is not available\n", dumps[i].index);
				goto out;
			}
			FILE *f = fopen(dumps[i].path, "ab");
			if (!f || fwrite(data, 1, bytes, f) != bytes) {
				fprintf(stderr, "detd-infer: %s: %s\n", dumps[i].path, strerror(errno));
				if (f)
					fclose(f);
				goto out;
			}
			if (fclose(f)) {
				fprintf(stderr, "detd-infer: %s: %s\n", dumps[i].path, strerror(errno));
				goto out;
			}
		}
	}
	rc = 0;
out:
	free(img);
	free(det);
	eng_state_destroy(st);
	eng_ctx_destroy(ctx);
	eng_model_destroy(m);
	return rc;
}
