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
                    "backends": [
                        f"{c.name}/{pods[b].node}/{b.removeprefix(pods[b].node + '-')}"
                        for b in svc.backends
                    ],
                }
            )
    return out
