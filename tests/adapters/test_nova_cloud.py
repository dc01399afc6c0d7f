"""NovaCloud's own choices over FakeNova: tags, paging, nics, flavor cache, microversions."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from novaclient import exceptions as nova_exc

from dtserver.clock import FakeClock
from dtserver.cloud import CloudError
from dtserver.cloud.nova import NovaCloud, fault_kind
from dtserver.fakes.nova import DEFAULT_IMAGE, DEFAULT_NETWORK, NO_VALID_HOST, FakeNova
from dtserver.model import ErrorKind, InstanceSpec, Quota

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
INSTALLATION = "0123456789abcdef0123456789abcdef"
OTHER_INSTALLATION = "fedcba9876543210fedcba9876543210"


def fake_nova(clock=None, **options) -> FakeNova:
    counter = itertools.count(1)
    options.setdefault("id_factory", lambda: f"00000000-0000-4000-8000-{next(counter):012d}")
    options.setdefault("boot_delay", 3)
    options.setdefault("delete_delay", 1)
    return FakeNova(clock or FakeClock(T0), **options)


def nova_cloud(nova: FakeNova, **options) -> NovaCloud:
    options.setdefault("cluster_id", "c1")
    options.setdefault("installation", INSTALLATION)
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
    assert server.metadata == {"dynamictorque:cluster": "c1",
                               "dynamictorque:installation": INSTALLATION,
                               "dynamictorque:pool": "big", "dynamictorque:record": "rec-9"}
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


def test_a_server_listed_on_two_pages_is_one_instance(monkeypatch):
    # Seen on the real Nova API: paging by marker while servers build repeated one of them.
    nova = fake_nova()
    cloud = nova_cloud(nova)
    created = [cloud.create_instance(spec(f"dt-c1-{index}")).id for index in range(3)]
    listed = nova.servers.list
    monkeypatch.setattr(nova.servers, "list",
                        lambda **options: (lambda servers: servers + servers[:2])(
                            list(listed(**options))))

    assert sorted(instance.id for instance in cloud.owned_instances()) == sorted(created)


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


# --- two installations in one project ---------------------------------------------------

@pytest.mark.parametrize("installation", ["", "a b", "x\n", "x" * 256])
def test_an_installation_id_that_cannot_be_metadata_is_refused(installation):
    with pytest.raises(ValueError, match="installation"):
        nova_cloud(fake_nova(), installation=installation)


def test_another_installation_with_our_cluster_id_is_foreign_and_warned_about_once(caplog):
    nova = fake_nova()
    seen = []
    ours = nova_cloud(nova, on_foreign=seen.append)
    theirs = nova_cloud(nova, installation=OTHER_INSTALLATION)
    mine = ours.create_instance(spec("dt-c1-1"))
    other = theirs.create_instance(spec("dt-c1-2"))

    with caplog.at_level("WARNING", logger="dtserver.cloud.nova"):
        first, second = ours.owned_instances(), ours.owned_instances()

    assert [instance.id for instance in first] == [mine.id] == \
        [instance.id for instance in second]
    assert [(found.id, found.name, found.installation) for found in seen] == \
        [(other.id, "dt-c1-2", OTHER_INSTALLATION)]
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and other.id in warnings[0] and OTHER_INSTALLATION in warnings[0]
    assert [instance.id for instance in theirs.owned_instances()] == [other.id]


def test_an_instance_of_another_installation_is_never_deleted():
    nova = fake_nova()
    other = nova_cloud(nova, installation=OTHER_INSTALLATION).create_instance(spec())

    with pytest.raises(CloudError, match="not owned"):
        nova_cloud(nova).delete_instance(other.id)

    assert calls(nova, "servers.delete") == []
    assert other.id in nova.server_ids()


def legacy_server(nova: FakeNova, name: str, record_id: str) -> str:
    """An instance made before installation ids: our cluster's tags and metadata only."""
    return nova.add_foreign_server(
        name, metadata={"dynamictorque:cluster": "c1", "dynamictorque:pool": "default",
                        "dynamictorque:record": record_id},
        tags=["dynamictorque", "dt-cluster-c1"])


def test_an_instance_made_before_installation_ids_is_ours_only_if_a_record_names_it():
    nova = fake_nova()
    named = legacy_server(nova, "dt-c1-1", "rec-ours")
    unnamed = legacy_server(nova, "dt-c1-2", "rec-unknown")
    seen = []
    cloud = nova_cloud(nova, knows_record=lambda record_id: record_id == "rec-ours",
                       on_foreign=seen.append)

    assert [instance.id for instance in cloud.owned_instances()] == [named]
    assert [(found.id, found.installation) for found in seen] == [(unnamed, None)]
    with pytest.raises(CloudError, match="not owned"):
        cloud.delete_instance(unnamed)
    cloud.delete_instance(named)
    assert [call.args["server"] for call in calls(nova, "servers.delete")] == [named]


def test_without_a_way_to_ask_our_records_an_old_instance_is_foreign():
    nova = fake_nova()
    legacy_server(nova, "dt-c1-1", "rec-1")

    assert nova_cloud(nova).owned_instances() == ()


# --- hostile addresses ------------------------------------------------------------------

HOSTILE_ADDRESSES = [
    "fe80::1%eth0\n1.2.3.4 evil",
    "fe80::1%eth0",
    "10.0.0.5\n10.6.6.6 head",
    "10.0.0.5 evil",
    " 10.0.0.5",
    "10.0.0.5\t",
    "10.0.0.5\x00",
    "evil.example.org",
    "",
    42,
    None,
]


def active_server(nova: FakeNova, clock: FakeClock, cloud: NovaCloud) -> str:
    created = cloud.create_instance(spec())
    clock.advance(3)
    nova.tick()
    return created.id


@pytest.mark.parametrize("address", HOSTILE_ADDRESSES)
def test_an_address_that_is_not_a_plain_ip_is_never_used(address, caplog):
    clock = FakeClock(T0)
    nova = fake_nova(clock)
    cloud = nova_cloud(nova)
    server_id = active_server(nova, clock, cloud)
    nova.set_addresses(server_id, {"private": [{"version": 6, "addr": address}]})

    with caplog.at_level("WARNING", logger="dtserver.cloud.nova"):
        (instance,) = cloud.owned_instances()
        cloud.owned_instances()

    assert instance.addresses == ()
    assert [record.levelname for record in caplog.records] == ["WARNING"]
    assert "\n" not in caplog.records[0].getMessage()


def test_good_addresses_are_kept_beside_bad_ones_in_canonical_form():
    clock = FakeClock(T0)
    nova = fake_nova(clock)
    cloud = nova_cloud(nova)
    server_id = active_server(nova, clock, cloud)
    nova.set_addresses(server_id, {
        "evil": [{"addr": "fe80::1%eth0\n1.2.3.4 evil"}, "not a mapping"],
        "private": [{"addr": "10.0.0.5"}, {"addr": "FD00::0005"}, {"addr": "10.0.0.5"}],
        "broken": "not a list"})

    (instance,) = cloud.owned_instances()

    assert instance.addresses == ("10.0.0.5", "fd00::5")
