"""NovaCloud: the Cloud port over a python-novaclient v2 client (real, or FakeNova).

Ownership: every instance we boot carries metadata naming the cluster, the installation
(a random id made with our database), pool and node record, and two tags. The server list
ignores metadata filters (docs/nova-facts.md), so instances are listed by tag and
ownership is then decided from the metadata in code, in `_is_ours` alone; tags only narrow
the list. A cluster_id is only a name, and two installations in one project may share it:
the installation id is what makes an instance ours. Every failure leaves as a CloudError
made by `classify`.

Nova's answers are input, not truth: addresses are used only as plain IPv4/IPv6 addresses
(they end up in the hosts file and TORQUE).
"""
from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, TypeVar

from keystoneauth1 import exceptions as ks_exc
from novaclient import api_versions
from novaclient import exceptions as nova_exc

from dtserver.clock import Clock, SystemClock
from dtserver.cloud import CloudError, ForeignInstance
from dtserver.model import (
    ENTRY_READY, ENTRY_READY_KEY, ErrorKind, Flavor, Instance, InstanceSpec, Quota)

logger = logging.getLogger(__name__)

CLUSTER_KEY = "dynamictorque:cluster"
INSTALLATION_KEY = "dynamictorque:installation"
POOL_KEY = "dynamictorque:pool"
RECORD_KEY = "dynamictorque:record"
PRODUCT_TAG = "dynamictorque"
CLUSTER_TAG_PREFIX = "dt-cluster-"

MIN_MICROVERSION = api_versions.APIVersion("2.26")      # server tags and tag filters
_TAGS_AT_CREATE = api_versions.APIVersion("2.52")
_NICS_REQUIRED = api_versions.APIVersion("2.37")

_MAX_TAG_LENGTH = 60
# Tags refuse "," and "/"; a plain charset also keeps the id safe in names and logs.
_CLUSTER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Nova metadata values hold 255 characters; the store makes 32 hex digits.
_INSTALLATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
# Before ipaddress sees it: it takes anything after '%' as an IPv6 scope id, spaces and
# newlines included, and that would split a hosts-file line.
_ADDRESS_TEXT = re.compile(r"[0-9A-Fa-f.:]{2,45}")
_MESSAGE_LIMIT = 200
# nova.exception.NoValidHost and its subclass MaxRetriesExceeded
_CAPACITY_FAULTS = ("no valid host", "exceeded maximum number of retries")
# What a cloud call can raise besides our own bugs.
_CLOUD_EXCEPTIONS = (nova_exc.ClientException, nova_exc.UnsupportedVersion,
                     nova_exc.UnsupportedAttribute, nova_exc.VersionNotFoundForAPIMethod,
                     ks_exc.ClientException, OSError)

T = TypeVar("T")


def cluster_tag(cluster_id: str) -> str:
    return f"{CLUSTER_TAG_PREFIX}{cluster_id}"


def classify(exc: BaseException) -> CloudError:
    """The one place that turns a novaclient/keystoneauth1 failure into a CloudError.

    Decided by exception class and HTTP status; the message text only separates a quota
    refusal from a policy refusal, which share 403 Forbidden.
    """
    status = _status_of(exc)
    message = _short_message(exc)
    return CloudError(_kind_of(exc, status, message), message, status=status)


def fault_kind(fault: str | None) -> ErrorKind:
    """Why an instance went to ERROR: no host for it is a capacity problem, else a boot one."""
    text = (fault or "").lower()
    if any(marker in text for marker in _CAPACITY_FAULTS):
        return ErrorKind.CAPACITY
    return ErrorKind.BOOT


def _kind_of(exc: BaseException, status: int | None, message: str) -> ErrorKind:
    if isinstance(exc, ks_exc.SSLError):
        return ErrorKind.OTHER                  # a certificate problem does not heal by retrying
    if isinstance(exc, (ks_exc.ConnectionError, ks_exc.RetriableConnectionFailure,
                        TimeoutError, ConnectionError)):
        return ErrorKind.TRANSIENT
    if isinstance(exc, (ks_exc.AuthorizationFailure, ks_exc.AuthPluginException)):
        return ErrorKind.AUTH
    is_quota = "quota exceeded" in message.lower()
    if status == 401:
        return ErrorKind.AUTH
    if status == 403:
        return ErrorKind.CAPACITY if is_quota else ErrorKind.AUTH
    if status == 413:
        # Pre-microversion Nova said "over quota" with 413; otherwise it is rate limiting.
        return ErrorKind.CAPACITY if is_quota else ErrorKind.TRANSIENT
    if status == 404:
        return ErrorKind.NOT_FOUND
    if status == 400:
        return ErrorKind.BAD_REQUEST
    if status == 409:
        return ErrorKind.CONFLICT
    if status in (408, 429):
        return ErrorKind.TRANSIENT
    if status in (501, 505):
        return ErrorKind.OTHER                  # "not implemented" stays so on every retry
    if status is not None and status >= 500:
        return ErrorKind.TRANSIENT
    return ErrorKind.OTHER


def _status_of(exc: BaseException) -> int | None:
    if isinstance(exc, nova_exc.ClientException):
        code = getattr(exc, "code", None)
    elif isinstance(exc, ks_exc.HttpError):
        code = exc.http_status
    else:
        code = None
    try:
        return int(code) if code is not None else None
    except (TypeError, ValueError):
        return None


def _short_message(exc: BaseException) -> str:
    """Class name, the server's message and the request id: no URL, body or headers."""
    text = getattr(exc, "message", None)
    if not isinstance(text, str) or not text:
        text = str(exc) or "no message"
    text = " ".join(text.split())
    if len(text) > _MESSAGE_LIMIT:
        text = text[:_MESSAGE_LIMIT - 3] + "..."
    request_id = getattr(exc, "request_id", None)
    suffix = f" request_id={request_id}" if request_id else ""
    return f"{type(exc).__name__}: {text}{suffix}"


class NovaCloud:
    """The Cloud port over a novaclient v2 `Client` at microversion 2.26 or later.

    `network` is a Neutron network id, or "auto" / "none" (Nova's nics enums); an
    InstanceSpec's own network wins. Below 2.52 tags cannot be sent with the create, so
    they are added right after it; an instance whose tagging fails is deleted again, but a
    crash between the two calls leaves an untagged instance: prefer 2.52 or later.
    """

    def __init__(self, client: Any, *, cluster_id: str, installation: str,
                 knows_record: Callable[[str], bool] | None = None,
                 on_foreign: Callable[[ForeignInstance], None] | None = None,
                 network: str | None = None, clock: Clock | None = None) -> None:
        """`installation`: the store's installation id. `knows_record(record_id)`: whether
        one of our records (deleted ones too) has that id; it vouches for instances made
        before installation ids, which are foreign without it. `on_foreign` hears of each
        foreign instance once (bootstrap writes a store event)."""
        if not _CLUSTER_ID.fullmatch(cluster_id) \
                or len(cluster_tag(cluster_id)) > _MAX_TAG_LENGTH:
            raise ValueError(
                f"cluster id {cluster_id!r} must be letters, digits, '.', '_' or '-' and at most "
                f"{_MAX_TAG_LENGTH - len(CLUSTER_TAG_PREFIX)} characters (Nova tags hold 60)")
        if not isinstance(installation, str) or not _INSTALLATION_ID.fullmatch(installation):
            raise ValueError(f"installation id {installation!r} must be 1 to 255 letters, "
                             "digits, '.', '_' or '-'")
        version = client.api_version
        if version.is_null() or version < MIN_MICROVERSION:
            raise ValueError(f"NovaCloud needs compute microversion "
                             f"{MIN_MICROVERSION.get_string()} or later for server tags, "
                             f"got {version.get_string()}")
        self._client = client
        self._version = version
        self._cluster_id = cluster_id
        self._installation = installation
        self._knows_record = knows_record or (lambda record_id: False)
        self._on_foreign = on_foreign or (lambda foreign: None)
        self._warned: set[tuple[str, str]] = set()    # (instance id, what): warn once
        self._tags = (PRODUCT_TAG, cluster_tag(cluster_id))
        self._network = network or "auto"
        try:
            self._nics(self._network)           # refuse a bad setting now, not at first boot
        except CloudError as exc:
            raise ValueError(str(exc)) from exc
        self._clock = clock or SystemClock()
        self._flavor_cache: tuple[Flavor, ...] | None = None

    @property
    def cluster_id(self) -> str:
        return self._cluster_id

    @property
    def installation(self) -> str:
        return self._installation

    def flavors(self) -> tuple[Flavor, ...]:
        found = self._call("flavors.list", self._client.flavors.list)
        flavors = tuple(Flavor(name=item.name, cores=int(item.vcpus), mem_mb=int(item.ram),
                               id=str(item.id)) for item in found)
        self._flavor_cache = flavors
        return flavors

    def create_instance(self, spec: InstanceSpec) -> Instance:
        flavor = self._flavor(spec.flavor)
        metadata = {CLUSTER_KEY: self._cluster_id, INSTALLATION_KEY: self._installation,
                    POOL_KEY: spec.pool, RECORD_KEY: spec.record_id}
        tags_at_create = self._version >= _TAGS_AT_CREATE
        logger.info("instance create requested name=%s pool=%s record=%s flavor=%s zone=%s",
                    spec.name, spec.pool, spec.record_id, flavor.name, spec.zone)
        server = self._call(
            "servers.create", self._client.servers.create, spec.name, spec.image, flavor.id,
            meta=metadata, userdata=spec.user_data, key_name=spec.key_name,
            availability_zone=spec.zone, security_groups=list(spec.security_groups) or None,
            nics=self._nics(spec.network or self._network),
            tags=list(self._tags) if tags_at_create else None)
        if not tags_at_create:
            self._tag_or_undo(server.id)
        logger.info("instance created id=%s name=%s record=%s", server.id, spec.name,
                    spec.record_id)
        # The create response holds little more than the id; the rest is what we asked for.
        return Instance(
            id=server.id, name=spec.name, status="BUILD", created=self._clock.now(),
            flavor_id=flavor.id, metadata=metadata, tags=frozenset(self._tags), zone=spec.zone,
            pool=spec.pool, record_id=spec.record_id)

    def owned_instances(self) -> tuple[Instance, ...]:
        # limit=-1 makes novaclient follow the pages; Nova stops at max_limit otherwise.
        servers = self._call("servers.list", self._client.servers.list,
                             search_opts={"tags": ",".join(self._tags)}, limit=-1)
        owned = []
        seen: set[str] = set()
        for server in servers:
            # Paging by marker while servers change can list one server on two pages.
            if str(server.id) in seen:
                continue
            seen.add(str(server.id))
            metadata = _metadata(server)
            if self._is_ours(metadata):
                owned.append(self._instance(server))
            elif metadata.get(CLUSTER_KEY) == self._cluster_id:
                self._foreign(server, metadata)
            else:
                logger.debug("instance of another cluster skipped id=%s name=%r", server.id,
                             getattr(server, "name", ""))
        # Forget the warnings about instances gone: the set stays as small as the list.
        self._warned = {key for key in self._warned if key[0] in seen}
        return tuple(owned)

    def delete_instance(self, instance_id: str) -> None:
        # Look before deleting: an id that is not ours must never be touched.
        try:
            server = self._client.servers.get(instance_id)
        except nova_exc.NotFound:
            logger.info("instance already gone id=%s", instance_id)
            return
        except _CLOUD_EXCEPTIONS as exc:
            raise self._failed("servers.get", exc) from exc
        if not self._owns(server):
            raise CloudError(ErrorKind.OTHER, f"refusing to delete instance {instance_id}: "
                                              f"not owned by cluster {self._cluster_id} "
                                              f"installation {self._installation}")
        logger.info("instance delete requested id=%s name=%s", instance_id,
                    getattr(server, "name", ""))
        try:
            self._client.servers.delete(instance_id)
        except nova_exc.NotFound:
            logger.info("instance already gone id=%s", instance_id)
        except _CLOUD_EXCEPTIONS as exc:
            raise self._failed("servers.delete", exc) from exc

    def mark_entry_ready(self, instance_id: str) -> None:
        self._call("servers.set_meta_item", self._client.servers.set_meta_item, instance_id,
                   ENTRY_READY_KEY, ENTRY_READY)
        logger.info("instance told its node entry is ready id=%s", instance_id)

    def quota(self) -> Quota:
        limits = self._call("limits.get", self._client.limits.get)
        values = {item.name: item.value for item in limits.absolute}
        return Quota(cores=_free(values, "maxTotalCores", "totalCoresUsed"),
                     instances=_free(values, "maxTotalInstances", "totalInstancesUsed"),
                     ram_mb=_free(values, "maxTotalRAMSize", "totalRAMUsed"))

    # --- internals ----------------------------------------------------------------------

    def _call(self, operation: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        except _CLOUD_EXCEPTIONS as exc:
            raise self._failed(operation, exc) from exc

    def _failed(self, operation: str, exc: BaseException) -> CloudError:
        error = classify(exc)
        logger.warning("cloud call failed operation=%s kind=%s status=%s message=%s",
                       operation, error.kind, error.status, error)
        return error

    def _flavor(self, wanted: str) -> Flavor:
        """By name (or id); the flavor list is cached and re-read once on a miss."""
        flavor = _find_flavor(self._flavor_cache or (), wanted)
        if flavor is None:
            flavor = _find_flavor(self.flavors(), wanted)
        if flavor is None:
            raise CloudError(ErrorKind.BAD_REQUEST, f"unknown flavor {wanted!r}")
        return flavor

    def _flavor_id_of(self, server: Any) -> str | None:
        flavor = getattr(server, "flavor", None) or {}
        if "id" in flavor:
            return str(flavor["id"])
        # From 2.47 the server embeds its flavor by name only.
        name = flavor.get("original_name")
        if name is None:
            return None
        flavors = self._flavor_cache if self._flavor_cache is not None else self.flavors()
        return next((item.id for item in flavors if item.name == name), None)

    def _nics(self, network: str) -> str | list[dict[str, str]] | None:
        if network not in ("auto", "none"):
            return [{"net-id": network}]
        if self._version >= _NICS_REQUIRED:
            return network
        if network == "auto":
            return None                          # before 2.37, no nics meant "auto"
        raise CloudError(ErrorKind.BAD_REQUEST,
                         "network 'none' needs compute microversion 2.37 or later")

    def _tag_or_undo(self, server_id: str) -> None:
        try:
            self._call("servers.set_tags", self._client.servers.set_tags, server_id,
                       list(self._tags))
        except CloudError:
            # Untagged, it would never be listed again: a leak. Take it back at once.
            try:
                self._client.servers.delete(server_id)
            except _CLOUD_EXCEPTIONS as exc:
                logger.error("untagged instance left behind id=%s error=%s", server_id,
                             classify(exc))
            raise

    def _owns(self, server: Any) -> bool:
        return self._is_ours(_metadata(server))

    def _is_ours(self, metadata: Mapping[str, str]) -> bool:
        """The one ownership rule: our cluster id and our installation id. An instance
        with no installation id predates them: ours only if one of our records names it."""
        if metadata.get(CLUSTER_KEY) != self._cluster_id:
            return False
        if INSTALLATION_KEY in metadata:
            return metadata[INSTALLATION_KEY] == self._installation
        record_id = metadata.get(RECORD_KEY)
        return bool(record_id) and self._knows_record(record_id)

    def _foreign(self, server: Any, metadata: Mapping[str, str]) -> None:
        if not self._warn_once(server.id, "foreign"):
            return
        installation = metadata.get(INSTALLATION_KEY)
        logger.warning(
            "instance not ours left alone id=%s name=%r cluster=%s installation=%r ours=%s: "
            "%s", server.id, getattr(server, "name", ""), self._cluster_id, installation,
            self._installation,
            "another installation uses this cluster_id in this project; give each its own"
            if installation is not None else
            "made before installation ids and named by none of our records")
        self._on_foreign(ForeignInstance(id=_printable(server.id),
                                         name=_printable(getattr(server, "name", "")),
                                         installation=None if installation is None
                                         else _printable(installation)))

    def _warn_once(self, instance_id: str, what: str) -> bool:
        key = (str(instance_id), what)
        if key in self._warned:
            return False
        self._warned.add(key)
        return True

    def _addresses_of(self, server: Any) -> tuple[str, ...]:
        """Plain addresses only; an instance with none usable has no address yet."""
        found: list[str] = []
        for value in _address_values(getattr(server, "addresses", None)):
            address = _plain_address(value)
            if address is None:
                shown = repr(value)[:100]
                if self._warn_once(server.id, f"address {shown}"):
                    logger.warning("instance address refused id=%s address=%s: not a plain "
                                   "IPv4 or IPv6 address", server.id, shown)
            elif address not in found:
                found.append(address)
        return tuple(found)

    def _instance(self, server: Any) -> Instance:
        metadata = _metadata(server)
        fault = getattr(server, "fault", None)
        return Instance(
            id=server.id,
            name=server.name,
            status=server.status,
            created=_parse_time(server.created),
            flavor_id=self._flavor_id_of(server),
            addresses=self._addresses_of(server),
            metadata=metadata,
            tags=frozenset(getattr(server, "tags", None) or ()),
            zone=getattr(server, "OS-EXT-AZ:availability_zone", None) or None,
            fault=fault.get("message") if isinstance(fault, dict) else None,
            pool=metadata.get(POOL_KEY),
            record_id=metadata.get(RECORD_KEY))


def _find_flavor(flavors: tuple[Flavor, ...], wanted: str) -> Flavor | None:
    return next((flavor for flavor in flavors if wanted in (flavor.name, flavor.id)), None)


def _free(values: Mapping[str, int], maximum: str, used: str) -> int | None:
    limit = values.get(maximum)
    if limit is None or limit < 0:
        return None                              # -1: unlimited
    return max(0, limit - values.get(used, 0))


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _printable(value: Any, limit: int = 255) -> str:
    """Nova text for our events and messages: one line, bounded."""
    return "".join(char if char.isprintable() else "?" for char in str(value)[:limit])


def _metadata(server: Any) -> dict[str, str]:
    metadata = getattr(server, "metadata", None)
    if not isinstance(metadata, Mapping):
        return {}
    return {key: value for key, value in metadata.items()
            if isinstance(key, str) and isinstance(value, str)}


@dataclass(frozen=True)
class _Malformed:
    """A part of `addresses` not shaped as Nova's; never an address, only warned about."""

    value: Any


def _address_values(addresses: Any) -> list[Any]:
    """Every `addr` of `{network: [{"addr": ...}, ...]}`, and each part of another shape
    as _Malformed."""
    if not addresses:
        return []
    if not isinstance(addresses, Mapping):
        return [_Malformed(addresses)]
    values: list[Any] = []
    for network in addresses.values():
        if not isinstance(network, list):
            values.append(_Malformed(network))
            continue
        for entry in network:
            values.append(entry.get("addr") if isinstance(entry, Mapping) else _Malformed(entry))
    return values


def _plain_address(value: Any) -> str | None:
    """`value` in canonical form if it is a plain IPv4 or IPv6 address: no scope id, no
    whitespace, no control characters. None otherwise."""
    if not isinstance(value, str) or not _ADDRESS_TEXT.fullmatch(value):
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None
