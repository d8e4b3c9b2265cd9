"""Building and removing a lab's namespaces. Nothing here touches the host namespace, except
raising the shared neighbour-table limits (ARCHITECTURE §5): veths are created inside the
fabric or a node and their peer moved straight into the target namespace."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from clusterlink.agent import netns
from clusterlink.lab import cni, services, supervisor
from clusterlink.lab.state import LabError, state_dir
from clusterlink.lab.supervisor import alive
from clusterlink.lab.topology import ClusterPlan, LabPlan, NodePlan

GC_THRESH = {"gc_thresh1": 8192, "gc_thresh2": 32768, "gc_thresh3": 65536}
FABRIC_BRIDGE = "fab0"
UNDERLAY = {"4": "192.168.0.0/16", "6": "fd00::/16"}  # every segment of every cluster
POD_GATEWAY = {4: "169.254.1.1", 6: "fe80::1"}  # what every pod routes through (Calico's choice)


def _run(argv: list[str], stdin: str | None = None) -> None:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv[:4])}: {proc.stderr.strip() or f'exit {proc.returncode}'}")


def batch(ns: str, lines: list[str]) -> None:
    if lines:
        _run(["ip", "-n", ns, "-batch", "-"], "\n".join(lines) + "\n")


def sysctls(ns: str, values: dict[str, str]) -> None:
    with netns.entered(ns):
        for key, value in values.items():
            with open(f"/proc/sys/{key}", "w") as fh:
                fh.write(value)


def raise_neighbour_limits() -> None:
    """The neighbour table is shared by all namespaces and overflows at ~1,000 entries by
    default; only raise, never lower (the one host change the lab may make)."""
    for family in ("ipv4", "ipv6"):
        for key, value in GC_THRESH.items():
            path = f"/proc/sys/net/{family}/neigh/default/{key}"
            with open(path) as fh:
                current = int(fh.read())
            if current < value:
                with open(path, "w") as fh:
                    fh.write(str(value))


def lab_namespaces(lab: str) -> list[str]:
    """Namespaces that belong to a lab (lab names contain no '-', so the prefix is exact)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.startswith(f"cl-{lab}-"))


def _prefix(cidr: str) -> int:
    return ipaddress.ip_network(cidr).prefixlen


def fabric_lines(plan: LabPlan) -> list[str]:
    """One bridge for every cluster's segment (each its own subnet), the router's addresses on
    it. Nodes reach other segments on-link, so cross-cluster underlay traffic is bridged: the
    kernel forwards VXLAN between veth-backed bridges through a router at ~1/4 of the bridged
    rate (3.7 vs 15 Gbit/s measured), which would cap every cross-cluster path of the lab."""
    lines = ["link set lo up", f"link add {FABRIC_BRIDGE} type bridge"]
    lines.append(f"link set {FABRIC_BRIDGE} mtu {min(c.mtu for c in plan.clusters)} up")
    for c in plan.clusters:
        for fam, router in sorted(c.router.items()):
            nodad = " nodad" if fam == "6" else ""
            lines.append(f"addr add {router}/{_prefix(c.segment[fam])} dev {FABRIC_BRIDGE}{nodad}")
        for n in c.nodes:
            lines += [
                f"link add {n.fabric_port} type veth peer name eth0 netns {n.netns}",
                f"link set {n.fabric_port} master {FABRIC_BRIDGE} mtu {c.mtu} up",
            ]
    return lines


def isolation_rules(plan: LabPlan, family: int) -> str:
    """Isolated clusters: only gateway candidates exchange traffic with other segments. The
    segments share one bridge, so the rules match the node's bridge port (br_netfilter sends
    bridged frames through FORWARD here): nothing leaves a non-candidate's port for another
    segment's address, nothing from another segment's address reaches it. Pod traffic inside
    the cluster (pod addresses, host-gw via same-segment nodes) is not underlay: untouched."""
    lines = ["*filter", ":CLAB-ISOLATION - [0:0]", "-A FORWARD -j CLAB-ISOLATION"]
    for c in plan.clusters:
        segment = c.segment.get(str(family))
        if not c.isolated or segment is None:
            continue
        for n in c.nodes:
            if n.gateway_candidate:
                continue
            underlay, port = UNDERLAY[str(family)], n.fabric_port
            lines += [  # own segment: allowed; any other segment's address: dropped
                f"-A CLAB-ISOLATION -m physdev --physdev-in {port} -d {segment} -j RETURN",
                f"-A CLAB-ISOLATION -m physdev --physdev-in {port} -d {underlay} -j DROP",
                f"-A CLAB-ISOLATION -m physdev --physdev-out {port} -s {segment} -j RETURN",
                f"-A CLAB-ISOLATION -m physdev --physdev-out {port} -s {underlay} -j DROP",
            ]
    return "\n".join([*lines, "COMMIT", ""])


def node_lines(c: ClusterPlan, n: NodePlan) -> list[str]:
    lines = ["link set lo up", f"link set eth0 mtu {c.mtu} up"]
    for fam, ip in (("4", n.ip), ("6", n.ip6)):
        if ip is None:
            continue
        nodad = " nodad" if fam == "6" else ""
        lines.append(f"addr add {ip}/{_prefix(c.segment[fam])} dev eth0{nodad}")
        if c.underlay == "bridged":  # other clusters' nodes: on-link (bridged)
            lines.append(f"route add {UNDERLAY[fam]} dev eth0")
        lines.append(f"route add default via {c.router[fam]} dev eth0")
    # The cluster's own pod network, as Calico makes it: each pod on a routed veth (the node
    # end answers for the pods' gateway, 169.254.1.1 and fe80::1), a /32 (/128) route per pod,
    # and host-gw routes to the other nodes' blocks. No bridge: pod traffic is routed once.
    for k, pod in enumerate((p for p in c.pods if p.node == n.name), start=1):
        lines += [
            f"link add veth{k} type veth peer name eth0 netns {pod.netns}",
            f"link set veth{k} mtu {c.mtu} up",
        ]
        if pod.ip:
            lines += [
                f"addr add {POD_GATEWAY[4]}/32 dev veth{k}",
                f"route add {pod.ip}/32 dev veth{k}",
            ]
        if pod.ip6:
            lines += [
                f"addr add {POD_GATEWAY[6]}/64 dev veth{k} nodad",
                f"route add {pod.ip6}/128 dev veth{k}",
            ]
    for other in c.nodes:
        if other.name == n.name:
            continue
        for block in other.pod_cidrs:
            via = other.ip6 if ":" in block else other.ip
            lines.append(f"route add {block} via {via} dev eth0")
    return lines


def pod_lines(c: ClusterPlan, node: NodePlan, ip: str | None, ip6: str | None) -> list[str]:
    """A pod: its address alone on eth0, default route via the node end of its veth."""
    lines = ["link set lo up", f"link set eth0 mtu {c.mtu} up"]
    if ip:
        lines += [
            f"addr add {ip}/32 dev eth0",
            f"route add default via {POD_GATEWAY[4]} dev eth0 onlink",
        ]
    if ip6:
        lines += [
            f"addr add {ip6}/128 dev eth0 nodad",
            f"route add default via {POD_GATEWAY[6]} dev eth0",
        ]
    return lines


def nat_table(c: ClusterPlan, n: NodePlan, family: int) -> str:
    """What the cluster's kube-proxy and CNI put in a node's nat table (one family), as
    `iptables-restore` input: Services first in POSTROUTING (kube-proxy's masquerade of what
    it marked), then the CNI's masquerade."""
    chains, hooks, rules = services.nat_rules(c, family)
    if c.cni == "flannel":
        chains.append(cni.FLANNEL_CHAIN)
        hooks.append(f"-A POSTROUTING -j {cni.FLANNEL_CHAIN}")
        rules += cni.flannel_rules(c, n, family)
    else:
        chains.append(cni.CALICO_CHAIN)
        hooks.append(f"-A POSTROUTING -j {cni.CALICO_CHAIN}")
        rules += cni.calico_rules(cni.default_pools(c), family)
    return "\n".join(["*nat", *(f":{ch} - [0:0]" for ch in chains), *hooks, *rules, "COMMIT", ""])


def start_cni(plan: LabPlan) -> None:
    """Calico clusters: their pools, and the felix stand-in the supervisor keeps running."""
    calico = [c for c in plan.clusters if c.cni == "calico"]
    for c in calico:
        cni.save_default_pools(plan.name, c)
    if calico:
        supervisor.register(
            state_dir(plan.name),
            cni.COMPONENT,
            plan.fabric_netns,  # it enters each node's namespace itself
            [sys.executable, "-m", "clusterlink.lab.cni", "--lab", plan.name],
        )


def _parallel(jobs: list[Callable[[], None]]) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()


def build(plan: LabPlan, progress: Callable[[str], None] = lambda _: None) -> None:
    raise_neighbour_limits()
    progress(f"creating {len(plan.namespaces())} namespaces")
    _run(["ip", "-batch", "-"], "".join(f"netns add {ns}\n" for ns in plan.namespaces()))
    # No duplicate address detection: every address is planned, and a link-local address
    # stays "tentative" (unusable for neighbour discovery) for a second or two after a link
    # comes up. Set before any link exists, so every interface inherits it.
    no_dad = {
        f"net/ipv6/conf/{c}/{k}": "0"
        for c in ("all", "default")
        for k in ("accept_dad", "dad_transmits")
    }
    for ns in plan.namespaces():
        sysctls(ns, no_dad)
    progress("wiring the fabric")
    batch(plan.fabric_netns, fabric_lines(plan))
    sysctls(plan.fabric_netns, {"net/ipv4/ip_forward": "1", "net/ipv6/conf/all/forwarding": "1"})
    for family, tool in ((4, "iptables-restore"), (6, "ip6tables-restore")):
        _run(netns.command(plan.fabric_netns, [tool, "-w", "5"]), isolation_rules(plan, family))
    progress("configuring nodes")
    jobs: list[Callable[[], None]] = []
    for c in plan.clusters:
        for n in c.nodes:

            def node_job(c: ClusterPlan = c, n: NodePlan = n) -> None:
                batch(n.netns, node_lines(c, n))
                sysctls(n.netns, {"net/ipv4/ip_forward": "1", "net/ipv6/conf/all/forwarding": "1"})
                for family in c.families:
                    tool = "iptables-restore" if family == 4 else "ip6tables-restore"
                    _run(netns.command(n.netns, [tool, "-w", "5"]), nat_table(c, n, family))

            jobs.append(node_job)
    _parallel(jobs)
    progress("configuring pods")
    pod_jobs: list[Callable[[], None]] = []
    for c in plan.clusters:
        nodes = {n.name: n for n in c.nodes}
        for p in c.pods:
            lines = pod_lines(c, nodes[p.node], p.ip, p.ip6)
            pod_jobs.append(functools.partial(batch, p.netns, lines))
    _parallel(pod_jobs)
    start_cni(plan)


def kill_processes(namespaces: list[str], grace: float = 3.0) -> int:
    """Stop every process living in these namespaces (TERM, then KILL)."""
    pids: set[int] = set()
    for ns in namespaces:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        pids |= {int(p) for p in out.split()}
    pids.discard(os.getpid())
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if alive(p)}
        time.sleep(0.05)
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    return len(pids)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def destroy(namespaces: list[str]) -> None:
    if namespaces:
        subprocess.run(
            ["ip", "-force", "-batch", "-"],
            input="".join(f"netns del {ns}\n" for ns in namespaces),
            capture_output=True,
            text=True,
        )
