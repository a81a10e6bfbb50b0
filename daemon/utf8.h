/*
 * utf8.h — strict UTF-8 (RFC 3629) for what detd echoes back to clients.
 *
 * json-c's own check lets overlong forms, UTF-16 surrogates and code points
 * above U+10FFFF through, and a byte-counted "%.48s" can cut a character in
 * two; strict JSON clients then fail on the reply (issue 15 #6).  Pure
 * functions, any thread.
 */
#ifndef DETD_UTF8_H
#define DETD_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..n) is strict UTF-8 (no overlongs, surrogates, > U+10FFFF). */
bool utf8_valid(const char *s, size_t n);

/* The longest prefix of the NUL-terminated s of at most max bytes that does
 * not end inside a character (for "%.*s" truncation). */
int utf8_cut(const char *s, size_t max);

/* Copy NUL-terminated in to out (cap bytes, always terminated) with every
 * invalid sequence replaced by U+FFFD, never splitting a character. */
void utf8_sanitize(char *out, size_t cap, const char *in);

#endif
