-- Commit order. The log used to be read in (tx_id, id) order, the order in which transactions got
-- their id (their first write), which differs from the order they commit: a transaction that wrote
-- an unrelated row first and then waited on a row lock held by a younger one commits after it but
-- was read before it. From here on every transaction that published events is given a commit
-- sequence number AT COMMIT, per partition, under that partition's lock:
--
--   * a deferred constraint trigger on events fires at COMMIT; for the transaction's partitions
--     (in partition order, so two committers never deadlock) it takes a transaction-level advisory
--     lock, draws one number from commit_seq and inserts one row per partition into commits;
--   * the lock is held through the commit, and PostgreSQL makes a transaction visible before it
--     releases its locks, so within a partition the numbers are in commit order, and once a number
--     is visible every smaller one of that partition is final: a reader by (seq, id) needs no
--     visibility watermark, and a long transaction elsewhere holds nothing back.
--
-- Upgrading: the events table is locked against writers while existing events are numbered, in
-- their old (tx_id, id) order, so existing events keep their order, and relay cursors and the
-- retention horizon are carried over onto the new numbers.

LOCK TABLE {{schema}}.events IN SHARE ROW EXCLUSIVE MODE;

CREATE SEQUENCE {{schema}}.commit_seq AS bigint;

-- One row per committed transaction and partition it published into (more than one only when the
-- trigger was made to fire early with SET CONSTRAINTS ... IMMEDIATE and the transaction published
-- again). first_id..last_id bounds its events, so a transaction id reused by another cluster after
-- a restore never joins the wrong rows.
CREATE TABLE {{schema}}.commits (
  partition smallint NOT NULL,
  seq bigint NOT NULL,
  tx_id xid8 NOT NULL,
  first_id bigint NOT NULL,
  last_id bigint NOT NULL,
  PRIMARY KEY (partition, seq)
);
-- Feeds read every partition in one global (seq, id) order.
CREATE INDEX commits_feed ON {{schema}}.commits (seq, partition);

-- The last number given to events that existed before this migration: positions of the old
-- (tx_id, id) form are translated onto numbers at or below it.
ALTER TABLE {{schema}}.settings ADD COLUMN legacy_seq bigint NOT NULL DEFAULT 0;

CREATE FUNCTION {{schema}}.sequence_commit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  setting text := 'tidings.sequenced_' || TG_TABLE_SCHEMA;
  done bigint := coalesce(nullif(current_setting(setting, true), ''), '0')::bigint;
  tx xid8;
  lower bigint;
  upto bigint;
  part smallint;
  assigned bigint;
BEGIN
  -- Fires once per event row; the first firing numbers all the transaction's events so far.
  IF NEW.id <= done THEN
    RETURN NULL;
  END IF;
  tx := pg_current_xact_id();
  -- Firings come in insertion order, so NEW.id is the transaction's first event not numbered yet;
  -- starting there also keeps out rows restored from another cluster that used the same id.
  lower := greatest(done + 1, NEW.id);
  SELECT max(e.id) INTO upto FROM {{schema}}.events e WHERE e.tx_id = tx AND e.id >= lower;
  FOR part IN SELECT DISTINCT e.partition FROM {{schema}}.events e WHERE e.tx_id = tx AND e.id >= lower AND e.id <= upto ORDER BY 1 LOOP
    PERFORM pg_advisory_xact_lock(hashtext('tidings.commits:' || TG_TABLE_SCHEMA), part);
  END LOOP;
  assigned := nextval('{{schema}}.commit_seq');
  INSERT INTO {{schema}}.commits (partition, seq, tx_id, first_id, last_id)
  SELECT e.partition, assigned, tx, min(e.id), max(e.id) FROM {{schema}}.events e
  WHERE e.tx_id = tx AND e.id >= lower AND e.id <= upto
  GROUP BY e.partition;
  PERFORM set_config(setting, upto::text, true);
  RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER events_commit_order AFTER INSERT ON {{schema}}.events
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {{schema}}.sequence_commit();

-- Existing events: one number per transaction, in tx_id order, as they were read until now.
INSERT INTO {{schema}}.commits (partition, seq, tx_id, first_id, last_id)
SELECT e.partition, dense_rank() OVER (ORDER BY e.tx_id), e.tx_id, min(e.id), max(e.id)
FROM {{schema}}.events e GROUP BY e.tx_id, e.partition;

UPDATE {{schema}}.settings SET legacy_seq = coalesce((SELECT max(seq) FROM {{schema}}.commits), 0);

SELECT setval('{{schema}}.commit_seq', (SELECT legacy_seq FROM {{schema}}.settings) + 1, false);

-- Where an old (tx_id, id) position lies among the numbered events: just after the last event at
-- or before it (partition NULL: in every partition, as the feeds read). Positions are (seq, id):
-- every event of a smaller seq, and those of commit seq with an id up to id.
CREATE FUNCTION {{schema}}.legacy_position(in_partition smallint, in_tx xid8, in_id bigint, OUT seq bigint, OUT id bigint)
LANGUAGE sql STABLE AS $$
  SELECT coalesce(max(x.seq), 0), coalesce(max(x.id), 0) FROM (
    SELECT CASE WHEN e.tx_id = in_tx THEN c.seq ELSE c.seq + 1 END AS seq,
           CASE WHEN e.tx_id = in_tx THEN in_id ELSE 0 END AS id
    FROM {{schema}}.events e
    JOIN {{schema}}.commits c ON c.partition = e.partition AND c.tx_id = e.tx_id AND e.id BETWEEN c.first_id AND c.last_id
    WHERE (e.tx_id, e.id) <= (in_tx, in_id) AND (in_partition IS NULL OR e.partition = in_partition)
      AND c.seq <= (SELECT st.legacy_seq FROM {{schema}}.settings st)
    ORDER BY e.tx_id DESC, e.id DESC LIMIT 1
  ) x
$$;

ALTER TABLE {{schema}}.relay_partitions ADD COLUMN cursor_seq bigint NOT NULL DEFAULT 0;
UPDATE {{schema}}.relay_partitions rp SET cursor_seq = lp.seq, cursor_id = lp.id
FROM {{schema}}.relay_partitions old CROSS JOIN LATERAL {{schema}}.legacy_position(old.partition, old.cursor_tx, old.cursor_id) lp
WHERE rp.relay = old.relay AND rp.partition = old.partition;
ALTER TABLE {{schema}}.relay_partitions DROP COLUMN cursor_tx;

-- The retention horizon moves onto the new numbers too. Feed cursors of the old (tx_id, id) form
-- are refused from now on with a message that says so (readers restart from their own state).
ALTER TABLE {{schema}}.retention_horizon ADD COLUMN seq bigint NOT NULL DEFAULT 0;
UPDATE {{schema}}.retention_horizon rh SET seq = lp.seq, id = lp.id
FROM {{schema}}.retention_horizon old CROSS JOIN LATERAL {{schema}}.legacy_position(old.partition, old.tx_id, old.id) lp
WHERE rh.partition = old.partition;
ALTER TABLE {{schema}}.retention_horizon DROP COLUMN tx_id;
