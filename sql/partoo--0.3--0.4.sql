/* sql/partoo--0.3--0.4.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION partoo UPDATE TO '0.4'" to load this file. \quit

/*
 * 0.4.  Each change of 0.4 has a section of its own below, and the same
 * section, in the same order, at the end of the whole install script
 * sql/partoo--0.4.sql (test/t/090_upgrade.pl checks that a fresh install
 * and an upgraded one have the same objects).
 */
