/*
 * mock_util.c -- helpers for the Partoo mock server: growing buffers,
 * JSON / COPY escaping, FNV-1a 64, date and URL checks, Content-Type
 * parsing and a binary-safe multipart/form-data parser.  See mock_util.h.
 */
#define _GNU_SOURCE
#include "mock_util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* memory                                                              */
/* ------------------------------------------------------------------ */

void *
xmalloc(size_t n)
{
  void *p = malloc(n ? n : 1);
  if (!p)
  {
    fprintf(stderr, "partoo-mock: out of memory\n");
    abort();
  }
  return p;
}

void *
xrealloc(void *p, size_t n)
{
  void *q = realloc(p, n ? n : 1);
  if (!q)
  {
    fprintf(stderr, "partoo-mock: out of memory\n");
    abort();
  }
  return q;
}

char *
xstrndup(const char *s, size_t n)
{
  char *d = xmalloc(n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

/* ------------------------------------------------------------------ */
/* string buffer                                                       */
/* ------------------------------------------------------------------ */

void
sb_reserve(sb_t *b, size_t extra)
{
  if (b->len + extra + 1 <= b->cap)
    return;
  size_t nc = b->cap ? b->cap : 256;
  while (nc < b->len + extra + 1)
    nc *= 2;
  b->p = xrealloc(b->p, nc);
  b->cap = nc;
}

void
sb_put(sb_t *b, const void *data, size_t n)
{
  sb_reserve(b, n);
  memcpy(b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void
sb_puts(sb_t *b, const char *s)
{
  sb_put(b, s, strlen(s));
}

void
sb_putc(sb_t *b, char c)
{
  sb_reserve(b, 1);
  b->p[b->len++] = c;
  b->p[b->len] = '\0';
}

void
sb_put_u64(sb_t *b, uint64_t v)
{
  char tmp[24];
  int i = sizeof(tmp);
  do
  {
    tmp[--i] = (char) ('0' + v % 10);
    v /= 10;
  } while (v);
  sb_put(b, tmp + i, sizeof(tmp) - (size_t) i);
}

void
sb_put_i64(sb_t *b, int64_t v)
{
  if (v < 0)
  {
    sb_putc(b, '-');
    sb_put_u64(b, (uint64_t) 0 - (uint64_t) v);
  }
  else
    sb_put_u64(b, (uint64_t) v);
}

void
sb_put_hex64(sb_t *b, uint64_t v)
{
  static const char hx[] = "0123456789abcdef";
  char tmp[16];
  for (int i = 15; i >= 0; i--)
  {
    tmp[i] = hx[v & 15];
    v >>= 4;
  }
  sb_put(b, tmp, 16);
}

void
sb_printf(sb_t *b, const char *fmt, ...)
{
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  if (n <= 0)
    return;
  if ((size_t) n < sizeof(tmp))
  {
    sb_put(b, tmp, (size_t) n);
    return;
  }
  sb_reserve(b, (size_t) n);
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t) n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t) n;
}

void
sb_put_date_us(sb_t *b, int64_t us)
{
  time_t s = (time_t) (us / 1000000);
  struct tm tm;
  gmtime_r(&s, &tm);
  sb_printf(b, "\"%04d-%02d-%02d %02d:%02d:%02d.%06lld+00:00\"", tm.tm_year + 1900, tm.tm_mon + 1,
            tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long long) (us % 1000000));
}

void
sb_free(sb_t *b)
{
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* length of a valid UTF-8 sequence starting at s (max n bytes), 0 if invalid */
static size_t
utf8_seq_len(const unsigned char *s, size_t n)
{
  unsigned c = s[0];
  size_t len;
  unsigned cp;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
  {
    len = 2;
    cp = c & 0x1F;
  }
  else if (c >= 0xE0 && c <= 0xEF)
  {
    len = 3;
    cp = c & 0x0F;
  }
  else if (c >= 0xF0 && c <= 0xF4)
  {
    len = 4;
    cp = c & 0x07;
  }
  else
    return 0;
  if (len > n)
    return 0;
  for (size_t i = 1; i < len; i++)
  {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return len;
}

void
sb_json_str(sb_t *b, const char *str, size_t n)
{
  static const char hx[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *) str;
  sb_reserve(b, n + 2);
  sb_putc(b, '"');
  size_t i = 0;
  while (i < n)
  {
    /* copy a run of plain ASCII at once */
    size_t j = i;
    while (j < n && s[j] >= 0x20 && s[j] < 0x80 && s[j] != '"' && s[j] != '\\')
      j++;
    if (j > i)
    {
      sb_put(b, s + i, j - i);
      i = j;
      continue;
    }
    unsigned c = s[i];
    if (c == '"')
      sb_put(b, "\\\"", 2);
    else if (c == '\\')
      sb_put(b, "\\\\", 2);
    else if (c == '\n')
      sb_put(b, "\\n", 2);
    else if (c == '\r')
      sb_put(b, "\\r", 2);
    else if (c == '\t')
      sb_put(b, "\\t", 2);
    else if (c < 0x20)
    {
      char e[6] = {'\\', 'u', '0', '0', hx[c >> 4], hx[c & 15]};
      sb_put(b, e, 6);
    }
    else
    {
      size_t l = utf8_seq_len(s + i, n - i);
      if (l)
      {
        sb_put(b, s + i, l);
        i += l;
        continue;
      }
      char e[5] = {'\\', '\\', 'x', hx[c >> 4], hx[c & 15]};
      sb_put(b, e, 5);
    }
    i++;
  }
  sb_putc(b, '"');
}

void
sb_copy_field(sb_t *b, const char *s, size_t n)
{
  sb_reserve(b, n);
  size_t i = 0;
  while (i < n)
  {
    size_t j = i;
    while (j < n && s[j] != '\\' && s[j] != '\t' && s[j] != '\n' && s[j] != '\r')
      j++;
    if (j > i)
    {
      sb_put(b, s + i, j - i);
      i = j;
      continue;
    }
    switch (s[i])
    {
      case '\\': sb_put(b, "\\\\", 2); break;
      case '\t': sb_put(b, "\\t", 2); break;
      case '\n': sb_put(b, "\\n", 2); break;
      default: sb_put(b, "\\r", 2); break;
    }
    i++;
  }
}

/* ------------------------------------------------------------------ */
/* hashing, checks                                                     */
/* ------------------------------------------------------------------ */

uint64_t
fnv1a64_update(uint64_t h, const void *data, size_t n)
{
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++)
  {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t
fnv1a64(const void *data, size_t n)
{
  return fnv1a64_update(FNV64_OFFSET, data, n);
}

static int
digits(const char *s, int n, int *out)
{
  int v = 0;
  for (int i = 0; i < n; i++)
  {
    if (s[i] < '0' || s[i] > '9')
      return 0;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return 1;
}

int
iso8601_utc_ok(const char *s, size_t n)
{
  int y, mo, d, h, mi, se;
  if (n < 20)
    return 0;
  if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
      s[7] != '-' || !digits(s + 8, 2, &d) || s[10] != 'T' ||
      !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) ||
      s[16] != ':' || !digits(s + 17, 2, &se))
    return 0;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
    return 0;
  size_t i = 19;
  if (s[i] == '.')
  {
    size_t start = ++i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
    if (i == start || i - start > 9)
      return 0;
  }
  if (n - i == 1 && s[i] == 'Z')
    return 1;
  if (n - i == 6 && memcmp(s + i, "+00:00", 6) == 0)
    return 1;
  return 0;
}

int
http_url_ok(const char *s)
{
  if (strncasecmp(s, "http://", 7) == 0)
    return s[7] != '\0';
  if (strncasecmp(s, "https://", 8) == 0)
    return s[8] != '\0';
  return 0;
}

int
parse_pos_int64(const char *s, size_t n, int64_t *out)
{
  if (n == 0 || n > 19)
    return 0;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++)
  {
    if (s[i] < '0' || s[i] > '9')
      return 0;
    v = v * 10 + (uint64_t) (s[i] - '0');
  }
  if (v == 0 || v > (uint64_t) INT64_MAX)
    return 0;
  *out = (int64_t) v;
  return 1;
}

int
media_type_is(const char *ct, const char *type)
{
  if (!ct)
    return 0;
  while (*ct == ' ' || *ct == '\t')
    ct++;
  size_t n = 0;
  while (ct[n] && ct[n] != ';' && ct[n] != ' ' && ct[n] != '\t')
    n++;
  if (n != strlen(type) || strncasecmp(ct, type, n) != 0)
    return 0;
  const char *rest = ct + n;
  while (*rest == ' ' || *rest == '\t')
    rest++;
  return *rest == '\0' || *rest == ';';
}

size_t
multipart_boundary(const char *ct, char *out, size_t outsz)
{
  const char *p = strchr(ct, ';');
  while (p)
  {
    p++;
    while (*p == ' ' || *p == '\t')
      p++;
    if (strncasecmp(p, "boundary=", 9) == 0)
    {
      p += 9;
      size_t n = 0;
      if (*p == '"')
      {
        p++;
        while (p[n] && p[n] != '"')
          n++;
        if (p[n] != '"')
          return 0;
      }
      else
      {
        while (p[n] && p[n] != ';' && p[n] != ' ' && p[n] != '\t')
          n++;
      }
      if (n == 0 || n > 200 || n + 1 > outsz)
        return 0;
      memcpy(out, p, n);
      out[n] = '\0';
      return n;
    }
    /* skip to next ';' not inside quotes */
    int q = 0;
    while (*p && (q || *p != ';'))
    {
      if (*p == '"')
        q = !q;
      p++;
    }
    p = *p ? p : NULL;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* multipart/form-data                                                 */
/* ------------------------------------------------------------------ */

/* Parse one Content-Disposition value: form-data; name="x"; filename="y" */
static int
parse_disposition(const char *v, const char *end, mp_part_t *part)
{
  while (v < end && (*v == ' ' || *v == '\t'))
    v++;
  const char *t = v;
  while (v < end && *v != ';' && *v != ' ' && *v != '\t')
    v++;
  if ((size_t) (v - t) != 9 || strncasecmp(t, "form-data", 9) != 0)
    return 0;
  while (v < end)
  {
    while (v < end && *v != ';')
      v++;
    if (v >= end)
      break;
    v++; /* ';' */
    while (v < end && (*v == ' ' || *v == '\t'))
      v++;
    const char *k = v;
    while (v < end && *v != '=' && *v != ';' && *v != ' ' && *v != '\t')
      v++;
    size_t klen = (size_t) (v - k);
    while (v < end && (*v == ' ' || *v == '\t'))
      v++;
    if (v >= end || *v != '=')
      continue;
    v++;
    while (v < end && (*v == ' ' || *v == '\t'))
      v++;
    const char *val;
    size_t vlen;
    if (v < end && *v == '"')
    {
      v++;
      val = v;
      while (v < end && *v != '"')
      {
        if (*v == '\\' && v + 1 < end)
          v++;
        v++;
      }
      if (v >= end)
        return 0; /* unterminated quote */
      vlen = (size_t) (v - val);
      v++;
    }
    else
    {
      val = v;
      while (v < end && *v != ';' && *v != ' ' && *v != '\t')
        v++;
      vlen = (size_t) (v - val);
    }
    if (klen == 4 && strncasecmp(k, "name", 4) == 0)
    {
      part->name = val;
      part->name_len = vlen;
    }
    else if (klen == 8 && strncasecmp(k, "filename", 8) == 0)
    {
      part->filename = val;
      part->filename_len = vlen;
    }
  }
  return part->name != NULL;
}

int
multipart_parse(const char *body, size_t len, const char *boundary,
                size_t blen, mp_part_t *parts, int max_parts)
{
  /* delimiter is CRLF "--" boundary; the very first may lack the CRLF */
  size_t dlen = blen + 4;
  char *delim = xmalloc(dlen + 1);
  delim[0] = '\r';
  delim[1] = '\n';
  delim[2] = '-';
  delim[3] = '-';
  memcpy(delim + 4, boundary, blen);
  delim[dlen] = '\0';

  int count = -1;
  size_t pos; /* index of the "--boundary" of the current delimiter */
  if (len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0)
    pos = 0;
  else
  {
    const char *f = memmem(body, len, delim, dlen);
    if (!f)
      goto out;
    pos = (size_t) (f - body) + 2;
  }

  int n = 0;
  for (;;)
  {
    size_t p = pos + (dlen - 2);
    if (p + 2 <= len && body[p] == '-' && body[p + 1] == '-')
    {
      count = n; /* close delimiter: done, ignore epilogue */
      break;
    }
    while (p < len && (body[p] == ' ' || body[p] == '\t'))
      p++;
    if (p + 2 > len || body[p] != '\r' || body[p + 1] != '\n')
      break;
    p += 2;
    if (n >= max_parts)
      break;
    mp_part_t *part = &parts[n];
    memset(part, 0, sizeof(*part));
    size_t data_start;
    if (p + 2 <= len && body[p] == '\r' && body[p + 1] == '\n')
      data_start = p + 2; /* no headers at all */
    else
    {
      const char *he = memmem(body + p, len - p, "\r\n\r\n", 4);
      if (!he)
        break;
      size_t hend = (size_t) (he - body);
      data_start = hend + 4;
      /* walk header lines */
      size_t l = p;
      int bad = 0;
      while (l < hend + 2)
      {
        const char *le = memmem(body + l, hend + 2 - l, "\r\n", 2);
        size_t lend = le ? (size_t) (le - body) : hend;
        const char *line = body + l;
        size_t llen = lend - l;
        const char *colon = memchr(line, ':', llen);
        if (!colon)
        {
          bad = 1;
          break;
        }
        size_t nlen = (size_t) (colon - line);
        if (nlen == 19 && strncasecmp(line, "Content-Disposition", 19) == 0)
        {
          if (!parse_disposition(colon + 1, line + llen, part))
          {
            bad = 1;
            break;
          }
        }
        l = lend + 2;
      }
      if (bad)
        break;
    }
    if (!part->name)
      break;
    const char *de = data_start <= len
                       ? memmem(body + data_start, len - data_start, delim, dlen)
                       : NULL;
    if (!de)
      break;
    part->data = body + data_start;
    part->data_len = (size_t) (de - body) - data_start;
    n++;
    pos = (size_t) (de - body) + 2;
  }
out:
  free(delim);
  return count;
}
