-- The inbox: one dedup mark per consumer and event, written in the consumer's own transaction
-- together with the event's effects. {{schema}} is filled in by the migration runner.

CREATE TABLE {{schema}}.inbox (
  consumer text NOT NULL,
  event_id text NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, event_id)
);
-- Retention deletes the oldest marks first, across all consumers.
CREATE INDEX inbox_received_at ON {{schema}}.inbox (received_at);

-- For ordered sources (a Kafka partition, an SSE or polling cursor): the position up to which a
-- consumer has applied the source, saved in the same transaction as the effects.
CREATE TABLE {{schema}}.checkpoints (
  consumer text NOT NULL,
  source text NOT NULL,
  position text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, source)
);
