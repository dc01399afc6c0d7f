"""Our submit filter with `reject_unservable = yes` behind the emulator's qsub executable
(which runs SUBMITFILTER as TORQUE 6.1 does) and in front of the real API: a job no pool
can ever run is refused with our reason above qsub's own notice, and never queued."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from dtserver.api import create_app
from dtserver.api.devserver import ThreadServer, serve_in_thread
from dtserver.api.settings import ApiSettings
from dtserver.fakes.torque.persistence import EmulatorHome
from dtserver.model import Flavor
from dtserver.store import CataloguePool, PoolCatalogue
from dtserver.store.sqlite import SqliteStore
from tests.builders import T0
from tests.cli_emulator.support import ok, shell, xml_jobs

HOOK = Path(__file__).resolve().parents[2] / "hooks" / "torque_submitfilter"
JOB = b"#!/bin/sh\n#PBS -l walltime=00:10:00\nhostname\n"

pytestmark = pytest.mark.skipif(
    not HOOK.exists() or not os.access("/usr/bin/python3", os.X_OK),
    reason="hooks/torque_submitfilter or the system python3 is missing")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "dt.db") as opened:
        # The cloud queue runs on one pool that only the physics account may use.
        opened.save_pool_catalogue(T0, PoolCatalogue(
            pools=(CataloguePool("cloud", (Flavor("m1.small", 2, 4096),), max_nodes=4,
                                 properties=frozenset({"CLOUD"}),
                                 accounts=frozenset({"physics"})),),
            queues=frozenset({"cloud"})))
        yield opened


@pytest.fixture
def api(tmp_path: Path, store: SqliteStore) -> Iterator[ThreadServer]:
    server = serve_in_thread(create_app(ApiSettings(db_path=tmp_path / "dt.db"), store=store),
                             "127.0.0.1", 0)
    yield server
    server.shutdown()


def test_qsub_refuses_an_unservable_job_with_our_reason_and_queues_a_servable_one(
        tmp_path: Path, home: EmulatorHome, bin_dir: Path, api: ThreadServer,
        store: SqliteStore) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "job.sh").write_bytes(JOB)
    config = tmp_path / "filter.conf"
    config.write_text(f"url = http://127.0.0.1:{api.port}\nreject_unservable = yes\n")
    home.config_file.write_text(f"SUBMITFILTER {HOOK}\n")
    ok(bin_dir, "qmgr", "-c", "create node cn01 np=2,properties=CLOUD")
    env = {"DT_FILTER_CONFIG": str(config)}

    refused = shell(bin_dir, "qsub -q cloud -A chemistry -l nodes=1:ppn=2 job.sh", cwd=work,
                    extra_env=env)
    queued = shell(bin_dir, "qsub -q cloud -A physics -l nodes=1:ppn=2 job.sh", cwd=work,
                   extra_env=env)

    assert refused.returncode == 1
    assert refused.stdout == b""
    assert refused.stderr.decode() == (
        "qsub: rejected by dynamictorque: no pool serves account chemistry\n"
        "qsub: Your job has been administratively rejected by the queueing system.\n"
        "qsub: There may be a more detailed explanation prior to this notice.\n")
    assert (queued.returncode, queued.stderr) == (0, b"")
    assert list(xml_jobs(bin_dir)) == [queued.stdout.decode().strip()]
    assert [hint.payload["account"] for hint in store.hints()] == ["physics"]
