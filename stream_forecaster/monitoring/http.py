"""The HTTP side of a process: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz``.

``/healthz`` answers 200 while the process's main loop is alive (it checks in regularly);
``/readyz`` answers 200 only when the process can do its job (for ``serve``: partitions
assigned, consuming, and a model loaded), else 503 with the reason as text.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

#: A probe: ``(ok, reason)``.
Probe = Callable[[], tuple[bool, str]]


class HttpEndpoints:
    """A small threaded HTTP server for metrics and probes.

    Args:
        host: address to listen on.
        port: port to listen on; 0 picks a free one (see :attr:`port` after :meth:`start`).
        registry: the metrics to expose.
        alive: the liveness probe.
        ready: the readiness probe.
    """

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        alive: Probe,
        ready: Probe,
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            "/healthz": lambda: _probe_response(alive),
            "/readyz": lambda: _probe_response(ready),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                if route is None:
                    status, content_type, body = 404, "text/plain", b"not found\n"
                else:
                    status, content_type, body = route()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HttpEndpoints:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http-endpoints", daemon=True
        )
        self._thread.start()
        log.info("metrics and probes on http://%s:%d/metrics", self._host(), self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _host(self) -> str:
        return str(self._server.server_address[0])


def _probe_response(probe: Probe) -> tuple[int, str, bytes]:
    ok, reason = probe()
    return (200 if ok else 503), "text/plain; charset=utf-8", (reason + "\n").encode()
