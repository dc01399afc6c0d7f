-- Schema version 4: hints know who claims them and where they came from, so the API can
-- bound what each user stores; unmatched expiries are remembered as strikes; a node
-- launched for hints alone is marked until it runs a job.

ALTER TABLE hints ADD COLUMN claimed_user TEXT NOT NULL DEFAULT '';
ALTER TABLE hints ADD COLUMN source TEXT;
ALTER TABLE hints ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
UPDATE hints SET claimed_user = coalesce(json_extract(payload, '$.user'), ''),
                 bytes = length(payload);
CREATE INDEX hints_user ON hints (claimed_user);

CREATE TABLE hint_strikes (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    claimed_user TEXT NOT NULL,
    source       TEXT,
    time TEXT NOT NULL
);
CREATE INDEX hint_strikes_time ON hint_strikes (time);

ALTER TABLE node_records ADD COLUMN prewarm INTEGER NOT NULL DEFAULT 0;
