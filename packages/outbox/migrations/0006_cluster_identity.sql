-- The identity of the cluster the outbox lives in, so that a relay notices when the database was
-- restored from a dump or moved to another cluster (blue/green, logical replication cut-over)
-- instead of running on with cursors and a commit counter that may not match the log there:
--   * events_oid: the events table's OID, readable by every role and in PGlite; a dump restored
--     anywhere, or tables copied by logical replication, get a new one; a physical replica
--     promoted after a failover and pg_upgrade keep it;
--   * system_identifier: pg_control_system()'s, where this role may read it (NULL otherwise);
--     informational, and compared only when both sides are known.
-- The relay compares both at start-up; adoptCluster() (`tidings cluster adopt`) records the new
-- ones once the cursors have been checked or moved.
ALTER TABLE {{schema}}.settings ADD COLUMN events_oid oid;
ALTER TABLE {{schema}}.settings ADD COLUMN system_identifier text;
UPDATE {{schema}}.settings SET events_oid = '{{schema}}.events'::regclass::oid;
DO $$
BEGIN
  UPDATE {{schema}}.settings SET system_identifier = (SELECT c.system_identifier::text FROM pg_control_system() c);
EXCEPTION WHEN insufficient_privilege THEN
  NULL;
END
$$;
