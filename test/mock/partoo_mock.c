/*
 * partoo_mock.c -- mock of the Partoo REST API used by the partoo extension
 * tests and benchmarks.
 *
 * Serves POST /v2/messages (JSON or multipart image upload) and
 * POST /v2/messages/{id}/retry the way the contract in
 * /work/shared/seeds/partoo-*.md describes, with API-key authentication,
 * deterministic "magic" conversation ids that trigger error replies,
 * injectable random/scripted faults, a per-key sliding-window rate limiter,
 * and /_mock/... control endpoints that expose statistics, every accepted
 * message and the last requests.  See README.md for the user-level contract.
 *
 * Each accepted message also gets a Partoo status (Sending, then Success or
 * Failed: mock_webhook.c decides which and when), served by
 * GET /v2/messages?conversation_id=N (paginated with an opaque cursor) and
 * announced by signed message_updated webhooks when a webhook URL is set.
 * /_mock/inbox is a small webhook receiver, so that one mock can check
 * what another (or itself) sends.
 *
 * Design: libmicrohttpd with an epoll thread pool; delays suspend the
 * connection and a timer thread resumes it, so a delay never blocks other
 * connections.  The same mechanism gives every /v2 answer a latency
 * (--latency-ms, /_mock/latency): the request is handled when it arrives
 * (auth, rate limiter, acceptance), and only its answer waits.  Shared state is a handful of mutex-protected structures
 * (records, request log, keys/rate limiter, faults) plus atomic counters.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "mock_util.h"
#include "mock_webhook.h"

#define MAX_BODY (6u * 1024 * 1024)
#define MAX_IMAGE (5u * 1024 * 1024)
#define BIG_REPLY (2u * 1024 * 1024)
#define DEFAULT_MSG_ID_BASE 1000001
#define LOG_SIZE 1000
#define LOG_BODY 4096
#define MAX_PARTS 32
#define KEY_BUCKETS 4096
#define MAX_CONNECTIONS 16384
#define FD_RESERVE 256

enum { CT_NONE, CT_TEXT, CT_IMAGE, CT_VIDEO, CT_AUDIO, CT_DOCUMENT };
static const char *const ct_names[] = {"", "Text", "Image", "Video", "Audio", "Document"};

/* ------------------------------------------------------------------ */
/* configuration                                                       */
/* ------------------------------------------------------------------ */

static struct
{
  unsigned port;
  const char *port_file;
  const char **keys;
  int nkeys;
  const char *key_prefix;
  size_t key_prefix_len;
  int64_t forbidden;
  unsigned threads;
  const char *tls_cert;
  const char *tls_key;
  int quiet;
  uint64_t seed;
  const char *webhook_url;
  const char *webhook_key;
  unsigned webhook_threads;
  int latency_ms;
  int latency_jitter_ms;
} cfg = {.threads = 2, .seed = 42, .webhook_threads = 2};

/* ------------------------------------------------------------------ */
/* time, PRNG                                                          */
/* ------------------------------------------------------------------ */

static int64_t
clock_us(clockid_t id)
{
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* splitmix64 over an atomic counter: lock-free, thread-safe, reproducible
 * sequence for a given seed (interleaving between threads aside). */
static _Atomic uint64_t prng_ctr;

static double
rnd01(void)
{
  uint64_t z = atomic_fetch_add(&prng_ctr, 0x9E3779B97F4A7C15ULL) + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return (double) (z >> 11) * 0x1.0p-53;
}

/* ------------------------------------------------------------------ */
/* latency of /v2 answers                                              */
/* ------------------------------------------------------------------ */

/* Every /v2 answer waits lat_ms +/- lat_jitter_ms (uniform, whole ms).
 * The draws come from a PRNG of their own, so that turning the latency on
 * does not change which requests get faults.  /_mock/reset puts back the
 * command line's values. */
static pthread_mutex_t lat_mu = PTHREAD_MUTEX_INITIALIZER;
static int lat_ms, lat_jitter_ms;
static _Atomic uint64_t lat_prng_ctr;
#define LAT_SEED_MIX 0x6c6174656e6379ULL /* "latency" */
#define LAT_MAX_MS 600000

static int
latency_draw(void)
{
  pthread_mutex_lock(&lat_mu);
  int ms = lat_ms, j = lat_jitter_ms;
  pthread_mutex_unlock(&lat_mu);
  if (ms <= 0)
    return 0;
  if (j <= 0)
    return ms;
  uint64_t z = atomic_fetch_add(&lat_prng_ctr, 0x9E3779B97F4A7C15ULL) + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  /* uniform over the 2j+1 whole milliseconds ms-j .. ms+j */
  return ms - j + (int) (z % (uint64_t) (2 * j + 1));
}

/* ------------------------------------------------------------------ */
/* statistics                                                          */
/* ------------------------------------------------------------------ */

static _Atomic uint64_t st_requests, st_accepted, st_retries_ok, st_connections,
  st_dropped, st_rate_limited, st_open, st_get_messages, st_tls_handshakes, st_tls_resumed,
  st_v2_connections;
static _Atomic uint64_t st_status[600];

/* ------------------------------------------------------------------ */
/* accepted records and message ids                                    */
/* ------------------------------------------------------------------ */

/* What the mock keeps of every message it ever created (not reset) */
typedef struct
{
  int64_t conv;
  int64_t created_us;    /* CLOCK_REALTIME at acceptance */
  int64_t outcome_at_us; /* the status is Sending until then, outcome after */
  char *content;         /* for the webhooks of retries; kept only while a webhook URL is set */
  uint8_t ctype;
  uint8_t outcome; /* WH_SUCCESS or WH_FAILED */
  uint8_t forced;  /* a status set by /_mock/status, or WH_NONE */
} meta_t;

/* Partoo's status of a message at time now (CLOCK_REALTIME us) */
static int
meta_status(const meta_t *m, int64_t now)
{
  if (m->forced != WH_NONE)
    return m->forced;
  return now >= m->outcome_at_us ? m->outcome : WH_SENDING;
}

/* the ids of each conversation, ascending: GET /v2/messages */
typedef struct
{
  int64_t conv;
  int64_t *ids;
  size_t n, cap;
} conv_ent_t;

typedef struct
{
  uint8_t kind; /* 0 send, 1 retry */
  uint8_t ctype;
  int64_t msg_id;
  int64_t conv;
  const char *key; /* interned, lives until exit */
  int64_t time_us;
  char *text;       /* Text content, media URL or upload filename; may be NULL */
  size_t text_len;
  int64_t image_len; /* -1 when not an upload */
  uint64_t image_hash;
} record_t;

typedef struct
{
  uint64_t h;
  const char *s;
  size_t n;
} cset_ent_t;

static pthread_mutex_t rec_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t msg_id_base = DEFAULT_MSG_ID_BASE; /* --first-id */
static int64_t next_id = DEFAULT_MSG_ID_BASE; /* never reset */
static meta_t *meta;                  /* indexed by id - msg_id_base */
static size_t meta_cap;
static record_t *recs;
static size_t nrecs, recs_cap;
static cset_ent_t *cset; /* distinct Text contents among accepted sends */
static size_t cset_cap, cset_n;
static conv_ent_t *convs; /* open addressing on conv; never reset, like meta */
static size_t convs_cap, convs_n;

static size_t
conv_hash(int64_t conv, size_t cap)
{
  uint64_t z = (uint64_t) conv * 0x9E3779B97F4A7C15ULL;
  return (size_t) (z ^ (z >> 32)) & (cap - 1);
}

/* The entry of conv, NULL if it has none and !create */
static conv_ent_t *
conv_find_nolock(int64_t conv, int create)
{
  if (create && (convs_n + 1) * 2 > convs_cap)
  {
    size_t nc = convs_cap ? convs_cap * 2 : 1024;
    conv_ent_t *t = calloc(nc, sizeof(*t));
    if (!t)
      abort();
    for (size_t i = 0; i < convs_cap; i++)
      if (convs[i].ids)
      {
        size_t j = conv_hash(convs[i].conv, nc);
        while (t[j].ids)
          j = (j + 1) & (nc - 1);
        t[j] = convs[i];
      }
    free(convs);
    convs = t;
    convs_cap = nc;
  }
  if (!convs_cap)
    return NULL;
  size_t i = conv_hash(conv, convs_cap);
  while (convs[i].ids)
  {
    if (convs[i].conv == conv)
      return &convs[i];
    i = (i + 1) & (convs_cap - 1);
  }
  if (!create)
    return NULL;
  convs[i].conv = conv;
  convs[i].cap = 4;
  convs[i].ids = xmalloc(4 * sizeof(int64_t));
  convs[i].n = 0;
  convs_n++;
  return &convs[i];
}

static void
conv_add_nolock(int64_t conv, int64_t id)
{
  conv_ent_t *e = conv_find_nolock(conv, 1);
  if (e->n == e->cap)
  {
    e->cap *= 2;
    e->ids = xrealloc(e->ids, e->cap * sizeof(int64_t));
  }
  e->ids[e->n++] = id;
}

static void
cset_insert_nolock(const char *s, size_t n)
{
  if ((cset_n + 1) * 2 > cset_cap)
  {
    size_t nc = cset_cap ? cset_cap * 2 : 1024;
    cset_ent_t *t = calloc(nc, sizeof(*t));
    if (!t)
      abort();
    for (size_t i = 0; i < cset_cap; i++)
      if (cset[i].s)
      {
        size_t j = cset[i].h & (nc - 1);
        while (t[j].s)
          j = (j + 1) & (nc - 1);
        t[j] = cset[i];
      }
    free(cset);
    cset = t;
    cset_cap = nc;
  }
  uint64_t h = fnv1a64(s, n);
  size_t i = h & (cset_cap - 1);
  while (cset[i].s)
  {
    if (cset[i].h == h && cset[i].n == n && memcmp(cset[i].s, s, n) == 0)
      return;
    i = (i + 1) & (cset_cap - 1);
  }
  cset[i].h = h;
  cset[i].s = s;
  cset[i].n = n;
  cset_n++;
}

static record_t *
rec_push_nolock(void)
{
  if (nrecs == recs_cap)
  {
    recs_cap = recs_cap ? recs_cap * 2 : 4096;
    recs = xrealloc(recs, recs_cap * sizeof(*recs));
  }
  record_t *rc = &recs[nrecs++];
  memset(rc, 0, sizeof(*rc));
  rc->image_len = -1;
  return rc;
}

/* ------------------------------------------------------------------ */
/* API keys and the sliding-window rate limiter                        */
/* ------------------------------------------------------------------ */

typedef struct keyst
{
  struct keyst *next;
  uint64_t h;
  char *name;
  int64_t *ring; /* monotonic us of the requests inside the window */
  size_t rcap, rhead, rcount;
  uint64_t limited; /* 429s from the limiter */
} keyst_t;

static pthread_mutex_t keys_mu = PTHREAD_MUTEX_INITIALIZER;
static keyst_t *key_tab[KEY_BUCKETS];
static int64_t rl_per_minute;          /* 0 = disabled */
static int64_t rl_window_us = 60000000;

static int
key_accepted(const char *k)
{
  if (!k || !*k)
    return 0;
  for (int i = 0; i < cfg.nkeys; i++)
    if (strcmp(k, cfg.keys[i]) == 0)
      return 1;
  if (cfg.key_prefix && strncmp(k, cfg.key_prefix, cfg.key_prefix_len) == 0)
    return 1;
  return 0;
}

static keyst_t *
key_intern_nolock(const char *k)
{
  size_t n = strlen(k);
  uint64_t h = fnv1a64(k, n);
  keyst_t **b = &key_tab[h & (KEY_BUCKETS - 1)];
  for (keyst_t *e = *b; e; e = e->next)
    if (e->h == h && strcmp(e->name, k) == 0)
      return e;
  keyst_t *e = calloc(1, sizeof(*e));
  if (!e)
    abort();
  e->h = h;
  e->name = xstrndup(k, n);
  e->next = *b;
  *b = e;
  return e;
}

/* Interns the key and applies the rate limiter.  Returns 0 if the request
 * may proceed, else the Retry-After seconds of a 429. */
static int
key_admit(const char *k, keyst_t **out)
{
  int retry = 0;
  pthread_mutex_lock(&keys_mu);
  keyst_t *e = key_intern_nolock(k);
  *out = e;
  if (rl_per_minute > 0)
  {
    int64_t now = clock_us(CLOCK_MONOTONIC);
    while (e->rcount > 0 && e->ring[e->rhead] <= now - rl_window_us)
    {
      e->rhead = (e->rhead + 1) % e->rcap;
      e->rcount--;
    }
    if ((int64_t) e->rcount >= rl_per_minute)
    {
      int64_t wait = e->ring[e->rhead] + rl_window_us - now;
      retry = (int) ((wait + 999999) / 1000000);
      if (retry < 1)
        retry = 1;
      e->limited++;
      atomic_fetch_add(&st_rate_limited, 1);
    }
    else
    {
      if (e->rcount == e->rcap)
      {
        size_t nc = e->rcap ? e->rcap * 2 : 16;
        if ((int64_t) nc > rl_per_minute)
          nc = (size_t) rl_per_minute;
        int64_t *nr = xmalloc(nc * sizeof(int64_t));
        for (size_t i = 0; i < e->rcount; i++)
          nr[i] = e->ring[(e->rhead + i) % e->rcap];
        free(e->ring);
        e->ring = nr;
        e->rcap = nc;
        e->rhead = 0;
      }
      e->ring[(e->rhead + e->rcount) % e->rcap] = now;
      e->rcount++;
    }
  }
  pthread_mutex_unlock(&keys_mu);
  return retry;
}

/* clear limiter windows (and optionally the 429 counters) of every key */
static void
keys_clear_nolock(int counters)
{
  for (int i = 0; i < KEY_BUCKETS; i++)
    for (keyst_t *e = key_tab[i]; e; e = e->next)
    {
      free(e->ring);
      e->ring = NULL;
      e->rcap = e->rhead = e->rcount = 0;
      if (counters)
        e->limited = 0;
    }
}

/* ------------------------------------------------------------------ */
/* fault injection                                                     */
/* ------------------------------------------------------------------ */

enum { FA_NONE, FA_500, FA_503, FA_429, FA_DROP, FA_DELAY, FA_DAA, FA_PASS };
static const char *const fa_names[] = {"", "500", "503", "429", "drop", "delay",
                                       "drop_after_accept", "pass"};

typedef struct
{
  int action;
  int64_t count;
  int delay_ms; /* -1: use the global delay_ms */
} next_t;

typedef struct
{
  double r5xx, r429, rdrop, rdelay, rdaa;
  int retry_after;
  int delay_ms;
  next_t *next;
  int nnext, inext;
} faults_t;

static pthread_mutex_t faults_mu = PTHREAD_MUTEX_INITIALIZER;
static faults_t faults = {.retry_after = 1, .delay_ms = 100};
static _Atomic int faults_active;

typedef struct
{
  int action;
  int delay_ms;
  int retry_after;
  int daa; /* drop the connection after accepting */
} fault_t;

static fault_t
fault_decide(void)
{
  fault_t f = {FA_NONE, 0, 1, 0};
  if (!atomic_load_explicit(&faults_active, memory_order_relaxed))
    return f;
  faults_t fc;
  int scripted = 0;
  pthread_mutex_lock(&faults_mu);
  fc = faults;
  if (faults.inext < faults.nnext)
  {
    next_t *n = &faults.next[faults.inext];
    scripted = 1;
    f.action = n->action;
    f.delay_ms = n->delay_ms >= 0 ? n->delay_ms : faults.delay_ms;
    if (--n->count <= 0)
      faults.inext++;
  }
  pthread_mutex_unlock(&faults_mu);
  f.retry_after = fc.retry_after;
  if (scripted)
  {
    if (f.action == FA_DAA)
    {
      f.action = FA_NONE;
      f.daa = 1;
    }
    else if (f.action == FA_PASS)
      f.action = FA_NONE;
    return f;
  }
  double u = rnd01();
  if (u < fc.rdrop)
    f.action = FA_DROP;
  else if ((u -= fc.rdrop) < fc.r5xx)
    f.action = rnd01() < 0.5 ? FA_500 : FA_503;
  else if ((u -= fc.r5xx) < fc.r429)
    f.action = FA_429;
  else if ((u -= fc.r429) < fc.rdelay)
  {
    f.action = FA_DELAY;
    f.delay_ms = fc.delay_ms;
  }
  if (fc.rdaa > 0 && rnd01() < fc.rdaa)
    f.daa = 1;
  return f;
}

/* ------------------------------------------------------------------ */
/* request log (ring of the last LOG_SIZE /v2 requests)                */
/* ------------------------------------------------------------------ */

typedef struct
{
  uint64_t seq;
  int status; /* 0 = connection dropped */
  char method[16];
  char path[256];
  char key[128];
  char ctype[256];
  int has_key, has_ctype;
  size_t body_len;
  size_t stored;
  char body[LOG_BODY];
} logent_t;

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static logent_t *logring;
static uint64_t log_total; /* entries written since reset */
static _Atomic uint64_t seq_ctr;

static void
copy_trunc(char *dst, size_t dsz, const char *src)
{
  size_t n = strlen(src);
  if (n >= dsz)
    n = dsz - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* ------------------------------------------------------------------ */
/* delay timer: suspended connections resumed at their deadline        */
/* ------------------------------------------------------------------ */

typedef struct
{
  int64_t deadline;
  struct MHD_Connection *c;
} tnode_t;

static pthread_mutex_t timer_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t timer_cv;
static tnode_t *theap;
static size_t theap_n, theap_cap;
static int timer_stopping;
static pthread_t timer_thread;

static void
theap_push(tnode_t t)
{
  if (theap_n == theap_cap)
  {
    theap_cap = theap_cap ? theap_cap * 2 : 256;
    theap = xrealloc(theap, theap_cap * sizeof(*theap));
  }
  size_t i = theap_n++;
  while (i > 0)
  {
    size_t p = (i - 1) / 2;
    if (theap[p].deadline <= t.deadline)
      break;
    theap[i] = theap[p];
    i = p;
  }
  theap[i] = t;
}

static tnode_t
theap_pop(void)
{
  tnode_t top = theap[0];
  tnode_t last = theap[--theap_n];
  size_t i = 0;
  for (;;)
  {
    size_t l = 2 * i + 1, s = i;
    tnode_t *best = &last;
    if (l < theap_n && theap[l].deadline < best->deadline)
    {
      s = l;
      best = &theap[l];
    }
    if (l + 1 < theap_n && theap[l + 1].deadline < best->deadline)
      s = l + 1;
    if (s == i)
      break;
    theap[i] = theap[s];
    i = s;
  }
  if (theap_n > 0)
    theap[i] = last;
  return top;
}

/* Called from the access handler: suspend c and resume it after ms. */
static void
delay_connection(struct MHD_Connection *c, int ms)
{
  MHD_suspend_connection(c);
  pthread_mutex_lock(&timer_mu);
  if (timer_stopping)
  {
    pthread_mutex_unlock(&timer_mu);
    MHD_resume_connection(c);
    return;
  }
  tnode_t t = {clock_us(CLOCK_MONOTONIC) + (int64_t) ms * 1000, c};
  theap_push(t);
  if (theap[0].c == c)
    pthread_cond_signal(&timer_cv);
  pthread_mutex_unlock(&timer_mu);
}

static void *
timer_main(void *arg)
{
  (void) arg;
  struct MHD_Connection *batch[128];
  pthread_mutex_lock(&timer_mu);
  for (;;)
  {
    size_t nb = 0;
    int64_t now = clock_us(CLOCK_MONOTONIC);
    while (theap_n > 0 && nb < 128 && (timer_stopping || theap[0].deadline <= now))
      batch[nb++] = theap_pop().c;
    if (nb > 0)
    {
      pthread_mutex_unlock(&timer_mu);
      for (size_t i = 0; i < nb; i++)
        MHD_resume_connection(batch[i]);
      pthread_mutex_lock(&timer_mu);
      continue;
    }
    if (timer_stopping)
      break;
    if (theap_n == 0)
      pthread_cond_wait(&timer_cv, &timer_mu);
    else
    {
      int64_t d = theap[0].deadline;
      struct timespec ts = {(time_t) (d / 1000000), (long) (d % 1000000) * 1000};
      pthread_cond_timedwait(&timer_cv, &timer_mu, &ts);
    }
  }
  pthread_mutex_unlock(&timer_mu);
  return NULL;
}

/* ------------------------------------------------------------------ */
/* per-request state                                                   */
/* ------------------------------------------------------------------ */

enum { ST_NEW, ST_AFTER_FAULT_DELAY, ST_AFTER_MAGIC_DELAY };

typedef struct
{
  char *body;
  size_t len, cap;
  int too_big;
  int done; /* a response was queued or the connection dropped */
  int stage;
  /* the answer held back by the latency: queued (or the connection
   * dropped) when the timer resumes the connection */
  int latency_done;
  int pending_drop;
  unsigned pending_status;
  struct MHD_Response *pending;
  int64_t time_us;
  keyst_t *key;
  fault_t fault;
  /* validated message */
  int64_t conv;
  int ctype;
  char *text;
  size_t text_len;
  int64_t image_len;
  uint64_t image_hash;
} req_t;

/* ------------------------------------------------------------------ */
/* responses                                                           */
/* ------------------------------------------------------------------ */

static const char JSON_CT[] = "application/json";
static const char B_NOTFOUND[] = "{\"error\":{\"message\":\"Not found\"}}";
static const char B_UNAUTH[] = "{\"errors\":{\"authentication\":\"User not authenticated\"}}";
static const char B_FORBIDDEN[] = "{\"errors\":{\"authorization\":\"Operation not allowed\"}}";
static const char B_RATE[] = "{\"errors\":{\"rate_limit\":\"Too many requests\"}}";
static const char B_INTERNAL[] = "{\"error\":{\"message\":\"Internal error\"}}";
static const char B_503[] = "Service Unavailable";
static const char B_CONV_404[] = "{\"error\":{\"code\":404,\"message\":\"Conversation not found\"}}";
static const char B_INVALID_CONV[] = "{\"errors\":{\"json\":{\"conversation_id\":[\"Invalid conversation\"]}}}";
static const char B_415[] = "{\"errors\":{\"json\":{\"content_type\":[\"Unsupported media type\"]}}}";
static const char B_UNKNOWN_MSG[] = "{\"errors\":{\"json\":{\"message_id\":[\"Unknown message\"]}}}";
static const char B_413[] = "{\"errors\":{\"json\":{\"_schema\":[\"Request body too large (max 6 MB)\"]}}}";
static const char B_OK[] = "{\"status\":\"success\"}";

static void
log_request(struct MHD_Connection *c, req_t *r, const char *method, const char *url, int status)
{
  const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-APIKey");
  const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
  uint64_t seq = atomic_fetch_add(&seq_ctr, 1) + 1;
  pthread_mutex_lock(&log_mu);
  logent_t *e = &logring[log_total % LOG_SIZE];
  log_total++;
  e->seq = seq;
  e->status = status;
  copy_trunc(e->method, sizeof(e->method), method);
  copy_trunc(e->path, sizeof(e->path), url);
  e->has_key = key != NULL;
  copy_trunc(e->key, sizeof(e->key), key ? key : "");
  e->has_ctype = ct != NULL;
  copy_trunc(e->ctype, sizeof(e->ctype), ct ? ct : "");
  e->body_len = r->too_big ? 0 : r->len;
  e->stored = e->body_len < LOG_BODY ? e->body_len : LOG_BODY;
  if (e->stored)
    memcpy(e->body, r->body, e->stored);
  pthread_mutex_unlock(&log_mu);
}

/* Queue a response.  v2: count and log it.  mode decides body ownership. */
static enum MHD_Result
reply(struct MHD_Connection *c, req_t *r, int v2, const char *method, const char *url,
      unsigned status, const char *body, size_t len, enum MHD_ResponseMemoryMode mode,
      const char *ctype, int retry_after)
{
  r->done = 1;
  if (v2)
  {
    if (status < 600)
      atomic_fetch_add_explicit(&st_status[status], 1, memory_order_relaxed);
    log_request(c, r, method, url, (int) status);
  }
  struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *) body, mode);
  if (!resp)
  {
    if (mode == MHD_RESPMEM_MUST_FREE)
      free((void *) body);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype ? ctype : JSON_CT);
  if (retry_after > 0)
  {
    char ra[16];
    snprintf(ra, sizeof(ra), "%d", retry_after);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
  }
  /* NB: a 413 is answered at once: it may come before the body was read */
  if (v2 && !r->too_big && !r->latency_done)
  {
    int ms = latency_draw();
    r->latency_done = 1;
    if (ms > 0)
    {
      r->pending = resp;
      r->pending_status = status;
      delay_connection(c, ms);
      return MHD_YES;
    }
  }
  enum MHD_Result ret = MHD_queue_response(c, status, resp);
  MHD_destroy_response(resp);
  return ret;
}

#define REPLY_STATIC(st, b) \
  reply(c, r, 1, method, url, (st), (b), sizeof(b) - 1, MHD_RESPMEM_PERSISTENT, NULL, 0)

static enum MHD_Result
reply_sb(struct MHD_Connection *c, req_t *r, int v2, const char *method, const char *url,
         unsigned status, sb_t *b, const char *ctype)
{
  if (!b->p)
    sb_puts(b, "");
  return reply(c, r, v2, method, url, status, b->p, b->len, MHD_RESPMEM_MUST_FREE, ctype, 0);
}

static enum MHD_Result
reply_field_error(struct MHD_Connection *c, req_t *r, const char *method, const char *url,
                  const char *field, size_t flen, const char *reason)
{
  sb_t b = {0};
  sb_puts(&b, "{\"errors\":{\"json\":{");
  sb_json_str(&b, field, flen);
  sb_puts(&b, ":[");
  sb_json_str(&b, reason, strlen(reason));
  sb_puts(&b, "]}}}");
  return reply_sb(c, r, 1, method, url, 400, &b, NULL);
}

static enum MHD_Result
drop(struct MHD_Connection *c, req_t *r, const char *method, const char *url)
{
  r->done = 1;
  atomic_fetch_add(&st_dropped, 1);
  log_request(c, r, method, url, 0);
  if (!r->latency_done)
  {
    int ms = latency_draw();
    r->latency_done = 1;
    if (ms > 0)
    {
      r->pending_drop = 1;
      delay_connection(c, ms);
      return MHD_YES;
    }
  }
  return MHD_NO;
}

/* ------------------------------------------------------------------ */
/* body validation                                                     */
/* ------------------------------------------------------------------ */

typedef struct
{
  char field[160];
  size_t flen;
  const char *reason;
} verr_t;

/* record a validation error (field name copied, truncated); returns 0 */
static int
verr(verr_t *e, const char *field, size_t flen, const char *reason)
{
  if (flen >= sizeof(e->field))
    flen = sizeof(e->field) - 1;
  memcpy(e->field, field, flen);
  e->field[flen] = '\0';
  e->flen = flen;
  e->reason = reason;
  return 0;
}
#define VERR(f, why) verr(e, (f), strlen(f), (why))

static const char R_MISSING[] = "Missing data for required field.";
static const char R_NOT_INT[] = "Not a valid integer.";
static const char R_MIN1[] = "Must be greater than or equal to 1.";
static const char R_NOT_STR[] = "Not a valid string.";
static const char R_BAD_DATE[] = "Not a valid datetime.";
static const char R_BAD_URL[] = "Not a valid URL.";
static const char R_UNKNOWN[] = "Unknown field.";
static const char R_DUP[] = "Duplicate field.";

static int
is_ws(char c)
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t
skip_json_string(const char *s, size_t n, size_t i) /* s[i] == '"' */
{
  i++;
  while (i < n && s[i] != '"')
    i += (s[i] == '\\') ? 2 : 1;
  return i + 1;
}

/* Find the raw number token of top-level member `key` in a JSON text that
 * cJSON already accepted.  Keys written with escapes are not matched. */
static int
raw_member_number(const char *s, size_t n, const char *key, const char **tok, size_t *tlen)
{
  size_t i = 0, klen = strlen(key);
  while (i < n && is_ws(s[i]))
    i++;
  if (i >= n || s[i] != '{')
    return 0;
  i++;
  for (;;)
  {
    while (i < n && is_ws(s[i]))
      i++;
    if (i >= n || s[i] != '"')
      return 0;
    size_t ks = i + 1;
    i = skip_json_string(s, n, i);
    if (i > n)
      return 0;
    int match = (i - 1 - ks == klen && memcmp(s + ks, key, klen) == 0);
    while (i < n && is_ws(s[i]))
      i++;
    if (i >= n || s[i] != ':')
      return 0;
    i++;
    while (i < n && is_ws(s[i]))
      i++;
    if (i >= n)
      return 0;
    if (match && (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')))
    {
      size_t t = i;
      while (i < n && strchr("+-.eE0123456789", s[i]))
        i++;
      *tok = s + t;
      *tlen = i - t;
      return 1;
    }
    /* skip the value */
    if (s[i] == '"')
      i = skip_json_string(s, n, i);
    else if (s[i] == '{' || s[i] == '[')
    {
      int depth = 0;
      while (i < n)
      {
        char ch = s[i];
        if (ch == '"')
        {
          i = skip_json_string(s, n, i);
          continue;
        }
        i++;
        if (ch == '{' || ch == '[')
          depth++;
        else if ((ch == '}' || ch == ']') && --depth == 0)
          break;
      }
    }
    else
      while (i < n && !is_ws(s[i]) && s[i] != ',' && s[i] != '}' && s[i] != ']')
        i++;
    while (i < n && is_ws(s[i]))
      i++;
    if (i >= n || s[i] != ',')
      return 0;
    i++;
  }
}

static int
check_conversation_json(const char *body, size_t len, cJSON *cid, int64_t *conv, verr_t *e)
{
  if (!cJSON_IsNumber(cid))
    return VERR("conversation_id", R_NOT_INT);
  const char *tok;
  size_t tlen;
  if (raw_member_number(body, len, "conversation_id", &tok, &tlen))
  {
    for (size_t i = 0; i < tlen; i++)
      if (tok[i] == '.' || tok[i] == 'e' || tok[i] == 'E')
        return VERR("conversation_id", R_NOT_INT);
    if (tok[0] == '-')
      return VERR("conversation_id", R_MIN1);
    int allzero = 1;
    for (size_t i = 0; i < tlen; i++)
      if (tok[i] != '0')
        allzero = 0;
    if (allzero)
      return VERR("conversation_id", R_MIN1);
    if (!parse_pos_int64(tok, tlen, conv))
      return VERR("conversation_id", R_NOT_INT);
    return 1;
  }
  double d = cid->valuedouble;
  if (d != floor(d) || d > 9007199254740991.0 || d < -9007199254740991.0)
    return VERR("conversation_id", R_NOT_INT);
  if (d < 1)
    return VERR("conversation_id", R_MIN1);
  *conv = (int64_t) d;
  return 1;
}

static int
ctype_from_name(const char *s)
{
  for (int i = CT_TEXT; i <= CT_DOCUMENT; i++)
    if (strcmp(s, ct_names[i]) == 0)
      return i;
  return CT_NONE;
}

/* the checks proper; root is an object */
static int
validate_json_obj(req_t *r, cJSON *root, verr_t *e)
{
  cJSON *cid = cJSON_GetObjectItemCaseSensitive(root, "conversation_id");
  cJSON *cty = cJSON_GetObjectItemCaseSensitive(root, "content_type");
  cJSON *date = cJSON_GetObjectItemCaseSensitive(root, "date");
  if (!cid)
    return VERR("conversation_id", R_MISSING);
  if (!check_conversation_json(r->body, r->len, cid, &r->conv, e))
    return 0;
  if (!cty)
    return VERR("content_type", R_MISSING);
  if (!cJSON_IsString(cty))
    return VERR("content_type", R_NOT_STR);
  r->ctype = ctype_from_name(cty->valuestring);
  if (r->ctype == CT_NONE)
    return VERR("content_type", "Must be one of: Text, Image, Video, Audio, Document.");
  if (!date)
    return VERR("date", R_MISSING);
  if (!cJSON_IsString(date))
    return VERR("date", R_NOT_STR);
  if (!iso8601_utc_ok(date->valuestring, strlen(date->valuestring)))
    return VERR("date", R_BAD_DATE);

  const char *extra_key;
  const char *text;
  if (r->ctype == CT_TEXT)
  {
    cJSON *ct = cJSON_GetObjectItemCaseSensitive(root, "content");
    extra_key = "content";
    if (!ct)
      return VERR("content", R_MISSING);
    if (!cJSON_IsString(ct))
      return VERR("content", R_NOT_STR);
    if (ct->valuestring[0] == '\0')
      return VERR("content", "Shorter than minimum length 1.");
    text = ct->valuestring;
  }
  else if (r->ctype == CT_IMAGE)
  {
    cJSON *u = cJSON_GetObjectItemCaseSensitive(root, "url");
    extra_key = "url";
    if (!u)
      return VERR("url", R_MISSING);
    if (!cJSON_IsString(u) || !http_url_ok(u->valuestring))
      return VERR("url", R_BAD_URL);
    text = u->valuestring;
  }
  else
  {
    cJSON *ct = cJSON_GetObjectItemCaseSensitive(root, "content");
    extra_key = "content";
    if (!ct)
      return VERR("content", R_MISSING);
    if (!cJSON_IsObject(ct))
      return VERR("content", "Not a valid mapping type: expected {\"url\": \"http(s)://...\"}.");
    cJSON *u = NULL;
    int nchild = 0;
    for (cJSON *ch = ct->child; ch; ch = ch->next)
    {
      nchild++;
      if (!ch->string || strcmp(ch->string, "url") != 0)
        return VERR("content", "Unknown field in content (only url is allowed).");
      u = ch;
    }
    if (!u)
      return VERR("content", "Missing data for required field content.url.");
    if (nchild != 1)
      return VERR("content", "Duplicate field content.url.");
    if (!cJSON_IsString(u) || !http_url_ok(u->valuestring))
      return VERR("content", "content.url: Not a valid URL.");
    text = u->valuestring;
  }
  /* exactly these keys: no unknown and no duplicated member */
  int seen[4] = {0, 0, 0, 0};
  const char *names[4] = {"conversation_id", "content_type", "date", extra_key};
  for (cJSON *ch = root->child; ch; ch = ch->next)
  {
    int k = -1;
    for (int i = 0; i < 4; i++)
      if (ch->string && strcmp(ch->string, names[i]) == 0)
        k = i;
    if (k < 0)
      return verr(e, ch->string ? ch->string : "", ch->string ? strlen(ch->string) : 0, R_UNKNOWN);
    if (seen[k]++)
      return VERR(names[k], R_DUP);
  }
  r->text_len = strlen(text);
  r->text = xstrndup(text, r->text_len);
  return 1;
}

static int
validate_json(req_t *r, verr_t *e)
{
  const char *end = NULL;
  cJSON *root = r->len ? cJSON_ParseWithLengthOpts(r->body, r->len, &end, 0) : NULL;
  if (root)
  {
    const char *lim = r->body + r->len;
    while (end < lim && is_ws(*end))
      end++;
    if (end != lim)
    {
      cJSON_Delete(root);
      root = NULL;
    }
  }
  if (!root)
    return VERR("_schema", "Invalid JSON body.");
  int ok = cJSON_IsObject(root) ? validate_json_obj(r, root, e)
                                : VERR("_schema", "Invalid input type.");
  cJSON_Delete(root);
  return ok;
}

static int
validate_multipart(req_t *r, const char *ctype_hdr, verr_t *e)
{
  char boundary[256];
  size_t blen = multipart_boundary(ctype_hdr, boundary, sizeof(boundary));
  mp_part_t parts[MAX_PARTS];
  int np = blen ? multipart_parse(r->body, r->len, boundary, blen, parts, MAX_PARTS) : -1;
  if (np < 0)
    return VERR("_schema", "Invalid multipart/form-data body.");
  static const char *const names[4] = {"conversation_id", "content_type", "date", "image"};
  mp_part_t *got[4] = {NULL, NULL, NULL, NULL};
  int dup = -1, unknown = -1;
  for (int i = 0; i < np; i++)
  {
    int k = -1;
    for (int j = 0; j < 4; j++)
      if (parts[i].name_len == strlen(names[j]) &&
          memcmp(parts[i].name, names[j], parts[i].name_len) == 0)
        k = j;
    if (k < 0)
    {
      if (unknown < 0)
        unknown = i;
    }
    else if (got[k])
    {
      if (dup < 0)
        dup = k;
    }
    else
      got[k] = &parts[i];
  }
  if (!got[0])
    return VERR("conversation_id", R_MISSING);
  {
    int64_t v;
    const char *d = got[0]->data;
    size_t n = got[0]->data_len;
    int allzero = n > 0;
    for (size_t i = 0; i < n; i++)
      if (d[i] != '0')
        allzero = 0;
    if (allzero || (n > 1 && d[0] == '-' && d[1] >= '0' && d[1] <= '9'))
      return VERR("conversation_id", R_MIN1);
    if (!parse_pos_int64(d, n, &v))
      return VERR("conversation_id", R_NOT_INT);
    r->conv = v;
  }
  if (!got[1])
    return VERR("content_type", R_MISSING);
  if (got[1]->data_len != 5 || memcmp(got[1]->data, "Image", 5) != 0)
    return VERR("content_type", "Must be one of: Image.");
  r->ctype = CT_IMAGE;
  if (!got[2])
    return VERR("date", R_MISSING);
  if (!iso8601_utc_ok(got[2]->data, got[2]->data_len))
    return VERR("date", R_BAD_DATE);
  if (!got[3])
    return VERR("image", R_MISSING);
  if (!got[3]->filename || got[3]->filename_len == 0)
    return VERR("image", "Missing filename.");
  if (got[3]->data_len == 0)
    return VERR("image", "Empty file.");
  if (got[3]->data_len > MAX_IMAGE)
    return VERR("image", "File too large (max 5 MB).");
  if (dup >= 0)
    return VERR(names[dup], R_DUP);
  if (unknown >= 0)
    return verr(e, parts[unknown].name, parts[unknown].name_len, R_UNKNOWN);
  r->text_len = got[3]->filename_len;
  r->text = xstrndup(got[3]->filename, got[3]->filename_len);
  r->image_len = (int64_t) got[3]->data_len;
  r->image_hash = fnv1a64(got[3]->data, got[3]->data_len);
  return 1;
}
#undef VERR

/* ------------------------------------------------------------------ */
/* acceptance                                                          */
/* ------------------------------------------------------------------ */

/*
 * Accept a send: issue its id, record it, decide its Partoo status and,
 * when a webhook URL is set, queue its webhooks (after the lock: building
 * and signing bodies must not hold up other requests).
 */
static int64_t
accept_send(req_t *r)
{
  wh_plan_t plan;
  wh_plan(&plan);
  /* an upload's content is the file: its webhooks say null */
  char *content = plan.send && r->text && r->image_len < 0 ? xstrndup(r->text, r->text_len) : NULL;
  pthread_mutex_lock(&rec_mu);
  int64_t id = next_id++;
  size_t idx = (size_t) (id - msg_id_base);
  if (idx >= meta_cap)
  {
    meta_cap = meta_cap ? meta_cap * 2 : 65536;
    meta = xrealloc(meta, meta_cap * sizeof(*meta));
  }
  meta[idx].conv = r->conv;
  meta[idx].ctype = (uint8_t) r->ctype;
  meta[idx].created_us = r->time_us;
  meta[idx].outcome = (uint8_t) plan.outcome;
  meta[idx].outcome_at_us = plan.outcome_at_us;
  meta[idx].forced = WH_NONE;
  meta[idx].content = content;
  conv_add_nolock(r->conv, id);
  record_t *rc = rec_push_nolock();
  rc->kind = 0;
  rc->ctype = (uint8_t) r->ctype;
  rc->msg_id = id;
  rc->conv = r->conv;
  rc->key = r->key->name;
  rc->time_us = r->time_us;
  rc->text = r->text;
  rc->text_len = r->text_len;
  rc->image_len = r->image_len;
  rc->image_hash = r->image_hash;
  r->text = NULL;
  if (rc->ctype == CT_TEXT && rc->text)
    cset_insert_nolock(rc->text, rc->text_len);
  wh_msg_t m = {id, rc->conv, ct_names[rc->ctype], rc->time_us, content};
  pthread_mutex_unlock(&rec_mu);
  atomic_fetch_add(&st_accepted, 1);
  /* content stays valid: meta's strings are freed only at exit */
  wh_enqueue(&m, &plan);
  return id;
}

static int
accept_retry(req_t *r, int64_t id)
{
  wh_plan_t plan;
  wh_plan(&plan);
  pthread_mutex_lock(&rec_mu);
  if (id < msg_id_base || id >= next_id)
  {
    pthread_mutex_unlock(&rec_mu);
    return 0;
  }
  /* a retry starts the message over: Sending, then a new outcome */
  meta_t *mp = &meta[id - msg_id_base];
  mp->outcome = (uint8_t) plan.outcome;
  mp->outcome_at_us = plan.outcome_at_us;
  mp->forced = WH_NONE;
  meta_t m = *mp;
  record_t *rc = rec_push_nolock();
  rc->kind = 1;
  rc->ctype = m.ctype;
  rc->msg_id = id;
  rc->conv = m.conv;
  rc->key = r->key->name;
  rc->time_us = r->time_us;
  pthread_mutex_unlock(&rec_mu);
  atomic_fetch_add(&st_retries_ok, 1);
  wh_msg_t wm = {id, m.conv, ct_names[m.ctype], m.created_us, m.content};
  wh_enqueue(&wm, &plan);
  return 1;
}

/* ------------------------------------------------------------------ */
/* /v2 routing                                                         */
/* ------------------------------------------------------------------ */

enum { R_NOTFOUND, R_SEND, R_RETRY, R_LIST };

static int
route_of(const char *url, const char *method, const char **id, size_t *idlen)
{
  if (strcmp(method, "GET") == 0 && strcmp(url, "/v2/messages") == 0)
    return R_LIST;
  if (strcmp(method, "POST") != 0)
    return R_NOTFOUND;
  if (strcmp(url, "/v2/messages") == 0)
    return R_SEND;
  static const char pre[] = "/v2/messages/", suf[] = "/retry";
  size_t n = strlen(url);
  if (n > sizeof(pre) - 1 + sizeof(suf) - 1 && strncmp(url, pre, sizeof(pre) - 1) == 0 &&
      strcmp(url + n - (sizeof(suf) - 1), suf) == 0)
  {
    *id = url + sizeof(pre) - 1;
    *idlen = n - (sizeof(pre) - 1) - (sizeof(suf) - 1);
    if (memchr(*id, '/', *idlen))
      return R_NOTFOUND;
    return R_RETRY;
  }
  return R_NOTFOUND;
}

static enum MHD_Result
send_success(struct MHD_Connection *c, req_t *r, const char *method, const char *url, int64_t id)
{
  if (r->fault.daa)
    return drop(c, r, method, url);
  char buf[64];
  int n = snprintf(buf, sizeof(buf), "{\"status\":\"success\",\"message_id\":%lld}", (long long) id);
  return reply(c, r, 1, method, url, 200, buf, (size_t) n, MHD_RESPMEM_MUST_COPY, NULL, 0);
}

/* ------------------------------------------------------------------ */
/* GET /v2/messages?conversation_id=N[&per_page=K][&cursor=C]          */
/* ------------------------------------------------------------------ */

#define PER_PAGE_DEFAULT 20
#define PER_PAGE_MAX 100

/* An optionally signed decimal integer, digits only otherwise */
static int
parse_int64_strict(const char *s, int64_t *out)
{
  int neg = *s == '-';
  int64_t v = 0;
  const char *p = s + neg;
  if (!*p)
    return 0;
  for (; *p; p++)
  {
    if (*p < '0' || *p > '9' || v > (INT64_MAX - (*p - '0')) / 10)
      return 0;
    v = v * 10 + (*p - '0');
  }
  *out = neg ? -v : v;
  return 1;
}

/*
 * The cursor is opaque to clients: base64url (no padding) of
 * "v1:<conversation>:<id>", meaning "the messages of that conversation
 * older than id".  Returns 1 and *before on success.
 */
static void
sb_put_cursor(sb_t *b, int64_t conv, int64_t before)
{
  char raw[64], enc[96];
  int n = snprintf(raw, sizeof(raw), "v1:%lld:%lld", (long long) conv, (long long) before);
  int m = EVP_EncodeBlock((unsigned char *) enc, (const unsigned char *) raw, n);
  while (m > 0 && enc[m - 1] == '=')
    m--;
  for (int i = 0; i < m; i++)
    enc[i] = enc[i] == '+' ? '-' : enc[i] == '/' ? '_' : enc[i];
  sb_putc(b, '"');
  sb_put(b, enc, (size_t) m);
  sb_putc(b, '"');
}

static int
parse_cursor(const char *s, int64_t conv, int64_t *before)
{
  char enc[96], raw[96];
  size_t n = strlen(s);
  if (n == 0 || n > 80 || n % 4 == 1)
    return 0;
  for (size_t i = 0; i < n; i++)
  {
    char ch = s[i];
    if (ch == '-')
      ch = '+';
    else if (ch == '_')
      ch = '/';
    else if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')))
      return 0;
    enc[i] = ch;
  }
  while (n % 4)
    enc[n++] = '=';
  int m = EVP_DecodeBlock((unsigned char *) raw, (const unsigned char *) enc, (int) n);
  if (m < 0)
    return 0;
  while (m > 0 && raw[m - 1] == '\0') /* EVP_DecodeBlock counts the padding */
    m--;
  raw[m] = '\0';
  long long cv, id;
  int used = 0;
  if (sscanf(raw, "v1:%lld:%lld%n", &cv, &id, &used) != 2 || used != m || cv != conv || id < 1)
    return 0;
  *before = id;
  return 1;
}

static enum MHD_Result
reply_query_error(struct MHD_Connection *c, req_t *r, const char *url, const char *field,
                  const char *reason)
{
  sb_t b = {0};
  sb_puts(&b, "{\"errors\":{\"query\":{");
  sb_json_str(&b, field, strlen(field));
  sb_puts(&b, ":[");
  sb_json_str(&b, reason, strlen(reason));
  sb_puts(&b, "]}}}");
  return reply_sb(c, r, 1, "GET", url, 400, &b, NULL);
}

static enum MHD_Result
query_to_log(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
  sb_t *b = cls;
  sb_putc(b, b->len && memchr(b->p, '?', b->len) ? '&' : '?');
  sb_puts(b, key);
  if (value)
  {
    sb_putc(b, '=');
    sb_puts(b, value);
  }
  return MHD_YES;
}

/* Newest first; statuses as mock_webhook.c decided them (or /_mock/status) */
static enum MHD_Result
handle_list(struct MHD_Connection *c, req_t *r)
{
  sb_t logurl = {0};
  sb_puts(&logurl, "/v2/messages");
  MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, query_to_log, &logurl);
  /* the request log wants a C string that outlives nothing: copy it */
  char url[256];
  copy_trunc(url, sizeof(url), logurl.p);
  sb_free(&logurl);

  atomic_fetch_add(&st_get_messages, 1);
  const char *cv = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "conversation_id");
  const char *pp = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "per_page");
  const char *cu = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "cursor");
  int64_t conv, per_page = PER_PAGE_DEFAULT, before = INT64_MAX;
  if (!cv || !*cv)
    return reply_query_error(c, r, url, "conversation_id", R_MISSING);
  if (!parse_int64_strict(cv, &conv))
    return reply_query_error(c, r, url, "conversation_id", R_NOT_INT);
  if (conv < 1)
    return reply_query_error(c, r, url, "conversation_id", R_MIN1);
  if (pp && *pp)
  {
    if (!parse_int64_strict(pp, &per_page))
      return reply_query_error(c, r, url, "per_page", R_NOT_INT);
    if (per_page < 1 || per_page > PER_PAGE_MAX)
      return reply_query_error(c, r, url, "per_page",
                               "Must be greater than or equal to 1 and less than or equal to 100.");
  }
  if (cu && *cu && !parse_cursor(cu, conv, &before))
    return reply_query_error(c, r, url, "cursor", "Invalid cursor.");

  sb_t b = {0};
  int64_t now = clock_us(CLOCK_REALTIME);
  sb_puts(&b, "{\"messages\":[");
  pthread_mutex_lock(&rec_mu);
  conv_ent_t *e = conv_find_nolock(conv, 0);
  size_t total = e ? e->n : 0;
  /* ids ascend: start below the first id >= before */
  size_t lo = 0, hi = total;
  while (lo < hi)
  {
    size_t mid = lo + (hi - lo) / 2;
    if (e->ids[mid] < before)
      lo = mid + 1;
    else
      hi = mid;
  }
  size_t pos = lo, shown = 0;
  int64_t last = 0;
  while (pos > 0 && (int64_t) shown < per_page)
  {
    int64_t id = e->ids[--pos];
    const meta_t *m = &meta[id - msg_id_base];
    const char *st = wh_status_names[meta_status(m, now)];
    if (shown++)
      sb_putc(&b, ',');
    sb_puts(&b, "{\"id\":");
    sb_put_i64(&b, id);
    sb_puts(&b, ",\"conversation_id\":");
    sb_put_i64(&b, m->conv);
    sb_puts(&b, ",\"date\":");
    sb_put_date_us(&b, m->created_us);
    sb_printf(&b, ",\"content_type\":\"%s\",\"sender_type\":\"User\",\"status\":\"%s\","
                  "\"is_deleted\":false}",
              ct_names[m->ctype], st);
    last = id;
  }
  pthread_mutex_unlock(&rec_mu);
  sb_printf(&b, "],\"count\":%zu,\"next_cursor\":", total);
  if (pos > 0)
    sb_put_cursor(&b, conv, last);
  else
    sb_puts(&b, "null");
  sb_putc(&b, '}');
  return reply_sb(c, r, 1, "GET", url, 200, &b, NULL);
}

static void count_v2_connection(struct MHD_Connection *c);

static enum MHD_Result
handle_v2(struct MHD_Connection *c, req_t *r, const char *url, const char *method)
{
  const char *idp = NULL;
  size_t idlen = 0;
  int route;

  if (r->stage == ST_AFTER_FAULT_DELAY)
    goto after_faults;
  if (r->stage == ST_AFTER_MAGIC_DELAY)
    goto accept;

  atomic_fetch_add_explicit(&st_requests, 1, memory_order_relaxed);
  count_v2_connection(c);
  if (r->too_big)
    return REPLY_STATIC(413, B_413);
  {
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-APIKey");
    if (!key_accepted(key))
      return REPLY_STATIC(401, B_UNAUTH);
    int ra = key_admit(key, &r->key);
    if (ra > 0)
      return reply(c, r, 1, method, url, 429, B_RATE, sizeof(B_RATE) - 1,
                   MHD_RESPMEM_PERSISTENT, NULL, ra);
  }
  route = route_of(url, method, &idp, &idlen);
  if (route == R_NOTFOUND)
    return REPLY_STATIC(404, B_NOTFOUND);
  /* faults are for sends and retries only */
  if (route == R_LIST)
    return handle_list(c, r);

  r->fault = fault_decide();
  switch (r->fault.action)
  {
    case FA_DROP:
      return drop(c, r, method, url);
    case FA_500:
      return REPLY_STATIC(500, B_INTERNAL);
    case FA_503:
      return reply(c, r, 1, method, url, 503, B_503, sizeof(B_503) - 1,
                   MHD_RESPMEM_PERSISTENT, "text/plain", 0);
    case FA_429:
      return reply(c, r, 1, method, url, 429, B_RATE, sizeof(B_RATE) - 1,
                   MHD_RESPMEM_PERSISTENT, NULL,
                   r->fault.retry_after > 0 ? r->fault.retry_after : 1);
    case FA_DELAY:
      if (r->fault.delay_ms > 0)
      {
        r->stage = ST_AFTER_FAULT_DELAY;
        delay_connection(c, r->fault.delay_ms);
        return MHD_YES;
      }
      break;
    default:
      break;
  }

after_faults:
  route = route_of(url, method, &idp, &idlen);
  if (route == R_RETRY)
  {
    int64_t id;
    if (!parse_pos_int64(idp, idlen, &id))
      return reply_field_error(c, r, method, url, "message_id", 10, R_NOT_INT);
    if (!accept_retry(r, id))
      return REPLY_STATIC(400, B_UNKNOWN_MSG);
    if (r->fault.daa)
      return drop(c, r, method, url);
    return REPLY_STATIC(200, B_OK);
  }

  /* R_SEND: validate the body */
  {
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    verr_t e;
    int ok;
    if (media_type_is(ct, "application/json"))
      ok = validate_json(r, &e);
    else if (media_type_is(ct, "multipart/form-data"))
      ok = validate_multipart(r, ct, &e);
    else
    {
      ok = verr(&e, "_schema", 7,
                "Unsupported Content-Type (expected application/json or multipart/form-data).");
    }
    if (!ok)
      return reply_field_error(c, r, method, url, e.field, e.flen, e.reason);
  }

  /* magic conversation ids */
  {
    int64_t cv = r->conv;
    if (cv == 400)
      return REPLY_STATIC(400, B_INVALID_CONV);
    if (cv == 403 || (cfg.forbidden > 0 && cv == cfg.forbidden))
      return REPLY_STATIC(403, B_FORBIDDEN);
    if (cv == 404)
      return REPLY_STATIC(404, B_CONV_404);
    if (cv == 415)
      return REPLY_STATIC(415, B_415);
    if (cv == 429)
      return reply(c, r, 1, method, url, 429, B_RATE, sizeof(B_RATE) - 1,
                   MHD_RESPMEM_PERSISTENT, NULL, 7);
    if (cv == 500 || cv == 502)
      return REPLY_STATIC((unsigned) cv, B_INTERNAL);
    if (cv == 503)
      return reply(c, r, 1, method, url, 503, B_503, sizeof(B_503) - 1,
                   MHD_RESPMEM_PERSISTENT, "text/plain", 0);
    if (cv == 408000)
      return drop(c, r, method, url);
    if (cv == 6000001)
      return reply(c, r, 1, method, url, 200, "not json", 8, MHD_RESPMEM_PERSISTENT, NULL, 0);
    if (cv == 6000002)
      return REPLY_STATIC(200, B_OK);
    if (cv == 6000003)
    {
      int64_t id = accept_send(r);
      if (r->fault.daa)
        return drop(c, r, method, url);
      char *big = xmalloc(BIG_REPLY);
      int h = snprintf(big, 96, "{\"status\":\"success\",\"message_id\":%lld,\"padding\":\"",
                       (long long) id);
      memset(big + h, 'x', BIG_REPLY - (size_t) h - 2);
      big[BIG_REPLY - 2] = '"';
      big[BIG_REPLY - 1] = '}';
      return reply(c, r, 1, method, url, 200, big, BIG_REPLY, MHD_RESPMEM_MUST_FREE, NULL, 0);
    }
    if (cv > 5000000 && cv < 6000000)
    {
      r->stage = ST_AFTER_MAGIC_DELAY;
      delay_connection(c, (int) (cv - 5000000));
      return MHD_YES;
    }
  }

accept:
  return send_success(c, r, method, url, accept_send(r));
}

/* ------------------------------------------------------------------ */
/* /_mock control endpoints                                            */
/* ------------------------------------------------------------------ */

static void
stats_json(sb_t *b)
{
  sb_puts(b, "{\"requests\":");
  sb_put_u64(b, atomic_load(&st_requests));
  sb_puts(b, ",\"accepted\":");
  sb_put_u64(b, atomic_load(&st_accepted));
  sb_puts(b, ",\"retries_ok\":");
  sb_put_u64(b, atomic_load(&st_retries_ok));
  sb_puts(b, ",\"connections\":");
  sb_put_u64(b, atomic_load(&st_connections));
  sb_puts(b, ",\"open_connections\":");
  sb_put_u64(b, atomic_load(&st_open));
  sb_puts(b, ",\"v2_connections\":");
  sb_put_u64(b, atomic_load(&st_v2_connections));
  sb_puts(b, ",\"tls_handshakes\":");
  sb_put_u64(b, atomic_load(&st_tls_handshakes));
  sb_puts(b, ",\"tls_resumed\":");
  sb_put_u64(b, atomic_load(&st_tls_resumed));
  pthread_mutex_lock(&lat_mu);
  sb_printf(b, ",\"latency_ms\":%d,\"latency_jitter_ms\":%d", lat_ms, lat_jitter_ms);
  pthread_mutex_unlock(&lat_mu);
  sb_puts(b, ",\"status\":{");
  int first = 1;
  for (int i = 0; i < 600; i++)
  {
    uint64_t v = atomic_load(&st_status[i]);
    if (!v)
      continue;
    sb_printf(b, "%s\"%d\":", first ? "" : ",", i);
    sb_put_u64(b, v);
    first = 0;
  }
  sb_puts(b, "},\"dropped\":");
  sb_put_u64(b, atomic_load(&st_dropped));
  pthread_mutex_lock(&rec_mu);
  size_t distinct = cset_n;
  int64_t last_id = next_id - 1;
  pthread_mutex_unlock(&rec_mu);
  sb_puts(b, ",\"accepted_distinct_content\":");
  sb_put_u64(b, distinct);
  sb_puts(b, ",\"rate_limited\":");
  sb_put_u64(b, atomic_load(&st_rate_limited));
  sb_puts(b, ",\"rate_limited_by_key\":{");
  first = 1;
  pthread_mutex_lock(&keys_mu);
  for (int i = 0; i < KEY_BUCKETS; i++)
    for (keyst_t *e = key_tab[i]; e; e = e->next)
      if (e->limited)
      {
        if (!first)
          sb_putc(b, ',');
        sb_json_str(b, e->name, strlen(e->name));
        sb_putc(b, ':');
        sb_put_u64(b, e->limited);
        first = 0;
      }
  int64_t pm = rl_per_minute;
  pthread_mutex_unlock(&keys_mu);
  sb_puts(b, "},\"ratelimit_per_minute\":");
  sb_put_i64(b, pm);
  sb_puts(b, ",\"last_message_id\":");
  sb_put_i64(b, last_id);
  sb_puts(b, ",\"get_messages\":");
  sb_put_u64(b, atomic_load(&st_get_messages));
  wh_stats_json(b);
  sb_puts(b, "}");
}

static void
accepted_tsv(sb_t *b)
{
  pthread_mutex_lock(&rec_mu);
  sb_reserve(b, nrecs * 96 + 64);
  for (size_t i = 0; i < nrecs; i++)
  {
    record_t *rc = &recs[i];
    sb_puts(b, rc->kind ? "retry\t" : "send\t");
    sb_put_i64(b, rc->msg_id);
    sb_putc(b, '\t');
    sb_put_i64(b, rc->conv);
    sb_putc(b, '\t');
    sb_puts(b, ct_names[rc->ctype]);
    sb_putc(b, '\t');
    sb_copy_field(b, rc->key, strlen(rc->key));
    sb_putc(b, '\t');
    sb_put_i64(b, rc->time_us);
    sb_putc(b, '\t');
    if (rc->text)
      sb_copy_field(b, rc->text, rc->text_len);
    sb_putc(b, '\t');
    if (rc->image_len >= 0)
      sb_put_i64(b, rc->image_len);
    sb_putc(b, '\t');
    if (rc->image_len >= 0)
      sb_put_hex64(b, rc->image_hash);
    sb_putc(b, '\n');
  }
  pthread_mutex_unlock(&rec_mu);
}

static void
requests_json(sb_t *b)
{
  pthread_mutex_lock(&log_mu);
  uint64_t n = log_total < LOG_SIZE ? log_total : LOG_SIZE;
  sb_putc(b, '[');
  for (uint64_t k = 0; k < n; k++)
  {
    logent_t *e = &logring[(log_total - n + k) % LOG_SIZE];
    if (k)
      sb_putc(b, ',');
    sb_puts(b, "\n{\"seq\":");
    sb_put_u64(b, e->seq);
    sb_puts(b, ",\"method\":");
    sb_json_str(b, e->method, strlen(e->method));
    sb_puts(b, ",\"path\":");
    sb_json_str(b, e->path, strlen(e->path));
    sb_puts(b, ",\"key\":");
    if (e->has_key)
      sb_json_str(b, e->key, strlen(e->key));
    else
      sb_puts(b, "null");
    sb_puts(b, ",\"content_type\":");
    if (e->has_ctype)
      sb_json_str(b, e->ctype, strlen(e->ctype));
    else
      sb_puts(b, "null");
    sb_puts(b, ",\"status\":");
    sb_put_i64(b, e->status);
    sb_puts(b, ",\"body_len\":");
    sb_put_u64(b, e->body_len);
    sb_puts(b, ",\"body\":");
    sb_json_str(b, e->body, e->stored);
    sb_putc(b, '}');
  }
  sb_puts(b, "\n]\n");
  pthread_mutex_unlock(&log_mu);
}

static void
faults_clear_nolock(void)
{
  free(faults.next);
  memset(&faults, 0, sizeof(faults));
  faults.retry_after = 1;
  faults.delay_ms = 100;
  atomic_store(&faults_active, 0);
}

/* the webhook receiver, further down */
static pthread_mutex_t inbox_mu;
static void inbox_clear_nolock(void);

static void
mock_reset(void)
{
  pthread_mutex_lock(&rec_mu);
  for (size_t i = 0; i < nrecs; i++)
    free(recs[i].text);
  nrecs = 0;
  if (cset)
    memset(cset, 0, cset_cap * sizeof(*cset));
  cset_n = 0;
  pthread_mutex_unlock(&rec_mu);

  pthread_mutex_lock(&log_mu);
  log_total = 0;
  pthread_mutex_unlock(&log_mu);

  pthread_mutex_lock(&keys_mu);
  rl_per_minute = 0;
  rl_window_us = 60000000;
  keys_clear_nolock(1);
  pthread_mutex_unlock(&keys_mu);

  pthread_mutex_lock(&faults_mu);
  faults_clear_nolock();
  pthread_mutex_unlock(&faults_mu);

  pthread_mutex_lock(&inbox_mu);
  inbox_clear_nolock();
  pthread_mutex_unlock(&inbox_mu);
  wh_reset(cfg.seed);

  pthread_mutex_lock(&lat_mu);
  lat_ms = cfg.latency_ms;
  lat_jitter_ms = cfg.latency_jitter_ms;
  pthread_mutex_unlock(&lat_mu);
  atomic_store(&lat_prng_ctr, cfg.seed ^ LAT_SEED_MIX);

  atomic_store(&prng_ctr, cfg.seed);
  atomic_store(&st_get_messages, 0);
  atomic_store(&st_requests, 0);
  atomic_store(&st_accepted, 0);
  atomic_store(&st_retries_ok, 0);
  atomic_store(&st_connections, 0);
  atomic_store(&st_tls_handshakes, 0);
  atomic_store(&st_v2_connections, 0);
  atomic_store(&st_tls_resumed, 0);
  atomic_store(&st_dropped, 0);
  atomic_store(&st_rate_limited, 0);
  for (int i = 0; i < 600; i++)
    atomic_store(&st_status[i], 0);
}

static int
json_rate(cJSON *v, double *out, const char **err)
{
  if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1)
  {
    *err = "rates must be numbers between 0 and 1";
    return 0;
  }
  *out = v->valuedouble;
  return 1;
}

static int
json_nonneg_int(cJSON *v, int64_t max, int64_t *out)
{
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
      v->valuedouble > (double) max)
    return 0;
  *out = (int64_t) v->valuedouble;
  return 1;
}

/* Parse a fault config; returns NULL on success or an error message. */
static const char *
parse_faults(const char *body, size_t len, faults_t *f, int *seed_set, uint64_t *seed)
{
  const char *err = NULL;
  memset(f, 0, sizeof(*f));
  f->retry_after = 1;
  f->delay_ms = 100;
  cJSON *root = len ? cJSON_ParseWithLength(body, len) : cJSON_Parse("{}");
  if (!root || !cJSON_IsObject(root))
  {
    cJSON_Delete(root);
    return "body must be a JSON object";
  }
  for (cJSON *ch = root->child; ch && !err; ch = ch->next)
  {
    const char *k = ch->string;
    int64_t iv;
    if (strcmp(k, "rate_5xx") == 0)
      json_rate(ch, &f->r5xx, &err);
    else if (strcmp(k, "rate_429") == 0)
      json_rate(ch, &f->r429, &err);
    else if (strcmp(k, "rate_drop") == 0)
      json_rate(ch, &f->rdrop, &err);
    else if (strcmp(k, "rate_delay") == 0)
      json_rate(ch, &f->rdelay, &err);
    else if (strcmp(k, "rate_drop_after_accept") == 0)
      json_rate(ch, &f->rdaa, &err);
    else if (strcmp(k, "retry_after") == 0)
    {
      if (!json_nonneg_int(ch, 86400, &iv))
        err = "retry_after must be an integer 0..86400";
      else
        f->retry_after = (int) iv;
    }
    else if (strcmp(k, "delay_ms") == 0)
    {
      if (!json_nonneg_int(ch, 3600000, &iv))
        err = "delay_ms must be an integer 0..3600000";
      else
        f->delay_ms = (int) iv;
    }
    else if (strcmp(k, "seed") == 0)
    {
      if (!json_nonneg_int(ch, 9007199254740991LL, &iv))
        err = "seed must be a non-negative integer";
      else
      {
        *seed_set = 1;
        *seed = (uint64_t) iv;
      }
    }
    else if (strcmp(k, "next") == 0)
    {
      if (!cJSON_IsArray(ch))
      {
        err = "next must be an array";
        break;
      }
      int n = cJSON_GetArraySize(ch);
      f->next = calloc((size_t) (n ? n : 1), sizeof(next_t));
      if (!f->next)
        abort();
      for (cJSON *a = ch->child; a && !err; a = a->next)
      {
        next_t *nx = &f->next[f->nnext];
        nx->count = 1;
        nx->delay_ms = -1;
        if (!cJSON_IsObject(a))
        {
          err = "next entries must be objects";
          break;
        }
        for (cJSON *m = a->child; m && !err; m = m->next)
        {
          if (strcmp(m->string, "action") == 0)
          {
            char num[16];
            const char *s = NULL;
            if (cJSON_IsString(m))
              s = m->valuestring;
            else if (cJSON_IsNumber(m))
            {
              snprintf(num, sizeof(num), "%d", m->valueint);
              s = num;
            }
            nx->action = FA_NONE;
            for (int i = FA_500; s && i <= FA_PASS; i++)
              if (strcmp(s, fa_names[i]) == 0)
                nx->action = i;
            if (nx->action == FA_NONE)
              err = "action must be one of 500, 503, 429, drop, delay, drop_after_accept, pass";
          }
          else if (strcmp(m->string, "count") == 0)
          {
            if (!json_nonneg_int(m, 1000000000, &iv) || iv < 1)
              err = "count must be an integer >= 1";
            else
              nx->count = iv;
          }
          else if (strcmp(m->string, "delay_ms") == 0)
          {
            if (!json_nonneg_int(m, 3600000, &iv))
              err = "delay_ms must be an integer 0..3600000";
            else
              nx->delay_ms = (int) iv;
          }
          else
            err = "unknown key in next entry (allowed: action, count, delay_ms)";
        }
        if (!err && nx->action == FA_NONE)
          err = "next entry without action";
        f->nnext++;
      }
    }
    else
      err = "unknown key (allowed: rate_5xx, rate_429, rate_drop, rate_delay, "
            "rate_drop_after_accept, retry_after, delay_ms, seed, next)";
  }
  cJSON_Delete(root);
  if (err)
  {
    free(f->next);
    f->next = NULL;
  }
  return err;
}

static enum MHD_Result
mock_error(struct MHD_Connection *c, req_t *r, unsigned status, const char *msg)
{
  sb_t b = {0};
  sb_puts(&b, "{\"error\":{\"message\":");
  sb_json_str(&b, msg, strlen(msg));
  sb_puts(&b, "}}");
  return reply_sb(c, r, 0, NULL, NULL, status, &b, NULL);
}

/* ------------------------------------------------------------------ */
/* /_mock/inbox: a webhook receiver                                    */
/* ------------------------------------------------------------------ */

#define INBOX_SIZE 1000
#define INBOX_BODY (1u << 20)

typedef struct
{
  uint64_t seq; /* 1, 2, ... since start or reset */
  int64_t time_us;
  int status; /* the answer; 0 = connection closed */
  char *signature;
  char *ctype;
  char *body;
  size_t len, body_len;
} inbox_ent_t;

typedef struct
{
  int status;
  int64_t count;
} answer_t;

static pthread_mutex_t inbox_mu = PTHREAD_MUTEX_INITIALIZER;
static inbox_ent_t inbox[INBOX_SIZE];
static uint64_t inbox_total;
static int inbox_status = 200; /* the answer once the script is done */
static answer_t *inbox_next;
static int inbox_nnext, inbox_inext;

static void
inbox_ent_free(inbox_ent_t *e)
{
  free(e->signature);
  free(e->ctype);
  free(e->body);
  memset(e, 0, sizeof(*e));
}

static void
inbox_clear_nolock(void)
{
  for (int i = 0; i < INBOX_SIZE; i++)
    inbox_ent_free(&inbox[i]);
  inbox_total = 0;
  free(inbox_next);
  inbox_next = NULL;
  inbox_nnext = inbox_inext = 0;
  inbox_status = 200;
}

static char *
header_dup(struct MHD_Connection *c, const char *name)
{
  const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
  return v ? xstrndup(v, strlen(v)) : NULL;
}

static enum MHD_Result
inbox_receive(struct MHD_Connection *c, req_t *r)
{
  inbox_ent_t e = {0};
  e.time_us = r->time_us;
  e.signature = header_dup(c, "X-Partoo-Signature-v1");
  e.ctype = header_dup(c, MHD_HTTP_HEADER_CONTENT_TYPE);
  e.body_len = r->len;
  e.len = r->len < INBOX_BODY ? r->len : INBOX_BODY;
  e.body = xmalloc(e.len + 1);
  memcpy(e.body, r->body, e.len);
  e.body[e.len] = '\0';
  pthread_mutex_lock(&inbox_mu);
  if (inbox_inext < inbox_nnext)
  {
    answer_t *a = &inbox_next[inbox_inext];
    e.status = a->status;
    if (--a->count <= 0)
      inbox_inext++;
  }
  else
    e.status = inbox_status;
  e.seq = ++inbox_total;
  inbox_ent_t *slot = &inbox[(e.seq - 1) % INBOX_SIZE];
  inbox_ent_free(slot);
  *slot = e;
  pthread_mutex_unlock(&inbox_mu);
  if (e.status == 0)
  {
    r->done = 1;
    return MHD_NO;
  }
  if (e.status >= 200 && e.status < 300)
    return reply(c, r, 0, NULL, NULL, (unsigned) e.status, "{\"status\":\"ok\"}", 15,
                 MHD_RESPMEM_PERSISTENT, NULL, 0);
  sb_t b = {0};
  sb_printf(&b, "{\"error\":{\"message\":\"the mock inbox answers %d\"}}", e.status);
  return reply_sb(c, r, 0, NULL, NULL, (unsigned) e.status, &b, NULL);
}

static void
inbox_json(sb_t *b)
{
  pthread_mutex_lock(&inbox_mu);
  uint64_t n = inbox_total < INBOX_SIZE ? inbox_total : INBOX_SIZE;
  sb_putc(b, '[');
  for (uint64_t k = 0; k < n; k++)
  {
    inbox_ent_t *e = &inbox[(inbox_total - n + k) % INBOX_SIZE];
    sb_printf(b, "%s\n{\"seq\":%llu,\"time_us\":%lld,\"status\":%d,\"signature\":", k ? "," : "",
              (unsigned long long) e->seq, (long long) e->time_us, e->status);
    if (e->signature)
      sb_json_str(b, e->signature, strlen(e->signature));
    else
      sb_puts(b, "null");
    sb_puts(b, ",\"content_type\":");
    if (e->ctype)
      sb_json_str(b, e->ctype, strlen(e->ctype));
    else
      sb_puts(b, "null");
    sb_printf(b, ",\"body_len\":%zu,\"body\":", e->body_len);
    sb_json_str(b, e->body, e->len);
    sb_putc(b, '}');
  }
  sb_puts(b, "\n]\n");
  pthread_mutex_unlock(&inbox_mu);
}

/* GET /_mock/inbox/SEQ: the body exactly as received, its signature echoed */
static enum MHD_Result
inbox_one(struct MHD_Connection *c, req_t *r, const char *seqs)
{
  int64_t seq;
  if (!parse_pos_int64(seqs, strlen(seqs), &seq))
    return mock_error(c, r, 404, "no such delivery");
  pthread_mutex_lock(&inbox_mu);
  inbox_ent_t *e = &inbox[(uint64_t) (seq - 1) % INBOX_SIZE];
  if ((uint64_t) seq > inbox_total || e->seq != (uint64_t) seq)
  {
    pthread_mutex_unlock(&inbox_mu);
    return mock_error(c, r, 404, "no such delivery");
  }
  struct MHD_Response *resp = MHD_create_response_from_buffer(e->len, e->body, MHD_RESPMEM_MUST_COPY);
  if (resp)
  {
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            e->ctype ? e->ctype : "application/octet-stream");
    if (e->signature)
      MHD_add_response_header(resp, "X-Partoo-Signature-v1", e->signature);
  }
  pthread_mutex_unlock(&inbox_mu);
  r->done = 1;
  if (!resp)
    return MHD_NO;
  enum MHD_Result ret = MHD_queue_response(c, 200, resp);
  MHD_destroy_response(resp);
  return ret;
}

static int
answer_status_ok(cJSON *v, int *out)
{
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
      !(v->valuedouble == 0 || (v->valuedouble >= 200 && v->valuedouble <= 599)))
    return 0;
  *out = (int) v->valuedouble;
  return 1;
}

/* POST /_mock/inbox/answers {"status":200,"next":[{"status":500,"count":2}]} */
static const char *
inbox_configure(const char *body, size_t len)
{
  const char *err = NULL;
  int status = 200, nn = 0;
  answer_t *next = NULL;
  cJSON *root = len ? cJSON_ParseWithLength(body, len) : cJSON_Parse("{}");
  if (!root || !cJSON_IsObject(root))
    err = "body must be a JSON object";
  for (cJSON *ch = root ? root->child : NULL; ch && !err; ch = ch->next)
  {
    if (strcmp(ch->string, "status") == 0)
    {
      if (!answer_status_ok(ch, &status))
        err = "status must be 0 (close the connection) or 200..599";
    }
    else if (strcmp(ch->string, "next") == 0)
    {
      if (!cJSON_IsArray(ch))
      {
        err = "next must be an array";
        break;
      }
      next = calloc((size_t) cJSON_GetArraySize(ch) + 1, sizeof(answer_t));
      if (!next)
        abort();
      for (cJSON *a = ch->child; a && !err; a = a->next)
      {
        answer_t *x = &next[nn++];
        x->count = 1;
        x->status = -1;
        for (cJSON *m = cJSON_IsObject(a) ? a->child : NULL; m && !err; m = m->next)
        {
          if (strcmp(m->string, "status") == 0)
          {
            if (!answer_status_ok(m, &x->status))
              err = "status must be 0 (close the connection) or 200..599";
          }
          else if (strcmp(m->string, "count") == 0)
          {
            if (!json_nonneg_int(m, 1000000000, &x->count) || x->count < 1)
              err = "count must be an integer >= 1";
          }
          else
            err = "unknown key in next entry (allowed: status, count)";
        }
        if (!err && x->status < 0)
          err = "next entries must be objects with a status";
      }
    }
    else
      err = "unknown key (allowed: status, next)";
  }
  cJSON_Delete(root);
  if (err)
  {
    free(next);
    return err;
  }
  pthread_mutex_lock(&inbox_mu);
  free(inbox_next);
  inbox_next = next;
  inbox_nnext = nn;
  inbox_inext = 0;
  inbox_status = status;
  pthread_mutex_unlock(&inbox_mu);
  return NULL;
}

/* POST /_mock/status {"id":N,"status":"Failed"|null[,"webhook":true]} */
static enum MHD_Result
set_status(struct MHD_Connection *c, req_t *r)
{
  cJSON *root = r->len ? cJSON_ParseWithLength(r->body, r->len) : NULL;
  const char *err = NULL;
  int64_t id = 0;
  int status = -1, webhook = 0;
  if (!root || !cJSON_IsObject(root))
    err = "body must be a JSON object like {\"id\":1000001,\"status\":\"Success\"}";
  for (cJSON *ch = root ? root->child : NULL; ch && !err; ch = ch->next)
  {
    if (strcmp(ch->string, "id") == 0)
    {
      if (!json_nonneg_int(ch, INT64_MAX / 2, &id) || id < 1)
        err = "id must be a positive integer";
    }
    else if (strcmp(ch->string, "status") == 0)
    {
      if (cJSON_IsNull(ch))
        status = WH_NONE;
      else if (!cJSON_IsString(ch) || (status = wh_status_from_name(ch->valuestring)) == WH_NONE)
        err = "status must be Sending, Success, Failed or null";
    }
    else if (strcmp(ch->string, "webhook") == 0)
    {
      if (!cJSON_IsBool(ch))
        err = "webhook must be a boolean";
      webhook = cJSON_IsTrue(ch);
    }
    else
      err = "unknown key (allowed: id, status, webhook)";
  }
  cJSON_Delete(root);
  if (!err && (id == 0 || status < 0))
    err = "id and status are required";
  if (err)
    return mock_error(c, r, 400, err);
  pthread_mutex_lock(&rec_mu);
  if (id < msg_id_base || id >= next_id)
  {
    pthread_mutex_unlock(&rec_mu);
    return mock_error(c, r, 404, "unknown message id");
  }
  meta_t *m = &meta[id - msg_id_base];
  m->forced = (uint8_t) status;
  int now_status = meta_status(m, clock_us(CLOCK_REALTIME));
  wh_msg_t wm = {id, m->conv, ct_names[m->ctype], m->created_us, m->content};
  pthread_mutex_unlock(&rec_mu);
  int queued = webhook && wh_enqueue_status(&wm, now_status);
  sb_t b = {0};
  sb_printf(&b, "{\"status\":\"ok\",\"id\":%lld,\"message_status\":\"%s\",\"webhook_queued\":%s}",
            (long long) id, wh_status_names[now_status], queued ? "true" : "false");
  return reply_sb(c, r, 0, NULL, NULL, 200, &b, NULL);
}

/* POST /_mock/latency {"ms":N,"jitter_ms":J}: both optional, an omitted
 * one is 0; J <= N.  Sets them (NULL) or leaves them as they were (the
 * error). */
static const char *
parse_latency(const char *body, size_t len)
{
  cJSON *root = len ? cJSON_ParseWithLength(body, len) : NULL;
  int64_t ms = 0, j = 0;
  const char *err = NULL;
  if (!root || !cJSON_IsObject(root))
    err = "body must be a JSON object like {\"ms\":200,\"jitter_ms\":50}";
  for (cJSON *ch = root ? root->child : NULL; ch && !err; ch = ch->next)
  {
    if (strcmp(ch->string, "ms") == 0)
    {
      if (!json_nonneg_int(ch, LAT_MAX_MS, &ms))
        err = "ms must be an integer 0..600000";
    }
    else if (strcmp(ch->string, "jitter_ms") == 0)
    {
      if (!json_nonneg_int(ch, LAT_MAX_MS, &j))
        err = "jitter_ms must be an integer 0..600000";
    }
    else
      err = "unknown key (allowed: ms, jitter_ms)";
  }
  if (!err && j > ms)
    err = "jitter_ms must not exceed ms";
  cJSON_Delete(root);
  if (err)
    return err;
  pthread_mutex_lock(&lat_mu);
  lat_ms = (int) ms;
  lat_jitter_ms = (int) j;
  pthread_mutex_unlock(&lat_mu);
  return NULL;
}

static enum MHD_Result
handle_mock(struct MHD_Connection *c, req_t *r, const char *url, const char *method)
{
  int get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
  sb_t b = {0};
  if (r->too_big)
    return reply(c, r, 0, NULL, NULL, 413, B_413, sizeof(B_413) - 1, MHD_RESPMEM_PERSISTENT, NULL, 0);
  if (get && strcmp(url, "/_mock/stats") == 0)
  {
    stats_json(&b);
    return reply_sb(c, r, 0, NULL, NULL, 200, &b, NULL);
  }
  if (get && strcmp(url, "/_mock/accepted") == 0)
  {
    accepted_tsv(&b);
    return reply_sb(c, r, 0, NULL, NULL, 200, &b, "text/tab-separated-values; charset=utf-8");
  }
  if (get && strcmp(url, "/_mock/requests") == 0)
  {
    requests_json(&b);
    return reply_sb(c, r, 0, NULL, NULL, 200, &b, NULL);
  }
  if (post && strcmp(url, "/_mock/inbox") == 0)
    return inbox_receive(c, r);
  if (get && strcmp(url, "/_mock/inbox") == 0)
  {
    inbox_json(&b);
    return reply_sb(c, r, 0, NULL, NULL, 200, &b, NULL);
  }
  if (post && strcmp(url, "/_mock/inbox/answers") == 0)
  {
    const char *err = inbox_configure(r->body, r->len);
    if (err)
      return mock_error(c, r, 400, err);
    return reply(c, r, 0, NULL, NULL, 200, "{\"status\":\"ok\"}", 15, MHD_RESPMEM_PERSISTENT, NULL, 0);
  }
  if (get && strncmp(url, "/_mock/inbox/", 13) == 0)
    return inbox_one(c, r, url + 13);
  if (get && strcmp(url, "/_mock/webhooks") == 0)
  {
    wh_config_json(&b);
    return reply_sb(c, r, 0, NULL, NULL, 200, &b, NULL);
  }
  if (post && strcmp(url, "/_mock/webhooks") == 0)
  {
    const char *err = wh_configure(r->body, r->len);
    if (err)
      return mock_error(c, r, 400, err);
    wh_config_json(&b);
    return reply_sb(c, r, 0, NULL, NULL, 200, &b, NULL);
  }
  if (post && strcmp(url, "/_mock/status") == 0)
    return set_status(c, r);
  if (get && strcmp(url, "/_mock/health") == 0)
    return reply(c, r, 0, NULL, NULL, 200, "{\"status\":\"ok\"}", 15, MHD_RESPMEM_PERSISTENT, NULL, 0);
  if (post && strcmp(url, "/_mock/reset") == 0)
  {
    mock_reset();
    return reply(c, r, 0, NULL, NULL, 200, "{\"status\":\"ok\"}", 15, MHD_RESPMEM_PERSISTENT, NULL, 0);
  }
  if (post && strcmp(url, "/_mock/faults") == 0)
  {
    faults_t f;
    int seed_set = 0;
    uint64_t seed = 0;
    const char *err = parse_faults(r->body, r->len, &f, &seed_set, &seed);
    if (err)
      return mock_error(c, r, 400, err);
    int active = f.r5xx > 0 || f.r429 > 0 || f.rdrop > 0 || f.rdelay > 0 || f.rdaa > 0 || f.nnext > 0;
    pthread_mutex_lock(&faults_mu);
    free(faults.next);
    faults = f;
    atomic_store(&faults_active, active);
    pthread_mutex_unlock(&faults_mu);
    if (seed_set)
      atomic_store(&prng_ctr, seed);
    return reply(c, r, 0, NULL, NULL, 200, "{\"status\":\"ok\"}", 15, MHD_RESPMEM_PERSISTENT, NULL, 0);
  }
  if ((get || post) && strcmp(url, "/_mock/latency") == 0)
  {
    if (post)
    {
      const char *err = parse_latency(r->body, r->len);
      if (err)
        return mock_error(c, r, 400, err);
    }
    pthread_mutex_lock(&lat_mu);
    sb_printf(&b, "{\"ms\":%d,\"jitter_ms\":%d}", lat_ms, lat_jitter_ms);
    pthread_mutex_unlock(&lat_mu);
    return reply_sb(c, r, 0, NULL, NULL, 200, &b, NULL);
  }
  if (post && strcmp(url, "/_mock/ratelimit") == 0)
  {
    cJSON *root = r->len ? cJSON_ParseWithLength(r->body, r->len) : NULL;
    int64_t pm = -1, win = 60000;
    const char *err = NULL;
    if (!root || !cJSON_IsObject(root))
      err = "body must be a JSON object like {\"per_minute\":300}";
    for (cJSON *ch = root ? root->child : NULL; ch && !err; ch = ch->next)
    {
      if (strcmp(ch->string, "per_minute") == 0)
      {
        if (!json_nonneg_int(ch, 100000000, &pm))
          err = "per_minute must be an integer >= 0";
      }
      else if (strcmp(ch->string, "window_ms") == 0)
      {
        if (!json_nonneg_int(ch, 86400000, &win) || win < 1)
          err = "window_ms must be an integer >= 1";
      }
      else
        err = "unknown key (allowed: per_minute, window_ms)";
    }
    if (!err && pm < 0)
      err = "per_minute is required";
    cJSON_Delete(root);
    if (err)
      return mock_error(c, r, 400, err);
    pthread_mutex_lock(&keys_mu);
    rl_per_minute = pm;
    rl_window_us = win * 1000;
    keys_clear_nolock(0);
    pthread_mutex_unlock(&keys_mu);
    sb_printf(&b, "{\"status\":\"ok\",\"per_minute\":%lld,\"window_ms\":%lld}",
              (long long) pm, (long long) win);
    return reply_sb(c, r, 0, NULL, NULL, 200, &b, NULL);
  }
  return reply(c, r, 0, NULL, NULL, 404, B_NOTFOUND, sizeof(B_NOTFOUND) - 1,
               MHD_RESPMEM_PERSISTENT, NULL, 0);
}

/* ------------------------------------------------------------------ */
/* libmicrohttpd callbacks                                             */
/* ------------------------------------------------------------------ */

static enum MHD_Result
dispatch(struct MHD_Connection *c, req_t *r, const char *url, const char *method)
{
  if (strncmp(url, "/_mock/", 7) == 0)
    return handle_mock(c, r, url, method);
  if (strcmp(url, "/v2") == 0 || strncmp(url, "/v2/", 4) == 0)
    return handle_v2(c, r, url, method);
  return reply(c, r, 0, NULL, NULL, 404, B_NOTFOUND, sizeof(B_NOTFOUND) - 1,
               MHD_RESPMEM_PERSISTENT, NULL, 0);
}

/* Per connection: whether its TLS handshake, and its first /v2 request,
 * were counted yet */
typedef struct
{
  int counted;
  int v2;
} conn_t;

/* Counts c's connection in v2_connections at its first /v2 request: the
 * connections of the client under test, not those of a script reading
 * /_mock/stats meanwhile */
static void
count_v2_connection(struct MHD_Connection *c)
{
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  conn_t *cs = ci ? ci->socket_context : NULL;
  if (!cs || cs->v2)
    return;
  cs->v2 = 1;
  atomic_fetch_add_explicit(&st_v2_connections, 1, memory_order_relaxed);
}

/*
 * Counts the TLS handshake of c's connection, once, at its first request
 * (a connection that never carries a request is not counted), and whether
 * GnuTLS resumed an earlier session (an abbreviated handshake).  Nothing
 * for plain HTTP.
 */
static void
count_tls_handshake(struct MHD_Connection *c)
{
  if (!cfg.tls_cert)
    return;
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  conn_t *cs = ci ? ci->socket_context : NULL;
  if (!cs || cs->counted)
    return;
  cs->counted = 1;
  atomic_fetch_add_explicit(&st_tls_handshakes, 1, memory_order_relaxed);
  ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
  if (ci && ci->tls_session && gnutls_session_is_resumed((gnutls_session_t) ci->tls_session))
    atomic_fetch_add_explicit(&st_tls_resumed, 1, memory_order_relaxed);
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size,
           void **con_cls)
{
  req_t *r = *con_cls;
  if (!r)
  {
    r = calloc(1, sizeof(*r));
    if (!r)
      return MHD_NO;
    r->image_len = -1;
    *con_cls = r;
    count_tls_handshake(c);
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl)
    {
      char *end;
      errno = 0;
      unsigned long long v = strtoull(cl, &end, 10);
      if (errno == 0 && end != cl && v > MAX_BODY)
      {
        /* answer before reading the body (no 100 Continue is sent) */
        r->too_big = 1;
        r->time_us = clock_us(CLOCK_REALTIME);
        return dispatch(c, r, url, method);
      }
      if (errno == 0 && end != cl && v > 0)
      {
        r->cap = (size_t) v + 1;
        r->body = xmalloc(r->cap);
      }
    }
    return MHD_YES;
  }
  if (*upload_data_size)
  {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (r->done || r->too_big)
      return MHD_YES;
    if (r->len + n > MAX_BODY)
    {
      r->too_big = 1;
      free(r->body);
      r->body = NULL;
      r->len = r->cap = 0;
      return MHD_YES;
    }
    if (r->len + n + 1 > r->cap)
    {
      size_t nc = r->cap ? r->cap : 1024;
      while (nc < r->len + n + 1)
        nc *= 2;
      r->body = xrealloc(r->body, nc);
      r->cap = nc;
    }
    memcpy(r->body + r->len, upload_data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return MHD_YES;
  }
  if (r->pending)
  {
    /* the latency is over: send the answer held back */
    enum MHD_Result ret = MHD_queue_response(c, r->pending_status, r->pending);
    MHD_destroy_response(r->pending);
    r->pending = NULL;
    return ret;
  }
  if (r->pending_drop)
    return MHD_NO;
  if (r->done)
    return MHD_YES;
  if (r->stage == ST_NEW)
    r->time_us = clock_us(CLOCK_REALTIME);
  if (!r->body)
  {
    r->body = xmalloc(1);
    r->cap = 1;
  }
  r->body[r->len] = '\0';
  return dispatch(c, r, url, method);
}

static void
on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
  req_t *r = *con_cls;
  if (!r)
    return;
  if (r->pending)
    MHD_destroy_response(r->pending);
  free(r->body);
  free(r->text);
  free(r);
  *con_cls = NULL;
}

static void
on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
              enum MHD_ConnectionNotificationCode toe)
{
  if (toe == MHD_CONNECTION_NOTIFY_STARTED)
  {
    atomic_fetch_add_explicit(&st_connections, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st_open, 1, memory_order_relaxed);
    *socket_context = calloc(1, sizeof(conn_t));
  }
  else
  {
    atomic_fetch_sub_explicit(&st_open, 1, memory_order_relaxed);
    free(*socket_context);
    *socket_context = NULL;
  }
}

/* ------------------------------------------------------------------ */
/* main                                                                */
/* ------------------------------------------------------------------ */

static void
usage(FILE *f)
{
  fprintf(f,
          "usage: partoo-mock [--port N] [--port-file PATH] [--api-key KEY]...\n"
          "                   [--api-key-prefix PREFIX] [--forbidden-conversation N]\n"
          "                   [--threads N] [--seed N] [--tls-cert PEM --tls-key PEM]\n"
          "                   [--first-id N] [--latency-ms N [--latency-jitter-ms J]] [--quiet]\n"
          "                   [--webhook-url URL] [--webhook-key PEM] [--webhook-threads N]\n"
          "Serves a mock Partoo API on 127.0.0.1 (base URL http://127.0.0.1:PORT/v2)\n"
          "until SIGTERM/SIGINT.  See test/mock/README.md.\n");
}

static char *
read_file(const char *path)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  sb_t b = {0};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
    sb_put(&b, buf, n);
  fclose(f);
  if (!b.p)
    sb_puts(&b, "");
  return b.p;
}

static int
write_port_file(const char *path, unsigned port)
{
  char tmp[4096];
  snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long) getpid());
  FILE *f = fopen(tmp, "w");
  if (!f)
    return -1;
  fprintf(f, "%u\n", port);
  if (fclose(f) != 0 || rename(tmp, path) != 0)
  {
    unlink(tmp);
    return -1;
  }
  return 0;
}

static int
parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
  char *end;
  errno = 0;
  if (!s || !*s || *s == '-')
    return 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || v > max)
    return 0;
  *out = v;
  return 1;
}

int
main(int argc, char **argv)
{
  cfg.keys = calloc((size_t) argc + 1, sizeof(char *));
  for (int i = 1; i < argc; i++)
  {
    const char *a = argv[i];
    const char *val = NULL;
    char name[64];
    const char *eq = strchr(a, '=');
    if (strncmp(a, "--", 2) == 0 && eq && (size_t) (eq - a) < sizeof(name))
    {
      memcpy(name, a, (size_t) (eq - a));
      name[eq - a] = '\0';
      val = eq + 1;
      a = name;
    }
    int needs = strcmp(a, "--quiet") != 0 && strcmp(a, "--help") != 0 && strcmp(a, "-h") != 0;
    if (needs && !val)
    {
      if (i + 1 >= argc)
      {
        fprintf(stderr, "partoo-mock: %s needs a value\n", a);
        return 2;
      }
      val = argv[++i];
    }
    unsigned long long v;
    if (strcmp(a, "--port") == 0)
    {
      if (!parse_uint(val, 65535, &v))
        goto bad;
      cfg.port = (unsigned) v;
    }
    else if (strcmp(a, "--port-file") == 0)
      cfg.port_file = val;
    else if (strcmp(a, "--api-key") == 0)
      cfg.keys[cfg.nkeys++] = val;
    else if (strcmp(a, "--api-key-prefix") == 0)
    {
      cfg.key_prefix = val;
      cfg.key_prefix_len = strlen(val);
    }
    else if (strcmp(a, "--forbidden-conversation") == 0)
    {
      if (!parse_uint(val, INT64_MAX, &v))
        goto bad;
      cfg.forbidden = (int64_t) v;
    }
    else if (strcmp(a, "--threads") == 0)
    {
      if (!parse_uint(val, 256, &v) || v < 1)
        goto bad;
      cfg.threads = (unsigned) v;
    }
    else if (strcmp(a, "--first-id") == 0)
    {
      if (!parse_uint(val, (uint64_t) 1 << 60, &v) || v < 1)
        goto bad;
      msg_id_base = next_id = (int64_t) v;
    }
    else if (strcmp(a, "--seed") == 0)
    {
      if (!parse_uint(val, UINT64_MAX, &v))
        goto bad;
      cfg.seed = v;
    }
    else if (strcmp(a, "--webhook-url") == 0)
      cfg.webhook_url = val;
    else if (strcmp(a, "--webhook-key") == 0)
      cfg.webhook_key = val;
    else if (strcmp(a, "--webhook-threads") == 0)
    {
      if (!parse_uint(val, 64, &v) || v < 1)
        goto bad;
      cfg.webhook_threads = (unsigned) v;
    }
    else if (strcmp(a, "--latency-ms") == 0)
    {
      if (!parse_uint(val, LAT_MAX_MS, &v))
        goto bad;
      cfg.latency_ms = (int) v;
    }
    else if (strcmp(a, "--latency-jitter-ms") == 0)
    {
      if (!parse_uint(val, LAT_MAX_MS, &v))
        goto bad;
      cfg.latency_jitter_ms = (int) v;
    }
    else if (strcmp(a, "--tls-cert") == 0)
      cfg.tls_cert = val;
    else if (strcmp(a, "--tls-key") == 0)
      cfg.tls_key = val;
    else if (strcmp(a, "--quiet") == 0)
      cfg.quiet = 1;
    else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
    {
      usage(stdout);
      free(cfg.keys);
      return 0;
    }
    else
    {
      fprintf(stderr, "partoo-mock: unknown option %s\n", argv[i]);
      usage(stderr);
      return 2;
    }
    continue;
  bad:
    fprintf(stderr, "partoo-mock: bad value for %s: %s\n", a, val);
    return 2;
  }
  if (cfg.nkeys == 0 && !cfg.key_prefix)
    cfg.keys[cfg.nkeys++] = "test-key";
  if (cfg.latency_jitter_ms > cfg.latency_ms)
  {
    fprintf(stderr, "partoo-mock: --latency-jitter-ms must not exceed --latency-ms\n");
    return 2;
  }
  lat_ms = cfg.latency_ms;
  lat_jitter_ms = cfg.latency_jitter_ms;
  if (!cfg.tls_cert != !cfg.tls_key)
  {
    fprintf(stderr, "partoo-mock: --tls-cert and --tls-key go together\n");
    return 2;
  }

  char *cert_pem = NULL, *key_pem = NULL;
  if (cfg.webhook_url && !http_url_ok(cfg.webhook_url))
  {
    fprintf(stderr, "partoo-mock: --webhook-url must be an http:// or https:// URL\n");
    return 2;
  }
  if (cfg.tls_cert)
  {
    if (!MHD_is_feature_supported(MHD_FEATURE_TLS))
    {
      fprintf(stderr, "partoo-mock: libmicrohttpd has no TLS support\n");
      return 1;
    }
    cert_pem = read_file(cfg.tls_cert);
    key_pem = read_file(cfg.tls_key);
    if (!cert_pem || !key_pem)
    {
      fprintf(stderr, "partoo-mock: cannot read TLS cert/key: %s\n", strerror(errno));
      return 1;
    }
  }

  /*
   * Enough descriptors for thousands of connections: the soft limit goes
   * up to the hard one, and the connection limit is what that allows
   * (less a reserve for the listening socket, epoll, the webhook senders'
   * sockets and stdio), at most MAX_CONNECTIONS.  NB: libmicrohttpd splits
   * the limit evenly among the pool's threads, each accepting on its own.
   */
  struct rlimit rl;
  unsigned conn_limit = MAX_CONNECTIONS;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
  {
    if (rl.rlim_cur < rl.rlim_max)
    {
      rl.rlim_cur = rl.rlim_max;
      if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t) MAX_CONNECTIONS + FD_RESERVE)
      conn_limit = rl.rlim_cur > 2 * FD_RESERVE ? (unsigned) (rl.rlim_cur - FD_RESERVE) : 64;
  }

  /* signals: handled synchronously by main via sigwait */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  atomic_store(&prng_ctr, cfg.seed);
  atomic_store(&lat_prng_ctr, cfg.seed ^ LAT_SEED_MIX);
  logring = calloc(LOG_SIZE, sizeof(logent_t));
  if (!logring)
    abort();

  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&timer_cv, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&timer_thread, NULL, timer_main, NULL) != 0)
  {
    fprintf(stderr, "partoo-mock: cannot start timer thread\n");
    return 1;
  }
  {
    char err[512];
    if (wh_init(cfg.webhook_url, cfg.webhook_key, cfg.webhook_threads, cfg.seed, err,
                sizeof(err)) != 0)
    {
      fprintf(stderr, "partoo-mock: %s\n", err);
      return 1;
    }
  }

  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t) cfg.port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  struct MHD_OptionItem extra[4];
  int ne = 0;
  if (cfg.threads > 1)
    extra[ne++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t) cfg.threads, NULL};
  if (cert_pem)
  {
    extra[ne++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, key_pem};
    extra[ne++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, cert_pem};
  }
  extra[ne] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

  unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO;
  if (!cfg.quiet)
    flags |= MHD_USE_ERROR_LOG;
  if (cert_pem)
    flags |= MHD_USE_TLS;

  struct MHD_Daemon *d = MHD_start_daemon(
    flags, (uint16_t) cfg.port, NULL, NULL, on_request, NULL,
    MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &sa,
    MHD_OPTION_CONNECTION_LIMIT, conn_limit,
    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 60,
    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) (128 * 1024),
    MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int) 1024,
    MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
    MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
    MHD_OPTION_ARRAY, extra,
    MHD_OPTION_END);
  if (!d)
  {
    fprintf(stderr, "partoo-mock: cannot start HTTP daemon on 127.0.0.1:%u\n", cfg.port);
    return 1;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  unsigned port = info ? info->port : cfg.port;
  if (cfg.port_file && write_port_file(cfg.port_file, port) != 0)
  {
    fprintf(stderr, "partoo-mock: cannot write port file %s: %s\n", cfg.port_file, strerror(errno));
    MHD_stop_daemon(d);
    return 1;
  }
  if (!cfg.quiet && conn_limit < 4096)
    fprintf(stderr, "partoo-mock: at most %u connections (open-file limit)\n", conn_limit);
  printf("listening on 127.0.0.1:%u\n", port);
  fflush(stdout);

  int sig = 0;
  sigwait(&sigs, &sig);
  if (!cfg.quiet)
    fprintf(stderr, "partoo-mock: signal %d, shutting down\n", sig);

  /* resume every delayed connection before stopping the daemon */
  pthread_mutex_lock(&timer_mu);
  timer_stopping = 1;
  pthread_cond_signal(&timer_cv);
  pthread_mutex_unlock(&timer_mu);
  pthread_join(timer_thread, NULL);
  /* the senders first: one may be posting to this very daemon's inbox */
  wh_shutdown();
  MHD_stop_daemon(d);

  /* free everything so leak checkers stay quiet */
  mock_reset();
  free(recs);
  for (int64_t i = 0; i < next_id - msg_id_base; i++)
    free(meta[i].content);
  free(meta);
  for (size_t i = 0; i < convs_cap; i++)
    free(convs[i].ids);
  free(convs);
  free(cset);
  free(theap);
  free(logring);
  pthread_mutex_lock(&keys_mu);
  for (int i = 0; i < KEY_BUCKETS; i++)
  {
    keyst_t *e = key_tab[i];
    while (e)
    {
      keyst_t *nx = e->next;
      free(e->ring);
      free(e->name);
      free(e);
      e = nx;
    }
    key_tab[i] = NULL;
  }
  pthread_mutex_unlock(&keys_mu);
  free(cert_pem);
  free(key_pem);
  free(cfg.keys);
  return 0;
}
