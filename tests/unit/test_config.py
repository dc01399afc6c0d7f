"""config: Dynamic Torque compatible dynamic_torque.conf -> Settings -> Policy."""
from __future__ import annotations

import re
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from dtserver.config import (
    OBSOLETE_KEYS,
    SECTION_KEYS,
    ConfigError,
    EventCommands,
    PoolSettings,
    Settings,
    build_policy,
    describe,
    load_settings,
    parse_settings,
)
from dtserver.model import Flavor
from dtserver.policy import Policy, Pool
from dtserver.redact import MASK

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "config"
OLD_DT_FILE = DATA / "dynamic_torque_dt.conf"
EXAMPLE_FILE = ROOT / "deploy" / "dynamic_torque.conf.example"

SMALL = Flavor("m1.small", cores=2, mem_mb=4096, id="1")
LARGE = Flavor("m1.large", cores=8, mem_mb=16384, id="3")
CLOUD_FLAVORS = {flavor.name: flavor for flavor in (SMALL, LARGE)}
MINIMAL = "[cloud]\ncloud_image_uuid: img-1\n"


def conf(text: str = "", *, base: str = MINIMAL) -> Settings:
    """Settings from a snippet appended to a minimal valid file."""
    return parse_settings(base + textwrap.dedent(text), source="test.conf")


def config_error(text: str, *, base: str = MINIMAL) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        conf(text, base=base)
    return caught.value


def uncommented_defaults(text: str) -> str:
    """The example with every documented `#key: default` line switched on."""
    known = {key for keys in SECTION_KEYS.values() for key in keys}

    def switch_on(match: re.Match[str]) -> str:
        key, value = match["key"], match["value"] or ""
        return f"{key}:{value}" if key in known and "<" not in value else match[0]

    return re.sub(r"^#(?P<key>[a-z_]+):(?P<value> .*)?$", switch_on, text, flags=re.MULTILINE)


# --- the old Dynamic Torque file ------------------------------------------------------

def test_old_dynamic_torque_sample_loads_with_its_keys_meaning_the_same():
    settings = load_settings(OLD_DT_FILE)

    assert settings.queues == {"long", "short"}
    assert settings.idle_timeout == 600 and settings.down_timeout == 480
    assert settings.boot_timeout == 1200
    assert settings.job_poller_interval == 10 and settings.cloud_poller_interval == 20
    assert [pool.name for pool in settings.pools] == ["cloud-MEL", "cloud-MON"]
    mel, mon = settings.pools
    assert (mel.zone, mon.zone) == ("melbourne-qh2", "monash-01")
    assert mel.properties == {"PRODUCTION", "MEL"} and mon.properties == {"PRODUCTION", "MON"}
    assert (mel.name_prefix, mon.name_prefix) == ("pbsdynwn-mel-", "pbsdynwn-mon-")
    assert mel.flavors == ("m1.small",)
    assert mel.image == "6c1f9f5e-2d7a-4b8e-9a51-0b8f3e1d2c44"
    assert mel.key_name == "torque" and mel.security_groups == ("default",)
    assert mel.user_data_file == Path("/opt/userdata.sh")


def test_old_plaintext_credentials_load_into_cloud_auth_with_a_warning_without_the_password():
    settings = load_settings(OLD_DT_FILE)

    assert settings.cloud_auth == {
        "username": "alice@example.org", "password": "not-a-real-password",
        "project_name": "tier3-project", "auth_url": "https://keystone.example.org:5000/v2.0/"}
    plaintext = [warning for warning in settings.warnings if "plaintext" in warning]
    assert len(plaintext) == 1 and "cloud_password" in plaintext[0]
    assert "clouds.yaml" in plaintext[0]
    assert not any("not-a-real-password" in warning for warning in settings.warnings)


def test_old_obsolete_keys_warn_with_file_line_and_what_replaced_them():
    warnings = load_settings(OLD_DT_FILE).warnings

    resources = next(warning for warning in warnings if "cloud_resources_config" in warning)
    assert resources.startswith(f"{OLD_DT_FILE}:143: [cloud] cloud_resources_config:")
    assert "[pool NAME]" in resources
    assert any("cloud_private_key_location" in warning and "pbs_mom" in warning
               for warning in warnings)
    assert any("default_location" in warning for warning in warnings)
    assert any("Keystone v2.0" in warning for warning in warnings)
    assert not any("cloud_vm_init_file" in warning for warning in warnings)  # left blank


def test_old_file_with_every_commented_key_switched_on_loads_and_warns_for_each_obsolete_key():
    text = re.sub(r"^#(\w+):", r"\1:", OLD_DT_FILE.read_text(), flags=re.MULTILINE)

    settings = parse_settings(text, source="old.conf")

    assert settings.max_cores == 40
    assert settings.events.post_add_node == ("/the/path/some.sh", "{0}", "{1}")
    assert settings.events.post_vm_destroy == ("/the/path/some.sh", "{0}", "{1}", "{2}")
    assert settings.log_location == Path("/var/log/dynamictorque/dynamictorque.log")
    assert settings.log_format == "%(asctime)s - %(levelname)s - %(threadName)s - %(message)s"
    for key in ("pool_min_num", "persistent_file_location", "qstat_command", "pbsnodes_command",
                "add_node_command", "check_node_command", "remove_node_command",
                "set_node_command", "diagnose_p_command", "setres_command",
                "releaseres_command", "cloud_shell_user", "log_stdout", "log_max_size"):
        assert sum(f" {key}: obsolete" in warning for warning in settings.warnings) == 1, key


def test_every_obsolete_key_names_what_replaced_it():
    assert {"setres_command", "releaseres_command", "diagnose_p_command",
            "cloud_vm_init_finish_file", "check_node_command"} <= set(OBSOLETE_KEYS)
    assert all(reason for reason in OBSOLETE_KEYS.values())


# --- the shipped example ----------------------------------------------------------------

def test_example_config_loads_without_warnings():
    settings = load_settings(EXAMPLE_FILE)

    assert settings.warnings == ()
    assert settings.cloud_name == "<clouds-yaml-entry>"
    assert [pool.name for pool in settings.pools] == ["cloud"]


def test_example_config_documents_every_key():
    text = EXAMPLE_FILE.read_text()

    for section, keys in SECTION_KEYS.items():
        for key in keys:
            assert re.search(rf"\b{key}\b", text), (section, key)
    documented = set(re.findall(r"^#\s*([a-z_]+):", text, flags=re.MULTILINE))
    assert documented >= {"max_idle_time", "node_location_property", "log_format", "bind",
                          "static_worker_nodes", "flavors", "user_data_file"}
    for key in OBSOLETE_KEYS:
        assert re.search(rf"\b{key}\b", text), key


def test_example_config_keeps_secrets_as_placeholders():
    text = EXAMPLE_FILE.read_text()

    assert re.search(r"^#cloud_password: <password>$", text, flags=re.MULTILINE)
    assert not re.search(r"^cloud_password:", text, flags=re.MULTILINE)


def test_defaults_documented_in_the_example_are_the_defaults_used():
    text = EXAMPLE_FILE.read_text()
    switched_on = uncommented_defaults(text)
    assert switched_on.count("\n#") < text.count("\n#")   # the test did switch lines on

    assert parse_settings(switched_on, source="defaults") == load_settings(EXAMPLE_FILE)


def test_defaults_written_by_describe_are_the_dataclass_defaults():
    settings = conf()

    assert parse_settings(describe(settings), source="described") == settings
    assert "max_idle_time: 600\n" in describe(settings)
    assert settings.pools == (PoolSettings(name="cloud", flavors=("m1.small",), image="img-1"),)
    assert settings.events == EventCommands()


# --- errors ------------------------------------------------------------------------------

def test_unknown_key_names_file_line_and_nearest_valid_key():
    error = config_error("[global]\nmax_idle_tim: 300\n")

    assert error.line == 4 and error.key == "max_idle_tim" and error.suggestion == "max_idle_time"
    assert str(error) == ("test.conf:4: [global] max_idle_tim: unknown key "
                          "(did you mean max_idle_time?)")


def test_key_in_the_wrong_section_names_its_section():
    error = config_error("[torque]\nmax_idle_time: 300\n")

    assert "belongs in [global]" in str(error) and error.line == 4


def test_old_cloud_key_in_a_pool_section_suggests_the_pool_key():
    error = config_error("[pool gpu]\ncloud_image_uuid: img-2\n")

    assert error.suggestion == "image" and error.section == "pool gpu"


def test_unknown_section_suggests_the_nearest():
    error = config_error("[clod]\ndriver: fake\n", base="")

    assert error.suggestion == "[cloud]" and error.line == 1


@pytest.mark.parametrize("value, expected", [
    ("ten", "expected a number of seconds, got 'ten'"),
    ("0", "expected a positive number"),
    ("-5", "expected a positive number"),
    ("nan", "expected a positive number"),
])
def test_bad_number_is_an_error_naming_the_line(value, expected):
    error = config_error(f"[global]\nmax_idle_time: {value}\n")

    assert expected in str(error) and error.line == 4 and error.key == "max_idle_time"


@pytest.mark.parametrize("snippet", [
    "[global]\npool_max_num: 0\n",
    "[global]\nmax_boot_failures: 1.5\n",
    "[global]\nmax_booting: -1\n",
    "[pool a]\nmax_nodes: 0\n",
    "[pool a]\nmin_nodes: -1\n",
])
def test_counts_must_be_whole_and_positive(snippet):
    assert "whole number" in str(config_error(snippet))


@pytest.mark.parametrize("section, value", [("cloud", "openstack"), ("torque", "pbspro")])
def test_bad_driver_is_an_error_listing_the_drivers(section, value):
    error = config_error(f"[{section}]\ndriver: {value}\n", base="")

    assert "expected one of" in str(error) and error.key == "driver"


def test_drivers_are_read_case_insensitively():
    settings = conf("driver: FAKE\n[torque]\ndriver: Emulator\n")

    assert (settings.cloud_driver, settings.batch_driver) == ("fake", "emulator")


def test_missing_image_for_the_default_pool_is_an_error():
    error = config_error("[cloud]\nworker_node_flavor: m1.small\n", base="")

    assert "missing image for pool cloud" in str(error) and error.key == "cloud_image_uuid"


def test_missing_image_for_a_pool_section_is_an_error_naming_it():
    error = config_error("[pool gpu]\nflavors: g1.large\n", base="")

    assert "missing image for pool gpu" in str(error) and error.line == 1


def test_duplicate_key_is_an_error_with_its_line():
    error = config_error("[global]\nmax_idle_time: 300\nmax_idle_time: 400\n")

    assert error.line == 5 and "twice" in str(error)


def test_old_and_new_name_of_one_setting_together_is_an_error():
    error = config_error("[global]\npool_max_num: 40\nmax_cores: 80\n")

    assert "pool_max_num (line 4) already sets this" in str(error) and error.line == 5


def test_unparsable_line_is_an_error_that_does_not_echo_its_text():
    error = config_error("cloud_password hunter2\n")

    assert error.line == 3 and "hunter2" not in str(error)


def test_key_before_any_section_is_an_error():
    assert config_error("region: one\n", base="").line == 1


def test_value_continued_on_an_indented_line_is_an_error():
    error = config_error("cloud_key_name: torque\n  more\n")

    assert "one line" in str(error) and error.key == "cloud_key_name"


def test_misspelt_section_name_and_pool_header_are_errors():
    assert config_error("[Global]\n").suggestion == "[global]"
    assert "[pool NAME]" in str(config_error("[pool]\n"))
    assert "defined twice" in str(config_error("[pool a]\n[pool  a]\n"))


def test_pool_key_in_cloud_suggests_its_dynamic_torque_name():
    assert config_error("image: img-2\n").suggestion == "cloud_image_uuid"


def test_default_section_is_refused():
    assert "[DEFAULT]" in str(config_error("[DEFAULT]\nregion: one\n"))


def test_unbalanced_quote_in_a_command_is_an_error():
    error = config_error("[global]\npost_add_node_command: /bin/echo 'oops\n")

    assert "cannot split" in str(error) and error.key == "post_add_node_command"


@pytest.mark.parametrize("snippet, message", [
    ("[api]\nbind: localhost\n", "HOST:PORT"),
    ("[api]\nbind: 127.0.0.1:70000\n", "HOST:PORT"),
    ("[logging]\nlog_level: chatty\n", "expected one of DEBUG"),
    ("[global]\ncluster_id: my cluster\n", "letters, digits"),
    ("cloud_auth_url: keystone:5000\n", "http(s) URL"),
    ("[torque]\ntorque_queue_to_monitor: ,\n", "empty one"),
    ("[torque]\nnode_location_property: MEL\n", "PROPERTY:ZONE"),
    ("[torque]\nnode_location_property: MEL:a,MEL:b\n", "mapped twice"),
])
def test_bad_values_are_errors(snippet, message):
    assert message in str(config_error(snippet))


def test_backoff_cap_below_base_is_an_error():
    error = config_error("[global]\nbackoff_base_seconds: 60\nbackoff_cap_seconds: 30\n")

    assert "below" in str(error) and error.line == 5


def test_pool_serving_an_unmonitored_queue_is_an_error():
    error = config_error("[torque]\ntorque_queue_to_monitor: batch\n[pool a]\nqueues: gpu\n")

    assert "torque_queue_to_monitor" in str(error) and error.key == "queues"


def test_min_nodes_above_max_nodes_is_an_error():
    assert "exceeds max_nodes" in str(config_error("[pool a]\nmin_nodes: 5\nmax_nodes: 2\n"))


def test_pool_whose_node_names_are_not_hostnames_needs_a_prefix():
    error = config_error("[pool GPU]\n")

    assert "set a name prefix" in str(error)
    assert conf("[pool GPU]\nname_prefix: gpu-\n").pools[0].name_prefix == "gpu-"


def test_two_pools_with_the_same_node_names_are_an_error():
    error = config_error("[pool a]\nname_prefix: x-\n[pool b]\nname_prefix: x-\n")

    assert "give each its own name_prefix" in str(error)


def test_default_pool_keys_with_pool_sections_are_an_error():
    error = config_error("cloud_vm_prefix: old-\n[pool a]\n")

    assert error.key == "cloud_vm_prefix" and "[pool NAME]" in str(error)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.conf")


# --- meanings --------------------------------------------------------------------------

def test_config_accepts_equals_and_semicolon_comments():
    settings = conf("; a comment\n[global]\nmax_idle_time = 300\n")

    assert settings.idle_timeout == 300


def test_blank_value_means_the_default_as_in_dynamic_torque():
    assert conf("[global]\nmax_idle_time:\n").idle_timeout == Settings().idle_timeout


def test_pool_sections_take_unset_keys_from_cloud_and_torque():
    settings = conf("""\
        worker_node_flavor: m1.large
        cloud_key_name: torque
        [torque]
        node_property: PRODUCTION
        [pool physics]
        accounts: physics
        [pool gpu]
        image: img-gpu
        properties: GPU
        queues: gpu
        """)

    physics, gpu = settings.pools
    assert physics == PoolSettings(name="physics", flavors=("m1.large",), image="img-1",
                                   properties=frozenset({"PRODUCTION"}), key_name="torque",
                                   accounts=frozenset({"physics"}))
    assert gpu.image == "img-gpu" and gpu.properties == {"GPU"} and gpu.queues == {"gpu"}


def test_node_location_property_splits_the_default_pool_per_zone_default_zone_first():
    settings = conf("""\
        cloud_availability_zone: zone-b
        number_of_dynamic_worker_nodes: 4
        static_worker_nodes: 1+2:A
        [torque]
        node_location_property: A:zone-a,B:zone-b
        """)

    b, a = settings.pools
    assert (b.name, b.zone, b.properties) == ("cloud-B", "zone-b", {"CLOUD", "B"})
    assert (a.name, a.zone, a.properties) == ("cloud-A", "zone-a", {"CLOUD", "A"})
    assert (b.name_prefix, a.name_prefix) == ("cloud-b-", "cloud-a-")
    assert (b.min_nodes, b.max_nodes) == (1, 5)
    assert (a.min_nodes, a.max_nodes) == (2, 6)


def test_static_count_for_an_unknown_location_is_an_error():
    error = config_error("static_worker_nodes: 1:C\n[torque]\nnode_location_property: A:z\n")

    assert "unknown location C" in str(error) and error.key == "static_worker_nodes"


def test_static_count_without_location_needs_the_default_zone_in_the_map():
    error = config_error("static_worker_nodes: 1\n[torque]\nnode_location_property: A:z\n")

    assert "cloud_availability_zone" in str(error)


def test_static_worker_node_count_is_the_default_pools_floor():
    pool = conf("static_worker_nodes: 3\nnumber_of_dynamic_worker_nodes: 2\n").pools[0]

    assert (pool.min_nodes, pool.max_nodes) == (3, 5)


def test_static_worker_node_names_are_kept_as_nodes_never_touched():
    settings = conf("static_worker_nodes: wn01, wn02.example.org\n[pool a]\n")

    assert settings.static_worker_nodes == ("wn01", "wn02.example.org")
    assert settings.pools[0].min_nodes == 0


def test_event_commands_are_argument_lists_and_shell_syntax_warns():
    settings = conf("""\
        [global]
        post_add_node_command: /usr/local/bin/notify --node "{0}" {1}
        post_remove_node_command: /bin/echo {0} | mail root
        event_timeout_seconds: 5
        """)

    assert settings.events.post_add_node == ("/usr/local/bin/notify", "--node", "{0}", "{1}")
    assert settings.events.timeout_seconds == 5
    assert len(settings.warnings) == 1 and "post_remove_node_command" in settings.warnings[0]
    assert "without a shell" in settings.warnings[0]


def test_verbose_log_level_is_debug_with_a_warning():
    settings = conf("[logging]\nlog_level: verbose\n")

    assert settings.log_level == "DEBUG" and "VERBOSE" in settings.warnings[0]


def test_state_files_live_in_the_state_dir():
    settings = conf("[global]\nstate_dir: /srv/dt\n")

    assert settings.db_path == Path("/srv/dt/dt.db")
    assert settings.lock_path == Path("/srv/dt/reconciler.lock")
    assert settings.wakeup_path == Path("/srv/dt/wakeup")


# --- describe --------------------------------------------------------------------------

def test_describe_masks_the_password_and_shows_the_rest():
    settings = load_settings(OLD_DT_FILE)

    text = describe(settings)

    assert f"cloud_password: {MASK}\n" in text
    assert "not-a-real-password" not in text
    assert "cloud_username: alice@example.org\n" in text


def test_describe_reads_back_to_the_same_settings():
    settings = conf("""\
        worker_node_flavor: m1.small,m1.large
        static_worker_nodes: wn01
        [global]
        cluster_id: site-a
        hint_ttl_seconds: 12.5
        max_cores: 64
        post_vm_destroy_command: /usr/bin/logger -t "dt event" {0}
        [torque]
        torque_queue_to_monitor: batch,gpu
        hosts_file: /etc/hosts
        [pool batch]
        queues: batch
        max_nodes: 1000
        [pool gpu]
        image: img-gpu
        queues: gpu
        properties: CLOUD,GPU
        security_groups: default,ssh
        """)

    assert parse_settings(describe(settings), source="described") == settings


def test_describe_shows_the_location_split_as_pool_sections():
    text = describe(load_settings(OLD_DT_FILE))

    assert "[pool cloud-MEL]\n" in text and "[pool cloud-MON]\n" in text
    assert "zone: monash-01\n" in text


# --- build_policy ----------------------------------------------------------------------

def test_build_policy_resolves_flavors_and_turns_seconds_into_timedeltas(tmp_path):
    user_data = tmp_path / "userdata.yaml"
    user_data.write_text("#cloud-config\n")
    settings = conf(f"""\
        worker_node_flavor: m1.small,m1.large
        cloud_vm_userdata_file: {user_data}
        [global]
        max_idle_time: 300
        job_poller_interval: 7
        pool_max_num: 40
        """)

    policy = build_policy(settings, CLOUD_FLAVORS)

    (pool,) = policy.pools
    assert pool.flavors == (SMALL, LARGE)
    assert pool.user_data_template == "#cloud-config\n"
    assert pool.slot_names[0] == "cloud-001"
    assert policy.idle_timeout == timedelta(seconds=300)
    assert policy.hint_ttl == timedelta(seconds=14)
    assert policy.max_cores == 40


def test_build_policy_keeps_an_explicit_hint_ttl():
    policy = build_policy(conf("[global]\nhint_ttl_seconds: 5\n"), CLOUD_FLAVORS)

    assert policy.hint_ttl == timedelta(seconds=5)


def test_idle_release_follows_demand_unless_fixed():
    default = build_policy(conf(""), CLOUD_FLAVORS).idle_release
    assert default.enabled and default.min_idle == timedelta(seconds=60)
    fixed = build_policy(conf("[global]\nidle_release: fixed\nmin_idle_time: 90\n"),
                         CLOUD_FLAVORS).idle_release
    assert not fixed.enabled and fixed.min_idle == timedelta(seconds=90)
    error = config_error("[global]\nidle_release: sometimes\n")
    assert "expected one of demand, fixed" in str(error) and error.key == "idle_release"


def test_build_policy_names_the_pool_with_an_unknown_flavor():
    settings = conf("[pool gpu]\nflavors: m1.smal\n")

    with pytest.raises(ConfigError) as caught:
        build_policy(settings, CLOUD_FLAVORS)

    assert "pool gpu: unknown flavor m1.smal" in str(caught.value)
    assert caught.value.suggestion == "m1.small"


def test_build_policy_names_the_pool_whose_user_data_is_missing(tmp_path):
    settings = conf(f"cloud_vm_userdata_file: {tmp_path / 'absent'}\n")

    with pytest.raises(ConfigError, match="pool cloud: cannot read its user-data file"):
        build_policy(settings, CLOUD_FLAVORS)


def test_a_file_that_sets_nothing_builds_the_planners_own_defaults():
    # One home for each default: the timers and limits default in dtserver/policy.py.
    assert build_policy(Settings(), CLOUD_FLAVORS) == Policy(pools=())
    pool = PoolSettings(name="p", flavors=("m1.small",), image="img")
    (built,) = build_policy(Settings(pools=(pool,)), CLOUD_FLAVORS).pools
    assert built == Pool(name="p", flavors=(SMALL,), image="img")


def test_every_field_a_pool_section_sets_reaches_the_planners_pool(tmp_path):
    user_data = tmp_path / "userdata.sh"
    user_data.write_text("#!/bin/sh\n")
    settings = conf(f"""\
        [torque]
        torque_queue_to_monitor: batch,long
        [pool gpu]
        flavors: m1.large
        image: img-9
        zone: az-2
        properties: GPU
        queues: long
        accounts: physics
        min_nodes: 1
        max_nodes: 4
        max_cores: 32
        name_prefix: gpu-node-
        key_name: ops
        security_groups: default,workers
        network: private
        user_data_file: {user_data}
        """)

    (pool,) = build_policy(settings, CLOUD_FLAVORS).pools

    assert pool == Pool(name="gpu", flavors=(LARGE,), image="img-9", zone="az-2",
                        properties=frozenset({"GPU"}), queues=frozenset({"long"}),
                        accounts=frozenset({"physics"}), min_nodes=1, max_nodes=4,
                        max_cores=32, name_prefix="gpu-node-", key_name="ops",
                        security_groups=("default", "workers"), network="private",
                        user_data_template="#!/bin/sh\n")
