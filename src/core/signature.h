/*-------------------------------------------------------------------------
 *
 * signature.h
 *		Ed25519 webhook signatures and constant-time secret comparison
 *		(signature.c).
 *
 * Part of the protocol core (src/core/): plain C99 on top of libc, cJSON
 * and libcrypto, never postgres.h, so that it is unit-tested and fuzzed
 * without a server.  Memory handed out comes from malloc() and is released
 * with the matching *_free() function; nothing throws, nothing keeps
 * global state.
 *
 * src/core/signature.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_CORE_SIGNATURE_H
#define PARTOO_CORE_SIGNATURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Ed25519 signatures (signature.c, OpenSSL libcrypto).  A key is loaded
 * from base64 SubjectPublicKeyInfo DER, the form Partoo publishes
 * ("MCowBQYDK2VwAyEA..."); loading refuses anything but Ed25519.
 */
typedef struct PartooPublicKey PartooPublicKey;

typedef enum PartooSignatureResult
{
	PARTOO_SIG_VALID = 0,
	PARTOO_SIG_INVALID,			/* well-formed, does not verify */
	PARTOO_SIG_MALFORMED,		/* not base64 of 64 bytes */
	PARTOO_SIG_ERROR			/* libcrypto failed (out of memory) */
} PartooSignatureResult;

/* NULL with errbuf filled (a sentence, never the key) when unusable */
extern PartooPublicKey *partoo_public_key_load(const char *spki_base64,
											   char *errbuf, size_t errlen);
extern void partoo_public_key_free(PartooPublicKey *key);

/* Verify base64 signature sig (sig_len bytes) over body[0..len) */
extern PartooSignatureResult partoo_signature_verify(const PartooPublicKey *key,
													 const char *sig,
													 size_t sig_len,
													 const void *body,
													 size_t len);

/*
 * Compare a secret given by a caller with the expected one in constant
 * time: both are hashed (SHA-256) and the digests compared with
 * CRYPTO_memcmp, so neither the content nor the length of the expected
 * secret shows in the timing.  An empty expected secret never matches.
 */
extern bool partoo_secret_equal(const char *given, size_t given_len,
								const char *expected, size_t expected_len);

#endif							/* PARTOO_CORE_SIGNATURE_H */
