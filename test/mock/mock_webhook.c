/*
 * mock_webhook.c -- the mock's Partoo webhook sender.
 *
 * Partoo posts a "message_updated" event to the subscriber's URL each time
 * a message's status changes: Sending when it is created (or retried),
 * then Success or Failed.  Each request carries X-Partoo-Signature-v1, the
 * base64 Ed25519 signature of the raw body.  This module imitates that for
 * the mock: wh_plan() decides a message's outcome and when it happens (the
 * same decision serves GET /v2/messages, so the API's answer and the
 * webhooks agree, also for events deliberately not delivered), and
 * wh_enqueue() queues its events.
 *
 * Deliveries sit in one min-heap ordered by due time (CLOCK_MONOTONIC),
 * drained by a pool of sender threads, each with its own libcurl easy
 * handle (so connections to the receiver are kept alive).  A 5xx or a
 * transport failure is retried up to max_retries times after backoff_ms,
 * 2*backoff_ms, 4*backoff_ms...; any other non-2xx answer is given up at
 * once.  A retry goes back into the heap, so a waiting retry never holds a
 * thread.  /_mock/reset bumps a generation number: queued and in-flight
 * deliveries of an older generation are dropped and not counted.
 *
 * Locking: wh_mu protects the configuration, the heap and the generation;
 * it is never held during an HTTP request or while another lock of the
 * mock is taken.  Counters are atomics.  The signing key is an EVP_PKEY
 * shared read-only; a thread holds a reference while it signs.
 */
#define _GNU_SOURCE
#include "mock_webhook.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

const char *const wh_status_names[] = {"", "Sending", "Success", "Failed"};

int
wh_status_from_name(const char *s)
{
  for (int i = WH_SENDING; i <= WH_FAILED; i++)
    if (s && strcmp(s, wh_status_names[i]) == 0)
      return i;
  return WH_NONE;
}

/* ------------------------------------------------------------------ */
/* configuration                                                       */
/* ------------------------------------------------------------------ */

/* What /_mock/webhooks sets and /_mock/reset restores (the destination,
 * the key and "insecure" are kept apart: see wh_configure) */
typedef struct
{
  int64_t delay_ms;
  double rate_failed, rate_drop, rate_duplicate, rate_reorder;
  int send_sending;
  int64_t backoff_ms;
  int64_t max_retries;
  int64_t timeout_ms;
} behave_t;

static const behave_t behave_defaults = {
  .delay_ms = 100, .send_sending = 1, .backoff_ms = 500, .max_retries = 5, .timeout_ms = 5000};

/* gap between duplicate copies, and how late a reordered Sending comes */
#define DUP_GAP_US 20000
#define REORDER_GAP_US 50000

static pthread_mutex_t wh_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wh_cv;
static behave_t behave = behave_defaults;
static char *dest_url;     /* NULL: nothing is sent */
static int dest_insecure;  /* no TLS peer verification */
static EVP_PKEY *sign_key; /* never NULL once initialised */
static char *pub_b64;      /* base64 SubjectPublicKeyInfo of sign_key */
static uint64_t generation;
static int stopping;
static _Atomic int stop_flag; /* read by the curl progress callback */
static unsigned nthreads;
static pthread_t *threads;

/* counters */
static _Atomic uint64_t c_events, c_sent, c_2xx, c_4xx, c_5xx, c_other, c_errors, c_retries,
  c_given_up, c_dropped, c_duplicated, c_reordered;
static _Atomic int64_t c_in_flight;

/* ------------------------------------------------------------------ */
/* PRNG (own sequence: the fault PRNG's draws stay what they were)     */
/* ------------------------------------------------------------------ */

static _Atomic uint64_t wh_prng;

static double
rnd01(void)
{
  uint64_t z = atomic_fetch_add(&wh_prng, 0x9E3779B97F4A7C15ULL) + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return (double) (z >> 11) * 0x1.0p-53;
}

/* draw only when the rate is set, so rates of 0 consume nothing */
static int
chance(double rate)
{
  return rate > 0 && (rate >= 1 || rnd01() < rate);
}

static void
reseed(uint64_t seed)
{
  /* distinct from the fault PRNG's sequence for the same seed */
  atomic_store(&wh_prng, seed ^ 0x5DEECE66DULL);
}

static int64_t
clock_us(clockid_t id)
{
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------------ */
/* keys                                                                */
/* ------------------------------------------------------------------ */

static EVP_PKEY *
key_generate(void)
{
  EVP_PKEY *k = NULL;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
  if (ctx && EVP_PKEY_keygen_init(ctx) == 1)
    EVP_PKEY_keygen(ctx, &k);
  EVP_PKEY_CTX_free(ctx);
  return k;
}

/* A PEM private key from memory; NULL unless it is Ed25519 */
static EVP_PKEY *
key_from_pem(const char *pem, size_t len)
{
  BIO *bio = BIO_new_mem_buf(pem, (int) len);
  EVP_PKEY *k = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
  BIO_free(bio);
  if (k && EVP_PKEY_id(k) != EVP_PKEY_ED25519)
  {
    EVP_PKEY_free(k);
    k = NULL;
  }
  return k;
}

static EVP_PKEY *
key_from_file(const char *path)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  sb_t b = {0};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0 && b.len < 65536)
    sb_put(&b, buf, n);
  fclose(f);
  EVP_PKEY *k = b.p ? key_from_pem(b.p, b.len) : NULL;
  sb_free(&b);
  return k;
}

/* base64 of the key's SubjectPublicKeyInfo DER, malloc'd */
static char *
key_public_b64(EVP_PKEY *k)
{
  unsigned char *der = NULL;
  int n = i2d_PUBKEY(k, &der);
  if (n <= 0)
    return NULL;
  char *out = xmalloc((size_t) (4 * ((n + 2) / 3) + 1));
  EVP_EncodeBlock((unsigned char *) out, der, n);
  OPENSSL_free(der);
  return out;
}

/* base64 Ed25519 signature of body into out (at least 89 bytes); 0 on failure */
static int
sign_b64(EVP_PKEY *k, const char *body, size_t len, char *out)
{
  unsigned char sig[64];
  size_t sl = sizeof(sig);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, k) == 1 &&
           EVP_DigestSign(ctx, sig, &sl, (const unsigned char *) body, len) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok)
    return 0;
  EVP_EncodeBlock((unsigned char *) out, sig, (int) sl);
  return 1;
}

/* ------------------------------------------------------------------ */
/* the delivery heap                                                   */
/* ------------------------------------------------------------------ */

typedef struct
{
  int64_t due; /* CLOCK_MONOTONIC us */
  uint64_t seq;
  uint64_t gen;
  int64_t attempt; /* retries made so far */
  char *body;
  size_t len;
} item_t;

static item_t *heap;
static size_t heap_n, heap_cap;
static uint64_t heap_seq;

static int
item_before(const item_t *a, const item_t *b)
{
  return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void
heap_push_nolock(item_t it)
{
  if (heap_n == heap_cap)
  {
    heap_cap = heap_cap ? heap_cap * 2 : 256;
    heap = xrealloc(heap, heap_cap * sizeof(*heap));
  }
  it.seq = heap_seq++;
  size_t i = heap_n++;
  while (i > 0)
  {
    size_t p = (i - 1) / 2;
    if (!item_before(&it, &heap[p]))
      break;
    heap[i] = heap[p];
    i = p;
  }
  heap[i] = it;
  /* a new earliest item: a sleeping thread must look again */
  if (i == 0)
    pthread_cond_signal(&wh_cv);
}

static item_t
heap_pop_nolock(void)
{
  item_t top = heap[0];
  item_t last = heap[--heap_n];
  size_t i = 0;
  for (;;)
  {
    size_t l = 2 * i + 1, s = i;
    const item_t *best = &last;
    if (l < heap_n && item_before(&heap[l], best))
    {
      s = l;
      best = &heap[l];
    }
    if (l + 1 < heap_n && item_before(&heap[l + 1], best))
      s = l + 1;
    if (s == i)
      break;
    heap[i] = heap[s];
    i = s;
  }
  if (heap_n > 0)
    heap[i] = last;
  return top;
}

static void
heap_clear_nolock(void)
{
  for (size_t i = 0; i < heap_n; i++)
    free(heap[i].body);
  heap_n = 0;
}

/* ------------------------------------------------------------------ */
/* HTTP                                                                */
/* ------------------------------------------------------------------ */

static size_t
discard_cb(char *p, size_t sz, size_t n, void *ud)
{
  (void) p;
  (void) ud;
  return sz * n;
}

static int
progress_cb(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
  (void) ud;
  (void) a;
  (void) b;
  (void) c;
  (void) d;
  return atomic_load(&stop_flag) ? 1 : 0;
}

/* Post one signed body; returns the HTTP status, or 0 on a transport
 * failure (connection refused, timeout, reset, no key...). */
static long
post(CURL *h, const char *url, int insecure, EVP_PKEY *k, int64_t timeout_ms, const char *body,
     size_t len)
{
  char sig[128];
  char sighdr[160];
  long code = 0;
  if (!sign_b64(k, body, len, sig))
    return 0;
  snprintf(sighdr, sizeof(sighdr), "X-Partoo-Signature-v1: %s", sig);
  struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
  hd = curl_slist_append(hd, sighdr);
  hd = curl_slist_append(hd, "Expect:");
  curl_easy_reset(h); /* keeps the connection cache */
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "partoo-mock-webhooks");
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) timeout_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long) timeout_ms);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_cb);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress_cb);
  if (insecure)
  {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (curl_easy_perform(h) == CURLE_OK)
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(hd);
  return code;
}

static void *
sender_main(void *arg)
{
  (void) arg;
  CURL *h = curl_easy_init();
  pthread_mutex_lock(&wh_mu);
  while (!stopping)
  {
    if (heap_n == 0)
    {
      pthread_cond_wait(&wh_cv, &wh_mu);
      continue;
    }
    int64_t now = clock_us(CLOCK_MONOTONIC);
    if (heap[0].due > now)
    {
      int64_t d = heap[0].due;
      struct timespec ts = {(time_t) (d / 1000000), (long) (d % 1000000) * 1000};
      pthread_cond_timedwait(&wh_cv, &wh_mu, &ts);
      continue;
    }
    item_t it = heap_pop_nolock();
    /* more may be due: let another thread take the next one */
    if (heap_n > 0)
      pthread_cond_signal(&wh_cv);
    if (it.gen != generation || !dest_url || !h)
    {
      free(it.body);
      continue;
    }
    char *url = strdup(dest_url);
    int insecure = dest_insecure;
    EVP_PKEY *k = sign_key;
    EVP_PKEY_up_ref(k);
    behave_t bh = behave;
    atomic_fetch_add(&c_in_flight, 1);
    pthread_mutex_unlock(&wh_mu);

    long code = url ? post(h, url, insecure, k, bh.timeout_ms, it.body, it.len) : 0;
    EVP_PKEY_free(k);
    free(url);

    pthread_mutex_lock(&wh_mu);
    atomic_fetch_sub(&c_in_flight, 1);
    if (it.gen != generation || stopping)
    {
      free(it.body);
      continue;
    }
    atomic_fetch_add(&c_sent, 1);
    int retryable = 0;
    if (code >= 200 && code < 300)
      atomic_fetch_add(&c_2xx, 1);
    else if (code >= 400 && code < 500)
      atomic_fetch_add(&c_4xx, 1);
    else if (code >= 500 && code < 600)
    {
      atomic_fetch_add(&c_5xx, 1);
      retryable = 1;
    }
    else if (code == 0)
    {
      atomic_fetch_add(&c_errors, 1);
      retryable = 1;
    }
    else
      atomic_fetch_add(&c_other, 1);
    if (code >= 200 && code < 300)
      free(it.body);
    else if (retryable && it.attempt < bh.max_retries)
    {
      int64_t wait_ms = bh.backoff_ms << it.attempt;
      it.attempt++;
      atomic_fetch_add(&c_retries, 1);
      it.due = clock_us(CLOCK_MONOTONIC) + wait_ms * 1000;
      heap_push_nolock(it);
    }
    else
    {
      atomic_fetch_add(&c_given_up, 1);
      free(it.body);
    }
  }
  pthread_mutex_unlock(&wh_mu);
  if (h)
    curl_easy_cleanup(h);
  return NULL;
}

/* ------------------------------------------------------------------ */
/* events                                                              */
/* ------------------------------------------------------------------ */

/* The message_updated body, in the envelope of Partoo's documentation */
static char *
build_body(const wh_msg_t *m, int status, size_t *len)
{
  sb_t b = {0};
  sb_puts(&b, "{\"type\":\"message_updated\",\"payload\":{\"message\":{\"id\":");
  sb_put_i64(&b, m->id);
  sb_puts(&b, ",\"conversation_id\":");
  sb_put_i64(&b, m->conv);
  sb_puts(&b, ",\"date\":");
  sb_put_date_us(&b, m->date_us);
  sb_puts(&b, ",\"content_type\":");
  sb_json_str(&b, m->content_type, strlen(m->content_type));
  sb_puts(&b, ",\"sender_type\":\"User\",\"sender_label\":\"Partoo Mock\",\"status\":");
  sb_json_str(&b, wh_status_names[status], strlen(wh_status_names[status]));
  sb_puts(&b, ",\"is_deleted\":false,\"content\":");
  if (m->content)
    sb_json_str(&b, m->content, strlen(m->content));
  else
    sb_puts(&b, "null");
  sb_puts(&b, ",\"user_id\":\"mock-user\",\"custom_channel\":null},\"conversation\":{\"id\":");
  sb_put_i64(&b, m->conv);
  sb_puts(&b, ",\"consumer_name\":\"Mock Consumer\",\"business\":{\"id\":1},"
              "\"messaging_partner\":\"Whatsapp\",\"custom_channel\":null},\"org_id\":1}}");
  *len = b.len;
  return b.p;
}

void
wh_plan(wh_plan_t *p)
{
  memset(p, 0, sizeof(*p));
  pthread_mutex_lock(&wh_mu);
  behave_t bh = behave;
  p->send = dest_url != NULL;
  pthread_mutex_unlock(&wh_mu);

  int64_t mono = clock_us(CLOCK_MONOTONIC);
  p->outcome = chance(bh.rate_failed) ? WH_FAILED : WH_SUCCESS;
  p->outcome_at_us = clock_us(CLOCK_REALTIME) + bh.delay_ms * 1000;
  if (!p->send)
    return;
  p->send_sending = bh.send_sending;
  p->due_sending = mono;
  p->due_final = mono + bh.delay_ms * 1000;
  if (bh.send_sending)
  {
    p->drop_sending = chance(bh.rate_drop);
    p->dup_sending = chance(bh.rate_duplicate);
    if (chance(bh.rate_reorder))
    {
      p->due_sending = p->due_final + REORDER_GAP_US;
      atomic_fetch_add(&c_reordered, 1);
    }
  }
  p->drop_final = chance(bh.rate_drop);
  p->dup_final = chance(bh.rate_duplicate);
}

/* Queue one event (and its duplicate) unless it is dropped */
static void
event(const wh_msg_t *m, int status, int64_t due, int dropped, int dup)
{
  atomic_fetch_add(&c_events, 1);
  if (dropped)
  {
    atomic_fetch_add(&c_dropped, 1);
    return;
  }
  item_t it = {.due = due};
  it.body = build_body(m, status, &it.len);
  item_t copy = {0};
  if (dup)
  {
    copy = it;
    copy.body = xmalloc(it.len + 1);
    memcpy(copy.body, it.body, it.len + 1);
    copy.due = due + DUP_GAP_US;
    atomic_fetch_add(&c_duplicated, 1);
  }
  pthread_mutex_lock(&wh_mu);
  it.gen = copy.gen = generation;
  heap_push_nolock(it);
  if (dup)
    heap_push_nolock(copy);
  pthread_mutex_unlock(&wh_mu);
}

void
wh_enqueue(const wh_msg_t *m, const wh_plan_t *p)
{
  if (!p->send)
    return;
  if (p->send_sending)
    event(m, WH_SENDING, p->due_sending, p->drop_sending, p->dup_sending);
  event(m, p->outcome, p->due_final, p->drop_final, p->dup_final);
}

int
wh_enqueue_status(const wh_msg_t *m, int status)
{
  pthread_mutex_lock(&wh_mu);
  int send = dest_url != NULL;
  pthread_mutex_unlock(&wh_mu);
  if (send)
    event(m, status, clock_us(CLOCK_MONOTONIC), 0, 0);
  return send;
}

/* ------------------------------------------------------------------ */
/* control                                                             */
/* ------------------------------------------------------------------ */

static int
get_rate(cJSON *v, double *out)
{
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 1))
    return 0;
  *out = v->valuedouble;
  return 1;
}

static int
get_int(cJSON *v, int64_t min, int64_t max, int64_t *out)
{
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double) min ||
      v->valuedouble > (double) max)
    return 0;
  *out = (int64_t) v->valuedouble;
  return 1;
}

static int
url_ok(const char *s)
{
  return (strncasecmp(s, "http://", 7) == 0 && s[7]) || (strncasecmp(s, "https://", 8) == 0 && s[8]);
}

const char *
wh_configure(const char *body, size_t len)
{
  behave_t bh = behave_defaults;
  int set_url = 0, set_insecure = 0, insecure = 0, set_seed = 0;
  char *url = NULL;
  EVP_PKEY *key = NULL;
  int64_t seed = 0;
  const char *err = NULL;
  cJSON *root = len ? cJSON_ParseWithLength(body, len) : cJSON_Parse("{}");
  if (!root || !cJSON_IsObject(root))
    err = "body must be a JSON object";
  for (cJSON *ch = root ? root->child : NULL; ch && !err; ch = ch->next)
  {
    const char *k = ch->string;
    int64_t iv = 0;
    if (strcmp(k, "url") == 0)
    {
      set_url = 1;
      if (cJSON_IsNull(ch))
        continue;
      if (!cJSON_IsString(ch) || !url_ok(ch->valuestring))
        err = "url must be an http:// or https:// URL, or null";
      else
        url = xstrndup(ch->valuestring, strlen(ch->valuestring));
    }
    else if (strcmp(k, "key_pem") == 0 || strcmp(k, "key_file") == 0)
    {
      if (key || !cJSON_IsString(ch))
        err = "give one of key_pem, key_file, as a string";
      else if (!(key = k[4] == 'p' ? key_from_pem(ch->valuestring, strlen(ch->valuestring))
                                   : key_from_file(ch->valuestring)))
        err = "the key is not a readable PEM Ed25519 private key";
    }
    else if (strcmp(k, "insecure") == 0)
    {
      if (!cJSON_IsBool(ch))
        err = "insecure must be a boolean";
      set_insecure = 1;
      insecure = cJSON_IsTrue(ch);
    }
    else if (strcmp(k, "send_sending") == 0)
    {
      if (!cJSON_IsBool(ch))
        err = "send_sending must be a boolean";
      bh.send_sending = cJSON_IsTrue(ch);
    }
    else if (strcmp(k, "delay_ms") == 0)
    {
      if (!get_int(ch, 0, 3600000, &bh.delay_ms))
        err = "delay_ms must be an integer 0..3600000";
    }
    else if (strcmp(k, "backoff_ms") == 0)
    {
      if (!get_int(ch, 0, 600000, &bh.backoff_ms))
        err = "backoff_ms must be an integer 0..600000";
    }
    else if (strcmp(k, "max_retries") == 0)
    {
      if (!get_int(ch, 0, 20, &bh.max_retries))
        err = "max_retries must be an integer 0..20";
    }
    else if (strcmp(k, "timeout_ms") == 0)
    {
      if (!get_int(ch, 1, 600000, &bh.timeout_ms))
        err = "timeout_ms must be an integer 1..600000";
    }
    else if (strcmp(k, "rate_failed") == 0)
    {
      if (!get_rate(ch, &bh.rate_failed))
        err = "rates must be numbers between 0 and 1";
    }
    else if (strcmp(k, "rate_drop") == 0)
    {
      if (!get_rate(ch, &bh.rate_drop))
        err = "rates must be numbers between 0 and 1";
    }
    else if (strcmp(k, "rate_duplicate") == 0)
    {
      if (!get_rate(ch, &bh.rate_duplicate))
        err = "rates must be numbers between 0 and 1";
    }
    else if (strcmp(k, "rate_reorder") == 0)
    {
      if (!get_rate(ch, &bh.rate_reorder))
        err = "rates must be numbers between 0 and 1";
    }
    else if (strcmp(k, "seed") == 0)
    {
      if (!get_int(ch, 0, 9007199254740991LL, &iv))
        err = "seed must be a non-negative integer";
      set_seed = 1;
      seed = iv;
    }
    else
      err = "unknown key (allowed: url, key_pem, key_file, insecure, delay_ms, rate_failed, "
            "rate_drop, rate_duplicate, rate_reorder, send_sending, backoff_ms, max_retries, "
            "timeout_ms, seed)";
  }
  cJSON_Delete(root);
  if (err)
  {
    free(url);
    EVP_PKEY_free(key);
    return err;
  }
  char *pub = key ? key_public_b64(key) : NULL;
  if (key && !pub)
  {
    free(url);
    EVP_PKEY_free(key);
    return "cannot encode the public key";
  }
  pthread_mutex_lock(&wh_mu);
  behave = bh;
  if (set_url)
  {
    free(dest_url);
    dest_url = url;
  }
  if (set_insecure)
    dest_insecure = insecure;
  if (key)
  {
    EVP_PKEY_free(sign_key);
    sign_key = key;
    free(pub_b64);
    pub_b64 = pub;
  }
  pthread_mutex_unlock(&wh_mu);
  if (set_seed)
    reseed((uint64_t) seed);
  return NULL;
}

void
wh_config_json(sb_t *b)
{
  pthread_mutex_lock(&wh_mu);
  behave_t bh = behave;
  sb_puts(b, "{\"url\":");
  if (dest_url)
    sb_json_str(b, dest_url, strlen(dest_url));
  else
    sb_puts(b, "null");
  sb_puts(b, ",\"public_key\":");
  sb_json_str(b, pub_b64, strlen(pub_b64));
  sb_printf(b, ",\"insecure\":%s,\"threads\":%u", dest_insecure ? "true" : "false", nthreads);
  pthread_mutex_unlock(&wh_mu);
  sb_printf(b,
            ",\"delay_ms\":%lld,\"rate_failed\":%g,\"rate_drop\":%g,\"rate_duplicate\":%g,"
            "\"rate_reorder\":%g,\"send_sending\":%s,\"backoff_ms\":%lld,\"max_retries\":%lld,"
            "\"timeout_ms\":%lld}",
            (long long) bh.delay_ms, bh.rate_failed, bh.rate_drop, bh.rate_duplicate,
            bh.rate_reorder, bh.send_sending ? "true" : "false", (long long) bh.backoff_ms,
            (long long) bh.max_retries, (long long) bh.timeout_ms);
}

void
wh_stats_json(sb_t *b)
{
  pthread_mutex_lock(&wh_mu);
  uint64_t queued = heap_n;
  pthread_mutex_unlock(&wh_mu);
  int64_t fl = atomic_load(&c_in_flight);
  sb_printf(b,
            ",\"webhooks_events\":%llu,\"webhooks_sent\":%llu,\"webhooks_2xx\":%llu,"
            "\"webhooks_4xx\":%llu,\"webhooks_5xx\":%llu,\"webhooks_other\":%llu,"
            "\"webhooks_errors\":%llu,\"webhooks_retries\":%llu,\"webhooks_given_up\":%llu,"
            "\"webhooks_dropped\":%llu,\"webhooks_duplicated\":%llu,\"webhooks_reordered\":%llu,"
            "\"webhooks_pending\":%llu",
            (unsigned long long) atomic_load(&c_events), (unsigned long long) atomic_load(&c_sent),
            (unsigned long long) atomic_load(&c_2xx), (unsigned long long) atomic_load(&c_4xx),
            (unsigned long long) atomic_load(&c_5xx), (unsigned long long) atomic_load(&c_other),
            (unsigned long long) atomic_load(&c_errors), (unsigned long long) atomic_load(&c_retries),
            (unsigned long long) atomic_load(&c_given_up),
            (unsigned long long) atomic_load(&c_dropped),
            (unsigned long long) atomic_load(&c_duplicated),
            (unsigned long long) atomic_load(&c_reordered),
            (unsigned long long) (queued + (uint64_t) (fl > 0 ? fl : 0)));
}

void
wh_reset(uint64_t seed)
{
  pthread_mutex_lock(&wh_mu);
  heap_clear_nolock();
  generation++;
  behave = behave_defaults;
  atomic_store(&c_events, 0);
  atomic_store(&c_sent, 0);
  atomic_store(&c_2xx, 0);
  atomic_store(&c_4xx, 0);
  atomic_store(&c_5xx, 0);
  atomic_store(&c_other, 0);
  atomic_store(&c_errors, 0);
  atomic_store(&c_retries, 0);
  atomic_store(&c_given_up, 0);
  atomic_store(&c_dropped, 0);
  atomic_store(&c_duplicated, 0);
  atomic_store(&c_reordered, 0);
  pthread_mutex_unlock(&wh_mu);
  reseed(seed);
}

/* ------------------------------------------------------------------ */
/* life cycle                                                          */
/* ------------------------------------------------------------------ */

int
wh_init(const char *url, const char *key_file, unsigned nthr, uint64_t seed, char *err,
        size_t errlen)
{
  if (url && !url_ok(url))
  {
    snprintf(err, errlen, "--webhook-url must be an http:// or https:// URL");
    return -1;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
  {
    snprintf(err, errlen, "cannot initialise libcurl");
    return -1;
  }
  sign_key = key_file ? key_from_file(key_file) : key_generate();
  if (!sign_key)
  {
    snprintf(err, errlen, key_file ? "cannot read an Ed25519 private key (PEM) from %s"
                                   : "cannot generate an Ed25519 key%s",
             key_file ? key_file : "");
    curl_global_cleanup();
    return -1;
  }
  pub_b64 = key_public_b64(sign_key);
  if (!pub_b64)
  {
    snprintf(err, errlen, "cannot encode the public key");
    EVP_PKEY_free(sign_key);
    sign_key = NULL;
    curl_global_cleanup();
    return -1;
  }
  dest_url = url ? xstrndup(url, strlen(url)) : NULL;
  reseed(seed);

  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&wh_cv, &ca);
  pthread_condattr_destroy(&ca);
  threads = calloc(nthr, sizeof(pthread_t));
  if (!threads)
    abort();
  for (nthreads = 0; nthreads < nthr; nthreads++)
    if (pthread_create(&threads[nthreads], NULL, sender_main, NULL) != 0)
    {
      snprintf(err, errlen, "cannot start webhook sender threads");
      wh_shutdown();
      return -1;
    }
  return 0;
}

void
wh_shutdown(void)
{
  pthread_mutex_lock(&wh_mu);
  stopping = 1;
  atomic_store(&stop_flag, 1);
  pthread_cond_broadcast(&wh_cv);
  pthread_mutex_unlock(&wh_mu);
  for (unsigned i = 0; i < nthreads; i++)
    pthread_join(threads[i], NULL);
  free(threads);
  threads = NULL;
  nthreads = 0;
  heap_clear_nolock();
  free(heap);
  heap = NULL;
  heap_cap = 0;
  free(dest_url);
  dest_url = NULL;
  free(pub_b64);
  pub_b64 = NULL;
  EVP_PKEY_free(sign_key);
  sign_key = NULL;
  curl_global_cleanup();
}
