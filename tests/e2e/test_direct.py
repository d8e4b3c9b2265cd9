"""Direct routing end to end, with real packets, dual-stack.

- `da` (flannel, which masquerades) and `db` (Calico) opt in and share the lab's on-link
  underlay: their pods reach each other by plain routing (no VXLAN packet leaves), and each
  server sees the client pod's own address (the masquerade exemptions hold on the NIC);
- `dc` opts in but sits on a routed underlay (its kernel reaches other segments through the
  fabric router): it sends by VXLAN (fallback), while `da` and `db` still reach it directly
  (their route to it has no gateway) - an asymmetric path that must work too;
- `dd` does not opt in: VXLAN both ways (mixed);
- a direct route deleted by hand is put back by the agent.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from clusterlink.api import NodeConfig
from clusterlink.lab.topology import PodPlan
from tests.e2e.conftest import lab_name
from tests.e2e.connect import Lab, joined_lab, ping, wait_for

DIRECT = {"directRouting": True}
TOPOLOGY = {
    "name": lab_name("dr"),
    "clusters": [
        {"name": "da", "nodes": 2, "ipFamily": "all", "cni": "flannel", "join": DIRECT},
        {"name": "db", "nodes": 1, "ipFamily": "all", "join": DIRECT},
        {"name": "dc", "nodes": 1, "ipFamily": "all", "underlay": "routed", "join": DIRECT},
        {"name": "dd", "nodes": 1, "ipFamily": "all"},
    ],
}
PINGS = 60


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with joined_lab(TOPOLOGY, None, tmp_path_factory.mktemp("direct")) as lab:
        yield lab


def pod(lab: Lab, cluster: str, index: int = 0) -> PodPlan:
    return lab.plan.cluster(cluster).pods[index]


def ip_of(p: PodPlan, family: int) -> str:
    ip = p.ip if family == 4 else p.ip6
    assert ip is not None
    return ip


def routes(lab: Lab, cluster_node: str) -> dict[str, tuple[str, str]]:
    """cidr -> (dev, gw) of the node's NodeConfig."""
    spec = lab.store.get(NodeConfig, cluster_node).spec
    return {r.cidr: (r.dev, r.gw) for r in spec.routes}


def kernel_route(netns: str, cidr: str) -> str:
    out = subprocess.run(
        ["ip", "-n", netns, "-6" if ":" in cidr else "-4", "route", "show", "table", "200", cidr],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def tx_packets(netns: str, dev: str) -> int:
    out = subprocess.run(
        ["ip", "-n", netns, "-s", "-j", "link", "show", dev], capture_output=True, text=True
    )
    return int(json.loads(out.stdout)[0]["stats64"]["tx"]["packets"])


def expected(lab: Lab, src: str, dst: str, family: int) -> tuple[str, str]:
    """How node `src` (cluster/node) must route `dst`'s first pod block of `family`."""
    dst_cluster, dst_node = dst.split("/")
    node = next(n for n in lab.plan.cluster(dst_cluster).nodes if n.name == dst_node)
    direct = {"da", "db", "dc"}
    src_cluster = src.split("/")[0]
    if src_cluster in direct and dst_cluster in direct and src_cluster != "dc":
        return "eth0", (node.ip if family == 4 else node.ip6) or ""
    return ("vx-bridge" if family == 4 else "vx-bridge-6"), ""


PAIRS = [
    ("da/n1", "db/n1"),
    ("db/n1", "da/n2"),
    ("da/n1", "dc/n1"),
    ("dc/n1", "da/n1"),
    ("da/n2", "dd/n1"),
    ("dd/n1", "db/n1"),
]


def block(lab: Lab, ref: str, family: int) -> str:
    cluster, name = ref.split("/")
    node = next(n for n in lab.plan.cluster(cluster).nodes if n.name == name)
    return next(b for b in node.pod_cidrs if (":" in b) == (family == 6))


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("src, dst", PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_route_kind_and_packets(lab: Lab, src: str, dst: str, family: int) -> None:
    dev, gw = expected(lab, src, dst, family)
    cn_src = src.replace("/", "-")
    cidr = block(lab, dst, family)
    wait_for(
        lambda: routes(lab, cn_src).get(cidr, ("", ""))[0] == dev,
        30,
        f"{src}: {cidr} on {dev}: {routes(lab, cn_src).get(cidr)}",
    )
    if gw:
        assert routes(lab, cn_src)[cidr] == (dev, gw)
    src_node = next(
        n for n in lab.plan.cluster(src.split("/")[0]).nodes if n.name == src.split("/")[1]
    )
    wait_for(
        lambda: f"dev {dev}" in kernel_route(src_node.netns, cidr),
        30,
        f"{src}: kernel route {cidr} on {dev}: {kernel_route(src_node.netns, cidr)!r}",
    )
    a = next(p for p in lab.plan.cluster(src.split("/")[0]).pods if p.node == src_node.name)
    b = next(p for p in lab.plan.cluster(dst.split("/")[0]).pods if p.node == dst.split("/")[1])
    tunnel = "vx-bridge" if family == 4 else "vx-bridge-6"
    before = tx_packets(src_node.netns, tunnel)
    # Fast: the agents' link prober sends one probe a second to each remote peer over the
    # tunnel, which must stay well below the half of PINGS the direct case allows.
    assert ping(a.netns, ip_of(b, family), count=PINGS, wait=1.0, interval=0.01), (
        f"{a.name} -> {b.name}"
    )
    sent = tx_packets(src_node.netns, tunnel) - before
    if dev == "eth0":
        assert sent < PINGS // 2, f"{src} -> {dst}: {sent} packets went out on {tunnel}"
    else:
        assert sent >= PINGS, f"{src} -> {dst}: only {sent} packets on {tunnel}"
    # The server sees the client pod's own address (no masquerade on the direct path).
    port = 7700 + 10 * PAIRS.index((src, dst)) + family  # one server per test
    lab.serve(b.netns, ip_of(b, family), port)
    assert lab.tcp_peer(a.netns, ip_of(b, family), port) == ip_of(a, family)


def test_direct_route_deleted_by_hand_is_repaired(lab: Lab) -> None:
    node = lab.plan.cluster("da").nodes[0]
    cidr = block(lab, "db/n1", 4)
    wait_for(lambda: "dev eth0" in kernel_route(node.netns, cidr), 30, "direct route present")
    subprocess.run(["ip", "-n", node.netns, "route", "del", cidr, "table", "200"], check=True)
    wait_for(lambda: "dev eth0" in kernel_route(node.netns, cidr), 10, "direct route repaired")
    assert "proto 200" in kernel_route(node.netns, cidr)
