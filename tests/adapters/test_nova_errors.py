"""classify() and fault_kind() over real novaclient and keystoneauth1 exception instances."""
from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1 import token_endpoint
from novaclient import client as nova_client
from novaclient import exceptions as nova_exc

from dtserver.cloud import CloudError
from dtserver.cloud.nova import NovaCloud, classify, fault_kind
from dtserver.fakes.nova import NO_VALID_HOST
from dtserver.model import ErrorKind

QUOTA_MESSAGE = "Quota exceeded for cores: Requested 2, but already used 2 of 3 cores"


def nova_error(status: int, message: str, *, request_id: str | None = "req-1") -> Exception:
    """What novaclient raises for an HTTP error response, built by novaclient itself."""
    response = SimpleNamespace(status_code=status,
                               headers={"x-compute-request-id": request_id} if request_id else {})
    body = {"error": {"code": status, "message": message}}
    return nova_exc.from_response(response, body, "http://nova:8774/v2.1/servers", "POST")


@pytest.mark.parametrize(("status", "message", "kind"), [
    (403, QUOTA_MESSAGE, ErrorKind.CAPACITY),
    (403, "Policy doesn't allow os_compute_api:servers:create to be performed.", ErrorKind.AUTH),
    (401, "The request you have made requires authentication.", ErrorKind.AUTH),
    (404, "Instance 9e7c could not be found.", ErrorKind.NOT_FOUND),
    (400, "Invalid flavorRef provided.", ErrorKind.BAD_REQUEST),
    (409, "Flavor with name as.small already exists.", ErrorKind.CONFLICT),
    (500, "Unexpected API Error.", ErrorKind.TRANSIENT),
    (502, "Bad Gateway", ErrorKind.TRANSIENT),
    (503, "Service Unavailable", ErrorKind.TRANSIENT),
    (504, "Gateway Timeout", ErrorKind.TRANSIENT),
    (429, "Rate limit", ErrorKind.TRANSIENT),
    (413, "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances",
     ErrorKind.CAPACITY),
    (413, "Over limit", ErrorKind.TRANSIENT),
    (501, "Not Implemented", ErrorKind.OTHER),
    (405, "Method Not Allowed", ErrorKind.OTHER),
])
def test_nova_http_errors_are_classified_by_status(status, message, kind):
    error = classify(nova_error(status, message))

    assert isinstance(error, CloudError)
    assert (error.kind, error.status) == (kind, status)


def test_quota_refusal_keeps_the_status_and_the_message_naming_the_resource():
    error = classify(nova_error(403, QUOTA_MESSAGE))

    assert error.status == 403
    assert QUOTA_MESSAGE in str(error)
    assert "Forbidden" in str(error)
    assert "req-1" in str(error)


def test_quota_wording_in_a_bad_request_is_still_a_bad_request():
    error = classify(nova_exc.BadRequest(400, "Quota exceeded is not a valid tag"))

    assert error.kind == ErrorKind.BAD_REQUEST


def test_a_generic_client_exception_is_classified_by_its_code():
    assert classify(nova_exc.ClientException(503, "Service Unavailable")).kind == \
        ErrorKind.TRANSIENT
    assert classify(nova_exc.ClientException(403, QUOTA_MESSAGE)).kind == ErrorKind.CAPACITY


@pytest.mark.parametrize("exc", [
    ks_exc.ConnectFailure("Unable to establish connection to http://nova:8774/v2.1"),
    ks_exc.ConnectTimeout("Request to http://nova:8774/v2.1 timed out"),
    ks_exc.UnknownConnectionError("connection reset", ConnectionResetError()),
    ks_exc.ServiceUnavailable(),
    ks_exc.GatewayTimeout(),
    ks_exc.RequestTimeout(),
    TimeoutError("timed out"),
    ConnectionResetError("reset by peer"),
])
def test_connection_problems_and_timeouts_are_transient(exc):
    assert classify(exc).kind == ErrorKind.TRANSIENT


@pytest.mark.parametrize("exc", [
    ks_exc.Unauthorized(),
    ks_exc.Forbidden(),
    ks_exc.AuthorizationFailure("token expired"),
    ks_exc.MissingAuthPlugin("no auth plugin"),
])
def test_keystone_refusals_are_auth_errors(exc):
    assert classify(exc).kind == ErrorKind.AUTH


@pytest.mark.parametrize("exc", [
    ks_exc.SSLError("certificate verify failed"),
    ks_exc.EndpointNotFound("compute"),
    ValueError("nics are required after microversion 2.36"),
])
def test_problems_that_retrying_does_not_fix_are_other(exc):
    error = classify(exc)

    assert error.kind == ErrorKind.OTHER
    assert error.status is None


def test_keystone_http_errors_keep_their_status():
    assert classify(ks_exc.ServiceUnavailable()).status == 503
    assert classify(ks_exc.Unauthorized()).status == 401


def test_message_is_short_and_leaves_out_url_and_details():
    exc = nova_exc.ClientException(500, "x" * 5000, details="Traceback: secret-ish internals",
                                   url="http://nova:8774/v2.1/servers?token=abc")

    message = str(classify(exc))

    assert len(message) < 300
    assert "token=abc" not in message
    assert "Traceback" not in message


@pytest.mark.parametrize(("fault", "kind"), [
    (NO_VALID_HOST, ErrorKind.CAPACITY),
    ("No valid host was found. ", ErrorKind.CAPACITY),
    ("Exceeded maximum number of retries. Exhausted all hosts available for retrying build "
     "failures for instance 9e7c.", ErrorKind.CAPACITY),
    ("Build of instance 9e7c aborted: Failed to allocate the network(s), not rescheduling.",
     ErrorKind.BOOT),
    ("", ErrorKind.BOOT),
    (None, ErrorKind.BOOT),
])
def test_fault_kind_tells_capacity_from_boot_failures(fault, kind):
    assert fault_kind(fault) == kind


def test_an_unreachable_nova_through_the_real_client_is_a_transient_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    session = ks_session.Session(auth=token_endpoint.Token(
        f"http://127.0.0.1:{port}/v2.1", "demo:project"), timeout=2)
    cloud = NovaCloud(nova_client.Client("2.96", session=session), cluster_id="c1",
                      installation="0123456789abcdef0123456789abcdef")

    with pytest.raises(CloudError) as caught:
        cloud.owned_instances()

    assert caught.value.kind == ErrorKind.TRANSIENT
    assert isinstance(caught.value.__cause__, ks_exc.ConnectFailure)
