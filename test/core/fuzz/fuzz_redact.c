/*-------------------------------------------------------------------------
 *
 * fuzz_redact.c
 *		libFuzzer target: the log redactor (src/core/redact.c).
 *
 * The input is a few settings and a text: whether partoo is on the search
 * path, whether the text is the DETAIL of an error on partoo.accounts
 * (row values), a current key value of 6 to 21 digits and where to plant
 * it in the text.  Digits only, because the marker holds none: the key
 * can then be in the output only if it survived from the input, never by
 * the marker and its neighbours happening to spell it.  Checked:
 *
 * - a text holding the key mentions a key, and its redaction never holds it;
 * - measuring (no buffer), writing and writing into a short buffer agree
 *   on the length and the bytes, and the output is NUL-terminated;
 * - nothing redacted means the output is the input (the converse need not
 *   hold: a comment may already read "[redacted]");
 * - the redactor reads nothing outside the text (ASan).
 *
 * test/core/fuzz/fuzz_redact.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/redact.h"
#include "reader.h"

#include <stdbool.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TEXT (64 * 1024)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzReader	r;
	PartooRedactor red;
	uint8_t		opts;
	char		secret[24];
	size_t		secret_len;
	size_t		plant_at;
	const uint8_t *rest;
	size_t		rest_len;
	char	   *text;
	size_t		text_len;
	size_t		i;
	size_t		len;
	size_t		len2;
	size_t		len3;
	char	   *out;
	char		small[8];
	int			flags;
	int			n1,
				n2,
				n3;

	fr_init(&r, data, size);
	opts = fr_u8(&r);
	flags = (opts & 1) ? PARTOO_REDACT_ROW_VALUES : 0;
	partoo_redactor_init(&red, (opts & 2) != 0);

	secret_len = 6 + fr_u8(&r) % 16;
	for (i = 0; i < secret_len; i++)
		secret[i] = '0' + fr_u8(&r) % 10;
	secret[secret_len] = '\0';
	if (opts & 4)
		partoo_redactor_add_secret(&red, secret);
	plant_at = (size_t) fr_uint(&r, 2);

	/* the text: the rest of the input cut at its first NUL, key planted */
	rest_len = fr_bytes(&r, MAX_TEXT, &rest);
	for (i = 0; i < rest_len && rest[i] != 0; i++)
		;
	rest_len = i;
	text = malloc(rest_len + secret_len + 1);
	if (text == NULL)
		abort();
	if (plant_at > rest_len)
		plant_at = rest_len;
	memcpy(text, rest, plant_at);
	text_len = plant_at;
	if (opts & 4)
	{
		memcpy(text + text_len, secret, secret_len);
		text_len += secret_len;
	}
	memcpy(text + text_len, rest + plant_at, rest_len - plant_at);
	text_len += rest_len - plant_at;
	text[text_len] = '\0';

	if (opts & 4)
		FUZZ_ASSERT(partoo_redact_mentions(&red, text));
	else
		(void) partoo_redact_mentions(&red, text);

	len = partoo_redact(&red, text, flags, NULL, 0, &n1);
	out = malloc(len + 1);
	if (out == NULL)
		abort();
	len2 = partoo_redact(&red, text, flags, out, len + 1, &n2);
	FUZZ_ASSERT(len2 == len && n2 == n1);
	FUZZ_ASSERT(strlen(out) == len);
	FUZZ_ASSERT(n1 > 0 || (len == text_len && memcmp(out, text, len) == 0));
	if (opts & 4)
		FUZZ_ASSERT(strstr(out, secret) == NULL);

	memset(small, 'x', sizeof(small));
	len3 = partoo_redact(&red, text, flags, small, sizeof(small), &n3);
	FUZZ_ASSERT(len3 == len && n3 == n1);
	FUZZ_ASSERT(strlen(small) == (len < sizeof(small) ? len : sizeof(small) - 1));
	FUZZ_ASSERT(strncmp(small, out, sizeof(small) - 1) == 0);

	free(out);
	free(text);
	return 0;
}
