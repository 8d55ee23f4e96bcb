/*-------------------------------------------------------------------------
 *
 * asan_preload.c
 *		A library preloaded after libasan into the servers of the asan
 *		stage of test/run-all.sh, so that they start at all.
 *
 * PostgreSQL's binaries link libgpg-error and p11-kit (through libldap,
 * GnuTLS, libsystemd).  A preloaded ASan runtime initialises lazily, at
 * the first malloc(), and the first one comes from libgpg-error's
 * constructor, inside bindtextdomain(), which holds glibc's gettext lock
 * for writing.  At the end of its initialisation ASan looks up
 * swift_demangle and, the lookup failing, calls dlerror(), which
 * translates the message with gettext and so takes the same lock for
 * reading: glibc answers EDEADLK, gettext ignores that and unlocks, and the
 * lock is left with a negative reader count.  The next bindtextdomain(),
 * postgres's own in main(), then waits forever (so do psql, ps, ...: any
 * program linking libgpg-error, with gcc's libasan and clang's alike,
 * glibc 2.36).
 *
 * Defining swift_demangle makes that lookup succeed, so dlerror() is never
 * called under the lock.  ASan only hands it names mangled the Swift way;
 * returning NULL makes it print them as they are.
 *
 * The library also hands UBSan its options.  UBSan reads UBSAN_OPTIONS
 * from /proc/self/environ when it first reports, and in a backend that
 * memory holds the process title by then (PostgreSQL's ps display
 * overwrites argv and the environment strings after it), so UBSan would
 * run with its defaults.  getenv() still works there, since PostgreSQL
 * moved the environment before overwriting it.
 *
 * test/asan_preload.c
 *
 *-------------------------------------------------------------------------
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

char	   *swift_demangle(const char *mangled, size_t mangled_len, char *out,
						   size_t *out_len, uint32_t flags);

char *
swift_demangle(const char *mangled, size_t mangled_len, char *out,
			   size_t *out_len, uint32_t flags)
{
	return NULL;
}

const char *__ubsan_default_options(void);

const char *
__ubsan_default_options(void)
{
	const char *options = getenv("UBSAN_OPTIONS");

	return options ? options : "";
}
