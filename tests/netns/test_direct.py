"""Direct routing on a real kernel: two namespaces on one veth underlay, each a node of its
own opted-in cluster. The agent reports what is on-link, the planner routes the peer's pod
block over eth0, packets flow without VXLAN, drift is repaired, teardown removes our routes
and only ours."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

from clusterlink.agent.iptables import IptablesFirewall
from clusterlink.agent.linux import LinuxKernel
from clusterlink.agent.reconcile import reconcile
from clusterlink.api import NodeConfigSpec
from clusterlink.planner import plan
from tests.conftest import sh
from tests.unit.planner.federation import cluster, node


def apply(ns: str, spec: NodeConfigSpec | None):  # type: ignore[no-untyped-def]
    kernel = LinuxKernel(ns)
    try:
        return reconcile(kernel, IptablesFirewall(ns), spec)
    finally:
        kernel.close()


def on_link(ns: str) -> tuple[str, ...]:
    kernel = LinuxKernel(ns)
    try:
        return kernel.on_link("eth0")
    finally:
        kernel.close()


def tx(ns: str, dev: str) -> int:
    out = sh(f"ip -n {ns} -s -j link show {dev}")
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])


def test_direct_routes_on_a_real_kernel(make_netns: Callable[[str], str]) -> None:
    a, b = make_netns("da"), make_netns("db")
    for ns in (a, b):  # no DAD: a tentative link-local address stalls neighbour discovery
        sh(
            f"ip netns exec {ns} sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0"
        )
    sh(f"ip -n {a} link add eth0 type veth peer name eth0 netns {b}")
    for ns, i in ((a, 1), (b, 2)):
        sh(
            f"ip -n {ns} link set eth0 up && ip -n {ns} addr add 192.168.77.{i}/24 dev eth0 && "
            f"ip -n {ns} addr add fd77::{i}/64 dev eth0 nodad && "
            f"ip -n {ns} addr add 10.{i}.1.1/32 dev lo && ip -n {ns} addr add fd1{i}:0:1::1/128 dev lo"
        )
    # b's own view: a more specific route via a gateway inside its subnet is cut out
    sh(f"ip -n {b} route add 192.168.77.128/25 via 192.168.77.1 dev eth0")
    assert on_link(a) == ("192.168.77.0/24", "fd77::/64")
    assert on_link(b) == ("192.168.77.0/25", "fd77::/64")
    p = plan(
        [cluster("a", family="all", direct=True), cluster("b", family="all", direct=True)],
        [
            node("a", "n", "192.168.77.1", "fd77::1", pods=("10.1.1.0/24", "fd11:0:1::/64"), on_link=on_link(a)),
            node("b", "n", "192.168.77.2", "fd77::2", pods=("10.2.1.0/24", "fd12:0:1::/64"), on_link=on_link(b)),
        ],
    )  # fmt: skip
    specs = {"a": p.spec("a-n"), "b": p.spec("b-n")}
    assert {r.dev for r in specs["a"].routes} == {"eth0"}
    foreign = "10.9.0.0/16 via 192.168.77.2 dev eth0 table 200"  # not ours: proto boot
    sh(f"ip -n {a} route add {foreign}")
    for ns, key in ((a, "a"), (b, "b")):
        assert apply(ns, specs[key]).errors == []
        assert apply(ns, specs[key]).changes == 0
    table = sh(f"ip -n {a} route show table 200")
    assert "10.2.1.0/24 via 192.168.77.2 dev eth0 proto 200 onlink" in table
    assert "fd12:0:1::/64 via fd77::2 dev eth0 proto 200" in sh(
        f"ip -n {a} -6 route show table 200"
    )
    before = tx(a, "vx-bridge"), tx(a, "vx-bridge-6")
    for dst in ("10.2.1.1", "fd12:0:1::1"):
        src = "10.1.1.1" if "." in dst else "fd11:0:1::1"
        out = subprocess.run(
            ["ip", "netns", "exec", a, "ping", "-c", "3", "-i", "0.2", "-w", "5", "-I", src, dst],
            capture_output=True,
        )
        assert out.returncode == 0, dst
    assert (tx(a, "vx-bridge"), tx(a, "vx-bridge-6")) == before  # nothing was encapsulated
    sh(f"ip -n {a} route del 10.2.1.0/24 table 200")
    assert apply(a, specs["a"]).entries_added == 1  # drift repaired in one pass
    assert apply(a, None).errors == []
    assert sh(f"ip -n {a} route show table 200").strip() == "10.9.0.0/16 via 192.168.77.2 dev eth0"
