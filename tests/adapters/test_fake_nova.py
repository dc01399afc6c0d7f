"""FakeNova answers as the real Nova API does (docs/nova-facts.md), on a FakeClock."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from novaclient import exceptions as nova_exc

from dtserver.clock import FakeClock
from dtserver.fakes.nova import DEFAULT_IMAGE, DEFAULT_NETWORK, NO_VALID_HOST, Call, FakeNova
from dtserver.model import Flavor, Quota

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
NETS = [{"net-id": DEFAULT_NETWORK}]


def sequential_ids():
    counter = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(counter):012d}"


def fake_nova(clock=None, **options) -> FakeNova:
    options.setdefault("id_factory", sequential_ids())
    options.setdefault("boot_delay", 5)
    options.setdefault("delete_delay", 2)
    return FakeNova(clock or FakeClock(T0), **options)


def boot(nova: FakeNova, name: str = "wn-1", *, flavor: str = "2", **options):
    options.setdefault("nics", NETS)
    return nova.servers.create(name, DEFAULT_IMAGE, flavor, **options)


def limits(nova: FakeNova) -> dict[str, int]:
    return {item.name: item.value for item in nova.limits.get().absolute}


def test_create_answers_with_little_more_than_the_id():
    nova = fake_nova()

    created = boot(nova)

    assert created.id == "00000000-0000-4000-8000-000000000001"
    assert not hasattr(created, "status")
    assert not hasattr(created, "metadata")


def test_server_builds_then_turns_active_with_a_link_local_address_after_the_boot_delay():
    clock = FakeClock(T0)
    nova = fake_nova(clock)
    server_id = boot(nova, meta={"k": "v"}, availability_zone="nova").id

    building = nova.servers.get(server_id)
    clock.advance(5)
    active = nova.servers.get(server_id)

    assert (building.status, getattr(building, "OS-EXT-STS:task_state")) == ("BUILD", "scheduling")
    assert building.addresses == {}
    assert active.status == "ACTIVE"
    assert active.addresses["private"][0]["addr"] == "169.254.80.100"
    assert getattr(active, "OS-EXT-AZ:availability_zone") == "nova"
    assert active.metadata == {"k": "v"}
    assert active.created == "2024-05-01T12:00:00Z"


def test_a_boot_delay_function_is_drawn_once_per_server():
    clock = FakeClock(T0)
    delays = iter([3.0, 8.0])
    nova = fake_nova(clock, boot_delay=lambda: next(delays))
    fast, slow = boot(nova, "wn-1").id, boot(nova, "wn-2").id

    clock.advance(3)
    assert [nova.servers.get(fast).status, nova.servers.get(slow).status] == ["ACTIVE", "BUILD"]
    clock.advance(5)
    assert nova.servers.get(slow).status == "ACTIVE"


def test_a_negative_drawn_boot_delay_is_refused_before_the_server_exists():
    nova = fake_nova(boot_delay=lambda: -1.0)
    with pytest.raises(ValueError, match="negative"):
        boot(nova)
    assert nova.servers.list() == []


def test_zone_is_assigned_at_scheduling_when_none_was_asked_for():
    clock = FakeClock(T0)
    nova = fake_nova(clock, zones=("az1", "az2"))
    server_id = boot(nova).id

    assert getattr(nova.servers.get(server_id), "OS-EXT-AZ:availability_zone") == ""
    clock.advance(5)
    assert getattr(nova.servers.get(server_id), "OS-EXT-AZ:availability_zone") == "az1"


def test_deleted_server_is_gone_with_404_after_the_delete_delay():
    clock = FakeClock(T0)
    nova = fake_nova(clock)
    server_id = boot(nova).id

    nova.servers.delete(server_id)
    still_there = nova.servers.get(server_id)
    clock.advance(2)

    assert getattr(still_there, "OS-EXT-STS:task_state") == "deleting"
    with pytest.raises(nova_exc.NotFound) as caught:
        nova.servers.get(server_id)
    assert caught.value.code == 404
    with pytest.raises(nova_exc.NotFound):
        nova.servers.delete(server_id)


def test_quota_refusal_is_a_403_naming_the_resource_as_nova_does():
    nova = fake_nova(flavors=[Flavor("as.small", cores=2, mem_mb=512, id="as-small")],
                     quota=Quota(cores=3, instances=2))
    boot(nova, flavor="as-small")

    with pytest.raises(nova_exc.Forbidden) as caught:
        boot(nova, "wn-2", flavor="as-small")

    assert caught.value.code == 403
    assert caught.value.message == \
        "Quota exceeded for cores: Requested 2, but already used 2 of 3 cores"


def test_quota_refusal_lists_every_resource_over():
    nova = fake_nova(quota=Quota(cores=1, ram_mb=1024))

    with pytest.raises(nova_exc.Forbidden) as caught:
        boot(nova, flavor="3")

    assert caught.value.message == ("Quota exceeded for cores, ram: Requested 2, 4096, but "
                                    "already used 0, 0 of 1, 1024 cores, ram")


def test_set_quota_changes_limits_and_minus_one_lifts_them():
    nova = fake_nova()
    nova.set_quota(cores=1)
    with pytest.raises(nova_exc.Forbidden):
        boot(nova, flavor="3")

    nova.set_quota(cores=-1)

    boot(nova, flavor="3")


def test_limits_report_usage_and_unlimited_as_minus_one():
    nova = fake_nova(quota=Quota(cores=10))
    boot(nova, flavor="3")

    absolute = limits(nova)

    assert (absolute["maxTotalCores"], absolute["totalCoresUsed"]) == (10, 2)
    assert (absolute["maxTotalInstances"], absolute["totalInstancesUsed"]) == (-1, 1)
    assert absolute["totalRAMUsed"] == 4096


def test_quota_is_released_only_when_the_deleted_server_is_gone():
    clock = FakeClock(T0)
    nova = fake_nova(clock)
    server_id = boot(nova, flavor="3").id
    nova.servers.delete(server_id)

    assert limits(nova)["totalCoresUsed"] == 2
    clock.advance(2)
    assert limits(nova)["totalCoresUsed"] == 0


@pytest.mark.parametrize(("name", "flavor", "options", "message"), [
    ("wn-1", "m1.small", {}, "Invalid flavorRef provided."),
    ("wn-1", "2", {"availability_zone": "no-such-az"},
     "The requested availability zone is not available"),
    ("", "2", {}, "Invalid input for field/attribute name. Value: . '' is too short"),
    ("wn-1", "2", {"nics": [{"net-id": "no-such-net"}]},
     "Network no-such-net could not be found."),
])
def test_bad_requests_are_400_with_novas_messages(name, flavor, options, message):
    nova = fake_nova()

    with pytest.raises(nova_exc.BadRequest) as caught:
        boot(nova, name, flavor=flavor, **options)

    assert (caught.value.code, caught.value.message) == (400, message)


def test_unknown_image_and_key_name_are_400():
    nova = fake_nova(keypairs=["ci-key"])

    with pytest.raises(nova_exc.BadRequest, match="Can not find requested image"):
        nova.servers.create("wn-1", "11111111-2222-3333-4444-555555555555", "2", nics=NETS)
    with pytest.raises(nova_exc.BadRequest, match="Invalid key_name provided."):
        boot(nova, key_name="missing")


def test_missing_nics_is_refused_by_novaclient_from_microversion_2_37():
    nova = fake_nova()

    with pytest.raises(ValueError, match="nics are required"):
        nova.servers.create("wn-1", DEFAULT_IMAGE, "2")


def test_tags_at_create_need_microversion_2_52():
    nova = fake_nova(microversion="2.51")

    with pytest.raises(nova_exc.UnsupportedAttribute):
        boot(nova, tags=["a"])


def test_nics_none_boots_without_addresses():
    clock = FakeClock(T0)
    nova = fake_nova(clock)
    server_id = boot(nova, nics="none").id

    clock.advance(5)

    assert nova.servers.get(server_id).addresses == {}


def test_user_data_is_kept_base64_encoded_and_readable_by_the_admin_view():
    nova = fake_nova()
    server_id = boot(nova, userdata="#!/bin/sh\necho hello\n").id

    assert nova.user_data(server_id) == "#!/bin/sh\necho hello\n"


def test_list_filters_by_all_tags_and_by_any_tag_but_ignores_metadata():
    nova = fake_nova()
    both = boot(nova, "both", tags=["a", "b"]).id
    only_a = boot(nova, "only-a", tags=["a"], meta={"pool": "x"}).id
    boot(nova, "none")

    def names(**search_opts):
        return {server.id for server in nova.servers.list(search_opts=search_opts)}

    assert names(tags="a,b") == {both}
    assert names(**{"tags-any": "a,b"}) == {both, only_a}
    assert names(**{"not-tags": "b", "tags": "a"}) == {only_a}
    assert len(names(metadata='{"pool": "x"}')) == 3


def test_list_is_newest_first_and_pages_at_max_limit_unless_limit_is_minus_one():
    nova = fake_nova(max_limit=3)
    ids = [boot(nova, f"wn-{index}").id for index in range(5)]

    first_page = [server.id for server in nova.servers.list()]
    next_page = [server.id for server in nova.servers.list(marker=first_page[-1], limit=2)]
    everything = [server.id for server in nova.servers.list(limit=-1)]

    assert first_page == ids[::-1][:3]
    assert next_page == ids[::-1][3:]
    assert everything == ids[::-1]


def test_server_detail_embeds_the_flavor_from_2_47_and_links_it_before():
    new = fake_nova()
    old = fake_nova(microversion="2.46")

    assert new.servers.get(boot(new).id).flavor["original_name"] == "m1.small"
    assert old.servers.get(boot(old).id).flavor["id"] == "2"


def test_flavors_list_get_and_find():
    nova = fake_nova()

    assert [(f.id, f.name, f.vcpus, f.ram) for f in nova.flavors.list()][0] == \
        ("2", "m1.small", 1, 2048)
    assert nova.flavors.get("4").name == "m1.large"
    assert nova.flavors.find(name="m1.medium").id == "3"
    with pytest.raises(nova_exc.NotFound):
        nova.flavors.get("m1.large")
    with pytest.raises(nova_exc.NotFound):
        nova.flavors.find(name="m9.huge")


def test_fail_next_raises_for_the_next_calls_then_recovers():
    nova = fake_nova()
    outage = nova_exc.ClientException(503, "Service Unavailable")
    nova.fail_next(2, outage)

    with pytest.raises(nova_exc.ClientException):
        nova.servers.list()
    with pytest.raises(nova_exc.ClientException):
        boot(nova)

    assert nova.server_ids() == ()
    assert nova.servers.list() == []


def test_fail_next_only_hits_the_named_operations():
    nova = fake_nova()
    nova.fail_next(1, nova_exc.ClientException(500, "boom"), operations=["servers.delete"])

    server_id = boot(nova).id
    nova.servers.list()
    with pytest.raises(nova_exc.ClientException):
        nova.servers.delete(server_id)


def test_an_applied_failure_creates_the_server_but_loses_the_answer():
    nova = fake_nova()
    nova.fail_next(1, nova_exc.ClientException(504, "Gateway Timeout"),
                   operations=["servers.create"], applied=True)

    with pytest.raises(nova_exc.ClientException):
        boot(nova, "lost-1")

    assert [server.name for server in nova.servers.list()] == ["lost-1"]


def test_error_on_boot_by_name_pattern_ends_in_error_with_a_no_valid_host_fault():
    clock = FakeClock(T0)
    nova = fake_nova(clock)
    nova.error_on_boot(r"^gpu-")
    failing = boot(nova, "gpu-1").id
    fine = boot(nova, "cpu-1").id

    clock.advance(5)

    server = nova.servers.get(failing)
    assert server.status == "ERROR"
    assert server.fault["message"] == NO_VALID_HOST
    assert server.addresses == {}
    assert nova.servers.get(fine).status == "ACTIVE"
    assert not hasattr(nova.servers.get(fine), "fault")


def test_error_on_boot_by_count_fails_only_that_many_boots():
    clock = FakeClock(T0)
    nova = fake_nova(clock)
    nova.error_on_boot(count=1)
    ids = [boot(nova, f"wn-{index}").id for index in range(3)]

    clock.advance(5)

    assert [nova.servers.get(server_id).status for server_id in ids] == \
        ["ERROR", "ACTIVE", "ACTIVE"]


def test_never_active_servers_stay_in_build():
    clock = FakeClock(T0)
    nova = fake_nova(clock)
    nova.never_active("stuck")
    server_id = boot(nova, "stuck-1").id

    clock.advance(3600)

    assert nova.servers.get(server_id).status == "BUILD"
    assert nova.next_event_at() is None


def test_on_active_callbacks_get_the_server_when_it_turns_active():
    clock = FakeClock(T0)
    nova = fake_nova(clock)
    seen = []
    nova.on_active.append(lambda server: seen.append((server.name, server.status)))
    boot(nova, "wn-1")

    assert nova.next_event_at() == T0 + timedelta(seconds=5)
    clock.advance(5)
    nova.tick()
    nova.tick()

    assert seen == [("wn-1", "ACTIVE")]


def test_addresses_of_deleted_servers_are_handed_out_again():
    clock = FakeClock(T0)
    nova = fake_nova(clock, boot_delay=0, delete_delay=0)
    first = boot(nova, "wn-1").id
    boot(nova, "wn-2")
    nova.tick()
    nova.servers.delete(first)
    nova.tick()

    third = boot(nova, "wn-3").id
    nova.tick()

    assert nova.servers.get(third).addresses["private"][0]["addr"] == "169.254.80.100"


def test_foreign_server_is_listed_active_and_counts_against_quota():
    nova = fake_nova(quota=Quota(instances=1))
    foreign = nova.add_foreign_server("someone-else", tags=["dynamictorque"], flavor="2")

    assert nova.servers.get(foreign).status == "ACTIVE"
    with pytest.raises(nova_exc.Forbidden, match="instances"):
        boot(nova)


def test_calls_are_logged_in_order():
    nova = fake_nova()
    server_id = boot(nova).id
    nova.servers.list(search_opts={"tags": "a"}, limit=-1)
    nova.servers.delete(server_id)

    assert [call.operation for call in nova.calls] == \
        ["servers.create", "servers.list", "servers.delete"]
    assert list(nova.calls)[-1] == Call("servers.delete", {"server": server_id})


def test_a_thousand_boots_and_deletes_stay_cheap():
    clock = FakeClock(T0)
    nova = fake_nova(clock, boot_delay=1, delete_delay=1)
    ids = [boot(nova, f"wn-{index}").id for index in range(1000)]
    clock.advance(1)

    addresses = {server.addresses["private"][0]["addr"] for server in nova.servers.list(limit=-1)}
    for server_id in ids:
        nova.servers.delete(server_id)
    clock.advance(1)

    assert len(addresses) == 1000
    assert nova.servers.list(limit=-1) == []


def test_an_on_active_callback_may_call_back_into_the_fake():
    clock = FakeClock(T0)
    nova = fake_nova(clock)
    seen = []
    nova.on_active.append(lambda server: seen.append(nova.servers.get(server.id).status))
    boot(nova)

    clock.advance(5)
    nova.servers.list()

    assert seen == ["ACTIVE"]
