"""`/metrics`, `/healthz` and `/readyz` on one small HTTP server per component process.

Every component builds its own `CollectorRegistry` (no module-level state) and passes it here
with two checks: `healthy` (the loop is not stuck: a restart would help) and `ready` (the
component does its job now: send traffic, count it in). Each answers `(ok, why)`; the server
returns 200 or 503 with `why` as the body.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from clusterlink.errors import BadInput

log = logging.getLogger("clusterlink.telemetry")

Check = Callable[[], tuple[bool, str]]


def parse_addr(addr: str) -> tuple[str, int] | None:
    """`--metrics-addr`: `HOST:PORT`, `:PORT` (every IPv4 address), `[V6]:PORT`, or `0`
    (disabled: None). BadInput names what is wrong."""
    if addr.strip() == "0":
        return None
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(f"--metrics-addr {addr!r}: want HOST:PORT, :PORT or 0 (disabled)")
    host = host.removeprefix("[").removesuffix("]")
    return host or "0.0.0.0", int(port)


class Heartbeat:
    """Liveness of a loop: it beats once per iteration; stuck when no beat for `stall` s."""

    def __init__(self, stall: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall, self.clock = stall, clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self.clock()

    def __call__(self) -> tuple[bool, str]:
        age = self.clock() - self._last
        if age > self.stall:
            return False, f"loop stuck: no iteration for {age:.0f} s (limit {self.stall:.0f} s)"
        return True, "ok"


class ComponentMetrics:
    """What every component's metrics object shares: its registry, its loop's heartbeat, and
    its readiness (`_ready`, set by the component's own hooks; not ready until the first)."""

    def __init__(self, registry: CollectorRegistry | None, stall: float, first: str) -> None:
        self.registry = registry or CollectorRegistry()
        self.heartbeat = Heartbeat(stall)
        self._ready = (False, first)

    def ready(self) -> tuple[bool, str]:
        return self._ready


class Exported(Protocol):
    """What a component's metrics object offers the server."""

    registry: CollectorRegistry
    heartbeat: Heartbeat

    def ready(self) -> tuple[bool, str]: ...


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
            return
        check = {"/healthz": self.server.healthy, "/readyz": self.server.ready}.get(path)
        if check is None:
            self._send(404, b"not found: try /metrics, /healthz or /readyz\n")
            return
        try:
            ok, why = check()
        except Exception as exc:  # a check must not kill the server thread
            ok, why = False, f"check failed: {exc}"
        self._send(200 if ok else 503, f"{why}\n".encode())

    def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # probes every few seconds would flood the component's log


class MetricsServer(ThreadingHTTPServer):
    """Sleeps until a connection comes or `stop` is called: socketserver's `serve_forever`
    wakes every `poll_interval` to look for a shutdown request (twice a second in each of a
    large lab's ~160 component processes, all of it idle CPU)."""

    daemon_threads = True

    def __init__(
        self, addr: tuple[str, int], registry: CollectorRegistry, healthy: Check, ready: Check
    ) -> None:
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        try:
            super().__init__(addr, _Handler)
        except OSError as exc:
            raise BadInput(f"--metrics-addr {addr[0]}:{addr[1]}: {exc.strerror}") from None
        self.registry, self.healthy, self.ready = registry, healthy, ready
        self._stop_r, self._stop_w = socket.socketpair()  # `stop` writes; the loop wakes
        self._thread = threading.Thread(target=self._serve, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", *self.server_address[:2])
        return self

    def _serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.socket, selectors.EVENT_READ)
            sel.register(self._stop_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():  # no timeout: nothing to do until one of these
                    if key.fileobj is self._stop_r:
                        return
                    self.handle_request()  # ready: accepts at once, a thread per request

    def stop(self) -> None:
        self._stop_w.send(b"x")
        if self._thread.is_alive():
            self._thread.join()
        self.server_close()
        self._stop_r.close()
        self._stop_w.close()


def serve(
    addr: str, registry: CollectorRegistry, healthy: Check, ready: Check
) -> MetricsServer | None:
    """Start serving on `addr` (a `--metrics-addr`), or None when it is `0`."""
    where = parse_addr(addr)
    if where is None:
        return None
    return MetricsServer(where, registry, healthy, ready).start()
