/* sql/partoo--0.4--0.5.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION partoo UPDATE TO '0.5'" to load this file. \quit

/*
 * 0.5.  Each change of 0.5 has a section of its own below; the whole
 * install script sql/partoo--0.5.sql makes the same objects in place
 * (test/t/090_upgrade.pl checks that a fresh install and an upgraded one
 * have the same objects).
 */

/* ---------------------------------------------------------------------
 * 0.5: fewer bytes of WAL per message (issue 16, make bench scenario 11).
 *
 * A message's row is updated three times in its life: 'sending' by the
 * claim, 'sent' with its Partoo id by the recording, 'delivered' by the
 * webhook.  In 0.4 the pages of partoo.messages were filled to the brim,
 * so none of those updates found room on its page: each was a non-HOT
 * update, and each added an entry to every index of the table (its
 * primary key, partoo_id, conversation_id), in the WAL too.  And the
 * unique constraint on partoo_id indexed the NULL of every queued
 * message.
 *
 *  - fillfactor 50: the claim and the webhook change no indexed column,
 *    and now find room on the page for the new version of every row a
 *    batch touches (a page holds about 17 fresh rows and room for as
 *    many again; pruning frees the room before the next update), so
 *    they are HOT updates and write no index entry.  The recording sets
 *    partoo_id, an indexed column: it stays a non-HOT update, but its new
 *    version mostly lands on the same page, which makes its WAL record
 *    smaller too.  The price: a page holds half as many fresh rows (the
 *    table of a queue full of messages never sent is up to twice as
 *    large; a message's last version fills the room its earlier ones
 *    left).
 *  - partoo_id: a unique index on the messages that have one, instead of
 *    a unique constraint that indexed every NULL.  Same name, same
 *    uniqueness; every query that looks a message up by partoo_id (=,
 *    = ANY, joins) implies partoo_id IS NOT NULL, so the planner uses it
 *    as before.
 *
 * Measured (make bench scenario 11, WAL per message over its whole life,
 * without full-page images): see README.md, Performance.
 * ---------------------------------------------------------------------
 */
ALTER TABLE partoo.messages SET (fillfactor = 50);
ALTER TABLE partoo.messages DROP CONSTRAINT messages_partoo_id_key;
CREATE UNIQUE INDEX messages_partoo_id_key ON partoo.messages (partoo_id)
	WHERE partoo_id IS NOT NULL;
