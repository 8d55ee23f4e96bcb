/*-------------------------------------------------------------------------
 *
 * store.h
 *		Accounts and messages as the partoo_* functions store them
 *		(store.c).
 *
 * src/server/store.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_SERVER_STORE_H
#define PARTOO_SERVER_STORE_H

#include "server/message.h"

/* The default account's settings (partoo.api_key, partoo.base_url, partoo.requests_per_minute) */
extern char *partoo_api_key;
extern char *partoo_base_url;
extern int	partoo_requests_per_minute;

extern void partoo_account_define_gucs(void);
extern bool partoo_valid_base_url(const char *url);

typedef struct PartooAccount
{
	char	   *name;			/* NULL for the default account */
	char	   *api_key;		/* never print it */
	char	   *base_url;
	int			requests_per_minute;
} PartooAccount;

extern PartooAccount *partoo_store_get_account(const char *name);
extern int64 partoo_store_sent_message(PartooMessageInput *in, int64 partoo_id,
									   long http_status);
extern char *partoo_store_account_of(int64 partoo_id, bool *found);
extern void partoo_store_retried(int64 partoo_id);
extern int64 partoo_store_enqueue(PartooMessageInput *in,
								  const char *idempotency_key,
								  bool has_send_at, TimestampTz send_at);

#endif							/* PARTOO_SERVER_STORE_H */
