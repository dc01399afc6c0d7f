"""Hostile server payloads through the real python-novaclient and keystoneauth1 stack: a
loopback HTTP stub answers as a compromised or buggy Nova might, and NovaCloud must turn
nothing of it into an address that could reach the hosts file or TORQUE."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1 import token_endpoint
from novaclient import client as nova_client

from dtserver.cloud.nova import NovaCloud

INSTALLATION = "0123456789abcdef0123456789abcdef"
SERVER_ID = "9e7c0d39-0a51-4a3b-9d5c-0cbbd0f1e001"


def server_body(addresses: Any) -> dict[str, Any]:
    return {"id": SERVER_ID, "name": "dt-c1-1", "status": "ACTIVE",
            "created": "2024-05-01T12:00:00Z", "flavor": {"id": "2"},
            "metadata": {"dynamictorque:cluster": "c1",
                         "dynamictorque:installation": INSTALLATION,
                         "dynamictorque:pool": "default", "dynamictorque:record": "rec-1"},
            "tags": ["dynamictorque", "dt-cluster-c1"], "addresses": addresses}


class StubNova(ThreadingHTTPServer):
    """GET /v2.1/servers/detail answers `servers` on the first page, nothing after it."""

    servers: list[dict[str, Any]] = []


class Handler(BaseHTTPRequestHandler):
    server: StubNova

    def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
        url = urlsplit(self.path)
        if url.path != "/v2.1/servers/detail":
            self.send_error(404)
            return
        page = [] if "marker" in parse_qs(url.query) else self.server.servers
        body = json.dumps({"servers": page}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[StubNova]:
    server = StubNova(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def cloud_on(stub: StubNova) -> NovaCloud:
    host, port = stub.server_address[:2]
    session = ks_session.Session(auth=token_endpoint.Token(
        f"http://{host}:{port}/v2.1", "demo:project"), timeout=5)
    return NovaCloud(nova_client.Client("2.96", session=session), cluster_id="c1",
                     installation=INSTALLATION)


@pytest.mark.parametrize("addresses", [
    {"private": [{"version": 6, "addr": "fe80::1%eth0\n1.2.3.4 evil"}]},
    {"private": [{"version": 4, "addr": "10.0.0.5\n10.6.6.6 head"}]},
    {"private": [{"version": 4, "addr": ["10.0.0.5"]}]},
    {"private": ["10.0.0.5"]},
    {"private": "10.0.0.5"},
    ["10.0.0.5"],
    "10.0.0.5",
    None,
], ids=["scope-id-newline", "newline", "list-addr", "bare-entry", "bare-network", "list",
        "string", "null"])
def test_a_hostile_addresses_payload_gives_no_usable_address(stub, addresses):
    stub.servers = [server_body(addresses)]

    (instance,) = cloud_on(stub).owned_instances()

    assert instance.id == SERVER_ID
    assert instance.addresses == ()


def test_a_plain_address_beside_a_hostile_one_is_kept(stub):
    stub.servers = [server_body({"private": [
        {"version": 6, "addr": "fe80::1%eth0\n1.2.3.4 evil"},
        {"version": 4, "addr": "169.254.80.100"}]})]

    (instance,) = cloud_on(stub).owned_instances()

    assert instance.addresses == ("169.254.80.100",)
