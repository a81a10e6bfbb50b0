/*
 * engine.c — models, per-stream state and execution contexts (engine.h).
 *
 * Owns: loading (format chosen by content), the model's description, the
 * pairing of recurrent-state inputs with outputs, the label map, contexts
 * (arena + scratch + backend instance) and the per-frame loop of eng_run():
 * write the frame and the state into the arena, let the backend run the
 * graph, copy the state outputs back, convert the post-process outputs.
 * Thread rules are those of engine.h: a model is read-only after load; a
 * context and a state are used by one thread at a time.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codenet.h"
#include "kset.h"
#include "pool.h"
#include "x86/vk.h"
#include "log.h"
#include "model.h"
#include "tflite.h"

#define MODEL_MAX_FILE ((size_t)1 << 30)

#define CTX_MAX_LANES 16

/* One arena with its scratch: frames of different streams may run on
 * different lanes at the same time. */
struct lane {
	uint8_t *arena;
	void *scratch;
	struct eng_exec x;
	int64_t *op_ns;
};

struct eng_ctx {
	const struct eng_model *m;
	const struct eng_backend_ops *be;
	void *be_priv;
	int n_lanes; /* lanes run_parallel spreads frames over (one per thread) */
	int n_alloc; /* lanes with an arena: n_lanes, more once a layered batch needed them */
	bool layered; /* batches of distinct streams run layer by layer (run_layered) */
	struct lane lanes[CTX_MAX_LANES]; /* lanes[0] is the sequential path */
	struct eng_op_timing *timings;
	int have_run;
	int last_lane; /* lane of the last frame run: its arena holds the outputs */
	uint8_t **watch; /* per tensor: copy kept after each run, or NULL (lane 0 only) */
	struct cdn_ctx *cdn; /* CoDeNet models */
	struct eng_pool *pool; /* cpu, threads > 1: the persistent compute threads */
};

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* The per-op table's shape column (detd-bench engine): output <- input, kernel, stride. */
static void conv_shape(const struct eng_node *n, char *buf, size_t len)
{
	buf[0] = '\0';
	if ((n->type != ENG_OP_CONV_2D && n->type != ENG_OP_DEPTHWISE_CONV_2D) || n->n_in < 2 ||
	    n->n_out < 1 || !n->in[0] || !n->in[1] || n->in[0]->ndim != 4 ||
	    n->out[0]->ndim != 4 || n->in[1]->ndim != 4)
		return;
	const int *o = n->out[0]->dims, *i = n->in[0]->dims, *w = n->in[1]->dims;
	snprintf(buf, len, "%dx%dx%d<-%dx%dx%d k%dx%d s%d", o[1], o[2], o[3], i[1], i[2], i[3],
		 w[1], w[2], n->opts.conv.stride_h);
}

static int read_file(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		int e = errno;
		seterr(err, errlen, "model: %s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fileno(fp), &st) || !S_ISREG(st.st_mode)) {
		fclose(fp);
		seterr(err, errlen, "model: %s: not a regular file", path);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size > MODEL_MAX_FILE) {
		fclose(fp);
		seterr(err, errlen, "model: %s: larger than 1 GiB", path);
		return -EFBIG;
	}
	size_t n = (size_t)st.st_size;
	uint8_t *b = malloc(n ? n : 1);
	if (!b) {
		fclose(fp);
		seterr(err, errlen, "model: %s: out of memory", path);
		return -ENOMEM;
	}
	size_t got = fread(b, 1, n, fp);
	fclose(fp);
	if (got != n) {
		free(b);
		seterr(err, errlen, "model: %s: short read", path);
		return -EIO;
	}
	*buf = b;
	*len = n;
	return 0;
}

/* Name without directory prefixes and without a leading "init_". */
static const char *state_key(const char *name)
{
	const char *s = strrchr(name, '/');
	s = s ? s + 1 : name;
	if (strncmp(s, "init_", 5) == 0)
		s += 5;
	return s;
}

static bool same_layout(const struct eng_tensor *a, const struct eng_tensor *b)
{
	if (a->type != b->type || a->ndim != b->ndim)
		return false;
	for (int i = 0; i < a->ndim; i++)
		if (a->dims[i] != b->dims[i])
			return false;
	return true;
}

static int setup_io(struct eng_model *m, char *err, size_t errlen)
{
	struct eng_graph *g = &m->g;
	/* The post-process: exactly one, four float outputs. */
	m->pp_node = -1;
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].type == ENG_OP_DETECTION_POSTPROCESS) {
			if (m->pp_node >= 0) {
				seterr(err, errlen, "model: more than one TFLite_Detection_PostProcess");
				return -ENOTSUP;
			}
			m->pp_node = i;
		}
	if (m->pp_node < 0) {
		seterr(err, errlen,
		       "model: no TFLite_Detection_PostProcess operator (detd runs detection models)");
		return -ENOTSUP;
	}
	const struct eng_node *pp = &g->nodes[m->pp_node];
	for (int k = 0; k < 4; k++)
		if (pp->out[k]->type != ENG_DT_F32) {
			seterr(err, errlen, "model: post-process output %d is not float32", k);
			return -EINVAL;
		}
	size_t nbox = pp->out[0]->bytes / 16, ncls = pp->out[1]->bytes / 4,
	       nsc = pp->out[2]->bytes / 4;
	size_t maxd = nbox < ncls ? nbox : ncls;
	maxd = maxd < nsc ? maxd : nsc;
	if (maxd > ENG_MAX_DETECTIONS || pp->out[3]->bytes < 4) {
		seterr(err, errlen, "model: post-process writes %zu detections (at most %d)", maxd,
		       ENG_MAX_DETECTIONS);
		return -ENOTSUP;
	}
	m->pp_max = (int)maxd;

	/* The image: a [1,H,W,3] input; every other input must be recurrent state. */
	m->image_input = -1;
	for (int i = 0; i < g->n_inputs; i++) {
		const struct eng_tensor *t = &g->tensors[g->inputs[i]];
		if (t->ndim == 4 && t->dims[0] == 1 && t->dims[3] == 3 && t->dims[1] > 0 &&
		    t->dims[2] > 0 &&
		    (t->type == ENG_DT_U8 || t->type == ENG_DT_I8 || t->type == ENG_DT_F32)) {
			m->image_input = t->index;
			break;
		}
	}
	if (m->image_input < 0) {
		seterr(err, errlen, "model: no [1,H,W,3] uint8/int8/float32 image input");
		return -ENOTSUP;
	}
	m->state = calloc((size_t)g->n_inputs, sizeof(*m->state));
	if (!m->state)
		return -ENOMEM;
	size_t off = 0;
	for (int i = 0; i < g->n_inputs; i++) {
		const struct eng_tensor *in = &g->tensors[g->inputs[i]];
		if (in->index == m->image_input)
			continue;
		int match = -1, shape_only = -1, n_shape = 0;
		for (int o = 0; o < g->n_outputs; o++) {
			const struct eng_tensor *out = &g->tensors[g->outputs[o]];
			if (!same_layout(in, out) || out->is_const)
				continue;
			bool taken = false;
			for (int s = 0; s < m->n_state; s++)
				taken |= m->state[s].out == out->index;
			if (taken)
				continue;
			n_shape++;
			shape_only = out->index;
			if (strcmp(state_key(in->name), state_key(out->name)) == 0) {
				match = out->index;
				break;
			}
		}
		/* Without a name match, a single output of the same shape and type is
		 * unambiguous enough. */
		if (match < 0 && n_shape == 1)
			match = shape_only;
		if (match < 0) {
			seterr(err, errlen,
			       "model: input %d '%s' is neither the image nor a recurrent state "
			       "(no unambiguous output with its shape, type and name)",
			       i, in->name);
			return -ENOTSUP;
		}
		struct eng_state_slot *s = &m->state[m->n_state++];
		s->in = in->index;
		s->out = match;
		s->bytes = in->bytes;
		s->offset = off;
		off += (in->bytes + ENG_ARENA_ALIGN - 1) & ~(size_t)(ENG_ARENA_ALIGN - 1);
	}

	const struct eng_tensor *img = &g->tensors[m->image_input];
	struct eng_model_info *inf = &m->info;
	inf->name = m->name;
	inf->format = eng_format_name(ENG_FORMAT_TFLITE);
	inf->input_height = img->dims[1];
	inf->input_width = img->dims[2];
	inf->input_channels = img->dims[3];
	inf->input_is_float = img->type == ENG_DT_F32;
	inf->n_classes = pp->opts.pp.num_classes;
	inf->max_detections = m->pp_max;
	inf->n_ops = g->n_nodes;
	inf->n_tensors = g->n_tensors;
	inf->arena_bytes = g->arena_bytes;
	inf->weight_bytes = g->weight_bytes;
	inf->state_bytes = off;
	inf->gmac = (double)g->macs / 1e9;
	return 0;
}

static int load_tflite(struct eng_model *m, const uint8_t *buf, size_t len, char *err,
		       size_t errlen)
{
	bool ref = m->g.reference_kernels;
	enum eng_kset ks = ENG_KS_REF;
	char why[160] = "";
	int r = ref ? 0 : eng_kset_select(&ks, why, sizeof(why));
	if (r) {
		seterr(err, errlen, "model: %s", why);
		return r;
	}
	if ((r = eng_tflite_parse(buf, len, &m->g, err, errlen)))
		return r;
	m->g.reference_kernels = ref;
	m->g.kset = ks;
	m->g.kset_given = true;
	m->info.kernels = eng_kset_name(ks);
	if ((r = eng_graph_prepare(&m->g, err, errlen)))
		return r;
	return setup_io(m, err, errlen);
}

/* CoDeNet: the JSON names its weights file relative to itself, so it is loaded
 * by path (engine/codenet/ reads and checks both files). */
static int load_codenet(struct eng_model *m, const char *path, const char *labels_path, char *err,
			size_t errlen)
{
	int r = cdn_model_load(path, &m->cdn, err, errlen);
	if (r)
		return r;
	const struct cdn_desc *d = cdn_model_desc(m->cdn);
	struct eng_model_info *inf = &m->info;
	inf->name = m->name;
	inf->format = eng_format_name(ENG_FORMAT_CODENET);
	inf->input_width = d->width;
	inf->input_height = d->height;
	inf->input_channels = 3;
	inf->input_is_float = false; /* raw RGB bytes; codenet scales them itself */
	inf->n_classes = d->classes;
	inf->max_detections = d->max_det;
	inf->n_ops = d->n_layers;
	inf->weight_bytes = d->weight_bytes;
	inf->gmac = d->gmac;
	/* W4A8 GEMM layers on the VNNI kernel set the host has (DETD_KERNELS may
	 * force another); otherwise engine/codenet's AVX2 or portable GEMM */
	enum eng_kset ks = ENG_KS_REF;
	char why[160] = "";
	if (!m->g.reference_kernels && (r = eng_kset_select(&ks, why, sizeof(why)))) {
		seterr(err, errlen, "model: %s", why);
		return r;
	}
	cdn_vk_fn vk = ks == ENG_KS_AVX512VNNI ? vk512_gemm_acc
		       : ks == ENG_KS_AVXVNNI  ? vk256_gemm_acc
					       : NULL;
	if (d->quant && vk) {
		if ((r = cdn_model_set_vk(m->cdn, vk)))
			return r;
		inf->kernels = eng_kset_name(ks);
	}
	if (labels_path || !cdn_model_label(m->cdn, 0))
		return 0; /* a label file given to the engine wins over the JSON's labels */
	if (!(m->labels = calloc((size_t)d->classes, sizeof(char *))))
		return -ENOMEM;
	m->n_labels = d->classes;
	for (int i = 0; i < d->classes; i++)
		if (!(m->labels[i] = strdup(cdn_model_label(m->cdn, i))))
			return -ENOMEM;
	return 0;
}

int eng_model_load_mem(const char *name, const uint8_t *buf, size_t len, enum eng_format fmt,
		       const char *labels_path, bool reference_kernels, struct eng_model **out,
		       char *err, size_t errlen)
{
	int r;
	*out = NULL;
	if (err && errlen)
		err[0] = 0;
	struct eng_model *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	const char *base = name ? strrchr(name, '/') : NULL;
	m->name = strdup(base ? base + 1 : name ? name : "model");
	m->g.reference_kernels = reference_kernels;
	if (!m->name) {
		r = -ENOMEM;
		goto fail;
	}
	if (fmt == ENG_FORMAT_AUTO) {
		size_t i = 0;
		while (i < len && isspace(buf[i]))
			i++;
		if (eng_tflite_sniff(buf, len))
			fmt = ENG_FORMAT_TFLITE;
		else if (i < len && buf[i] == '{')
			fmt = ENG_FORMAT_CODENET;
		else {
			seterr(err, errlen,
			       "model: %s: unknown format (neither TFLite \"TFL3\" nor CoDeNet JSON)",
			       m->name);
			r = -EINVAL;
			goto fail;
		}
	}
	if (fmt == ENG_FORMAT_CODENET) {
		if (!name) {
			seterr(err, errlen, "model: CoDeNet models are loaded by path");
			r = -EINVAL;
			goto fail;
		}
		if ((r = load_codenet(m, name, labels_path, err, errlen)))
			goto fail;
	} else if (fmt != ENG_FORMAT_TFLITE) {
		seterr(err, errlen, "model: unknown format %d", (int)fmt);
		r = -EINVAL;
		goto fail;
	} else if ((r = load_tflite(m, buf, len, err, errlen))) {
		goto fail;
	}
	if (labels_path &&
	    (r = eng_labels_load(labels_path, &m->labels, &m->n_labels, err, errlen)))
		goto fail;
	log_info("engine", "model %s: %d ops, %d tensors, input %dx%dx%d, %d classes, "
		 "arena %zu KiB (largest live set %zu KiB), weights %zu KiB, %.3f GMAC, kernels %s",
		 m->name, m->info.n_ops, m->info.n_tensors, m->info.input_width,
		 m->info.input_height, m->info.input_channels, m->info.n_classes,
		 m->g.arena_bytes >> 10, m->g.live_peak >> 10, m->info.weight_bytes >> 10,
		 m->info.gmac, m->info.kernels ? m->info.kernels : "n/a");
	*out = m;
	return 0;
fail:
	if (r == -ENOMEM && err && errlen && !err[0])
		seterr(err, errlen, "model: out of memory");
	eng_model_destroy(m);
	return r;
}

int eng_model_load(const struct eng_model_opts *opts, struct eng_model **out, char *err,
		   size_t errlen)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	*out = NULL;
	if (!opts || !opts->path) {
		seterr(err, errlen, "model: no path");
		return -EINVAL;
	}
	int r = read_file(opts->path, &buf, &len, err, errlen);
	if (r)
		return r;
	/* The model keeps no pointer into the file: weights are copied. */
	r = eng_model_load_mem(opts->path, buf, len, opts->format, opts->labels_path,
			       opts->reference_kernels, out, err, errlen);
	free(buf);
	return r;
}

void eng_model_destroy(struct eng_model *m)
{
	if (!m)
		return;
	eng_graph_free(&m->g);
	cdn_model_destroy(m->cdn);
	eng_labels_free(m->labels, m->n_labels);
	free(m->state);
	free(m->name);
	free(m);
}

const struct eng_model_info *eng_model_info(const struct eng_model *m)
{
	return m ? &m->info : NULL;
}

const char *eng_model_label(const struct eng_model *m, int class_id)
{
	if (m && class_id >= 0 && class_id < m->n_labels && m->labels[class_id])
		return m->labels[class_id];
	static _Thread_local char num[16];
	snprintf(num, sizeof(num), "%d", class_id);
	return num;
}

/* ---- state -------------------------------------------------------------- */

int eng_state_create(const struct eng_model *m, struct eng_state **out)
{
	*out = NULL;
	if (!m)
		return -EINVAL;
	struct eng_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->m = m;
	s->bytes = m->info.state_bytes;
	if (s->bytes && !(s->data = aligned_alloc(ENG_ARENA_ALIGN, s->bytes))) {
		free(s);
		return -ENOMEM;
	}
	eng_state_reset(s);
	*out = s;
	return 0;
}

void eng_state_reset(struct eng_state *s)
{
	/* Zero bytes: what the reference runtime feeds the state inputs at the
	 * start of a stream. */
	if (s && s->data)
		memset(s->data, 0, s->bytes);
}

void eng_state_destroy(struct eng_state *s)
{
	if (!s)
		return;
	free(s->data);
	free(s);
}

/* ---- contexts ----------------------------------------------------------- */

static int lane_init(struct lane *l, const struct eng_model *m, int threads)
{
	size_t sb = m->g.scratch_bytes ? m->g.scratch_bytes : ENG_ARENA_ALIGN;
	sb = (sb + ENG_ARENA_ALIGN - 1) & ~(size_t)(ENG_ARENA_ALIGN - 1);
	l->arena = aligned_alloc(ENG_ARENA_ALIGN, m->g.arena_bytes);
	l->scratch = aligned_alloc(ENG_ARENA_ALIGN, sb);
	l->op_ns = calloc((size_t)m->g.n_nodes, sizeof(*l->op_ns));
	if (!l->arena || !l->scratch || !l->op_ns)
		return -ENOMEM;
	/* Deterministic contents, so a kernel bug reading stale bytes repeats. */
	memset(l->arena, 0, m->g.arena_bytes);
	l->x.arena = l->arena;
	l->x.scratch = l->scratch;
	l->x.threads = threads;
	l->x.lut_vbmi = eng_kset_has_vbmi(m->g.kset); /* checked once, not per lookup */
	return 0;
}

static void lane_free(struct lane *l)
{
	free(l->arena);
	free(l->scratch);
	free(l->op_ns);
}

int eng_ctx_create(const struct eng_model *m, const struct eng_backend_ops *backend, int threads,
		   struct eng_ctx **out, char *err, size_t errlen)
{
	return eng_ctx_create_opts(m, backend, NULL, threads, out, err, errlen);
}

/* CoDeNet's operators on the context's pool: cdn_par_fn chunks as pool slices
 * (slot = chunk index, which selects the chunk's scratch). */
struct cdn_pool_job {
	cdn_par_fn fn;
	void *arg;
};

static void cdn_pool_slice(void *ctx, size_t begin, size_t end, int slot)
{
	const struct cdn_pool_job *j = ctx;
	j->fn(j->arg, slot, (int)begin, (int)end);
}

static void cdn_pool_run(void *user, int threads, int n, cdn_par_fn fn, void *arg)
{
	struct cdn_pool_job j = {fn, arg};
	eng_pool_run(user, threads, n > 0 ? (size_t)n : 0, cdn_pool_slice, &j);
}

/* cdn_offload_fn: a CoDeNet layer on the context's device backend. */
static int cdn_device_layer(void *user, int layer, const struct cdn_ten *in,
			    const struct cdn_ten *aux, struct cdn_ten *out)
{
	struct eng_ctx *c = user;
	if (!in->q || !out->q) /* float models: cpu */
		return 1;
	return c->be->cdn_layer(c->be_priv, layer, in->q, aux ? aux->q : NULL, out->q);
}

int eng_ctx_create_opts(const struct eng_model *m, const struct eng_backend_ops *backend,
			const struct eng_backend_opts *bo, int threads, struct eng_ctx **out,
			char *err, size_t errlen)
{
	static const struct eng_backend_opts no_opts = {0, NULL, 0, NULL};
	*out = NULL;
	if (!m) {
		seterr(err, errlen, "engine: no model");
		return -EINVAL;
	}
	struct eng_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	int r = -ENOMEM;
	c->m = m;
	if (m->cdn) {
		/* CoDeNet runs on engine/codenet's own CPU operators, and a
		 * device backend takes the layers it can (cdn_layer) */
		if (backend && backend != &eng_backend_cpu && !backend->cdn_layer) {
			seterr(err, errlen, "engine: backend %s cannot run CoDeNet models",
			       backend->name);
			free(c);
			return -ENOTSUP;
		}
		int nl = cdn_model_desc(m->cdn)->n_layers;
		c->timings = calloc((size_t)nl, sizeof(*c->timings));
		if (!c->timings || (r = cdn_ctx_create(m->cdn, threads, &c->cdn))) {
			seterr(err, errlen, "engine: out of memory");
			eng_ctx_destroy(c);
			return r;
		}
		/* the operators split rows over the context's pool (no thread per operator) */
		if (threads > 1) {
			if ((r = eng_pool_create(threads, &c->pool))) {
				seterr(err, errlen, "engine: cannot start %d compute threads: %s",
				       threads, strerror(-r));
				eng_ctx_destroy(c);
				return r;
			}
			cdn_ctx_set_runner(c->cdn, cdn_pool_run, c->pool); /* NULL: all on the caller */
		}
		if (backend && backend != &eng_backend_cpu) {
			if ((r = backend->open(m, bo ? bo : &no_opts, threads, &c->be_priv, err,
					       errlen))) {
				eng_ctx_destroy(c);
				return r;
			}
			c->be = backend;
			cdn_ctx_set_offload(c->cdn, cdn_device_layer, c);
		}
		for (int i = 0; i < nl; i++) {
			c->timings[i].op_name = cdn_model_layer(m->cdn, i)->name;
			c->timings[i].index = i;
		}
		*out = c;
		return 0;
	}
	c->be = backend ? backend : &eng_backend_cpu;
	if (threads < 1)
		threads = 1;
	/* Frame-level parallelism needs a backend without per-context device
	 * state: only cpu gets more than one lane. */
	c->n_lanes = c->be == &eng_backend_cpu ? threads : 1;
	if (c->n_lanes > CTX_MAX_LANES)
		c->n_lanes = CTX_MAX_LANES;
	c->timings = calloc((size_t)m->g.n_nodes, sizeof(*c->timings));
	if (!c->timings)
		goto oom;
	for (int i = 0; i < c->n_lanes; i++, c->n_alloc++)
		if (lane_init(&c->lanes[i], m, i == 0 ? threads : 1))
			goto oom;
	/* DETD_BATCH=layers: a batch of frames of different streams runs layer by
	 * layer (run_layered).  Not the default: on the hosts measured it is no
	 * faster than lanes and needs an arena per frame (bench/README.md). */
	const char *bm = getenv("DETD_BATCH");
	c->layered = c->be == &eng_backend_cpu && bm && strcmp(bm, "layers") == 0;
	/* one pool for the lanes of a batch and the operators of lane 0 */
	if (c->n_lanes > 1 && (r = eng_pool_create(threads, &c->pool))) {
		seterr(err, errlen, "engine: cannot start %d compute threads: %s", threads,
		       strerror(-r));
		goto fail;
	}
	c->lanes[0].x.pool = c->pool;
	if ((r = c->be->open(m, bo ? bo : &no_opts, threads, &c->be_priv, err, errlen)))
		goto fail;
	for (int i = 0; i < m->g.n_nodes; i++) {
		c->timings[i].op_name = eng_op_name(m->g.nodes[i].type);
		c->timings[i].index = i;
		c->timings[i].macs = m->g.nodes[i].macs;
		conv_shape(&m->g.nodes[i], c->timings[i].shape, sizeof(c->timings[i].shape));
	}
	*out = c;
	return 0;
oom:
	seterr(err, errlen, "engine: out of memory for %d arenas of %zu bytes", c->n_lanes,
	       m->g.arena_bytes);
fail:
	eng_ctx_destroy(c);
	return r;
}

void eng_ctx_destroy(struct eng_ctx *c)
{
	if (!c)
		return;
	eng_pool_destroy(c->pool);
	if (c->be && c->be_priv)
		c->be->close(c->be_priv);
	cdn_ctx_destroy(c->cdn);
	if (c->watch)
		for (int i = 0; i < c->m->g.n_tensors; i++)
			free(c->watch[i]);
	free(c->watch);
	for (int i = 0; i < c->n_alloc; i++)
		lane_free(&c->lanes[i]);
	free(c->timings);
	free(c);
}

int eng_ctx_watch(struct eng_ctx *c, int index)
{
	const struct eng_graph *g = &c->m->g;
	if (index < -1 || index >= g->n_tensors)
		return -EINVAL;
	if (!c->watch && !(c->watch = calloc((size_t)g->n_tensors, sizeof(*c->watch))))
		return -ENOMEM;
	for (int i = index < 0 ? 0 : index; i < (index < 0 ? g->n_tensors : index + 1); i++) {
		const struct eng_tensor *t = &g->tensors[i];
		if (t->is_const || c->watch[i] || g->first_use[i] < -1)
			continue;
		if (!(c->watch[i] = calloc(1, t->bytes ? t->bytes : 1)))
			return -ENOMEM;
	}
	return 0;
}

static void watch_copy(struct eng_ctx *c, const struct eng_tensor *t)
{
	if (c->watch && c->watch[t->index])
		memcpy(c->watch[t->index], c->lanes[0].arena + t->offset, t->bytes);
}

static void observe(void *user, const struct eng_node *n, const struct eng_exec *x)
{
	(void)x;
	for (int k = 0; k < n->n_out; k++)
		watch_copy(user, n->out[k]);
}

static void put_image(const struct eng_model *m, uint8_t *arena, const uint8_t *src)
{
	const struct eng_tensor *t = &m->g.tensors[m->image_input];
	uint8_t *dst = arena + t->offset;
	size_t n = (size_t)t->dims[1] * (size_t)t->dims[2] * (size_t)t->dims[3];
	switch (t->type) {
	case ENG_DT_U8:
		memcpy(dst, src, n);
		break;
	case ENG_DT_I8:
		/* int8 detectors take the pixel shifted by 128 (q = p - 128). */
		for (size_t i = 0; i < n; i++)
			dst[i] = src[i] ^ 0x80;
		break;
	case ENG_DT_F32: {
		/* Float detectors of the TF OD API expect [-1, 1]; p/127.5 - 1 in float
		 * is the usual feeding code (and the oracle's): the other spelling,
		 * (p - 127.5)/127.5, rounds half of the 256 values differently. */
		float *f = (float *)dst;
		for (size_t i = 0; i < n; i++)
			f[i] = (float)src[i] / 127.5f - 1.0f;
		break;
	}
	default:
		break;
	}
}

static void get_detections(const struct eng_model *m, const uint8_t *arena,
			   struct eng_detections *d)
{
	const struct eng_node *pp = &m->g.nodes[m->pp_node];
	const float *box = (const float *)(arena + pp->out[0]->offset);
	const float *cls = (const float *)(arena + pp->out[1]->offset);
	const float *sc = (const float *)(arena + pp->out[2]->offset);
	float num = *(const float *)(arena + pp->out[3]->offset);
	int n = num > 0 ? (num < (float)m->pp_max ? (int)num : m->pp_max) : 0;
	d->n = n;
	for (int i = 0; i < n; i++) {
		memcpy(d->d[i].box, box + 4 * i, sizeof(d->d[i].box));
		/* A broken model may write anything: keep the cast defined. */
		d->d[i].class_id = cls[i] >= 0 && cls[i] < 1e6f ? (int)cls[i] : -1;
		d->d[i].score = sc[i];
	}
}

/* The frame and the recurrent state into a lane's arena (the state itself is
 * untouched until a run succeeds). */
static void stage_inputs(struct eng_ctx *c, struct lane *l, const uint8_t *img,
			 const struct eng_state *st)
{
	const struct eng_model *m = c->m;
	put_image(m, l->arena, img);
	for (int s = 0; s < m->n_state; s++) {
		const struct eng_state_slot *sl = &m->state[s];
		uint8_t *dst = l->arena + m->g.tensors[sl->in].offset;
		if (st)
			memcpy(dst, st->data + sl->offset, sl->bytes);
		else
			memset(dst, 0, sl->bytes);
	}
	if (c->watch && l == &c->lanes[0])
		for (int i = 0; i < m->g.n_inputs; i++)
			watch_copy(c, &m->g.tensors[m->g.inputs[i]]);
}

int eng_ctx_backend_info(const struct eng_ctx *c, struct eng_backend_info *out)
{
	if (!c || !out)
		return -EINVAL;
	if (!c->be || !c->be->info)
		return -ENOTSUP;
	return c->be->info(c->be_priv, out);
}

const char *eng_ctx_placement(const struct eng_ctx *c, int op)
{
	if (!c || !c->be || !c->be->placement || !c->be_priv)
		return "cpu";
	return c->be->placement(c->be_priv, op);
}

/* After a successful run on lane l: the recurrent state back into st (if
 * any), the post-process outputs into out. */
static void finish_frame(const struct eng_model *m, const struct lane *l, struct eng_state *st,
			 struct eng_detections *out)
{
	for (int s = 0; st && s < m->n_state; s++) {
		const struct eng_state_slot *sl = &m->state[s];
		memcpy(st->data + sl->offset, l->arena + m->g.tensors[sl->out].offset, sl->bytes);
	}
	get_detections(m, l->arena, out);
}

/* One frame on one lane: stage, run, copy the state back, convert the
 * detections. */
static int run_frame(struct eng_ctx *c, struct lane *l, const struct eng_exec *x,
		     const uint8_t *img, struct eng_state *st, struct eng_detections *out)
{
	const struct eng_model *m = c->m;
	bool obs = c->watch && l == &c->lanes[0];
	stage_inputs(c, l, img, st);
	int r = c->be->run(c->be_priv, &m->g, x, l->op_ns, obs ? observe : NULL, c);
	if (r)
		return r; /* the batcher's health path decides what runs it instead */
	finish_frame(m, l, st, out);
	return 0;
}

struct lane_job {
	struct eng_ctx *c;
	int lane, n;
	const int *lane_of;
	const uint8_t *const *inputs;
	struct eng_state *const *states;
	struct eng_detections *out;
	int *rc; /* per frame */
};

static void *lane_main(void *arg)
{
	const struct lane_job *j = arg;
	struct lane *l = &j->c->lanes[j->lane];
	struct eng_exec x = l->x;
	x.threads = 1; /* the parallelism is across frames here */
	x.pool = NULL;
	for (int f = 0; f < j->n; f++) {
		if (j->lane_of[f] != j->lane)
			continue;
		j->rc[f] = run_frame(j->c, l, &x, j->inputs[f], j->states ? j->states[f] : NULL,
				     &j->out[f]);
		if (j->rc[f])
			break; /* later frames of this lane may depend on the state */
	}
	return NULL;
}

static void lanes_slice(void *ctx, size_t begin, size_t end, int slot)
{
	struct lane_job *jobs = ctx;
	(void)slot;
	for (size_t k = begin; k < end; k++)
		lane_main(&jobs[k]);
}

/*
 * Frames of different streams on different lanes at once; frames sharing a
 * state stay on one lane, in order.
 */
static int run_parallel(struct eng_ctx *c, int n, const uint8_t *const *inputs,
			struct eng_state *const *states, struct eng_detections *out)
{
	int *lane_of = calloc((size_t)n, sizeof(int)), *rc = calloc((size_t)n, sizeof(int));
	int load[CTX_MAX_LANES] = {0};
	if (!lane_of || !rc) {
		free(lane_of);
		free(rc);
		return -ENOMEM;
	}
	for (int f = 0; f < n; f++) {
		struct eng_state *st = states ? states[f] : NULL;
		int lane = -1;
		for (int g = 0; st && g < f && lane < 0; g++)
			if (states[g] == st)
				lane = lane_of[g];
		if (lane < 0) {
			lane = 0;
			for (int k = 1; k < c->n_lanes; k++)
				if (load[k] < load[lane])
					lane = k;
		}
		lane_of[f] = lane;
		load[lane]++;
		rc[f] = -ECANCELED; /* until its lane runs it */
	}
	struct lane_job jobs[CTX_MAX_LANES];
	for (int k = 0; k < c->n_lanes; k++)
		jobs[k] = (struct lane_job){c, k, n, lane_of, inputs, states, out, rc};
	/* the lanes on the context's threads (more lanes than threads: in turn) */
	eng_pool_run(c->pool, c->n_lanes, (size_t)c->n_lanes, lanes_slice, jobs);
	int r = 0;
	for (int f = 0; f < n && !r; f++)
		if (rc[f]) {
			r = rc[f];
			log_error("engine", "%s: frame %d of %d failed: %s", c->m->name, f, n,
				  strerror(-r));
		}
	if (!r) {
		const struct lane *last = &c->lanes[lane_of[n - 1]];
		for (int i = 0; i < c->m->g.n_nodes; i++)
			c->timings[i].ns = last->op_ns[i];
		c->have_run = 1;
		c->last_lane = lane_of[n - 1];
	}
	free(lane_of);
	free(rc);
	return r;
}

/*
 * A batch of frames of different streams as one computation: every frame in
 * its own lane (arena) and the graph run layer by layer over the frames
 * (eng_graph_run_batch), so each layer's weights are read once while they are
 * in cache.  With T compute threads the frames are cut into T contiguous
 * groups, each run layer by layer on one thread: no barrier per layer
 * (measured: one per layer cost 15% at 2 threads, bench/README.md).
 * n <= CTX_MAX_LANES.
 */
struct layered_job {
	const struct eng_graph *g;
	const struct eng_exec *xs;
	struct lane *lanes;
	int n, groups;
	int rc[CTX_MAX_LANES], bad[CTX_MAX_LANES];
};

static void layered_slice(void *ctx, size_t begin, size_t end, int slot)
{
	struct layered_job *j = ctx;
	(void)slot;
	for (size_t k = begin; k < end; k++) {
		int f0 = (int)(k * (size_t)j->n / (size_t)j->groups);
		int f1 = (int)((k + 1) * (size_t)j->n / (size_t)j->groups);
		j->rc[k] = eng_graph_run_batch(j->g, j->xs + f0, f1 - f0, NULL, j->lanes[f0].op_ns,
					       &j->bad[k]);
		j->bad[k] += f0;
	}
}

static int run_layered(struct eng_ctx *c, int n, const uint8_t *const *inputs,
		       struct eng_state *const *states, struct eng_detections *out)
{
	const struct eng_model *m = c->m;
	for (; c->n_alloc < n; c->n_alloc++) /* arenas for this many frames, once */
		if (lane_init(&c->lanes[c->n_alloc], m, 1)) {
			lane_free(&c->lanes[c->n_alloc]);
			log_error("engine", "%s: no memory for %d arenas: batch runs frame by frame",
				  m->name, n);
			c->layered = false;
			return -EAGAIN;
		}
	struct eng_exec xs[CTX_MAX_LANES];
	for (int f = 0; f < n; f++) {
		stage_inputs(c, &c->lanes[f], inputs[f], states ? states[f] : NULL);
		xs[f] = c->lanes[f].x;
		xs[f].threads = 1; /* the parallelism is across frames */
		xs[f].pool = NULL;
	}
	int threads = eng_pool_threads(c->pool);
	struct layered_job j = {&m->g, xs, c->lanes, n, threads < n ? threads : n, {0}, {0}};
	eng_pool_run(c->pool, j.groups, (size_t)j.groups, layered_slice, &j);
	for (int k = 0; k < j.groups; k++)
		if (j.rc[k]) {
			log_error("engine", "%s: frame %d of %d failed: %s", m->name, j.bad[k], n,
				  strerror(-j.rc[k]));
			return j.rc[k];
		}
	for (int f = 0; f < n; f++) {
		finish_frame(m, &c->lanes[f], states ? states[f] : NULL, &out[f]);
	}
	for (int i = 0; i < m->g.n_nodes; i++)
		c->timings[i].ns = c->lanes[0].op_ns[i];
	c->have_run = 1;
	c->last_lane = n - 1;
	return 0;
}

/* Every frame's state differs from the others' (a stream at most once). */
static bool states_distinct(int n, struct eng_state *const *states)
{
	for (int f = 0; states && f < n; f++)
		for (int g = 0; states[f] && g < f; g++)
			if (states[g] == states[f])
				return false;
	return true;
}

int eng_run(struct eng_ctx *c, int n, const uint8_t *const *inputs, struct eng_state *const *states,
	    struct eng_detections *out)
{
	if (!c || n < 0 || (n && (!inputs || !out)))
		return -EINVAL;
	const struct eng_model *m = c->m;
	if (m->cdn) {
		for (int f = 0; f < n; f++) {
			const struct eng_state *st = states ? states[f] : NULL;
			if (!inputs[f] || (st && st->m != m))
				return -EINVAL;
			int r = cdn_run(c->cdn, inputs[f], &out[f]);
			if (r) {
				log_error("engine", "%s: codenet failed on frame %d of %d: %s", m->name,
					  f, n, strerror(-r));
				return r;
			}
			for (int i = 0; i < m->info.n_ops; i++)
				c->timings[i].ns = cdn_ctx_layer_ns(c->cdn, i);
			c->have_run = 1;
		}
		return 0;
	}
	for (int f = 0; f < n; f++)
		if (!inputs[f] || (states && states[f] && states[f]->m != m))
			return -EINVAL;
	/* Watched tensors are copied from lane 0: debugging runs sequentially. */
	if (c->layered && n > 1 && !c->watch && states_distinct(n, states)) {
		for (int f0 = 0; f0 < n; f0 += CTX_MAX_LANES) {
			int k = n - f0 < CTX_MAX_LANES ? n - f0 : CTX_MAX_LANES;
			int r = run_layered(c, k, inputs + f0, states ? states + f0 : NULL, out + f0);
			if (r == -EAGAIN) /* no arenas: the rest as before (c->layered is now off) */
				return eng_run(c, n - f0, inputs + f0, states ? states + f0 : NULL,
					       out + f0);
			if (r)
				return r;
		}
		return 0;
	}
	if (c->n_lanes > 1 && n > 1 && !c->watch)
		return run_parallel(c, n, inputs, states, out);
	struct lane *l = &c->lanes[0];
	for (int f = 0; f < n; f++) {
		int r = run_frame(c, l, &l->x, inputs[f], states ? states[f] : NULL, &out[f]);
		if (r) {
			log_error("engine", "%s: frame %d of %d failed: %s", m->name, f, n,
				  strerror(-r));
			return r;
		}
		for (int i = 0; i < m->g.n_nodes; i++)
			c->timings[i].ns = l->op_ns[i];
		c->have_run = 1;
		c->last_lane = 0;
	}
	return 0;
}

int eng_ctx_tensor(const struct eng_ctx *c, int index, const void **data, size_t *bytes)
{
	if (!c || index < 0 || index >= c->m->g.n_tensors)
		return -EINVAL;
	const struct eng_graph *g = &c->m->g;
	const struct eng_tensor *t = &g->tensors[index];
	*bytes = t->bytes;
	if (t->is_const) {
		*data = t->const_data;
		return 0;
	}
	if (!c->have_run)
		return -ENODATA;
	if (c->watch && c->watch[index]) {
		*data = c->watch[index];
		return 0;
	}
	/* Only tensors alive at the end of the run still hold their bytes. */
	if (g->last_use[index] == g->n_nodes) {
		*data = c->lanes[c->last_lane].arena + t->offset;
		return 0;
	}
	return -ENODATA;
}

int eng_ctx_op_timings(const struct eng_ctx *c, const struct eng_op_timing **t, int *n)
{
	if (!c || !c->have_run)
		return -ENODATA;
	*t = c->timings;
	*n = c->m->cdn ? c->m->info.n_ops : c->m->g.n_nodes;
	return 0;
}

static const char *const format_names[] = {
	[ENG_FORMAT_AUTO] = "auto",
	[ENG_FORMAT_TFLITE] = "tflite",
	[ENG_FORMAT_CODENET] = "codenet",
};

const char *eng_format_name(enum eng_format f)
{
	return (unsigned)f < sizeof(format_names) / sizeof(format_names[0]) ? format_names[f] : "?";
}

int eng_format_from_name(const char *name, enum eng_format *out)
{
	if (!name) {
		*out = ENG_FORMAT_AUTO;
		return 0;
	}
	for (size_t i = 0; i < sizeof(format_names) / sizeof(format_names[0]); i++) {
		if (strcmp(format_names[i], name) == 0) {
			*out = (enum eng_format)i;
			return 0;
		}
	}
	return -EINVAL;
}
