"""NAT rules (table nat, logical chains PREROUTING/POSTROUTING, `iptables -S` text).

Pod-to-pod traffic is never NATed: every rule here matches only the vx address pools, a
cluster's globalCIDRsMap, remote Service traffic at a P2P service node, or exempts pod
traffic from the CNI's own masquerade.

The agent writes a chain's rules in sorted text order, so no rule here may depend on another
one of the same chain coming first: the matches are disjoint by construction (said per rule).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from clusterlink import constants as C
from clusterlink.api.net import cidr_family
from clusterlink.api.nodeconfig import AddressMap, Iptables
from clusterlink.planner.devices import LOCAL_DEV, bridge_devices
from clusterlink.planner.topology import ClusterView, NodeView

CALICO = "calico"  # its IPPools carry the exceptions (written by the member controller)
MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}
Devices = Mapping[str, object]  # the node's devices by name; only names are read here


def _rule(chain: str, rule: str) -> Iptables:
    return Iptables.trusted(table="nat", chain=chain, rule=rule)


def gateway_masquerade(cluster: ClusterView, devices: Devices) -> list[Iptables]:
    """On the gateway of a gateway-mode cluster, per family it bridges:

    - host traffic of internal nodes (sourced from the vx-local pool) leaving over vx-bridge
      is hidden behind the gateway's bridge address;
    - traffic from remote bridge addresses forwarded into the cluster is hidden behind the
      gateway's own address, so internal nodes can answer without a route to the bridge pool.
    """
    rules = []
    for family in (4, 6):
        devs = bridge_devices(family, devices)
        if not devs:
            continue
        local, bridge = cluster.local_pool[family], cluster.bridge_pool[family]
        if local:
            rules += [_rule("POSTROUTING", f"-s {local} -o {dev} -j MASQUERADE") for dev in devs]
        if bridge:
            rules.append(_rule("POSTROUTING", f"-s {bridge} -j MASQUERADE"))
    return rules


def global_map(cluster: ClusterView, devices: Devices) -> list[Iptables]:
    """1:1 prefix translation for globalCIDRsMap on every bridge-set node of the cluster:
    inbound destinations global -> real, outbound sources real -> global (NETMAP both ways;
    Kosmos SNATs every source to the global network's first address). Service CIDRs are
    left to `service_address_maps`: NETMAP would end the nat table before kube-proxy."""
    rules = []
    for real, glob in cluster.global_map.items():
        if real in cluster.service_cidrs:
            continue
        for dev in bridge_devices(6 if ":" in real else 4, devices):
            rules.append(_rule("PREROUTING", f"-d {glob} -i {dev} -j NETMAP --to {real}"))
            rules.append(_rule("POSTROUTING", f"-s {real} -o {dev} -j NETMAP --to {glob}"))
    return rules


def service_address_maps(cluster: ClusterView, devices: Devices) -> list[AddressMap]:
    """Service CIDRs in globalCIDRsMap, on every bridge-set node of the cluster: stateless
    global -> real for arriving destinations (before conntrack, so kube-proxy DNATs the real
    ClusterIP), real -> global for leaving sources (the replies, after every NAT)."""
    out = []
    for real, glob in cluster.global_map.items():
        if real not in cluster.service_cidrs:
            continue
        for dev in bridge_devices(cidr_family(real), devices):
            out.append(AddressMap.trusted(dev=dev, cidr=real, global_cidr=glob))
    return out


def _mark(bit: int) -> str:
    return f"0x{bit:x}/0x{bit:x}"


def service_masquerade(cluster: ClusterView, node: NodeView, devices: Devices) -> list[Iptables]:
    """On a P2P cluster's service node: remote traffic to the cluster's Service CIDRs arrives
    over vx-bridge, kube-proxy sends it to a backend that may live on another node, and that
    node would answer the remote pod straight over its own vx-bridge - past the conntrack
    entry that holds the DNAT. So the service node marks such connections (nat PREROUTING,
    first packet) and masquerades them on the way to the backend: the reply comes back
    through it. Backends on the node itself need no masquerade (the reply leaves through
    this node anyway) and keep the remote pod's address when the node has one pod block in
    that family. The MARK matches the real Service CIDR: a global one is rewritten to it
    before nat (`service_address_maps`), and the global map's NETMAP leaves Service CIDRs
    alone, so no two rules here match one packet."""
    rules = []
    for family in (4, 6):
        devs = bridge_devices(family, devices)
        cidrs = [c for c in cluster.service_cidrs if cidr_family(c) == family]
        if not cidrs or not devs:
            continue
        mark = _mark(C.MARK_SERVICE_MASQ)
        for real in cidrs:  # a global Service CIDR is rewritten to the real one before nat
            rules += [
                _rule("PREROUTING", f"-d {real} -i {dev} -j MARK --set-xmark {mark}")
                for dev in devs
            ]
        blocks = [b for b in node.pod_cidrs if cidr_family(b) == family]
        # With one block, "not to my own pods"; else "not multicast" (always true here):
        # either way the text names the family (the agent picks ip6tables by the address).
        dst = blocks[0] if len(blocks) == 1 else MULTICAST[family]
        rules.append(_rule("POSTROUTING", f"! -d {dst} -m mark --mark {mark} -j MASQUERADE"))
    return rules


def _overlaps_map(cluster: ClusterView, cidr: str) -> bool:
    net = ipaddress.ip_network(cidr)
    return any(net.overlaps(ipaddress.ip_network(k)) for k in cluster.global_map)


def cni_exemptions(
    cluster: ClusterView, node: NodeView, devices: Devices, *, gateway: bool
) -> list[Iptables]:
    """Keep the CNI's own masquerade (flannel's --ip-masq, Cilium's, any but Calico, whose
    IPPools carry the exceptions) off cross-cluster pod traffic: ACCEPT in nat POSTROUTING,
    ahead of the CNI's rules, for pod sources leaving over our devices (bridge-set nodes: pod
    CIDRs the global map does not translate - its NETMAP is the NAT for those; internal
    nodes: every pod CIDR, toward the gateway). On a gateway-mode gateway also traffic from
    the tunnel to internal pods, which flannel masquerades as "from outside the cluster":
    marked when it arrives (not from the bridge pool: that traffic is remote host traffic the
    gateway masquerades on purpose) and accepted when it leaves."""
    if cluster.cni == CALICO:
        return []
    pods = cluster.pod_cidrs or node.pod_cidrs
    rules = []
    for family in (4, 6):
        bridges, local = bridge_devices(family, devices), LOCAL_DEV[family]
        mine = [c for c in pods if cidr_family(c) == family]
        if bridges:
            for cidr in mine:
                if not _overlaps_map(cluster, cidr):
                    rules += [
                        _rule("POSTROUTING", f"-s {cidr} -o {bridge} -j ACCEPT")
                        for bridge in bridges
                    ]
            if gateway and cluster.bridge_pool[family]:
                mark = _mark(C.MARK_FROM_TUNNEL)
                pool = cluster.bridge_pool[family]
                rules += [
                    _rule("PREROUTING", f"! -s {pool} -i {bridge} -j MARK --set-xmark {mark}")
                    for bridge in bridges
                ]
                rules.append(_rule("POSTROUTING", f"! -s {pool} -m mark --mark {mark} -j ACCEPT"))
        elif local in devices:
            rules += [_rule("POSTROUTING", f"-s {cidr} -o {local} -j ACCEPT") for cidr in mine]
    return rules
