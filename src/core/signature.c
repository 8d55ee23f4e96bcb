/*-------------------------------------------------------------------------
 *
 * signature.c
 *		Webhook authentication: Ed25519 signatures and shared secrets.
 *
 * Partoo signs each webhook body with Ed25519 and sends the base64
 * signature in X-Partoo-Signature-v1; the public key is published as
 * base64 SubjectPublicKeyInfo DER (production and sandbox keys differ).
 * The dispatch API authenticates with a shared API key in a header, which
 * is compared here in constant time.
 *
 * Plain C on OpenSSL's libcrypto, no postgres.h: unit-tested and fuzzed
 * without a server.  A loaded key is an opaque malloc'd handle the
 * caller frees; nothing here throws, and no message ever contains a key,
 * a signature or a secret.
 *
 * src/core/signature.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/signature.h"
#include "core/webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define ED25519_SIGNATURE_BYTES 64
/* SPKI DER of an Ed25519 key is 44 bytes; leave room for anything sane */
#define SPKI_MAX_BYTES 512

struct PartooPublicKey
{
	EVP_PKEY   *pkey;
};

PartooPublicKey *
partoo_public_key_load(const char *spki_base64, char *errbuf, size_t errlen)
{
	unsigned char der[SPKI_MAX_BYTES];
	const unsigned char *p = der;
	long		n;
	EVP_PKEY   *pkey;
	PartooPublicKey *key;

	if (errlen > 0)
		errbuf[0] = '\0';
	if (spki_base64 == NULL || spki_base64[0] == '\0')
	{
		snprintf(errbuf, errlen, "The public key is empty.");
		return NULL;
	}
	n = partoo_base64_decode(spki_base64, strlen(spki_base64), der, sizeof(der));
	if (n <= 0)
	{
		snprintf(errbuf, errlen, "The public key is not base64 of at most %d bytes.",
				 SPKI_MAX_BYTES);
		return NULL;
	}
	pkey = d2i_PUBKEY(NULL, &p, n);
	if (pkey == NULL || p != der + n)
	{
		EVP_PKEY_free(pkey);
		snprintf(errbuf, errlen, "The public key is not a DER SubjectPublicKeyInfo.");
		return NULL;
	}
	if (EVP_PKEY_id(pkey) != EVP_PKEY_ED25519)
	{
		EVP_PKEY_free(pkey);
		snprintf(errbuf, errlen, "The public key is not an Ed25519 key.");
		return NULL;
	}
	key = malloc(sizeof(PartooPublicKey));
	if (key == NULL)
	{
		EVP_PKEY_free(pkey);
		snprintf(errbuf, errlen, "Out of memory.");
		return NULL;
	}
	key->pkey = pkey;
	return key;
}

void
partoo_public_key_free(PartooPublicKey *key)
{
	if (key == NULL)
		return;
	EVP_PKEY_free(key->pkey);
	free(key);
}

PartooSignatureResult
partoo_signature_verify(const PartooPublicKey *key, const char *sig,
						size_t sig_len, const void *body, size_t len)
{
	unsigned char raw[ED25519_SIGNATURE_BYTES + 3];
	long		n;
	EVP_MD_CTX *ctx;
	int			rc;

	if (key == NULL || sig == NULL)
		return PARTOO_SIG_MALFORMED;
	/* a longer header cannot hold 64 bytes of base64, whatever its padding */
	if (sig_len > 200)
		return PARTOO_SIG_MALFORMED;
	n = partoo_base64_decode(sig, sig_len, raw, sizeof(raw));
	if (n != ED25519_SIGNATURE_BYTES)
		return PARTOO_SIG_MALFORMED;

	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return PARTOO_SIG_ERROR;
	/* Ed25519 hashes internally: no digest, one-shot verification */
	if (EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key->pkey) != 1)
	{
		EVP_MD_CTX_free(ctx);
		return PARTOO_SIG_ERROR;
	}
	rc = EVP_DigestVerify(ctx, raw, ED25519_SIGNATURE_BYTES,
						  len > 0 ? body : (const void *) "", len);
	EVP_MD_CTX_free(ctx);
	return rc == 1 ? PARTOO_SIG_VALID : PARTOO_SIG_INVALID;
}

bool
partoo_secret_equal(const char *given, size_t given_len,
					const char *expected, size_t expected_len)
{
	unsigned char dg[EVP_MAX_MD_SIZE];
	unsigned char de[EVP_MAX_MD_SIZE];
	unsigned int lg = 0;
	unsigned int le = 0;
	bool		ok;

	if (given == NULL || expected == NULL || expected_len == 0)
		return false;
	/*
	 * Hashing both sides first makes the comparison independent of the
	 * lengths; CRYPTO_memcmp does not stop at the first difference.
	 */
	if (!EVP_Digest(given, given_len, dg, &lg, EVP_sha256(), NULL) ||
		!EVP_Digest(expected, expected_len, de, &le, EVP_sha256(), NULL) ||
		lg != le)
		return false;
	ok = CRYPTO_memcmp(dg, de, lg) == 0;
	OPENSSL_cleanse(dg, sizeof(dg));
	OPENSSL_cleanse(de, sizeof(de));
	return ok;
}
