"""A simulated Doris BE web server (``webserver_port``, 8040) on 127.0.0.1, for tests and the demo.

It answers the two endpoints a user reaches from outside the cluster:

* ``GET /api/health`` -> ``{"status": "OK","msg": "To Be Added"}`` (the BE health action);
* ``GET /api/_load_error_log?file=<path>`` -> the rows a load rejected, as text, for the files added
  with :meth:`BeWebServer.add_error_log` (a stream load's ``ErrorURL`` points here); 404 otherwise;
* ``GET /metrics`` -> the BE's metrics (Prometheus text) from :attr:`BeWebServer.metrics` (for example
  ``lambda: DorisMetrics(cluster).be_text(host, 9050)`` of :mod:`doris_sim.metrics`); 503 while it
  returns None (the BE is down), 404 when unset.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, urlsplit

HEALTH_BODY = '{"status": "OK","msg": "To Be Added"}'


def sample_error_log(rows: int = 2) -> str:
    """A plausible ``_load_error_log`` body: one line per rejected row, as Doris writes them."""
    lines = []
    for i in range(rows):
        lines.append(
            f"Reason: column(k1) values is null while columns is not nullable. src line [{i + 1}\\N\\tabc];"
        )
    return "\n".join(lines) + "\n"


class BeWebServer:
    """``http.server`` in a background thread; :attr:`port` is the bound port once started."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self.error_logs: dict[str, str] = {}
        self.requests: list[str] = []
        self.metrics: Callable[[], str | None] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("not started")
        return int(self._server.server_address[1])

    def add_error_log(self, file: str, body: str | None = None) -> str:
        """Serve ``body`` (default :func:`sample_error_log`) for ``file``; returns the URL path + query."""
        self.error_logs[file] = body if body is not None else sample_error_log()
        return f"/api/_load_error_log?file={file}"

    def start(self) -> Self:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "Doris-BE-sim"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                return

            def _send(self, code: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                owner.requests.append(self.path)
                url = urlsplit(self.path)
                if url.path == "/api/health":
                    self._send(200, HEALTH_BODY, "application/json")
                    return
                if url.path == "/api/_load_error_log":
                    files = parse_qs(url.query).get("file", [])
                    if files and files[0] in owner.error_logs:
                        self._send(200, owner.error_logs[files[0]])
                    else:
                        self._send(404, f"error log file not found: {files[0] if files else ''}\n")
                    return
                if url.path == "/metrics" and owner.metrics is not None:
                    text = owner.metrics()
                    if text is None:
                        self._send(503, "unavailable\n")
                    else:
                        self._send(200, text, "text/plain; version=0.0.4; charset=utf-8")
                    return
                self._send(404, "Not Found\n")

        self._server = ThreadingHTTPServer((self.host, self._requested_port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="be-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
