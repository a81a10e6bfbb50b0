/*
 * e2e_check.c — checks that what the daemon published for each frame equals
 * the engine's own output on the same decoded frame.
 *
 *   e2e_check MODEL LABELS DUMP_DIR RESULTS_JSONL MIN_SCORE MIN_RESULTS
 *
 * RESULTS_JSONL holds the daemon's results (detd --print-detections=json),
 * DUMP_DIR the model inputs it decoded (detd --dump-frames), named
 * <stream>-<gen>-<seq>.rgb.  Each result's frame is run through the engine
 * here, stream by stream in the order the daemon ran them (so recurrent
 * state follows the same path), filtered by MIN_SCORE, and compared: the
 * same objects in the same order, class ids, scores and normalized boxes
 * bit for bit, pixel boxes within 0.01 px of the stretch mapping.
 * Exit 0 when at least MIN_RESULTS results were compared and all matched.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "engine.h"

#define MAX_STREAMS 16

struct sstate {
	char id[DET_STREAM_ID_MAX];
	struct eng_state *st;
	long gen;
};

static int find_dump(const char *dir, const char *stream, uint64_t seq, char *path, size_t len,
		     long *gen)
{
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	int found = 0;
	struct dirent *e;
	size_t sl = strlen(stream);
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, stream, sl) != 0 || e->d_name[sl] != '-')
			continue;
		char *end;
		long g = strtol(e->d_name + sl + 1, &end, 10);
		if (*end != '-')
			continue;
		uint64_t s = strtoull(end + 1, &end, 10);
		if (s != seq || strcmp(end, ".rgb") != 0)
			continue;
		snprintf(path, len, "%s/%s", dir, e->d_name);
		*gen = g;
		found++;
	}
	closedir(d);
	return found == 1 ? 0 : found == 0 ? -ENOENT : -EEXIST;
}

static uint8_t *read_file(const char *path, size_t want)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	uint8_t *buf = malloc(want);
	size_t n = buf ? fread(buf, 1, want, f) : 0;
	fclose(f);
	if (n != want) {
		free(buf);
		return NULL;
	}
	return buf;
}

static double jnum(struct json_object *o, const char *key)
{
	struct json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : NAN;
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: %s MODEL LABELS DUMP_DIR RESULTS_JSONL MIN_SCORE MIN_RESULTS\n",
			argv[0]);
		return 2;
	}
	const char *dump = argv[3];
	double min_score = atof(argv[5]);
	long min_results = atol(argv[6]);
	char err[256] = "";
	struct eng_model *m;
	/* LABELS "": the model's own (CoDeNet models carry theirs) */
	struct eng_model_opts mo = {.path = argv[1], .labels_path = *argv[2] ? argv[2] : NULL};
	if (eng_model_load(&mo, &m, err, sizeof(err)) < 0) {
		fprintf(stderr, "model: %s\n", err);
		return 1;
	}
	const struct eng_model_info *mi = eng_model_info(m);
	size_t in_bytes = (size_t)mi->input_width * mi->input_height * mi->input_channels;
	struct eng_ctx *ctx;
	if (eng_ctx_create(m, NULL, 1, &ctx, err, sizeof(err)) < 0) {
		fprintf(stderr, "ctx: %s\n", err);
		return 1;
	}
	FILE *in = fopen(argv[4], "r");
	if (!in) {
		perror(argv[4]);
		return 1;
	}
	struct sstate ss[MAX_STREAMS];
	int n_ss = 0;
	static struct eng_detections out;
	char *line = NULL;
	size_t cap = 0;
	long compared = 0, mismatched = 0, objects = 0, skipped = 0, lineno = 0;
	while (getline(&line, &cap, in) > 0) {
		lineno++;
		struct json_object *r = json_tokener_parse(line);
		struct json_object *v, *objs;
		if (!r || !json_object_object_get_ex(r, "stream", &v) ||
		    !json_object_object_get_ex(r, "objects", &objs)) {
			json_object_put(r);
			continue; /* not a result line */
		}
		const char *stream = json_object_get_string(v);
		json_object_object_get_ex(r, "seq", &v);
		uint64_t seq = (uint64_t)json_object_get_int64(v);
		int w = (int)jnum(r, "width"), h = (int)jnum(r, "height");
		char path[4096];
		long gen = 0;
		int rc = find_dump(dump, stream, seq, path, sizeof(path), &gen);
		if (rc < 0) {
			fprintf(stderr, "%s #%" PRIu64 ": no unique dump (%s)\n", stream, seq,
				strerror(-rc));
			skipped++;
			json_object_put(r);
			continue;
		}
		struct sstate *s = NULL;
		for (int i = 0; i < n_ss; i++)
			if (strcmp(ss[i].id, stream) == 0)
				s = &ss[i];
		if (!s && n_ss < MAX_STREAMS) {
			s = &ss[n_ss++];
			snprintf(s->id, sizeof(s->id), "%s", stream);
			eng_state_create(m, &s->st);
			s->gen = gen;
		}
		if (!s)
			return 1;
		if (gen != s->gen) {
			eng_state_reset(s->st);
			s->gen = gen;
		}
		uint8_t *data = read_file(path, in_bytes);
		if (!data) {
			fprintf(stderr, "%s: short or unreadable\n", path);
			return 1;
		}
		const uint8_t *inputs[1] = {data};
		struct eng_state *states[1] = {s->st};
		if (eng_run(ctx, 1, inputs, states, &out) < 0) {
			fprintf(stderr, "eng_run failed\n");
			return 1;
		}
		free(data);
		int k = 0, n_pub = (int)json_object_array_length(objs);
		bool bad = false;
		for (int i = 0; i < out.n; i++) {
			const struct eng_detection *d = &out.d[i];
			if (d->score < min_score)
				continue;
			if (k >= n_pub) {
				bad = true;
				break;
			}
			struct json_object *o = json_object_array_get_idx(objs, (size_t)k++);
			struct json_object *bn, *bp;
			json_object_object_get_ex(o, "box_norm", &bn);
			json_object_object_get_ex(o, "box_px", &bp);
			if ((int)jnum(o, "class_id") != d->class_id ||
			    (float)jnum(o, "score") != d->score) {
				bad = true;
				break;
			}
			for (int c = 0; c < 4; c++) {
				float pub = (float)json_object_get_double(
					json_object_array_get_idx(bn, (size_t)c));
				if (pub != d->box[c])
					bad = true;
			}
			/* stretch mapping: x = xn * W, y = yn * H, clipped */
			float ex[4] = {d->box[1] * (float)w, d->box[0] * (float)h,
				       d->box[3] * (float)w, d->box[2] * (float)h};
			float lim[4] = {(float)w, (float)h, (float)w, (float)h};
			for (int c = 0; c < 4; c++) {
				float e = ex[c] < 0 ? 0 : ex[c] > lim[c] ? lim[c] : ex[c];
				float pub = (float)json_object_get_double(
					json_object_array_get_idx(bp, (size_t)c));
				if (fabsf(pub - e) > 0.01f)
					bad = true;
			}
			objects++;
		}
		if (k != n_pub)
			bad = true;
		compared++;
		if (bad) {
			mismatched++;
			fprintf(stderr, "MISMATCH %s #%" PRIu64 " (line %ld): published %d objects\n",
				stream, seq, lineno, n_pub);
		}
		json_object_put(r);
	}
	free(line);
	fclose(in);
	for (int i = 0; i < n_ss; i++)
		eng_state_destroy(ss[i].st);
	eng_ctx_destroy(ctx);
	eng_model_destroy(m);
	printf("e2e_check: %ld results compared (%ld objects), %ld mismatched, %ld skipped\n",
	       compared, objects, mismatched, skipped);
	return (mismatched == 0 && compared >= min_results) ? 0 : 1;
}
