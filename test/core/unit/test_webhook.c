/*-------------------------------------------------------------------------
 *
 * test_webhook.c
 *		Unit tests of webhook parsing, the ordering rules and signatures.
 *
 * Runs without a server: it links src/core/webhook_parse.c and src/core/signature.c
 * with cJSON and libcrypto.  Ed25519 key pairs are generated here with
 * libcrypto, so no key material lives in the tree; random streams come
 * from a fixed-seed generator so every run is the same.
 *
 * test/core/unit/test_webhook.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/message.h"
#include "core/signature.h"
#include "core/webhook.h"
#include "unit.h"

#include <stdlib.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#define PRODUCTION_KEY "MCowBQYDK2VwAyEA0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIwZWBQ="
#define SANDBOX_KEY "MCowBQYDK2VwAyEALsyvX2yVnG3ZKRIFfEvYk2nkzanoNgAqBSqdeNub4sM="

/* The example of Partoo's documentation, with one field changed at will */
#define PARTOO_EXAMPLE(type, status, deleted, sender) \
	"{\"type\": \"" type "\", \"payload\": {\"message\": {\"id\": 123," \
	" \"conversation_id\": 123, \"date\": \"2023-01-31 16:22:17.327878+00:00\"," \
	" \"content_type\": \"Text\", \"sender_type\": \"" sender "\"," \
	" \"sender_label\": \"Jane Doe\", \"status\": \"" status "\"," \
	" \"is_deleted\": " deleted ", \"content\": \"<string>\", \"user_id\": \"<string>\"," \
	" \"custom_channel\": null}, \"conversation\": {\"id\": 123," \
	" \"consumer_img\": \"https://www.example.com/profile-picture.jpg\"," \
	" \"consumer_name\": \"John Doe\", \"business\": {\"id\": 123}," \
	" \"messaging_partner\": \"Facebook\", \"custom_channel\": null}, \"org_id\": 123}}"

#define DISPATCH_EXAMPLE \
	"{\"event\": \"MESSAGE_STATUS\", \"module\": \"DISPATCH_API\", \"dispatchId\": \"d-1\"," \
	" \"messageId\": \"m-1\", \"messagePart\": 2, \"messageTotalParts\": 3," \
	" \"channel\": \"WHATSAPP\", \"channelIdentifier\": \"+33600000000\"," \
	" \"status\": \"DELIVERED\", \"statusOrder\": 4," \
	" \"statusDate\": \"2024-05-01T10:00:00.5Z\"," \
	" \"dispatchMetadata\": {\"order\": 7, \"tags\": [\"a\", \"b\"]}," \
	" \"recipientMetadata\": {\"name\": \"Ada\"}}"

/* splitmix64: a small deterministic source of test randomness */
static uint64_t
next_random(uint64_t *state)
{
	uint64_t	z = (*state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static PartooWebhookEvent *
parse(const char *s, PartooWebhookError *err)
{
	return partoo_webhook_parse(s, strlen(s), 0, err);
}

/* Parse, expect a refusal of the given kind; the message is returned */
static bool
refused(const char *s, PartooWebhookErrorKind kind, const char *what)
{
	PartooWebhookError err;
	PartooWebhookEvent *ev = parse(s, &err);
	bool		ok = ev == NULL && err.kind == kind && err.message[0] != '\0' &&
		err.detail[0] != '\0';

	unit_check(ok, "refused (%d): %s", (int) kind, what);
	if (!ok)
		printf("#   kind %d, message \"%s\", detail \"%s\"\n",
			   (int) err.kind, err.message, err.detail);
	partoo_webhook_event_free(ev);
	return ok;
}

static void
test_partoo_format(void)
{
	PartooWebhookError err;
	PartooWebhookEvent *ev;
	PartooWebhookEvent *ev2;
	int64_t		t;

	ev = parse(PARTOO_EXAMPLE("message_updated", "Success", "false", "User"), &err);
	if (!unit_check(ev != NULL, "documentation example parses"))
	{
		printf("#   %s: %s\n", err.message, err.detail);
		return;
	}
	unit_check_int(ev->source, PARTOO_SOURCE_PARTOO, "source is partoo");
	unit_check(ev->concerns_status, "a status event");
	unit_check_str(ev->event_type, "message_updated", "type");
	unit_check_int(ev->partoo_id, 123, "payload.message.id");
	unit_check_int(ev->status, PARTOO_STATUS_SUCCESS, "status Success");
	unit_check_str(ev->status_raw, "Success", "raw status kept");
	unit_check_int(ev->is_deleted, 0, "is_deleted false");
	unit_check_str(ev->content_type, "Text", "content type");
	unit_check_str(ev->sender_type, "User", "sender type");
	unit_check_str(ev->channel, "Facebook", "messaging partner as channel");
	unit_check(partoo_parse_datetime("2023-01-31T16:22:17.327878Z", &t) &&
			   ev->has_event_at && ev->event_at == t, "message date parsed");
	unit_check_str(ev->dedup_key, "partoo/message_updated/123/Success/f", "dedup key");
	partoo_webhook_event_free(ev);

	/* other whitespace, key order and escapes: the same key */
	ev = parse("{\"payload\":{\"org_id\":123,\"message\":{\"is_deleted\":false,"
			   "\"status\":\"\\u0053uccess\",\"id\":123.0}},\"type\":\"message_updated\"}",
			   &err);
	unit_check(ev != NULL && strcmp(ev->dedup_key, "partoo/message_updated/123/Success/f") == 0,
			   "compact variant has the same dedup key");
	partoo_webhook_event_free(ev);

	ev = parse(PARTOO_EXAMPLE("message_created", "Sending", "true", "Bot"), &err);
	unit_check(ev != NULL && ev->concerns_status && ev->is_deleted == 1 &&
			   strcmp(ev->dedup_key, "partoo/message_created/123/Sending/t") == 0 &&
			   strcmp(ev->sender_type, "Bot") == 0,
			   "message_created of an unknown sender type is a status event");
	partoo_webhook_event_free(ev);

	/* a consumer's message, an unknown type, an unknown status: ignored */
	ev = parse(PARTOO_EXAMPLE("message_created", "Success", "false", "Consumer"), &err);
	unit_check(ev != NULL && !ev->concerns_status &&
			   strncmp(ev->dedup_key, "partoo/ignored/", 15) == 0 &&
			   strlen(ev->dedup_key) == 15 + 64,
			   "a consumer's message is ignored, keyed by a SHA-256");
	ev2 = parse("{\"type\":\"message_created\",\"payload\":{\"message\":{\"id\":123,"
				"\"conversation_id\":123,\"date\":\"2023-01-31 16:22:17.327878+00:00\","
				"\"content_type\":\"Text\",\"sender_type\":\"Consumer\",\"sender_label\":"
				"\"Jane Doe\",\"status\":\"Success\",\"is_deleted\":false,\"content\":"
				"\"<string>\",\"user_id\":\"<string>\",\"custom_channel\":null},"
				"\"conversation\":{\"id\":123,\"consumer_img\":"
				"\"https://www.example.com/profile-picture.jpg\",\"consumer_name\":"
				"\"John Doe\",\"business\":{\"id\":123},\"messaging_partner\":\"Facebook\","
				"\"custom_channel\":null},\"org_id\":123}}", &err);
	unit_check(ev != NULL && ev2 != NULL && strcmp(ev->dedup_key, ev2->dedup_key) == 0,
			   "an ignored event with other whitespace has the same key");
	partoo_webhook_event_free(ev);
	partoo_webhook_event_free(ev2);

	ev = parse("{\"type\": \"business_created\", \"payload\": {\"business\": {\"id\": 9}}}", &err);
	unit_check(ev != NULL && !ev->concerns_status && ev->partoo_id == 0,
			   "an event type partoo does not track is ignored");
	partoo_webhook_event_free(ev);

	ev = parse(PARTOO_EXAMPLE("message_updated", "Queued", "false", "User"), &err);
	unit_check(ev != NULL && !ev->concerns_status && ev->status == PARTOO_STATUS_UNKNOWN &&
			   strcmp(ev->status_raw, "Queued") == 0,
			   "an unknown status is kept and ignored");
	partoo_webhook_event_free(ev);

	ev = parse("{\"type\":\"message_updated\",\"payload\":{\"message\":{\"id\":5,"
			   "\"status\":\"failed\",\"content_type\":\"Hologram\",\"date\":"
			   "\"2023-01-31T16:22:17+02:00\",\"content\":{\"url\":\"https://x\"},"
			   "\"user_id\":42}}}", &err);
	unit_check(ev != NULL && ev->status == PARTOO_STATUS_FAILED && ev->is_deleted == -1 &&
			   strcmp(ev->content_type, "Hologram") == 0 &&
			   strcmp(ev->dedup_key, "partoo/message_updated/5/Failed/-") == 0 &&
			   ev->channel == NULL,
			   "minimal event: status matched without case, new content type kept");
	partoo_webhook_event_free(ev);

	ev = parse("\xEF\xBB\xBF {\"type\":\"message_updated\",\"payload\":{\"message\":"
			   "{\"id\":9007199254740992,\"status\":\"Sending\"}}} \n", &err);
	unit_check(ev != NULL && ev->partoo_id == INT64_C(9007199254740992),
			   "BOM and surrounding whitespace accepted, id up to 2^53");
	partoo_webhook_event_free(ev);
}

static void
test_dispatch_format(void)
{
	PartooWebhookError err;
	PartooWebhookEvent *ev;
	PartooWebhookEvent *ev2;
	int64_t		t;

	ev = parse(DISPATCH_EXAMPLE, &err);
	if (!unit_check(ev != NULL, "dispatch example parses"))
	{
		printf("#   %s: %s\n", err.message, err.detail);
		return;
	}
	unit_check_int(ev->source, PARTOO_SOURCE_DISPATCH, "source is dispatch");
	unit_check(ev->concerns_status, "a status event");
	unit_check_str(ev->dispatch_id, "d-1", "dispatchId");
	unit_check_str(ev->recipient, "+33600000000", "channelIdentifier");
	unit_check_str(ev->message_id, "m-1", "messageId");
	unit_check_str(ev->event_type, "MESSAGE_STATUS", "event");
	unit_check_str(ev->module, "DISPATCH_API", "module");
	unit_check_str(ev->channel, "WHATSAPP", "channel");
	unit_check_int(ev->part, 2, "messagePart");
	unit_check_int(ev->total_parts, 3, "messageTotalParts");
	unit_check_int(ev->status_order, 4, "statusOrder");
	unit_check_int(ev->dispatch_status, PARTOO_DS_DELIVERED, "status DELIVERED");
	unit_check(partoo_parse_datetime("2024-05-01 10:00:00.500000+00:00", &t) &&
			   ev->event_at == t, "statusDate parsed");
	unit_check_str(ev->dispatch_metadata, "{\"order\":7,\"tags\":[\"a\",\"b\"]}",
				   "dispatchMetadata kept as compact JSON");
	unit_check_str(ev->order_key, "2024-05-01T10:00:00.500000Z#4", "order key");
	unit_check_str(ev->dedup_key,
				   "dispatch/3:d-1/12:+33600000000/2/2024-05-01T10:00:00.500000Z/4/9:DELIVERED",
				   "dedup key");
	partoo_webhook_event_free(ev);

	/* no event, no module, no parts, no order: defaults */
	ev = parse("{\"dispatchId\":\"d-1\",\"channelIdentifier\":\"+33600000000\","
			   "\"status\":\"read\",\"statusDate\":\"2024-05-01T12:00:00+02:00\"}", &err);
	unit_check(ev != NULL && ev->event_type == NULL && ev->module == NULL &&
			   ev->part == 1 && ev->total_parts == 1 && ev->status_order == 0 &&
			   ev->dispatch_status == PARTOO_DS_READ && ev->dispatch_metadata == NULL &&
			   strcmp(ev->order_key, "2024-05-01T10:00:00.000000Z#0") == 0,
			   "minimal notification: defaults, offset applied");
	partoo_webhook_event_free(ev);

	/* the same notification re-sent differently: the same key */
	ev = parse(DISPATCH_EXAMPLE, &err);
	ev2 = parse("{\"statusDate\":\"2024-05-01 11:00:00.500+01:00\",\"status\":\"DELIVERED\","
				"\"channelIdentifier\":\"+33600000000\",\"dispatchId\":\"d\\u002d1\","
				"\"messagePart\":2,\"messageTotalParts\":3,\"statusOrder\":4}", &err);
	unit_check(ev != NULL && ev2 != NULL && strcmp(ev->dedup_key, ev2->dedup_key) == 0,
			   "re-sent notification (other spelling, offset, fields) has the same key");
	partoo_webhook_event_free(ev);
	partoo_webhook_event_free(ev2);

	/* length prefixes keep keys apart when ids contain the separators */
	ev = parse("{\"dispatchId\":\"a/1:b\",\"channelIdentifier\":\"c\",\"status\":\"READ\","
			   "\"statusDate\":\"2024-05-01T10:00:00Z\"}", &err);
	ev2 = parse("{\"dispatchId\":\"a\",\"channelIdentifier\":\"b/1:c\",\"status\":\"READ\","
				"\"statusDate\":\"2024-05-01T10:00:00Z\"}", &err);
	unit_check(ev != NULL && ev2 != NULL && strcmp(ev->dedup_key, ev2->dedup_key) != 0,
			   "ids containing separators do not collide");
	partoo_webhook_event_free(ev);
	partoo_webhook_event_free(ev2);

	ev = parse("{\"dispatchId\":\"x\",\"channelIdentifier\":\"y\",\"status\":\"SEEN_BY_ROBOT\","
			   "\"statusDate\":\"2024-05-01T10:00:00Z\",\"channel\":\"CARRIER_PIGEON\","
			   "\"statusOrder\":-3}", &err);
	unit_check(ev != NULL && ev->dispatch_status == PARTOO_DS_OTHER &&
			   strcmp(ev->channel, "CARRIER_PIGEON") == 0 && ev->status_order == -3,
			   "unknown status and channel are stored");
	partoo_webhook_event_free(ev);
}

static void
test_malformed(void)
{
	char	   *big;
	PartooWebhookError err;
	PartooWebhookEvent *ev;

	refused("", PARTOO_WHE_SYNTAX, "empty body");
	refused("{\"type\": ", PARTOO_WHE_SYNTAX, "truncated JSON");
	refused("not json", PARTOO_WHE_SYNTAX, "not JSON");
	refused("{} {}", PARTOO_WHE_SYNTAX, "two values");
	refused("{\"a\":1} x", PARTOO_WHE_SYNTAX, "trailing garbage");
	refused("{\"type\":\"message_updated\\u0000x\",\"payload\":{}}", PARTOO_WHE_SYNTAX,
			"\\u0000 escape");
	refused("[1, 2]", PARTOO_WHE_INVALID, "an array");
	refused("\"message_updated\"", PARTOO_WHE_INVALID, "a string");
	refused("42", PARTOO_WHE_INVALID, "a number");
	refused("{\"hello\": \"world\"}", PARTOO_WHE_INVALID, "neither format");
	refused("{\"type\": \"message_updated\"}", PARTOO_WHE_INVALID, "type without payload");

	/* Partoo: wrong field types and values */
	refused("{\"type\": 5, \"payload\": {}}", PARTOO_WHE_INVALID, "type not a string");
	refused("{\"type\": \"message_updated\", \"payload\": []}", PARTOO_WHE_INVALID,
			"payload not an object");
	refused("{\"type\": \"message_updated\", \"payload\": {}}", PARTOO_WHE_INVALID,
			"message missing");
	refused("{\"type\": \"message_updated\", \"payload\": {\"message\": {\"status\": \"Success\"}}}",
			PARTOO_WHE_INVALID, "id missing");
	refused("{\"type\": \"message_updated\", \"payload\": {\"message\": {\"id\": \"123\"}}}",
			PARTOO_WHE_INVALID, "id as a string");
	refused("{\"type\": \"message_updated\", \"payload\": {\"message\": {\"id\": 1.5}}}",
			PARTOO_WHE_INVALID, "fractional id");
	refused("{\"type\": \"message_updated\", \"payload\": {\"message\": {\"id\": 0}}}",
			PARTOO_WHE_INVALID, "id zero");
	refused("{\"type\": \"message_updated\", \"payload\": {\"message\": {\"id\": 1e300}}}",
			PARTOO_WHE_INVALID, "id too large");
	refused("{\"type\": \"message_updated\", \"payload\": {\"message\": {\"id\": 1, \"status\": 2}}}",
			PARTOO_WHE_INVALID, "status a number");
	refused("{\"type\": \"message_updated\", \"payload\": {\"message\": {\"id\": 1, \"is_deleted\": \"true\"}}}",
			PARTOO_WHE_INVALID, "is_deleted a string");
	refused("{\"type\": \"message_updated\", \"payload\": {\"message\": {\"id\": 1, \"date\": \"yesterday\"}}}",
			PARTOO_WHE_INVALID, "date not a date");
	refused("{\"type\": \"message_updated\", \"payload\": {\"message\": {\"id\": 1, \"user_id\": []}}}",
			PARTOO_WHE_INVALID, "user_id an array");
	refused("{\"type\": \"message_updated\", \"payload\": {\"message\": {\"id\": 1}, \"org_id\": \"x\"}}",
			PARTOO_WHE_INVALID, "org_id a string");
	refused("{\"type\": \"message_updated\", \"payload\": {\"message\": {\"id\": 1}, \"conversation\": 3}}",
			PARTOO_WHE_INVALID, "conversation a number");

	/* dispatch */
	refused("{\"dispatchId\": 5, \"channelIdentifier\": \"x\", \"status\": \"READ\", \"statusDate\": \"2024-05-01T10:00:00Z\"}",
			PARTOO_WHE_INVALID, "dispatchId a number");
	refused("{\"dispatchId\": \"\", \"channelIdentifier\": \"x\", \"status\": \"READ\", \"statusDate\": \"2024-05-01T10:00:00Z\"}",
			PARTOO_WHE_INVALID, "empty dispatchId");
	refused("{\"dispatchId\": \"d\", \"status\": \"READ\", \"statusDate\": \"2024-05-01T10:00:00Z\"}",
			PARTOO_WHE_INVALID, "channelIdentifier missing");
	refused("{\"dispatchId\": \"d\", \"channelIdentifier\": \"x\", \"statusDate\": \"2024-05-01T10:00:00Z\"}",
			PARTOO_WHE_INVALID, "status missing");
	refused("{\"dispatchId\": \"d\", \"channelIdentifier\": \"x\", \"status\": \"READ\"}",
			PARTOO_WHE_INVALID, "statusDate missing");
	refused("{\"dispatchId\": \"d\", \"channelIdentifier\": \"x\", \"status\": \"READ\", \"statusDate\": 1714557600}",
			PARTOO_WHE_INVALID, "statusDate a number");
	refused("{\"dispatchId\": \"d\", \"channelIdentifier\": \"x\", \"status\": \"READ\", \"statusDate\": \"2024-05-01T10:00:00Z\", \"messagePart\": \"1\"}",
			PARTOO_WHE_INVALID, "messagePart a string");
	refused("{\"dispatchId\": \"d\", \"channelIdentifier\": \"x\", \"status\": \"READ\", \"statusDate\": \"2024-05-01T10:00:00Z\", \"messagePart\": 3, \"messageTotalParts\": 2}",
			PARTOO_WHE_INVALID, "part beyond total");
	refused("{\"dispatchId\": \"d\", \"channelIdentifier\": \"x\", \"status\": \"READ\", \"statusDate\": \"2024-05-01T10:00:00Z\", \"messagePart\": 0}",
			PARTOO_WHE_INVALID, "part zero");
	refused("{\"dispatchId\": \"d\", \"channelIdentifier\": \"x\", \"status\": \"READ\", \"statusDate\": \"2024-05-01T10:00:00Z\", \"messagePart\": 1, \"messageTotalParts\": 1001}",
			PARTOO_WHE_INVALID, "more than 1000 parts");
	refused("{\"dispatchId\": \"d\", \"channelIdentifier\": \"x\", \"status\": \"READ\", \"statusDate\": \"2024-05-01T10:00:00Z\", \"statusOrder\": 2147483648}",
			PARTOO_WHE_INVALID, "statusOrder beyond int32");
	refused("{\"dispatchId\": \"d\", \"channelIdentifier\": \"x\", \"status\": \"READ\", \"statusDate\": \"2024-05-01T10:00:00Z\", \"dispatchMetadata\": \"x\"}",
			PARTOO_WHE_INVALID, "dispatchMetadata a string");
	refused("{\"dispatchId\": \"d\", \"channelIdentifier\": \"x\", \"status\": \"READ\", \"statusDate\": \"2024-05-01T10:00:00Z\", \"channel\": true}",
			PARTOO_WHE_INVALID, "channel a boolean");

	big = malloc(400);
	memset(big, 'x', 399);
	big[399] = '\0';
	{
		char	   *body = malloc(600);

		snprintf(body, 600, "{\"dispatchId\": \"%s\", \"channelIdentifier\": \"x\", \"status\": \"READ\", \"statusDate\": \"2024-05-01T10:00:00Z\"}", big);
		refused(body, PARTOO_WHE_INVALID, "dispatchId over 255 bytes");
		free(body);
	}
	free(big);

	/* "\\u0000" is a backslash and "u0000", not a NUL */
	ev = parse("{\"dispatchId\":\"a\\\\u0000\",\"channelIdentifier\":\"x\",\"status\":\"READ\","
			   "\"statusDate\":\"2024-05-01T10:00:00Z\"}", &err);
	unit_check(ev != NULL && strcmp(ev->dispatch_id, "a\\u0000") == 0,
			   "an escaped backslash before u0000 is not a NUL");
	partoo_webhook_event_free(ev);

	/* a NUL byte inside the body */
	ev = partoo_webhook_parse("{\"a\":\"\0\"}", 9, 0, &err);
	unit_check(ev == NULL && err.kind == PARTOO_WHE_SYNTAX, "raw NUL byte refused");

	/* size limit */
	ev = partoo_webhook_parse(DISPATCH_EXAMPLE, strlen(DISPATCH_EXAMPLE), 100, &err);
	unit_check(ev == NULL && err.kind == PARTOO_WHE_TOO_LARGE, "over max_len is TOO_LARGE");
	ev = partoo_webhook_parse(DISPATCH_EXAMPLE, strlen(DISPATCH_EXAMPLE),
							  strlen(DISPATCH_EXAMPLE), &err);
	unit_check(ev != NULL, "exactly max_len is accepted");
	partoo_webhook_event_free(ev);

	/* the body is not NUL-terminated: len is all that is read */
	{
		const char *s = "{\"type\":\"x\",\"payload\":{}}garbage";

		ev = partoo_webhook_parse(s, 25, 0, &err);
		unit_check(ev != NULL && !ev->concerns_status, "parses exactly len bytes");
		partoo_webhook_event_free(ev);
	}

	/* deep nesting fails cleanly */
	{
		int			depth = 5000;
		char	   *s = malloc(depth * 2 + 64);
		int			i;
		size_t		n = 0;

		n += sprintf(s, "{\"type\":\"x\",\"payload\":");
		for (i = 0; i < depth; i++)
			s[n++] = '[';
		for (i = 0; i < depth; i++)
			s[n++] = ']';
		s[n++] = '}';
		ev = partoo_webhook_parse(s, n, 0, &err);
		unit_check(ev == NULL && err.kind == PARTOO_WHE_SYNTAX, "nesting 5000 deep refused");
		free(s);
	}
}

static void
test_dates(void)
{
	static const struct
	{
		const char *in;
		const char *same_as;	/* NULL: must be refused */
	}			cases[] = {
		{"2023-01-31 16:22:17.327878+00:00", "2023-01-31T16:22:17.327878Z"},
		{"2023-01-31T16:22:17.327878+00:00", "2023-01-31T16:22:17.327878Z"},
		{"2023-01-31t16:22:17.327878z", "2023-01-31T16:22:17.327878Z"},
		{"2023-01-31T16:22:17.327878", "2023-01-31T16:22:17.327878Z"},
		{"2023-01-31T18:22:17.327878+02:00", "2023-01-31T16:22:17.327878Z"},
		{"2023-01-31T18:22:17.327878+0200", "2023-01-31T16:22:17.327878Z"},
		{"2023-01-31T18:22:17.327878+02", "2023-01-31T16:22:17.327878Z"},
		{"2023-01-31T11:52:17.327878-04:30", "2023-01-31T16:22:17.327878Z"},
		{"2023-01-31T16:22:17.3278789", "2023-01-31T16:22:17.327878Z"},
		{"2023-01-31T16:22:17.3Z", "2023-01-31T16:22:17.300000Z"},
		{"2023-01-31T16:22:17,3Z", "2023-01-31T16:22:17.300000Z"},
		{"2023-01-31T16:22Z", "2023-01-31T16:22:00Z"},
		{"2024-02-29T23:30:00-00:30", "2024-03-01T00:00:00Z"},
		{"2024-01-01T00:00:00+01:00", "2023-12-31T23:00:00Z"},
		{"0001-01-01T00:00:00Z", "0001-01-01 00:00:00"},
		{"9999-12-31T23:59:59.999999Z", "9999-12-31 23:59:59.999999"},
		{"2023-02-29T00:00:00Z", NULL},
		{"2100-02-29T00:00:00Z", NULL},
		{"2023-04-31T00:00:00Z", NULL},
		{"2023-13-01T00:00:00Z", NULL},
		{"2023-00-01T00:00:00Z", NULL},
		{"2023-01-01T24:00:00Z", NULL},
		{"2023-01-01T23:60:00Z", NULL},
		{"2023-01-01T23:59:60Z", NULL},
		{"2023-01-01T23:59:59.Z", NULL},
		{"2023-01-01T23:59:59.1234567890Z", NULL},
		{"2023-01-01T23:59:59+24:00", NULL},
		{"2023-01-01T23:59:59+01:60", NULL},
		{"2023-01-01T23:59:59+1", NULL},
		{"2023-01-01T23:59:59 ", NULL},
		{"2023-01-01", NULL},
		{"2023-1-01T00:00:00Z", NULL},
		{"0000-01-01T00:00:00Z", NULL},
		{"20230101T000000Z", NULL},
		{"2023-01-01X00:00:00Z", NULL},
		{"", NULL},
	};
	int			i;
	int64_t		a,
				b;

	for (i = 0; i < (int) (sizeof(cases) / sizeof(cases[0])); i++)
	{
		bool		ok = partoo_parse_datetime(cases[i].in, &a);

		if (cases[i].same_as == NULL)
			unit_check(!ok, "date \"%s\" refused", cases[i].in);
		else
			unit_check(ok && partoo_parse_datetime(cases[i].same_as, &b) && a == b,
					   "date \"%s\" = \"%s\"", cases[i].in, cases[i].same_as);
	}
	unit_check(partoo_parse_datetime("1970-01-01T00:00:00Z", &a) && a == 0, "epoch is 0");
	unit_check(partoo_parse_datetime("2023-01-31 16:22:17.327878+00:00", &a) &&
			   a == INT64_C(1675182137327878), "documentation date as Unix microseconds");
	unit_check(partoo_parse_datetime("1969-12-31T23:59:59.5Z", &a) && a == -500000,
			   "before the epoch");
	unit_check(!partoo_parse_datetime(NULL, &a), "NULL refused");
}

static void
test_base64(void)
{
	unsigned char out[64];

	unit_check_int(partoo_base64_decode("aGVsbG8=", 8, out, sizeof(out)), 5, "padded");
	unit_check(memcmp(out, "hello", 5) == 0, "padded decodes to hello");
	unit_check_int(partoo_base64_decode("aGVsbG8", 7, out, sizeof(out)), 5, "unpadded");
	unit_check_int(partoo_base64_decode(" aGVsbG8=\r\n", 11, out, sizeof(out)), 5,
				   "surrounding whitespace");
	unit_check_int(partoo_base64_decode("-_-_", 4, out, sizeof(out)), 3, "URL-safe alphabet");
	unit_check(out[0] == 0xfb && out[1] == 0xff && out[2] == 0xbf, "URL-safe bytes");
	unit_check_int(partoo_base64_decode("+/+/", 4, out, sizeof(out)), 3, "standard alphabet");
	unit_check(out[0] == 0xfb && out[1] == 0xff && out[2] == 0xbf, "standard bytes");
	unit_check_int(partoo_base64_decode("aGVsbG8*", 8, out, sizeof(out)), -1, "bad character");
	unit_check_int(partoo_base64_decode("aGV sbG8=", 9, out, sizeof(out)), -1, "inner space");
	unit_check_int(partoo_base64_decode("aGVsbG8==", 9, out, sizeof(out)), -1, "too much padding");
	unit_check_int(partoo_base64_decode("a", 1, out, sizeof(out)), -1, "one character");
	unit_check_int(partoo_base64_decode("aGVsbG9=", 8, out, sizeof(out)), -1,
				   "non-zero unused bits");
	unit_check_int(partoo_base64_decode("", 0, out, sizeof(out)), -1, "empty");
	unit_check_int(partoo_base64_decode("====", 4, out, sizeof(out)), -1, "only padding");
	unit_check_int(partoo_base64_decode("aGVsbG8=", 8, out, 4), -1, "does not fit");
	unit_check_int(partoo_base64_decode("aGVsbG8=", 8, out, 5), 5, "fits exactly");
}

static void
test_status_rules(void)
{
	static const struct
	{
		PartooStatus cur;
		bool		retried;
		PartooStatus in;
		PartooVerdict want;
	}			cases[] = {
		{PARTOO_STATUS_UNKNOWN, false, PARTOO_STATUS_SENDING, PARTOO_VERDICT_APPLY},
		{PARTOO_STATUS_UNKNOWN, false, PARTOO_STATUS_FAILED, PARTOO_VERDICT_APPLY},
		{PARTOO_STATUS_SENDING, false, PARTOO_STATUS_SENDING, PARTOO_VERDICT_CONFIRM},
		{PARTOO_STATUS_SENDING, true, PARTOO_STATUS_SENDING, PARTOO_VERDICT_APPLY},
		{PARTOO_STATUS_SENDING, false, PARTOO_STATUS_SUCCESS, PARTOO_VERDICT_APPLY},
		{PARTOO_STATUS_SENDING, false, PARTOO_STATUS_FAILED, PARTOO_VERDICT_APPLY},
		{PARTOO_STATUS_SUCCESS, false, PARTOO_STATUS_SENDING, PARTOO_VERDICT_STALE},
		{PARTOO_STATUS_SUCCESS, true, PARTOO_STATUS_SENDING, PARTOO_VERDICT_APPLY},
		{PARTOO_STATUS_SUCCESS, false, PARTOO_STATUS_SUCCESS, PARTOO_VERDICT_CONFIRM},
		{PARTOO_STATUS_SUCCESS, false, PARTOO_STATUS_FAILED, PARTOO_VERDICT_STALE},
		{PARTOO_STATUS_SUCCESS, true, PARTOO_STATUS_FAILED, PARTOO_VERDICT_APPLY},
		{PARTOO_STATUS_FAILED, false, PARTOO_STATUS_SENDING, PARTOO_VERDICT_STALE},
		{PARTOO_STATUS_FAILED, true, PARTOO_STATUS_SENDING, PARTOO_VERDICT_APPLY},
		{PARTOO_STATUS_FAILED, false, PARTOO_STATUS_FAILED, PARTOO_VERDICT_CONFIRM},
		{PARTOO_STATUS_FAILED, true, PARTOO_STATUS_FAILED, PARTOO_VERDICT_APPLY},
		{PARTOO_STATUS_FAILED, false, PARTOO_STATUS_SUCCESS, PARTOO_VERDICT_APPLY},
		{PARTOO_STATUS_SENDING, false, PARTOO_STATUS_UNKNOWN, PARTOO_VERDICT_STALE},
	};
	int			i;
	PartooStatusState st;
	bool		changed;
	uint64_t	rnd = 7;

	for (i = 0; i < (int) (sizeof(cases) / sizeof(cases[0])); i++)
	{
		PartooVerdict v;

		st.status = cases[i].cur;
		st.retried = cases[i].retried;
		st.is_deleted = false;
		v = partoo_status_apply(&st, cases[i].in, -1, &changed);
		unit_check(v == cases[i].want &&
				   st.status == (v == PARTOO_VERDICT_APPLY ? cases[i].in : cases[i].cur) &&
				   (v == PARTOO_VERDICT_APPLY ? !st.retried : st.retried == cases[i].retried) &&
				   !changed,
				   "%s%s -> %s: verdict %d",
				   cases[i].cur ? partoo_status_name(cases[i].cur) : "none",
				   cases[i].retried ? " (retried)" : "",
				   cases[i].in ? partoo_status_name(cases[i].in) : "unknown",
				   (int) cases[i].want);
	}

	/* is_deleted is sticky, whatever the verdict */
	st.status = PARTOO_STATUS_SUCCESS;
	st.retried = false;
	st.is_deleted = false;
	unit_check(partoo_status_apply(&st, PARTOO_STATUS_SENDING, 1, &changed) == PARTOO_VERDICT_STALE &&
			   changed && st.is_deleted, "is_deleted set by a stale event");
	unit_check(partoo_status_apply(&st, PARTOO_STATUS_SUCCESS, 0, &changed) == PARTOO_VERDICT_CONFIRM &&
			   !changed && st.is_deleted, "is_deleted false never undoes it");
	unit_check(partoo_status_apply(&st, PARTOO_STATUS_SUCCESS, 1, &changed) == PARTOO_VERDICT_CONFIRM &&
			   !changed, "is_deleted true again changes nothing");

	unit_check_str(partoo_status_local_state(PARTOO_STATUS_SENDING), "sent", "Sending is sent");
	unit_check_str(partoo_status_local_state(PARTOO_STATUS_SUCCESS), "delivered", "Success is delivered");
	unit_check_str(partoo_status_local_state(PARTOO_STATUS_FAILED), "failed", "Failed is failed");
	unit_check(partoo_status_local_state(PARTOO_STATUS_UNKNOWN) == NULL, "unknown has no state");
	unit_check(partoo_status_from_name("SUCCESS") == PARTOO_STATUS_SUCCESS &&
			   partoo_status_from_name("Successful") == PARTOO_STATUS_UNKNOWN &&
			   partoo_status_from_name(NULL) == PARTOO_STATUS_UNKNOWN, "status names");

	/*
	 * Within one attempt, any arrival order of a stream (with duplicates)
	 * ends in the state of the in-order stream.
	 */
	{
		static const PartooStatus streams[2][3] = {
			{PARTOO_STATUS_SENDING, PARTOO_STATUS_SUCCESS, PARTOO_STATUS_SUCCESS},
			{PARTOO_STATUS_SENDING, PARTOO_STATUS_SENDING, PARTOO_STATUS_FAILED},
		};
		static const int deleted[3] = {0, 0, 1};
		bool		ok = true;
		int			s,
					round;

		for (s = 0; s < 2; s++)
		{
			PartooStatusState want = {PARTOO_STATUS_UNKNOWN, false, false};

			for (i = 0; i < 3; i++)
				partoo_status_apply(&want, streams[s][i], deleted[i], &changed);
			for (round = 0; round < 500; round++)
			{
				int			order[6];
				int			n = 6;
				int			j;

				st.status = PARTOO_STATUS_UNKNOWN;
				st.retried = false;
				st.is_deleted = false;
				for (j = 0; j < 6; j++)
					order[j] = j % 3;
				for (j = n - 1; j > 0; j--)
				{
					int			k = (int) (next_random(&rnd) % (uint64_t) (j + 1));
					int			tmp = order[j];

					order[j] = order[k];
					order[k] = tmp;
				}
				for (j = 0; j < n; j++)
					partoo_status_apply(&st, streams[s][order[j]], deleted[order[j]], &changed);
				if (st.status != want.status || st.is_deleted != want.is_deleted)
					ok = false;
			}
		}
		unit_check(ok, "1000 shuffled Partoo streams end in the in-order state");
	}
}

static void
test_dispatch_rules(void)
{
	PartooDispatchOrder a = {1000, 1, PARTOO_DS_DELIVERED, "DELIVERED"};
	PartooDispatchOrder b = a;
	PartooDispatchStatus st[4];
	int32_t		parts[4] = {1, 2, 3, 4};
	uint64_t	rnd = 11;

	unit_check(partoo_dispatch_order_cmp(&a, &b) == 0, "equal keys");
	b.status_date = 1001;
	unit_check(partoo_dispatch_order_cmp(&a, &b) < 0, "later statusDate is newer");
	b.status_date = 999;
	b.status_order = 100;
	unit_check(partoo_dispatch_order_cmp(&a, &b) > 0, "statusDate decides before statusOrder");
	b.status_date = 1000;
	b.status_order = 2;
	unit_check(partoo_dispatch_order_cmp(&a, &b) < 0, "same date: higher statusOrder is newer");
	b.status_order = 1;
	b.status = PARTOO_DS_READ;
	b.status_raw = "READ";
	unit_check(partoo_dispatch_order_cmp(&a, &b) < 0, "same key: READ ranks above DELIVERED");
	b.status = PARTOO_DS_OTHER;
	b.status_raw = "SENT";
	unit_check(partoo_dispatch_order_cmp(&a, &b) > 0, "same key: an unknown status ranks lowest");
	a.status = PARTOO_DS_OTHER;
	a.status_raw = "QUEUED";
	unit_check(partoo_dispatch_order_cmp(&a, &b) < 0, "two unknown statuses: by text");
	a.status_raw = NULL;
	unit_check(partoo_dispatch_order_cmp(&a, &b) < 0 && partoo_dispatch_order_cmp(&b, &a) > 0,
			   "NULL status text sorts first");

	st[0] = PARTOO_DS_DELIVERED;
	st[1] = PARTOO_DS_DELIVERED;
	unit_check_str(partoo_dispatch_state(st, parts, 2, 3), "sent", "2 of 3 parts delivered: sent");
	st[2] = PARTOO_DS_DELIVERED;
	unit_check_str(partoo_dispatch_state(st, parts, 3, 3), "delivered", "3 of 3 delivered");
	st[2] = PARTOO_DS_READ;
	unit_check_str(partoo_dispatch_state(st, parts, 3, 3), "read", "a part read: read");
	st[1] = PARTOO_DS_NOSENT;
	unit_check_str(partoo_dispatch_state(st, parts, 3, 3), "failed", "a part NOSENT: failed");
	st[1] = PARTOO_DS_FAILED;
	unit_check_str(partoo_dispatch_state(st, parts, 1, 3), "sent", "only part 1 known");
	unit_check_str(partoo_dispatch_state(st, parts, 2, 3), "failed", "a part FAILED: failed");
	st[0] = PARTOO_DS_OTHER;
	unit_check_str(partoo_dispatch_state(st, parts, 1, 1), "sent", "unknown status: sent");
	unit_check_str(partoo_dispatch_state(st, parts, 0, 1), "sent", "no part: sent");
	{
		int32_t		far[2] = {1, 7};
		PartooDispatchStatus d2[2] = {PARTOO_DS_DELIVERED, PARTOO_DS_DELIVERED};

		unit_check_str(partoo_dispatch_state(d2, far, 2, 2), "sent",
					   "a part outside 1..total does not count");
	}

	/*
	 * Shuffled notifications for 3 parts, with duplicates: the newest
	 * status of each part, and so the message state, never depends on
	 * the arrival order.
	 */
	{
		PartooDispatchOrder ev[12];
		int			part_of[12];
		int			ref[4] = {-1, -1, -1, -1};
		bool		ok = true;
		int			round,
					i;

		for (i = 0; i < 12; i++)
		{
			part_of[i] = i % 3 + 1;
			ev[i].status_date = 1000 + (int64_t) (next_random(&rnd) % 4);
			ev[i].status_order = (int32_t) (next_random(&rnd) % 3);
			ev[i].status = (PartooDispatchStatus) (next_random(&rnd) % 5);
			ev[i].status_raw = ev[i].status == PARTOO_DS_OTHER ? "SENT" :
				ev[i].status == PARTOO_DS_DELIVERED ? "DELIVERED" :
				ev[i].status == PARTOO_DS_READ ? "READ" :
				ev[i].status == PARTOO_DS_NOSENT ? "NOSENT" : "FAILED";
		}
		for (i = 0; i < 12; i++)
			if (ref[part_of[i]] < 0 ||
				partoo_dispatch_order_cmp(&ev[i], &ev[ref[part_of[i]]]) > 0)
				ref[part_of[i]] = i;
		for (round = 0; round < 500 && ok; round++)
		{
			int			order[12];
			int			have[4] = {-1, -1, -1, -1};
			int			j;

			for (j = 0; j < 12; j++)
				order[j] = j;
			for (j = 11; j > 0; j--)
			{
				int			k = (int) (next_random(&rnd) % (uint64_t) (j + 1));
				int			tmp = order[j];

				order[j] = order[k];
				order[k] = tmp;
			}
			for (j = 0; j < 12; j++)
			{
				int			e = order[j];
				int			p = part_of[e];

				if (have[p] < 0 || partoo_dispatch_order_cmp(&ev[e], &ev[have[p]]) > 0)
					have[p] = e;
			}
			for (j = 1; j <= 3; j++)
				if (partoo_dispatch_order_cmp(&ev[have[j]], &ev[ref[j]]) != 0)
					ok = false;
		}
		unit_check(ok, "500 shuffled dispatch streams keep the same newest status per part");
	}
}

/* Generate an Ed25519 key pair; *spki gets the public key as base64 SPKI */
static EVP_PKEY *
make_key(char *spki, size_t spkilen)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
	EVP_PKEY   *pkey = NULL;
	unsigned char *der = NULL;
	int			n;

	if (ctx == NULL || EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_keygen(ctx, &pkey) != 1)
	{
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	EVP_PKEY_CTX_free(ctx);
	n = i2d_PUBKEY(pkey, &der);
	if (n <= 0 || (size_t) (4 * ((n + 2) / 3) + 1) > spkilen)
	{
		EVP_PKEY_free(pkey);
		OPENSSL_free(der);
		return NULL;
	}
	EVP_EncodeBlock((unsigned char *) spki, der, n);
	OPENSSL_free(der);
	return pkey;
}

/* Sign body with pkey; the base64 signature goes into out */
static void
sign_body(EVP_PKEY *pkey, const char *body, char *out)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sig[64];
	size_t		siglen = sizeof(sig);

	EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey);
	EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *) body, strlen(body));
	EVP_MD_CTX_free(ctx);
	EVP_EncodeBlock((unsigned char *) out, sig, (int) siglen);
}

static void
test_signatures(void)
{
	char		spki[128];
	char		spki2[128];
	char		sig[128];
	char		errbuf[256];
	const char *body = PARTOO_EXAMPLE("message_updated", "Success", "false", "User");
	EVP_PKEY   *pkey = make_key(spki, sizeof(spki));
	EVP_PKEY   *other = make_key(spki2, sizeof(spki2));
	PartooPublicKey *key;
	PartooPublicKey *key2;
	char	   *tampered;
	size_t		n;

	if (!unit_check(pkey != NULL && other != NULL, "test key pairs generated"))
		return;
	key = partoo_public_key_load(spki, errbuf, sizeof(errbuf));
	key2 = partoo_public_key_load(spki2, errbuf, sizeof(errbuf));
	unit_check(key != NULL && key2 != NULL, "generated public keys load");
	sign_body(pkey, body, sig);

	unit_check_int(partoo_signature_verify(key, sig, strlen(sig), body, strlen(body)),
				   PARTOO_SIG_VALID, "valid signature verifies");
	n = strlen(sig);
	while (n > 0 && sig[n - 1] == '=')
		n--;
	unit_check_int(partoo_signature_verify(key, sig, n, body, strlen(body)),
				   PARTOO_SIG_VALID, "valid signature without padding verifies");
	unit_check_int(partoo_signature_verify(key2, sig, strlen(sig), body, strlen(body)),
				   PARTOO_SIG_INVALID, "another key: invalid");
	tampered = strdup(body);
	tampered[strlen(tampered) - 5] = '4';
	unit_check_int(partoo_signature_verify(key, sig, strlen(sig), tampered, strlen(tampered)),
				   PARTOO_SIG_INVALID, "tampered body: invalid");
	free(tampered);
	unit_check_int(partoo_signature_verify(key, sig, strlen(sig), body, strlen(body) - 1),
				   PARTOO_SIG_INVALID, "truncated body: invalid");
	sig[10] = sig[10] == 'A' ? 'B' : 'A';
	unit_check_int(partoo_signature_verify(key, sig, strlen(sig), body, strlen(body)),
				   PARTOO_SIG_INVALID, "altered signature: invalid");
	unit_check_int(partoo_signature_verify(key, "not base64!", 11, body, strlen(body)),
				   PARTOO_SIG_MALFORMED, "not base64: malformed");
	unit_check_int(partoo_signature_verify(key, "aGVsbG8=", 8, body, strlen(body)),
				   PARTOO_SIG_MALFORMED, "5 bytes: malformed");
	unit_check_int(partoo_signature_verify(key, "", 0, body, strlen(body)),
				   PARTOO_SIG_MALFORMED, "empty: malformed");
	unit_check_int(partoo_signature_verify(NULL, sig, strlen(sig), body, strlen(body)),
				   PARTOO_SIG_MALFORMED, "no key: malformed");
	sign_body(pkey, "", sig);
	unit_check_int(partoo_signature_verify(key, sig, strlen(sig), "", 0),
				   PARTOO_SIG_VALID, "signature of an empty body");

	partoo_public_key_free(key);
	partoo_public_key_free(key2);
	EVP_PKEY_free(pkey);
	EVP_PKEY_free(other);

	key = partoo_public_key_load(PRODUCTION_KEY, errbuf, sizeof(errbuf));
	unit_check(key != NULL, "Partoo's production key loads");
	partoo_public_key_free(key);
	key = partoo_public_key_load(SANDBOX_KEY, errbuf, sizeof(errbuf));
	unit_check(key != NULL, "Partoo's sandbox key loads");
	partoo_public_key_free(key);

	key = partoo_public_key_load("", errbuf, sizeof(errbuf));
	unit_check(key == NULL && errbuf[0] != '\0', "empty key refused");
	key = partoo_public_key_load("%%%", errbuf, sizeof(errbuf));
	unit_check(key == NULL && strstr(errbuf, "base64") != NULL, "non-base64 key refused");
	key = partoo_public_key_load("aGVsbG8=", errbuf, sizeof(errbuf));
	unit_check(key == NULL && strstr(errbuf, "SubjectPublicKeyInfo") != NULL,
			   "non-DER key refused");
	/* an X25519 key: SPKI, but for key agreement, not Ed25519 */
	{
		EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
		EVP_PKEY   *x = NULL;
		unsigned char *der = NULL;
		int			dlen;

		EVP_PKEY_keygen_init(ctx);
		EVP_PKEY_keygen(ctx, &x);
		EVP_PKEY_CTX_free(ctx);
		dlen = i2d_PUBKEY(x, &der);
		EVP_EncodeBlock((unsigned char *) spki2, der, dlen);
		OPENSSL_free(der);
		EVP_PKEY_free(x);
		key = partoo_public_key_load(spki2, errbuf, sizeof(errbuf));
		unit_check(key == NULL && strstr(errbuf, "Ed25519") != NULL, "X25519 key refused");
		partoo_public_key_free(key);
	}
	/* trailing bytes after the DER */
	key = partoo_public_key_load("MCowBQYDK2VwAyEA0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIwZWBQA",
								 errbuf, sizeof(errbuf));
	unit_check(key == NULL, "trailing bytes after the key refused");
	unit_check(strstr(errbuf, "MCow") == NULL, "errors never repeat the key");

	unit_check(partoo_secret_equal("s3cret", 6, "s3cret", 6), "same secret");
	unit_check(!partoo_secret_equal("s3cret", 6, "s3creT", 6), "different secret");
	unit_check(!partoo_secret_equal("s3cre", 5, "s3cret", 6), "prefix is not equal");
	unit_check(!partoo_secret_equal("s3cret!", 7, "s3cret", 6), "longer is not equal");
	unit_check(!partoo_secret_equal("", 0, "", 0), "empty expected never matches");
	unit_check(!partoo_secret_equal(NULL, 0, "x", 1), "NULL given never matches");
}

/* Mutated payloads: never a crash, always an event or a filled error */
static void
test_mutations(void)
{
	const char *seeds[] = {
		PARTOO_EXAMPLE("message_updated", "Success", "false", "User"),
		DISPATCH_EXAMPLE,
	};
	uint64_t	rnd = 99;
	bool		ok = true;
	int			round;

	for (round = 0; round < 20000; round++)
	{
		const char *seed = seeds[round % 2];
		size_t		len = strlen(seed);
		char	   *buf = malloc(len + 1);
		int			edits = 1 + (int) (next_random(&rnd) % 4);
		PartooWebhookError err;
		PartooWebhookEvent *ev;
		int			e;

		memcpy(buf, seed, len + 1);
		for (e = 0; e < edits; e++)
		{
			size_t		at = (size_t) (next_random(&rnd) % len);

			switch (next_random(&rnd) % 3)
			{
				case 0:
					buf[at] = (char) (next_random(&rnd) % 256);
					break;
				case 1:
					len = at;	/* truncate */
					break;
				default:
					buf[at] = "{}[]\":,0-9\\ eE.tfn"[next_random(&rnd) % 19];
					break;
			}
			if (len == 0)
				len = 1;
		}
		ev = partoo_webhook_parse(buf, len, 0, &err);
		if (ev == NULL ? (err.kind == PARTOO_WHE_NONE || err.message[0] == '\0') :
			(ev->dedup_key == NULL || err.kind != PARTOO_WHE_NONE))
			ok = false;
		partoo_webhook_event_free(ev);
		free(buf);
	}
	unit_check(ok, "20000 mutated payloads: an event or a reason, never both");
}

/*
 * The steps of partoo_webhook_parse() one by one, and is_deleted read back
 * from a stored dedup key (what pending events are applied from).
 */
static void
test_steps_and_keys(void)
{
	static const char *const bodies[] = {
		PARTOO_EXAMPLE("message_updated", "Success", "false", "User"),
		PARTOO_EXAMPLE("message_created", "Sending", "true", "Bot"),
		"{\"type\": \"message_updated\", \"payload\": {\"message\": {\"id\": 9, \"status\": \"Failed\"}}}",
		DISPATCH_EXAMPLE
	};
	PartooWebhookError err;
	struct cJSON *root;
	PartooWebhookEvent *ev;
	PartooWebhookEvent *whole;
	int			d;
	int			i;

	for (i = 0; i < (int) (sizeof(bodies) / sizeof(bodies[0])); i++)
	{
		const char *b = bodies[i];
		bool		partoo;

		root = partoo_webhook_json_open(b, strlen(b), 0, &err);
		if (!unit_check(root != NULL, "body %d opens", i))
			continue;
		partoo = partoo_webhook_is_partoo(root);
		unit_check(partoo != partoo_webhook_is_dispatch(root),
				   "body %d is recognised as exactly one format", i);
		ev = partoo ? partoo_webhook_parse_partoo(root, b, strlen(b), &err) :
			partoo_webhook_parse_dispatch(root, b, strlen(b), &err);
		partoo_webhook_json_free(root);
		whole = partoo_webhook_parse(b, strlen(b), 0, &err);
		unit_check(ev != NULL && whole != NULL &&
				   strcmp(ev->dedup_key, whole->dedup_key) == 0 &&
				   ev->source == whole->source,
				   "body %d: the steps give what partoo_webhook_parse gives", i);
		if (ev != NULL && partoo)
		{
			d = 7;
			unit_check(partoo_webhook_key_is_deleted(ev->dedup_key, &d) &&
					   d == ev->is_deleted,
					   "body %d: is_deleted read back from its key", i);
		}
		partoo_webhook_event_free(ev);
		partoo_webhook_event_free(whole);
	}

	root = partoo_webhook_json_open("{\"a\": 1}", 8, 0, &err);
	unit_check(root != NULL && !partoo_webhook_is_partoo(root) &&
			   !partoo_webhook_is_dispatch(root) &&
			   partoo_webhook_json_has(root, "a"), "an object of no format");
	partoo_webhook_json_free(root);
	unit_check(partoo_webhook_json_open("[1]", 3, 0, &err) == NULL &&
			   err.kind == PARTOO_WHE_INVALID, "an array is refused before recognition");
	unit_check(partoo_webhook_json_open("{\"a\": 1}", 8, 4, &err) == NULL &&
			   err.kind == PARTOO_WHE_TOO_LARGE, "the size is checked first");

	d = 7;
	unit_check(partoo_webhook_key_is_deleted("partoo/message_updated/1/Success/t", &d) && d == 1,
			   "key: deleted");
	unit_check(partoo_webhook_key_is_deleted("partoo/message_created/1/Sending/f", &d) && d == 0,
			   "key: not deleted");
	unit_check(partoo_webhook_key_is_deleted("partoo/message_updated/1/Failed/-", &d) && d == -1,
			   "key: is_deleted absent");
	unit_check(partoo_webhook_key_is_deleted("partoo/message_updated/1/Success/t/r818035200000000", &d) &&
			   d == 1, "key with a retry suffix");
	unit_check(partoo_webhook_key_is_deleted("partoo/message_updated/1/Success/-/r-5", &d) &&
			   d == -1, "key with a retry suffix before 2000");
	d = 7;
	unit_check(!partoo_webhook_key_is_deleted("partoo/ignored/00ff", &d) &&
			   !partoo_webhook_key_is_deleted("dispatch/3:d-1/2:+3/1/x/0/4:READ", &d) &&
			   !partoo_webhook_key_is_deleted("partoo/message_updated/1/Success/x", &d) &&
			   !partoo_webhook_key_is_deleted("partoo/message_updated/1/Success/t/r", &d) &&
			   !partoo_webhook_key_is_deleted("partoo/message_updated/1/Success/t/7", &d) &&
			   !partoo_webhook_key_is_deleted("partoo/1/Success/t", &d) &&
			   !partoo_webhook_key_is_deleted("", &d) &&
			   !partoo_webhook_key_is_deleted(NULL, &d) && d == 7,
			   "other strings are not Partoo status keys");
}

int
main(void)
{
	unit_note("webhook parsing, ordering rules and signatures");
	test_partoo_format();
	test_dispatch_format();
	test_malformed();
	test_dates();
	test_base64();
	test_status_rules();
	test_dispatch_rules();
	test_signatures();
	test_mutations();
	test_steps_and_keys();
	return unit_done();
}
