-- The outbox log, relay progress and dead letters. {{schema}} and {{partitions}} are filled in by
-- the migration runner; the partition count is fixed here because per-key order depends on it.

CREATE TABLE {{schema}}.settings (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  partitions smallint NOT NULL CHECK (partitions BETWEEN 1 AND 1024)
);
INSERT INTO {{schema}}.settings (partitions) VALUES ({{partitions}});

-- tx_id orders the log: a row's transaction id is assigned on its first write, so every row written
-- after a reader's watermark (the oldest running transaction) gets a larger tx_id than the watermark.
CREATE TABLE {{schema}}.events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
  event_id text NOT NULL,
  topic text NOT NULL,
  key text,
  partition smallint NOT NULL,
  payload jsonb NOT NULL,
  headers jsonb NOT NULL DEFAULT '{}'::jsonb,
  tenant text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX events_event_id ON {{schema}}.events (event_id);
CREATE INDEX events_log ON {{schema}}.events (partition, tx_id, id);

-- One row per relay and partition: the cursor and the lease that fences every move of it.
CREATE TABLE {{schema}}.relay_partitions (
  relay text NOT NULL,
  partition smallint NOT NULL,
  cursor_tx xid8 NOT NULL DEFAULT '0'::xid8,
  cursor_id bigint NOT NULL DEFAULT 0,
  owner text,
  fence bigint NOT NULL DEFAULT 0,
  lease_until timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (relay, partition)
);

-- Live workers of each relay, so that partitions can be shared out evenly.
CREATE TABLE {{schema}}.relay_workers (
  relay text NOT NULL,
  worker text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (relay, worker)
);

CREATE TABLE {{schema}}.dead_letters (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  relay text NOT NULL,
  partition smallint NOT NULL,
  event_id text NOT NULL,
  topic text NOT NULL,
  key text,
  payload jsonb NOT NULL,
  headers jsonb NOT NULL,
  tenant text,
  event_created_at timestamptz NOT NULL,
  errors jsonb NOT NULL,
  status text NOT NULL DEFAULT 'dead' CHECK (status IN ('dead', 'retry', 'retrying')),
  claimed_by text,
  claimed_until timestamptz,
  dead_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (relay, event_id)
);
CREATE INDEX dead_letters_pending ON {{schema}}.dead_letters (relay, status) WHERE status <> 'dead';

-- Per partition, the last position that retention may have deleted: feed cursors at or before it
-- have expired.
CREATE TABLE {{schema}}.retention_horizon (
  partition smallint PRIMARY KEY,
  tx_id xid8 NOT NULL,
  id bigint NOT NULL
);
