-- Retention looks up the lowest relay cursor of a partition in every batch it deletes; with a
-- thousand relays (one per webhook endpoint, say) scanning them all each time was most of its cost.
CREATE INDEX relay_partitions_lowest ON {{schema}}.relay_partitions (partition, cursor_seq, cursor_id);
