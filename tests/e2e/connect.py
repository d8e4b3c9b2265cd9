"""Helpers for control-plane e2e tests: a joined lab, and probes that send real packets."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clusterlink.federation import lab as deploy
from clusterlink.federation.membership import wait_connected
from clusterlink.lab.cni import pools_pending
from clusterlink.lab.lifecycle import lab_down, lab_up
from clusterlink.lab.state import handle_path, state_dir, store_url
from clusterlink.lab.topology import LabPlan, Topology, plan_lab
from clusterlink.store.base import Store
from clusterlink.store.url import open_store

SERVER = """
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8); print("ready", flush=True)
while True:
    c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()
"""
CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print(s.recv(100).decode())
"""


class Lab:
    def __init__(self, plan: LabPlan, store: Store) -> None:
        self.plan, self.store = plan, store
        self.servers: list[subprocess.Popen[str]] = []

    def serve(self, netns: str, ip: str, port: int = 7777) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", SERVER, ip, str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        self.servers.append(proc)

    def tcp_peer(self, netns: str, ip: str, port: int = 7777) -> str | None:
        """Connect from `netns`; the server answers with the source address it saw."""
        out = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-c", CLIENT, ip, str(port)],
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() or None if out.returncode == 0 else None

    def close(self) -> None:
        for proc in self.servers:
            proc.kill()


def ping(netns: str, dst: str, count: int = 1, wait: float = 1.0, interval: float = 0.2) -> bool:
    cmd = [
        "ip",
        "netns",
        "exec",
        netns,
        "ping",
        "-c",
        str(count),
        "-W",
        str(wait),
        "-i",
        str(interval),
        dst,
    ]
    return subprocess.run(cmd, capture_output=True).returncode == 0


@contextmanager
def joined_lab(
    topology: dict[str, object], joins: dict[str, tuple[str, str]] | None, tmp: Path
) -> Iterator[Lab]:
    """A lab whose clusters are joined: {lab cluster: (networkType, ipFamily)}, or each as
    its topology's `join:` says (None); the first one installs the control plane."""
    old = os.environ.get("CLUSTERLINK_LAB_DIR")
    os.environ["CLUSTERLINK_LAB_DIR"] = str(tmp / "labs")
    plan = plan_lab(Topology.model_validate(topology))
    lab = None
    try:
        lab_up(plan, quiet=True)
        url = store_url(plan.name)
        store = open_store(url)
        if joins is None:
            how = {c.name: deploy.topology_options(c) for c in plan.clusters}
        else:
            how = {n: deploy.LinkOptions(m, f) for n, (m, f) in joins.items()}  # type: ignore[arg-type]
        for i, (name, options) in enumerate(how.items()):
            handle = str(handle_path(plan.name, name))
            (deploy.install if i == 0 else deploy.join)(
                store, url, handle, name, options, lambda _: None
            )
        wait_connected(store, list(how), 60, also=lambda: pools_pending(plan.name, store))
        lab = Lab(plan, store)
        yield lab
    finally:
        if lab is not None:
            lab.close()
        keep = os.environ.get("CLUSTERLINK_E2E_KEEP_LOGS")  # a dir: the components' logs land there
        if keep:
            shutil.copytree(
                state_dir(plan.name) / "logs", Path(keep) / plan.name, dirs_exist_ok=True
            )
        lab_down(plan.name, quiet=True)
        if old is None:
            os.environ.pop("CLUSTERLINK_LAB_DIR", None)
        else:
            os.environ["CLUSTERLINK_LAB_DIR"] = old


def wait_for(check: object, timeout: float = 20.0, what: str = "") -> float:
    start = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - start


def family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET
