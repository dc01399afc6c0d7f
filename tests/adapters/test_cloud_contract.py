"""The Cloud contract: what the reconciler relies on, whatever Nova is behind the port.

Each backend is a small driver: it builds the Cloud and knows how to let time pass and how
to make the faults happen. "fake" is FakeNova on a FakeClock; "real" is the real Nova API
of tests/tooling/novastack (marked live_nova), reached through build_nova_client.
"""
from __future__ import annotations

import base64
import itertools
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Callable

import pytest
import requests
from novaclient import exceptions as nova_exc

from dtserver.clock import FakeClock
from dtserver.cloud import CloudError
from dtserver.cloud.nova import CLUSTER_KEY, INSTALLATION_KEY, POOL_KEY, RECORD_KEY, NovaCloud
from dtserver.cloud.nova_session import build_nova_client
from dtserver.fakes.nova import DEFAULT_IMAGE, DEFAULT_NETWORK, FakeNova
from dtserver.model import ErrorKind, Instance, InstanceSpec
from tests.tooling.novastack.plugin import CLOUD_NAME, LiveNova

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
CLUSTER = "contract"
INSTALLATION = "c0ffee00c0ffee00c0ffee00c0ffee00"
# Ten from eight threads: creates overlap in Nova's scheduler and address allocation.
PARALLEL_BOOTS = 10


class FakeNovaBackend:
    """FakeNova on a FakeClock; waiting means moving the clock one second at a time."""

    flavor = "m1.small"          # 1 core
    big_flavor = "m1.medium"     # 2 cores
    image = DEFAULT_IMAGE
    zone = "nova"

    def __init__(self) -> None:
        counter = itertools.count(1)
        self.clock = FakeClock(T0)
        self.nova = FakeNova(self.clock, boot_delay=3, delete_delay=1,
                             id_factory=lambda: f"00000000-0000-4000-8000-{next(counter):012d}")
        self.cloud = NovaCloud(self.nova, cluster_id=CLUSTER, installation=INSTALLATION,
                               network=DEFAULT_NETWORK, clock=self.clock)

    def wait_for(self, condition: Callable[[], bool], *, seconds: int = 60) -> None:
        for _ in range(seconds):
            if condition():
                return
            self.clock.advance(1)
        assert condition(), f"not reached within {seconds} s"

    def user_data_of(self, instance_id: str) -> str | None:
        return self.nova.user_data(instance_id)

    def exists(self, instance_id: str) -> bool:
        return instance_id in self.nova.server_ids()

    def limit_cores(self, cores: int) -> None:
        self.nova.set_quota(cores=cores)

    def add_foreign_server(self, name: str, metadata: dict[str, str], tags: list[str]) -> str:
        return self.nova.add_foreign_server(name, metadata=metadata, tags=tags)

    def fail_transiently(self, times: int) -> None:
        self.nova.fail_next(times, nova_exc.ClientException(503, "Service Unavailable"))


class RealNovaBackend:
    """The real Nova API; waiting means polling it in wall time."""

    flavor = "dt.small"          # 1 core
    big_flavor = "dt.medium"     # 2 cores

    def __init__(self, live: LiveNova) -> None:
        self.live = live
        self.image = live.endpoint.image
        self.zone = live.endpoint.zone
        self.client = build_nova_client(cloud_name=CLOUD_NAME, auth={}, region=None)
        self.cloud = NovaCloud(self.client, cluster_id=CLUSTER, installation=INSTALLATION,
                               network=live.endpoint.network)

    def wait_for(self, condition: Callable[[], bool], *, seconds: int = 60) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, f"not reached within {seconds} s"
            time.sleep(0.2)

    def user_data_of(self, instance_id: str) -> str | None:
        encoded = getattr(self.live.admin.servers.get(instance_id),
                          "OS-EXT-SRV-ATTR:user_data", None)
        return None if encoded is None else base64.b64decode(encoded).decode()

    def exists(self, instance_id: str) -> bool:
        return instance_id in self.live.server_ids()

    def limit_cores(self, cores: int) -> None:
        self.live.set_quota(cores=cores)

    def add_foreign_server(self, name: str, metadata: dict[str, str], tags: list[str]) -> str:
        """Someone else's server in our project, booted with the plain client."""
        return self.live.client("someone-else").servers.create(
            name, self.image, self.live.flavors[0].id, meta=metadata, tags=tags,
            nics=[{"net-id": self.live.endpoint.network}]).id

    def fail_transiently(self, times: int) -> None:
        """The next `times` requests get a 503 from Nova's front door, as from a proxy or
        an API restart: a real HTTP answer through keystoneauth1 and novaclient."""
        self.client.client.session.session.mount("http://", _FailingAdapter(times))


class _FailingAdapter(requests.adapters.HTTPAdapter):
    def __init__(self, times: int) -> None:
        super().__init__()
        self.remaining = times

    def send(self, request, *args, **kwargs):
        if self.remaining <= 0:
            return super().send(request, *args, **kwargs)
        self.remaining -= 1
        response = requests.Response()
        response.status_code = 503
        response.reason = "Service Unavailable"
        response.headers["Content-Type"] = "application/json"
        response._content = json.dumps({"computeFault": {
            "code": 503, "message": "Service Unavailable"}}).encode()
        response.url = request.url
        response.request = request
        return response


BACKENDS = {"fake": FakeNovaBackend, "real": RealNovaBackend}


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.live_nova)])
def backend(request):
    if request.param == "real":
        return RealNovaBackend(request.getfixturevalue("clean_nova"))
    return BACKENDS[request.param]()


def spec(backend, name: str = "dt-contract-1", **fields) -> InstanceSpec:
    fields.setdefault("pool", "default")
    fields.setdefault("record_id", f"rec-{name}")
    fields.setdefault("flavor", backend.flavor)
    fields.setdefault("image", backend.image)
    return InstanceSpec(name=name, **fields)


def owned(backend) -> dict[str, Instance]:
    return {instance.id: instance for instance in backend.cloud.owned_instances()}


def test_booted_instance_is_listed_as_owned_with_pool_record_tags_zone_and_user_data(backend):
    created = backend.cloud.create_instance(spec(
        backend, pool="gpu", record_id="rec-7", zone=backend.zone,
        user_data="#!/bin/sh\necho joined\n"))

    instance = owned(backend)[created.id]

    assert created.status == "BUILD"
    assert (instance.pool, instance.record_id, instance.name) == ("gpu", "rec-7", "dt-contract-1")
    assert instance.metadata[CLUSTER_KEY] == CLUSTER
    assert instance.metadata[INSTALLATION_KEY] == INSTALLATION
    assert instance.metadata[POOL_KEY] == "gpu"
    assert instance.metadata[RECORD_KEY] == "rec-7"
    assert {"dynamictorque", f"dt-cluster-{CLUSTER}"} <= instance.tags
    assert instance.zone == backend.zone
    assert instance.created.tzinfo is not None
    assert backend.user_data_of(created.id) == "#!/bin/sh\necho joined\n"


def test_instance_goes_from_build_to_active_with_an_address(backend):
    created = backend.cloud.create_instance(spec(backend))

    backend.wait_for(lambda: owned(backend)[created.id].status == "ACTIVE")

    instance = owned(backend)[created.id]
    assert instance.addresses
    flavor_ids = {flavor.name: flavor.id for flavor in backend.cloud.flavors()}
    assert instance.flavor_id == flavor_ids[backend.flavor]


def test_deleted_instance_disappears_and_deleting_again_is_fine(backend):
    created = backend.cloud.create_instance(spec(backend))

    backend.cloud.delete_instance(created.id)
    backend.wait_for(lambda: created.id not in owned(backend))
    backend.cloud.delete_instance(created.id)
    backend.cloud.delete_instance("00000000-0000-4000-8000-999999999999")

    assert not backend.exists(created.id)


def test_flavors_carry_cores_memory_and_ids(backend):
    flavors = {flavor.name: flavor for flavor in backend.cloud.flavors()}

    small = flavors[backend.flavor]
    assert small.cores == 1 and small.mem_mb > 0 and small.id


def test_quota_shows_what_is_still_free(backend):
    backend.limit_cores(5)
    before = backend.cloud.quota()
    backend.cloud.create_instance(spec(backend, flavor=backend.big_flavor))

    backend.wait_for(lambda: backend.cloud.quota().cores != before.cores)

    assert before.cores - backend.cloud.quota().cores == 2


def test_exceeding_the_quota_is_a_capacity_error(backend):
    backend.limit_cores(1)

    with pytest.raises(CloudError) as caught:
        backend.cloud.create_instance(spec(backend, flavor=backend.big_flavor))

    assert (caught.value.kind, caught.value.status) == (ErrorKind.CAPACITY, 403)
    assert owned(backend) == {}


def test_an_unknown_flavor_is_a_bad_request(backend):
    with pytest.raises(CloudError) as caught:
        backend.cloud.create_instance(spec(backend, flavor="no-such-flavor"))

    assert caught.value.kind == ErrorKind.BAD_REQUEST


def test_an_unknown_zone_is_a_bad_request(backend):
    with pytest.raises(CloudError) as caught:
        backend.cloud.create_instance(spec(backend, zone="no-such-az"))

    assert (caught.value.kind, caught.value.status) == (ErrorKind.BAD_REQUEST, 400)


def test_parallel_boots_all_turn_active_with_distinct_addresses(backend):
    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(lambda index: backend.cloud.create_instance(
            spec(backend, f"dt-contract-{index}")), range(PARALLEL_BOOTS)))

    backend.wait_for(lambda: all(instance.status == "ACTIVE"
                                 for instance in owned(backend).values()), seconds=120)

    instances = owned(backend)
    assert set(instances) == {instance.id for instance in created}
    assert len({instance.addresses[0] for instance in instances.values()}) == PARALLEL_BOOTS
    assert {instance.record_id for instance in instances.values()} == \
        {f"rec-dt-contract-{index}" for index in range(PARALLEL_BOOTS)}


@pytest.mark.parametrize("metadata", [
    {},
    {CLUSTER_KEY: "another-cluster", POOL_KEY: "default", RECORD_KEY: "rec-1"},
    # Another installation that kept the same cluster_id in this project.
    {CLUSTER_KEY: CLUSTER, INSTALLATION_KEY: "0" * 32, POOL_KEY: "default",
     RECORD_KEY: "rec-1"},
    # Made before installation ids, and no record of ours names it.
    {CLUSTER_KEY: CLUSTER, POOL_KEY: "default", RECORD_KEY: "rec-1"},
], ids=["no-metadata", "other-cluster", "other-installation", "no-installation"])
def test_a_foreign_instance_is_never_owned_even_with_our_tags(backend, metadata):
    foreign = backend.add_foreign_server("dt-contract-1", metadata,
                                         ["dynamictorque", f"dt-cluster-{CLUSTER}"])
    ours = backend.cloud.create_instance(spec(backend))

    assert set(owned(backend)) == {ours.id}
    with pytest.raises(CloudError):
        backend.cloud.delete_instance(foreign)
    assert backend.exists(foreign)


def test_transient_faults_are_transient_errors_and_pass(backend):
    backend.fail_transiently(2)

    with pytest.raises(CloudError) as listing:
        backend.cloud.owned_instances()
    with pytest.raises(CloudError) as creating:
        backend.cloud.create_instance(spec(backend))

    assert listing.value.kind == creating.value.kind == ErrorKind.TRANSIENT
    assert backend.cloud.owned_instances() == ()
