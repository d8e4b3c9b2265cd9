"""NAT rules (table nat, logical chains PREROUTING/POSTROUTING, `iptables -S` text).

Pod-to-pod traffic is never NATed: every rule here matches only the vx address pools or a
cluster's globalCIDRsMap.
"""

from __future__ import annotations

from clusterlink.api.nodeconfig import Device, Iptables
from clusterlink.planner.devices import BRIDGE_DEV
from clusterlink.planner.topology import ClusterView


def _rule(chain: str, rule: str) -> Iptables:
    return Iptables.trusted(table="nat", chain=chain, rule=rule)


def gateway_masquerade(cluster: ClusterView, devices: dict[str, Device]) -> list[Iptables]:
    """On the gateway of a gateway-mode cluster, per family it bridges:

    - host traffic of internal nodes (sourced from the vx-local pool) leaving over vx-bridge
      is hidden behind the gateway's bridge address;
    - traffic from remote bridge addresses forwarded into the cluster is hidden behind the
      gateway's own address, so internal nodes can answer without a route to the bridge pool.
    """
    rules = []
    for family, dev in BRIDGE_DEV.items():
        if dev not in devices:
            continue
        local, bridge = cluster.local_pool[family], cluster.bridge_pool[family]
        if local:
            rules.append(_rule("POSTROUTING", f"-s {local} -o {dev} -j MASQUERADE"))
        if bridge:
            rules.append(_rule("POSTROUTING", f"-s {bridge} -j MASQUERADE"))
    return rules


def global_map(cluster: ClusterView, devices: dict[str, Device]) -> list[Iptables]:
    """1:1 prefix translation for globalCIDRsMap on every bridge-set node of the cluster:
    inbound destinations global -> real, outbound sources real -> global (NETMAP both ways;
    Kosmos SNATs every source to the global network's first address)."""
    rules = []
    for real, glob in cluster.global_map.items():
        dev = BRIDGE_DEV[6 if ":" in real else 4]
        if dev not in devices:
            continue
        rules.append(_rule("PREROUTING", f"-d {glob} -i {dev} -j NETMAP --to {real}"))
        rules.append(_rule("POSTROUTING", f"-s {real} -o {dev} -j NETMAP --to {glob}"))
    return rules
