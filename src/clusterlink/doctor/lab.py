"""`kosmosctl dr` in the lab: floaters in each node's namespace (`--host-network`) or in the
first pod of each node, driven over Unix sockets (the controller sits outside the lab's
namespaces and sends no traffic itself); always removed, also on Ctrl-C. And `analysis`'s
reading of a lab node's kernel state."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import os
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

from clusterlink.api.cluster import Cluster
from clusterlink.api.nodeconfig import NodeConfigSpec
from clusterlink.doctor import floater
from clusterlink.doctor.probe import FloaterGone, Place
from clusterlink.lab.state import joined_as, load_handle, load_plan, state_dir
from clusterlink.lab.topology import ClusterPlan, LabPlan
from clusterlink.store.base import StoreError
from clusterlink.store.sqlite import SqliteStore

GlobalMap = tuple[tuple[str, str], ...]


def global_maps_of(lab: str) -> dict[str, GlobalMap]:
    """Per lab cluster, the globalCIDRsMap of the Cluster it was joined as (clusters not
    joined, or with no map, are left out); one read of the lab's store."""
    path = state_dir(lab) / "store.db"
    if not path.exists():
        return {}
    store = SqliteStore(path)
    try:
        joined = joined_as(lab, store.list(Cluster))
    except StoreError:
        return {}
    finally:
        store.close()
    return {
        name: tuple(sorted(c.link.global_cidrs_map.items()))
        for name, c in joined.items()
        if c.link is not None and c.link.global_cidrs_map
    }


def places(
    cluster: ClusterPlan, host_network: bool, gmap: GlobalMap
) -> tuple[list[Place], list[str]]:
    """Floater places of one lab cluster, and nodes that cannot have one (no pod)."""
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
    """The places of the lab clusters `handles` name; each lab's plan and store read once
    (a 20-cluster run read them 40 times, 0.4 s)."""
    out: list[Place] = []
    missing: list[str] = []
    plans: dict[str, LabPlan] = {}
    gmaps: dict[str, dict[str, GlobalMap]] = {}
    for h in handles:
        data = load_handle(h)
        lab = str(data["lab"])
        if lab not in plans:
            plans[lab] = load_plan(lab)
            gmaps[lab] = {} if host_network else global_maps_of(lab)
        cluster = plans[lab].cluster(data["cluster"])
        p, m = places(cluster, host_network, gmaps[lab].get(cluster.name, ()))
        out += p
        missing += m
    return out, missing


class FloaterProcess(Protocol):
    """What `Floaters` needs of a floater's process (a `subprocess.Popen` has it too)."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


PR_SET_NAME = 15  # prctl: the thread's name, /proc/PID/comm (at most 15 bytes)
FLOATER_NAME = b"cl-floater"


class Forked:
    """A floater forked from this process, with Popen's poll/wait/terminate/kill. The child
    is a process of its own (its own namespace, sockets, memory from the fork on: one
    floater that dies or hangs fails only its own pairs), but no new program: it has every
    module it needs already, so it starts in a millisecond instead of spending ~0.1 s of
    CPU on a fresh interpreter's start-up and imports (a 100-node matrix placed 100 of them).
    Its name (/proc/PID/comm) is `cl-floater`; its command line is kosmosctl's."""

    def __init__(self, serve: Callable[[], int]) -> None:
        self.returncode: int | None = None
        # Objects that exist now are left out of the child's collections: a collection
        # that visits them would copy most of this process's memory into the child.
        gc.freeze()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's code
            code = 70
            try:
                _detach()
                code = serve()
            except BaseException:  # an exception must not carry on in the parent's code
                pass
            finally:
                os._exit(code)
        self.pid = pid

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped already: its status is lost
                self.returncode = 255
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"floater {self.pid}", timeout or 0)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return code

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)


def _detach() -> None:
    """In a forked floater: a session of its own (a Ctrl-C in kosmosctl's terminal is
    kosmosctl's to handle), /dev/null for stdin/out/err (no pipe of whoever runs kosmosctl
    stays open in it), its own name, the default SIGINT."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    sys.stdin = sys.stdout = sys.stderr = open(os.devnull, "r+")  # noqa: SIM115 - till exit
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ctypes.CDLL(None).prctl(PR_SET_NAME, FLOATER_NAME, 0, 0, 0)


@dataclass
class Floaters:
    workdir: Path
    port: int
    procs: dict[str, FloaterProcess] = field(default_factory=dict)

    def socket(self, label: str) -> str:
        return str(self.workdir / (label.replace("/", "_") + ".sock"))

    def start(self, place: Place) -> None:
        """Fork the floater of `place` into its namespace (it binds its Unix socket there:
        the socket file lives on the shared file system, so this process reaches it)."""
        port, netns_name, unix = self.port, place.netns, self.socket(place.label)
        self.procs[place.label] = Forked(lambda: floater.run(port, netns_name, unix))

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
        """Labels whose floater answers `GET /` before the deadline (all asked at once)."""
        return asyncio.run(self._ready(timeout))

    async def _ready(self, timeout: float) -> set[str]:
        deadline = time.monotonic() + timeout
        up: set[str] = set()

        async def answers(label: str) -> bool:
            try:
                return (await http(self.socket(label), "GET", "/", None, 1.0))[0] == 200
            except OSError:
                return False

        while True:  # started, still running, not answering yet
            pending = [n for n, p in self.procs.items() if n not in up and p.poll() is None]
            if not pending or time.monotonic() >= deadline:
                return up
            oks = await asyncio.gather(*(answers(label) for label in pending))
            up.update(label for label, ok in zip(pending, oks, strict=True) if ok)
            await asyncio.sleep(0.02)

    def stop(self) -> None:
        """Every floater ended (SIGTERM, SIGKILL after 5 s) and reaped, the sockets removed."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for proc in self.procs.values():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        gc.unfreeze()
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
    # Here, not at the top: netlink (pyroute2) is for `analysis`, not on `dr`'s way.
    from clusterlink.agent.drift import drift
    from clusterlink.agent.firewall import FirewallError
    from clusterlink.agent.iptables import IptablesFirewall
    from clusterlink.agent.kernel import KernelError
    from clusterlink.agent.linux import LinuxKernel

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
