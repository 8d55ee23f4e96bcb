/*
 * mock_webhook.h -- the mock's Partoo webhook sender (mock_webhook.c).
 *
 * After partoo_mock.c accepts a message (a send or a retry) it asks this
 * module what becomes of the message (wh_plan: Success or Failed, and
 * when) and, when a webhook URL is configured, hands it the message
 * (wh_enqueue): signed "message_updated" events with status Sending, then
 * the outcome, are queued and posted by a small pool of sender threads
 * with libcurl, retried with exponential backoff on a 5xx or a transport
 * failure, given up on a 4xx.  Every function is thread-safe.
 */
#ifndef PARTOO_MOCK_WEBHOOK_H
#define PARTOO_MOCK_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "mock_util.h"

/* Partoo message statuses, as the mock decides them */
enum { WH_NONE = 0, WH_SENDING = 1, WH_SUCCESS = 2, WH_FAILED = 3 };
extern const char *const wh_status_names[]; /* "", "Sending", "Success", "Failed" */
int wh_status_from_name(const char *s); /* WH_NONE if unknown */

/* What a webhook tells about a message */
typedef struct
{
  int64_t id;
  int64_t conv;
  const char *content_type; /* "Text", "Image", ... */
  int64_t date_us;          /* creation, CLOCK_REALTIME us */
  const char *content;      /* Text content or media URL; NULL -> null */
} wh_msg_t;

/* The fate of one accepted message (wh_plan fills it) */
typedef struct
{
  int outcome;           /* WH_SUCCESS or WH_FAILED */
  int64_t outcome_at_us; /* CLOCK_REALTIME us at which the status becomes outcome */
  int send;              /* a URL is configured: call wh_enqueue */
  int64_t due_sending;   /* CLOCK_MONOTONIC us */
  int64_t due_final;
  int drop_sending, drop_final, dup_sending, dup_final, send_sending;
} wh_plan_t;

/* Start the sender.  url may be NULL (nothing is sent until one is set);
 * key_file NULL generates a fresh Ed25519 key.  Returns 0, or -1 with a
 * message in err. */
int wh_init(const char *url, const char *key_file, unsigned threads, uint64_t seed,
            char *err, size_t errlen);
/* Stop the threads (in-flight posts are aborted) and free everything */
void wh_shutdown(void);

void wh_plan(wh_plan_t *p);
void wh_enqueue(const wh_msg_t *m, const wh_plan_t *p);
/* One event with this status, now (POST /_mock/status with "webhook":true);
 * does nothing without a URL.  Returns 1 if queued. */
int wh_enqueue_status(const wh_msg_t *m, int status);

/* POST /_mock/webhooks: NULL on success, else an error message (the
 * previous configuration stays) */
const char *wh_configure(const char *body, size_t len);
/* GET /_mock/webhooks: the configuration as a JSON object */
void wh_config_json(sb_t *b);
/* Appends ,"webhooks_...":N members to a JSON object being written */
void wh_stats_json(sb_t *b);
/* /_mock/reset: drop queued deliveries, zero counters, default behaviour
 * (destination and key are kept), reseed */
void wh_reset(uint64_t seed);

#endif
