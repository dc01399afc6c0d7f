"""The permission scheme of deploy/systemd, tried with real uids.

The reconciler's user makes the state as `dtserver-db migrate` and the reconciler do; the
API's user, sharing only the group, records a write and wakes the reconciler, and can
neither read the reconciler's secrets nor delete or replace its files. Modes and umasks
are read from the units. Taking other uids needs root; elsewhere the test is skipped.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from dtserver.wakeup import Wakeup, wake_reconciler
from dtserver.store.sqlite import SqliteStore
from tests.deploy.test_systemd_units import directives

# Ids nobody uses: no passwd entries are needed to run as them.
RECONCILER_UID, API_UID, SHARED_GID = 64101, 64102, 64100
CHILD_SECONDS = 30
T0 = datetime(2026, 1, 2, tzinfo=timezone.utc)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="taking other uids needs root")


def unit_mode(name: str, key: str) -> int:
    (value,) = directives(name)[key]
    return int(value, 8)


def as_user(uid: int, umask: int, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`action` in a forked child running as `uid`, with the shared group as its only group
    and the unit's umask; its JSON result comes back through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            os.setgroups([SHARED_GID])
            os.setgid(SHARED_GID)
            os.setuid(uid)
            os.umask(umask)
            os.write(write_end, json.dumps(action()).encode())
            status = 0
        except BaseException as error:
            os.write(write_end, json.dumps({"error": repr(error)}).encode())
        finally:
            os._exit(status)
    os.close(write_end)
    deadline = time.monotonic() + CHILD_SECONDS
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the child as uid {uid} did not finish within {CHILD_SECONDS} s")
        time.sleep(0.02)
    with os.fdopen(read_end, "rb") as pipe:
        result = json.loads(pipe.read())
    assert "error" not in result, result
    return result


@pytest.fixture
def base() -> Iterator[Path]:
    # pytest's tmp_path sits in a root-only directory the other uids cannot enter.
    directory = Path(tempfile.mkdtemp(prefix="dt-permissions-"))
    directory.chmod(0o755)
    try:
        with SqliteStore(directory / "warm.db"):   # migrations read and cached before forking
            pass
        yield directory
    finally:
        shutil.rmtree(directory)


def attempt(action: Callable[[], object]) -> str:
    try:
        action()
    except PermissionError:
        return "refused"
    return "done"


def test_the_api_user_writes_the_shared_state_and_reaches_nothing_else(base: Path) -> None:
    state, secrets = base / "state", base / "secrets"
    for directory, mode in ((state, unit_mode("dtserver-reconciler.service",
                                              "StateDirectoryMode")), (secrets, 0o755)):
        directory.mkdir()
        os.chown(directory, RECONCILER_UID, SHARED_GID)     # what systemd does at start
        directory.chmod(mode)
    reconciler_umask = unit_mode("dtserver-reconciler.service", "UMask")
    api_umask = unit_mode("dtserver-api.service", "UMask")

    def reconciler_makes_its_state() -> dict[str, Any]:
        SqliteStore(state / "dt.db").close()
        Wakeup(state / "wakeup").close()
        (state / "hosts").write_text("127.0.0.1 localhost\n")
        (secrets / "clouds.yaml").write_text("clouds: {}\n")
        (secrets / "clouds.yaml").chmod(0o600)
        return {}

    as_user(RECONCILER_UID, reconciler_umask, reconciler_makes_its_state)
    assert stat.S_IMODE(os.stat(state / "wakeup").st_mode) == 0o620
    reader = os.open(state / "wakeup", os.O_RDONLY | os.O_NONBLOCK)   # the running loop

    def api_serves_a_request() -> dict[str, Any]:
        with SqliteStore(state / "dt.db") as store:
            store.set_sleeping(True, T0)
        (state / "planted").write_text("10.6.6.6 head\n")
        return {
            "woke": wake_reconciler(state / "wakeup"),
            "read clouds.yaml": attempt((secrets / "clouds.yaml").read_text),
            "delete dt.db": attempt((state / "dt.db").unlink),
            "delete the FIFO": attempt((state / "wakeup").unlink),
            "replace hosts": attempt(lambda: os.replace(state / "planted", state / "hosts")),
        }

    try:
        outcomes = as_user(API_UID, api_umask, api_serves_a_request)
        assert os.read(reader, 16) == b"\n"
    finally:
        os.close(reader)

    assert outcomes == {"woke": True, "read clouds.yaml": "refused", "delete dt.db": "refused",
                        "delete the FIFO": "refused", "replace hosts": "refused"}

    def reconciler_reads_it() -> dict[str, Any]:
        with SqliteStore(state / "dt.db") as store:
            return {"sleeping": store.is_sleeping()}

    assert as_user(RECONCILER_UID, reconciler_umask, reconciler_reads_it) == {"sleeping": True}
