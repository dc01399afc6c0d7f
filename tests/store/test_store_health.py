"""A store whose file was deleted or replaced under it: SQLite keeps the unlinked file open
and would go on answering from it; the store says it is gone and refuses to write."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from dtserver.store import StoreError
from dtserver.store.sqlite import SqliteStore

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_a_healthy_store_passes_its_check(tmp_path):
    with SqliteStore(tmp_path / "dt.db") as store:
        store.check()


def test_a_deleted_database_file_fails_the_check_and_every_write(tmp_path):
    path = tmp_path / "dt.db"
    with SqliteStore(path) as store:
        store.set_sleeping(True, T0)          # a pooled connection to the file, as in a worker
        path.unlink()

        with pytest.raises(StoreError, match="dt.db"):
            store.check()
        with pytest.raises(StoreError, match="deleted or replaced"):
            store.set_sleeping(False, T0)


def test_a_replaced_database_file_fails_the_check_and_every_write(tmp_path):
    path = tmp_path / "dt.db"
    with SqliteStore(path) as store:
        store.set_sleeping(True, T0)
        path.unlink()
        with SqliteStore(path) as newcomer:   # e.g. `dtserver-db migrate` made a fresh one
            newcomer.check()

            with pytest.raises(StoreError, match="deleted or replaced"):
                store.check()
            with pytest.raises(StoreError, match="deleted or replaced"):
                store.set_sleeping(False, T0)
            assert newcomer.is_sleeping() is False   # nothing went into the new file either
