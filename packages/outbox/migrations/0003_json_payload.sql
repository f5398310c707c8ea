-- Payloads and headers are kept as the JSON text the publisher wrote (type json, checked on the way
-- in) rather than parsed into jsonb: the log is written once and read as text by every relay, so
-- jsonb's parse on insert and re-serialisation on every read were pure cost (about 3x slower reads
-- of the payload column). Consumers receive the publisher's exact bytes; dead letters keep them too.
-- Rows written before this migration keep jsonb's normalised text.
--
-- Upgrading: this rewrites the events table and its indexes under an exclusive lock, so publish()
-- waits until it is done; run it when the backlog is small (after retention cleanup).
ALTER TABLE {{schema}}.events
  ALTER COLUMN payload TYPE json USING payload::json,
  ALTER COLUMN headers DROP DEFAULT,
  ALTER COLUMN headers TYPE json USING headers::json,
  ALTER COLUMN headers SET DEFAULT '{}'::json;

ALTER TABLE {{schema}}.dead_letters
  ALTER COLUMN payload TYPE json USING payload::json,
  ALTER COLUMN headers TYPE json USING headers::json;
