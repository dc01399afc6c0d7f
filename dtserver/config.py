"""dynamic_torque.conf -> one frozen, typed Settings value.

The file stays compatible with the old Dynamic Torque: INI with `key: value`, sections
[global] [cloud] [torque] [logging], and its keys keep their meaning. New concepts get new
sections: [api] and any number of [pool NAME]. Every default lives in the dataclasses below
(or in a module constant next to them) and deploy/dynamic_torque.conf.example documents the
same values; a test holds the two together.

Unknown keys are errors naming the file, the line and the nearest valid key. Obsolete
Dynamic Torque keys load with a warning saying what replaced them. Warnings are returned in
Settings.warnings rather than logged, because logging is configured from this very file:
the caller logs them once it is.
"""
from __future__ import annotations

import configparser
import difflib
import math
import os
import re
import shlex
import stat
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from dtserver.model import DtError, Flavor
from dtserver.policy import HintTrust, IdleRelease, Policy, Pool
from dtserver.redact import MASK, mask_argv, mask_text
from dtserver.store import HintLimits

DEFAULT_POOL_NAME = "cloud"                 # the pool the [cloud] keys define
DEFAULT_FLAVORS = ("m1.small",)              # Dynamic Torque's worker_node_flavor default
DEFAULT_PROPERTIES = frozenset({"CLOUD"})   # node_property default
DEFAULT_MAX_NODES = 10                      # per pool; also its number of node slots
SECRET_AUTH_KEYS = frozenset({"password"})


class ConfigError(DtError):
    """A configuration the service refuses to start with.

    The message names the file, the line (when known), the section and key, and for an
    unknown key the nearest valid one.
    """

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None,
                 section: str | None = None, key: str | None = None,
                 suggestion: str | None = None) -> None:
        self.source = source
        self.line = line
        self.section = section
        self.key = key
        self.suggestion = suggestion
        super().__init__(_located(message, source, line, section, key, suggestion))


def _located(message: str, source: str | None, line: int | None, section: str | None,
             key: str | None, suggestion: str | None = None) -> str:
    where = f"{source}:{line}" if source and line else source or ""
    parts = [f"{where}:"] if where else []
    if section:
        parts.append(f"[{section}]")
    if key:
        parts.append(f"{key}:")
    parts.append(message)
    text = " ".join(parts)
    return f"{text} (did you mean {suggestion}?)" if suggestion else text


@dataclass(frozen=True)
class PoolSettings:
    """One [pool NAME] section, or the pool the [cloud] keys define.

    flavors are names, resolved against the cloud at startup (build_policy). min_nodes
    is the always-on floor (Dynamic Torque's static worker nodes), max_nodes the ceiling
    and the number of TORQUE node slots. name_prefix "" means "<pool>-".
    """

    name: str
    flavors: tuple[str, ...]
    image: str
    zone: str | None = None
    properties: frozenset[str] = DEFAULT_PROPERTIES
    queues: frozenset[str] = frozenset()       # empty: any monitored queue
    accounts: frozenset[str] = frozenset()     # empty: any account
    min_nodes: int = 0
    max_nodes: int = DEFAULT_MAX_NODES
    max_cores: int | None = None
    name_prefix: str = ""                      # DT's cloud_vm_prefix
    key_name: str | None = None
    security_groups: tuple[str, ...] = ()
    network: str | None = None
    user_data_file: Path | None = None         # DT's cloud_vm_userdata_file


@dataclass(frozen=True)
class EventCommands:
    """Operator commands run on node events: argv tuples (shlex.split of the value), never a
    shell string; () means none. Dynamic Torque's {0} {1} placeholders stay as arguments."""

    post_vm_provision: tuple[str, ...] = ()
    post_add_node: tuple[str, ...] = ()
    post_remove_node: tuple[str, ...] = ()
    post_vm_destroy: tuple[str, ...] = ()
    boot_failed: tuple[str, ...] = ()
    capacity_error: tuple[str, ...] = ()
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from dynamic_torque.conf. Times are in seconds."""

    cluster_id: str = "default"                      # ownership tag on every instance
    state_dir: Path = Path("/var/lib/dynamictorque")  # db, lock and wakeup FIFO live here
    job_poller_interval: float = 10.0                # reconciler pass interval
    cloud_poller_interval: float = 20.0
    idle_timeout: float = 600.0                      # max_idle_time
    down_timeout: float = 480.0                      # max_down_time
    boot_timeout: float = 1200.0                     # max_inaccessible_time
    hint_ttl: float | None = None                    # None: 2 x job_poller_interval
    # What hints no job has matched may launch (policy.HintTrust); None: derived there.
    hint_cores_per_user: int | None = None
    hint_cores_per_source: int | None = None
    hint_cores_total: int | None = None
    hint_max_array: int = 4
    hint_strikes: int = 3
    hint_penalty: float = 3600.0
    prewarm_idle_time: float = 60.0
    idle_release: str = "demand"                     # "demand" | "fixed" (policy.IdleRelease)
    min_idle_time: float = 60.0
    max_cores: int | None = None                     # pool_max_num: cap over all pools
    max_booting: int | None = None                   # launches in flight, all pools
    backoff_base: float = 30.0
    backoff_cap: float = 1800.0
    max_boot_failures: int = 5                       # consecutive, then the pool stops
    queues: frozenset[str] = frozenset()             # torque_queue_to_monitor; empty: all
    batch_driver: str = "torque"                     # "torque" | "emulator"
    torque_bin_dir: Path | None = None               # qstat/pbsnodes/qmgr; None = PATH
    torque_server: str = "localhost"                 # for worker user-data
    hosts_file: Path | None = None                   # our names' block; None = site DNS
    command_timeout: float = 30.0
    cloud_driver: str = "nova"                       # "nova" | "fake"
    cloud_name: str | None = None                    # clouds.yaml entry
    cloud_auth: Mapping[str, str] = field(default_factory=dict)  # DT plaintext (warned)
    region: str | None = None
    api_bind: str = "127.0.0.1:8080"
    max_hints_per_user: int = HintLimits.per_user
    max_hint_bytes_per_user: int = HintLimits.bytes_per_user
    max_hints: int = HintLimits.total
    max_hint_bytes: int = HintLimits.bytes_total
    token_file: Path | None = None
    hint_token_file: Path | None = None
    log_level: str = "INFO"
    log_location: Path | None = None                 # None: stdout
    log_format: str = "%(asctime)s %(levelname)s %(name)s %(message)s"
    events: EventCommands = EventCommands()
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


# --- value converters: raw text -> typed value, ValueError says what was expected ----------

_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
_POOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_HOSTNAME_PREFIX = re.compile(r"[a-z0-9][a-z0-9-]*\Z")
_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*\Z")
_PROPERTY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*\Z")
_STATIC_COUNTS = re.compile(r"\d+(:[A-Za-z0-9_]+)?(\+\d+(:[A-Za-z0-9_]+)?)*\Z")
_SHELL_SYNTAX = frozenset("|&;<>`$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_HOSTNAME_MAX = 63


def _text(value: str) -> str:
    return value


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(f"expected letters, digits, '_', '.' or '-' (at most 63), got {value!r}")
    return value


def _token(value: str) -> str:
    if any(character.isspace() for character in value):
        raise ValueError(f"expected a single word, got {value!r}")
    return value


def _items(value: str) -> tuple[str, ...]:
    """A comma list, order kept, duplicates and empty items dropped."""
    items = tuple(dict.fromkeys(item.strip() for item in value.split(",") if item.strip()))
    if not items:
        raise ValueError("expected a comma-separated list, got an empty one")
    return items


def _token_tuple(value: str) -> tuple[str, ...]:
    return tuple(_token(item) for item in _items(value))


def _token_set(value: str) -> frozenset[str]:
    return frozenset(_token_tuple(value))


def _properties(value: str) -> frozenset[str]:
    items = _items(value)
    bad = [item for item in items if not _PROPERTY.match(item)]
    if bad:
        raise ValueError(f"node properties are letters, digits and '_', got {', '.join(bad)}")
    return frozenset(items)


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"expected a positive number, got {value!r}")
    return number


def _integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"expected a whole number, got {value!r}") from None


def _positive_int(value: str) -> int:
    number = _integer(value)
    if number <= 0:
        raise ValueError(f"expected a positive whole number, got {value!r}")
    return number


def _non_negative_int(value: str) -> int:
    number = _integer(value)
    if number < 0:
        raise ValueError(f"expected zero or a positive whole number, got {value!r}")
    return number


def _path(value: str) -> Path:
    return Path(value).expanduser()


def _choice(*options: str) -> Callable[[str], str]:
    def convert(value: str) -> str:
        if value.lower() not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return value.lower()
    return convert


def _log_level(value: str) -> str:
    level = value.upper()
    if level == "VERBOSE":   # Dynamic Torque's level below DEBUG
        return "DEBUG"
    if level not in _LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(_LOG_LEVELS)}, got {value!r}")
    return level


def _bind(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return value


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"expected an http(s) URL, got {mask_text(value)!r}")
    return value


def _command(value: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(value))
    except ValueError as exc:
        raise ValueError(f"cannot split into arguments: {exc}") from None


def _hostname_prefix(value: str) -> str:
    if not _HOSTNAME_PREFIX.match(value):
        raise ValueError(f"node names are lowercase hostnames: expected [a-z0-9-], got {value!r}")
    return value


def _locations(value: str) -> tuple[tuple[str, str], ...]:
    """node_location_property: `PROP:ZONE,...`, the job's property picks the zone."""
    pairs: dict[str, str] = {}
    for item in _items(value):
        prop, _, zone = item.partition(":")
        prop, zone = prop.strip(), zone.strip()
        if not _PROPERTY.match(prop) or not zone:
            raise ValueError(f"expected PROPERTY:ZONE, got {item!r}")
        if prop in pairs:
            raise ValueError(f"property {prop} is mapped twice")
        pairs[prop] = zone
    return tuple(pairs.items())


@dataclass(frozen=True)
class _StaticCounts:
    """Dynamic Torque's `N[:LOCATION]+...`: N always-on nodes in each location."""

    by_location: tuple[tuple[str | None, int], ...]


def _static_nodes(value: str) -> _StaticCounts | tuple[str, ...]:
    """Either DT's count form (`2`, `2:MEL+1:MON`) or a comma list of node names."""
    compact = value.replace(" ", "")
    if _STATIC_COUNTS.match(compact):
        counts: dict[str | None, int] = {}
        for part in compact.split("+"):
            number, _, location = part.partition(":")
            counts[location or None] = counts.get(location or None, 0) + int(number)
        return _StaticCounts(tuple(counts.items()))
    names = _items(value)
    bad = [name for name in names if not _HOSTNAME.match(name)]
    if bad:
        raise ValueError("expected N[:LOCATION]+... or a comma list of node names, "
                         f"got {', '.join(bad)}")
    return names


# --- the keys each section accepts -----------------------------------------------------

@dataclass(frozen=True)
class _Key:
    """A config key: where its value goes (`target`) and how it is read.

    target is a Settings field, or "events.X" (EventCommands), "auth.X" (cloud_auth),
    "pool.X" (PoolSettings field of the default pool) or "_X" (assembled specially).
    An alias reads into the same target as its canonical key and is never written out.
    """

    name: str
    target: str
    convert: Callable[[str], Any] = _text
    alias: bool = False


_GLOBAL = (
    _Key("cluster_id", "cluster_id", _identifier),
    _Key("state_dir", "state_dir", _path),
    _Key("job_poller_interval", "job_poller_interval", _positive_float),
    _Key("cloud_poller_interval", "cloud_poller_interval", _positive_float),
    _Key("max_idle_time", "idle_timeout", _positive_float),
    _Key("max_down_time", "down_timeout", _positive_float),
    _Key("max_inaccessible_time", "boot_timeout", _positive_float),
    _Key("hint_ttl_seconds", "hint_ttl", _positive_float),
    _Key("hint_cores_per_user", "hint_cores_per_user", _positive_int),
    _Key("hint_cores_per_source", "hint_cores_per_source", _positive_int),
    _Key("hint_cores_total", "hint_cores_total", _positive_int),
    _Key("hint_max_array", "hint_max_array", _positive_int),
    _Key("hint_strikes", "hint_strikes", _positive_int),
    _Key("hint_penalty_seconds", "hint_penalty", _positive_float),
    _Key("prewarm_idle_time", "prewarm_idle_time", _positive_float),
    _Key("idle_release", "idle_release", _choice("demand", "fixed")),
    _Key("min_idle_time", "min_idle_time", _positive_float),
    _Key("max_cores", "max_cores", _positive_int),
    _Key("pool_max_num", "max_cores", _positive_int, alias=True),
    _Key("max_booting", "max_booting", _positive_int),
    _Key("backoff_base_seconds", "backoff_base", _positive_float),
    _Key("backoff_cap_seconds", "backoff_cap", _positive_float),
    _Key("max_boot_failures", "max_boot_failures", _positive_int),
    _Key("post_vm_provision_command", "events.post_vm_provision", _command),
    _Key("post_add_node_command", "events.post_add_node", _command),
    _Key("post_remove_node_command", "events.post_remove_node", _command),
    _Key("post_vm_destroy_command", "events.post_vm_destroy", _command),
    _Key("boot_failed_command", "events.boot_failed", _command),
    _Key("capacity_error_command", "events.capacity_error", _command),
    _Key("event_timeout_seconds", "events.timeout_seconds", _positive_float),
)
_TORQUE = (
    _Key("driver", "batch_driver", _choice("torque", "emulator")),
    _Key("torque_queue_to_monitor", "queues", _token_set),
    _Key("node_property", "pool.properties", _properties),
    _Key("node_location_property", "_locations", _locations),
    _Key("torque_bin_dir", "torque_bin_dir", _path),
    _Key("torque_server", "torque_server", _token),
    _Key("hosts_file", "hosts_file", _path),
    _Key("command_timeout_seconds", "command_timeout", _positive_float),
)
_CLOUD = (
    _Key("driver", "cloud_driver", _choice("nova", "fake")),
    _Key("cloud_name", "cloud_name", _token),
    _Key("region", "region", _token),
    _Key("cloud_auth_url", "auth.auth_url", _url),
    _Key("cloud_username", "auth.username"),
    _Key("cloud_password", "auth.password"),
    _Key("cloud_tenant_name", "auth.project_name"),
    _Key("cloud_tenant", "auth.project_name", alias=True),
    _Key("cloud_image_uuid", "pool.image"),
    _Key("worker_node_flavor", "pool.flavors", _items),
    _Key("worker_node_flavors", "pool.flavors", _items, alias=True),
    _Key("cloud_availability_zone", "pool.zone", _token),
    _Key("cloud_vm_prefix", "pool.name_prefix", _hostname_prefix),
    _Key("cloud_key_name", "pool.key_name", _token),
    _Key("cloud_security_groups", "pool.security_groups", _token_tuple),
    _Key("cloud_network", "pool.network", _token),
    _Key("cloud_vm_userdata_file", "pool.user_data_file", _path),
    _Key("static_worker_nodes", "_static", _static_nodes),
    _Key("number_of_dynamic_worker_nodes", "_dynamic", _non_negative_int),
)
_API = (
    _Key("bind", "api_bind", _bind),
    _Key("max_hints_per_user", "max_hints_per_user", _positive_int),
    _Key("max_hint_bytes_per_user", "max_hint_bytes_per_user", _positive_int),
    _Key("max_hints", "max_hints", _positive_int),
    _Key("max_hint_bytes", "max_hint_bytes", _positive_int),
    _Key("token_file", "token_file", _path),
    _Key("hint_token_file", "hint_token_file", _path),
)
_LOGGING = (
    _Key("log_level", "log_level", _log_level),
    _Key("log_location", "log_location", _path),
    _Key("log_format", "log_format"),
)
_POOL = (
    _Key("flavors", "flavors", _items),
    _Key("image", "image"),
    _Key("zone", "zone", _token),
    _Key("properties", "properties", _properties),
    _Key("queues", "queues", _token_set),
    _Key("accounts", "accounts", _token_set),
    _Key("min_nodes", "min_nodes", _non_negative_int),
    _Key("max_nodes", "max_nodes", _positive_int),
    _Key("max_cores", "max_cores", _positive_int),
    _Key("name_prefix", "name_prefix", _hostname_prefix),
    _Key("key_name", "key_name", _token),
    _Key("security_groups", "security_groups", _token_tuple),
    _Key("network", "network", _token),
    _Key("user_data_file", "user_data_file", _path),
)
_SECTIONS: Mapping[str, tuple[_Key, ...]] = {
    "global": _GLOBAL, "torque": _TORQUE, "cloud": _CLOUD, "api": _API, "logging": _LOGGING,
}
POOL_SECTION = "pool"

# Every key each section accepts ("pool" stands for every [pool NAME] section).
SECTION_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    **{section: tuple(key.name for key in keys) for section, keys in _SECTIONS.items()},
    POOL_SECTION: tuple(key.name for key in _POOL),
})

_TORQUE_COMMANDS = "TORQUE commands now run as argument lists from torque_bin_dir in [torque]"
_NO_SSH = "no ssh check any more: a node is ready when its pbs_mom reports to the server"
_NO_MAUI_RESERVATIONS = ("Maui reservations are replaced by [pool NAME] sections with "
                         "accounts or queues")
# Dynamic Torque keys whose concept is gone: key -> what replaced it.
OBSOLETE_KEYS: Mapping[str, str] = MappingProxyType({
    "pool_min_num": "the always-on floor is static_worker_nodes in [cloud] or min_nodes per pool",
    "persistent_file_location": "node records live in the database under state_dir",
    "qstat_command": _TORQUE_COMMANDS,
    "pbsnodes_command": _TORQUE_COMMANDS,
    "add_node_command": _TORQUE_COMMANDS,
    "remove_node_command": _TORQUE_COMMANDS,
    "set_node_command": _TORQUE_COMMANDS,
    "check_node_command": "Maui's checknode is not used: node state comes from pbsnodes -x",
    "diagnose_p_command": ("Maui's diagnose is not used: demand comes from qstat -x and "
                           "submit-filter hints"),
    "setres_command": _NO_MAUI_RESERVATIONS,
    "releaseres_command": _NO_MAUI_RESERVATIONS,
    "cloud_type": "OpenStack is the only cloud; driver in [cloud] picks nova or fake",
    "cloud_private_key_location": _NO_SSH,
    "cloud_shell_user": _NO_SSH,
    "cloud_vm_init_finish_file": _NO_SSH,
    "cloud_vm_init_file": "use cloud_vm_userdata_file",
    "cloud_resources_config": ("that file is not read: define each tenant as a [pool NAME] "
                               "section with accounts or queues"),
    "default_location": ("jobs without a location property go to the pool of "
                         "cloud_availability_zone first"),
    "max_number_of_jobs": "qstat -x is parsed streaming; there is no job limit",
    "log_stdout": "logs go to stdout when log_location is empty",
    "log_max_size": "rotate log_location with logrotate",
})

# [pool NAME] keys that fall back to the [cloud]/[torque] value when a pool omits them.
_INHERITED = ("flavors", "image", "zone", "properties", "key_name", "security_groups",
              "network", "user_data_file")
# Keys that shape only the pool the [cloud] keys define.
_DEFAULT_POOL_ONLY = ("pool.name_prefix", "_static", "_dynamic", "_locations")

_SECTION_HEADER = re.compile(r"\[(?P<header>.+)\]")   # as configparser.SECTCRE
_OPTION = re.compile(r"(?P<option>.*?)\s*[=:]")


# --- reading ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Value:
    value: Any
    key: str
    section: str
    line: int | None


class _Reader:
    """One pass over one file: values by target, with where each came from."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines = _index_lines(text)
        self.warnings: list[str] = []
        self.parser = configparser.ConfigParser(
            interpolation=None, strict=True, empty_lines_in_values=False,
            comment_prefixes=("#", ";"), inline_comment_prefixes=None)
        try:
            self.parser.read_string(text, source=source)
        except configparser.DuplicateSectionError as exc:
            raise self.error(f"section [{exc.section}] appears twice", line=exc.lineno) from None
        except configparser.DuplicateOptionError as exc:
            raise self.error("key appears twice in this section", line=exc.lineno,
                             section=exc.section, key=exc.option) from None
        except configparser.MissingSectionHeaderError as exc:
            raise self.error("a `key: value` line before any [section]",
                             line=exc.lineno) from None
        except configparser.ParsingError as exc:
            # The offending text is left out: it may hold a password.
            raise self.error("cannot parse this line: expected `[section]` or `key: value` "
                             "(a line starting with a space continues the previous value)",
                             line=exc.errors[0][0]) from None
        if self.parser.defaults():
            raise self.error("a [DEFAULT] section is not supported",
                             line=self.lines.get(("DEFAULT", None)))

    def error(self, message: str, *, line: int | None = None, section: str | None = None,
              key: str | None = None, suggestion: str | None = None) -> ConfigError:
        return ConfigError(message, source=self.source, line=line, section=section, key=key,
                           suggestion=suggestion)

    def warn(self, message: str, *, section: str, key: str) -> None:
        line = self.lines.get((section, key))
        self.warnings.append(_located(message, self.source, line, section, key))

    def line(self, section: str, key: str | None = None) -> int | None:
        return self.lines.get((section, key))

    def read(self, section: str, keys: tuple[_Key, ...]) -> dict[str, _Value]:
        """The section's set keys by target; blank values count as unset, as in DT."""
        by_name = {key.name: key for key in keys}
        values: dict[str, _Value] = {}
        for name, raw in self.parser[section].items():
            line = self.line(section, name)
            key = by_name.get(name)
            if key is None:
                self._unknown(section, name, keys)
                continue
            if not raw:
                continue
            if "\n" in raw:
                raise self.error("a value must fit on one line (an indented line continues "
                                 "the previous value)", line=line, section=section, key=name)
            try:
                value = key.convert(raw)
            except ValueError as exc:
                raise self.error(str(exc), line=line, section=section, key=name) from None
            if key.target in values:
                first = values[key.target]
                raise self.error(f"{first.key} (line {first.line}) already sets this; keep one",
                                 line=line, section=section, key=name)
            values[key.target] = _Value(value, name, section, line)
            self._check_value(section, name, value)
        return values

    def _unknown(self, section: str, name: str, keys: tuple[_Key, ...]) -> None:
        if name in OBSOLETE_KEYS:
            if self.parser[section][name]:
                self.warn(f"obsolete and ignored: {OBSOLETE_KEYS[name]}", section=section,
                          key=name)
            return
        line = self.line(section, name)
        translated = _translated_pool_key(name, section)
        homes = [home for home in _sections_of(name) if home != section]
        if homes and not translated:
            raise self.error(f"belongs in {' or '.join(f'[{home}]' for home in homes)}",
                             line=line, section=section, key=name)
        raise self.error("unknown key", line=line, section=section, key=name,
                         suggestion=translated or _nearest(name, [key.name for key in keys]))

    def _check_value(self, section: str, name: str, value: Any) -> None:
        if name == "log_level" and self.parser[section][name].upper() == "VERBOSE":
            self.warn("VERBOSE is DEBUG now", section=section, key=name)
        if name.endswith("_command"):
            syntax = sorted({char for arg in value for char in arg} & _SHELL_SYNTAX)
            if syntax:
                self.warn(f"commands run without a shell now: {' '.join(syntax)} reach the "
                          "command as literal characters; put shell syntax in a script",
                          section=section, key=name)
        if name == "cloud_auth_url" and value.rstrip("/").endswith("/v2.0"):
            self.warn("Keystone v2.0 is gone: use the v3 endpoint", section=section, key=name)


def _index_lines(text: str) -> dict[tuple[str, str | None], int]:
    """(section, key) -> line number; (section, None) is the header. configparser keeps no
    line numbers, and an error without one sends the admin hunting through the file."""
    index: dict[tuple[str, str | None], int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line[0] in " \t#;":
            continue
        header = _SECTION_HEADER.match(line.strip())
        if header:
            section = header["header"]
            index.setdefault((section, None), number)
            continue
        option = _OPTION.match(line)
        if option:
            index.setdefault((section, option["option"].strip().lower()), number)
    return index


def _nearest(name: str, candidates: list[str]) -> str | None:
    matches = difflib.get_close_matches(name, candidates, n=1)
    return matches[0] if matches else None


def _sections_of(name: str) -> list[str]:
    homes = [section for section, keys in _SECTIONS.items()
             if any(key.name == name for key in keys)]
    if name in SECTION_KEYS[POOL_SECTION]:
        homes.append(f"{POOL_SECTION} NAME")
    return homes


def _translated_pool_key(name: str, section: str) -> str | None:
    """A pool key under its other name: DT's [cloud] name in a [pool NAME] section
    (cloud_image_uuid -> image), or a pool key in [cloud] (image -> cloud_image_uuid)."""
    cloud_to_pool = {key.name: key.target.removeprefix("pool.") for key in _CLOUD
                     if key.target.startswith("pool.") and not key.alias}
    if section.startswith(f"{POOL_SECTION} "):
        return cloud_to_pool.get(name)
    if section == "cloud":
        return next((cloud for cloud, pool in cloud_to_pool.items() if pool == name), None)
    return None


# --- assembling ------------------------------------------------------------------------

def parse_settings(text: str, *, source: str = "<string>") -> Settings:
    """Settings from the text of a dynamic_torque.conf; raises ConfigError."""
    reader = _Reader(text, source)
    values: dict[str, _Value] = {}
    pool_sections: list[str] = []
    for section in reader.parser.sections():
        if section in _SECTIONS:
            values.update(reader.read(section, _SECTIONS[section]))
        elif section.split(None, 1)[0] == POOL_SECTION:
            pool_sections.append(section)
        else:
            raise reader.error("unknown section", line=reader.line(section),
                               suggestion=_section_suggestion(section))
    _warn_plaintext_credentials(reader, values)
    if pool_sections:
        pools = _explicit_pools(reader, values, pool_sections)
    else:
        pools = _default_pools(reader, values)
    static = values.get("_static")
    settings = Settings(
        **{target: item.value for target, item in values.items()
           if "." not in target and not target.startswith("_")},
        cloud_auth={target.removeprefix("auth."): item.value for target, item in values.items()
                    if target.startswith("auth.")},
        events=EventCommands(**{target.removeprefix("events."): item.value
                                for target, item in values.items()
                                if target.startswith("events.")}),
        pools=pools,
        static_worker_nodes=static.value if static and isinstance(static.value, tuple) else (),
        warnings=tuple(reader.warnings),
    )
    _check_settings(reader, settings, values)
    return settings


def load_settings(path: Path | str) -> Settings:
    """Settings from a dynamic_torque.conf file; raises ConfigError.

    A file that holds a secret (a password, a token in an event command) warns when group
    or others may read it: with the API as its own user in the service's group, a
    group-readable password is the API's too.
    """
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
            mode = os.fstat(file.fileno()).st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the configuration: {exc}", source=str(path)) from None
    settings = parse_settings(text, source=str(path))
    secrets = _secret_keys(settings)
    if secrets and mode & (stat.S_IRGRP | stat.S_IROTH):
        settings = replace(settings, warnings=(*settings.warnings, (
            f"{path}: holds secrets ({', '.join(secrets)}) and is readable by group/others "
            f"(mode {stat.S_IMODE(mode):04o}): chmod 600 it, owned by the reconciler's user, "
            "or move the credentials to clouds.yaml (docs/operations.md)")))
    return settings


def _section_suggestion(section: str) -> str | None:
    nearest = _nearest(section, [*_SECTIONS, f"{POOL_SECTION} NAME"])
    return f"[{nearest}]" if nearest else None


def _warn_plaintext_credentials(reader: _Reader, values: dict[str, _Value]) -> None:
    keys = [item.key for target, item in values.items() if target.startswith("auth.")]
    if keys:
        reader.warn(f"plaintext credentials ({', '.join(keys)}) still load, but prefer "
                    "cloud_name (a clouds.yaml entry) or OS_* environment variables",
                    section="cloud", key=keys[0])


def _default_pools(reader: _Reader, values: dict[str, _Value]) -> tuple[PoolSettings, ...]:
    """The pool the [cloud] keys define, split per zone by node_location_property."""
    base = {target.removeprefix("pool."): item.value for target, item in values.items()
            if target.startswith("pool.")}
    if "image" not in base:
        raise reader.error(f"missing image for pool {DEFAULT_POOL_NAME}: set cloud_image_uuid "
                           "(or add [pool NAME] sections)", line=reader.line("cloud"),
                           section="cloud", key="cloud_image_uuid")
    base.setdefault("flavors", DEFAULT_FLAVORS)
    locations = values["_locations"].value if "_locations" in values else ()
    static = values.get("_static")
    counts = dict(static.value.by_location) if static and isinstance(
        static.value, _StaticCounts) else {}
    dynamic = values["_dynamic"].value if "_dynamic" in values else DEFAULT_MAX_NODES
    if not locations:
        if any(location is not None for location in counts):
            raise _static_error(reader, static, "a location needs node_location_property")
        min_nodes = counts.get(None, 0)
        return (_pool(reader, values, name=DEFAULT_POOL_NAME, min_nodes=min_nodes,
                      max_nodes=min_nodes + dynamic, **base),)
    zone = base.pop("zone", None)
    default_location = next((prop for prop, where in locations if where == zone), None)
    if None in counts:
        if default_location is None:
            raise _static_error(reader, static, "a count without a location needs "
                                "cloud_availability_zone to be a node_location_property zone")
        counts[default_location] = counts.get(default_location, 0) + counts.pop(None)
    unknown = sorted(set(counts) - {prop for prop, _ in locations})
    if unknown:
        raise _static_error(reader, static, f"unknown location {', '.join(unknown)}")
    # The default zone's pool comes first: the planner tries pools in order, so a job
    # without a location property lands there, as Dynamic Torque's default_location 0.
    ordered = sorted(locations, key=lambda pair: pair[0] != default_location)
    prefix = base.pop("name_prefix", f"{DEFAULT_POOL_NAME}-")
    properties = base.pop("properties", DEFAULT_PROPERTIES)
    return tuple(
        _pool(reader, values, name=f"{DEFAULT_POOL_NAME}-{prop}", zone=where,
              properties=properties | {prop},
              name_prefix=f"{prefix}{prop.lower().replace('_', '-')}-",
              min_nodes=counts.get(prop, 0), max_nodes=counts.get(prop, 0) + dynamic, **base)
        for prop, where in ordered)


def _static_error(reader: _Reader, static: _Value | None, message: str) -> ConfigError:
    return reader.error(message, line=static.line if static else None, section="cloud",
                        key="static_worker_nodes")


def _explicit_pools(reader: _Reader, values: dict[str, _Value],
                    sections: list[str]) -> tuple[PoolSettings, ...]:
    for target in _DEFAULT_POOL_ONLY:
        item = values.get(target)
        if item and not (target == "_static" and isinstance(item.value, tuple)):
            raise reader.error("shapes only the pool [cloud] defines, and there are [pool NAME] "
                               "sections: set name_prefix, zone, min_nodes and max_nodes in "
                               "each pool", line=item.line, section=item.section, key=item.key)
    inherited = {target.removeprefix("pool."): item.value for target, item in values.items()
                 if target.startswith("pool.") and target.removeprefix("pool.") in _INHERITED}
    inherited.setdefault("flavors", DEFAULT_FLAVORS)
    pools: list[PoolSettings] = []
    for section in sections:
        parts = section.split(None, 1)
        name = parts[1].strip() if len(parts) == 2 else ""
        if not _POOL_NAME.match(name):
            raise reader.error("a pool section is [pool NAME], NAME of letters, digits, "
                               f"'_', '.' or '-', got [{section}]", line=reader.line(section))
        if any(pool.name == name for pool in pools):
            raise reader.error(f"pool {name} is defined twice", line=reader.line(section))
        own = {target: item.value for target, item in reader.read(section, _POOL).items()}
        merged = {**inherited, **own}
        if "image" not in merged:
            raise reader.error(f"missing image for pool {name}: set image here or "
                               "cloud_image_uuid in [cloud]", line=reader.line(section),
                               section=section, key="image")
        pools.append(_pool(reader, values, name=name, section=section, **merged))
    return tuple(pools)


def _pool(reader: _Reader, values: dict[str, _Value], *, section: str = "cloud",
          **kwargs: Any) -> PoolSettings:
    pool = PoolSettings(**kwargs)
    prefix_key = "name_prefix" if section != "cloud" else "cloud_vm_prefix"
    if pool.min_nodes > pool.max_nodes:
        raise reader.error(f"pool {pool.name}: min_nodes {pool.min_nodes} exceeds max_nodes "
                           f"{pool.max_nodes}", line=reader.line(section, "min_nodes") or
                           reader.line(section), section=section, key="min_nodes")
    prefix = pool.name_prefix or f"{pool.name}-"
    width = max(3, len(str(pool.max_nodes)))
    if not _HOSTNAME_PREFIX.match(prefix) or len(prefix) + width > _HOSTNAME_MAX:
        raise reader.error(f"pool {pool.name}: its node names would start with {prefix!r}, "
                           f"not a lowercase hostname of at most {_HOSTNAME_MAX} characters; "
                           "set a name prefix", line=reader.line(section, prefix_key) or
                           reader.line(section), section=section, key=prefix_key)
    monitored = values["queues"].value if "queues" in values else frozenset()
    unmonitored = sorted(pool.queues - monitored) if monitored else []
    if unmonitored:
        raise reader.error(f"pool {pool.name} serves queue {', '.join(unmonitored)}, which "
                           "torque_queue_to_monitor leaves out", line=reader.line(
                               section, "queues"), section=section, key="queues")
    return pool


def _check_settings(reader: _Reader, settings: Settings, values: dict[str, _Value]) -> None:
    if settings.backoff_cap < settings.backoff_base:
        item = values.get("backoff_cap") or values.get("backoff_base")
        raise reader.error(f"backoff_cap_seconds {settings.backoff_cap:g} is below "
                           f"backoff_base_seconds {settings.backoff_base:g}",
                           line=item.line if item else None, section="global",
                           key=item.key if item else None)
    prefixes: dict[str, str] = {}
    for pool in settings.pools:
        prefix = pool.name_prefix or f"{pool.name}-"
        if prefix in prefixes:
            raise reader.error(f"pools {prefixes[prefix]} and {pool.name} would both name "
                               f"their nodes {prefix}NNN: give each its own name_prefix")
        prefixes[prefix] = pool.name


# --- using the settings ----------------------------------------------------------------

def build_policy(settings: Settings, flavors: Mapping[str, Flavor]) -> Policy:
    """The planner's Policy: flavor names resolved against the cloud's flavors (by name),
    seconds turned into timedeltas, each pool's user-data file read."""
    return Policy(
        pools=tuple(_policy_pool(pool, flavors) for pool in settings.pools),
        queues=settings.queues,
        max_cores=settings.max_cores,
        max_booting=settings.max_booting,
        idle_timeout=timedelta(seconds=settings.idle_timeout),
        down_timeout=timedelta(seconds=settings.down_timeout),
        boot_timeout=timedelta(seconds=settings.boot_timeout),
        hint_ttl=timedelta(seconds=settings.effective_hint_ttl),
        hints=HintTrust(cores_per_user=settings.hint_cores_per_user,
                        cores_per_source=settings.hint_cores_per_source,
                        cores_total=settings.hint_cores_total,
                        max_array=settings.hint_max_array, strikes=settings.hint_strikes,
                        penalty=timedelta(seconds=settings.hint_penalty),
                        idle_timeout=timedelta(seconds=settings.prewarm_idle_time)),
        idle_release=IdleRelease(enabled=settings.idle_release == "demand",
                                 min_idle=timedelta(seconds=settings.min_idle_time)),
        backoff_base=timedelta(seconds=settings.backoff_base),
        backoff_cap=timedelta(seconds=settings.backoff_cap),
        max_boot_failures=settings.max_boot_failures,
    )


def _policy_pool(pool: PoolSettings, flavors: Mapping[str, Flavor]) -> Pool:
    missing = [name for name in pool.flavors if name not in flavors]
    if missing:
        raise ConfigError(
            f"pool {pool.name}: unknown flavor {', '.join(missing)}; the cloud has "
            f"{', '.join(sorted(flavors)) or 'none'}",
            suggestion=_nearest(missing[0], list(flavors)))
    user_data = None
    if pool.user_data_file is not None:
        try:
            user_data = pool.user_data_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"pool {pool.name}: cannot read its user-data file: {exc}",
                              key="user_data_file") from None
    return Pool(
        name=pool.name,
        flavors=tuple(flavors[name] for name in pool.flavors),
        image=pool.image,
        zone=pool.zone,
        properties=pool.properties,
        queues=pool.queues,
        accounts=pool.accounts,
        min_nodes=pool.min_nodes,
        max_nodes=pool.max_nodes,
        max_cores=pool.max_cores,
        name_prefix=pool.name_prefix,
        key_name=pool.key_name,
        security_groups=pool.security_groups,
        network=pool.network,
        user_data_template=user_data,
    )


def describe(settings: Settings) -> str:
    """The effective configuration as INI text that parse_settings reads back.

    Every key is written, unset ones empty. The pool [cloud] defines (and its split by
    node_location_property) appears as the [pool NAME] sections it became. Secrets are
    masked (dtserver.redact): they read back as the mask, not as the secret.
    """
    lines: list[str] = []
    for section, keys in _SECTIONS.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key.name}: {_shown(settings, key.target)}".rstrip() for key in keys
                     if not key.alias and not key.target.startswith(("pool.", "_")))
        if section == "cloud":
            lines.append(f"static_worker_nodes: {_format(settings.static_worker_nodes)}".rstrip())
        lines.append("")
    for pool in settings.pools:
        lines.append(f"[{POOL_SECTION} {pool.name}]")
        lines.extend(f"{key.name}: {_format(getattr(pool, key.target))}".rstrip()
                     for key in _POOL)
        lines.append("")
    return "\n".join(lines)


def _shown(settings: Settings, target: str, *, masked: bool = True) -> str:
    group, _, name = target.partition(".")
    if group == "auth":
        value = settings.cloud_auth.get(name)
        if value and masked:
            return MASK if name in SECRET_AUTH_KEYS else mask_text(value)
        return _format(value)
    if group == "events":
        value = getattr(settings.events, name)
        if isinstance(value, tuple):
            return shlex.join(mask_argv(value) if masked else value)
        return _format(value)
    return _format(getattr(settings, target))


def _secret_keys(settings: Settings) -> list[str]:
    """The keys whose value describe() masks (dtserver.redact's rule)."""
    return [key.name for keys in _SECTIONS.values() for key in keys
            if not key.alias and key.target.startswith(("auth.", "events."))
            and _shown(settings, key.target) != _shown(settings, key.target, masked=False)]


def _format(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, frozenset):
        return ",".join(sorted(value))
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)
