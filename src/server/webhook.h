/*-------------------------------------------------------------------------
 *
 * webhook.h
 *		Webhook ingestion as the rest of the server side sees it: the
 *		partoo.webhook_* settings, and applying the pending events of Partoo
 *		ids just recorded (webhook.c, webhook_apply.c, and the format files
 *		that own a setting).  The formats' interface is webhook_format.h.
 *
 * src/server/webhook.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_SERVER_WEBHOOK_H
#define PARTOO_SERVER_WEBHOOK_H

/* in webhook.c */
extern bool partoo_webhook_require_signature;
extern int	partoo_webhook_max_bytes;

extern void partoo_webhook_define_gucs(void);

/* in webhook_partoo.c */
extern char *partoo_webhook_public_key;

/* in webhook_dispatch.c */
extern char *partoo_dispatch_webhook_key;

/* in webhook_apply.c */
extern void partoo_webhook_apply_recorded(int64 *pids, int n);
extern uint64 partoo_webhook_apply_owed(uint64 mask);
extern bool partoo_webhook_applying(void);

#endif							/* PARTOO_SERVER_WEBHOOK_H */
