/*-------------------------------------------------------------------------
 *
 * send.h
 *		The synchronous path: one request now, its failure reported as an
 *		error (send.c).
 *
 * src/server/send.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_SERVER_SEND_H
#define PARTOO_SERVER_SEND_H

#include "core/api.h"
#include "http/http.h"

extern void partoo_report_http_failure(PartooHttpRequest *req,
									   const PartooApiResult *res,
									   const char *path);

#endif							/* PARTOO_SERVER_SEND_H */
