"""What FakeNova hands out and what it checks, shaped as python-novaclient and Nova shape
them: resources with attribute access, the JSON-schema checks of a create body, the
views of flavors, embedded flavors and links, and the MAC address of a port.
"""
from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING, Any, Callable, Mapping

from novaclient import api_versions
from novaclient import exceptions as nova_exc

from dtserver.model import Flavor

if TYPE_CHECKING:
    from dtserver.fakes.nova import FakeServerManager

_MAX_USER_DATA = 65535   # bytes once base64 encoded
_MAX_TAGS = 50
_TAG = re.compile(r"[^,/]{1,60}")
_EMBEDDED_FLAVOR = api_versions.APIVersion("2.47")


class FakeResource:
    """Attribute access over a response body, as novaclient.base.Resource gives it."""

    def __init__(self, info: Mapping[str, Any]) -> None:
        self._info = dict(info)
        self.__dict__.update(self._info)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._info)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._info.get('id')}>"


class FakeServer(FakeResource):
    def __init__(self, info: Mapping[str, Any], manager: FakeServerManager) -> None:
        super().__init__(info)
        self.manager = manager

    def delete(self) -> None:
        self.manager.delete(self)


def getid(value: Any) -> Any:
    return getattr(value, "id", value)


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def tag_filter(value: Any, accept: Callable[[set[str]], bool]) -> bool:
    if not value:
        return True
    return accept({tag for tag in as_text(value).split(",") if tag})


def encode_user_data(userdata: Any) -> str | None:
    """novaclient base64-encodes str, bytes or a file's content before sending."""
    if userdata is None:
        return None
    data = userdata.read() if hasattr(userdata, "read") else userdata
    raw = data.encode() if isinstance(data, str) else bytes(data)
    return base64.b64encode(raw).decode()


def validate_server_fields(name: str, metadata: Mapping[str, str], tags: list[str],
                           user_data: str | None) -> None:
    """The JSON-schema checks Nova runs on a create body (messages shortened)."""
    if not name:
        raise nova_exc.BadRequest(
            400, "Invalid input for field/attribute name. Value: . '' is too short")
    if len(name) > 255:
        raise nova_exc.BadRequest(400, "Invalid input for field/attribute name. Value is too long")
    for key, value in metadata.items():
        if not 1 <= len(key) <= 255 or not isinstance(value, str) or len(value) > 255:
            raise nova_exc.BadRequest(
                400, f"Invalid input for field/attribute metadata. Value: {key!r}")
    if len(tags) > _MAX_TAGS or not all(_TAG.fullmatch(tag) for tag in tags):
        raise nova_exc.BadRequest(400, f"Invalid input for field/attribute tags. Value: {tags}")
    if user_data is not None and len(user_data) > _MAX_USER_DATA:
        raise nova_exc.BadRequest(
            400, "Invalid input for field/attribute user_data. Value is too long")


def server_flavor(flavor: Flavor, version: api_versions.APIVersion) -> dict[str, Any]:
    if version >= _EMBEDDED_FLAVOR:
        # From 2.47 Nova embeds the flavor and no longer says its id.
        return {"vcpus": flavor.cores, "ram": flavor.mem_mb, "disk": 10, "ephemeral": 0,
                "swap": 0, "original_name": flavor.name, "extra_specs": {}}
    return {"id": flavor.id, "links": resource_links("flavors", str(flavor.id))}


def flavor_view(flavor: Flavor) -> FakeResource:
    return FakeResource({
        "id": flavor.id or flavor.name, "name": flavor.name, "vcpus": flavor.cores,
        "ram": flavor.mem_mb, "disk": 10, "swap": "", "OS-FLV-EXT-DATA:ephemeral": 0,
        "OS-FLV-DISABLED:disabled": False, "os-flavor-access:is_public": True,
        "rxtx_factor": 1.0, "description": None, "extra_specs": {},
        "links": resource_links("flavors", flavor.id or flavor.name)})


def resource_links(collection: str, item_id: str) -> list[dict[str, str]]:
    return [{"rel": "self", "href": f"http://127.0.0.1:8774/v2.1/{collection}/{item_id}"},
            {"rel": "bookmark", "href": f"http://127.0.0.1:8774/{collection}/{item_id}"}]


def mac_address(slot: int) -> str:
    return f"fa:16:3e:{(slot >> 16) & 0xff:02x}:{(slot >> 8) & 0xff:02x}:{slot & 0xff:02x}"
