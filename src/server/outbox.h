/*-------------------------------------------------------------------------
 *
 * outbox.h
 *		The statements the worker runs on partoo's outbox, messages and
 *		accounts (outbox.c), and the shape of what they take and return.
 *
 * Like every header of src/server/, included after server/partoo.h
 * (postgres.h): Datum, Oid and the integer types come from there.
 *
 * src/server/outbox.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_SERVER_OUTBOX_H
#define PARTOO_SERVER_OUTBOX_H

/*
 * The columns of the rows a claim leaves in SPI_tuptable, numbered as SPI
 * numbers them (from 1).  NB: the SELECT list of outbox.c's CLAIM_SQL,
 * in the same order; change both together.
 */
typedef enum PartooClaimColumn
{
	PARTOO_CLAIM_OUTBOX_ID = 1,	/* int8 */
	PARTOO_CLAIM_MESSAGE_ID,	/* int8 */
	PARTOO_CLAIM_ACTION,		/* text: 'send', 'retry' or 'record' */
	PARTOO_CLAIM_ACCOUNT,		/* text: partoo.accounts name, '' default */
	PARTOO_CLAIM_ATTEMPTS,		/* int4: outbox attempts before this one */
	PARTOO_CLAIM_MESSAGE_EXISTS,	/* bool: false once the message is
									 * deleted */
	PARTOO_CLAIM_CONVERSATION_ID,	/* int8, and the message's columns */
	PARTOO_CLAIM_CONTENT_TYPE,
	PARTOO_CLAIM_CONTENT,
	PARTOO_CLAIM_URL,
	PARTOO_CLAIM_IMAGE,
	PARTOO_CLAIM_FILENAME,
	PARTOO_CLAIM_CHANNEL,
	PARTOO_CLAIM_CREATED_AT,
	PARTOO_CLAIM_PARTOO_ID,		/* int8, the message's: NULL until sent */
	PARTOO_CLAIM_RECORD_PID,	/* int8: the Partoo id a 'record' row holds
								 * (NULL before 0.3) */
	PARTOO_CLAIM_NCOLUMNS = PARTOO_CLAIM_RECORD_PID
} PartooClaimColumn;

/*
 * A batch of outcomes for partoo_outbox_record: n of each, one per job, as
 * the elements of the arrays the statement takes.  Build one with
 * partoo_outbox_outcomes_init, which pallocs the arrays.
 */
typedef struct PartooOutboxOutcomes
{
	int			n;
	Datum	   *outbox_id;		/* int8 */
	Datum	   *message_id;		/* int8 */
	Datum	   *state;			/* text: the message's new state */
	Datum	   *final;			/* bool: the outbox row leaves */
	Datum	   *delay_ms;		/* int8: before the next attempt (not
								 * final) */
	Datum	   *attempts;		/* int4: the outbox row's new attempts */
	Datum	   *counted;		/* int4: added to messages.attempts */
	Datum	   *partoo_id;		/* int8, NULL where partoo_id_null */
	bool	   *partoo_id_null;
	Datum	   *http;			/* int4: HTTP status, NULL where http_null */
	bool	   *http_null;
	Datum	   *error;			/* text, NULL where error_null */
	bool	   *error_null;
	Datum	   *is_retry;		/* bool: the outbox action was 'retry' */
} PartooOutboxOutcomes;

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
extern int64 *partoo_outbox_claim_candidates(int limit, Datum *accounts,
											 Datum *quotas, int naccounts,
											 Datum *held, int nheld,
											 uint64 *ncandidates);
extern uint64 partoo_outbox_claim_id(int64 id, int lease_s);
extern bool partoo_outbox_claim_failed(int64 id, const char *reason);
extern void partoo_outbox_put_aside(int64 id, int64 delay_ms);
extern bool partoo_outbox_keep_accepted(int64 id, int64 partoo_id,
										int64 delay_ms, int attempts);
extern int64 partoo_outbox_next_due_ms(Datum *accounts, int naccounts);
extern void partoo_outbox_outcomes_init(PartooOutboxOutcomes *o, int n);
extern int	partoo_outbox_record(const PartooOutboxOutcomes *o, bool *recorded);

#endif							/* PARTOO_SERVER_OUTBOX_H */
