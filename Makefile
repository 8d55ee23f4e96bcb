# Makefile for partoo, built with PGXS.
#
#   make && make install        build and install into the server found by pg_config
#   make installcheck           pg_regress on a temporary instance (see test/run-all.sh,
#                               which also starts the mock Partoo server it needs)
#   make unit                   unit tests of the protocol core (no server)
#   make fuzz                   libFuzzer targets, FUZZ_SECONDS each (test/fuzz/run.sh)
#   make check-asan             regress and TAP again against a build with ASan and
#                               UBSan, then the normal build back (as root; this is
#                               test/run-all.sh asan)
#   make bench                  the benchmark suite, as root (test/bench/run.sh;
#                               results in test/bench/out/)
#
# Warnings-as-errors are not set here: CI passes them through PG_CFLAGS.

EXTENSION = partoo
EXTVERSION = 0.2
MODULE_big = partoo

# The protocol core (no postgres.h) first, then the PostgreSQL side.
CORE_OBJS = src/validate.o src/request.o src/response.o src/ratelimit.o \
	src/webhook_parse.o src/webhook_order.o src/signature.o
OBJS = $(CORE_OBJS) \
	src/partoo.o src/http.o src/message.o src/store.o src/send.o \
	src/enqueue.o src/shmem.o src/outbox.o src/worker.o src/worker_job.o \
	src/webhook.o src/webhook_apply.o src/webhook_dispatch.o

DATA = sql/partoo--0.1.sql sql/partoo--0.1--0.2.sql
PGFILEDESC = "partoo - send messages through the Partoo API from PostgreSQL"

REGRESS = 01_setup 02_validation 03_send 04_http_errors 05_retry 06_security 07_enqueue 08_worker_admin 09_webhooks 10_bad_input 11_privileges
REGRESS_OPTS = --temp-config=test/regress.conf --temp-instance=tmp_check \
	--inputdir=. --load-extension=partoo

PG_CPPFLAGS = -I$(srcdir)/src $(shell curl-config --cflags)
SHLIB_LINK = $(shell curl-config --libs) -lcjson -lcrypto

EXTRA_CLEAN = tmp_check results regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

.PHONY: unit fuzz check-asan bench
unit:
	$(MAKE) -C test/unit

fuzz:
	bash test/fuzz/run.sh

check-asan:
	bash test/run-all.sh asan

bench:
	bash test/bench/run.sh
