/*-------------------------------------------------------------------------
 *
 * notify.h
 *		NOTIFY partoo_status on every change of a message's state.
 *
 * src/server/notify.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_NOTIFY_H
#define PARTOO_NOTIFY_H

/* The channel the notifications go to */
#define PARTOO_NOTIFY_CHANNEL	"partoo_status"

extern void partoo_notify_define_gucs(void);

#endif							/* PARTOO_NOTIFY_H */
