/*-------------------------------------------------------------------------
 *
 * redact_log.h
 *		The emit_log_hook that keeps keys out of the server log
 *		(redact_log.c).
 *
 * src/server/redact_log.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_SERVER_REDACT_LOG_H
#define PARTOO_SERVER_REDACT_LOG_H


extern void partoo_log_redaction_install(void);

#endif							/* PARTOO_SERVER_REDACT_LOG_H */
