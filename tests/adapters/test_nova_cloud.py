"""NovaCloud's own choices over FakeNova: tags, paging, nics, flavor cache, microversions."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from novaclient import exceptions as nova_exc

from dtserver.clock import FakeClock
from dtserver.cloud import CloudError
from dtserver.cloud.fake_nova import DEFAULT_IMAGE, DEFAULT_NETWORK, NO_VALID_HOST, FakeNova
from dtserver.cloud.nova import NovaCloud, fault_kind
from dtserver.model import ErrorKind, InstanceSpec, Quota

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def fake_nova(clock=None, **options) -> FakeNova:
    counter = itertools.count(1)
    options.setdefault("id_factory", lambda: f"00000000-0000-4000-8000-{next(counter):012d}")
    options.setdefault("boot_delay", 3)
    options.setdefault("delete_delay", 1)
    return FakeNova(clock or FakeClock(T0), **options)


def nova_cloud(nova: FakeNova, **options) -> NovaCloud:
    options.setdefault("cluster_id", "c1")
    options.setdefault("clock", nova.clock)
    return NovaCloud(nova, **options)


def spec(name: str = "dt-c1-1", **fields) -> InstanceSpec:
    fields.setdefault("pool", "default")
    fields.setdefault("record_id", f"rec-{name}")
    fields.setdefault("flavor", "m1.small")
    fields.setdefault("image", DEFAULT_IMAGE)
    return InstanceSpec(name=name, **fields)


def calls(nova: FakeNova, operation: str) -> list:
    return [call for call in nova.calls if call.operation == operation]


@pytest.mark.parametrize("cluster_id", ["", "a,b", "a/b", "-lead", "x" * 50])
def test_a_cluster_id_that_cannot_be_a_nova_tag_is_refused(cluster_id):
    with pytest.raises(ValueError):
        nova_cloud(fake_nova(), cluster_id=cluster_id)


def test_the_longest_cluster_id_still_fits_a_60_character_tag():
    cloud = nova_cloud(fake_nova(), cluster_id="x" * 49)

    assert cloud.cluster_id == "x" * 49


def test_microversions_without_server_tags_are_refused():
    with pytest.raises(ValueError, match="2.26"):
        nova_cloud(fake_nova(microversion="2.25"))


def test_create_sends_ownership_metadata_tags_and_the_flavor_id():
    nova = fake_nova()
    cloud = nova_cloud(nova, network=DEFAULT_NETWORK)

    cloud.create_instance(spec(pool="big", record_id="rec-9", flavor="m1.large"))

    server = nova.servers.list()[0]
    assert server.metadata == {"dynamictorque:cluster": "c1", "dynamictorque:pool": "big",
                               "dynamictorque:record": "rec-9"}
    assert server.tags == ["dynamictorque", "dt-cluster-c1"]
    assert calls(nova, "servers.create")[0].args["flavor"] == "4"


def test_a_flavor_may_also_be_named_by_its_id():
    nova = fake_nova()

    created = nova_cloud(nova).create_instance(spec(flavor="4"))

    assert created.flavor_id == "4"


def test_flavors_are_listed_once_and_again_only_for_an_unknown_name():
    nova = fake_nova()
    cloud = nova_cloud(nova)

    cloud.create_instance(spec("dt-c1-1"))
    cloud.create_instance(spec("dt-c1-2"))
    with pytest.raises(CloudError):
        cloud.create_instance(spec("dt-c1-3", flavor="m9.huge"))

    assert len(calls(nova, "flavors.list")) == 2
    assert len(calls(nova, "servers.create")) == 2


def test_below_2_52_tags_are_added_right_after_the_create():
    nova = fake_nova(microversion="2.51")
    cloud = nova_cloud(nova)

    created = cloud.create_instance(spec())

    assert [instance.id for instance in cloud.owned_instances()] == [created.id]
    assert calls(nova, "servers.set_tags")[0].args["tags"] == ["dynamictorque", "dt-cluster-c1"]


def test_an_instance_that_cannot_be_tagged_is_deleted_again():
    nova = fake_nova(microversion="2.51")
    cloud = nova_cloud(nova)
    nova.fail_next(1, nova_exc.ClientException(503, "Service Unavailable"),
                   operations=["servers.set_tags"])

    with pytest.raises(CloudError) as caught:
        cloud.create_instance(spec())

    assert caught.value.kind == ErrorKind.TRANSIENT
    assert len(calls(nova, "servers.delete")) == 1


def test_owned_instances_follows_every_page():
    nova = fake_nova(max_limit=3)
    cloud = nova_cloud(nova)
    created = {cloud.create_instance(spec(f"dt-c1-{index}")).id for index in range(7)}

    assert {instance.id for instance in cloud.owned_instances()} == created
    assert calls(nova, "servers.list")[0].args["limit"] == -1


def test_owned_instances_lists_by_tag_and_checks_metadata_itself():
    nova = fake_nova()
    cloud = nova_cloud(nova)
    ours = cloud.create_instance(spec())
    nova_cloud(nova, cluster_id="c2").create_instance(spec("dt-c2-1"))

    assert [instance.id for instance in cloud.owned_instances()] == [ours.id]
    assert calls(nova, "servers.list")[0].args["search_opts"] == \
        {"tags": "dynamictorque,dt-cluster-c1"}


def test_an_instance_whose_response_was_lost_is_found_again_by_its_record():
    nova = fake_nova()
    cloud = nova_cloud(nova)
    nova.fail_next(1, nova_exc.ClientException(504, "Gateway Timeout"),
                   operations=["servers.create"], applied=True)

    with pytest.raises(CloudError):
        cloud.create_instance(spec(record_id="rec-42"))

    assert [instance.record_id for instance in cloud.owned_instances()] == ["rec-42"]


def test_an_error_instance_carries_its_fault_as_a_capacity_problem():
    clock = FakeClock(T0)
    nova = fake_nova(clock)
    cloud = nova_cloud(nova)
    nova.error_on_boot(count=1)
    cloud.create_instance(spec())

    clock.advance(3)

    (instance,) = cloud.owned_instances()
    assert (instance.status, instance.fault) == ("ERROR", NO_VALID_HOST)
    assert fault_kind(instance.fault) == ErrorKind.CAPACITY


def test_instance_created_time_comes_from_nova():
    clock = FakeClock(T0)
    nova = fake_nova(clock)
    cloud = nova_cloud(nova)
    clock.advance(timedelta(minutes=5))
    cloud.create_instance(spec())

    (instance,) = cloud.owned_instances()

    assert instance.created == T0 + timedelta(minutes=5)


def test_flavor_id_is_read_from_old_microversions_and_resolved_by_name_from_2_47():
    for microversion in ("2.46", "2.96"):
        nova = fake_nova(microversion=microversion)
        cloud = nova_cloud(nova)
        cloud.create_instance(spec(flavor="m1.medium"))

        assert cloud.owned_instances()[0].flavor_id == "3"


@pytest.mark.parametrize(("network", "nics"), [
    (None, "auto"),
    ("auto", "auto"),
    ("none", "none"),
    (DEFAULT_NETWORK, [{"net-id": DEFAULT_NETWORK}]),
])
def test_nics_follow_the_configured_network(network, nics):
    nova = fake_nova()

    nova_cloud(nova, network=network).create_instance(spec())

    assert calls(nova, "servers.create")[0].args["nics"] == nics


def test_the_spec_network_wins_over_the_configured_one():
    clock = FakeClock(T0)
    nova = fake_nova(clock)
    cloud = nova_cloud(nova, network=DEFAULT_NETWORK)
    cloud.create_instance(spec(network="none"))

    clock.advance(3)

    assert cloud.owned_instances()[0].addresses == ()


def test_before_2_37_auto_omits_nics_and_none_is_refused():
    nova = fake_nova(microversion="2.36")

    nova_cloud(nova).create_instance(spec())
    with pytest.raises(ValueError, match="2.37"):
        nova_cloud(nova, network="none")


def test_quota_reports_free_capacity_none_when_unlimited_and_never_below_zero():
    nova = fake_nova(quota=Quota(cores=3, ram_mb=4096))
    cloud = nova_cloud(nova)
    cloud.create_instance(spec(flavor="m1.medium"))
    nova.set_quota(cores=1)

    assert cloud.quota() == Quota(cores=0, instances=None, ram_mb=0)


def test_deleting_a_foreign_instance_never_reaches_nova():
    nova = fake_nova()
    foreign = nova.add_foreign_server("dt-c1-1", metadata={"dynamictorque:cluster": "c2"},
                                      tags=["dynamictorque", "dt-cluster-c1"])

    with pytest.raises(CloudError, match="not owned"):
        nova_cloud(nova).delete_instance(foreign)

    assert calls(nova, "servers.delete") == []


def test_a_failed_delete_is_classified():
    nova = fake_nova()
    cloud = nova_cloud(nova)
    created = cloud.create_instance(spec())
    nova.fail_next(1, nova_exc.Conflict(409, "Cannot 'delete' instance while it is locked"),
                   operations=["servers.delete"])

    with pytest.raises(CloudError) as caught:
        cloud.delete_instance(created.id)

    assert (caught.value.kind, caught.value.status) == (ErrorKind.CONFLICT, 409)
