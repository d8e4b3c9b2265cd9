"""Agent benchmark (issue 4): a NodeConfig with 5,000 peers (5,000 routes + 5,000 FDB +
5,000 neighbour entries), applied by the agent into a fresh namespace, against `ip -batch` +
`bridge -batch` of the same entries onto a ready device (the kernel floor), alternating, in one
run; then a no-op resync of the agent's result. Medians of 5.
Goals: apply <= 1.5x ip -batch; no-op resync <= 5% of apply.

Namespaces are named cl-bench-agent-* and always removed.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from clusterlink.agent.iptables import IptablesFirewall
from clusterlink.agent.linux import LinuxKernel
from clusterlink.agent.reconcile import Reconciler
from clusterlink.api import Arp, Device, Fdb, NodeConfigSpec, Route

PEERS = 5_000
RUNS = 5
NS = "cl-bench-agent"


def peers() -> NodeConfigSpec:
    routes, fdbs, arps = [], [], []
    for i in range(PEERS):
        a, b = divmod(i + 2, 250)
        gw, mac, underlay = f"220.1.{a}.{b}", f"02:00:00:01:{a:02x}:{b:02x}", f"192.168.{a}.{b}"
        routes.append(Route(cidr=f"10.{a}.{b}.0/24", gw=gw, dev="vx-bridge"))
        fdbs.append(Fdb(ip=underlay, mac=mac, dev="vx-bridge"))
        arps.append(Arp(ip=gw, mac=mac, dev="vx-bridge"))
    device = Device(
        name="vx-bridge",
        addr="220.0.0.1/8",
        mac="02:00:00:00:00:01",
        bind_dev="eth0",
        id=54,
        port=4876,
        mtu=1450,
    )
    return NodeConfigSpec(devices=[device], routes=routes, fdbs=fdbs, arps=arps)


def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True, capture_output=True)


def fresh(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    sh(
        f"ip netns add {name} && ip -n {name} link add eth0 type veth peer name eth0p && "
        f"ip -n {name} addr add 192.168.0.1/16 dev eth0 && ip -n {name} link set eth0 up"
    )


def agent_apply(spec: NodeConfigSpec) -> tuple[float, float, float, int]:
    name = f"{NS}-ours"
    fresh(name)
    try:
        kernel = LinuxKernel(name)
        reconcile = Reconciler(kernel, IptablesFirewall(name))  # what the agent runs
        t = time.perf_counter()
        report = reconcile(spec)
        apply_s = time.perf_counter() - t
        assert not report.errors, report.errors[:3]
        t = time.perf_counter()
        first = reconcile(spec)  # the first pass after an apply sees its notifications: dumps
        verify_s = time.perf_counter() - t
        steady = []
        for _ in range(3):  # what a periodic resync costs when nothing changed since
            t = time.perf_counter()
            again = reconcile(spec)
            steady.append(time.perf_counter() - t)
            assert again.changes == 0
        noop_s = statistics.median(steady)
        kernel.close()
        return apply_s, noop_s, verify_s, first.changes
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def ip_batch(spec: NodeConfigSpec) -> float:
    name = f"{NS}-floor"
    fresh(name)
    try:
        sh(
            f"ip -n {name} link add vx-bridge type vxlan id 54 local 192.168.0.1 dev eth0 dstport 4876 nolearning && "
            f"ip -n {name} link set vx-bridge address 02:00:00:00:00:01 mtu 1450 up && ip -n {name} addr add 220.0.0.1/8 dev vx-bridge"
        )
        ip_lines = [
            f"neigh replace {a.ip} lladdr {a.mac} dev vx-bridge nud permanent" for a in spec.arps
        ]
        ip_lines += [
            f"route replace {r.cidr} via {r.gw} dev vx-bridge onlink table 200" for r in spec.routes
        ]
        fdb_lines = [
            f"fdb append {f.mac} dev vx-bridge dst {f.ip} self permanent" for f in spec.fdbs
        ]
        t = time.perf_counter()
        subprocess.run(
            ["ip", "-n", name, "-batch", "-"],
            input="\n".join(ip_lines) + "\n",
            text=True,
            check=True,
        )
        subprocess.run(
            ["bridge", "-n", name, "-batch", "-"],
            input="\n".join(fdb_lines) + "\n",
            text=True,
            check=True,
        )
        return time.perf_counter() - t
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def main() -> int:
    spec = peers()
    ours, floor, noop, verify, noop_changes = [], [], [], [], []
    for _ in range(RUNS):
        a, n, v, c = agent_apply(spec)
        ours.append(a)
        noop.append(n)
        verify.append(v)
        noop_changes.append(c)
        floor.append(ip_batch(spec))
    o, f, n = statistics.median(ours), statistics.median(floor), statistics.median(noop)
    v = statistics.median(verify)
    print(
        f"agent first apply, {PEERS} peers ({3 * PEERS} entries): {o:.3f} s   runs {[round(x, 3) for x in ours]}"
    )
    print(
        f"ip -batch + bridge -batch, same entries:        {f:.3f} s   runs {[round(x, 3) for x in floor]}"
    )
    print(f"ratio apply / ip -batch: {o / f:.2f}x (goal <= 1.5x)")
    print(
        f"first verification after an apply (full dump): {v * 1000:.1f} ms = {v / o:.1%} of apply; kernel changes {noop_changes}"
    )
    print(
        f"no-op resync (nothing changed since the last pass): {n * 1000:.1f} ms = {n / o:.1%} of apply (goal <= 5%)"
    )

    return 0 if o / f <= 1.5 and n / o <= 0.05 and not any(noop_changes) else 1


if __name__ == "__main__":
    sys.exit(main())
