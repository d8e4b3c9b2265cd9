"""Control plane end to end, with real packets: install, join, pods of different clusters
reach each other by pod IP (and the receiver sees the sender's pod IP), failover, restarts,
a third cluster joining and leaving."""

from __future__ import annotations

import difflib
import itertools
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterlink.api import ClusterNode
from clusterlink.federation import lab as deploy
from clusterlink.federation.membership import connected
from clusterlink.lab import supervisor
from clusterlink.lab.state import handle_path, state_dir, store_url
from tests.e2e.connect import Lab, joined_lab, ping, wait_for

MIXED = {
    "name": "mix",
    "clusters": [
        {"name": "c1", "nodes": 3, "ipFamily": "all", "podsPerNode": 1},
        {
            "name": "c2",
            "nodes": 3,
            "ipFamily": "all",
            "gatewayCandidates": 2,
            "isolated": True,
            "podsPerNode": 1,
        },
        {"name": "c3", "nodes": 2, "ipFamily": "ipv4", "podsPerNode": 1},
    ],
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with joined_lab(
        MIXED, {"c1": ("p2p", "all"), "c2": ("gateway", "all")}, tmp_path_factory.mktemp("mix")
    ) as lab:
        yield lab


def gateway_of(lab: Lab, cluster: str) -> str:
    nodes = [
        cn
        for cn in lab.store.list(ClusterNode)
        if cn.spec.cluster_name == cluster and cn.spec.is_gateway
    ]
    assert len(nodes) == 1, f"{cluster}: {len(nodes)} gateways"
    return nodes[0].spec.node_name


def test_p2p_and_gateway_pods_reach_each_other_with_their_own_ips(mixed: Lab) -> None:
    c1, c2 = mixed.plan.cluster("c1"), mixed.plan.cluster("c2")
    for pod in c1.pods + c2.pods:
        for ip in (pod.ip, pod.ip6):
            assert ip is not None
            mixed.serve(pod.netns, ip)
    failures = []
    for a, b in itertools.permutations((c1, c2)):
        for src, dst in itertools.product(a.pods, b.pods):
            for s_ip, d_ip in ((src.ip, dst.ip), (src.ip6, dst.ip6)):
                assert s_ip and d_ip
                if not ping(src.netns, d_ip):
                    failures.append(f"ICMP {a.name}/{src.name} -> {b.name}/{dst.name} {d_ip}")
                seen = mixed.tcp_peer(src.netns, d_ip)
                if seen != s_ip:
                    failures.append(
                        f"TCP {a.name}/{src.name} -> {d_ip}: server saw {seen}, sent from {s_ip}"
                    )
    assert not failures, failures


def test_host_network_reaches_remote_pods(mixed: Lab) -> None:
    c1, c2 = mixed.plan.cluster("c1"), mixed.plan.cluster("c2")
    for node in c2.nodes:  # gateway and internal nodes of the gateway-mode cluster
        assert ping(node.netns, c1.pods[0].ip or ""), node.name
        assert ping(node.netns, c1.pods[1].ip6 or ""), node.name
    assert ping(c1.nodes[2].netns, c2.pods[2].ip or "")


def test_third_cluster_joins_and_leaves(mixed: Lab) -> None:
    c1, c3 = mixed.plan.cluster("c1"), mixed.plan.cluster("c3")
    target = c3.pods[1].ip or ""
    assert not ping(c1.pods[0].netns, target)  # not joined: unreachable
    rulesets = {node.netns: ruleset(node.netns) for node in c3.nodes}
    url = store_url(mixed.plan.name)
    deploy.join(
        mixed.store,
        url,
        str(handle_path(mixed.plan.name, "c3")),
        "c3",
        deploy.LinkOptions("p2p", "ipv4"),
        lambda _: None,
    )
    wait_for(lambda: connected(mixed.store, ["c1", "c2", "c3"])[0], 30, "c3 connected")
    assert ping(c1.pods[0].netns, target, count=2) and ping(c3.pods[0].netns, c1.pods[2].ip or "")
    assert ping(c3.pods[1].netns, mixed.plan.cluster("c2").pods[2].ip or "")
    deploy.unjoin(mixed.store, "c3", lambda _: None)
    assert not ping(c1.pods[0].netns, target)
    for node in c3.nodes:
        out = subprocess.run(
            ["ip", "-n", node.netns, "-o", "link"], capture_output=True, text=True
        ).stdout
        assert "vx-" not in out
        assert (
            "200"
            not in subprocess.run(
                ["ip", "-n", node.netns, "rule"], capture_output=True, text=True
            ).stdout
        )
    # Every table and chain its agents made is gone: the nft ruleset is what it was before
    # the join (an empty nat table left behind would keep conntrack on for every packet).
    for node in c3.nodes:
        after = ruleset(node.netns)
        diff = difflib.unified_diff(
            rulesets[node.netns].splitlines(), after.splitlines(), lineterm=""
        )
        assert after == rulesets[node.netns], (
            f"{node.netns}: nft ruleset before join -> after unjoin:\n" + "\n".join(diff)
        )
    assert ping(
        c1.pods[0].netns, mixed.plan.cluster("c2").pods[0].ip or ""
    )  # the others are unaffected


def ruleset(netns: str) -> str:
    """`nft list ruleset` in a namespace, without packet counters (they move with traffic)."""
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "list", "ruleset"], capture_output=True, text=True
    ).stdout
    return re.sub(r"counter packets \d+ bytes \d+", "counter", out)


def _component_pid(lab: Lab, name: str) -> int:
    status = supervisor.read_status(state_dir(lab.plan.name))
    pid = status[name]["pid"]
    assert isinstance(pid, int)
    return pid


class PingLog:
    """Pings at 20 ms in the background; counts what got lost."""

    def __init__(self, netns: str, dst: str, seconds: float) -> None:
        count = int(seconds / 0.02)
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                netns,
                "ping",
                "-q",
                "-i",
                "0.02",
                "-W",
                "0.2",
                "-c",
                str(count),
                dst,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )

    def lost(self) -> int:
        out, _ = self.proc.communicate(timeout=60)
        line = next(line for line in out.splitlines() if "transmitted" in line)
        sent, received = int(line.split()[0]), int(line.split()[3])
        return sent - received


@pytest.mark.parametrize("role", ["gateway", "internal"])
def test_agent_restart_keeps_traffic_flowing(mixed: Lab, role: str) -> None:
    c1, c2 = mixed.plan.cluster("c1"), mixed.plan.cluster("c2")
    gateway = gateway_of(mixed, "c2")
    node = gateway if role == "gateway" else next(n.name for n in c2.nodes if n.name != gateway)
    dst = next(p for p in c2.pods if p.node == node)
    pings = PingLog(c1.pods[0].netns, dst.ip or "", 3.0)
    time.sleep(0.5)
    name = f"c2.agent.{node}"
    old = _component_pid(mixed, name)
    subprocess.run(["kill", "-9", str(old)], check=True)
    wait_for(
        lambda: (
            supervisor.read_status(state_dir(mixed.plan.name))[name].get("pid") not in (None, old)
        ),
        10,
        "agent restarted",
    )
    assert pings.lost() == 0


def test_gateway_link_cut_fails_over(mixed: Lab) -> None:
    c1, c2 = mixed.plan.cluster("c1"), mixed.plan.cluster("c2")
    old = gateway_of(mixed, "c2")
    internal = next(n for n in c2.nodes if not n.gateway_candidate)
    dst = next(p for p in c2.pods if p.node == internal.name)
    port = next(n.fabric_port for n in c2.nodes if n.name == old)
    fabric = mixed.plan.fabric_netns
    subprocess.run(["ip", "-n", fabric, "link", "set", port, "down"], check=True)
    try:
        took = wait_for(
            lambda: ping(c1.pods[0].netns, dst.ip or "", wait=0.3),
            10,
            "traffic through the new gateway",
        )
        new = gateway_of(mixed, "c2")
        assert new != old and took <= 5.0
        assert ping(c1.pods[1].netns, dst.ip6 or "")
    finally:
        subprocess.run(["ip", "-n", fabric, "link", "set", port, "up"], check=True)
    wait_for(lambda: connected(mixed.store, ["c1", "c2"])[0], 20, "settled")


def test_lease_renewal_failure_recovers(mixed: Lab) -> None:
    """The gateway's elector freezes (cannot renew): the other candidate takes over; when it
    thaws it sees another holder and steps down - never two gateways."""
    c1, c2 = mixed.plan.cluster("c1"), mixed.plan.cluster("c2")
    old = gateway_of(mixed, "c2")
    pid = _component_pid(mixed, f"c2.elector.{old}")
    subprocess.run(["kill", "-STOP", str(pid)], check=True)
    try:
        wait_for(lambda: gateway_of(mixed, "c2") != old, 10, "takeover")
    finally:
        subprocess.run(["kill", "-CONT", str(pid)], check=True)
    time.sleep(1.0)  # a few retry periods for the thawed elector
    assert gateway_of(mixed, "c2") != old
    wait_for(lambda: connected(mixed.store, ["c1", "c2"])[0], 20, "settled")
    assert ping(c1.pods[0].netns, c2.pods[2].ip or "")


GW_AND_P2P = {
    "name": "gwp",
    "clusters": [
        {
            "name": "g1",
            "nodes": 3,
            "ipFamily": "ipv6",
            "gatewayCandidates": 1,
            "isolated": True,
            "podsPerNode": 1,
        },
        {
            "name": "g2",
            "nodes": 3,
            "ipFamily": "ipv6",
            "gatewayCandidates": 1,
            "isolated": True,
            "podsPerNode": 1,
        },
        {"name": "p1", "nodes": 2, "ipFamily": "ipv4", "podsPerNode": 1},
        {"name": "p2", "nodes": 2, "ipFamily": "ipv4", "podsPerNode": 1},
    ],
}


def test_gateway_to_gateway_v6_every_placement_and_p2p_to_p2p_v4(tmp_path: Path) -> None:
    joins = {
        "g1": ("gateway", "ipv6"),
        "g2": ("gateway", "ipv6"),
        "p1": ("p2p", "ipv4"),
        "p2": ("p2p", "ipv4"),
    }
    with joined_lab(GW_AND_P2P, joins, tmp_path) as lab:
        g1, g2 = lab.plan.cluster("g1"), lab.plan.cluster("g2")
        assert (
            gateway_of(lab, "g1") == "n1" and gateway_of(lab, "g2") == "n1"
        )  # the only candidates
        for pod in g2.pods + g1.pods:
            lab.serve(pod.netns, pod.ip6 or "")
        # n1 is the gateway, n2/n3 internal: gateway->gateway, gateway->internal,
        # internal->gateway, internal->internal, both directions.
        for a, b in ((g1, g2), (g2, g1)):
            for src, dst in itertools.product(a.pods, b.pods):
                assert ping(src.netns, dst.ip6 or ""), f"{a.name}/{src.name} -> {b.name}/{dst.name}"
                assert lab.tcp_peer(src.netns, dst.ip6 or "") == src.ip6
        p1, p2 = lab.plan.cluster("p1"), lab.plan.cluster("p2")
        for pod in p2.pods:
            lab.serve(pod.netns, pod.ip or "")
        for src, dst in itertools.product(p1.pods, p2.pods):
            assert lab.tcp_peer(src.netns, dst.ip or "") == src.ip
            assert ping(dst.netns, src.ip or "")
        # The families do not mix: an IPv4 cluster has no route to an IPv6 one.
        assert not ping(p1.pods[0].netns, g1.pods[0].ip6 or "")


def test_cli_install_join_get_unjoin_uninstall(tmp_path: Path, lab_dir: Path) -> None:
    from tests.conftest import KOSMOSCTL

    topo = tmp_path / "t.yaml"
    topo.write_text(
        json.dumps(
            {
                "name": "cli",
                "clusters": [
                    {"name": "a", "nodes": 2},
                    {"name": "b", "nodes": 2, "gatewayCandidates": 1},
                ],
            }
        )
    )

    def kosmosctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KOSMOSCTL, *args], capture_output=True, text=True, timeout=120)

    try:
        assert kosmosctl("lab", "up", "-f", str(topo)).returncode == 0
        a, b = (str(lab_dir / "cli" / "handles" / f"{c}.yaml") for c in "ab")
        out = kosmosctl("install", "--kubeconfig", a, "--network-type", "p2p")
        assert out.returncode == 0, out.stderr
        out = kosmosctl(
            "join", "cluster", "--name", "b", "--kubeconfig", b, "--network-type", "gateway"
        )
        assert out.returncode == 0, out.stderr
        rows = kosmosctl("get", "clusters", "--kubeconfig", a).stdout.splitlines()
        assert rows[0].split() == ["NAME", "NETWORK_TYPE", "IP_FAMILY"]
        assert sorted(r.split() for r in rows[1:]) == [
            ["b", "gateway", "ipv4"],
            ["kosmos-control-cluster", "p2p", "ipv4"],
        ]
        status = json.loads(kosmosctl("lab", "status", "cli", "-o", "json").stdout)
        assert status["clusters"][1]["nodes"][0]["roles"] == ["gateway"]
        assert ping("cl-cli-a-n1-p1", "10.2.2.2", count=2)
        # The same lab cluster again, under another name - by its handle or a copy of it
        # (the cluster is known by its ID, not the file): refused, and nothing changed.
        copy = lab_dir / "copy-of-b.yaml"
        copy.write_text(Path(b).read_text())
        for handle in (b, str(copy)):
            out = kosmosctl("join", "cluster", "--name", "again", "--kubeconfig", handle)
            assert out.returncode == 2, out.stderr
            assert "joined already, as Cluster b" in out.stderr
        listed = kosmosctl("get", "clusters", "--kubeconfig", a).stdout
        assert "again" not in listed
        assert ping("cl-cli-a-n1-p1", "10.2.2.2", count=2)
        assert kosmosctl("unjoin", "cluster", "--name", "b", "--kubeconfig", a).returncode == 0
        assert not ping("cl-cli-a-n1-p1", "10.2.2.2")
        assert kosmosctl("uninstall", "--kubeconfig", a).returncode == 0
        left = json.loads(kosmosctl("lab", "ps", "--lab", "cli", "-o", "json").stdout)
        # nothing of clusterlink's; the lab's own Calico (its felix stand-in) stays
        assert set(left["components"]) == {"calico@lab"}
    finally:
        kosmosctl("lab", "down", "cli")


def test_stopping_a_component_process_never_tears_down(mixed: Lab) -> None:
    """SIGTERM to an agent (a pod being replaced) leaves the kernel alone, and the agent the
    supervisor starts in its place finds nothing to change (the device keeps its ifindex)."""
    c2 = mixed.plan.cluster("c2")
    node = c2.nodes[2]
    name = f"c2.agent.{node.name}"

    def ifindex() -> str:
        out = subprocess.run(
            ["ip", "-n", node.netns, "-o", "link", "show", "vx-local"],
            capture_output=True,
            text=True,
        )
        return out.stdout.split(":", 1)[0]

    before = ifindex()
    pid = _component_pid(mixed, name)
    subprocess.run(["kill", "-TERM", str(pid)], check=True)
    wait_for(
        lambda: (
            supervisor.read_status(state_dir(mixed.plan.name))[name].get("pid") not in (None, pid)
        ),
        10,
        "restart",
    )
    time.sleep(1.0)  # its first pass
    assert before and ifindex() == before
