/*-------------------------------------------------------------------------
 *
 * curl_loop.c
 *		Baseline of the partoo benchmark's synchronous-send scenario
 *		(test/bench/run.sh, scenario 6): the same POST /messages requests
 *		partoo_send() makes, from a plain libcurl loop that reuses one easy
 *		handle and so one keep-alive connection.
 *
 *	usage: curl_loop BASE_URL API_KEY COUNT PREFIX [CONVERSATION]
 *	output (stdout): "requests=N ok=N seconds=S per_second=R"
 *
 * Message i has the Text content "PREFIX-i" and the current time as its
 * date, like a message partoo_send() builds.  Each response is checked for
 * HTTP 200; the exit status is 1 if any request failed.
 *
 * test/bench/curl_loop.c
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

typedef struct Buf
{
	char		data[4096];
	size_t		len;
} Buf;

/* Keep the start of the response, like a client that parses it would */
static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	Buf		   *b = userdata;
	size_t		n = size * nmemb;
	size_t		room = sizeof(b->data) - 1 - b->len;
	size_t		take = n < room ? n : room;

	memcpy(b->data + b->len, ptr, take);
	b->len += take;
	b->data[b->len] = '\0';
	return n;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	CURL	   *easy;
	struct curl_slist *h = NULL;
	char		url[1024];
	char		auth[512];
	const char *prefix;
	const char *conversation;
	long		count;
	long		i;
	long		ok = 0;
	double		t0;
	double		elapsed;
	Buf			buf;

	if (argc < 5 || argc > 6)
	{
		fprintf(stderr, "usage: %s BASE_URL API_KEY COUNT PREFIX [CONVERSATION]\n", argv[0]);
		return 2;
	}
	snprintf(url, sizeof(url), "%s/messages", argv[1]);
	snprintf(auth, sizeof(auth), "x-APIKey: %s", argv[2]);
	count = atol(argv[3]);
	prefix = argv[4];
	conversation = argc == 6 ? argv[5] : "12345";

	curl_global_init(CURL_GLOBAL_ALL);
	easy = curl_easy_init();
	if (easy == NULL)
		return 1;
	h = curl_slist_append(h, auth);
	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, "Accept: application/json");
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &buf);

	t0 = now_s();
	for (i = 0; i < count; i++)
	{
		char		body[512];
		char		date[64];
		struct timespec ts;
		struct tm	tm;
		long		status = 0;
		CURLcode	rc;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(date, 32, "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(date + strlen(date), sizeof(date) - strlen(date), ".%06ldZ",
				 (long) (ts.tv_nsec / 1000));
		snprintf(body, sizeof(body),
				 "{\"conversation_id\":%s,\"content_type\":\"Text\","
				 "\"content\":\"%s-%ld\",\"date\":\"%s\"}",
				 conversation, prefix, i, date);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
		buf.len = 0;
		buf.data[0] = '\0';
		rc = curl_easy_perform(easy);
		if (rc == CURLE_OK)
			curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
		if (rc == CURLE_OK && status == 200 && strstr(buf.data, "\"message_id\"") != NULL)
			ok++;
		else if (i - ok < 5)
			fprintf(stderr, "curl_loop: request %ld: %s, HTTP %ld: %.200s\n", i,
					curl_easy_strerror(rc), status, buf.data);
	}
	elapsed = now_s() - t0;

	printf("requests=%ld ok=%ld seconds=%.6f per_second=%.1f\n",
		   count, ok, elapsed, elapsed > 0 ? count / elapsed : 0.0);
	curl_slist_free_all(h);
	curl_easy_cleanup(easy);
	curl_global_cleanup();
	return ok == count ? 0 : 1;
}
