-- The error class of a failure event (capacity, boot, transient, ...): /metrics counts
-- failures by class, the key the per-pool backoff uses.
ALTER TABLE events ADD COLUMN error_kind TEXT;
