/*
 * utf8.c — see utf8.h.
 */
#include "utf8.h"

#include <string.h>

/* Length of the well-formed sequence at s (n bytes left), 0 if ill-formed
 * (the table of RFC 3629 section 4). */
static size_t seq_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xBF;
	size_t len;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4;
	else
		return 0; /* continuation byte, C0/C1 (overlong), F5..FF */
	if (c == 0xE0)
		lo = 0xA0; /* overlong */
	else if (c == 0xED)
		hi = 0x9F; /* surrogates U+D800..DFFF */
	else if (c == 0xF0)
		lo = 0x90; /* overlong */
	else if (c == 0xF4)
		hi = 0x8F; /* above U+10FFFF */
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return len;
}

bool utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		size_t l = seq_len(p + i, n - i);
		if (!l)
			return false;
		i += l;
	}
	return true;
}

int utf8_cut(const char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), i = 0;
	while (i < n) {
		size_t l = seq_len(p + i, n - i);
		if (!l)
			l = 1; /* count a bad byte as one; the caller sanitizes */
		if (i + l > max)
			break;
		i += l;
	}
	return (int)i;
}

void utf8_sanitize(char *out, size_t cap, const char *in)
{
	static const char repl[] = "\xEF\xBF\xBD";
	const unsigned char *p = (const unsigned char *)in;
	size_t n = strlen(in), o = 0;
	if (!cap)
		return;
	for (size_t i = 0; i < n;) {
		size_t l = seq_len(p + i, n - i);
		const char *src = l ? in + i : repl;
		size_t sl = l ? l : 3;
		if (o + sl >= cap)
			break;
		memcpy(out + o, src, sl);
		o += sl;
		i += l ? l : 1;
	}
	out[o] = '\0';
}
