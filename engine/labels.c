/*
 * labels.c — label maps: the TF Object Detection API's pbtxt
 * (item { name: "x" id: N display_name: "y" }, ids from 1; display_name wins
 * when present), Coral's "ID  NAME" lines (id K = class K, ids may have gaps:
 * a missing id has no name and is reported by its number, never by a
 * neighbour's name) or plain text with one label per line (line 1 = class 0).
 * The post-process reports 0-based class ids without the background, so
 * pbtxt id N is class N-1.  Runs on the loading thread.
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define LABELS_MAX_FILE (4u << 20)
#define LABELS_MAX_ID 100000

struct lex {
	const char *s, *end;
	int line;
};

enum tok { T_EOF, T_IDENT, T_STR, T_NUM, T_PUNCT, T_BAD };

/* Next token; text in buf (strings unescaped). */
static enum tok next(struct lex *l, char *buf, size_t cap)
{
	for (;;) {
		while (l->s < l->end && isspace((unsigned char)*l->s)) {
			if (*l->s == '\n')
				l->line++;
			l->s++;
		}
		if (l->s < l->end && *l->s == '#') {
			while (l->s < l->end && *l->s != '\n')
				l->s++;
			continue;
		}
		break;
	}
	if (l->s >= l->end)
		return T_EOF;
	size_t k = 0;
	char c = *l->s;
	if (isalpha((unsigned char)c) || c == '_') {
		while (l->s < l->end && (isalnum((unsigned char)*l->s) || *l->s == '_')) {
			if (k + 1 < cap)
				buf[k++] = *l->s;
			l->s++;
		}
		buf[k] = 0;
		return T_IDENT;
	}
	if (c == '-' || isdigit((unsigned char)c)) {
		do {
			if (k + 1 < cap)
				buf[k++] = *l->s;
			l->s++;
		} while (l->s < l->end && isdigit((unsigned char)*l->s));
		buf[k] = 0;
		return T_NUM;
	}
	if (c == '"' || c == '\'') {
		char q = c;
		l->s++;
		while (l->s < l->end && *l->s != q && *l->s != '\n') {
			char ch = *l->s++;
			if (ch == '\\' && l->s < l->end)
				ch = *l->s++;
			if (k + 1 < cap)
				buf[k++] = ch;
		}
		if (l->s >= l->end || *l->s != q)
			return T_BAD;
		l->s++;
		buf[k] = 0;
		return T_STR;
	}
	if (c == '{' || c == '}' || c == ':') {
		buf[0] = c;
		buf[1] = 0;
		l->s++;
		return T_PUNCT;
	}
	return T_BAD;
}

static int perr(char *err, size_t errlen, const char *path, int line, const char *what)
{
	snprintf(err, errlen, "labels: %s:%d: %s", path, line, what);
	return -EINVAL;
}

static int parse_pbtxt(const char *path, const char *s, size_t len, char ***out, int *nout,
		       char *err, size_t errlen)
{
	struct lex l = {s, s + len, 1};
	char tok[256], key[64];
	char **labels = NULL;
	int n = 0, r = 0;
	enum tok t;
	while ((t = next(&l, tok, sizeof(tok))) != T_EOF) {
		if (t != T_IDENT || strcmp(tok, "item") != 0) {
			r = perr(err, errlen, path, l.line, "expected 'item'");
			goto fail;
		}
		if (next(&l, tok, sizeof(tok)) != T_PUNCT || tok[0] != '{') {
			r = perr(err, errlen, path, l.line, "expected '{' after item");
			goto fail;
		}
		long id = -1;
		char name[ENG_LABEL_MAX] = "", disp[ENG_LABEL_MAX] = "";
		for (;;) {
			t = next(&l, key, sizeof(key));
			if (t == T_PUNCT && key[0] == '}')
				break;
			if (t != T_IDENT) {
				r = perr(err, errlen, path, l.line, "expected a field name or '}'");
				goto fail;
			}
			t = next(&l, tok, sizeof(tok));
			if (t == T_PUNCT && tok[0] == ':')
				t = next(&l, tok, sizeof(tok));
			if (t == T_PUNCT && tok[0] == '{') {
				/* A nested message we do not use (keypoints, ...): skip it. */
				int depth = 1;
				while (depth > 0) {
					t = next(&l, tok, sizeof(tok));
					if (t == T_EOF || t == T_BAD) {
						r = perr(err, errlen, path, l.line, "unterminated block");
						goto fail;
					}
					if (t == T_PUNCT && tok[0] == '{')
						depth++;
					if (t == T_PUNCT && tok[0] == '}')
						depth--;
				}
				continue;
			}
			if (t != T_STR && t != T_NUM && t != T_IDENT) {
				r = perr(err, errlen, path, l.line, "expected a value");
				goto fail;
			}
			if (strcmp(key, "id") == 0) {
				char *e;
				if (t != T_NUM) {
					r = perr(err, errlen, path, l.line, "id must be a number");
					goto fail;
				}
				id = strtol(tok, &e, 10);
				if (id < 1 || id > LABELS_MAX_ID) {
					r = perr(err, errlen, path, l.line, "id out of range (1..100000)");
					goto fail;
				}
			} else if (strcmp(key, "name") == 0) {
				snprintf(name, sizeof(name), "%.*s", ENG_LABEL_MAX - 1, tok);
			} else if (strcmp(key, "display_name") == 0) {
				snprintf(disp, sizeof(disp), "%.*s", ENG_LABEL_MAX - 1, tok);
			}
		}
		if (id < 1) {
			r = perr(err, errlen, path, l.line, "item without id");
			goto fail;
		}
		if (id > n) {
			char **nl = realloc(labels, (size_t)id * sizeof(*nl));
			if (!nl) {
				r = -ENOMEM;
				goto fail;
			}
			for (int i = n; i < id; i++)
				nl[i] = NULL;
			labels = nl;
			n = (int)id;
		}
		if (labels[id - 1]) {
			r = perr(err, errlen, path, l.line, "id appears twice");
			goto fail;
		}
		labels[id - 1] = strdup(disp[0] ? disp : name);
		if (!labels[id - 1]) {
			r = -ENOMEM;
			goto fail;
		}
	}
	*out = labels;
	*nout = n;
	return 0;
fail:
	if (r == -ENOMEM)
		snprintf(err, errlen, "labels: %s: out of memory", path);
	eng_labels_free(labels, n);
	return r;
}

static int parse_lines(const char *path, const char *s, size_t len, char ***out, int *nout,
		       char *err, size_t errlen)
{
	char **labels = NULL;
	int n = 0;
	const char *p = s, *end = s + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl : end;
		const char *a = p, *b = e;
		while (a < b && isspace((unsigned char)*a))
			a++;
		while (b > a && isspace((unsigned char)b[-1]))
			b--;
		if (n >= LABELS_MAX_ID)
			break;
		char **grown = realloc(labels, (size_t)(n + 1) * sizeof(*grown));
		if (!grown)
			goto oom;
		labels = grown;
		size_t k = (size_t)(b - a);
		if (k >= ENG_LABEL_MAX)
			k = ENG_LABEL_MAX - 1;
		labels[n] = k ? strndup(a, k) : NULL;
		if (k && !labels[n])
			goto oom;
		n++;
		p = nl ? nl + 1 : end;
	}
	*out = labels;
	*nout = n;
	return 0;
oom:
	eng_labels_free(labels, n);
	snprintf(err, errlen, "labels: %s: out of memory", path);
	return -ENOMEM;
}

/* "  12  stop sign": an id, blanks, a name.  Sets *id and the name's span. */
static bool id_line(const char *a, const char *b, long *id, const char **na)
{
	const char *p = a;
	if (p >= b || !isdigit((unsigned char)*p))
		return false;
	long v = 0;
	while (p < b && isdigit((unsigned char)*p)) {
		v = v * 10 + (*p - '0');
		if (v > LABELS_MAX_ID)
			return false;
		p++;
	}
	if (p >= b || !(*p == ' ' || *p == '\t' || *p == ':'))
		return false;
	while (p < b && (*p == ' ' || *p == '\t' || *p == ':'))
		p++;
	if (p >= b)
		return false;
	*id = v;
	*na = p;
	return true;
}

/* Trimmed span of each line, in turn; false at the end. */
static bool next_line(const char **p, const char *end, const char **a, const char **b)
{
	if (*p >= end)
		return false;
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	const char *e = nl ? nl : end;
	*a = *p;
	*b = e;
	while (*a < *b && isspace((unsigned char)**a))
		(*a)++;
	while (*b > *a && isspace((unsigned char)(*b)[-1]))
		(*b)--;
	*p = nl ? nl + 1 : end;
	return true;
}

/* Every non-blank line is "ID NAME" (and there is at least one). */
static bool is_id_file(const char *s, size_t len)
{
	const char *p = s, *a, *b, *na;
	long id;
	int n = 0;
	while (next_line(&p, s + len, &a, &b)) {
		if (a == b)
			continue;
		if (!id_line(a, b, &id, &na))
			return false;
		n++;
	}
	return n > 0;
}

static int parse_id_lines(const char *path, const char *s, size_t len, char ***out, int *nout,
			  char *err, size_t errlen)
{
	char **labels = NULL;
	int n = 0, line = 0, r = 0;
	const char *p = s, *a, *b, *na;
	long id;
	while (next_line(&p, s + len, &a, &b)) {
		line++;
		if (a == b)
			continue;
		id_line(a, b, &id, &na);
		if (id >= n) {
			char **grown = realloc(labels, (size_t)(id + 1) * sizeof(*grown));
			if (!grown)
				goto oom;
			for (long i = n; i <= id; i++)
				grown[i] = NULL;
			labels = grown;
			n = (int)id + 1;
		}
		if (labels[id]) {
			r = perr(err, errlen, path, line, "id appears twice");
			goto fail;
		}
		size_t k = (size_t)(b - na);
		if (k >= ENG_LABEL_MAX)
			k = ENG_LABEL_MAX - 1;
		labels[id] = strndup(na, k);
		if (!labels[id])
			goto oom;
	}
	*out = labels;
	*nout = n;
	return 0;
oom:
	snprintf(err, errlen, "labels: %s: out of memory", path);
	r = -ENOMEM;
fail:
	eng_labels_free(labels, n);
	return r;
}

int eng_labels_load(const char *path, char ***labels, int *n, char *err, size_t errlen)
{
	*labels = NULL;
	*n = 0;
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		int e = errno;
		snprintf(err, errlen, "labels: %s: %s", path, strerror(e));
		return -e;
	}
	char *buf = malloc(LABELS_MAX_FILE + 1);
	if (!buf) {
		fclose(fp);
		return -ENOMEM;
	}
	size_t len = fread(buf, 1, LABELS_MAX_FILE + 1, fp);
	int rerr = ferror(fp);
	fclose(fp);
	int r;
	if (rerr) {
		snprintf(err, errlen, "labels: %s: read error", path);
		r = -EIO;
	} else if (len > LABELS_MAX_FILE) {
		snprintf(err, errlen, "labels: %s: larger than 4 MiB", path);
		r = -EFBIG;
	} else {
		const char *s = buf;
		for (;;) {
			while (s < buf + len && isspace((unsigned char)*s))
				s++;
			if (s >= buf + len || *s != '#')
				break;
			while (s < buf + len && *s != '\n')
				s++;
		}
		size_t rest = (size_t)(buf + len - s);
		bool pbtxt = rest >= 4 && memcmp(s, "item", 4) == 0 &&
			     (rest == 4 || !isalnum((unsigned char)s[4]));
		if (pbtxt)
			r = parse_pbtxt(path, buf, len, labels, n, err, errlen);
		else if (is_id_file(buf, len))
			r = parse_id_lines(path, buf, len, labels, n, err, errlen);
		else
			r = parse_lines(path, buf, len, labels, n, err, errlen);
	}
	free(buf);
	return r;
}

void eng_labels_free(char **labels, int n)
{
	for (int i = 0; labels && i < n; i++)
		free(labels[i]);
	free(labels);
}
