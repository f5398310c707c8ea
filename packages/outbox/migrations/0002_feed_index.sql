-- Feeds (SSE, polling) read the whole log in (tx_id, id) order rather than one partition at a time.
CREATE INDEX events_feed ON {{schema}}.events (tx_id, id);
