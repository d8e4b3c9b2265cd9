"""The floater: a small probe server placed in a node's host network or in a pod's network.

HTTP/1.1 on one port, both families:
- `GET /` answers `OK` (the target of TCP probes, and a liveness check);
- `POST /probe` with `{"targets": [{"ip", "protocol": "icmp"|"tcp", "port"}], "timeout": s,
  "concurrency": n, "retries": n}` runs the probes (many at once, each with its timeout) and answers
  `{"results": [{"ip", "protocol", "port", "ok", "reason", "rttMs"}]}`.
Inputs are validated; no shell is involved anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import signal
import sys
import time
from typing import Any

from clusterlink.agent import netns
from clusterlink.doctor.icmp import Pinger
from clusterlink.inputs import InputError, decode, load_json

MAX_TARGETS = 100_000
MAX_BODY = 16 << 20


class BadRequest(ValueError):
    pass


def parse_request(body: Any) -> tuple[list[dict[str, Any]], float, int, int]:
    if not isinstance(body, dict):
        raise BadRequest("the body: a JSON object")
    targets = body.get("targets")
    if not isinstance(targets, list) or len(targets) > MAX_TARGETS:
        raise BadRequest(f"targets: a list of at most {MAX_TARGETS}")
    clean = []
    for i, t in enumerate(targets):
        if not isinstance(t, dict):
            raise BadRequest(f"targets[{i}]: an object")
        try:
            ip = str(ipaddress.ip_address(t.get("ip", "")))
        except ValueError:
            raise BadRequest(f"targets[{i}].ip: not an IP address") from None
        protocol = t.get("protocol", "icmp")
        if protocol not in ("icmp", "tcp"):
            raise BadRequest(f"targets[{i}].protocol: icmp or tcp")
        port = t.get("port", 8889)
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise BadRequest(f"targets[{i}].port: 1-65535")
        clean.append({"ip": ip, "protocol": protocol, "port": port})
    timeout = body.get("timeout", 2.0)
    concurrency = body.get("concurrency", 256)
    retries = body.get("retries", 1)
    if not isinstance(retries, int) or not 0 <= retries <= 5:
        raise BadRequest("retries: 0-5")
    if not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
        raise BadRequest("timeout: seconds, 0-60")
    if not isinstance(concurrency, int) or not 1 <= concurrency <= 4096:
        raise BadRequest("concurrency: 1-4096")
    return clean, float(timeout), concurrency, retries


async def tcp_probe(ip: str, port: int, timeout: float) -> tuple[bool, str, float]:
    start = time.monotonic()
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
    except TimeoutError:
        return False, "timeout", 0.0
    except ConnectionRefusedError:
        return False, "refused", 0.0
    except OSError as exc:
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return False, "unreachable", 0.0
        return False, f"error: {exc.strerror}", 0.0
    rtt = (time.monotonic() - start) * 1000
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, "", rtt


async def run_probes(
    targets: list[dict[str, Any]], timeout: float, concurrency: int, retries: int = 1
) -> list[dict[str, Any]]:
    """Every target, `concurrency` at once; a probe that timed out is tried again up to
    `retries` times (a lost packet is not a broken path); `attempts` says how many it took."""
    pinger = Pinger()
    gate = asyncio.Semaphore(concurrency)

    async def one(t: dict[str, Any]) -> dict[str, Any]:
        attempts = 0
        while True:
            attempts += 1
            async with gate:
                if t["protocol"] == "icmp":
                    ok, reason, rtt = await pinger.ping(t["ip"], timeout)
                else:
                    ok, reason, rtt = await tcp_probe(t["ip"], t["port"], timeout)
            if ok or reason != "timeout" or attempts > retries:
                break
        return {**t, "ok": ok, "reason": reason, "rttMs": round(rtt, 3), "attempts": attempts}

    try:
        return list(await asyncio.gather(*(one(t) for t in targets)))
    finally:
        pinger.close()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await reader.readline()
        method, path, _ = request.decode("latin-1").split(" ", 2)
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length > MAX_BODY:
            raise BadRequest("body too large")
        body = await reader.readexactly(length) if length else b""
        if method == "GET" and path == "/":
            status, payload, ctype = 200, b"OK", "text/plain"
        elif method == "POST" and path == "/probe":
            try:
                request_body = load_json(decode(body or b"{}", "body"), "body")
                targets, timeout, concurrency, retries = parse_request(request_body)
                results = await run_probes(targets, timeout, concurrency, retries)
                status, payload = 200, json.dumps({"results": results}).encode()
            except (BadRequest, InputError) as exc:  # deep or repeated-key JSON too
                status, payload = 400, json.dumps({"error": str(exc)}).encode()
            ctype = "application/json"
        else:
            status, payload, ctype = 404, b"not found", "text/plain"
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(payload)}\r\n"
            f"Connection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
    except (ValueError, ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def serve(port: int, unix_path: str | None = None) -> None:
    """TCP on every address of the namespace (both families: the probe target), and
    optionally a Unix socket: how a controller outside the namespace drives the floater."""
    servers = [await asyncio.start_server(_handle, host=None, port=port, reuse_address=True)]
    if unix_path:
        servers.append(await asyncio.start_unix_server(_handle, path=unix_path))
    await asyncio.gather(*(s.serve_forever() for s in servers))


def run(port: int, netns_name: str | None = None, unix_path: str | None = None) -> int:
    """Serve in namespace `netns_name` until SIGTERM (0); 2 when the namespace or a port
    cannot be had. What `python -m clusterlink.doctor` runs, and what a floater forked by
    `kosmosctl dr` in the lab runs (`doctor.lab`)."""
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with netns.entered(netns_name):
            asyncio.run(serve(port, unix_path))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"floater: {exc}", file=sys.stderr)
        return 2
    return 0
