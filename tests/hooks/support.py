"""Run the submit filter as qsub does, and the loopback servers it talks to."""
from __future__ import annotations

import http.server
import importlib.machinery
import importlib.util
import json
import os
import pwd
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

HOOKS = Path(__file__).resolve().parents[2] / "hooks"
FILTER = HOOKS / "torque_submitfilter"
PBS_HOOK = HOOKS / "pbs_queuejob_hook.py"
# The filter and the hook cut a hung service at their own deadline (about 1 s; bench/
# bench_filter.py measures it). A run that waited for the service would never end: this
# bound tells the two apart and holds while other processes keep the cores busy.
CUT_SHORT_SECONDS = 15.0


def load_filter() -> types.ModuleType:
    """The submit filter as a module, for its functions (it is a script without .py)."""
    loader = importlib.machinery.SourceFileLoader("torque_submitfilter", str(FILTER))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module

# The job script of the reference captures (tests/data/torque/20_submitfilter.txt).
FJOB = b"#!/bin/bash\n#PBS -N fjob\n#PBS -l walltime=00:10:00\necho hello from fjob\nsleep 600\n"


@dataclass(frozen=True)
class FilterRun:
    status: int
    stdout: bytes
    stderr: bytes
    elapsed: float


def qsub_command(args: Sequence[str], *, interactive: bool = False) -> str:
    """The `sh -c` line TORQUE 6.1.3's qsub builds (tests/data/torque/21_filter_logs_all.txt).

    Batch jobs: each argument in single quotes, unescaped, except the one after -C, which
    is backslash-escaped; stdout goes to a temporary file. `qsub -I` uses double quotes
    and feeds stdin from a file instead.
    """
    words = []
    for index, arg in enumerate(args):
        if index > 0 and args[index - 1] == "-C":
            words.append(re.sub(r"([^A-Za-z0-9])", r"\\\1", arg))
        else:
            words.append(f'"{arg}"' if interactive else f"'{arg}'")
    return " ".join([str(FILTER), *words])


def run_filter(args: Sequence[str], script: bytes, *, config: Path | None, cwd: Path,
               interactive: bool = False, timeout: float = 10,
               environ: Mapping[str, str] | None = None) -> FilterRun:
    """Run the filter through /bin/sh with a clean environment (plus `environ`); its stdout
    goes to a file. A filter still running after `timeout` seconds is a hang, as qsub would
    see it: its process group is killed and the test fails."""
    out = cwd / "qsub.out"
    command = f"{qsub_command(args, interactive=interactive)} >{out}"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8", **(environ or {})}
    if config is not None:
        env["DT_FILTER_CONFIG"] = str(config)
    started = time.monotonic()
    # A session of its own: sh may fork the filter rather than exec it, and a hung filter
    # must not outlive the test.
    process = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, cwd=cwd,
                               start_new_session=True)
    try:
        _, stderr = process.communicate(script, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(f"the filter was still running after {timeout} s: "
                             "qsub would hang") from None
    elapsed = time.monotonic() - started
    return FilterRun(process.returncode, out.read_bytes(), stderr, elapsed)


def write_config(directory: Path, **settings: Any) -> Path:
    """A filter.conf with a debug log next to it; keyword arguments become `key = value`."""
    settings.setdefault("log_file", directory / "filter.log")
    path = directory / "filter.conf"
    path.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()),
                    encoding="utf-8")
    return path


def filter_log(directory: Path) -> str:
    path = directory / "filter.log"
    return path.read_text(encoding="utf-8") if path.exists() else ""


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


@dataclass
class RecordingServer:
    """A loopback HTTP(S) server that records every POST and answers with `status`, after
    `delay` seconds; `answer` replaces the JSON body of a successful answer."""

    status: int = 202
    tls: Certificate | None = None
    answer: bytes | None = None
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                owner.received.append(Received(self.path, dict(self.headers), body))
                answer = json.dumps({"error": {"code": "x", "message": "refused"}}
                                    if owner.status >= 400
                                    else {"id": len(owner.received)}).encode()
                if owner.answer is not None and owner.status < 400:
                    answer = owner.answer
                time.sleep(owner.delay)
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        scheme = "http"
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls.cert, self.tls.key)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_port}"
        # A short poll interval keeps shutdown() (each test's teardown) quick.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class HungServer:
    """Accepts connections and never answers, as a wedged service would."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._listener.settimeout(0.05)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _take(self, connection: socket.socket) -> None:
        self._held.append(connection)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._take(connection)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for connection in self._held:
            connection.close()
        self._listener.close()


class ProxyTrap(HungServer):
    """A loopback listener standing in for an HTTP proxy: it records the first bytes of
    every connection made to it and answers nothing, so a request sent through it fails."""

    def __init__(self) -> None:
        self._requests: list[bytes] = []      # before the accepting thread starts
        super().__init__()

    def _take(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(2)
            try:
                self._requests.append(connection.recv(4096))
            except OSError:
                self._requests.append(b"")

    def requests(self) -> list[bytes]:
        """What each connection sent, including connections still in the accept queue."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.setblocking(False)
        while True:
            try:
                connection, _ = self._listener.accept()
            except BlockingIOError:
                return list(self._requests)
            self._take(connection)


def proxy_environment(proxy_url: str) -> dict[str, str]:
    """Every variable through which urllib, requests or curl would pick a proxy."""
    names = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
    return {name: proxy_url for name in names}


def self_signed_certificate(directory: Path) -> Certificate:
    """A certificate for 127.0.0.1, made by the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return Certificate(cert, key)


def closed_port_url() -> str:
    """A loopback URL nobody listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def current_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name
