/*-------------------------------------------------------------------------
 *
 * fuzz_webhook.c
 *		libFuzzer target: webhook bodies in both formats, and signatures.
 *
 * The input is a webhook body of any bytes.  Then:
 *
 * - partoo_webhook_parse() returns an event or a reason, never both and
 *   never neither; the reason is PostgreSQL-style (lower-case message
 *   without a final period, a detail sentence) and printable ASCII, so it
 *   cannot carry the untrusted body into an error; the event is
 *   consistent with its format (ids, parts, keys);
 * - parsing is deterministic, and insensitive to whitespace: the same
 *   body with whitespace added between its tokens parses to the same
 *   event and the same duplicate-recognition key;
 * - a refused body stays refused with a size limit; a body over the limit
 *   is refused as too large;
 * - an Ed25519 signature of the body, made here, verifies; with one bit
 *   of the body flipped it does not; the body used as a signature, a
 *   public key or a secret never crashes and never verifies by accident;
 * - the ordering rules keep is_deleted sticky and never let a final
 *   status go back to Sending without a retry.
 *
 * A violated invariant calls __builtin_trap(), which libFuzzer reports as
 * a crash and saves.  Builds against the protocol core only (see
 * test/core/fuzz/run.sh for the usual command).
 *
 * test/core/fuzz/fuzz_webhook.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/message.h"
#include "core/signature.h"
#include "core/webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond) \
	do { \
		if (!(cond)) \
			__builtin_trap(); \
	} while (0)

/* A fixed Ed25519 key pair, made once from a constant seed */
static EVP_PKEY *signing_key;
static PartooPublicKey *public_key;

static void
init_keys(void)
{
	static const unsigned char seed[32] = "partoo fuzz webhook signing key";
	unsigned char *der = NULL;
	unsigned char b64[128];
	int			n;
	char		errbuf[256];

	if (signing_key != NULL)
		return;
	signing_key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	FUZZ_ASSERT(signing_key != NULL);
	n = i2d_PUBKEY(signing_key, &der);
	FUZZ_ASSERT(n > 0 && n < 90);
	EVP_EncodeBlock(b64, der, n);
	OPENSSL_free(der);
	public_key = partoo_public_key_load((const char *) b64, errbuf, sizeof(errbuf));
	FUZZ_ASSERT(public_key != NULL);
}

/* Printable ASCII, non-empty */
static bool
printable(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if ((unsigned char) *s < 0x20 || (unsigned char) *s > 0x7e)
			return false;
	return true;
}

static void
check_error(const PartooWebhookError *err)
{
	size_t		m = strlen(err->message);
	size_t		d = strlen(err->detail);

	FUZZ_ASSERT(err->kind > PARTOO_WHE_NONE && err->kind <= PARTOO_WHE_NO_MEMORY);
	FUZZ_ASSERT(printable(err->message) && printable(err->detail));
	FUZZ_ASSERT(err->message[0] >= 'a' && err->message[0] <= 'z');
	FUZZ_ASSERT(err->message[m - 1] != '.');
	FUZZ_ASSERT(err->detail[0] >= 'A' && err->detail[0] <= 'Z');
	FUZZ_ASSERT(err->detail[d - 1] == '.');
}

static void
check_event(const PartooWebhookEvent *ev)
{
	FUZZ_ASSERT(ev->dedup_key != NULL && ev->dedup_key[0] != '\0');
	if (ev->source == PARTOO_SOURCE_PARTOO)
	{
		FUZZ_ASSERT(ev->event_type != NULL);
		FUZZ_ASSERT(ev->is_deleted >= -1 && ev->is_deleted <= 1);
		if (ev->concerns_status)
		{
			char		prefix[64];

			FUZZ_ASSERT(ev->partoo_id >= 1);
			FUZZ_ASSERT(ev->status > PARTOO_STATUS_UNKNOWN && ev->status <= PARTOO_STATUS_FAILED);
			FUZZ_ASSERT(partoo_status_local_state(ev->status) != NULL);
			snprintf(prefix, sizeof(prefix), "partoo/%s/", ev->event_type);
			FUZZ_ASSERT(strncmp(ev->dedup_key, prefix, strlen(prefix)) == 0);
		}
		else
			FUZZ_ASSERT(strncmp(ev->dedup_key, "partoo/ignored/", 15) == 0 &&
						strlen(ev->dedup_key) == 15 + 64);
	}
	else
	{
		FUZZ_ASSERT(ev->source == PARTOO_SOURCE_DISPATCH);
		FUZZ_ASSERT(ev->concerns_status && ev->has_event_at);
		FUZZ_ASSERT(ev->dispatch_id != NULL && ev->dispatch_id[0] != '\0' &&
					strlen(ev->dispatch_id) <= PARTOO_WEBHOOK_FIELD_MAX_BYTES);
		FUZZ_ASSERT(ev->recipient != NULL && ev->recipient[0] != '\0' &&
					strlen(ev->recipient) <= PARTOO_WEBHOOK_FIELD_MAX_BYTES);
		FUZZ_ASSERT(ev->status_raw != NULL && ev->status_raw[0] != '\0');
		FUZZ_ASSERT(ev->part >= 1 && ev->part <= ev->total_parts);
		FUZZ_ASSERT(strncmp(ev->dedup_key, "dispatch/", 9) == 0);
		FUZZ_ASSERT(ev->order_key[0] != '\0' && strchr(ev->order_key, '#') != NULL);
	}
}

static bool
same_event(const PartooWebhookEvent *a, const PartooWebhookEvent *b)
{
	return a->source == b->source &&
		a->concerns_status == b->concerns_status &&
		strcmp(a->dedup_key, b->dedup_key) == 0 &&
		a->partoo_id == b->partoo_id &&
		a->status == b->status &&
		a->is_deleted == b->is_deleted &&
		a->has_event_at == b->has_event_at &&
		(!a->has_event_at || a->event_at == b->event_at) &&
		a->part == b->part &&
		a->total_parts == b->total_parts &&
		a->status_order == b->status_order;
}

/*
 * The same body spelled with more whitespace (after every structural
 * character outside strings, and around it all) parses to the same event
 * and the same key.  Only called for bodies that parsed, so valid JSON.
 */
static void
check_respelled(const uint8_t *data, size_t size, const PartooWebhookEvent *ev)
{
	static const char ws[4] = {' ', '\n', '\t', '\r'};
	char	   *spaced = malloc(2 * size + 4);
	size_t		n = 0;
	size_t		i;
	bool		in_string = false;
	PartooWebhookError err;
	PartooWebhookEvent *again;

	FUZZ_ASSERT(spaced != NULL);
	spaced[n++] = '\n';
	for (i = 0; i < size; i++)
	{
		char		c = (char) data[i];

		spaced[n++] = c;
		if (in_string)
		{
			if (c == '\\' && i + 1 < size)
				spaced[n++] = (char) data[++i];
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (strchr("{}[],:", c) != NULL)
			spaced[n++] = ws[i % 4];
	}
	spaced[n++] = ' ';
	again = partoo_webhook_parse(spaced, n, 0, &err);
	FUZZ_ASSERT(again != NULL);
	FUZZ_ASSERT(same_event(ev, again));
	partoo_webhook_event_free(again);
	free(spaced);
}

static void
check_signatures(const uint8_t *data, size_t size)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sig[64];
	size_t		siglen = sizeof(sig);
	char		sig64[100];
	uint8_t    *flipped;

	FUZZ_ASSERT(ctx != NULL);
	FUZZ_ASSERT(EVP_DigestSignInit(ctx, NULL, NULL, NULL, signing_key) == 1);
	FUZZ_ASSERT(EVP_DigestSign(ctx, sig, &siglen, size ? data : (const uint8_t *) "", size) == 1);
	EVP_MD_CTX_free(ctx);
	EVP_EncodeBlock((unsigned char *) sig64, sig, (int) siglen);

	FUZZ_ASSERT(partoo_signature_verify(public_key, sig64, strlen(sig64), data, size) ==
				PARTOO_SIG_VALID);
	if (size > 0)
	{
		flipped = malloc(size);
		FUZZ_ASSERT(flipped != NULL);
		memcpy(flipped, data, size);
		flipped[size / 2] ^= (uint8_t) (1 << (size % 8));
		FUZZ_ASSERT(partoo_signature_verify(public_key, sig64, strlen(sig64), flipped, size) ==
					PARTOO_SIG_INVALID);
		free(flipped);
	}
}

/* The input as a signature, a key, a secret, base64 and a date */
static void
check_as_strings(const uint8_t *data, size_t size)
{
	char	   *s = malloc(size + 1);
	unsigned char out[128];
	long		n;
	PartooSignatureResult r;
	PartooPublicKey *k;
	char		errbuf[256];
	int64_t		t;

	FUZZ_ASSERT(s != NULL);
	memcpy(s, data, size);
	s[size] = '\0';

	r = partoo_signature_verify(public_key, s, size, "body", 4);
	FUZZ_ASSERT(r == PARTOO_SIG_INVALID || r == PARTOO_SIG_MALFORMED);

	n = partoo_base64_decode(s, size, out, sizeof(out));
	FUZZ_ASSERT(n >= -1 && n <= (long) sizeof(out));

	k = partoo_public_key_load(s, errbuf, sizeof(errbuf));
	if (k == NULL)
		FUZZ_ASSERT(printable(errbuf));
	partoo_public_key_free(k);

	FUZZ_ASSERT(!partoo_secret_equal(s, size, "", 0));
	if (size > 0)
	{
		FUZZ_ASSERT(partoo_secret_equal(s, size, s, size));
		FUZZ_ASSERT(!partoo_secret_equal(s, size - 1, s, size));
	}

	if (partoo_parse_datetime(s, &t))
		FUZZ_ASSERT(t > INT64_C(-62200000000) * 1000000 && t < INT64_C(253402400000) * 1000000);
	free(s);
}

/* The ordering rules, driven by the input's bytes */
static void
check_rules(const uint8_t *data, size_t size)
{
	PartooStatusState st = {PARTOO_STATUS_UNKNOWN, false, false};
	PartooDispatchStatus statuses[8];
	int32_t		parts[8];
	size_t		i;
	int			n = 0;

	for (i = 0; i < size && i < 64; i++)
	{
		PartooStatus before = st.status;
		bool		was_deleted = st.is_deleted;
		bool		retried = st.retried;
		bool		changed;
		PartooVerdict v;

		if ((data[i] & 0x80) != 0)
		{
			st.retried = true;	/* a retry was recorded */
			continue;
		}
		v = partoo_status_apply(&st, (PartooStatus) (data[i] & 3),
								(int) ((data[i] >> 2) % 3) - 1, &changed);
		FUZZ_ASSERT(!was_deleted || st.is_deleted);
		FUZZ_ASSERT(changed == (!was_deleted && st.is_deleted));
		if (v != PARTOO_VERDICT_APPLY)
			FUZZ_ASSERT(st.status == before);
		if ((before == PARTOO_STATUS_SUCCESS || before == PARTOO_STATUS_FAILED) &&
			st.status == PARTOO_STATUS_SENDING)
			FUZZ_ASSERT(retried);
	}

	for (i = 0; i < size && n < 8; i++, n++)
	{
		statuses[n] = (PartooDispatchStatus) (data[i] % 5);
		parts[n] = n + 1;
	}
	(void) partoo_dispatch_state(statuses, parts, n, size > 0 ? data[0] % 10 : 1);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	PartooWebhookError err;
	PartooWebhookEvent *ev;
	PartooWebhookEvent *again;

	init_keys();

	ev = partoo_webhook_parse((const char *) data, size, 0, &err);
	if (ev == NULL)
		check_error(&err);
	else
	{
		FUZZ_ASSERT(err.kind == PARTOO_WHE_NONE);
		check_event(ev);
		check_respelled(data, size, ev);
	}

	/* deterministic */
	again = partoo_webhook_parse((const char *) data, size, 0, &err);
	FUZZ_ASSERT((ev == NULL) == (again == NULL));
	if (ev != NULL)
		FUZZ_ASSERT(same_event(ev, again));
	partoo_webhook_event_free(again);

	/* a size limit: too large above it, unchanged at or below it */
	if (size > 1)
	{
		again = partoo_webhook_parse((const char *) data, size, size - 1, &err);
		FUZZ_ASSERT(again == NULL && err.kind == PARTOO_WHE_TOO_LARGE);
		again = partoo_webhook_parse((const char *) data, size, size, &err);
		FUZZ_ASSERT((ev == NULL) == (again == NULL));
		partoo_webhook_event_free(again);
	}
	partoo_webhook_event_free(ev);

	/* signing costs more than parsing: every eighth input */
	if (size == 0 || (data[0] & 7) == 0)
		check_signatures(data, size);
	check_as_strings(data, size);
	check_rules(data, size);
	return 0;
}
