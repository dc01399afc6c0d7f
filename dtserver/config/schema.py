"""The settings dynamic_torque.conf holds: frozen dataclasses, each keyed field declaring
its key (dtserver/config/keys.py).

Every default has one home. The planner's limits and timers default in dtserver/policy.py
(Policy, Pool, HintTrust, IdleRelease), which the simulator and the tests build without a
file; the fields here take those values, in seconds. The rest default here.
deploy/dynamic_torque.conf.example documents the same values; a test holds them together.
The keys Dynamic Torque named differently, and those it had that are gone, are in
dtserver/config/legacy.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from dtserver.config.keys import key
from dtserver.config.values import (
    argv, bind, choice, comma_list, file_path, hostname_prefix, identifier, log_level,
    node_properties, non_negative_int, positive_float, positive_int, text, token, token_set,
    token_tuple)
from dtserver.policy import HintTrust, IdleRelease, Policy, Pool
from dtserver.store import HintLimits

POOL_SECTION = "pool"                       # [pool NAME]
DEFAULT_FLAVORS = ("m1.small",)              # Dynamic Torque's worker_node_flavor default


def _global(name: str, parse=positive_float, **options) -> Mapping:
    return key(name, "global", parse, **options)


def _pool(name: str, parse=text) -> Mapping:
    return key(name, POOL_SECTION, parse)


@dataclass(frozen=True)
class PoolSettings:
    """One [pool NAME] section, or a pool the [cloud] keys define.

    The file's side of dtserver.policy.Pool: flavors are names, resolved against the cloud
    at startup, and the user-data is a file, read then (dtserver/config/build.py). Every
    other field is Pool's, by the same name and default. min_nodes is the always-on floor
    (Dynamic Torque's static worker nodes), max_nodes the ceiling and the number of TORQUE
    node slots. name_prefix "" means "<pool>-".
    """

    name: str
    flavors: tuple[str, ...] = field(metadata=_pool("flavors", comma_list))
    image: str = field(metadata=_pool("image"))
    zone: str | None = field(default=Pool.zone, metadata=_pool("zone", token))
    properties: frozenset[str] = field(default=Pool.properties,
                                       metadata=_pool("properties", node_properties))
    queues: frozenset[str] = field(default=Pool.queues, metadata=_pool("queues", token_set))
    accounts: frozenset[str] = field(default=Pool.accounts,
                                     metadata=_pool("accounts", token_set))
    min_nodes: int = field(default=Pool.min_nodes, metadata=_pool("min_nodes", non_negative_int))
    max_nodes: int = field(default=Pool.max_nodes, metadata=_pool("max_nodes", positive_int))
    max_cores: int | None = field(default=Pool.max_cores,
                                  metadata=_pool("max_cores", positive_int))
    name_prefix: str = field(default=Pool.name_prefix,
                             metadata=_pool("name_prefix", hostname_prefix))
    key_name: str | None = field(default=Pool.key_name, metadata=_pool("key_name", token))
    security_groups: tuple[str, ...] = field(default=Pool.security_groups,
                                             metadata=_pool("security_groups", token_tuple))
    network: str | None = field(default=Pool.network, metadata=_pool("network", token))
    user_data_file: Path | None = field(default=None,
                                        metadata=_pool("user_data_file", file_path))


@dataclass(frozen=True)
class EventCommands:
    """Operator commands run on node events: argv tuples (shlex.split of the value), never a
    shell string; () means none. Dynamic Torque's {0} {1} placeholders stay as arguments."""

    post_vm_provision: tuple[str, ...] = field(
        default=(), metadata=_global("post_vm_provision_command", argv))
    post_add_node: tuple[str, ...] = field(
        default=(), metadata=_global("post_add_node_command", argv))
    post_remove_node: tuple[str, ...] = field(
        default=(), metadata=_global("post_remove_node_command", argv))
    post_vm_destroy: tuple[str, ...] = field(
        default=(), metadata=_global("post_vm_destroy_command", argv))
    boot_failed: tuple[str, ...] = field(
        default=(), metadata=_global("boot_failed_command", argv))
    capacity_error: tuple[str, ...] = field(
        default=(), metadata=_global("capacity_error_command", argv))
    timeout_seconds: float = field(default=30.0, metadata=_global("event_timeout_seconds"))


def _seconds(value) -> float:
    return value.total_seconds()


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from dynamic_torque.conf. Times are in seconds."""

    # [global]
    cluster_id: str = field(default="default",       # ownership tag on every instance
                            metadata=_global("cluster_id", identifier))
    state_dir: Path = field(default=Path("/var/lib/dynamictorque"),  # db, lock, wakeup FIFO
                            metadata=_global("state_dir", file_path))
    job_poller_interval: float = field(default=10.0,  # reconciler pass interval
                                       metadata=_global("job_poller_interval"))
    cloud_poller_interval: float = field(default=20.0, metadata=_global("cloud_poller_interval"))
    idle_timeout: float = field(default=_seconds(Policy.idle_timeout),
                                metadata=_global("max_idle_time"))
    down_timeout: float = field(default=_seconds(Policy.down_timeout),
                                metadata=_global("max_down_time"))
    boot_timeout: float = field(default=_seconds(Policy.boot_timeout),
                                metadata=_global("max_inaccessible_time"))
    hint_ttl: float | None = field(default=None,     # None: 2 x job_poller_interval
                                   metadata=_global("hint_ttl_seconds"))
    # What hints no job has matched may launch (policy.HintTrust); None: derived there.
    hint_cores_per_user: int | None = field(
        default=HintTrust.cores_per_user, metadata=_global("hint_cores_per_user", positive_int))
    hint_cores_per_source: int | None = field(
        default=HintTrust.cores_per_source,
        metadata=_global("hint_cores_per_source", positive_int))
    hint_cores_total: int | None = field(
        default=HintTrust.cores_total, metadata=_global("hint_cores_total", positive_int))
    hint_max_array: int = field(default=HintTrust.max_array,
                                metadata=_global("hint_max_array", positive_int))
    hint_strikes: int = field(default=HintTrust.strikes,
                              metadata=_global("hint_strikes", positive_int))
    hint_penalty: float = field(default=_seconds(HintTrust.penalty),
                                metadata=_global("hint_penalty_seconds"))
    prewarm_idle_time: float = field(default=_seconds(HintTrust.idle_timeout),
                                     metadata=_global("prewarm_idle_time"))
    idle_release: str = field(default="demand" if IdleRelease.enabled else "fixed",
                              metadata=_global("idle_release", choice("demand", "fixed")))
    min_idle_time: float = field(default=_seconds(IdleRelease.min_idle),
                                 metadata=_global("min_idle_time"))
    max_cores: int | None = field(default=Policy.max_cores,  # over all pools
                                  metadata=_global("max_cores", positive_int))
    max_booting: int | None = field(default=Policy.max_booting,  # launches in flight
                                    metadata=_global("max_booting", positive_int))
    backoff_base: float = field(default=_seconds(Policy.backoff_base),
                                metadata=_global("backoff_base_seconds"))
    backoff_cap: float = field(default=_seconds(Policy.backoff_cap),
                               metadata=_global("backoff_cap_seconds"))
    max_boot_failures: int = field(default=Policy.max_boot_failures,  # then the pool stops
                                   metadata=_global("max_boot_failures", positive_int))
    # [torque]
    batch_driver: str = field(default="torque",
                              metadata=key("driver", "torque", choice("torque", "emulator")))
    queues: frozenset[str] = field(default=Policy.queues,  # empty: all
                                   metadata=key("torque_queue_to_monitor", "torque", token_set))
    torque_bin_dir: Path | None = field(default=None,  # qstat/pbsnodes/qmgr; None = PATH
                                        metadata=key("torque_bin_dir", "torque", file_path))
    torque_server: str = field(default="localhost",  # for worker user-data
                               metadata=key("torque_server", "torque", token))
    hosts_file: Path | None = field(default=None,  # our names' block; None = site DNS
                                    metadata=key("hosts_file", "torque", file_path))
    command_timeout: float = field(default=30.0, metadata=key("command_timeout_seconds",
                                                              "torque", positive_float))
    # [cloud]
    cloud_driver: str = field(default="nova",
                              metadata=key("driver", "cloud", choice("nova", "fake")))
    cloud_name: str | None = field(default=None,  # clouds.yaml entry
                                   metadata=key("cloud_name", "cloud", token))
    region: str | None = field(default=None, metadata=key("region", "cloud", token))
    # [api]
    api_bind: str = field(default="127.0.0.1:8080", metadata=key("bind", "api", bind))
    max_hints_per_user: int = field(default=HintLimits.per_user,
                                    metadata=key("max_hints_per_user", "api", positive_int))
    max_hint_bytes_per_user: int = field(
        default=HintLimits.bytes_per_user,
        metadata=key("max_hint_bytes_per_user", "api", positive_int))
    max_hints: int = field(default=HintLimits.total,
                           metadata=key("max_hints", "api", positive_int))
    max_hint_bytes: int = field(default=HintLimits.bytes_total,
                                metadata=key("max_hint_bytes", "api", positive_int))
    token_file: Path | None = field(default=None, metadata=key("token_file", "api", file_path))
    hint_token_file: Path | None = field(default=None,
                                         metadata=key("hint_token_file", "api", file_path))
    # [logging]
    log_level: str = field(default="INFO", metadata=key("log_level", "logging", log_level))
    log_location: Path | None = field(default=None,  # None: stdout
                                      metadata=key("log_location", "logging", file_path))
    log_format: str = field(default="%(asctime)s %(levelname)s %(name)s %(message)s",
                            metadata=key("log_format", "logging"))
    # Assembled from several keys (dtserver/config/load.py, legacy.py).
    events: EventCommands = EventCommands()
    cloud_auth: Mapping[str, str] = field(default_factory=dict)  # DT plaintext (warned)
    pools: tuple[PoolSettings, ...] = ()
    static_worker_nodes: tuple[str, ...] = ()        # always-on nodes we never touch
    warnings: tuple[str, ...] = ()                   # obsolete keys, plaintext credentials

    @property
    def effective_hint_ttl(self) -> float:
        return self.hint_ttl if self.hint_ttl is not None else 2 * self.job_poller_interval

    @property
    def hint_limits(self) -> HintLimits:
        return HintLimits(per_user=self.max_hints_per_user,
                          bytes_per_user=self.max_hint_bytes_per_user,
                          total=self.max_hints, bytes_total=self.max_hint_bytes)

    @property
    def db_path(self) -> Path:
        return self.state_dir / "dt.db"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "reconciler.lock"

    @property
    def wakeup_path(self) -> Path:
        return self.state_dir / "wakeup"
