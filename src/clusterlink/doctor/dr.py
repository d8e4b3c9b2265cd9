"""`kosmosctl dr`: every source x destination pair, host or container network, in the lab.

Floaters are started in each node's namespace (`--host-network`) or in the first pod of each
node; they are driven over Unix sockets (the controller sits outside the lab's namespaces and
sends no traffic itself), each source floater gets its whole batch at once and runs it
concurrently; a floater that does not come up is reported as missing for every pair it is in,
and the run goes on. Floaters are always removed, also on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from clusterlink.lab.state import load_handle, load_plan

FLOATER = [sys.executable, "-m", "clusterlink.doctor"]  # the light entry point


@dataclass(frozen=True)
class Place:
    """Where a floater runs: a node (host network) or the first pod on a node."""

    cluster: str
    node: str
    netns: str
    ips: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.cluster}/{self.node}"


@dataclass(frozen=True)
class Pair:
    src: str  # place label
    dst: str
    target: str
    protocol: str

    def key(self) -> tuple[str, str, str, str]:
        return (self.src, self.dst, self.target, self.protocol)


@dataclass
class Result:
    pair: Pair
    ok: bool
    reason: str = ""
    rtt_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        p = self.pair
        return {"src": p.src, "dst": p.dst, "target": p.target, "protocol": p.protocol,
                "ok": self.ok, "reason": self.reason, "rttMs": self.rtt_ms}  # fmt: skip


def places(handle: str, host_network: bool) -> tuple[list[Place], list[str]]:
    """Floater places of one lab cluster, and nodes that cannot have one (no pod)."""
    data = load_handle(handle)
    cluster = load_plan(data["lab"]).cluster(data["cluster"])
    out, missing = [], []
    for node in cluster.nodes:
        if host_network:
            out.append(
                Place(
                    cluster.name, node.name, node.netns, tuple(i for i in (node.ip, node.ip6) if i)
                )
            )
            continue
        pod = next((p for p in cluster.pods if p.node == node.name), None)
        if pod is None:
            missing.append(f"{cluster.name}/{node.name}")
        else:
            out.append(
                Place(cluster.name, node.name, pod.netns, tuple(i for i in (pod.ip, pod.ip6) if i))
            )
    return out, missing


def matrix(srcs: list[Place], dsts: list[Place], protocols: list[str]) -> list[Pair]:
    """Every source x destination x target address (families both have) x protocol."""
    pairs = []
    for s in srcs:
        fams = {":" in ip for ip in s.ips}
        for d in dsts:
            for ip in d.ips:
                if (":" in ip) in fams:
                    pairs += [Pair(s.label, d.label, ip, proto) for proto in protocols]
    return pairs


@dataclass
class Floaters:
    workdir: Path
    port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def socket(self, label: str) -> str:
        return str(self.workdir / (label.replace("/", "_") + ".sock"))

    def start(self, place: Place) -> None:
        argv = [
            *FLOATER,
            "--port",
            str(self.port),
            "--netns",
            place.netns,
            "--unix",
            self.socket(place.label),
        ]
        self.procs[place.label] = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )

    async def call(
        self, label: str, method: str, url: str, body: Any, timeout: float
    ) -> tuple[int, Any]:
        return await http(self.socket(label), method, url, body, timeout)

    def ready(self, timeout: float) -> set[str]:
        """Labels whose floater answers `GET /` before the deadline."""
        deadline = time.monotonic() + timeout
        up: set[str] = set()

        def pending() -> bool:  # started, still running, not answering yet
            return any(label not in up and p.poll() is None for label, p in self.procs.items())

        while time.monotonic() < deadline and pending():
            for label, proc in self.procs.items():
                if label in up or proc.poll() is not None:
                    continue
                try:
                    if asyncio.run(http(self.socket(label), "GET", "/", None, 1.0))[0] == 200:
                        up.add(label)
                except OSError:
                    pass
            time.sleep(0.05)
        return up

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextmanager
def floaters(port: int) -> Iterator[Floaters]:
    fl = Floaters(Path(tempfile.mkdtemp(prefix="cl-dr-")), port)
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        yield fl
    finally:
        fl.stop()
        signal.signal(signal.SIGTERM, previous)


async def http(path: str, method: str, url: str, body: Any, timeout: float) -> tuple[int, Any]:
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else b""
        writer.write(
            f"{method} {url} HTTP/1.1\r\nHost: floater\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, data = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(data) if data and data[:1] in (b"{", b"[") else data.decode()


class FloaterCaller(Protocol):
    """Sends one HTTP request to the floater at a place: (status, decoded answer)."""

    async def call(
        self, label: str, method: str, url: str, body: Any, timeout: float
    ) -> tuple[int, Any]: ...


async def probe_all(
    fl: FloaterCaller,
    pairs: list[Pair],
    up: set[str],
    *,
    timeout: float,
    concurrency: int,
    port: int,
    retries: int = 1,
    done: Callable[[int], None],
) -> list[Result]:
    """Run every pair; each source floater gets its batch in chunks, `concurrency` probes of
    a source in flight at once; a failing floater fails only its own pairs."""
    results: list[Result] = []
    by_src: dict[str, list[Pair]] = {}
    for p in pairs:
        if p.src not in up:
            results.append(Result(p, False, "floater missing (source)"))
        elif p.dst not in up:
            results.append(Result(p, False, "floater missing (destination)"))
        else:
            by_src.setdefault(p.src, []).append(p)
    done(len(results))

    async def run_src(src: str, batch: list[Pair]) -> None:
        for i in range(0, len(batch), 500):
            chunk = batch[i : i + 500]
            body = {"targets": [{"ip": p.target, "protocol": p.protocol, "port": port} for p in chunk],
                    "timeout": timeout, "concurrency": concurrency, "retries": retries}  # fmt: skip
            try:
                status, answer = await fl.call(src, "POST", "/probe", body, timeout * 3 + 30)
                if status != 200:
                    raise OSError(f"floater answered {status}: {answer}")
                for p, r in zip(chunk, answer["results"], strict=True):
                    results.append(Result(p, bool(r["ok"]), r["reason"], float(r["rttMs"])))
            except (OSError, TimeoutError, KeyError, ValueError) as exc:
                results.extend(Result(p, False, f"floater error: {exc}") for p in chunk)
            done(len(chunk))

    await asyncio.gather(*(run_src(s, b) for s, b in by_src.items()))
    order = {p.key(): i for i, p in enumerate(pairs)}
    return sorted(results, key=lambda r: order[r.pair.key()])


def summary(results: list[Result], seconds: float) -> dict[str, Any]:
    failed = sum(not r.ok for r in results)
    reasons: dict[str, int] = {}
    for r in results:
        if not r.ok:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
    return {"total": len(results), "passed": len(results) - failed, "failed": failed,
            "seconds": round(seconds, 3), "reasons": reasons}  # fmt: skip


def save_resume(path: Path, results: list[Result]) -> int:
    failed = [r.pair.key() for r in results if not r.ok]
    path.write_text(json.dumps({"failed": [list(k) for k in failed]}, indent=1))
    return len(failed)


def load_resume(path: Path) -> set[tuple[str, str, str, str]]:
    data = json.loads(path.read_text())
    return {(k[0], k[1], k[2], k[3]) for k in data.get("failed", [])}


def report_html(results: list[Result], title: str) -> str:
    """A self-contained page: summary, cluster x cluster and node x node matrices (SVG)."""
    nodes = sorted({r.pair.src for r in results} | {r.pair.dst for r in results})
    clusters = sorted({n.split("/")[0] for n in nodes})
    cell: dict[tuple[str, str], list[bool]] = {}
    for r in results:
        cell.setdefault((r.pair.src, r.pair.dst), []).append(r.ok)
        cell.setdefault((r.pair.src.split("/")[0], r.pair.dst.split("/")[0]), []).append(r.ok)

    def svg(names: list[str], size: int) -> str:
        pad = 110
        w = pad + size * len(names)
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{w}" font-size="10" font-family="sans-serif">'
        ]
        for i, n in enumerate(names):
            parts.append(
                f'<text x="{pad - 4}" y="{pad + i * size + size * 0.7}" text-anchor="end">{n}</text>'
            )
            parts.append(
                f'<text transform="translate({pad + i * size + size * 0.7},{pad - 4}) rotate(-60)">{n}</text>'
            )
            for j, m in enumerate(names):
                oks = cell.get((n, m))
                colour = (
                    "#ddd"
                    if not oks
                    else "#2e9d4a"
                    if all(oks)
                    else "#d33"
                    if not any(oks)
                    else "#e8a33d"
                )
                tip = f"{n} -> {m}: " + (f"{sum(oks)}/{len(oks)} ok" if oks else "not probed")
                parts.append(
                    f'<rect x="{pad + j * size}" y="{pad + i * size}" width="{size - 1}" height="{size - 1}" fill="{colour}"><title>{tip}</title></rect>'
                )
        parts.append("</svg>")
        return "".join(parts)

    s = summary(results, 0)
    failures = "".join(
        f"<tr><td>{r.pair.src}</td><td>{r.pair.dst}</td><td>{r.pair.target}</td><td>{r.pair.protocol}</td><td>{r.reason}</td></tr>"
        for r in results if not r.ok
    )  # fmt: skip
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}</style></head><body>"
        f"<h1>{title}</h1><p>{s['passed']}/{s['total']} passed, {s['failed']} failed. "
        "Rows are sources, columns destinations; green: all probes passed, red: none, amber: some.</p>"
        f"<h2>Cluster x cluster</h2>{svg(clusters, 40)}<h2>Node x node</h2>{svg(nodes, max(6, min(24, 1200 // max(1, len(nodes)))))}"
        f"<h2>Failures</h2><table><tr><th>source</th><th>destination</th><th>target</th><th>protocol</th><th>reason</th></tr>{failures}</table>"
        "</body></html>"
    )


__all__ = [
    "Floaters",
    "Pair",
    "Place",
    "Result",
    "floaters",
    "matrix",
    "places",
    "probe_all",
    "report_html",
]
