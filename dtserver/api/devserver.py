"""Serve the app from a thread of this process: the demo and tests. Production uses gunicorn."""
from __future__ import annotations

import errno
import threading

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server


class ThreadServer:
    def __init__(self, server: BaseWSGIServer) -> None:
        self._server = server
        self.port = server.server_port
        self._thread = threading.Thread(target=server.serve_forever, name="api", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()


def serve_in_thread(app: Flask, host: str, port: int) -> ThreadServer:
    """Serve on `port`, or on a free port when it is taken (the port is in `.port`)."""
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        server = make_server(host, 0, app, threaded=True)
    return ThreadServer(server)
