/*-------------------------------------------------------------------------
 *
 * test_redact.c
 *		Unit tests of the log redactor: which texts mention a key, and
 *		what is left of them once redacted.
 *
 * Runs without a server: it links src/core/redact.c directly.  Each case is
 * the text PostgreSQL or partoo would log, byte for byte, and what must
 * be logged instead.  The last group throws many generated statements at
 * the redactor and checks the one property that matters: no key survives.
 *
 * test/core/unit/test_redact.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/redact.h"
#include "unit.h"

#include <stdlib.h>

#define R PARTOO_REDACTED

/* Redact in, measuring first as the server does; NULL on a mismatch */
static char *
redacted(const PartooRedactor *r, const char *in, int flags, int *n)
{
	int			n1,
				n2;
	size_t		len = partoo_redact(r, in, flags, NULL, 0, &n1);
	char	   *buf = malloc(len + 1);
	size_t		len2;

	len2 = partoo_redact(r, in, flags, buf, len + 1, &n2);
	if (len2 != len || n1 != n2 || strlen(buf) != len ||
		(n1 == 0 && strcmp(buf, in) != 0))
	{
		free(buf);
		return NULL;
	}
	*n = n1;
	return buf;
}

static void
check(const PartooRedactor *r, const char *in, int flags, const char *want)
{
	int			n = 0;
	char	   *got = redacted(r, in, flags, &n);
	char		name[256];
	size_t		i,
				k = 0;

	/* one line of TAP output per check */
	for (i = 0; in[i] != '\0' && k + 3 < sizeof(name); i++)
	{
		if (in[i] == '\n')
		{
			name[k++] = '\\';
			name[k++] = 'n';
		}
		else
			name[k++] = in[i];
	}
	name[k] = '\0';
	unit_check_str(got, want, "redact: %s", name);
	free(got);
}

static void
test_mentions(void)
{
	PartooRedactor r;
	PartooRedactor path;

	partoo_redactor_init(&r, false);
	partoo_redactor_init(&path, true);
	partoo_redactor_add_secret(&r, "sekrit-current-1");

	unit_check(partoo_redact_mentions(&r, "SET partoo.api_key = 'x'"), "SET names partoo.api_key");
	unit_check(partoo_redact_mentions(&r, "set PARTOO.API_KEY to x"), "in any case");
	unit_check(partoo_redact_mentions(&r, "ALTER SYSTEM SET \"partoo.api_key\" = 'x'"), "quoted");
	unit_check(partoo_redact_mentions(&r, "select set_config('partoo.dispatch_webhook_key', 'x', false)"),
			   "inside a string constant");
	unit_check(partoo_redact_mentions(&r, "UPDATE partoo.accounts SET \"api_key\" = 'x'"), "the column");
	unit_check(partoo_redact_mentions(&r, "INSERT INTO partoo.accounts VALUES ('a', 'b')"),
			   "partoo.accounts without the column");
	unit_check(partoo_redact_mentions(&r, "insert into \"partoo\" . \"accounts\" values ('a', 'b')"),
			   "quoted, with spaces around the dot");
	unit_check(!partoo_redact_mentions(&r, "INSERT INTO accounts VALUES ('a', 'b')"),
			   "another schema's accounts is no key table");
	unit_check(partoo_redact_mentions(&path, "INSERT INTO accounts VALUES ('a', 'b')"),
			   "unless partoo is on the search path");
	unit_check(!partoo_redact_mentions(&r, "INSERT INTO app.accounts VALUES ('a', 'b')"), "app.accounts");
	unit_check(!partoo_redact_mentions(&r, "SELECT my_api_key_x, api_keys FROM t"), "words that only contain the name");
	unit_check(partoo_redact_mentions(&r, "SELECT partoo_ingest_webhook('{}', 'sekrit-current-1')"),
			   "the current value of a key");
	unit_check(!partoo_redact_mentions(&r, "SELECT partoo_send(1, 'hello')"), "an ordinary statement");
	unit_check(!partoo_redact_mentions(&r, ""), "empty");
	unit_check(!partoo_redact_mentions(&r, NULL), "NULL");

	unit_check(partoo_redact_search_path_has_partoo("partoo, public"), "search_path partoo, public");
	unit_check(partoo_redact_search_path_has_partoo("\"$user\", \"Partoo\""), "quoted and capitalised");
	unit_check(!partoo_redact_search_path_has_partoo("\"$user\", public, partoo_x"), "partoo_x is another schema");
	unit_check(!partoo_redact_search_path_has_partoo(NULL), "no search_path");
}

static void
test_secrets(void)
{
	PartooRedactor r;

	partoo_redactor_init(&r, false);
	partoo_redactor_add_secret(&r, "short");	/* under the minimum: ignored */
	partoo_redactor_add_secret(&r, NULL);
	partoo_redactor_add_secret(&r, "key-ABCDEF");
	partoo_redactor_add_secret(&r, "key-ABCDEF-longer");
	unit_check_int(r.nsecrets, 2, "short and NULL secrets are ignored");
	unit_check(!partoo_redact_has_secret(&r, "a short word"), "a short secret is not searched for");

	check(&r, "bare key-ABCDEF in text", 0, "bare " R " in text");
	check(&r, "xkey-ABCDEF-longery", 0, "x" R "y");
	check(&r, "two: key-ABCDEFkey-ABCDEF", 0, "two: " R R);
	check(&r, "parameters: $1 = 'x', $2 = 'y'", 0, "parameters: $1 = '" R "', $2 = '" R "'");
	check(&r, "in a kept name \"partoo.key-ABCDEF\"", 0, "in a kept name \"" R "\"");
	check(&r, "nothing to hide", 0, "nothing to hide");
}

static void
test_literals(void)
{
	PartooRedactor r;

	partoo_redactor_init(&r, false);

	check(&r, "SET partoo.api_key = 'k1'", 0, "SET partoo.api_key = '" R "'");
	check(&r, "statement: INSERT INTO partoo.accounts (name, api_key) VALUES ('a', 'k''s')", 0,
		  "statement: INSERT INTO partoo.accounts (name, api_key) VALUES ('" R "', '" R "')");
	check(&r, "SET partoo.api_key = E'k\\'1\\\\' -- c", 0, "SET partoo.api_key = E'" R "' --" R);
	check(&r, "SELECT e'a\\'b', be'c'", 0, "SELECT e'" R "', be'" R "'");
	check(&r, "SELECT U&'d\\0061t', B'101', X'1F', N'n'", 0,
		  "SELECT U&'" R "', B'" R "', X'" R "', N'" R "'");
	check(&r, "UPDATE t SET api_key = $$k$$, b = $tag$x$$y$tag$", 0,
		  "UPDATE t SET api_key = $$" R "$$, b = $tag$" R "$tag$");
	check(&r, "SELECT $1, a$b$c, $_$x$_$", 0, "SELECT $1, a$b$c, $_$" R "$_$");
	check(&r, "SELECT set_config('partoo.api_key', 'k1', false), current_setting('PARTOO.API_KEY')", 0,
		  "SELECT set_config('partoo.api_key', '" R "', false), current_setting('PARTOO.API_KEY')");
	check(&r, "SELECT 'partoo.api_key''', E'partoo.api_key', E'partoo.api\\_key', 'partoo.api-key'", 0,
		  "SELECT '" R "', E'partoo.api_key', E'" R "', '" R "'");
	check(&r, "DO $$ BEGIN UPDATE partoo.accounts SET api_key = 'k'; END $$", 0, "DO $$" R "$$");

	/* the end of a plain string depends on standard_conforming_strings */
	check(&r, "VALUES ('a\\', 'key', 'b')", 0, "VALUES ('" R);
	check(&r, "VALUES ('a\\b', 'key')", 0, "VALUES ('" R "', '" R "')");
	/* never closed: the rest is inside */
	check(&r, "SET partoo.api_key = 'k1", 0, "SET partoo.api_key = '" R);
	check(&r, "SELECT $x$ k1", 0, "SELECT $x$" R);
	check(&r, "SELECT \"k1", 0, "SELECT \"" R);
	check(&r, "SELECT 1 /* 'k1' /* nested */ still */ , 'k2'", 0, "SELECT 1 /*" R "*/ , '" R "'");
	check(&r, "SELECT 1 /* don't", 0, "SELECT 1 /*" R);
	/* a quote in a comment does not start a string */
	check(&r, "-- don't\nSET partoo.api_key = 'k1'", 0, "--" R "\nSET partoo.api_key = '" R "'");
	check(&r, "--\nx", 0, "--\nx");
	check(&r, "", 0, "");
}

static void
test_double_quotes(void)
{
	PartooRedactor r;

	partoo_redactor_init(&r, false);

	check(&r, "parameter \"partoo.api_key\" changed to \"k-1\"", 0,
		  "parameter \"partoo.api_key\" changed to \"" R "\"");
	check(&r, "parameter \"partoo.dispatch_webhook_key\" changed to \"abc\"", 0,
		  "parameter \"partoo.dispatch_webhook_key\" changed to \"" R "\"");
	check(&r, "INSERT INTO \"partoo\".\"accounts\" (\"name\", \"api_key\") VALUES ('a', \"k1\")", 0,
		  "INSERT INTO \"partoo\".\"accounts\" (\"" R "\", \"api_key\") VALUES ('" R "', \"" R "\")");
	check(&r, "invalid input syntax for type integer: \"k1\"", 0,
		  "invalid input syntax for type integer: \"" R "\"");
	check(&r, "new row for relation \"accounts\" violates check constraint \"accounts_base_url_check\"", 0,
		  "new row for relation \"accounts\" violates check constraint \"accounts_base_url_check\"");
	check(&r, "syntax error at or near \"'k1'\"", 0, "syntax error at or near \"" R "\"");
	check(&r, "column \"a\"\"b\" of \"api_key\"", 0, "column \"" R "\" of \"api_key\"");
}

static void
test_bare_values(void)
{
	PartooRedactor r;

	partoo_redactor_init(&r, false);

	check(&r, "SET partoo.api_key TO abc_123", 0, "SET partoo.api_key TO " R);
	check(&r, "set partoo.api_key=abc;", 0, "set partoo.api_key=" R ";");
	check(&r, "SET \"partoo.api_key\" = abc", 0, "SET \"partoo.api_key\" = " R);
	check(&r, "ALTER SYSTEM SET partoo.dispatch_webhook_key = 12345678", 0,
		  "ALTER SYSTEM SET partoo.dispatch_webhook_key = " R);
	check(&r, "SET partoo.api_key TO DEFAULT", 0, "SET partoo.api_key TO DEFAULT");
	check(&r, "SET partoo.api_key = E'k'", 0, "SET partoo.api_key = E'" R "'");
	check(&r, "SET partoo.api_key = U&'k'", 0, "SET partoo.api_key = U&'" R "'");
	check(&r, "SET partoo.api_key = $$k$$", 0, "SET partoo.api_key = $$" R "$$");
	check(&r, "f(api_key => 'k')", 0, "f(api_key => '" R "')");
	check(&r, "WHERE api_key == x", 0, "WHERE api_key == x");
	check(&r, "SET partoo.api_key", 0, "SET partoo.api_key");
	check(&r, "SET partoo.api_key =", 0, "SET partoo.api_key =");
	check(&r, "SET tokyo TO x", 0, "SET tokyo TO x");
}

static void
test_row_values(void)
{
	PartooRedactor r;

	partoo_redactor_init(&r, false);

	check(&r, "Failing row contains (a, k1, ftp://x, 300, 2024-01-01).", PARTOO_REDACT_ROW_VALUES,
		  "Failing row contains (" R ").");
	check(&r, "Failing row contains (a, k)1), b).", PARTOO_REDACT_ROW_VALUES,
		  "Failing row contains (" R ").");
	check(&r, "Key (name)=(acct) already exists.", PARTOO_REDACT_ROW_VALUES,
		  "Key (name)=(" R ") already exists.");
	check(&r, "Key (a)=(1) conflicts with existing key (a)=(2).", PARTOO_REDACT_ROW_VALUES,
		  "Key (a)=(" R ").");
	check(&r, "Failing row contains (a, k1", PARTOO_REDACT_ROW_VALUES, "Failing row contains (" R);
	check(&r, "no row here", PARTOO_REDACT_ROW_VALUES, "no row here");
	check(&r, "Failing row contains (a, 'k').", 0, "Failing row contains (a, '" R "').");
}

static void
test_execute_names(void)
{
	char		name[8];
	size_t		pos = 0;
	const char *q = "EXECUTE Set_Key('k'); explain execute \"Odd\"\"Name\"(1); "
		"EXECUTE 'dynamic'; execute  x;EXECUTE";

	unit_check(partoo_redact_next_execute(q, &pos, name, sizeof(name)), "first EXECUTE found");
	unit_check_str(name, "set_key", "an unquoted name in lower case");
	unit_check(partoo_redact_next_execute(q, &pos, name, sizeof(name)), "second EXECUTE found");
	unit_check_str(name, "Odd\"Nam", "a quoted name undoubled and cut to the buffer");
	unit_check(partoo_redact_next_execute(q, &pos, name, sizeof(name)), "a third, after EXECUTE 'string'");
	unit_check_str(name, "x", "the short name");
	unit_check(!partoo_redact_next_execute(q, &pos, name, sizeof(name)), "no more");

	pos = 0;
	unit_check(partoo_redact_next_execute("execute \"ab\xc3\xa9\xc3\xa9\xc3\xa9\"", &pos, name, sizeof(name)),
			   "a multibyte name");
	unit_check_str(name, "ab\xc3\xa9\xc3\xa9", "cut at a character boundary");
	pos = 0;
	unit_check(!partoo_redact_next_execute("SELECT executed, x.execute", &pos, name, sizeof(name)),
			   "no EXECUTE statement in other words");
}

/*
 * Generated statements that set a key in every way the redactor knows,
 * wrapped in random other SQL: the key never survives, and the output is
 * the same whether measured or written, and whatever the buffer size.
 */
static void
test_generated(void)
{
	static const char *ways[] = {
		"SET partoo.api_key = '%s'",
		"SET partoo.api_key = E'%s'",
		"SET partoo.api_key TO %s",
		"ALTER SYSTEM SET partoo.dispatch_webhook_key = $q$%s$q$",
		"INSERT INTO partoo.accounts VALUES ('n', '%s')",
		"UPDATE partoo.accounts SET \"api_key\" = '%s'",
		"SELECT set_config('partoo.api_key', '%s', false)",
		"parameter \"partoo.api_key\" changed to \"%s\"",
		"INSERT INTO partoo.accounts (name, api_key) VALUES ('a\\', '%s')",
		"INSERT INTO partoo.accounts (name, api_key) VALUES ('a', \"%s\")",
	};
	static const char *around[] = {
		"", " ", "-- don't\n", "/* ' */ ", "SELECT 'x'; ", "SELECT $$'$$; ",
		"\"q\"\"uote\"; ", "E'\\''; ", ";\n",
	};
	uint64_t	seed = 42;
	int			i;
	int			leaks = 0;
	int			mismatches = 0;
	PartooRedactor r;

	partoo_redactor_init(&r, false);
	for (i = 0; i < 20000; i++)
	{
		char		key[32];
		char		stmt[512];
		char		text[1024];
		char		small[16];
		char	   *got;
		int			n;
		size_t		len;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		snprintf(key, sizeof(key), "k%08xz", (unsigned) (seed >> 32));
		snprintf(stmt, sizeof(stmt), ways[(seed >> 8) % (sizeof(ways) / sizeof(ways[0]))], key);
		snprintf(text, sizeof(text), "%s%s%s",
				 around[(seed >> 16) % (sizeof(around) / sizeof(around[0]))], stmt,
				 around[(seed >> 24) % (sizeof(around) / sizeof(around[0]))]);
		if (!partoo_redact_mentions(&r, text))
		{
			leaks++;
			continue;
		}
		got = redacted(&r, text, 0, &n);
		if (got == NULL)
		{
			mismatches++;
			continue;
		}
		if (strstr(got, key + 1) != NULL)
		{
			if (leaks++ == 0)
				printf("# leaked: %s -> %s\n", text, got);
		}
		len = partoo_redact(&r, text, 0, small, sizeof(small), &n);
		if (len != strlen(got) || strncmp(small, got, sizeof(small) - 1) != 0)
			mismatches++;
		free(got);
	}
	unit_check_int(leaks, 0, "no key survives 20,000 generated statements");
	unit_check_int(mismatches, 0, "measuring, writing and truncating agree");
}

int
main(void)
{
	unit_note("log redaction (src/core/redact.c)");
	test_mentions();
	test_secrets();
	test_literals();
	test_double_quotes();
	test_bare_values();
	test_row_values();
	test_execute_names();
	test_generated();
	return unit_done();
}
