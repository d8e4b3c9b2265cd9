"""The agent on a real kernel with two underlay MTUs: node a on 1500, node b on 1400 (a cloud),
each with a pod on a 1500 veth (the CNI's MTU, larger than the tunnel). Route MTUs are
programmed and repaired, the MSS clamp round-trips through iptables, and traffic proves both."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from clusterlink.agent.iptables import IptablesFirewall
from clusterlink.agent.linux import LinuxKernel
from clusterlink.agent.reconcile import Report, reconcile
from clusterlink.api import NodeConfigSpec
from clusterlink.planner import plan
from tests.conftest import sh
from tests.tcp_probe import transfer
from tests.unit.planner.federation import cluster, node

CLAMP = "-p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu"
NO_DAD = "net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0"


@dataclass
class Nodes:
    a: str
    b: str
    pods: dict[str, str]  # node ns -> its pod's ns
    specs: dict[str, NodeConfigSpec]

    def apply(self, ns: str) -> Report:
        kernel = LinuxKernel(ns)
        try:
            return reconcile(kernel, IptablesFirewall(ns), self.specs[ns])
        finally:
            kernel.close()


@pytest.fixture
def nodes(make_netns: Callable[[str], str]) -> Iterator[Nodes]:
    a, b = make_netns("ma"), make_netns("mb")
    pods = {a: make_netns("ma-p"), b: make_netns("mb-p")}
    for ns in (a, b, *pods.values()):
        sh(f"ip netns exec {ns} sysctl -qw {NO_DAD}")
    sh(f"ip -n {a} link add eth0 type veth peer name eth0 netns {b}")
    for ns, i, mtu in ((a, 1, 1500), (b, 2, 1400)):
        pod = pods[ns]
        sh(
            f"ip -n {ns} link set eth0 mtu {mtu} up && "
            f"ip -n {ns} addr add 192.168.78.{i}/24 dev eth0 && "
            f"ip -n {ns} addr add fd78::{i}/64 dev eth0 nodad && "
            # a Calico-shaped pod on a routed 1500 veth, whatever the underlay
            f"ip -n {ns} link add p0 type veth peer name eth0 netns {pod} && "
            f"ip -n {ns} link set p0 mtu 1500 up && "
            f"ip -n {ns} addr add 169.254.1.1/32 dev p0 && "
            f"ip -n {ns} addr add fe80::1/64 dev p0 nodad && "
            f"ip -n {ns} route add 10.{i}.1.2/32 dev p0 && "
            f"ip -n {ns} route add fd1{i}:0:1::2/128 dev p0 && "
            f"ip -n {pod} link set eth0 mtu 1500 up && "
            f"ip -n {pod} addr add 10.{i}.1.2/32 dev eth0 && "
            f"ip -n {pod} addr add fd1{i}:0:1::2/128 dev eth0 nodad && "
            f"ip -n {pod} route add default via 169.254.1.1 dev eth0 onlink && "
            f"ip -n {pod} route add default via fe80::1 dev eth0"
        )
    p = plan(
        [cluster("a", family="all"), cluster("b", family="all")],
        [
            node("a", "n", "192.168.78.1", "fd78::1", pods=("10.1.1.0/24", "fd11:0:1::/64")),
            node(
                "b", "n", "192.168.78.2", "fd78::2", pods=("10.2.1.0/24", "fd12:0:1::/64"), mtu=1400
            ),
        ],
    )
    specs = dict(p.node_configs())
    yield Nodes(a, b, pods, {a: specs["a-n"], b: specs["b-n"]})


def table200(ns: str) -> str:
    return sh(f"ip -n {ns} route show table 200") + sh(f"ip -n {ns} -6 route show table 200")


def ping(ns: str, dst: str, size: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, "ping", "-M", "do", "-s", str(size), "-c", "1", "-W", "1", dst],
        capture_output=True,
        text=True,
        timeout=10,
    )


def test_route_mtu_is_programmed_and_traffic_fits_the_path(nodes: Nodes) -> None:
    for ns in (nodes.a, nodes.b):
        report = nodes.apply(ns)
        assert report.errors == [], report.to_dict()
    routes_a = table200(nodes.a)
    assert re.search(r"^10\.2\.1\.0/24 via 220\.168\.78\.2 .*mtu 1350", routes_a, re.M), routes_a
    assert re.search(r"^fd12:0:1::/64 via 9480::2 .*mtu 1330", routes_a, re.M), routes_a
    assert "mtu" not in table200(nodes.b)  # its device MTU (1350 / 1330) is the path's
    for ns in (nodes.a, nodes.b):
        assert nodes.apply(ns).changes == 0

    pa, pb = nodes.pods[nodes.a], nodes.pods[nodes.b]
    for src, dst in ((pa, "10.2.1.2"), (pb, "10.1.1.2")):
        assert ping(src, dst, 1350 - 28).returncode == 0, (src, dst)
        too_big = ping(src, dst, 1350 - 27)  # refused by the encapsulating node, not lost
        assert too_big.returncode != 0 and "1350" in too_big.stdout + too_big.stderr, too_big
    for src, dst in ((pa, "fd12:0:1::2"), (pb, "fd11:0:1::2")):
        assert ping(src, dst, 1330 - 48).returncode == 0, (src, dst)
        too_big = ping(src, dst, 1330 - 47)
        assert too_big.returncode != 0 and "1330" in too_big.stdout + too_big.stderr, too_big


@pytest.mark.parametrize(
    ("src", "dst_ip", "path"),
    [
        ("a", "10.2.1.2", 1350),
        ("b", "10.1.1.2", 1350),
        ("a", "fd12:0:1::2", 1330),
        ("b", "fd11:0:1::2", 1330),
    ],
)
def test_mss_is_clamped_to_the_path_both_ways(
    nodes: Nodes, src: str, dst_ip: str, path: int
) -> None:
    """Pods on 1500 veths would announce MSS 1460 (1440 v6); each encapsulating node clamps the
    SYN or SYN-ACK it sends into the tunnel, so both ends start at the path's MSS."""
    for ns in (nodes.a, nodes.b):
        nodes.apply(ns)
    src_ns = nodes.a if src == "a" else nodes.b
    dst_ns = nodes.b if src == "a" else nodes.a
    t = transfer(nodes.pods[src_ns], nodes.pods[dst_ns], dst_ip, 5_000_000)
    assert t.received == 5_000_000
    limit = path - (60 if ":" in dst_ip else 40)
    assert 0 < t.sender_mss <= limit and 0 < t.receiver_mss <= limit, t


def test_mss_rules_round_trip_byte_for_byte(nodes: Nodes) -> None:
    for ns in (nodes.a, nodes.b):
        assert nodes.apply(ns).firewall_changed == [4, 6]
    for tool, devs in (("iptables", ("vx-bridge",)), ("ip6tables", ("vx-bridge-6",))):
        saved = sh(f"ip netns exec {nodes.a} {tool}-save -t mangle")
        for chain in ("FORWARD", "OUTPUT"):
            assert f"-A {chain} -j CLUSTERLINK-{chain}" in saved
            for dev in devs:
                assert f"-A CLUSTERLINK-{chain} -o {dev} {CLAMP}" in saved, saved
    for ns in (nodes.a, nodes.b):
        again = nodes.apply(ns)
        assert again.changes == 0 and again.firewall_changed == [], again.to_dict()


@pytest.mark.parametrize(
    "drift",
    [
        "ip -n {ns} route change 10.2.1.0/24 via 220.168.78.2 dev vx-bridge onlink table 200 "
        "proto 200 mtu 1400",
        "ip -n {ns} route replace 10.2.1.0/24 via 220.168.78.2 dev vx-bridge onlink table 200 "
        "proto 200",
        "ip -n {ns} -6 route change fd12:0:1::/64 via 9480::2 dev vx-bridge-6 onlink table 200 "
        "proto 200 mtu 1280",
        "ip netns exec {ns} iptables -t mangle -F CLUSTERLINK-FORWARD",
    ],
    ids=["mtu-raised", "mtu-removed", "mtu-v6-lowered", "mss-flushed"],
)
def test_mtu_drift_is_repaired_in_one_pass(nodes: Nodes, drift: str) -> None:
    for ns in (nodes.a, nodes.b):
        nodes.apply(ns)
    before = table200(nodes.a)
    sh(drift.format(ns=nodes.a))
    report = nodes.apply(nodes.a)
    assert report.changes > 0 and report.errors == [], report.to_dict()
    assert report.entries_removed == 0  # retuned in place, never deleted first
    assert table200(nodes.a) == before
    assert nodes.apply(nodes.a).changes == 0
