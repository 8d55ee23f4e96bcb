/*-------------------------------------------------------------------------
 *
 * webhook_dispatch.c
 *		Dispatch status notifications: one partoo.messages row per
 *		(dispatchId, channelIdentifier) with provider 'dispatch', and the
 *		newest status of each of its parts in partoo.message_parts.
 *
 * A part's status is replaced only by a newer one in the order of
 * (statusDate, statusOrder) (partoo_dispatch_order_cmp); an older one is
 * stale.  The message's state follows from all its parts
 * (partoo_dispatch_state); its partoo_status, status_at and channel are
 * those of the newest status of any part, and its metadata is the first
 * dispatchMetadata seen.  A message is created by the first notification
 * that names it, concurrently safe (ON CONFLICT DO NOTHING on the unique
 * (external_id, recipient) index, then FOR UPDATE).
 *
 * Notifications are authenticated by a shared API key
 * (partoo.dispatch_webhook_key, defined here), compared in constant time.
 * They are never pending: the first one creates its message.
 *
 * Implements PartooWebhookFormat (webhook_format.h); calls only the
 * protocol core and server/db.c.  The batch steps run inside
 * partoo_store_begin/end; every statement is a kept plan run through
 * partoo_run_plan_latest().
 *
 * src/server/webhook_dispatch.c
 *
 *-------------------------------------------------------------------------
 */

#include "server/partoo.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "core/signature.h"
#include "core/webhook.h"
#include "server/db.h"
#include "server/webhook.h"
#include "server/webhook_format.h"

/*
 * Room for the "<len>:" prefix of a map key (dispatch_key) and its NUL,
 * whatever the length
 */
#define DISPATCH_KEY_OVERHEAD	24
/* Smallest key size and table size of the maps */
#define DISPATCH_MIN_KEY		16
#define DISPATCH_MIN_ENTRIES	16

char	   *partoo_dispatch_webhook_key = NULL;

/* The newest status of one part */
typedef struct DispatchPart
{
	int32		part;
	int32		total_parts;
	char	   *channel;
	char	   *status_raw;
	PartooDispatchStatus status;
	TimestampTz status_date;
	int32		status_order;
	bool		dirty;
} DispatchPart;

/* A dispatch message and its parts, as the events of a batch see it */
typedef struct DispatchMsg
{
	char	   *external_id;
	char	   *recipient;
	char	   *first_channel;	/* for a message created by this batch */
	char	   *first_metadata;
	bool		found;			/* locked and read */
	int64		id;
	bool		has_metadata;	/* messages.metadata is set */
	char	   *new_metadata;	/* dispatchMetadata to keep, if not */
	int32		total_parts;	/* the largest messageTotalParts seen */
	DispatchPart *parts;
	int			nparts;
	int			maxparts;
	bool		dirty;
} DispatchMsg;

/*
 * The dispatch messages of a batch: a list, and a map from
 * "<len>:<dispatchId><channelIdentifier>" to the list's entries.  The map
 * is dynahash with HASH_STRINGS, which keeps the key inline at the start
 * of each entry, so an entry is the key (keysize bytes, longer than any
 * key of the batch) followed by a pointer.
 */
typedef struct PartooDispatchSet
{
	HTAB	   *map;
	Size		keysize;
	DispatchMsg **all;
	int			n;
	int			max;
} PartooDispatchSet;

/* ----------------------------------------------------------------
 * Dispatch messages
 * ----------------------------------------------------------------
 */

static char *
dispatch_key(const char *external_id, const char *recipient)
{
	return psprintf("%zu:%s%s", strlen(external_id), external_id, recipient);
}

static void
dispatch_set_init(PartooDispatchSet *ds, Size maxkeylen)
{
	HASHCTL		ctl;

	memset(ds, 0, sizeof(PartooDispatchSet));
	ds->keysize = maxkeylen + 1;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = ds->keysize;
	ctl.entrysize = MAXALIGN(ds->keysize) + sizeof(DispatchMsg *);
	ctl.hcxt = CurrentMemoryContext;
	ds->map = hash_create("partoo webhook dispatch messages", 64, &ctl,
						  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/*
 * The map's slot for (external_id, recipient): entered, holding NULL, if
 * new and enter is true; NULL if absent and enter is false.
 */
static DispatchMsg **
dispatch_set_lookup(PartooDispatchSet *ds, const char *external_id,
					const char *recipient, bool enter)
{
	char	   *key = dispatch_key(external_id, recipient);
	char	   *entry;
	bool		found;

	if (strlen(key) >= ds->keysize)
		elog(ERROR, "dispatch key longer than expected");
	entry = hash_search(ds->map, key, enter ? HASH_ENTER : HASH_FIND, &found);
	pfree(key);
	if (entry == NULL)
		return NULL;
	if (!found)
		*(DispatchMsg **) (entry + MAXALIGN(ds->keysize)) = NULL;
	return (DispatchMsg **) (entry + MAXALIGN(ds->keysize));
}

/* The slot of (external_id, recipient), for a map used as an index */
static DispatchMsg **
dispatch_set_slot(PartooDispatchSet *ds, const char *external_id, const char *recipient)
{
	return dispatch_set_lookup(ds, external_id, recipient, true);
}

/*
 * The message of (external_id, recipient), created and added to the list
 * when create is true; NULL if absent otherwise.
 */
static DispatchMsg *
dispatch_set_get(PartooDispatchSet *ds, const char *external_id,
				 const char *recipient, bool create)
{
	DispatchMsg **slot;

	slot = dispatch_set_lookup(ds, external_id, recipient, create);
	if (slot == NULL)
		return NULL;
	if (*slot == NULL)
	{
		DispatchMsg *m = palloc0(sizeof(DispatchMsg));

		m->external_id = pstrdup(external_id);
		m->recipient = pstrdup(recipient);
		*slot = m;
		if (ds->n == ds->max)
		{
			ds->max = Max(DISPATCH_MIN_ENTRIES, ds->max * 2);
			ds->all = ds->all == NULL ?
				palloc(sizeof(DispatchMsg *) * ds->max) :
				repalloc(ds->all, sizeof(DispatchMsg *) * ds->max);
		}
		ds->all[ds->n++] = m;
	}
	return *slot;
}

static int
cmp_dispatch(const void *a, const void *b)
{
	const DispatchMsg *x = *(DispatchMsg *const *) a;
	const DispatchMsg *y = *(DispatchMsg *const *) b;
	int			c = strcmp(x->external_id, y->external_id);

	return c != 0 ? c : strcmp(x->recipient, y->recipient);
}

/* NB: linear, which the parser's bound on messageTotalParts keeps cheap */
static DispatchPart *
find_part(DispatchMsg *m, int32 part)
{
	int			i;

	for (i = 0; i < m->nparts; i++)
		if (m->parts[i].part == part)
			return &m->parts[i];
	return NULL;
}

static DispatchPart *
add_part(DispatchMsg *m, int32 part)
{
	DispatchPart *p;

	if (m->nparts == m->maxparts)
	{
		m->maxparts = Max(4, m->maxparts * 2);
		m->parts = m->parts == NULL ?
			palloc(sizeof(DispatchPart) * m->maxparts) :
			repalloc(m->parts, sizeof(DispatchPart) * m->maxparts);
	}
	p = &m->parts[m->nparts++];
	memset(p, 0, sizeof(DispatchPart));
	p->part = part;
	return p;
}

/*
 * Lock the dispatch messages of sorted[0..k) that exist, in id order; mark
 * them found and map their ids to them in *by_id (made here, with room
 * for k), their ids in *ids.  Returns how many were found.
 */
static int
lock_message_rows(DispatchMsg **sorted, int k, HTAB **by_id, Datum **ids)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {TEXTARRAYOID, TEXTARRAYOID};
	Datum		args[2];
	Datum	   *ext = palloc(sizeof(Datum) * k);
	Datum	   *rcpt = palloc(sizeof(Datum) * k);
	HASHCTL		ctl;
	PartooDispatchSet ds;
	Size		maxkey = DISPATCH_MIN_KEY;
	int			i;
	uint64		r;
	int			rc;

	/* a map of this subset, to find a returned row's message */
	for (i = 0; i < k; i++)
	{
		ext[i] = CStringGetTextDatum(sorted[i]->external_id);
		rcpt[i] = CStringGetTextDatum(sorted[i]->recipient);
		maxkey = Max(maxkey, strlen(sorted[i]->external_id) +
					 strlen(sorted[i]->recipient) + DISPATCH_KEY_OVERHEAD);
	}
	dispatch_set_init(&ds, maxkey);
	for (i = 0; i < k; i++)
		*dispatch_set_slot(&ds, sorted[i]->external_id, sorted[i]->recipient) = sorted[i];

	partoo_plan_once(&plan,
					 "SELECT m.external_id, m.recipient, m.id, m.metadata IS NOT NULL"
					 "  FROM partoo.messages m"
					 "  JOIN unnest($1, $2) AS u(e, r) ON m.external_id = u.e AND m.recipient = u.r"
					 " WHERE m.provider = 'dispatch'"
					 " ORDER BY m.id FOR UPDATE OF m",
					 2, types, PARTOO_WEBHOOK_PLAN);
	args[0] = partoo_make_array(ext, NULL, k, TEXTOID);
	args[1] = partoo_make_array(rcpt, NULL, k, TEXTOID);
	rc = partoo_run_plan_latest(plan, args, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not lock dispatch messages: %s", SPI_result_code_string(rc));

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(int64) + sizeof(DispatchMsg *);
	ctl.hcxt = CurrentMemoryContext;
	*by_id = hash_create("partoo dispatch ids", Max(k, DISPATCH_MIN_ENTRIES), &ctl,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	*ids = palloc(sizeof(Datum) * Max(SPI_processed, 1));
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	t = SPI_tuptable->vals[r];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		DispatchMsg *dm = *dispatch_set_slot(&ds, partoo_spi_text(t, d, 1),
											 partoo_spi_text(t, d, 2));
		int64		id = partoo_spi_int64(t, d, 3, &isnull);
		char	   *slot;

		if (dm == NULL)
			elog(ERROR, "dispatch message was not asked for");
		dm->found = true;
		dm->id = id;
		dm->has_metadata = DatumGetBool(SPI_getbinval(t, d, 4, &isnull));
		(*ids)[r] = Int64GetDatum(id);
		slot = hash_search(*by_id, &id, HASH_ENTER, NULL);
		memcpy(slot + sizeof(int64), &dm, sizeof(DispatchMsg *));
	}
	return (int) SPI_processed;
}

/* Read the parts of the messages ids[0..n) into their entry of by_id */
static void
read_parts(Datum *ids, int n, HTAB *by_id)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		args[1];
	uint64		r;
	int			rc;

	partoo_plan_once(&plan,
					 "SELECT message_id, part, total_parts, channel, status, status_date, status_order"
					 "  FROM partoo.message_parts WHERE message_id = ANY ($1)",
					 1, types, PARTOO_WEBHOOK_PLAN);
	args[0] = partoo_make_array(ids, NULL, n, INT8OID);
	rc = partoo_run_plan_latest(plan, args, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.message_parts: %s", SPI_result_code_string(rc));
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	t = SPI_tuptable->vals[r];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		id = partoo_spi_int64(t, d, 1, &isnull);
		char	   *slot = hash_search(by_id, &id, HASH_FIND, NULL);
		DispatchMsg *dm;
		DispatchPart *p;
		Datum		v;

		if (slot == NULL)
			continue;
		memcpy(&dm, slot + sizeof(int64), sizeof(DispatchMsg *));
		p = add_part(dm, DatumGetInt32(SPI_getbinval(t, d, 2, &isnull)));
		v = SPI_getbinval(t, d, 3, &isnull);
		p->total_parts = isnull ? p->part : DatumGetInt32(v);
		dm->total_parts = Max(dm->total_parts, p->total_parts);
		p->channel = partoo_spi_text(t, d, 4);
		p->status_raw = partoo_spi_text(t, d, 5);
		p->status = partoo_dispatch_status_from_name(p->status_raw);
		p->status_date = DatumGetTimestampTz(SPI_getbinval(t, d, 6, &isnull));
		p->status_order = DatumGetInt32(SPI_getbinval(t, d, 7, &isnull));
	}
}

/*
 * Lock and read the dispatch messages of sorted[0..k) that exist, with
 * their parts; mark them found.  Returns how many were found.
 */
static int
lock_dispatch_messages(DispatchMsg **sorted, int k)
{
	HTAB	   *by_id;
	Datum	   *ids;
	int			nfound;

	nfound = lock_message_rows(sorted, k, &by_id, &ids);
	if (nfound > 0)
		read_parts(ids, nfound, by_id);
	return nfound;
}

/*
 * Lock and read every dispatch message of the batch with its parts,
 * creating those not seen before first (ON CONFLICT DO NOTHING, so that
 * concurrent ingests agree on one row).  Messages are handled in a stable
 * order so that concurrent batches do not deadlock.
 */
static void
fetch_dispatch_messages(PartooDispatchSet *ds, const char *created_by)
{
	static SPIPlanPtr plan_create = NULL;
	Oid			create_types[5] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTOID};
	Datum		args[5];
	int			n = ds->n;
	DispatchMsg **sorted;
	DispatchMsg **missing;
	Datum	   *ext,
			   *rcpt,
			   *chan,
			   *meta;
	bool	   *chan_null,
			   *meta_null;
	int			nmissing = 0;
	int			i;
	int			rc;

	if (n == 0)
		return;
	sorted = palloc(sizeof(DispatchMsg *) * n);
	memcpy(sorted, ds->all, sizeof(DispatchMsg *) * n);
	qsort(sorted, n, sizeof(DispatchMsg *), cmp_dispatch);
	if (lock_dispatch_messages(sorted, n) == n)
		return;

	missing = palloc(sizeof(DispatchMsg *) * n);
	for (i = 0; i < n; i++)
		if (!sorted[i]->found)
			missing[nmissing++] = sorted[i];
	ext = palloc(sizeof(Datum) * nmissing);
	rcpt = palloc(sizeof(Datum) * nmissing);
	chan = palloc(sizeof(Datum) * nmissing);
	meta = palloc(sizeof(Datum) * nmissing);
	chan_null = palloc(sizeof(bool) * nmissing);
	meta_null = palloc(sizeof(bool) * nmissing);
	for (i = 0; i < nmissing; i++)
	{
		ext[i] = CStringGetTextDatum(missing[i]->external_id);
		rcpt[i] = CStringGetTextDatum(missing[i]->recipient);
		chan[i] = partoo_text_datum(missing[i]->first_channel, &chan_null[i]);
		meta[i] = partoo_text_datum(missing[i]->first_metadata, &meta_null[i]);
	}
	partoo_plan_once(&plan_create,
							 "INSERT INTO partoo.messages"
							 "  (provider, external_id, recipient, state, channel, metadata, created_by)"
							 " SELECT 'dispatch', u.e, u.r, 'sent', u.c, u.meta::jsonb, $5"
							 "   FROM unnest($1, $2, $3, $4) AS u(e, r, c, meta)"
							 " ON CONFLICT (external_id, recipient) WHERE provider = 'dispatch' DO NOTHING",
							 5, create_types, PARTOO_WEBHOOK_PLAN);
	args[0] = partoo_make_array(ext, NULL, nmissing, TEXTOID);
	args[1] = partoo_make_array(rcpt, NULL, nmissing, TEXTOID);
	args[2] = partoo_make_array(chan, chan_null, nmissing, TEXTOID);
	args[3] = partoo_make_array(meta, meta_null, nmissing, TEXTOID);
	args[4] = CStringGetTextDatum(created_by);
	rc = partoo_run_plan_latest(plan_create, args, NULL);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not create dispatch messages: %s", SPI_result_code_string(rc));
	if (lock_dispatch_messages(missing, nmissing) != nmissing)
		elog(ERROR, "could not find dispatch messages just created");
}

static void
part_order(const DispatchPart *p, PartooDispatchOrder *o)
{
	o->status_date = p->status_date;
	o->status_order = p->status_order;
	o->status = p->status;
	o->status_raw = p->status_raw;
}

/* Decide a dispatch event against its part; record the change in memory */
static const char *
decide_dispatch(DispatchMsg *m, PartooIngestEvent *ev)
{
	DispatchPart *p = find_part(m, ev->part);
	bool		newer;

	ev->has_message_id = true;
	ev->message_id = m->id;
	if (ev->total_parts > m->total_parts)
	{
		/* the largest total seen, whatever the order: the state depends on it */
		m->total_parts = ev->total_parts;
		m->dirty = true;
	}
	if (!m->has_metadata && m->new_metadata == NULL && ev->dispatch_metadata != NULL)
	{
		m->new_metadata = ev->dispatch_metadata;
		m->dirty = true;
	}

	if (p == NULL)
		newer = true;
	else
	{
		PartooDispatchOrder cur;
		PartooDispatchOrder in;

		part_order(p, &cur);
		in.status_date = ev->event_at;
		in.status_order = ev->status_order;
		in.status = ev->dstatus;
		in.status_raw = ev->status_raw;
		newer = partoo_dispatch_order_cmp(&in, &cur) > 0;
	}
	if (!newer)
		return "stale";
	if (p == NULL)
		p = add_part(m, ev->part);
	p->total_parts = ev->total_parts;
	if (ev->channel != NULL)
		p->channel = ev->channel;
	p->status_raw = ev->status_raw;
	p->status = ev->dstatus;
	p->status_date = ev->event_at;
	p->status_order = ev->status_order;
	p->dirty = true;
	m->dirty = true;
	return "applied";
}

/* ----------------------------------------------------------------
 * Writing back
 * ----------------------------------------------------------------
 */

#define ROWS_MIN	16			/* initial capacity of PartRows */

/* Rows of partoo.message_parts to upsert, one array per column */
typedef struct PartRows
{
	int			n;
	int			max;
	Datum	   *message_id;
	Datum	   *part;
	Datum	   *total;
	Datum	   *channel;
	bool	   *channel_null;
	Datum	   *status;
	Datum	   *date;
	Datum	   *order;
} PartRows;

/* Rows of partoo.messages to update, one array per column */
typedef struct MsgRows
{
	int			n;
	Datum	   *id;
	Datum	   *state;
	Datum	   *status;
	Datum	   *status_at;
	Datum	   *channel;
	bool	   *channel_null;
	Datum	   *meta;
	bool	   *meta_null;
} MsgRows;

static void
part_rows_resize(PartRows *r, int max)
{
	if (r->max == 0)
	{
		r->message_id = palloc(sizeof(Datum) * max);
		r->part = palloc(sizeof(Datum) * max);
		r->total = palloc(sizeof(Datum) * max);
		r->channel = palloc(sizeof(Datum) * max);
		r->channel_null = palloc(sizeof(bool) * max);
		r->status = palloc(sizeof(Datum) * max);
		r->date = palloc(sizeof(Datum) * max);
		r->order = palloc(sizeof(Datum) * max);
	}
	else
	{
		r->message_id = repalloc(r->message_id, sizeof(Datum) * max);
		r->part = repalloc(r->part, sizeof(Datum) * max);
		r->total = repalloc(r->total, sizeof(Datum) * max);
		r->channel = repalloc(r->channel, sizeof(Datum) * max);
		r->channel_null = repalloc(r->channel_null, sizeof(bool) * max);
		r->status = repalloc(r->status, sizeof(Datum) * max);
		r->date = repalloc(r->date, sizeof(Datum) * max);
		r->order = repalloc(r->order, sizeof(Datum) * max);
	}
	r->max = max;
}

static void
part_rows_add(PartRows *r, int64 message_id, const DispatchPart *p)
{
	int			i = r->n;

	if (r->n == r->max)
		part_rows_resize(r, Max(ROWS_MIN, r->max * 2));
	r->message_id[i] = Int64GetDatum(message_id);
	r->part[i] = Int32GetDatum(p->part);
	r->total[i] = Int32GetDatum(p->total_parts);
	r->channel[i] = partoo_text_datum(p->channel, &r->channel_null[i]);
	r->status[i] = CStringGetTextDatum(p->status_raw);
	r->date[i] = TimestampTzGetDatum(p->status_date);
	r->order[i] = Int32GetDatum(p->status_order);
	r->n++;
}

static void
msg_rows_init(MsgRows *r, int max)
{
	max = Max(max, 1);
	r->n = 0;
	r->id = palloc(sizeof(Datum) * max);
	r->state = palloc(sizeof(Datum) * max);
	r->status = palloc(sizeof(Datum) * max);
	r->status_at = palloc(sizeof(Datum) * max);
	r->channel = palloc(sizeof(Datum) * max);
	r->channel_null = palloc(sizeof(bool) * max);
	r->meta = palloc(sizeof(Datum) * max);
	r->meta_null = palloc(sizeof(bool) * max);
}

/*
 * The newest status of all of m's parts (ties: the higher part number),
 * or NULL when it has none
 */
static DispatchPart *
newest_part(DispatchMsg *m)
{
	DispatchPart *newest = NULL;
	int			i;

	for (i = 0; i < m->nparts; i++)
	{
		DispatchPart *p = &m->parts[i];
		PartooDispatchOrder a,
					b;
		int			c;

		if (newest == NULL)
		{
			newest = p;
			continue;
		}
		part_order(p, &a);
		part_order(newest, &b);
		c = partoo_dispatch_order_cmp(&a, &b);
		if (c > 0 || (c == 0 && p->part > newest->part))
			newest = p;
	}
	return newest;
}

/* m's local state, from the newest status of each of its parts */
static const char *
message_state(DispatchMsg *m)
{
	PartooDispatchStatus *st = palloc(sizeof(PartooDispatchStatus) * Max(m->nparts, 1));
	int32	   *parts = palloc(sizeof(int32) * Max(m->nparts, 1));
	int			i;

	for (i = 0; i < m->nparts; i++)
	{
		st[i] = m->parts[i].status;
		parts[i] = m->parts[i].part;
	}
	return partoo_dispatch_state(st, parts, m->nparts, m->total_parts);
}

/*
 * m's new row: its state from all parts; partoo_status, status_at and
 * channel from the newest status of any part
 */
static void
msg_rows_add(MsgRows *r, DispatchMsg *m)
{
	DispatchPart *newest = newest_part(m);
	int			i = r->n;

	r->id[i] = Int64GetDatum(m->id);
	r->state[i] = CStringGetTextDatum(message_state(m));
	r->status[i] = CStringGetTextDatum(newest ? newest->status_raw : "");
	r->status_at[i] = TimestampTzGetDatum(newest ? newest->status_date : GetCurrentTimestamp());
	r->channel[i] = partoo_text_datum(newest ? newest->channel : NULL, &r->channel_null[i]);
	r->meta[i] = partoo_text_datum(m->new_metadata, &r->meta_null[i]);
	r->n++;
}

static void
upsert_parts(const PartRows *r)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[7] = {INT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID};
	Datum		args[7];
	int			rc;

	partoo_plan_once(&plan,
					 "INSERT INTO partoo.message_parts AS p"
					 "  (message_id, part, total_parts, channel, status, status_date, status_order)"
					 " SELECT unnest($1), unnest($2), unnest($3), unnest($4), unnest($5),"
					 "        unnest($6), unnest($7)"
					 " ON CONFLICT (message_id, part) DO UPDATE"
					 "   SET total_parts = EXCLUDED.total_parts, channel = EXCLUDED.channel,"
					 "       status = EXCLUDED.status, status_date = EXCLUDED.status_date,"
					 "       status_order = EXCLUDED.status_order",
					 7, types, PARTOO_WEBHOOK_PLAN);
	args[0] = partoo_make_array(r->message_id, NULL, r->n, INT8OID);
	args[1] = partoo_make_array(r->part, NULL, r->n, INT4OID);
	args[2] = partoo_make_array(r->total, NULL, r->n, INT4OID);
	args[3] = partoo_make_array(r->channel, r->channel_null, r->n, TEXTOID);
	args[4] = partoo_make_array(r->status, NULL, r->n, TEXTOID);
	args[5] = partoo_make_array(r->date, NULL, r->n, TIMESTAMPTZOID);
	args[6] = partoo_make_array(r->order, NULL, r->n, INT4OID);
	rc = partoo_run_plan_latest(plan, args, NULL);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not write partoo.message_parts: %s", SPI_result_code_string(rc));
}

static void
update_messages(const MsgRows *r)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[6] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TIMESTAMPTZARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		args[6];
	int			rc;

	partoo_plan_once(&plan,
					 "UPDATE partoo.messages m"
					 "   SET state = u.state, partoo_status = u.status, status_at = u.status_at,"
					 "       channel = coalesce(u.channel, m.channel),"
					 "       metadata = coalesce(m.metadata, u.meta::jsonb), updated_at = now()"
					 "  FROM (SELECT unnest($1) AS id, unnest($2) AS state, unnest($3) AS status,"
					 "               unnest($4) AS status_at, unnest($5) AS channel,"
					 "               unnest($6) AS meta) AS u"
					 " WHERE m.id = u.id",
					 6, types, PARTOO_WEBHOOK_PLAN);
	args[0] = partoo_make_array(r->id, NULL, r->n, INT8OID);
	args[1] = partoo_make_array(r->state, NULL, r->n, TEXTOID);
	args[2] = partoo_make_array(r->status, NULL, r->n, TEXTOID);
	args[3] = partoo_make_array(r->status_at, NULL, r->n, TIMESTAMPTZOID);
	args[4] = partoo_make_array(r->channel, r->channel_null, r->n, TEXTOID);
	args[5] = partoo_make_array(r->meta, r->meta_null, r->n, TEXTOID);
	rc = partoo_run_plan_latest(plan, args, NULL);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "could not update dispatch messages: %s", SPI_result_code_string(rc));
}

/* Write back the changed parts, and every changed message's new row */
static void
write_dispatch_messages(PartooDispatchSet *ds)
{
	PartRows	parts = {0};
	MsgRows		msgs;
	int			mi;
	int			i;

	part_rows_resize(&parts, ROWS_MIN);
	msg_rows_init(&msgs, ds->n);
	for (mi = 0; mi < ds->n; mi++)
	{
		DispatchMsg *m = ds->all[mi];

		if (!m->dirty)
			continue;
		for (i = 0; i < m->nparts; i++)
			if (m->parts[i].dirty)
				part_rows_add(&parts, m->id, &m->parts[i]);
		msg_rows_add(&msgs, m);
	}
	if (parts.n > 0)
		upsert_parts(&parts);
	if (msgs.n > 0)
		update_messages(&msgs);
}

/* ----------------------------------------------------------------
 * The setting, recognition, parsing, authentication
 * ----------------------------------------------------------------
 */

static void
dispatch_define_gucs(void)
{
	DefineCustomStringVariable("partoo.dispatch_webhook_key",
							   "API key the dispatch status webhook must present.",
							   "Compared in constant time with the signature argument for dispatch payloads. "
							   "Only superusers can set or see it.",
							   &partoo_dispatch_webhook_key,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
}

static bool
dispatch_recognise(const struct cJSON *root)
{
	return partoo_webhook_is_dispatch(root);
}

static PartooWebhookEvent *
dispatch_parse(const struct cJSON *root, const char *body, size_t len,
			   PartooWebhookError *err)
{
	return partoo_webhook_parse_dispatch(root, body, len, err);
}

/*
 * signature is the webhook's API key.  55000 when partoo.dispatch_webhook_key
 * is empty, unless no key is required and none came.
 */
static void
dispatch_authenticate(const PartooIngestEvent *ev, text *signature, bool required)
{
	if (partoo_dispatch_webhook_key == NULL || partoo_dispatch_webhook_key[0] == '\0')
	{
		if (required || signature != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("partoo.dispatch_webhook_key is not set"),
					 errdetail("Dispatch status notifications are authenticated by their API key, and no key is configured to compare it with."),
					 errhint("Have a superuser set partoo.dispatch_webhook_key to the API key configured for the dispatch webhook.")));
		return;
	}
	if (signature == NULL)
	{
		if (required)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("webhook API key missing"),
					 errdetail("Dispatch status notifications carry their API key in a header."),
					 errhint("Pass that header's value as signature.")));
		return;
	}
	if (!partoo_secret_equal(VARDATA_ANY(signature), VARSIZE_ANY_EXHDR(signature),
							 partoo_dispatch_webhook_key,
							 strlen(partoo_dispatch_webhook_key)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("invalid webhook API key"),
				 errdetail("The API key does not match partoo.dispatch_webhook_key.")));
}

/* ----------------------------------------------------------------
 * The batch steps (PartooWebhookFormat)
 * ----------------------------------------------------------------
 */

/* The dispatch messages the events name */
static void *
dispatch_begin(PartooIngestEvent **evs, int n)
{
	PartooDispatchSet *ds = palloc(sizeof(PartooDispatchSet));
	Size		maxkey = DISPATCH_MIN_KEY;
	int			i;

	for (i = 0; i < n; i++)
		maxkey = Max(maxkey, strlen(evs[i]->dispatch_id) +
					 strlen(evs[i]->recipient) + DISPATCH_KEY_OVERHEAD);
	dispatch_set_init(ds, maxkey);
	for (i = 0; i < n; i++)
	{
		PartooIngestEvent *ev = evs[i];
		DispatchMsg *m = dispatch_set_get(ds, ev->dispatch_id, ev->recipient, true);

		if (m->first_channel == NULL)
			m->first_channel = ev->channel;
		if (m->first_metadata == NULL)
			m->first_metadata = ev->dispatch_metadata;
	}
	return ds;
}

/* Create, lock and read the messages and their parts (never pending) */
static void
dispatch_fetch(void *batch, PartooFetchMode mode, const char *created_by)
{
	if (mode != PARTOO_FETCH_INGEST)
		elog(ERROR, "dispatch events are never pending");
	fetch_dispatch_messages((PartooDispatchSet *) batch, created_by);
}

/* applied or stale */
static const char *
dispatch_decide(void *batch, PartooIngestEvent *ev)
{
	DispatchMsg *m = dispatch_set_get((PartooDispatchSet *) batch,
									  ev->dispatch_id, ev->recipient, false);

	if (m == NULL || !m->found)
		elog(ERROR, "dispatch message of an event was not fetched");
	return decide_dispatch(m, ev);
}

static void
dispatch_write(void *batch)
{
	write_dispatch_messages((PartooDispatchSet *) batch);
}

const PartooWebhookFormat partoo_webhook_format_dispatch = {
	.name = "dispatch",
	.shape = "a dispatch status notification has \"dispatchId\"",
	.define_gucs = dispatch_define_gucs,
	.recognise = dispatch_recognise,
	.parse = dispatch_parse,
	.authenticate = dispatch_authenticate,
	.restore = NULL,
	.begin = dispatch_begin,
	.fetch = dispatch_fetch,
	.decide = dispatch_decide,
	.write = dispatch_write,
};
