"""The filter's hint against the real API: its JSON passes the API's validation and is stored."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from dtserver.api import create_app
from dtserver.api.devserver import ThreadServer, serve_in_thread
from dtserver.api.settings import ApiSettings
from dtserver.reconcile.hints import hint_from_stored
from dtserver.store import HintLimits
from dtserver.store.sqlite import SqliteStore
from tests.hooks.support import FJOB, current_user, filter_log, run_filter, write_config

HINT_TOKEN = "hint-token-0123456789"


@pytest.fixture
def api(tmp_path: Path, store: SqliteStore) -> Iterator[ThreadServer]:
    token = tmp_path / "hint.token"
    token.write_text(HINT_TOKEN + "\n", encoding="utf-8")
    token.chmod(0o644)
    app = create_app(ApiSettings(db_path=tmp_path / "dt.db", hint_token_file=token), store=store)
    server = serve_in_thread(app, "127.0.0.1", 0)
    yield server
    server.shutdown()


def api_config(tmp_path: Path, api: ThreadServer, *, token: str | None = HINT_TOKEN) -> Path:
    settings: dict[str, object] = {"url": f"http://127.0.0.1:{api.port}"}
    if token is not None:
        (tmp_path / "client.token").write_text(token, encoding="utf-8")
        settings["token_file"] = tmp_path / "client.token"
    return write_config(tmp_path, **settings)


def test_filter_hint_is_accepted_by_the_api_and_stored_as_posted(
        tmp_path: Path, api: ThreadServer, store: SqliteStore) -> None:
    script = FJOB.replace(b"#PBS -N fjob\n", b"#PBS -N fjob\n#PBS -A physics\n")
    args = ["-t", "1-10%2", "-q", "batch", "-l", "nodes=1:ppn=2", "fjob.sh"]

    run = run_filter(args, script, config=api_config(tmp_path, api), cwd=tmp_path)

    assert (run.status, run.stdout, run.stderr) == (0, script, b"")
    assert "hint sent status=202" in filter_log(tmp_path)
    [stored] = store.hints()
    assert stored.payload == {
        "user": current_user(),
        "submit_host": os.uname().nodename,
        "resources": ["walltime=00:10:00", "nodes=1:ppn=2"],
        "directives": ["#PBS -N fjob", "#PBS -A physics", "#PBS -l walltime=00:10:00"],
        "queue": "batch",
        "account": "physics",
        "array": "1-10%2",
        "job_name": "fjob",
    }
    # The reconciler reads it as ten jobs, two at a time, of one node with two cores.
    demand = hint_from_stored(stored)
    assert demand.request.array is not None
    assert (demand.count, demand.request.array.slot_limit) == (10, 2)
    assert [(chunk.count, chunk.cores) for chunk in demand.request.chunks] == [(1, 2)]
    assert demand.request.walltime_seconds == 600


def test_hint_without_the_token_is_refused_and_the_job_still_goes_through(
        tmp_path: Path, api: ThreadServer, store: SqliteStore) -> None:
    run = run_filter(["job.sh"], FJOB, config=api_config(tmp_path, api, token=None),
                     cwd=tmp_path)

    assert (run.status, run.stdout, run.stderr) == (0, FJOB, b"")
    assert "hint refused status=401" in filter_log(tmp_path)
    assert store.hints() == ()


def test_a_request_the_api_cannot_parse_is_refused_and_logged(
        tmp_path: Path, api: ThreadServer, store: SqliteStore) -> None:
    run = run_filter(["-l", "mem=lots", "job.sh"], FJOB, config=api_config(tmp_path, api),
                     cwd=tmp_path)

    assert (run.status, run.stdout) == (0, FJOB)
    assert "hint refused status=400" in filter_log(tmp_path)
    assert "invalid_resources" in filter_log(tmp_path)
    assert store.hints() == ()


def test_a_hint_beyond_the_users_limit_gets_429_and_the_job_still_goes_through(
        tmp_path: Path, store: SqliteStore) -> None:
    app = create_app(ApiSettings(db_path=tmp_path / "dt.db",
                                 hint_limits=HintLimits(per_user=1)), store=store)
    server = serve_in_thread(app, "127.0.0.1", 0)
    try:
        config = api_config(tmp_path, server, token=None)
        first = run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path)
        second = run_filter(["job.sh"], FJOB, config=config, cwd=tmp_path)
    finally:
        server.shutdown()

    assert [(run.status, run.stdout, run.stderr) for run in (first, second)] == [
        (0, FJOB, b""), (0, FJOB, b"")]
    assert "hint refused status=429" in filter_log(tmp_path)
    assert "too_many_hints" in filter_log(tmp_path)
    assert len(store.hints()) == 1
