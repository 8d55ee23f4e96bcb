# Makefile for partoo, built with PGXS.
#
#   make && make install        build and install into the server found by pg_config
#   make installcheck-mock      pg_regress on a temporary instance, with a mock
#                               Partoo server started (on a free port) and stopped
#                               around it; as a normal user, after make install
#   make installcheck           the same against a mock already running on the port
#                               test/regress.conf names (make mock-start; make mock-stop)
#   make prove_installcheck     the TAP tests (test/t/*.pl; PROVE_TESTS=test/t/010_drain.pl
#                               for some), each with its own mock; as a normal user
#   make check-version          partoo.control, META.json, the SQL scripts and
#                               partoo.so agree with EXTVERSION
#   make unit                   unit tests of the protocol core (no server)
#   make fuzz                   libFuzzer targets, FUZZ_SECONDS each (test/core/fuzz/run.sh)
#   make check-asan             regress and TAP again against a build with ASan and
#                               UBSan, then the normal build back (as root; this is
#                               test/run-all.sh asan)
#   make bench                  the benchmark suite, as root (test/bench/run.sh;
#                               results in test/bench/out/)
#
# Warnings-as-errors are not set here: CI passes them through PG_CFLAGS.

EXTENSION = partoo
# The extension's version, written here only.  partoo.control and META.json
# are made from their .in templates with it (see the rules at the end), the
# C code gets it as PARTOO_VERSION, and the Debian package takes it as its
# upstream version.  To release a new one, see README.md ("Development and
# testing").
EXTVERSION = 0.5
MODULE_big = partoo

# The layers, bottom up (docs/architecture.md): the protocol core
# (src/core/, no postgres.h, unit-tested and fuzzed alone), the HTTP
# client (src/http/), the PostgreSQL side (src/server/).
CORE_OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/core/*.c)))
HTTP_OBJS = src/http/http.o
SERVER_OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/server/*.c)))
OBJS = $(CORE_OBJS) $(HTTP_OBJS) $(SERVER_OBJS)

# Every install and upgrade script; not the pg_regress inputs sql/NN_*.sql.
DATA = $(wildcard sql/$(EXTENSION)--*.sql)
PGFILEDESC = "partoo - send messages through the Partoo API from PostgreSQL"

REGRESS = 01_setup 02_validation 03_send 04_http_errors 05_retry 06_security 07_enqueue 08_worker_admin 09_webhooks 10_bad_input 11_privileges 12_reconcile 13_send_buffer
# A temporary instance with the library preloaded (pg_cron's way), pointed
# at the mock Partoo server on the port test/regress.conf names; when
# MOCK_PORT names another one, test/regress-port.conf (made below, not
# tracked) says so after it.
REGRESS_OPTS = --temp-config=test/regress.conf --temp-instance=tmp_check
REGRESS_PREP = mock-check

PG_CPPFLAGS = -I$(srcdir)/src $(shell curl-config --cflags) \
	-DPARTOO_VERSION='"$(EXTVERSION)"'
SHLIB_LINK = $(shell curl-config --libs) -lcjson -lcrypto

EXTRA_CLEAN = tmp_check results regression.diffs regression.out \
	test/regress-port.conf

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PARTOO_VERSION reaches every file that includes http/http.h.
$(HTTP_OBJS) $(SERVER_OBJS): Makefile

# The files made from EXTVERSION.  Both are tracked, because a plain
# make install and PGXN read them as they are; make remakes them when the
# Makefile or their template changes, and make check-version fails when a
# tracked copy differs from what they would be.  A copy of the tree
# without the templates (test/lib.sh's partoo_copy_tree) builds with the
# files as they are.
ifneq (,$(wildcard $(EXTENSION).control.in))
$(EXTENSION).control: $(EXTENSION).control.in Makefile
	sed 's/@EXTVERSION@/$(EXTVERSION)/g' $< >$@
endif

ifneq (,$(wildcard META.json.in))
all: META.json

META.json: META.json.in Makefile
	sed 's/@EXTVERSION@/$(EXTVERSION)/g' $< >$@
endif

.PHONY: check-version
check-version:
	bash test/ci/version.sh

# The mock Partoo server for the regress tests (test/mock/, built with its
# own Makefile).  MOCK_PORT defaults to the port in test/regress.conf.
MOCK_CONF_PORT := $(shell sed -n "s|^partoo.base_url = 'http://127.0.0.1:\([0-9][0-9]*\)/.*|\1|p" test/regress.conf)
MOCK_PORT ?= $(MOCK_CONF_PORT)
MOCK_PIDFILE = test/mock/partoo-mock.pid
export PARTOO_MOCK_URL = http://127.0.0.1:$(MOCK_PORT)

ifneq ($(MOCK_PORT),$(MOCK_CONF_PORT))
REGRESS_OPTS += --temp-config=test/regress-port.conf
installcheck: test/regress-port.conf
endif

.PHONY: mock mock-start mock-stop mock-check installcheck-mock test/regress-port.conf
mock:
	$(MAKE) -C test/mock

mock-start: mock
	bash test/mock/mockctl.sh start $(MOCK_PORT) $(MOCK_PIDFILE)

mock-stop:
	bash test/mock/mockctl.sh stop $(MOCK_PIDFILE)

mock-check:
	@bash test/mock/mockctl.sh check $(MOCK_PORT)

test/regress-port.conf:
	echo "partoo.base_url = '$(PARTOO_MOCK_URL)/v2'" >$@

installcheck-mock: mock
	bash test/mock/mockctl.sh run $(MAKE) installcheck

# The TAP tests.  Not TAP_TESTS = 1: that would make installcheck run them
# all (minutes).  PGXS's prove_installcheck recipe, with test/t on the
# module path and PARTOO_REPO telling test/t/PartooTest.pm where the mock is.
PROVE_TESTS ?= test/t/*.pl
PG_PROVE_FLAGS += -I $(srcdir)/test/t

.PHONY: prove_installcheck
prove_installcheck: export PARTOO_REPO = $(abspath $(srcdir))
prove_installcheck: mock
	$(prove_installcheck)

.PHONY: unit fuzz check-asan bench
unit:
	$(MAKE) -C test/core/unit

fuzz:
	bash test/core/fuzz/run.sh

check-asan:
	bash test/run-all.sh asan

bench:
	bash test/bench/run.sh

# partoo-webhookd (src/webhookd/): the webhook receiver daemon, a program
# of its own (libmicrohttpd + libpq), not part of partoo.so.  PGXS builds
# one MODULE_big or one PROGRAM, not both, so these are plain rules,
# hooked into all, install, uninstall and clean.  It never includes
# postgres.h: only libpq-fe.h, from pg_config --includedir.  It gets the
# same COPT (Debian's build flags, from pg_buildext) and PG_CFLAGS (CI's
# warnings-as-errors) as the extension.
WEBHOOKD = src/webhookd/partoo-webhookd
WEBHOOKD_OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/webhookd/*.c)))
WEBHOOKD_CFLAGS = -O2 -g -Wall -Wmissing-prototypes -pthread $(COPT) $(PG_CFLAGS)
WEBHOOKD_CPPFLAGS = -I$(shell $(PG_CONFIG) --includedir) \
	-DPARTOO_VERSION='"$(EXTVERSION)"'
WEBHOOKD_LIBS = -L$(shell $(PG_CONFIG) --libdir) -lpq -lmicrohttpd -pthread

all: $(WEBHOOKD)

src/webhookd/%.o: src/webhookd/%.c src/webhookd/webhookd.h Makefile
	$(CC) $(WEBHOOKD_CFLAGS) $(WEBHOOKD_CPPFLAGS) -c -o $@ $<

$(WEBHOOKD): $(WEBHOOKD_OBJS)
	$(CC) $(WEBHOOKD_CFLAGS) $(LDFLAGS) -o $@ $(WEBHOOKD_OBJS) $(WEBHOOKD_LIBS)

.PHONY: install-webhookd uninstall-webhookd clean-webhookd
install: install-webhookd
install-webhookd: $(WEBHOOKD)
	$(MKDIR_P) '$(DESTDIR)$(shell $(PG_CONFIG) --bindir)'
	$(INSTALL_PROGRAM) $(WEBHOOKD) '$(DESTDIR)$(shell $(PG_CONFIG) --bindir)/partoo-webhookd'

uninstall: uninstall-webhookd
uninstall-webhookd:
	rm -f '$(DESTDIR)$(shell $(PG_CONFIG) --bindir)/partoo-webhookd'

clean: clean-webhookd
clean-webhookd:
	rm -f $(WEBHOOKD) $(WEBHOOKD_OBJS)
