/*-------------------------------------------------------------------------
 *
 * unit.h
 *		A minimal TAP-style harness for the protocol core's unit tests.
 *
 * Each check prints "ok N - description" or "not ok N - description",
 * failures add "# " diagnostic lines, and unit_done() prints the final
 * "N passed, N failed" line and gives the exit status.  Header-only, for
 * one test program: the counters are file-static there.
 *
 * test/core/unit/unit.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_UNIT_H
#define PARTOO_UNIT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int	unit_passed;
static int	unit_failed;

static bool unit_vcheck(bool ok, const char *fmt, va_list ap)
			__attribute__((format(printf, 2, 0)));
static bool unit_check(bool ok, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
static bool unit_check_str(const char *got, const char *want,
						   const char *fmt,...)
			__attribute__((format(printf, 3, 4)));
static bool unit_check_int(int64_t got, int64_t want, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

static bool
unit_vcheck(bool ok, const char *fmt, va_list ap)
{
	if (ok)
		unit_passed++;
	else
		unit_failed++;
	printf("%sok %d - ", ok ? "" : "not ", unit_passed + unit_failed);
	vprintf(fmt, ap);
	printf("\n");
	return ok;
}

/* Record one check; returns ok so callers can add diagnostics */
static bool
unit_check(bool ok, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	ok = unit_vcheck(ok, fmt, ap);
	va_end(ap);
	return ok;
}

/* String equality, NULL equal only to NULL; shows both on failure */
static bool
unit_check_str(const char *got, const char *want, const char *fmt,...)
{
	va_list		ap;
	bool		ok;

	ok = (got == NULL || want == NULL) ? got == want : strcmp(got, want) == 0;
	va_start(ap, fmt);
	unit_vcheck(ok, fmt, ap);
	va_end(ap);
	if (!ok)
	{
		printf("#   got:  %s%s%s\n", got ? "\"" : "", got ? got : "NULL", got ? "\"" : "");
		printf("#   want: %s%s%s\n", want ? "\"" : "", want ? want : "NULL", want ? "\"" : "");
	}
	return ok;
}

static bool
unit_check_int(int64_t got, int64_t want, const char *fmt,...)
{
	va_list		ap;
	bool		ok = got == want;

	va_start(ap, fmt);
	unit_vcheck(ok, fmt, ap);
	va_end(ap);
	if (!ok)
		printf("#   got: %lld, want: %lld\n", (long long) got, (long long) want);
	return ok;
}

static void
unit_note(const char *msg)
{
	printf("# %s\n", msg);
}

/* The last line of output, and the exit status */
static int
unit_done(void)
{
	printf("%d passed, %d failed\n", unit_passed, unit_failed);
	return unit_failed > 0 ? 1 : 0;
}

#endif							/* PARTOO_UNIT_H */
