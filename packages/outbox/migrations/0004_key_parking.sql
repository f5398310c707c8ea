-- Key parking: once an event of key K becomes a dead letter, the relay sets K's later events aside
-- here instead of sending them, so they cannot overtake it, while every other key keeps flowing.
-- Retrying the dead letter delivers it and then these events in order; discarding it releases them.
-- Both tables are written only by the worker holding the partition's lease (fenced like the cursor),
-- so parking survives restarts and lease moves.

-- One row per parked key: the dead letter (by event id) that the key waits behind.
CREATE TABLE {{schema}}.parked_keys (
  relay text NOT NULL,
  partition smallint NOT NULL,
  key text NOT NULL,
  event_id text NOT NULL,
  parked_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (relay, key)
);
CREATE INDEX parked_keys_partition ON {{schema}}.parked_keys (relay, partition);

-- The events set aside behind a parked key, in the order the relay met them (its delivery order).
CREATE TABLE {{schema}}.parked_events (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  relay text NOT NULL,
  partition smallint NOT NULL,
  key text NOT NULL,
  event_id text NOT NULL,
  topic text NOT NULL,
  payload json NOT NULL,
  headers json NOT NULL,
  tenant text,
  event_created_at timestamptz NOT NULL,
  -- The event's log position, as encodePosition writes it.
  position text NOT NULL,
  parked_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (relay, event_id)
);
CREATE INDEX parked_events_key ON {{schema}}.parked_events (relay, key, seq);

-- Where a partition's worker found the destination unavailable (waiting for it, counting nothing
-- against the events), so `status()` and `tidings status` show an outage from any process.
ALTER TABLE {{schema}}.relay_partitions
  ADD COLUMN unavailable_since timestamptz,
  ADD COLUMN unavailable_error text;
