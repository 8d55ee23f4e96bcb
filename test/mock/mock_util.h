/*
 * mock_util.h -- small helpers for the Partoo mock server (partoo_mock.c).
 *
 * Growing string buffer, JSON / PostgreSQL-COPY escaping, FNV-1a 64 hashing,
 * ISO 8601 date shape check, Content-Type parsing and a binary-safe
 * multipart/form-data parser.  Nothing here touches global state, so every
 * function is safe to call from any thread.
 */
#ifndef PARTOO_MOCK_UTIL_H
#define PARTOO_MOCK_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* ---- growing buffer (aborts on out-of-memory: this is a test tool) ---- */
typedef struct
{
  char *p;
  size_t len;
  size_t cap;
} sb_t;

void sb_reserve(sb_t *b, size_t extra);
void sb_put(sb_t *b, const void *data, size_t n);
void sb_puts(sb_t *b, const char *s);
void sb_putc(sb_t *b, char c);
void sb_put_i64(sb_t *b, int64_t v);
void sb_put_u64(sb_t *b, uint64_t v);
void sb_put_hex64(sb_t *b, uint64_t v);
void sb_printf(sb_t *b, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));
void sb_free(sb_t *b);

/* A JSON string with a CLOCK_REALTIME time in microseconds, in the shape
 * of Partoo's dates: "2026-12-04 19:06:27.123456+00:00" */
void sb_put_date_us(sb_t *b, int64_t us);

/* JSON string literal (with quotes).  Valid UTF-8 is kept, control characters
 * use JSON escapes, bytes that are not valid UTF-8 become the 4-character
 * text \xHH (i.e. "\\xHH" in the JSON source). */
void sb_json_str(sb_t *b, const char *s, size_t n);

/* PostgreSQL COPY text-format field: \ -> \\, TAB -> \t, LF -> \n, CR -> \r */
void sb_copy_field(sb_t *b, const char *s, size_t n);

void *xmalloc(size_t n);
void *xrealloc(void *p, size_t n);
char *xstrndup(const char *s, size_t n);

/* ---- misc ---- */
uint64_t fnv1a64(const void *data, size_t n);
uint64_t fnv1a64_update(uint64_t h, const void *data, size_t n);
#define FNV64_OFFSET 0xcbf29ce484222325ULL

/* YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00), basic range checks */
int iso8601_utc_ok(const char *s, size_t n);

/* 1 if s starts with http:// or https:// (scheme case-insensitive) and has
 * at least one character after it */
int http_url_ok(const char *s);

/* Parse a decimal integer made only of digits (no sign, no spaces).
 * Returns 1 and stores the value if 1 <= value <= INT64_MAX, else 0. */
int parse_pos_int64(const char *s, size_t n, int64_t *out);

/* Compare the media type of a Content-Type header value (before any ';',
 * case-insensitively, surrounding whitespace ignored) with `type`. */
int media_type_is(const char *content_type, const char *type);

/* Extract the boundary parameter of a multipart Content-Type value.
 * Returns the length written to out (NUL-terminated) or 0 if none/invalid. */
size_t multipart_boundary(const char *content_type, char *out, size_t outsz);

/* ---- multipart/form-data ---- */
typedef struct
{
  const char *name;      /* points into the body, not NUL-terminated */
  size_t name_len;
  const char *filename;  /* NULL if no filename parameter */
  size_t filename_len;
  const char *data;
  size_t data_len;
} mp_part_t;

/* Returns number of parts (>= 0), or -1 if the body is malformed or has more
 * than max_parts parts.  Every part must carry a Content-Disposition header of
 * type form-data with a name parameter. */
int multipart_parse(const char *body, size_t len, const char *boundary,
                    size_t blen, mp_part_t *parts, int max_parts);

#endif
