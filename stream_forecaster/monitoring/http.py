"""The HTTP side of a process: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz``.

``/healthz`` answers 200 while the process's main loop is alive (it checks in regularly);
``/readyz`` answers 200 only when the process can do its job (for ``serve``: partitions
assigned, consuming, and a model loaded), else 503 with the reason as text.

The server is one event loop on one thread, bounded in every way a client could stretch
it: a request head must arrive within ``request_timeout_s`` and fit in
:data:`MAX_HEAD_BYTES`; at most ``max_connections`` are open, and one more closes the
connection that has waited longest for its request. A flood of connections costs a file
descriptor each for a few seconds, never a thread, so it cannot starve the Kafka client's
heartbeat, and a probe always gets in.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from stream_forecaster.settings import ConfigError

log = logging.getLogger(__name__)

#: A probe: ``(ok, reason)``.
Probe = Callable[[], tuple[bool, str]]

#: The largest request head (request line and headers) read.
MAX_HEAD_BYTES: Final = 8192
_REASONS: Final = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HttpEndpoints:
    """A small bounded HTTP server for metrics and probes.

    Args:
        host: address to listen on.
        port: port to listen on; 0 picks a free one (see :attr:`port`).
        registry: the metrics to expose.
        alive: the liveness probe.
        ready: the readiness probe.
        max_connections: connections open at once.
        request_timeout_s: the time a client has to send its request head, and to take
            the answer.

    Raises:
        ConfigError: the address cannot be listened on (in use, or not this host's).
    """

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        alive: Probe,
        ready: Probe,
        *,
        max_connections: int = 256,
        request_timeout_s: float = 5.0,
    ) -> None:
        self._routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            "/healthz": lambda: _probe_response(alive),
            "/readyz": lambda: _probe_response(ready),
        }
        self.max_connections = max_connections
        self.request_timeout_s = request_timeout_s
        try:
            self._socket = socket.create_server((host, port), backlog=128)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port} (SF_METRICS__HOST, SF_METRICS__PORT): "
                f"{os.strerror(exc.errno) if exc.errno else exc}"
            ) from None
        self._socket.setblocking(False)
        # Connections still waiting for their request head, oldest first.
        self._waiting: OrderedDict[asyncio.StreamWriter, None] = OrderedDict()
        self._open = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def start(self) -> HttpEndpoints:
        self._thread = threading.Thread(target=self._run, name="http-endpoints", daemon=True)
        self._thread.start()
        self._started.wait(timeout=10)
        log.info("metrics and probes on http://%s:%d/metrics", self._host(), self.port)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        else:
            self._socket.close()

    def _host(self) -> str:
        return str(self._socket.getsockname()[0])

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(
                asyncio.start_server(self._serve, sock=self._socket, limit=MAX_HEAD_BYTES)
            )
            self._started.set()
            loop.run_forever()
            server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        finally:
            self._started.set()
            loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: one request, one answer, closed."""
        if self._open >= self.max_connections and self._waiting:
            oldest, _ = self._waiting.popitem(last=False)
            oldest.close()  # makes room: its reader sees the connection end
        self._open += 1
        self._waiting[writer] = None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.request_timeout_s)
            self._waiting.pop(writer, None)
            writer.write(self._answer(head))
            await asyncio.wait_for(writer.drain(), self.request_timeout_s)
        except (
            TimeoutError,
            asyncio.IncompleteReadError,  # closed (or made room for another) before its head
            asyncio.LimitOverrunError,  # a head over MAX_HEAD_BYTES
            ConnectionError,
        ) as exc:
            log.debug("http: connection closed without an answer: %r", exc)
        finally:
            self._waiting.pop(writer, None)
            self._open -= 1
            if writer.transport.get_write_buffer_size():  # a client that does not read
                writer.transport.abort()
            else:
                writer.close()

    def _answer(self, head: bytes) -> bytes:
        method, _, rest = head.partition(b" ")
        path = rest.partition(b" ")[0].split(b"?", 1)[0].decode("latin-1")
        route = self._routes.get(path)
        if method not in (b"GET", b"HEAD"):
            status, content_type, body = 405, "text/plain", b"only GET and HEAD\n"
        elif route is None:
            status, content_type, body = 404, "text/plain", b"not found\n"
        else:
            try:
                status, content_type, body = route()
            except Exception:  # a probe or a collector failed: the server goes on
                log.warning("http: %s failed", path, exc_info=True)
                status, content_type, body = 500, "text/plain", b"internal error\n"
        log.debug("http: %s %s -> %d", method.decode("latin-1"), path, status)
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, '')}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        start = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return start if method == b"HEAD" else start + body


def _probe_response(probe: Probe) -> tuple[int, str, bytes]:
    ok, reason = probe()
    return (200 if ok else 503), "text/plain; charset=utf-8", (reason + "\n").encode()
