/*-------------------------------------------------------------------------
 *
 * redact.c
 *		Finding and hiding API keys in the text of log messages.
 *
 * The texts are SQL statements and the messages PostgreSQL and partoo
 * write about them, which quote SQL ("statement: ...", "SQL statement
 * \"...\"", "parameters: $1 = '...'") or values ("parameter \"...\"
 * changed to \"...\"", "invalid input syntax for type integer: \"...\"").
 * So the redactor reads every text with PostgreSQL's lexical rules for
 * what can hold a value (string constants of every kind, dollar quotes,
 * quoted identifiers, comments) and replaces each such thing whole; it
 * does not try to tell which constant is the key.  Reading the quoting
 * right matters as much as redacting: a quote taken for the end of a
 * string when it is not would leave the rest of the string, key and all,
 * in plain text.  So where two readings differ (a backslash before a
 * quote in a plain string means one thing under
 * standard_conforming_strings = on and another under off) or a string
 * does not end, the rest of the text is redacted.
 *
 * Nothing here allocates, throws or keeps state: partoo_redact() writes
 * into the caller's buffer like snprintf() and returns the length it
 * needs, so the caller measures, allocates in its own way, then writes.
 * That makes it safe inside PostgreSQL's error reporting (see
 * redact_log.c) and easy to fuzz.
 *
 * src/core/redact.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/redact.h"

#include <string.h>

/* The output of partoo_redact(): a bounded buffer, or only a count */
typedef struct RedactOut
{
	char	   *buf;			/* NULL: only measure */
	size_t		size;
	size_t		len;			/* what the whole output needs */
	int			nredacted;
} RedactOut;

static bool
ident_start(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		c >= 0x80;
}

/* The characters of an unquoted identifier after the first one */
static bool
ident_cont(unsigned char c)
{
	return ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

static bool
is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
		c == '\v';
}

static unsigned char
lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* s[0..n) equals the lower-case word w, ignoring case */
static bool
word_is(const char *s, size_t n, const char *w)
{
	size_t		i;

	for (i = 0; i < n; i++)
		if (w[i] == '\0' || lower((unsigned char) s[i]) != (unsigned char) w[i])
			return false;
	return w[n] == '\0';
}

/* s[0..n) starts with the lower-case word w, ignoring case */
static bool
word_starts(const char *s, size_t n, const char *w)
{
	size_t		wn = strlen(w);

	return n >= wn && word_is(s, wn, w);
}

/* The names of the key settings and of the key column */
static bool
is_key_word(const char *s, size_t n)
{
	return word_is(s, n, "api_key") || word_is(s, n, "dispatch_webhook_key");
}

/*
 * Does a word "accounts" at s[i..] name partoo.accounts: qualified by
 * partoo (quoted or not, spaces allowed around the dot), or anywhere when
 * partoo is on the search path?
 */
static bool
accounts_is_partoo(const PartooRedactor *r, const char *s, size_t i)
{
	size_t		k = i;
	size_t		end;

	if (r->bare_accounts)
		return true;
	if (k > 0 && s[k - 1] == '"')
		k--;
	while (k > 0 && is_space((unsigned char) s[k - 1]))
		k--;
	if (k == 0 || s[k - 1] != '.')
		return false;
	k--;
	while (k > 0 && is_space((unsigned char) s[k - 1]))
		k--;
	if (k > 0 && s[k - 1] == '"')
		k--;
	end = k;
	while (k > 0 && ident_cont((unsigned char) s[k - 1]))
		k--;
	return word_is(s + k, end - k, "partoo");
}

/* The length of the longest current key value at s[i..n), or 0 */
static size_t
secret_at(const PartooRedactor *r, const char *s, size_t n, size_t i)
{
	size_t		best = 0;
	int			k;

	for (k = 0; k < r->nsecrets; k++)
	{
		size_t		len = r->secret_len[k];

		if (len > best && len <= n - i && s[i] == r->secrets[k][0] &&
			memcmp(s + i, r->secrets[k], len) == 0)
			best = len;
	}
	return best;
}

static bool
span_has_secret(const PartooRedactor *r, const char *s, size_t n)
{
	size_t		i;

	for (i = 0; i < n; i++)
		if (secret_at(r, s, n, i) > 0)
			return true;
	return false;
}

/*
 * A quoted name kept as it is in a redacted text: made of
 * identifier characters and dots only, holding no key value, and naming
 * something key-bearing (the schema partoo, the table accounts or one of
 * its constraints, a key setting or column).  Any other quoted string
 * may be a value ("changed to \"...\"", a key mistaken for a column name):
 * redacted.
 */
static bool
kept_name(const PartooRedactor *r, const char *s, size_t n)
{
	size_t		i;
	size_t		start = 0;
	bool		keybearing = false;

	if (n == 0 || span_has_secret(r, s, n))
		return false;
	for (i = 0; i <= n; i++)
	{
		if (i < n && ident_cont((unsigned char) s[i]))
			continue;
		if (i < n && s[i] != '.')
			return false;
		/* a component s[start..i) */
		if (word_is(s + start, i - start, "partoo") ||
			word_is(s + start, i - start, "accounts") ||
			word_starts(s + start, i - start, "accounts_") ||
			is_key_word(s + start, i - start))
			keybearing = true;
		start = i + 1;
	}
	return keybearing;
}

/* s[0..n) names a key setting or column as one of its dotted components */
static bool
name_has_key_word(const char *s, size_t n)
{
	size_t		i;
	size_t		start = 0;

	for (i = 0; i <= n; i++)
	{
		if (i < n && s[i] != '.')
			continue;
		if (is_key_word(s + start, i - start))
			return true;
		start = i + 1;
	}
	return false;
}

/*
 * The end of the dollar-quote delimiter ($$ or $tag$) starting at s[i],
 * one past its closing $, or 0 when s[i] starts none (a parameter $1, a
 * $ inside an identifier).
 */
static size_t
dollar_delim(const char *s, size_t n, size_t i)
{
	size_t		j = i + 1;

	if (s[i] != '$' || (i > 0 && ident_cont((unsigned char) s[i - 1])))
		return 0;
	if (j < n && ident_start((unsigned char) s[j]))
	{
		j++;
		while (j < n && ident_cont((unsigned char) s[j]) && s[j] != '$')
			j++;
	}
	if (j < n && s[j] == '$')
		return j + 1;
	return 0;
}

/*
 * After a key setting or column name ending at s[j]: the bare value of
 * "= value" or "TO value" (SET partoo.api_key TO abc), in *vs..*ve.
 * Quoted values are left to the lexer; DEFAULT is no key.  A column
 * reference or function call after "api_key =" is redacted too, which
 * hides nothing that matters.
 */
static bool
bare_value(const char *s, size_t n, size_t j, size_t *vs, size_t *ve)
{
	size_t		start;
	unsigned char c;

	while (j < n && is_space((unsigned char) s[j]))
		j++;
	if (j < n && s[j] == '=')
	{
		j++;
		if (j < n && (s[j] == '>' || s[j] == '='))
			return false;		/* named argument, comparison */
	}
	else if (j + 2 <= n && word_is(s + j, 2, "to") &&
			 (j + 2 == n || !ident_cont((unsigned char) s[j + 2])))
		j += 2;
	else
		return false;
	while (j < n && is_space((unsigned char) s[j]))
		j++;
	if (j >= n)
		return false;
	c = (unsigned char) s[j];
	if (c == '\'' || c == '"' || dollar_delim(s, n, j) > 0)
		return false;
	if (j + 1 < n && s[j + 1] == '\'' && strchr("eEbBxXnN", c) != NULL)
		return false;
	if (j + 2 < n && (c == 'u' || c == 'U') && s[j + 1] == '&' &&
		(s[j + 2] == '\'' || s[j + 2] == '"'))
		return false;
	start = j;
	while (j < n && !is_space((unsigned char) s[j]) &&
		   strchr(";,()'\"", s[j]) == NULL)
		j++;
	if (j == start || word_is(s + start, j - start, "default"))
		return false;
	*vs = start;
	*ve = j;
	return true;
}

static void
put(RedactOut *o, const char *s, size_t n)
{
	if (o->buf != NULL && o->len < o->size)
	{
		size_t		room = o->size - o->len;

		memcpy(o->buf + o->len, s, n < room ? n : room);
	}
	o->len += n;
}

static void
put_redacted(RedactOut *o)
{
	put(o, PARTOO_REDACTED, sizeof(PARTOO_REDACTED) - 1);
	o->nredacted++;
}

/*
 * Redact s[0..n) into o.  The lexer's state is only its position: every
 * construct is read to its end as soon as it starts.
 */
static void
redact_span(const PartooRedactor *r, const char *s, size_t n, RedactOut *o)
{
	size_t		i = 0;
	size_t		value_start = (size_t) -1;	/* a pending bare value */
	size_t		value_end = 0;

	while (i < n)
	{
		unsigned char c = (unsigned char) s[i];
		size_t		j;
		size_t		m;

		if (value_start != (size_t) -1 && i >= value_start)
		{
			/* NB: >=, not ==: a key value may have started before it */
			if (i < value_end)
			{
				put_redacted(o);
				i = value_end;
			}
			value_start = (size_t) -1;
			continue;
		}

		/* a current key value, wherever it is */
		if ((m = secret_at(r, s, n, i)) > 0)
		{
			put_redacted(o);
			i += m;
			continue;
		}

		/* -- comment, to the end of the line */
		if (c == '-' && i + 1 < n && s[i + 1] == '-')
		{
			j = i + 2;
			while (j < n && s[j] != '\n' && s[j] != '\r')
				j++;
			put(o, "--", 2);
			if (j > i + 2)
				put_redacted(o);
			i = j;
			continue;
		}

		/* C-style comment; they nest in SQL */
		if (c == '/' && i + 1 < n && s[i + 1] == '*')
		{
			int			depth = 1;

			j = i + 2;
			while (j < n && depth > 0)
			{
				if (s[j] == '/' && j + 1 < n && s[j + 1] == '*')
				{
					depth++;
					j += 2;
				}
				else if (s[j] == '*' && j + 1 < n && s[j + 1] == '/')
				{
					depth--;
					j += 2;
				}
				else
					j++;
			}
			put(o, "/*", 2);
			put_redacted(o);
			if (depth == 0)
				put(o, "*/", 2);
			i = j;
			continue;
		}

		/* string constant; E'' when an E starts it (not ending a word) */
		if (c == '\'')
		{
			bool		escapes = i >= 1 && (s[i - 1] == 'e' || s[i - 1] == 'E') &&
				(i < 2 || !ident_cont((unsigned char) s[i - 2]));
			bool		ambiguous = false;
			bool		closed = false;

			j = i + 1;
			while (j < n)
			{
				if (s[j] == '\\')
				{
					if (escapes)
					{
						j += 2;
						continue;
					}
					/* NB: where a plain string ends depends on this */
					if (j + 1 < n && s[j + 1] == '\'')
						ambiguous = true;
					j++;
					continue;
				}
				if (s[j] == '\'')
				{
					if (j + 1 < n && s[j + 1] == '\'')
					{
						j += 2;
						continue;
					}
					closed = true;
					j++;
					break;
				}
				j++;
			}
			if (closed && !ambiguous && kept_name(r, s + i + 1, j - i - 2))
			{
				/* 'partoo.api_key' in set_config(): a name, not a key */
				put(o, s + i, j - i);
				i = j;
				continue;
			}
			put(o, "'", 1);
			put_redacted(o);
			if (!closed || ambiguous)
				return;			/* hide the rest of the text */
			put(o, "'", 1);
			i = j;
			continue;
		}

		/* dollar quote */
		if (c == '$' && (m = dollar_delim(s, n, i)) > 0)
		{
			size_t		dlen = m - i;
			bool		tag_secret = span_has_secret(r, s + i, dlen);
			size_t		k;

			/* NB: the tag is copied, unless a key hides in it */
			if (tag_secret)
				put(o, "$$", 2);
			else
				put(o, s + i, dlen);
			put_redacted(o);
			for (k = m; k + dlen <= n; k++)
				if (memcmp(s + k, s + i, dlen) == 0)
					break;
			if (k + dlen > n)
				return;			/* never closed: the rest is inside */
			if (tag_secret)
				put(o, "$$", 2);
			else
				put(o, s + i, dlen);
			i = k + dlen;
			continue;
		}

		/* double-quoted identifier or value */
		if (c == '"')
		{
			bool		closed = false;

			j = i + 1;
			while (j < n)
			{
				if (s[j] == '"')
				{
					if (j + 1 < n && s[j + 1] == '"')
					{
						j += 2;
						continue;
					}
					closed = true;
					break;
				}
				j++;
			}
			if (!closed)
			{
				put(o, "\"", 1);
				put_redacted(o);
				return;
			}
			if (kept_name(r, s + i + 1, j - i - 1))
			{
				put(o, s + i, j + 1 - i);
				if (name_has_key_word(s + i + 1, j - i - 1))
				{
					size_t		vs,
								ve;

					if (bare_value(s, n, j + 1, &vs, &ve))
					{
						value_start = vs;
						value_end = ve;
					}
				}
			}
			else
			{
				put(o, "\"", 1);
				put_redacted(o);
				put(o, "\"", 1);
			}
			i = j + 1;
			continue;
		}

		/*
		 * The start of a word: a key setting or column name may be
		 * followed by a bare value.  The word itself is copied one
		 * character at a time, so that a key value starting inside it is
		 * still found.
		 */
		if (ident_start(c) && (i == 0 || !ident_cont((unsigned char) s[i - 1])))
		{
			size_t		vs,
						ve;

			j = i;
			while (j < n && ident_cont((unsigned char) s[j]))
				j++;
			if (is_key_word(s + i, j - i) && bare_value(s, n, j, &vs, &ve))
			{
				value_start = vs;
				value_end = ve;
			}
		}

		put(o, s + i, 1);
		i++;
	}
}

/*
 * For the DETAIL of an error on partoo.accounts ("Failing row contains
 * (...)", "Key (name)=(...) already exists", in any language): the span
 * of row values, from the first "(" that is not a list of column names
 * before "=(" to the last ")" (or the end), in *from..*to.  Values may
 * hold parentheses, so nothing in between is trusted.
 */
static bool
row_values_span(const char *s, size_t n, size_t *from, size_t *to)
{
	const char *open = memchr(s, '(', n);
	const char *close;
	size_t		start;
	size_t		k;

	if (open == NULL)
		return false;
	start = open - s;
	close = memchr(open, ')', n - start);
	if (close != NULL && (size_t) (close - s) + 2 < n &&
		close[1] == '=' && close[2] == '(')
		start = close - s + 2;
	*to = n;
	for (k = n; k > start + 1; k--)
		if (s[k - 1] == ')')
		{
			*to = k;
			break;
		}
	*from = start;
	return true;
}

void
partoo_redactor_init(PartooRedactor *r, bool bare_accounts)
{
	memset(r, 0, sizeof(*r));
	r->bare_accounts = bare_accounts;
}

/* Look for secret too; NULL, short ones and too many are ignored */
void
partoo_redactor_add_secret(PartooRedactor *r, const char *secret)
{
	size_t		len;

	if (secret == NULL || r->nsecrets >= PARTOO_REDACT_MAX_SECRETS)
		return;
	len = strlen(secret);
	if (len < PARTOO_REDACT_MIN_SECRET)
		return;
	r->secrets[r->nsecrets] = secret;
	r->secret_len[r->nsecrets] = len;
	r->nsecrets++;
}

/* Does a search_path setting name the schema partoo? */
bool
partoo_redact_search_path_has_partoo(const char *search_path)
{
	const char *p;

	if (search_path == NULL)
		return false;
	for (p = search_path; *p; p++)
	{
		size_t		n = 0;

		if (!ident_start((unsigned char) *p) ||
			(p > search_path && ident_cont((unsigned char) p[-1])))
			continue;
		while (ident_cont((unsigned char) p[n]))
			n++;
		if (word_is(p, n, "partoo"))
			return true;
		p += n - 1;
	}
	return false;
}

bool
partoo_redact_has_secret(const PartooRedactor *r, const char *text)
{
	int			k;

	if (text == NULL)
		return false;
	for (k = 0; k < r->nsecrets; k++)
		if (strstr(text, r->secrets[k]) != NULL)
			return true;
	return false;
}

/*
 * Does text name a key setting, the key column or partoo.accounts, or hold
 * a current key value?  Names are looked for everywhere, inside string
 * constants too (set_config('partoo.api_key', ...)).  Linear; nothing is
 * allocated.
 */
bool
partoo_redact_mentions(const PartooRedactor *r, const char *text)
{
	const char *p;

	if (text == NULL)
		return false;
	if (partoo_redact_has_secret(r, text))
		return true;
	for (p = text; *p; p++)
	{
		size_t		n = 0;

		if (!ident_start((unsigned char) *p) ||
			(p > text && ident_cont((unsigned char) p[-1])))
			continue;
		while (ident_cont((unsigned char) p[n]))
			n++;
		if (is_key_word(p, n))
			return true;
		if (word_is(p, n, "accounts") && accounts_is_partoo(r, text, p - text))
			return true;
		p += n - 1;
	}
	return false;
}

/*
 * Write the redacted text into out (at most outsize bytes with the
 * terminating NUL, like snprintf; out may be NULL when outsize is 0) and
 * return the length of the whole redacted text, without the NUL.
 * *nredacted gets the number of things redacted: 0 means the text is
 * unchanged.  With PARTOO_REDACT_ROW_VALUES, row values in the text are
 * redacted as well.  Deterministic: measure with outsize 0, allocate the
 * returned length + 1, call again.
 */
size_t
partoo_redact(const PartooRedactor *r, const char *text, int flags,
			  char *out, size_t outsize, int *nredacted)
{
	RedactOut	o;
	size_t		n = strlen(text);
	size_t		from,
				to;

	o.buf = outsize > 0 ? out : NULL;
	o.size = outsize > 0 ? outsize - 1 : 0;
	o.len = 0;
	o.nredacted = 0;

	if ((flags & PARTOO_REDACT_ROW_VALUES) && row_values_span(text, n, &from, &to))
	{
		redact_span(r, text, from, &o);
		put(&o, "(", 1);
		put_redacted(&o);
		if (to > from + 1 && text[to - 1] == ')')
			put(&o, ")", 1);
		redact_span(r, text + to, n - to, &o);
	}
	else
		redact_span(r, text, n, &o);

	if (o.buf != NULL)
		o.buf[o.len < o.size ? o.len : o.size] = '\0';
	if (nredacted != NULL)
		*nredacted = o.nredacted;
	return o.len;
}

/*
 * The prepared statements a query EXECUTEs, whose text the query does not
 * show: the name after each word EXECUTE (EXPLAIN EXECUTE, CREATE TABLE
 * ... AS EXECUTE too), one per call, as PostgreSQL looks it up: unquoted
 * names in lower case, quoted ones with "" undoubled, cut to namesize - 1
 * bytes without splitting a UTF-8 character.  Start with *pos = 0; false
 * when there are no more.  Words inside strings are taken too: a name
 * looked up in vain costs nothing.
 */
/* Append c to a name being read; remember the first byte that did not fit */
static void
name_add(char *name, size_t namesize, size_t *k, int *cut, unsigned char c)
{
	if (*k + 1 < namesize)
		name[(*k)++] = (char) c;
	else if (*cut < 0)
		*cut = c;
}

bool
partoo_redact_next_execute(const char *query, size_t *pos, char *name,
						   size_t namesize)
{
	size_t		n = strlen(query);
	size_t		i = *pos;

	if (namesize == 0)
		return false;
	while (i < n)
	{
		size_t		j = i;
		size_t		k = 0;
		int			cut = -1;

		if (!ident_start((unsigned char) query[i]) ||
			(i > 0 && ident_cont((unsigned char) query[i - 1])))
		{
			i++;
			continue;
		}
		while (j < n && ident_cont((unsigned char) query[j]))
			j++;
		if (!word_is(query + i, j - i, "execute"))
		{
			i = j;
			continue;
		}
		i = j;
		while (i < n && is_space((unsigned char) query[i]))
			i++;
		if (i < n && query[i] == '"')
		{
			for (i++; i < n; i++)
			{
				if (query[i] == '"')
				{
					if (i + 1 < n && query[i + 1] == '"')
						i++;
					else
						break;
				}
				name_add(name, namesize, &k, &cut, (unsigned char) query[i]);
			}
			if (i < n)
				i++;
		}
		else if (i < n && ident_start((unsigned char) query[i]))
		{
			for (; i < n && ident_cont((unsigned char) query[i]); i++)
				name_add(name, namesize, &k, &cut, lower((unsigned char) query[i]));
		}
		else
			continue;
		/* cut at a character boundary, as PostgreSQL truncates names */
		if (cut >= 0 && (cut & 0xC0) == 0x80)
		{
			while (k > 0 && ((unsigned char) name[k - 1] & 0xC0) == 0x80)
				k--;
			if (k > 0)
				k--;
		}
		name[k] = '\0';
		*pos = i;
		if (k > 0)
			return true;
	}
	*pos = n;
	return false;
}
