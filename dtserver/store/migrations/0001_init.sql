-- Schema version 1. Each migration runs inside one BEGIN IMMEDIATE transaction, so it
-- must not contain PRAGMAs that are ignored in a transaction (journal_mode, foreign_keys).
-- Times are ISO-8601 UTC text with microseconds (sortable as text); enums are their
-- string values; mappings are JSON text.

CREATE TABLE node_records (
    id          TEXT PRIMARY KEY,
    hostname    TEXT NOT NULL,
    pool        TEXT NOT NULL,
    flavor      TEXT NOT NULL,
    cores       INTEGER NOT NULL,
    state       TEXT NOT NULL,
    created     TEXT NOT NULL,
    state_since TEXT NOT NULL,
    instance_id TEXT,
    address     TEXT,
    drain       TEXT,
    down_since  TEXT,
    reason      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX node_records_state ON node_records (state);

-- AUTOINCREMENT: ids are never reused, so an id the reconciler has seen stays unique.
CREATE TABLE hints (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    received TEXT NOT NULL,
    payload  TEXT NOT NULL
);

CREATE TABLE intents (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    kind     TEXT NOT NULL,
    target   TEXT,
    created  TEXT NOT NULL,
    status   TEXT NOT NULL,
    message  TEXT NOT NULL DEFAULT '',
    finished TEXT
);
CREATE INDEX intents_status ON intents (status);

CREATE TABLE flags (
    name    TEXT PRIMARY KEY,
    value   TEXT NOT NULL,
    changed TEXT NOT NULL
);

CREATE TABLE pool_health (
    pool                 TEXT PRIMARY KEY,
    consecutive_failures INTEGER NOT NULL,
    backoff_until        TEXT,
    last_error           TEXT,
    last_message         TEXT NOT NULL,
    stopped              INTEGER NOT NULL
);

-- Ids only grow, so trimming the history is a range delete on the primary key.
CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    time     TEXT NOT NULL,
    kind     TEXT NOT NULL,
    message  TEXT NOT NULL,
    hostname TEXT,
    pool     TEXT
);

-- Single-row tables: only the latest plan and pass are kept.
CREATE TABLE last_plan (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    time TEXT NOT NULL,
    plan TEXT NOT NULL
);

CREATE TABLE last_pass (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    time             TEXT NOT NULL,
    duration_seconds REAL NOT NULL,
    ok               INTEGER NOT NULL,
    summary          TEXT NOT NULL
);
