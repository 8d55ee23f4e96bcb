/*-------------------------------------------------------------------------
 *
 * redact.h
 *		Finding and hiding API keys in the text of log messages.
 *
 * Part of the protocol core: plain C, no PostgreSQL headers, no
 * allocation, no global state, so it is unit-tested and fuzzed without a
 * server.  The server side (src/server/redact_log.c, an emit_log_hook) decides
 * which texts of a report to pass through here and puts the results back.
 *
 * A text "mentions a key" when it names a key-bearing setting or column
 * (the identifiers api_key and dispatch_webhook_key, in any case, quoted or
 * not, so also partoo.api_key, "api_key", set_config('partoo.api_key',
 * ...)), names the table partoo.accounts (or plain accounts when partoo is
 * on the search path), or holds the current value of a key setting.
 * Redacting a text replaces every quoted thing in it that could hold a key
 * with PARTOO_REDACTED: string constants ('...', E'...', U&'...', B'...',
 * X'...', N'...'), dollar-quoted strings ($$...$$, $tag$...$tag$),
 * double-quoted strings, except that a quoted name that is itself
 * key-bearing (partoo, accounts, "api_key", 'partoo.api_key',
 * accounts_pkey, ...) is kept, comments, the bare
 * value of "api_key = value" / "api_key TO value", and every occurrence of
 * a current key value.  Where the end of a string constant depends on
 * standard_conforming_strings (a backslash before a quote), or a string
 * never ends, everything from its start to the end of the text is
 * redacted: the redactor errs towards hiding.
 *
 * src/core/redact.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_REDACT_H
#define PARTOO_REDACT_H

#include <stdbool.h>
#include <stddef.h>

/* What replaces a redacted value */
#define PARTOO_REDACTED "[redacted]"

/*
 * Current key values shorter than this are not searched for: a key of two
 * letters would redact every word holding them.  Keys are still hidden
 * where the statement names the setting or column.
 */
#define PARTOO_REDACT_MIN_SECRET 6
#define PARTOO_REDACT_MAX_SECRETS 4

/* What a redactor looks for; fill with the functions below */
typedef struct PartooRedactor
{
	const char *secrets[PARTOO_REDACT_MAX_SECRETS];	/* current key values */
	size_t		secret_len[PARTOO_REDACT_MAX_SECRETS];
	int			nsecrets;
	bool		bare_accounts;	/* "accounts" alone names partoo.accounts */
} PartooRedactor;

/* partoo_redact() flags */
/* the text is the DETAIL of an error on partoo.accounts: hide row values */
#define PARTOO_REDACT_ROW_VALUES 0x01

extern void partoo_redactor_init(PartooRedactor *r, bool bare_accounts);
extern void partoo_redactor_add_secret(PartooRedactor *r, const char *secret);
extern bool partoo_redact_search_path_has_partoo(const char *search_path);

extern bool partoo_redact_has_secret(const PartooRedactor *r, const char *text);
extern bool partoo_redact_mentions(const PartooRedactor *r, const char *text);
extern size_t partoo_redact(const PartooRedactor *r, const char *text,
							int flags, char *out, size_t outsize,
							int *nredacted);
extern bool partoo_redact_next_execute(const char *query, size_t *pos,
									   char *name, size_t namesize);

#endif							/* PARTOO_REDACT_H */
