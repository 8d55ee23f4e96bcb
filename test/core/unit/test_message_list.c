/*-------------------------------------------------------------------------
 *
 * test_message_list.c
 *		Unit tests of GET /messages in the protocol core: the path of a
 *		page (query string, the cursor percent-encoded) and the answer
 *		parsed (strict on types, tolerant of unknown fields).
 *
 * test/core/unit/test_message_list.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/message_list.h"
#include "unit.h"

#include <stdlib.h>

static void
test_path(void)
{
	char		buf[PARTOO_LIST_PATH_BUFLEN];
	char		small[40];
	char		longc[PARTOO_LIST_CURSOR_MAX_BYTES + 2];
	int			n;

	n = partoo_path_list_messages(906, 100, NULL, buf, sizeof(buf));
	unit_check_str(buf, "/messages?conversation_id=906&per_page=100", "first page");
	unit_check_int(n, (int64_t) strlen(buf), "returns the length");
	partoo_path_list_messages(9007199254740993LL, 1, "djE6OTA2OjEwMDAwMDQ", buf, sizeof(buf));
	unit_check_str(buf, "/messages?conversation_id=9007199254740993&per_page=1&cursor=djE6OTA2OjEwMDAwMDQ",
				   "an id above 2^53 exactly, a base64url cursor as it is");
	partoo_path_list_messages(5, 20, "a+b/c=d&e f%~._-\xc3\xa9", buf, sizeof(buf));
	unit_check_str(buf, "/messages?conversation_id=5&per_page=20&cursor=a%2Bb%2Fc%3Dd%26e%20f%25~._-%C3%A9",
				   "reserved bytes and non-ASCII of the cursor are percent-encoded");
	unit_check_int(partoo_path_list_messages(0, 20, NULL, buf, sizeof(buf)), -1, "conversation_id 0 refused");
	unit_check_str(buf, "", "and the buffer is empty");
	unit_check_int(partoo_path_list_messages(-3, 20, NULL, buf, sizeof(buf)), -1, "negative conversation_id refused");
	unit_check_int(partoo_path_list_messages(1, 0, NULL, buf, sizeof(buf)), -1, "per_page 0 refused");
	unit_check_int(partoo_path_list_messages(1, 101, NULL, buf, sizeof(buf)), -1, "per_page 101 refused");
	unit_check_int(partoo_path_list_messages(1, 20, "", buf, sizeof(buf)), -1, "an empty cursor refused");
	memset(longc, 'a', sizeof(longc) - 1);
	longc[sizeof(longc) - 1] = '\0';
	unit_check_int(partoo_path_list_messages(1, 20, longc, buf, sizeof(buf)), -1, "a cursor too long refused");
	longc[PARTOO_LIST_CURSOR_MAX_BYTES] = '\0';
	memset(longc, 0xff, PARTOO_LIST_CURSOR_MAX_BYTES);
	n = partoo_path_list_messages(PARTOO_LIST_PER_PAGE_MAX, 100, longc, buf, sizeof(buf));
	unit_check(n > 0 && (size_t) n < sizeof(buf), "the longest cursor, all escaped, fits PARTOO_LIST_PATH_BUFLEN");
	unit_check_int(partoo_path_list_messages(1, 20, "abcdefghijklmnopqrstuvwxyz", small, sizeof(small)), -1,
				   "a buffer too small refused");
	unit_check_str(small, "", "and left empty");
	unit_check_int(partoo_path_list_messages(1, 20, NULL, NULL, 10), -1, "no buffer");
	unit_note("GET /messages: the path");
}

static int
parse(const char *body, PartooMessageList *l, char *err)
{
	return partoo_parse_message_list(body, body ? strlen(body) : 0, l, err, 200);
}

static void
test_parse_ok(void)
{
	PartooMessageList l;
	char		err[200];
	const char *mock =
		"{\"messages\":[{\"id\":1000005,\"conversation_id\":906,\"date\":\"2026-12-04 19:06:27.123456+00:00\","
		"\"content_type\":\"Text\",\"sender_type\":\"User\",\"status\":\"Success\",\"is_deleted\":false},"
		"{\"id\":1000004,\"status\":\"Sending\",\"new_field\":{\"x\":[1,2]}}],"
		"\"count\":5,\"next_cursor\":\"djE6OTA2OjEwMDAwMDQ\",\"unknown\":true}";

	unit_check_int(parse(mock, &l, err), 0, "the mock's answer parses");
	unit_check_int(l.n, 2, "two messages");
	unit_check_int(l.messages[0].id, 1000005, "first id");
	unit_check_str(l.messages[0].status, "Success", "first status");
	unit_check_int(l.messages[1].id, 1000004, "second id");
	unit_check_str(l.messages[1].status, "Sending", "second status, unknown fields ignored");
	unit_check(l.messages[1].json != NULL && strstr(l.messages[1].json, "\"new_field\":{\"x\":[1,2]}") != NULL,
			   "the message object is kept as compact JSON");
	unit_check(l.has_count && l.count == 5, "count");
	unit_check_str(l.next_cursor, "djE6OTA2OjEwMDAwMDQ", "next_cursor");
	partoo_message_list_free(&l);
	unit_check(l.messages == NULL && l.n == 0 && l.next_cursor == NULL, "free empties the list");

	unit_check_int(parse("{\"messages\":[],\"count\":0,\"next_cursor\":null}", &l, err), 0, "an empty page");
	unit_check(l.n == 0 && l.next_cursor == NULL && l.has_count && l.count == 0, "no messages, last page");
	partoo_message_list_free(&l);

	unit_check_int(parse(" {\"messages\":[{\"id\":7,\"status\":null},{\"id\":8.0}]}\n", &l, err), 0,
				   "status null or absent, count absent, whitespace around");
	unit_check(l.n == 2 && l.messages[0].status == NULL && l.messages[1].status == NULL &&
			   l.messages[1].id == 8 && !l.has_count && l.next_cursor == NULL,
			   "no status, no count, no cursor");
	partoo_message_list_free(&l);

	unit_check_int(parse("{\"messages\":[{\"id\":9007199254740992,\"status\":\"Unheard-of\"}]}", &l, err), 0,
				   "2^53 and an unknown status are accepted");
	unit_check_str(l.messages[0].status, "Unheard-of", "the status as received");
	partoo_message_list_free(&l);

	unit_check_int(parse("{\"messages\":[{\"id\":4942700126717281,\"n\":[{\"k\":-1234567890123456}],\"status\":\"Sending\"}]}",
						 &l, err), 0, "a 16-digit id");
	unit_check_str(l.messages[0].json,
				   "{\"id\":4942700126717281,\"n\":[{\"k\":-1234567890123456}],\"status\":\"Sending\"}",
				   "the JSON kept has every integer's exact digits, nested too");
	partoo_message_list_free(&l);
}

static void
test_parse_refused(void)
{
	static const struct
	{
		const char *body;
		const char *why;
	}			bad[] = {
		{"", "an empty body"},
		{"not json", "not JSON"},
		{"{\"messages\":[]} x", "trailing garbage"},
		{"[]", "an array"},
		{"{}", "no messages"},
		{"{\"messages\":null}", "messages null"},
		{"{\"messages\":{}}", "messages an object"},
		{"{\"messages\":[1]}", "an element not an object"},
		{"{\"messages\":[{\"status\":\"Success\"}]}", "no id"},
		{"{\"messages\":[{\"id\":\"1000001\",\"status\":\"Success\"}]}", "an id as a string"},
		{"{\"messages\":[{\"id\":0}]}", "id 0"},
		{"{\"messages\":[{\"id\":-5}]}", "a negative id"},
		{"{\"messages\":[{\"id\":1.5}]}", "a fractional id"},
		{"{\"messages\":[{\"id\":1e300}]}", "an id too large"},
		{"{\"messages\":[{\"id\":9007199254740994}]}", "an id above 2^53"},
		{"{\"messages\":[{\"id\":true}]}", "an id true"},
		{"{\"messages\":[{\"id\":1,\"status\":3}]}", "a status not a string"},
		{"{\"messages\":[{\"id\":1,\"status\":\"a\\nb\"}]}", "a status with a newline"},
		{"{\"messages\":[],\"count\":-1}", "a negative count"},
		{"{\"messages\":[],\"count\":\"5\"}", "a count as a string"},
		{"{\"messages\":[],\"next_cursor\":5}", "a cursor not a string"},
		{"{\"messages\":[],\"next_cursor\":\"\"}", "an empty cursor"},
		{"{\"messages\":[],\"next_cursor\":\"a b\\u0001\"}", "a cursor with a control character"},
		{"{\"messages\":[],\"next_cursor\":\"caf\xc3\xa9\"}", "a cursor not ASCII"},
		{"{\"messages\":[{\"id\":1,\"status\":\"\xff\"}]}", "invalid UTF-8"},
		{"{\"messages\":[{\"id\":1},{\"id\":2},{\"id\":\"x\"}]}", "a bad element after good ones"},
	};
	PartooMessageList l;
	char		err[200];
	char		withnul[] = "{\"messages\":[]}\0";
	size_t		i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		int			rc = parse(bad[i].body, &l, err);

		unit_check(rc == -1 && l.n == 0 && l.messages == NULL && err[0] != '\0',
				   "refused: %s (%s)", bad[i].why, err);
	}
	unit_check_int(partoo_parse_message_list(withnul, sizeof(withnul) - 1, &l, err, sizeof(err)), -1,
				   "refused: a NUL byte");
	unit_check_int(partoo_parse_message_list(NULL, 0, &l, err, sizeof(err)), -1, "refused: no body");
	unit_check_int(parse("{\"messages\":[{\"id\":1,\"status\":\"Success\",\"content\":\"secret-value\"},{\"id\":\"secret-value\"}]}",
						 &l, err), -1, "a page with one bad id is refused whole");
	unit_check(strstr(err, "secret-value") == NULL, "the error repeats no value from the body: %s", err);
	unit_check_int(partoo_parse_message_list("{\"messages\":[]}", 15, &l, NULL, 0), 0,
				   "no error buffer needed");
	partoo_message_list_free(&l);
	partoo_message_list_free(NULL);
}

int
main(void)
{
	test_path();
	test_parse_ok();
	test_parse_refused();
	return unit_done();
}
