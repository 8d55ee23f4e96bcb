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
 * Called by webhook_apply.c inside partoo_store_begin/end; every
 * statement is a kept plan run through partoo_webhook_partoo_webhook_run_plan().
 *
 * src/server/webhook_dispatch.c
 *
 *-------------------------------------------------------------------------
 */

#include "server/partoo.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "core/webhook.h"
#include "server/db.h"
#include "server/webhook.h"

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
struct PartooDispatchSet
{
	HTAB	   *map;
	Size		keysize;
	DispatchMsg **all;
	int			n;
	int			max;
};

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
			ds->max = Max(16, ds->max * 2);
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
 * Lock and read the dispatch messages of sorted[0..k) that exist, with
 * their parts; mark them found.  Returns how many were found.
 */
static int
lock_dispatch_messages(DispatchMsg **sorted, int k)
{
	static SPIPlanPtr plan_lock = NULL;
	static SPIPlanPtr plan_parts = NULL;
	Oid			lock_types[2] = {TEXTARRAYOID, TEXTARRAYOID};
	Oid			parts_types[1] = {INT8ARRAYOID};
	Datum		args[2];
	Datum	   *ext = palloc(sizeof(Datum) * k);
	Datum	   *rcpt = palloc(sizeof(Datum) * k);
	Datum	   *ids;
	HTAB	   *by_id;
	HASHCTL		ctl;
	PartooDispatchSet ds;
	Size		maxkey = 16;
	int			nfound;
	int			i;
	uint64		r;
	int			rc;

	/* a map of this subset, to find a returned row's message */
	for (i = 0; i < k; i++)
	{
		ext[i] = CStringGetTextDatum(sorted[i]->external_id);
		rcpt[i] = CStringGetTextDatum(sorted[i]->recipient);
		maxkey = Max(maxkey, strlen(sorted[i]->external_id) +
					 strlen(sorted[i]->recipient) + 24);
	}
	dispatch_set_init(&ds, maxkey);
	for (i = 0; i < k; i++)
		*dispatch_set_slot(&ds, sorted[i]->external_id, sorted[i]->recipient) = sorted[i];

	partoo_plan_once(&plan_lock,
							 "SELECT m.external_id, m.recipient, m.id, m.metadata IS NOT NULL"
							 "  FROM partoo.messages m"
							 "  JOIN unnest($1, $2) AS u(e, r) ON m.external_id = u.e AND m.recipient = u.r"
							 " WHERE m.provider = 'dispatch'"
							 " ORDER BY m.id FOR UPDATE OF m",
							 2, lock_types, PARTOO_WEBHOOK_PLAN);
	args[0] = partoo_make_array(ext, NULL, k, TEXTOID);
	args[1] = partoo_make_array(rcpt, NULL, k, TEXTOID);
	rc = partoo_webhook_run_plan(plan_lock, args, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not lock dispatch messages: %s", SPI_result_code_string(rc));
	nfound = (int) SPI_processed;
	if (nfound == 0)
		return 0;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(int64) + sizeof(DispatchMsg *);
	ctl.hcxt = CurrentMemoryContext;
	by_id = hash_create("partoo dispatch ids", Max(nfound, 16), &ctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ids = palloc(sizeof(Datum) * nfound);
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	t = SPI_tuptable->vals[r];
		TupleDesc	d = SPI_tuptable->tupdesc;
		char	   *e = partoo_spi_text(t, d, 1);
		char	   *rc2 = partoo_spi_text(t, d, 2);
		bool		isnull;
		DispatchMsg **pm = dispatch_set_slot(&ds, e, rc2);
		DispatchMsg *dm = *pm;
		int64		id = partoo_spi_int64(t, d, 3, &isnull);
		char	   *slot;

		if (dm == NULL)
			elog(ERROR, "dispatch message was not asked for");
		dm->found = true;
		dm->id = id;
		dm->has_metadata = DatumGetBool(SPI_getbinval(t, d, 4, &isnull));
		ids[r] = Int64GetDatum(id);
		slot = hash_search(by_id, &id, HASH_ENTER, NULL);
		memcpy(slot + sizeof(int64), &dm, sizeof(DispatchMsg *));
	}

	partoo_plan_once(&plan_parts,
							 "SELECT message_id, part, total_parts, channel, status, status_date, status_order"
							 "  FROM partoo.message_parts WHERE message_id = ANY ($1)",
							 1, parts_types, PARTOO_WEBHOOK_PLAN);
	args[0] = partoo_make_array(ids, NULL, nfound, INT8OID);
	rc = partoo_webhook_run_plan(plan_parts, args, NULL);
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
	rc = partoo_webhook_run_plan(plan_create, args, NULL);
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

/*
 * Write back changed parts and the state of their messages: the state
 * from every part's newest status, and partoo_status, status_at and
 * channel from the newest status of all parts.
 */
static void
write_dispatch_messages(PartooDispatchSet *ds)
{
	static SPIPlanPtr plan_parts = NULL;
	static SPIPlanPtr plan_msgs = NULL;
	Oid			part_types[7] = {INT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID};
	Oid			msg_types[6] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TIMESTAMPTZARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		args[7];
	int			n = ds->n;
	int			np = 0;
	int			nm = 0;
	int			maxp = 16;
	Datum	   *p_mid = palloc(sizeof(Datum) * maxp),
			   *p_part = palloc(sizeof(Datum) * maxp),
			   *p_total = palloc(sizeof(Datum) * maxp),
			   *p_chan = palloc(sizeof(Datum) * maxp),
			   *p_status = palloc(sizeof(Datum) * maxp),
			   *p_date = palloc(sizeof(Datum) * maxp),
			   *p_order = palloc(sizeof(Datum) * maxp);
	bool	   *p_chan_null = palloc(sizeof(bool) * maxp);
	Datum	   *m_id = palloc(sizeof(Datum) * Max(n, 1)),
			   *m_state = palloc(sizeof(Datum) * Max(n, 1)),
			   *m_status = palloc(sizeof(Datum) * Max(n, 1)),
			   *m_at = palloc(sizeof(Datum) * Max(n, 1)),
			   *m_chan = palloc(sizeof(Datum) * Max(n, 1)),
			   *m_meta = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *m_chan_null = palloc(sizeof(bool) * Max(n, 1));
	bool	   *m_meta_null = palloc(sizeof(bool) * Max(n, 1));
	int			mi;
	int			rc;

	for (mi = 0; mi < n; mi++)
	{
		DispatchMsg *m = ds->all[mi];
		PartooDispatchStatus *st;
		int32	   *parts;
		DispatchPart *newest = NULL;
		int			i;

		if (!m->dirty)
			continue;
		st = palloc(sizeof(PartooDispatchStatus) * Max(m->nparts, 1));
		parts = palloc(sizeof(int32) * Max(m->nparts, 1));
		for (i = 0; i < m->nparts; i++)
		{
			DispatchPart *p = &m->parts[i];

			st[i] = p->status;
			parts[i] = p->part;
			if (newest == NULL)
				newest = p;
			else
			{
				PartooDispatchOrder a,
							b;
				int			c;

				part_order(p, &a);
				part_order(newest, &b);
				c = partoo_dispatch_order_cmp(&a, &b);
				if (c > 0 || (c == 0 && p->part > newest->part))
					newest = p;
			}
			if (!p->dirty)
				continue;
			if (np == maxp)
			{
				maxp *= 2;
				p_mid = repalloc(p_mid, sizeof(Datum) * maxp);
				p_part = repalloc(p_part, sizeof(Datum) * maxp);
				p_total = repalloc(p_total, sizeof(Datum) * maxp);
				p_chan = repalloc(p_chan, sizeof(Datum) * maxp);
				p_status = repalloc(p_status, sizeof(Datum) * maxp);
				p_date = repalloc(p_date, sizeof(Datum) * maxp);
				p_order = repalloc(p_order, sizeof(Datum) * maxp);
				p_chan_null = repalloc(p_chan_null, sizeof(bool) * maxp);
			}
			p_mid[np] = Int64GetDatum(m->id);
			p_part[np] = Int32GetDatum(p->part);
			p_total[np] = Int32GetDatum(p->total_parts);
			p_chan[np] = partoo_text_datum(p->channel, &p_chan_null[np]);
			p_status[np] = CStringGetTextDatum(p->status_raw);
			p_date[np] = TimestampTzGetDatum(p->status_date);
			p_order[np] = Int32GetDatum(p->status_order);
			np++;
		}
		m_id[nm] = Int64GetDatum(m->id);
		m_state[nm] = CStringGetTextDatum(partoo_dispatch_state(st, parts, m->nparts,
																m->total_parts));
		m_status[nm] = CStringGetTextDatum(newest ? newest->status_raw : "");
		m_at[nm] = TimestampTzGetDatum(newest ? newest->status_date : GetCurrentTimestamp());
		m_chan[nm] = partoo_text_datum(newest ? newest->channel : NULL, &m_chan_null[nm]);
		m_meta[nm] = partoo_text_datum(m->new_metadata, &m_meta_null[nm]);
		nm++;
	}

	if (np > 0)
	{
		partoo_plan_once(&plan_parts,
								 "INSERT INTO partoo.message_parts AS p"
								 "  (message_id, part, total_parts, channel, status, status_date, status_order)"
								 " SELECT unnest($1), unnest($2), unnest($3), unnest($4), unnest($5),"
								 "        unnest($6), unnest($7)"
								 " ON CONFLICT (message_id, part) DO UPDATE"
								 "   SET total_parts = EXCLUDED.total_parts, channel = EXCLUDED.channel,"
								 "       status = EXCLUDED.status, status_date = EXCLUDED.status_date,"
								 "       status_order = EXCLUDED.status_order",
								 7, part_types, PARTOO_WEBHOOK_PLAN);
		args[0] = partoo_make_array(p_mid, NULL, np, INT8OID);
		args[1] = partoo_make_array(p_part, NULL, np, INT4OID);
		args[2] = partoo_make_array(p_total, NULL, np, INT4OID);
		args[3] = partoo_make_array(p_chan, p_chan_null, np, TEXTOID);
		args[4] = partoo_make_array(p_status, NULL, np, TEXTOID);
		args[5] = partoo_make_array(p_date, NULL, np, TIMESTAMPTZOID);
		args[6] = partoo_make_array(p_order, NULL, np, INT4OID);
		rc = partoo_webhook_run_plan(plan_parts, args, NULL);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "could not write partoo.message_parts: %s", SPI_result_code_string(rc));
	}
	if (nm > 0)
	{
		partoo_plan_once(&plan_msgs,
								 "UPDATE partoo.messages m"
								 "   SET state = u.state, partoo_status = u.status, status_at = u.status_at,"
								 "       channel = coalesce(u.channel, m.channel),"
								 "       metadata = coalesce(m.metadata, u.meta::jsonb), updated_at = now()"
								 "  FROM (SELECT unnest($1) AS id, unnest($2) AS state, unnest($3) AS status,"
								 "               unnest($4) AS status_at, unnest($5) AS channel,"
								 "               unnest($6) AS meta) AS u"
								 " WHERE m.id = u.id",
								 6, msg_types, PARTOO_WEBHOOK_PLAN);
		args[0] = partoo_make_array(m_id, NULL, nm, INT8OID);
		args[1] = partoo_make_array(m_state, NULL, nm, TEXTOID);
		args[2] = partoo_make_array(m_status, NULL, nm, TEXTOID);
		args[3] = partoo_make_array(m_at, NULL, nm, TIMESTAMPTZOID);
		args[4] = partoo_make_array(m_chan, m_chan_null, nm, TEXTOID);
		args[5] = partoo_make_array(m_meta, m_meta_null, nm, TEXTOID);
		rc = partoo_webhook_run_plan(plan_msgs, args, NULL);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "could not update dispatch messages: %s", SPI_result_code_string(rc));
	}
}

/* ----------------------------------------------------------------
 * The interface webhook_apply.c uses
 * ----------------------------------------------------------------
 */

/* The dispatch messages named by the dispatch events among evs[0..n) */
PartooDispatchSet *
partoo_dispatch_set_create(PartooIngestEvent **evs, int n)
{
	PartooDispatchSet *ds = palloc(sizeof(PartooDispatchSet));
	Size		maxkey = 16;
	int			i;

	for (i = 0; i < n; i++)
		if (evs[i]->source == PARTOO_SOURCE_DISPATCH)
			maxkey = Max(maxkey, strlen(evs[i]->dispatch_id) +
						 strlen(evs[i]->recipient) + 24);
	dispatch_set_init(ds, maxkey);
	for (i = 0; i < n; i++)
	{
		PartooIngestEvent *ev = evs[i];
		DispatchMsg *m;

		if (ev->source != PARTOO_SOURCE_DISPATCH)
			continue;
		m = dispatch_set_get(ds, ev->dispatch_id, ev->recipient, true);
		if (m->first_channel == NULL)
			m->first_channel = ev->channel;
		if (m->first_metadata == NULL)
			m->first_metadata = ev->dispatch_metadata;
	}
	return ds;
}

/* Create, lock and read the set's messages and parts */
void
partoo_dispatch_fetch(PartooDispatchSet *ds, const char *created_by)
{
	fetch_dispatch_messages(ds, created_by);
}

/* Decide a dispatch event of the set; returns applied or stale */
const char *
partoo_dispatch_decide(PartooDispatchSet *ds, PartooIngestEvent *ev)
{
	DispatchMsg *m = dispatch_set_get(ds, ev->dispatch_id, ev->recipient, false);

	if (m == NULL || !m->found)
		elog(ERROR, "dispatch message of an event was not fetched");
	return decide_dispatch(m, ev);
}

/* Write back the changed parts and messages of the set */
void
partoo_dispatch_write(PartooDispatchSet *ds)
{
	write_dispatch_messages(ds);
}
