/* sql/partoo--0.2--0.3.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION partoo UPDATE TO '0.3'" to load this file. \quit

/*
 * 0.3: pg_dump keeps partoo's data.
 *
 * The rows of an extension's tables are not dumped unless the extension
 * marks them as configuration: without this, a logical backup lost the
 * queue, the message history and the account keys.  Every table that holds
 * state is marked (all rows), and so are the sequences of their identity
 * columns, so that a restored database hands out fresh ids.
 *
 * NB: the dump then carries the API keys of partoo.accounts, as it carries
 * every other table's data: protect dumps as you protect the database.
 */
SELECT pg_catalog.pg_extension_config_dump('partoo.accounts', '');
SELECT pg_catalog.pg_extension_config_dump('partoo.messages', '');
SELECT pg_catalog.pg_extension_config_dump('partoo.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('partoo.events', '');
SELECT pg_catalog.pg_extension_config_dump('partoo.message_parts', '');
SELECT pg_catalog.pg_extension_config_dump('partoo.messages_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('partoo.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('partoo.events_id_seq', '');
