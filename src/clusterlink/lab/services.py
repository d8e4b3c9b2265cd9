"""The lab's Services, programmed the way kube-proxy's iptables mode does it.

On every node of a cluster, per family, in lab-owned chains of the nat table:

- `CLAB-SERVICES`, reached from PREROUTING (traffic from pods and from other nodes) and OUTPUT
  (the node's own processes): one rule per Service matching its ClusterIP and TCP port, jumping
  to the Service's chain;
- `CLAB-SVC-<n>`: a random choice among backends (`-m statistic --probability 1/k` for the
  k-th last, as kube-proxy writes it), each a `CLAB-SEP-<n>-<i>` chain that marks hairpin
  traffic (a backend reaching itself through its Service) and DNATs to the backend's port;
- `CLAB-KUBE-POSTROUTING` (POSTROUTING): masquerades what was marked (0x4000, kube-proxy's
  mark).

Like kube-proxy without `--cluster-cidr`, traffic from outside the cluster's pod CIDRs is not
masqueraded: the backend sees whatever source reached the node. Nothing here knows clusterlink.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from clusterlink.lab.topology import ClusterPlan, LabPlan

KUBE_MARK_MASQ = "0x4000/0x4000"


def _of_family(ips: list[str], family: int) -> str | None:
    return next((ip for ip in ips if (":" in ip) == (family == 6)), None)


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def nat_rules(cluster: ClusterPlan, family: int) -> tuple[list[str], list[str], list[str]]:
    """(chain declarations, hooks into built-in chains, chain rules) for one node of the
    cluster (every node gets the same) in `iptables-restore` syntax for the nat table."""
    host = 32 if family == 4 else 128
    pods = {p.name: p for p in cluster.pods}
    chains = ["CLAB-SERVICES", "CLAB-KUBE-POSTROUTING", "CLAB-KUBE-MARK-MASQ"]
    hooks = [
        "-A PREROUTING -j CLAB-SERVICES",
        "-A OUTPUT -j CLAB-SERVICES",
        "-A POSTROUTING -j CLAB-KUBE-POSTROUTING",
    ]
    rules = [
        f"-A CLAB-KUBE-MARK-MASQ -j MARK --set-xmark {KUBE_MARK_MASQ}",
        f"-A CLAB-KUBE-POSTROUTING -m mark ! --mark {KUBE_MARK_MASQ} -j RETURN",
        "-A CLAB-KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
        "-A CLAB-KUBE-POSTROUTING -j MASQUERADE --random-fully",
    ]
    for n, svc in enumerate(cluster.services):
        cluster_ip = _of_family(svc.ips, family)
        backends = [
            ip
            for ip in (
                (pods[b].ip if family == 4 else pods[b].ip6) for b in svc.backends if b in pods
            )
            if ip
        ]
        if cluster_ip is None or not backends:
            continue
        svc_chain = f"CLAB-SVC-{n}"
        chains.append(svc_chain)
        rules.append(
            f"-A CLAB-SERVICES -d {cluster_ip}/{host} -p tcp -m tcp --dport {svc.port} "
            f"-j {svc_chain}"
        )
        for i, ip in enumerate(backends):
            sep = f"CLAB-SEP-{n}-{i}"
            chains.append(sep)
            left = len(backends) - i
            if left > 1:
                rules.append(
                    f"-A {svc_chain} -m statistic --mode random --probability "
                    f"{1 / left:.11f} -j {sep}"
                )
            else:
                rules.append(f"-A {svc_chain} -j {sep}")
            rules += [
                f"-A {sep} -s {ip}/{host} -j CLAB-KUBE-MARK-MASQ",
                f"-A {sep} -p tcp -m tcp -j DNAT --to-destination {_endpoint(ip, svc.port)}",
            ]
    return chains, hooks, rules


def services_status(plan: LabPlan) -> list[dict[str, Any]]:
    """`kosmosctl lab status -o json`'s `services`: backends as `lab exec` names them."""
    out = []
    for c in plan.clusters:
        pods = {p.name: p for p in c.pods}
        for svc in c.services:
            out.append(
                {
                    "cluster": c.name,
                    "name": svc.name,
                    "port": svc.port,
                    "ips": sorted(svc.ips, key=lambda ip: ipaddress.ip_address(ip).version),
                    "backends": [pods[b].ref(c.name) for b in svc.backends],
                }
            )
    return out


# A backend (argv[1]: the port, both families): answers each connection with the source
# address it saw, then closes. The e2e packet matrix runs the same server everywhere.
BACKEND = """
import socket, sys, threading
def serve(fam, host):
    s = socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, int(sys.argv[1]))); s.listen(64)
    while True:
        c, peer = s.accept()
        try: c.sendall(peer[0].encode())
        finally: c.close()
for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    threading.Thread(target=serve, args=(fam, host), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""
_CLIENT = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    print(s.recv(100).decode())
except OSError as exc:
    print(f"error: {exc}"); sys.exit(1)
"""


@dataclass(frozen=True)
class ServiceCheck:
    service: str  # cluster/name
    address: str  # ClusterIP:port
    client: str  # the pod that connected, as `lab exec` names it
    ok: bool
    seen: str  # the source address the backend saw, or the error

    def line(self) -> str:
        if self.ok:
            return f"{self.service} {self.address} from {self.client}: answered; the backend saw {self.seen}"
        return f"{self.service} {self.address} from {self.client}: FAILED ({self.seen})"


def _connect(netns: str, ip: str, port: int, timeout: float) -> tuple[bool, str]:
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", _CLIENT, ip, str(port)]
    result = subprocess.run([*argv, str(timeout)], capture_output=True, text=True)
    return result.returncode == 0, result.stdout.strip() or result.stderr.strip()


def _serve(netns: str, port: int) -> subprocess.Popen[str]:
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", BACKEND, str(port)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def check_across(plan: LabPlan, timeout: float = 3.0) -> list[ServiceCheck]:
    """Every Service, reached by ClusterIP from the first pod of every other cluster, in
    each family both have: real TCP connections to backends that report who called."""
    servers: list[subprocess.Popen[str]] = []
    try:
        for c in plan.clusters:
            pods = {p.name: p for p in c.pods}
            servers += [_serve(pods[b].netns, s.port) for s in c.services for b in s.backends]
        for server in servers:
            assert server.stdout is not None
            server.stdout.readline()  # "ready"
        out = []
        for c in plan.clusters:
            for svc in c.services:
                for other in (o for o in plan.clusters if o.name != c.name and o.pods):
                    client = other.pods[0]
                    pod = client.ref(other.name)
                    for ip in svc.ips:
                        if (client.ip6 if ":" in ip else client.ip) is None:
                            continue
                        ok, seen = _connect(client.netns, ip, svc.port, timeout)
                        address = f"[{ip}]:{svc.port}" if ":" in ip else f"{ip}:{svc.port}"
                        out.append(ServiceCheck(f"{c.name}/{svc.name}", address, pod, ok, seen))
        return out
    finally:
        for server in servers:
            server.kill()
            server.wait()
