-- Retention of dead letters (cleanup's deadLetterRetentionMs) walks them oldest first; without an
-- index it would read every dead letter, retried ones included, on each call.
CREATE INDEX dead_letters_expiry ON {{schema}}.dead_letters (dead_at, id) WHERE status = 'dead';
