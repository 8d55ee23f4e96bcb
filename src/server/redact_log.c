/*-------------------------------------------------------------------------
 *
 * redact_log.c
 *		Keeping API keys out of the server log: partoo's emit_log_hook.
 *
 * PostgreSQL calls emit_log_hook for every report it is about to write to
 * the server log, in whatever destination (stderr, csvlog, jsonlog,
 * syslog), before writing it.  The hook finds the reports that could show
 * a key and redacts them in place with the protocol core's redactor
 * (redact.c: it decides what a key looks like, this file only decides
 * which texts to hand it):
 *
 * - a report is sensitive when any of its texts (message, detail, server
 *   detail, context, internal query) or the statement being run
 *   (debug_query_string) names a key setting, the key column or
 *   partoo.accounts, or holds the current value of partoo.api_key or
 *   partoo.dispatch_webhook_key; when it is an error raised on
 *   partoo.accounts (its DETAIL may show the row, key included); or when
 *   the statement EXECUTEs a prepared statement that names them (the
 *   EXECUTE's text shows only the arguments, the key among them); or it
 *   belongs to a statement an earlier report found sensitive;
 * - a sensitive report has every string constant, quoted value and
 *   comment of every text redacted, row values taken out of its DETAIL
 *   when it is about partoo.accounts, and its statement handled as below.
 *
 * The statement: log_min_error_statement makes elog.c add a STATEMENT line
 * printed from debug_query_string, not from the report, so redacting the
 * report does not reach it.  Pointing debug_query_string at a redacted
 * copy would outlive this report (the same statement's later reports,
 * parallel workers, the copy's memory), so instead the hook sets
 * hide_stmt (elog.c then prints no STATEMENT) and appends the redacted
 * statement to detail_log, the one text elog.c writes to the server log
 * only (every destination shows it as the DETAIL) and never sends to the
 * client.  Only when the statement would have been printed (the test is
 * elog.c's own check_log_of_query()) and redaction changes it.
 *
 * NB: elog.c sends the report to the client after the log, from the same
 * ErrorData, so the client sees the redacted texts too.  They are its own
 * statement's; what it loses is the values quoted in errors about keys.
 *
 * The hook runs inside error reporting, so it must not throw: the
 * redactor neither allocates nor throws, and the new texts are allocated
 * in the report's own context without ever raising out-of-memory.  When
 * that allocation fails, the report is not written to the log at all
 * (output_to_server = false): better a missing line than a key.  A report
 * that mentions no key costs a scan of its texts and of the statement,
 * and no allocation.
 *
 * Installed by _PG_init() in every process that loads partoo: with
 * shared_preload_libraries that is every process (the postmaster too, which
 * logs "parameter ... changed to ..." at reload); loaded by one session,
 * only that session from then on.
 *
 * src/server/redact_log.c
 *
 *-------------------------------------------------------------------------
 */

#include "server/partoo.h"
#include "catalog/namespace.h"
#include "commands/prepare.h"
#include "common/hashfn.h"
#include "tcop/tcopprot.h"
#include "utils/elog.h"
#include "utils/memutils.h"

#include "core/redact.h"
#include "server/store.h"
#include "server/webhook.h"
#include "server/redact_log.h"

static emit_log_hook_type prev_emit_log_hook = NULL;

/*
 * The last statement found sensitive.  The text is hashed because a new
 * statement is often read into the very memory of the previous one.
 */
static const char *sensitive_query = NULL;
static size_t sensitive_query_len = 0;
static uint64 sensitive_query_hash = 0;

static uint64
query_hash(const char *query, size_t len)
{
	return hash_bytes_extended((const unsigned char *) query,
							   (int) Min(len, (size_t) INT_MAX), 0);
}

static bool
query_was_sensitive(const char *query)
{
	size_t		len;

	if (query == NULL || query != sensitive_query)
		return false;
	len = strlen(query);
	return len == sensitive_query_len && query_hash(query, len) == sensitive_query_hash;
}

static void
remember_sensitive_query(const char *query)
{
	if (query == NULL || query_was_sensitive(query))
		return;
	sensitive_query = query;
	sensitive_query_len = strlen(query);
	sensitive_query_hash = query_hash(query, sensitive_query_len);
}

/* Allocate in the report's context; NULL rather than an error */
static char *
report_alloc(ErrorData *edata, size_t size)
{
	MemoryContext cxt = edata->assoc_context ? edata->assoc_context : ErrorContext;

	if (!AllocSizeIsValid(size))
		return NULL;
	return MemoryContextAllocExtended(cxt, size, MCXT_ALLOC_NO_OOM);
}

/*
 * Replace *field by its redaction when that differs.  False when the
 * memory for it could not be had (the field is then left as it was).
 */
static bool
redact_field(ErrorData *edata, char **field, const PartooRedactor *r, int flags)
{
	int			n;
	size_t		len;
	char	   *copy;

	if (*field == NULL)
		return true;
	len = partoo_redact(r, *field, flags, NULL, 0, &n);
	if (n == 0)
		return true;
	copy = report_alloc(edata, len + 1);
	if (copy == NULL)
		return false;
	partoo_redact(r, *field, flags, copy, len + 1, &n);
	pfree(*field);
	*field = copy;
	return true;
}

#define STATEMENT_LABEL "redacted statement: "

/*
 * The STATEMENT line, redacted, at the end of detail_log (see the file's
 * header); hide_stmt then keeps elog.c from printing the original.
 */
static bool
redact_statement(ErrorData *edata, const PartooRedactor *r)
{
	const char *base = edata->detail_log ? edata->detail_log : edata->detail;
	size_t		base_len = base ? strlen(base) : 0;
	size_t		label_len = sizeof(STATEMENT_LABEL) - 1;
	size_t		len;
	size_t		size;
	char	   *buf;
	char	   *p;
	int			n;

	len = partoo_redact(r, debug_query_string, 0, NULL, 0, &n);
	if (n == 0)
		return true;			/* nothing to hide: elog.c prints it */
	size = base_len + 1 + label_len + len + 1;
	if (size < len)
		return false;
	buf = report_alloc(edata, size);
	if (buf == NULL)
		return false;
	p = buf;
	if (base_len > 0)
	{
		memcpy(p, base, base_len);
		p += base_len;
		*p++ = '\n';
	}
	memcpy(p, STATEMENT_LABEL, label_len);
	p += label_len;
	partoo_redact(r, debug_query_string, 0, p, len + 1, &n);
	if (edata->detail_log)
		pfree(edata->detail_log);
	edata->detail_log = buf;
	edata->hide_stmt = true;
	return true;
}

/*
 * Does the query EXECUTE a prepared statement of this session that
 * mentions a key?  FetchPreparedStatement() without throwError is a hash
 * lookup that neither allocates nor throws.
 */
static bool
executes_sensitive(const PartooRedactor *r, const char *query)
{
	char		name[NAMEDATALEN];
	size_t		pos = 0;

	if (query == NULL)
		return false;
	while (partoo_redact_next_execute(query, &pos, name, sizeof(name)))
	{
		PreparedStatement *ps = FetchPreparedStatement(name, false);

		if (ps != NULL && ps->plansource != NULL &&
			partoo_redact_mentions(r, ps->plansource->query_string))
			return true;
	}
	return false;
}

static bool
on_accounts(ErrorData *edata)
{
	return edata->schema_name != NULL && edata->table_name != NULL &&
		strcmp(edata->schema_name, "partoo") == 0 &&
		strcmp(edata->table_name, "accounts") == 0;
}

/*
 * Does this report need redacting?  The hint is partoo's or PostgreSQL's
 * own advice ("Check partoo.api_key ..."): it does not make a report
 * sensitive by naming a setting, only by holding a key.
 */
static bool
report_is_sensitive(ErrorData *edata, const PartooRedactor *r)
{
	return on_accounts(edata) ||
		partoo_redact_mentions(r, edata->message) ||
		partoo_redact_mentions(r, edata->detail) ||
		partoo_redact_mentions(r, edata->detail_log) ||
		partoo_redact_mentions(r, edata->context) ||
		partoo_redact_mentions(r, edata->internalquery) ||
		partoo_redact_has_secret(r, edata->hint) ||
		query_was_sensitive(debug_query_string) ||
		partoo_redact_mentions(r, debug_query_string) ||
		executes_sensitive(r, debug_query_string);
}

static bool
redact_report(ErrorData *edata, const PartooRedactor *r, bool statement_logged)
{
	int			row = on_accounts(edata) ? PARTOO_REDACT_ROW_VALUES : 0;

	return redact_field(edata, &edata->message, r, 0) &&
		redact_field(edata, &edata->detail, r, row) &&
		redact_field(edata, &edata->detail_log, r, row) &&
		redact_field(edata, &edata->hint, r, 0) &&
		redact_field(edata, &edata->context, r, 0) &&
		redact_field(edata, &edata->internalquery, r, 0) &&
		(!statement_logged || redact_statement(edata, r));
}

static void
partoo_emit_log(ErrorData *edata)
{
	PartooRedactor r;
	bool		statement_logged;

	partoo_redactor_init(&r,
						 partoo_redact_search_path_has_partoo(namespace_search_path));
	partoo_redactor_add_secret(&r, partoo_api_key);
	partoo_redactor_add_secret(&r, partoo_dispatch_webhook_key);

	/* before we touch hide_stmt */
	statement_logged = debug_query_string != NULL && check_log_of_query(edata);

	if (report_is_sensitive(edata, &r))
	{
		remember_sensitive_query(debug_query_string);
		if (!redact_report(edata, &r, statement_logged))
			edata->output_to_server = false;
	}

	/* a later hook (a log shipper) sees the redacted report, or none */
	if (prev_emit_log_hook && edata->output_to_server)
		prev_emit_log_hook(edata);
}

/* Called once from _PG_init() */
void
partoo_log_redaction_install(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = partoo_emit_log;
}
