"""`kosmosctl dr` in the lab: floaters in each node's namespace (`--host-network`) or in the
first pod of each node, driven over Unix sockets (the controller sits outside the lab's
namespaces and sends no traffic itself); always removed, also on Ctrl-C. And `analysis`'s
reading of a lab node's kernel state."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterlink.agent.drift import drift
from clusterlink.agent.firewall import FirewallError
from clusterlink.agent.iptables import IptablesFirewall
from clusterlink.agent.kernel import KernelError
from clusterlink.agent.linux import LinuxKernel
from clusterlink.api.cluster import Cluster
from clusterlink.api.nodeconfig import NodeConfigSpec
from clusterlink.doctor.probe import FloaterGone, Place
from clusterlink.lab.state import joined_as, load_handle, load_plan, state_dir
from clusterlink.lab.topology import ClusterPlan
from clusterlink.store.base import StoreError
from clusterlink.store.sqlite import SqliteStore

FLOATER = [sys.executable, "-m", "clusterlink.doctor"]  # the light entry point


def global_map_of(lab: str, cluster: str) -> tuple[tuple[str, str], ...]:
    """The globalCIDRsMap of the Cluster a lab cluster was joined as (none if not joined)."""
    path = state_dir(lab) / "store.db"
    if not path.exists():
        return ()
    store = SqliteStore(path)
    try:
        joined = joined_as(lab, store.list(Cluster)).get(cluster)
    except StoreError:
        return ()
    finally:
        store.close()
    link = joined.link if joined is not None else None
    return tuple(sorted(link.global_cidrs_map.items())) if link else ()


def places(handle: str, host_network: bool) -> tuple[list[Place], list[str]]:
    """Floater places of one lab cluster, and nodes that cannot have one (no pod)."""
    data = load_handle(handle)
    cluster = load_plan(data["lab"]).cluster(data["cluster"])
    gmap = () if host_network else global_map_of(data["lab"], cluster.name)
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
            ips = tuple(i for i in (pod.ip, pod.ip6) if i)
            out.append(Place(cluster.name, node.name, pod.netns, ips, gmap))
    return out, missing


def lab_places(handles: list[str], host_network: bool) -> tuple[list[Place], list[str]]:
    out: list[Place] = []
    missing: list[str] = []
    for h in handles:
        p, m = places(h, host_network)
        out += p
        missing += m
    return out, missing


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
        try:
            return await http(self.socket(label), method, url, body, timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            died = await asyncio.to_thread(self.death, label)
            if died:
                raise FloaterGone(f"floater on {label} died: {died}") from None
            raise OSError(str(exc) or type(exc).__name__) from None

    def death(self, label: str, grace: float = 1.0) -> str | None:
        """How the floater at `label` ended, or None while it runs. A process that closed
        its socket by exiting is reaped within `grace` seconds."""
        try:
            code = self.procs[label].wait(grace)
        except subprocess.TimeoutExpired:
            return None
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

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
    words = head.split(b" ", 2)
    if len(words) < 2 or not words[1].isdigit():
        raise OSError("the floater closed the connection without an answer")
    if data and data[:1] in (b"{", b"["):
        return int(words[1]), json.loads(data)
    return int(words[1]), data.decode(errors="replace")


def lab_cluster_of(kubeconfig: str) -> ClusterPlan:
    """The lab cluster a Cluster's handle names (LabError when it is not a lab handle)."""
    data = load_handle(kubeconfig)
    return load_plan(data["lab"]).cluster(data["cluster"])


def node_drift(netns: str, spec: NodeConfigSpec) -> list[tuple[str, str]]:
    """What a lab node's kernel holds against its NodeConfig: (type, detail) differences."""
    try:
        kernel = LinuxKernel(netns)
    except KernelError as exc:
        return [("node", str(exc))]
    try:
        return drift(kernel, IptablesFirewall(netns), spec)
    except (KernelError, FirewallError, OSError) as exc:
        return [("node", f"cannot read its kernel state: {exc}")]
    finally:
        kernel.close()
