"""FakeNova: an in-memory Nova shaped like the python-novaclient subset NovaCloud uses.

It serves the demo, the simulator and the fast tests, so it follows the real API as
docs/nova-facts.md records it: the same novaclient exception
classes, codes and messages; flavor ids, not names; `nics` required from 2.37; metadata
filters ignored on list; BUILD -> ACTIVE with link-local addresses; delete -> 404 later;
ERROR servers keep a `fault`. Time comes from a Clock and nothing happens between calls
except what `tick()` (or any call) catches up on, so thousands of boots stay cheap.

Fault injection: `fail_next`, `error_on_boot`, `never_active`, `set_quota`,
`add_foreign_server`, `set_addresses`; every call is logged in `calls`.
"""
from __future__ import annotations

import base64
import heapq
import ipaddress
import itertools
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator, Mapping

from novaclient import api_versions
from novaclient import exceptions as nova_exc
from novaclient.v2.limits import AbsoluteLimit

from dtserver.clock import Clock
from dtserver.fakes.nova_resources import (
    FakeResource, FakeServer, as_text, encode_user_data, flavor_view, getid, mac_address,
    resource_links, server_flavor, tag_filter, validate_server_fields)
from dtserver.model import Flavor, Quota

# Fixed ids of the harness's fake Glance image and fake Neutron `private` network.
DEFAULT_IMAGE = "155d900f-4e14-4e4c-a73d-069cbf4541e6"
DEFAULT_NETWORK = "3cb9bc59-5699-4588-a4b1-b87f96708bc6"
DEFAULT_NETWORK_NAME = "private"
PROJECT_ID = "6f70656e737461636b20342065766572"
USER_ID = "demo"
# devstack's classic flavors, by id as Nova wants them.
DEFAULT_FLAVORS = (
    Flavor("m1.small", cores=1, mem_mb=2048, id="2"),
    Flavor("m1.medium", cores=2, mem_mb=4096, id="3"),
    Flavor("m1.large", cores=4, mem_mb=8192, id="4"),
    Flavor("m1.xlarge", cores=8, mem_mb=16384, id="5"),
)
NO_VALID_HOST = "No valid host was found. There are not enough hosts available."

SERVER_OPERATIONS = ("servers.create", "servers.list", "servers.delete")

_FIRST_ADDRESS = ipaddress.IPv4Address("169.254.80.100")  # as the harness launcher
_LAST_ADDRESS = ipaddress.IPv4Address("169.254.254.254")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_NICS_REQUIRED = api_versions.APIVersion("2.37")
_TAGS_AT_CREATE = api_versions.APIVersion("2.52")
_SERVER_TAGS = api_versions.APIVersion("2.26")


@dataclass(frozen=True)
class Call:
    """One client call as the fake received it; `args` holds what identifies it."""

    operation: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _Server:
    """Mutable state of one fake server; callers only ever see snapshots."""

    id: str
    name: str
    flavor: Flavor
    image: str
    requested_zone: str | None
    key_name: str | None
    security_groups: tuple[str, ...]
    metadata: dict[str, str]
    tags: list[str]
    user_data: str | None                    # base64, as Nova stores it
    network: str | None                      # network id; None = no networking
    created: datetime
    updated: datetime
    outcome: str                             # "active" | "error" | "never"
    status: str = "BUILD"
    vm_state: str = "building"
    task_state: str | None = "scheduling"
    zone: str = ""
    addresses: tuple[str, ...] = ()
    address_slots: tuple[int, ...] = ()
    launched_at: datetime | None = None
    fault: dict[str, Any] | None = None
    deleting: bool = False
    reported_addresses: Any = None           # set_addresses: shown verbatim instead


@dataclass
class _FailureRule:
    remaining: int
    error: BaseException
    operations: frozenset[str]
    applied: bool


@dataclass
class _BootRule:
    pattern: re.Pattern[str] | None
    remaining: int | None                    # None = every match, for ever


class FakeNova:
    """python-novaclient v2 Client subset: `servers`, `flavors`, `limits`, `api_version`."""

    def __init__(
        self,
        clock: Clock,
        *,
        flavors: Iterable[Flavor] = DEFAULT_FLAVORS,
        images: Iterable[str] = (DEFAULT_IMAGE,),
        zones: Iterable[str] = ("nova",),
        quota: Quota = Quota(),
        networks: Mapping[str, str] | None = None,
        keypairs: Iterable[str] | None = None,
        boot_delay: timedelta | float | Callable[[], float] = 1.0,
        delete_delay: timedelta | float = 0.3,
        microversion: str = "2.96",
        max_limit: int = 1000,
        id_factory: Callable[[], str] | None = None,
        calls_kept: int = 10_000,
    ) -> None:
        """`quota` holds the project's limits (None = unlimited); `networks` maps id -> name
        (default: the harness's `private`); `keypairs` None accepts any key name;
        `max_limit` is Nova's page size when a list asks for no or a larger limit;
        `boot_delay` may be a function, drawn once per create (seconds)."""
        self.clock = clock
        self.api_version = api_versions.APIVersion(microversion)
        self.servers = FakeServerManager(self)
        self.flavors = FakeFlavorManager(self)
        self.limits = FakeLimitsManager(self)
        self.calls: deque[Call] = deque(maxlen=calls_kept)
        self.on_active: list[Callable[[FakeServer], None]] = []
        # Called when a delete is accepted: the guest (and its pbs_mom) stops at once.
        self.on_delete: list[Callable[[FakeServer], None]] = []
        # Called after servers.set_meta_item: the guest sees its metadata change.
        self.on_metadata: list[Callable[[FakeServer], None]] = []
        self._flavors = {flavor.id or flavor.name: flavor for flavor in flavors}
        self._images = frozenset(images)
        self._zones = tuple(zones)
        if not self._zones:
            raise ValueError("FakeNova needs at least one availability zone")
        self._networks = dict(networks) if networks is not None else {
            DEFAULT_NETWORK: DEFAULT_NETWORK_NAME}
        self._keypairs = frozenset(keypairs) if keypairs is not None else None
        if callable(boot_delay):
            self._boot_delay = lambda: _as_delta(boot_delay())
        else:
            fixed = _as_delta(boot_delay)
            self._boot_delay = lambda: fixed
        self._delete_delay = _as_delta(delete_delay)
        self._max_limit = max_limit
        self._new_id = id_factory or (lambda: str(uuid.uuid4()))
        self._limits = {"cores": _limit(quota.cores), "instances": _limit(quota.instances),
                        "ram": _limit(quota.ram_mb)}
        self._used = {"cores": 0, "instances": 0, "ram": 0}
        self._servers: dict[str, _Server] = {}   # creation order; lists show newest first
        self._events: list[tuple[datetime, int, str, str]] = []   # (due, seq, kind, id)
        self._seq = itertools.count()
        self._free_slots: list[int] = []
        self._next_slot = 0
        self._failures: list[_FailureRule] = []
        self._error_rules: list[_BootRule] = []
        self._never_rules: list[_BootRule] = []
        self._lock = threading.RLock()

    # --- fault injection and inspection (not part of novaclient) -----------------------

    def fail_next(self, n: int, exc: BaseException, *,
                  operations: Iterable[str] = SERVER_OPERATIONS, applied: bool = False) -> None:
        """The next `n` calls of `operations` raise `exc`. With `applied`, each call takes
        effect first, as when Nova did the work and the response was lost."""
        if n < 1:
            raise ValueError("fail_next needs n >= 1")
        with self._lock:
            self._failures.append(_FailureRule(n, exc, frozenset(operations), applied))

    def error_on_boot(self, pattern: str | None = None, *, count: int | None = None) -> None:
        """Boots whose name matches `pattern` (re.search), or the next `count` boots, end
        in ERROR with a NoValidHost fault instead of ACTIVE."""
        with self._lock:
            self._error_rules.append(_boot_rule(pattern, count))

    def never_active(self, pattern: str | None = None, *, count: int | None = None) -> None:
        """Boots whose name matches `pattern`, or the next `count` boots, stay in BUILD."""
        with self._lock:
            self._never_rules.append(_boot_rule(pattern, count))

    def clear_faults(self) -> None:
        with self._lock:
            self._failures.clear()
            self._error_rules.clear()
            self._never_rules.clear()

    def set_quota(self, *, cores: int | None = None, instances: int | None = None,
                  ram: int | None = None) -> None:
        """New project limits; None leaves one unchanged, -1 makes it unlimited."""
        with self._lock:
            for resource, value in (("cores", cores), ("instances", instances), ("ram", ram)):
                if value is not None:
                    self._limits[resource] = value

    def add_foreign_server(self, name: str, *, metadata: Mapping[str, str] | None = None,
                           tags: Iterable[str] = (), flavor: str | None = None) -> str:
        """An ACTIVE server someone else made in the same project; `flavor` is a flavor id
        (None: a zero-sized one). It counts against the project's quota, as in Nova."""
        with self._lock:
            self._catch_up()
            flavor_value = self._flavors[flavor] if flavor else Flavor("foreign", 0, 0, id="0")
            server = self._new_server(
                name=name, flavor=flavor_value, image=DEFAULT_IMAGE, zone=None, key_name=None,
                security_groups=("default",), metadata=dict(metadata or {}), tags=list(tags),
                user_data=None, network=next(iter(self._networks), None), outcome="active")
            self._activate(server)
            return server.id

    def set_addresses(self, server_id: str, addresses: Any) -> None:
        """From now on the server's `addresses` field is `addresses`, verbatim, whatever
        its shape: what a broken or compromised Nova or Neutron could report."""
        with self._lock:
            self._server(server_id).reported_addresses = addresses

    def user_data(self, server_id: str) -> str | None:
        """The user data a server was booted with, decoded (an admin-only field in Nova)."""
        with self._lock:
            encoded = self._servers[server_id].user_data
        return None if encoded is None else base64.b64decode(encoded).decode()

    def server_ids(self) -> tuple[str, ...]:
        """Every server still present, whoever owns it, oldest first."""
        with self._lock:
            self._catch_up()
            return tuple(self._servers)

    def peek(self) -> tuple[FakeServer, ...]:
        """Detailed views of every server still present, whoever owns it, oldest first;
        for tests and simulators: not logged in `calls`, never hit by injected faults."""
        with self._lock:
            self._catch_up()
            return tuple(self._view(server, detailed=True) for server in self._servers.values())

    def tick(self) -> None:
        """Catch up with the clock: finish due boots and deletes, run on_active callbacks."""
        with self._lock:
            self._catch_up()

    def next_event_at(self) -> datetime | None:
        """When the next boot or delete completes; lets a simulator jump its clock."""
        with self._lock:
            return self._events[0][0] if self._events else None

    # --- what the managers call ---------------------------------------------------------

    def _enter(self, operation: str, **args: Any) -> _FailureRule | None:
        """Log the call, catch up with time, and pick an injected failure if one is due."""
        self.calls.append(Call(operation, args))
        self._catch_up()
        for rule in self._failures:
            if operation in rule.operations:
                rule.remaining -= 1
                if rule.remaining == 0:
                    self._failures.remove(rule)
                if not rule.applied:
                    raise rule.error
                return rule
        return None

    def _catch_up(self) -> None:
        """Apply due events, then run on_active callbacks (they may call back into the
        fake: the lock is re-entrant)."""
        for server in self._advance():
            for callback in list(self.on_active):
                callback(server)

    def _create(self, name: str, image: str, flavor: str, *, meta: Mapping[str, str] | None,
                userdata: Any, key_name: str | None, availability_zone: str | None,
                security_groups: Iterable[str] | None, nics: Any,
                tags: Iterable[str] | None) -> FakeServer:
        # novaclient's own client-side checks, before anything is sent
        if tags and self.api_version < _TAGS_AT_CREATE:
            raise nova_exc.UnsupportedAttribute("tags", "2.52")
        if self.api_version >= _NICS_REQUIRED:
            if not nics:
                raise ValueError("nics are required after microversion 2.36")
        elif nics and not isinstance(nics, (list, tuple)):
            raise ValueError(f"nics must be a list or a tuple, not {type(nics)}")
        with self._lock:
            failure = self._enter("servers.create", name=name, image=image, flavor=flavor,
                                  availability_zone=availability_zone, nics=nics)
            metadata = dict(meta or {})
            tag_list = list(tags or ())
            encoded = encode_user_data(userdata)
            validate_server_fields(name, metadata, tag_list, encoded)
            flavor_value = self._flavors.get(str(flavor))
            if flavor_value is None:
                raise nova_exc.BadRequest(400, "Invalid flavorRef provided.")
            if image not in self._images:
                raise nova_exc.BadRequest(400, "Can not find requested image")
            network = self._network_for(nics)
            if self._keypairs is not None and key_name is not None \
                    and key_name not in self._keypairs:
                raise nova_exc.BadRequest(400, "Invalid key_name provided.")
            if availability_zone is not None and availability_zone not in self._zones:
                raise nova_exc.BadRequest(
                    400, "The requested availability zone is not available")
            self._check_quota(flavor_value)
            boot_delay = self._boot_delay()
            server = self._new_server(
                name=name, flavor=flavor_value, image=image, zone=availability_zone,
                key_name=key_name, security_groups=tuple(security_groups or ("default",)),
                metadata=metadata, tags=tag_list, user_data=encoded, network=network,
                outcome=self._boot_outcome(name))
            if server.outcome != "never":
                self._schedule(boot_delay, "boot", server.id)
            else:
                server.task_state = "spawning"
            if failure is not None:
                raise failure.error
            # Real Nova answers a create with this much and no more.
            return FakeServer({
                "id": server.id,
                "links": resource_links("servers", server.id),
                "OS-DCF:diskConfig": "MANUAL",
                "security_groups": [{"name": group} for group in server.security_groups],
            }, self.servers)

    def _list(self, detailed: bool, search_opts: Mapping[str, Any] | None,
              marker: str | None, limit: int | None) -> list[FakeServer]:
        with self._lock:
            self._enter("servers.list", search_opts=dict(search_opts or {}), marker=marker,
                        limit=limit)
            servers = [server for server in reversed(self._servers.values())
                       if self._matches(server, search_opts or {})]
            if marker is not None:
                positions = [index for index, server in enumerate(servers)
                             if server.id == marker]
                if not positions:
                    raise nova_exc.BadRequest(400, f"marker [{marker}] not found")
                servers = servers[positions[0] + 1:]
            if limit != -1:
                # Nova pages at max_limit; only novaclient's limit=-1 loop gets everything.
                page = min(limit, self._max_limit) if limit else self._max_limit
                servers = servers[:page]
            return [self._view(server, detailed) for server in servers]

    def _get(self, server_id: str) -> FakeServer:
        with self._lock:
            self._enter("servers.get", server=server_id)
            return self._view(self._server(server_id), detailed=True)

    def _delete(self, server_id: str) -> None:
        with self._lock:
            failure = self._enter("servers.delete", server=server_id)
            server = self._server(server_id)
            if not server.deleting:
                server.deleting = True
                server.task_state = "deleting"
                server.updated = self.clock.now()
                self._schedule(self._delete_delay, "gone", server_id)
                for callback in list(self.on_delete):
                    callback(self._view(server, detailed=True))
            if failure is not None:
                raise failure.error

    def _set_tags(self, server_id: str, tags: Iterable[str]) -> list[str]:
        if self.api_version < _SERVER_TAGS:
            raise nova_exc.VersionNotFoundForAPIMethod(str(self.api_version), "set_tags")
        with self._lock:
            failure = self._enter("servers.set_tags", server=server_id, tags=list(tags))
            server = self._server(server_id)
            tag_list = list(tags)
            validate_server_fields(server.name, server.metadata, tag_list, None)
            server.tags = tag_list
            if failure is not None:
                raise failure.error
            return list(tag_list)

    def _set_meta_item(self, server_id: str, key: str, value: str) -> FakeResource:
        with self._lock:
            failure = self._enter("servers.set_meta_item", server=server_id, key=key,
                                  value=value)
            server = self._server(server_id)
            metadata = {**server.metadata, key: value}
            validate_server_fields(server.name, metadata, server.tags, None)
            server.metadata = metadata
            if failure is not None:
                raise failure.error
            view = self._view(server, detailed=True)
        for callback in list(self.on_metadata):
            callback(view)
        return FakeResource({"metadata": {key: value}})

    def _delete_meta(self, server_id: str, keys: Iterable[str]) -> None:
        with self._lock:
            keys = list(keys)
            failure = self._enter("servers.delete_meta", server=server_id, keys=keys)
            server = self._server(server_id)
            missing = [key for key in keys if key not in server.metadata]
            if missing:
                raise nova_exc.NotFound(404, "Metadata item was not found")
            server.metadata = {key: value for key, value in server.metadata.items()
                               if key not in keys}
            if failure is not None:
                raise failure.error

    def _flavor_list(self) -> list[FakeResource]:
        with self._lock:
            self._enter("flavors.list")
            return [flavor_view(flavor) for flavor in self._flavors.values()]

    def _flavor_get(self, flavor_id: str) -> FakeResource:
        with self._lock:
            self._enter("flavors.get", flavor=flavor_id)
            flavor = self._flavors.get(flavor_id)
            if flavor is None:
                raise nova_exc.NotFound(404, f"Flavor {flavor_id} could not be found.")
            return flavor_view(flavor)

    def _absolute_limits(self) -> dict[str, int]:
        with self._lock:
            self._enter("limits.get")
            return {
                "maxTotalCores": self._limits["cores"],
                "maxTotalInstances": self._limits["instances"],
                "maxTotalRAMSize": self._limits["ram"],
                "maxServerMeta": 128,
                "maxTotalKeypairs": 100,
                "maxServerGroups": 10,
                "maxServerGroupMembers": 10,
                "totalCoresUsed": self._used["cores"],
                "totalInstancesUsed": self._used["instances"],
                "totalRAMUsed": self._used["ram"],
                "totalServerGroupsUsed": 0,
            }

    # --- internals ----------------------------------------------------------------------

    def _server(self, server_id: str) -> _Server:
        server = self._servers.get(str(server_id))
        if server is None:
            raise nova_exc.NotFound(404, f"Instance {server_id} could not be found.")
        return server

    def _new_server(self, *, name: str, flavor: Flavor, image: str, zone: str | None,
                    key_name: str | None, security_groups: tuple[str, ...],
                    metadata: dict[str, str], tags: list[str], user_data: str | None,
                    network: str | None, outcome: str) -> _Server:
        now = self.clock.now()
        server = _Server(
            id=self._new_id(), name=name, flavor=flavor, image=image, requested_zone=zone,
            key_name=key_name, security_groups=security_groups, metadata=metadata, tags=tags,
            user_data=user_data, network=network, created=now, updated=now, outcome=outcome,
            zone=zone or "")
        if server.id in self._servers:
            raise ValueError(f"id factory repeated {server.id}")
        self._servers[server.id] = server
        self._used["instances"] += 1
        self._used["cores"] += flavor.cores
        self._used["ram"] += flavor.mem_mb
        return server

    def _check_quota(self, flavor: Flavor) -> None:
        wanted = {"cores": flavor.cores, "instances": 1, "ram": flavor.mem_mb}
        overs = sorted(resource for resource, delta in wanted.items()
                       if self._limits[resource] >= 0
                       and self._used[resource] + delta > self._limits[resource])
        if not overs:
            return
        # nova.exception.TooManyInstances, listing every resource that is over
        joined = ", ".join(overs)
        requested = ", ".join(str(wanted[resource]) for resource in overs)
        used = ", ".join(str(self._used[resource]) for resource in overs)
        allowed = ", ".join(str(self._limits[resource]) for resource in overs)
        raise nova_exc.Forbidden(403, f"Quota exceeded for {joined}: Requested {requested}, "
                                      f"but already used {used} of {allowed} {joined}")

    def _network_for(self, nics: Any) -> str | None:
        if nics is None or nics == "auto":
            return next(iter(self._networks), None)
        if nics == "none":
            return None
        if isinstance(nics, str):
            raise nova_exc.BadRequest(
                400, f"Invalid input for field/attribute networks. Value: {nics}. "
                     f"'{nics}' is not one of ['none', 'auto']")
        network = None
        for nic in nics:
            requested = nic.get("net-id")
            if requested not in self._networks:
                raise nova_exc.BadRequest(400, f"Network {requested} could not be found.")
            network = network or requested
        return network

    def _boot_outcome(self, name: str) -> str:
        if _take(self._error_rules, name):
            return "error"
        if _take(self._never_rules, name):
            return "never"
        return "active"

    def _schedule(self, delay: timedelta, kind: str, server_id: str) -> None:
        heapq.heappush(self._events, (self.clock.now() + delay, next(self._seq), kind, server_id))

    def _advance(self) -> list[FakeServer]:
        """Apply every event due by now; returns the servers that turned ACTIVE."""
        now = self.clock.now()
        activated = []
        while self._events and self._events[0][0] <= now:
            due, _, kind, server_id = heapq.heappop(self._events)
            server = self._servers.get(server_id)
            if server is None:
                continue
            if kind == "gone":
                self._remove(server)
            elif server.status == "BUILD" and not server.deleting:
                server.updated = due
                if server.outcome == "error":
                    self._fail(server, due)
                else:
                    self._activate(server)
                    activated.append(self._view(server, detailed=True))
        return activated

    def _activate(self, server: _Server) -> None:
        server.status = "ACTIVE"
        server.vm_state = "active"
        server.task_state = None
        server.zone = server.requested_zone or self._zones[0]
        server.launched_at = server.updated
        if server.network is not None:
            server.address_slots = (self._take_slot(),)
            server.addresses = tuple(str(_FIRST_ADDRESS + slot) for slot in server.address_slots)

    def _fail(self, server: _Server, when: datetime) -> None:
        server.status = "ERROR"
        server.vm_state = "error"
        server.task_state = None
        server.fault = {"code": 500, "created": when.strftime(_TIME_FORMAT),
                        "message": NO_VALID_HOST}

    def _remove(self, server: _Server) -> None:
        del self._servers[server.id]
        self._used["instances"] -= 1
        self._used["cores"] -= server.flavor.cores
        self._used["ram"] -= server.flavor.mem_mb
        for slot in server.address_slots:
            heapq.heappush(self._free_slots, slot)

    def _take_slot(self) -> int:
        # Lowest free address first, as Neutron hands released addresses out again.
        if self._free_slots:
            return heapq.heappop(self._free_slots)
        slot = self._next_slot
        if _FIRST_ADDRESS + slot > _LAST_ADDRESS:
            raise nova_exc.ClientException(500, "No more IP addresses available on network")
        self._next_slot += 1
        return slot

    def _matches(self, server: _Server, search_opts: Mapping[str, Any]) -> bool:
        tags = set(server.tags)
        if self.api_version >= _SERVER_TAGS:
            # Older microversions ignore tag filters, as Nova drops unknown filters.
            if not tag_filter(search_opts.get("tags"), lambda wanted: wanted <= tags):
                return False
            if not tag_filter(search_opts.get("tags-any"), lambda wanted: bool(wanted & tags)):
                return False
            if not tag_filter(search_opts.get("not-tags"), lambda wanted: not wanted <= tags):
                return False
            if not tag_filter(search_opts.get("not-tags-any"),
                              lambda wanted: not wanted & tags):
                return False
        name = search_opts.get("name")
        if name and not re.search(as_text(name), server.name):
            return False
        status = search_opts.get("status")
        # `metadata` is deliberately not a filter: Nova ignores it for project members.
        return not status or as_text(status).upper() == server.status

    def _view(self, server: _Server, detailed: bool) -> FakeServer:
        links = resource_links("servers", server.id)
        if not detailed:
            return FakeServer({"id": server.id, "name": server.name, "links": links},
                              self.servers)
        network_name = self._networks.get(server.network or "", "")
        info: dict[str, Any] = {
            "id": server.id,
            "name": server.name,
            "status": server.status,
            "tenant_id": PROJECT_ID,
            "user_id": USER_ID,
            "metadata": dict(server.metadata),
            "hostId": "",
            "image": {"id": server.image, "links": resource_links("images", server.image)},
            "flavor": server_flavor(server.flavor, self.api_version),
            "created": server.created.strftime(_TIME_FORMAT),
            "updated": server.updated.strftime(_TIME_FORMAT),
            "addresses": server.reported_addresses
            if server.reported_addresses is not None else {network_name: [
                {"version": 4, "addr": address, "OS-EXT-IPS:type": "fixed",
                 "OS-EXT-IPS-MAC:mac_addr": mac_address(slot)}
                for address, slot in zip(server.addresses, server.address_slots)]}
            if server.addresses else {},
            "accessIPv4": "",
            "accessIPv6": "",
            "links": links,
            "key_name": server.key_name,
            "security_groups": [{"name": group} for group in server.security_groups],
            "OS-DCF:diskConfig": "MANUAL",
            "OS-EXT-AZ:availability_zone": server.zone,
            "OS-EXT-STS:vm_state": server.vm_state,
            "OS-EXT-STS:task_state": server.task_state,
            "OS-EXT-STS:power_state": 1 if server.status == "ACTIVE" else 0,
            "OS-SRV-USG:launched_at": server.launched_at.strftime("%Y-%m-%dT%H:%M:%S.000000")
            if server.launched_at else None,
            "OS-SRV-USG:terminated_at": None,
            "progress": 0,
            "locked": False,
            "description": None,
        }
        if self.api_version >= _SERVER_TAGS:
            info["tags"] = list(server.tags)
        if server.fault is not None:
            info["fault"] = dict(server.fault)
        return FakeServer(info, self.servers)


class FakeServerManager:
    """client.servers"""

    def __init__(self, nova: FakeNova) -> None:
        self._nova = nova

    def create(self, name: str, image: Any, flavor: Any, meta: Mapping[str, str] | None = None,
               *, userdata: Any = None, key_name: str | None = None,
               availability_zone: str | None = None,
               security_groups: Iterable[str] | None = None, nics: Any = None,
               tags: Iterable[str] | None = None) -> FakeServer:
        return self._nova._create(
            name, getid(image), getid(flavor), meta=meta, userdata=userdata,
            key_name=key_name, availability_zone=availability_zone,
            security_groups=security_groups, nics=nics, tags=tags)

    def list(self, detailed: bool = True, search_opts: Mapping[str, Any] | None = None,
             marker: str | None = None, limit: int | None = None) -> list[FakeServer]:
        return self._nova._list(detailed, search_opts, marker, limit)

    def get(self, server: Any) -> FakeServer:
        return self._nova._get(getid(server))

    def delete(self, server: Any) -> None:
        self._nova._delete(getid(server))

    def set_tags(self, server: Any, tags: Iterable[str]) -> list[str]:
        return self._nova._set_tags(getid(server), tags)

    def set_meta_item(self, server: Any, key: str, value: str) -> FakeResource:
        return self._nova._set_meta_item(getid(server), key, value)

    def delete_meta(self, server: Any, keys: Iterable[str]) -> None:
        self._nova._delete_meta(getid(server), keys)


class FakeFlavorManager:
    """client.flavors"""

    def __init__(self, nova: FakeNova) -> None:
        self._nova = nova

    def list(self, detailed: bool = True, is_public: bool | None = True) -> list[FakeResource]:
        return self._nova._flavor_list()

    def get(self, flavor: Any) -> FakeResource:
        return self._nova._flavor_get(str(getid(flavor)))

    def find(self, **kwargs: Any) -> FakeResource:
        matches = [flavor for flavor in self.list()
                   if all(getattr(flavor, key, None) == value for key, value in kwargs.items())]
        if not matches:
            raise nova_exc.NotFound(404, f"No Flavor matching {kwargs}.")
        if len(matches) > 1:
            raise nova_exc.NoUniqueMatch()
        return matches[0]


class FakeLimits:
    def __init__(self, absolute: Mapping[str, int]) -> None:
        self._absolute = dict(absolute)

    @property
    def absolute(self) -> Iterator[AbsoluteLimit]:
        for name, value in self._absolute.items():
            yield AbsoluteLimit(name, value)


class FakeLimitsManager:
    """client.limits"""

    def __init__(self, nova: FakeNova) -> None:
        self._nova = nova

    def get(self, reserved: bool = False, tenant_id: str | None = None) -> FakeLimits:
        return FakeLimits(self._nova._absolute_limits())


def _as_delta(value: timedelta | float) -> timedelta:
    delta = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if delta < timedelta(0):
        raise ValueError("delays cannot be negative")
    return delta


def _limit(value: int | None) -> int:
    return -1 if value is None else value


def _boot_rule(pattern: str | None, count: int | None) -> _BootRule:
    if pattern is None and count is None:
        raise ValueError("give a name pattern, a count, or both")
    return _BootRule(re.compile(pattern) if pattern is not None else None, count)


def _take(rules: list[_BootRule], name: str) -> bool:
    for rule in rules:
        if rule.remaining == 0:
            continue
        if rule.pattern is None or rule.pattern.search(name):
            if rule.remaining is not None:
                rule.remaining -= 1
            return True
    return False


