"""Gateway leases between candidates whose clocks disagree, and a lab supervisor that died.

The lab skews one gateway candidate's wall clock by 30 s (topology `clockSkew`); a sampler
reads the store every 20 ms for the whole test and keeps the role history. The gateway's
elector is killed (SIGKILL, with the supervisor paused so it stays dead) three times.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from clusterlink.api import ClusterNode, Lease
from clusterlink.api.meta import parse_rfc3339
from clusterlink.controllers.elector import lease_name
from clusterlink.federation.membership import connected
from clusterlink.lab import supervisor
from clusterlink.lab.state import state_dir
from tests.conftest import KOSMOSCTL
from tests.e2e.connect import Lab, joined_lab, ping, wait_for

SKEW = 30.0
TOPOLOGY = {
    "name": f"ls{os.getpid() % 100000}",
    "clusters": [
        {"name": "c1", "nodes": 2, "podsPerNode": 1},
        {
            "name": "c2",
            "nodes": 3,
            "gatewayCandidates": 2,
            "isolated": True,
            "podsPerNode": 1,
            "clockSkew": {"n2": SKEW},
        },
    ],
}
KILLS = 3


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    joins = {"c1": ("p2p", "ipv4"), "c2": ("gateway", "ipv4")}
    with joined_lab(TOPOLOGY, joins, tmp_path_factory.mktemp("ls")) as joined:
        yield joined


class RoleSampler(threading.Thread):
    """Reads c2's gateway role and lease holder every 20 ms; keeps each change."""

    def __init__(self, lab: Lab) -> None:
        super().__init__(daemon=True)
        self.lab, self.stop = lab, threading.Event()
        self.history: list[tuple[float, tuple[str, ...], str | None]] = []
        self.most_gateways = 0
        self.stamp_offsets: dict[str, float] = {}  # holder -> its renewTime minus our clock

    def run(self) -> None:
        while not self.stop.wait(0.02):
            gateways = tuple(
                sorted(
                    cn.spec.node_name
                    for cn in self.lab.store.list(ClusterNode)
                    if cn.spec.cluster_name == "c2" and cn.spec.is_gateway
                )
            )
            lease = self.lab.store.get(Lease, lease_name("c2"), "kosmos-system")
            sample = (gateways, lease.spec.holder_identity)
            if lease.spec.holder_identity and lease.spec.renew_time:
                offset = parse_rfc3339(lease.spec.renew_time) - dt.datetime.now(dt.UTC)
                self.stamp_offsets[lease.spec.holder_identity] = offset.total_seconds()
            self.most_gateways = max(self.most_gateways, len(gateways))
            if not self.history or self.history[-1][1:] != sample:
                self.history.append((time.monotonic(), *sample))

    def gateway(self) -> str | None:
        gateways = self.history[-1][1] if self.history else ()
        return gateways[0] if len(gateways) == 1 else None


def test_skewed_candidates_never_double_lead_and_fail_over_when_the_gateway_elector_dies(
    lab: Lab,
) -> None:
    d = state_dir(lab.plan.name)
    c1, c2 = lab.plan.cluster("c1"), lab.plan.cluster("c2")
    dst = next(p for p in c2.pods if p.node == "n3")  # behind whichever gateway
    sampler = RoleSampler(lab)
    sampler.start()
    failovers: list[float] = []
    try:
        wait_for(lambda: sampler.gateway() is not None, 10, "a gateway")
        time.sleep(10.0)  # forty lease rounds with clocks 30 s apart: no fight
        quiet = [h for h in sampler.history if h[1]]
        assert len({h[2] for h in quiet}) == 1, sampler.history
        for _ in range(KILLS):
            old = sampler.gateway()
            assert old is not None, sampler.history
            sup = supervisor.supervisor_pid(d)
            assert sup is not None
            os.kill(sup, signal.SIGSTOP)  # so the killed elector stays dead
            try:
                pid = supervisor.read_status(d)[f"c2.elector.{old}"]["pid"]
                killed = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                wait_for(lambda o=old: sampler.gateway() not in (None, o), 15, "takeover")  # type: ignore[misc]
                moved = next(
                    t for t, gws, _ in sampler.history if t > killed and gws and gws != (old,)
                )
                failovers.append(moved - killed)
                assert ping(c1.pods[0].netns, dst.ip or "", count=3)
            finally:
                os.kill(sup, signal.SIGCONT)
            wait_for(
                lambda o=old, p=pid: (
                    supervisor.read_status(d)[f"c2.elector.{o}"].get("pid")  # type: ignore[misc]
                    not in (None, p)
                ),
                15,
                "the killed elector restarted",
            )
            wait_for(lambda: connected(lab.store, ["c1", "c2"])[0], 20, "settled")
            time.sleep(3.0)  # the restarted elector is a candidate again, not a rival
    finally:
        sampler.stop.set()
        sampler.join(5)
    print(f"\nfailover after the gateway's elector died (s): {[round(f, 2) for f in failovers]}")
    print("role history (t, gateways, lease holder):")
    t0 = sampler.history[0][0]
    for t, gws, holder in sampler.history:
        print(f"  {t - t0:7.2f} {','.join(gws) or '-':8} {holder}")
    assert sampler.most_gateways == 1, sampler.history
    holders = [h for _, _, h in sampler.history]
    changes = sum(1 for a, b in itertools.pairwise(holders) if a != b)
    assert changes == KILLS, sampler.history  # one takeover per kill, no fight in between
    assert {h[2] for h in sampler.history} == {"c2-n1", "c2-n2"}
    # The skew was real: n2 stamped renewTime 30 s ahead of everyone else.
    offsets = sampler.stamp_offsets
    assert offsets["c2-n2"] > SKEW - 5 and abs(offsets["c2-n1"]) < 5, offsets


def kosmosctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KOSMOSCTL, *args], capture_output=True, text=True)


def component_processes(name: str, argv: list[str]) -> list[int]:
    """Processes running a component's command line (counted from /proc, not from what the
    supervisor reports)."""
    want = [a.encode() for a in argv]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except OSError:
            continue
        if cmdline == want and supervisor.alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_a_killed_supervisor_is_reported_and_lab_up_starts_nothing_twice(
    lab: Lab, tmp_path: Path
) -> None:
    name = lab.plan.name
    d = state_dir(name)
    topology = tmp_path / "topology.yaml"
    topology.write_text(yaml.safe_dump(TOPOLOGY))
    wanted = supervisor.read_components(d)
    assert all(len(component_processes(n, c["argv"])) == 1 for n, c in wanted.items())
    sup = supervisor.supervisor_pid(d)
    assert sup is not None
    os.kill(sup, signal.SIGKILL)
    wait_for(lambda: not supervisor.alive(sup), 5, "supervisor gone")

    ps = kosmosctl("lab", "ps", "--lab", name)
    assert ps.returncode == 1 and "supervisor" in ps.stderr and str(sup) in ps.stderr
    data = json.loads(kosmosctl("lab", "ps", "--lab", name, "-o", "json").stdout)
    assert data["supervisor"] == {"state": "dead", "pid": sup}
    assert {r["state"] for r in data["components"].values()} == {"unsupervised"}

    up = kosmosctl("lab", "up", "-f", str(topology))
    assert up.returncode == 0, up.stderr
    time.sleep(2.0)  # ten supervisor rounds: time to start anything twice, if it would
    counts = {n: len(component_processes(n, c["argv"])) for n, c in wanted.items()}
    assert set(counts.values()) == {1}, counts
    ps = kosmosctl("lab", "ps", "--lab", name, "-o", "json")
    assert ps.returncode == 0, ps.stderr
    rows = json.loads(ps.stdout)["components"]
    assert all(r["state"] == "running" and r["adopted"] for r in rows.values()), rows
    wait_for(lambda: connected(lab.store, ["c1", "c2"])[0], 20, "still connected")
