-- The pools the reconciler runs with (flavor sizes come from Nova, which only it reads),
-- so that the API can answer a hint with "no pool can ever run this job". One row,
-- replaced whenever the reconciler publishes; `catalogue` is JSON.
CREATE TABLE pool_catalogue (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    written   TEXT NOT NULL,
    catalogue TEXT NOT NULL
);
