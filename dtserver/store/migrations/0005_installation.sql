-- Schema version 5: facts about the database itself. `installation` is a random id made
-- once, with the database, and written into the metadata of every instance it launches:
-- two installations that share a cloud project and a cluster_id tell their instances
-- apart by it (an upgraded database gets its id here; its older instances stay ours
-- through their record ids).
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (name, value) VALUES ('installation', lower(hex(randomblob(16))));
