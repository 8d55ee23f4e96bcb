/*-------------------------------------------------------------------------
 *
 * outbox.h
 *		Every statement the worker runs on the outbox (outbox.c).
 *
 * src/server/outbox.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_SERVER_OUTBOX_H
#define PARTOO_SERVER_OUTBOX_H

#include "fmgr.h"

extern Oid	partoo_outbox_extension_oid(void);
extern uint64 partoo_outbox_recover(void);
extern void partoo_outbox_load_accounts(void (*cb) (const char *name,
												   const char *key,
												   const char *base_url,
												   int rpm, void *arg),
										void *arg);
extern bool partoo_outbox_has_record(void);
extern uint64 partoo_outbox_claim(int limit, Datum *accounts, Datum *quotas,
								  int naccounts, int lease_s,
								  Datum *held, int nheld);
extern uint64 partoo_outbox_claim_candidates(int limit, Datum *accounts,
											 Datum *quotas, int naccounts,
											 Datum *held, int nheld);
extern uint64 partoo_outbox_claim_id(int64 id, int lease_s);
extern bool partoo_outbox_claim_failed(int64 id, const char *reason);
extern void partoo_outbox_put_aside(int64 id, int64 delay_ms);
extern bool partoo_outbox_keep_accepted(int64 id, int64 partoo_id,
										int64 delay_ms, int attempts);
extern int64 partoo_outbox_next_due_ms(Datum *accounts, int naccounts);
extern int	partoo_outbox_record(int n, Datum *oid, Datum *mid, Datum *state,
								 Datum *final, Datum *delay_ms,
								 Datum *attempts, Datum *counted,
								 Datum *pid, bool *pid_null,
								 Datum *http, bool *http_null,
								 Datum *err, bool *err_null,
								 Datum *is_retry, bool *recorded);

#endif							/* PARTOO_SERVER_OUTBOX_H */
