/*-------------------------------------------------------------------------
 *
 * webhook_order.c
 *		Statuses of both webhook formats and the rules that order events:
 *		which Partoo status may follow which, and how dispatch parts and
 *		their statuses sort.
 *
 * Pure functions (partoo_status_apply, partoo_dispatch_order_cmp,
 * partoo_dispatch_state), so that the unit tests and the fuzzer exercise
 * exactly what the SQL side runs.
 *
 * src/core/webhook_order.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/message.h"
#include "core/webhook.h"

#include <string.h>

#define lengthof(a) (sizeof(a) / sizeof((a)[0]))

static const char *const status_names[] = {NULL, "Sending", "Success", "Failed"};
static const char *const status_states[] = {NULL, "sent", "delivered", "failed"};

PartooStatus
partoo_status_from_name(const char *name)
{
	int			i;

	if (name == NULL)
		return PARTOO_STATUS_UNKNOWN;
	for (i = 1; i < (int) lengthof(status_names); i++)
		if (partoo_ascii_caseeq(name, status_names[i]))
			return (PartooStatus) i;
	return PARTOO_STATUS_UNKNOWN;
}

const char *
partoo_status_name(PartooStatus s)
{
	if (s <= PARTOO_STATUS_UNKNOWN || s > PARTOO_STATUS_FAILED)
		return NULL;
	return status_names[s];
}

const char *
partoo_status_local_state(PartooStatus s)
{
	if (s <= PARTOO_STATUS_UNKNOWN || s > PARTOO_STATUS_FAILED)
		return NULL;
	return status_states[s];
}

PartooDispatchStatus
partoo_dispatch_status_from_name(const char *name)
{
	static const char *const names[] = {NULL, "DELIVERED", "READ", "NOSENT", "FAILED"};
	int			i;

	if (name == NULL)
		return PARTOO_DS_OTHER;
	for (i = 1; i < (int) lengthof(names); i++)
		if (partoo_ascii_caseeq(name, names[i]))
			return (PartooDispatchStatus) i;
	return PARTOO_DS_OTHER;
}

PartooVerdict
partoo_status_apply(PartooStatusState *st, PartooStatus incoming,
					int incoming_deleted, bool *deleted_changed)
{
	PartooStatus cur = st->status;
	PartooVerdict v;

	*deleted_changed = !st->is_deleted && incoming_deleted == 1;
	if (incoming_deleted == 1)
		st->is_deleted = true;

	if (incoming <= PARTOO_STATUS_UNKNOWN || incoming > PARTOO_STATUS_FAILED)
		return PARTOO_VERDICT_STALE;

	if (cur == PARTOO_STATUS_UNKNOWN)
		v = PARTOO_VERDICT_APPLY;
	else if (cur == incoming)
		v = st->retried ? PARTOO_VERDICT_APPLY : PARTOO_VERDICT_CONFIRM;
	else if (cur == PARTOO_STATUS_SENDING)
		v = PARTOO_VERDICT_APPLY;
	else if (incoming == PARTOO_STATUS_SENDING)
		v = st->retried ? PARTOO_VERDICT_APPLY : PARTOO_VERDICT_STALE;
	else if (cur == PARTOO_STATUS_FAILED && incoming == PARTOO_STATUS_SUCCESS)
		v = PARTOO_VERDICT_APPLY;
	else						/* Success -> Failed */
		v = st->retried ? PARTOO_VERDICT_APPLY : PARTOO_VERDICT_STALE;

	if (v == PARTOO_VERDICT_APPLY)
	{
		st->status = incoming;
		st->retried = false;
	}
	return v;
}

static int
dispatch_rank(PartooDispatchStatus s)
{
	switch (s)
	{
		case PARTOO_DS_DELIVERED:
			return 1;
		case PARTOO_DS_READ:
			return 2;
		case PARTOO_DS_NOSENT:
			return 3;
		case PARTOO_DS_FAILED:
			return 4;
		default:
			return 0;
	}
}

int
partoo_dispatch_order_cmp(const PartooDispatchOrder *a,
						  const PartooDispatchOrder *b)
{
	int			ra,
				rb;

	if (a->status_date != b->status_date)
		return a->status_date < b->status_date ? -1 : 1;
	if (a->status_order != b->status_order)
		return a->status_order < b->status_order ? -1 : 1;
	ra = dispatch_rank(a->status);
	rb = dispatch_rank(b->status);
	if (ra != rb)
		return ra < rb ? -1 : 1;
	if (a->status_raw == NULL || b->status_raw == NULL)
		return (a->status_raw != NULL) - (b->status_raw != NULL);
	return strcmp(a->status_raw, b->status_raw);
}

const char *
partoo_dispatch_state(const PartooDispatchStatus *statuses,
					  const int32_t *parts, int n, int32_t total_parts)
{
	bool		read = false;
	int32_t		delivered = 0;
	int			i;

	if (total_parts < 1)
		total_parts = 1;
	for (i = 0; i < n; i++)
	{
		switch (statuses[i])
		{
			case PARTOO_DS_FAILED:
			case PARTOO_DS_NOSENT:
				return "failed";
			case PARTOO_DS_READ:
				read = true;
				/* FALLTHROUGH */
			case PARTOO_DS_DELIVERED:
				if (parts[i] >= 1 && parts[i] <= total_parts)
					delivered++;
				break;
			default:
				break;
		}
	}
	if (read)
		return "read";
	if (delivered >= total_parts)
		return "delivered";
	return "sent";
}

