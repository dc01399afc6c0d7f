"""POST /v1/hints answers whether any pool could ever run the job, from the pool catalogue
the reconciler published; an unservable hint is answered but not stored."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator

from dtserver.api import create_app
from dtserver.api.settings import ApiSettings
from dtserver.clock import FakeClock
from dtserver.model import Flavor
from dtserver.store import CataloguePool, PoolCatalogue
from dtserver.store.sqlite import SqliteStore
from tests.api.builders import T0, hint

SMALL = Flavor("m1.small", cores=2, mem_mb=4096)
LARGE = Flavor("m1.large", cores=8, mem_mb=16384)
GPU = Flavor("g1.large", cores=8, mem_mb=32768, gpus=2)

# Two monitored queues: batch runs on the general pool, gpu on a pool of its own that
# only the physics account may use.
CATALOGUE = PoolCatalogue(
    pools=(CataloguePool("cloud", (SMALL, LARGE), max_nodes=4, max_cores=24,
                         properties=frozenset({"CLOUD"}), queues=frozenset({"batch"})),
           CataloguePool("gpu", (GPU,), max_nodes=2, properties=frozenset({"CLOUD", "gpu"}),
                         queues=frozenset({"gpu"}), accounts=frozenset({"physics"}))),
    queues=frozenset({"batch", "gpu"}))


def post(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/hints", json=hint(**fields))
    assert response.status_code == 202, response.data
    return response.get_json()


@pytest.fixture
def published(store: SqliteStore) -> SqliteStore:
    store.save_pool_catalogue(T0, CATALOGUE)
    return store


@pytest.mark.parametrize("fields", [
    {"resources": ["nodes=2:ppn=4,walltime=01:00:00"]},
    {"resources": ["nodes=4:ppn=2:CLOUD"]},
    {"resources": ["procs=16"]},
    {"queue": "gpu", "account": "physics", "resources": ["select=2:ncpus=8:ngpus=2"]},
    {"queue": "batch@torque.example.org:15001", "resources": ["nodes=1:ppn=8"]},
], ids=["nodes", "property", "procs", "select-gpus", "queue-at-server"])
def test_a_hint_some_pool_can_run_is_servable_and_stored(
        client: FlaskClient, published: SqliteStore, fields: dict[str, Any]) -> None:
    answer = post(client, **fields)

    assert answer == {"id": answer["id"], "servable": True}
    assert [stored.id for stored in published.hints()] == [answer["id"]]


@pytest.mark.parametrize("fields, reason", [
    ({"queue": "gpu", "account": "chemistry", "resources": ["nodes=1:ppn=1"]},
     "no pool serves account chemistry"),
    ({"queue": "gpu", "resources": ["nodes=1:ppn=1"]},
     "no pool serves jobs without an account (qsub -A)"),
    ({"resources": ["nodes=1:ppn=2:bigmem"]}, "no pool has node properties bigmem"),
    ({"resources": ["nodes=1:ppn=16"]},
     "a node of 16 cores/0 MiB/0 GPUs is larger than any flavor (largest m1.large: "
     "8 cores/16384 MiB/0 GPUs)"),
    ({"resources": ["nodes=1:ppn=2", "mem=64gb"]}, "is larger than any flavor"),
    ({"resources": ["nodes=1:ppn=1:gpus=1"]}, "is larger than any flavor"),
    ({"resources": ["nodes=5:ppn=1"]}, "needs at least 5 nodes; pool cloud has max_nodes=4"),
    ({"resources": ["nodes=4:ppn=8"]}, "needs 32 cores; pool cloud has max_cores=24"),
    ({"queue": "gpu", "account": "physics", "resources": ["select=3:ncpus=8:ngpus=1"],
      "array": "1-100"},
     "needs at least 3 nodes; pool gpu has max_nodes=2"),
], ids=["account", "no-account", "property", "cores", "memory", "gpus", "max-nodes",
        "pool-max-cores", "select-max-nodes"])
def test_a_hint_no_pool_can_ever_run_is_answered_with_the_reason_and_not_stored(
        tmp_path: Path, store: SqliteStore, clock: FakeClock, fields: dict[str, Any],
        reason: str) -> None:
    store.save_pool_catalogue(T0, CATALOGUE)
    wakeup = tmp_path / "wakeup"
    wakeup.write_bytes(b"")
    client = create_app(ApiSettings(db_path=tmp_path / "dt.db", wakeup_path=wakeup),
                        store=store, clock=clock).test_client()

    answer = post(client, **fields)

    assert set(answer) == {"id", "servable", "reason"}
    assert (answer["id"], answer["servable"]) == (None, False)
    assert reason in answer["reason"]
    assert store.hints() == ()
    assert wakeup.read_bytes() == b""           # nothing for the reconciler to plan


def test_a_hint_above_the_cluster_core_cap_is_unservable(client: FlaskClient,
                                                         store: SqliteStore) -> None:
    store.save_pool_catalogue(T0, PoolCatalogue(
        pools=(CataloguePool("cloud", (LARGE,), max_nodes=10),), max_cores=32))

    answer = post(client, resources=["nodes=5:ppn=8"])

    assert answer == {"id": None, "servable": False,
                      "reason": "needs 40 cores; the cluster has max_cores=32"}


def test_without_a_published_catalogue_every_hint_is_unknown_and_stored(
        client: FlaskClient, store: SqliteStore) -> None:
    answer = post(client, resources=["nodes=1:ppn=512"])

    assert answer == {"id": answer["id"], "servable": None}
    assert [stored.id for stored in store.hints()] == [answer["id"]]


@pytest.mark.parametrize("catalogue, fields", [
    (CATALOGUE, {"queue": "static", "resources": ["nodes=1:ppn=64:fat"]}),
    (CATALOGUE, {"queue": None, "resources": ["nodes=1:ppn=64"]}),
    (CATALOGUE, {"resources": ["nodes=node17:ppn=64"]}),
    (PoolCatalogue(pools=(CataloguePool("cloud", (SMALL,), max_nodes=2,
                                        queues=frozenset({"cloud"})),)),
     {"queue": "batch", "resources": ["nodes=1:ppn=64"]}),
    (PoolCatalogue(pools=(CataloguePool("cloud", (SMALL,), max_nodes=2,
                                        queues=frozenset({"cloud"})),)),
     {"queue": None, "resources": ["nodes=1:ppn=64"]}),
    (PoolCatalogue(pools=()), {"resources": ["nodes=1:ppn=64"]}),
], ids=["unmonitored-queue", "default-queue-of-monitored", "pinned-host",
        "queue-no-pool-serves", "default-queue-of-pool-queues", "no-pools"])
def test_a_job_that_may_run_outside_the_pools_is_unknown_never_unservable(
        client: FlaskClient, store: SqliteStore, catalogue: PoolCatalogue,
        fields: dict[str, Any]) -> None:
    # Static nodes may serve other queues, qsub's default queue is not known here, and a
    # job pinned to a host waits for that host: none of these is ours to refuse.
    store.save_pool_catalogue(T0, catalogue)

    answer = post(client, **fields)

    assert answer == {"id": answer["id"], "servable": None}
    assert len(store.hints()) == 1


def test_without_any_queue_restriction_a_hint_without_a_queue_is_judged(
        client: FlaskClient, store: SqliteStore) -> None:
    store.save_pool_catalogue(T0, PoolCatalogue(
        pools=(CataloguePool("cloud", (SMALL,), max_nodes=2),)))

    fits = post(client, queue=None, resources=["nodes=2:ppn=2"])
    too_big = post(client, queue=None, resources=["nodes=1:ppn=4"])

    assert fits["servable"] is True
    assert too_big["servable"] is False and "larger than any flavor" in too_big["reason"]


def test_a_request_that_does_not_parse_is_refused_with_400_and_no_verdict(
        client: FlaskClient, published: SqliteStore) -> None:
    response = client.post("/v1/hints", json=hint(resources=["nodes=0"]))

    assert response.status_code == 400
    assert set(response.get_json()) == {"error"}
    assert published.hints() == ()


def test_a_newer_catalogue_is_used_at_once(client: FlaskClient, published: SqliteStore) -> None:
    assert post(client, resources=["nodes=1:ppn=16"])["servable"] is False

    bigger = Flavor("m1.xlarge", cores=16, mem_mb=32768)
    published.save_pool_catalogue(T0, PoolCatalogue(
        pools=(CataloguePool("cloud", (SMALL, bigger), max_nodes=4),),
        queues=frozenset({"batch"})))

    assert post(client, resources=["nodes=1:ppn=16"])["servable"] is True


def test_every_kind_of_answer_matches_the_documented_schema(
        client: FlaskClient, published: SqliteStore) -> None:
    document = client.get("/v1/openapi.json").get_json()
    operation = document["paths"]["/v1/hints"]["post"]
    content = operation["responses"]["202"]["content"]["application/json"]
    validator = Draft202012Validator({**content["schema"],
                                      "components": document["components"]})
    answers = [post(client, resources=["nodes=1"]),
               post(client, resources=["nodes=1:ppn=16"]),
               post(client, queue="static")]

    assert [answer["servable"] for answer in answers] == [True, False, None]
    for answer in answers:
        validator.validate(answer)
    examples = content["examples"].values()
    assert {example["value"]["servable"] for example in examples} == {True, False, None}
    for example in examples:
        validator.validate(example["value"])
    assert not validator.is_valid({"id": 3, "servable": False, "reason": "stored?"})
    assert not validator.is_valid({"id": None, "servable": False})
