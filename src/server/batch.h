/*-------------------------------------------------------------------------
 *
 * batch.h
 *		The enqueue buffer: partoo_enqueue() and partoo.enqueue_trigger()
 *		calls, and partoo_send()'s recordings, kept in backend memory and
 *		written as one set-based statement (batch.c).
 *
 * src/server/batch.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_SERVER_BATCH_H
#define PARTOO_SERVER_BATCH_H

#include "server/message.h"

/*
 * Calls buffered before they are written, at most, and bytes of their
 * values (images can be large).  1,024, 4,096 and 16,384 rows measured the
 * same within the noise of a shared 2-core machine (make bench, scenario 3).
 */
#define PARTOO_BATCH_ROWS	4096
#define PARTOO_BATCH_BYTES	(8 * 1024 * 1024)

extern void partoo_batch_install_hooks(void);
extern bool partoo_batch_usable(void);
extern int64 partoo_batch_add(PartooMessageInput *in, bool has_send_at,
							  TimestampTz send_at);
extern void partoo_batch_add_sent(PartooMessageInput *in, int64 partoo_id,
								  long http_status);
extern void partoo_batch_flush(void);

#endif							/* PARTOO_SERVER_BATCH_H */
