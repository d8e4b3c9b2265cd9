"""Which vx devices each node owns, with addresses (collisions resolved), MACs and MTUs."""

from __future__ import annotations

import ipaddress
from collections import defaultdict

from clusterlink import constants as C
from clusterlink.api.nodeconfig import Device
from clusterlink.planner.addressing import (
    address_text,
    derive_address,
    device_mac,
    device_mtu,
    next_free,
    pool_prefixlen,
)
from clusterlink.planner.findings import Finding
from clusterlink.planner.topology import FederationView, NodeView

BRIDGE_DEV = {4: C.VX_BRIDGE, 6: C.VX_BRIDGE6}
LOCAL_DEV = {4: C.VX_LOCAL, 6: C.VX_LOCAL6}

# node name -> device name -> Device
DeviceMap = dict[str, dict[str, Device]]


def wanted_devices(topo: FederationView, node: NodeView) -> list[tuple[str, int, str]]:
    """(device name, family, pool) for every device the node should own."""
    cluster = topo.clusters[node.cluster]
    out = []
    for family in sorted(node.ips):
        if topo.in_bridge_set(node) and cluster.bridge_pool[family]:
            out.append((BRIDGE_DEV[family], family, cluster.bridge_pool[family]))
        if cluster.mode == "gateway" and cluster.local_pool[family]:
            out.append((LOCAL_DEV[family], family, cluster.local_pool[family]))
    return out


def plan_devices(topo: FederationView) -> tuple[DeviceMap, list[Finding]]:
    """Devices for every node.

    Addresses are unique per VXLAN mesh: vx-bridge addresses across the whole federation,
    vx-local addresses within a cluster. Where two nodes derive the same address, the first by
    (cluster, node) keeps it and the others take the next free addresses of their pool - a
    deterministic choice, reported as a finding (Kosmos silently collides).
    """
    findings: list[Finding] = []
    # mesh key -> address value -> [(node, device, pool)] in (cluster, node) order
    meshes: dict[tuple[str, str], dict[int, list[tuple[NodeView, str, str]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    ordered = sorted(topo.nodes.values(), key=lambda n: (n.cluster, n.name))
    for node in ordered:
        for dev, family, pool in wanted_devices(topo, node):
            mesh = (dev, "" if dev in BRIDGE_DEV.values() else node.cluster)
            addr = derive_address(pool, node.ips[family])
            meshes[mesh][int(addr.ip)].append((node, dev, pool))

    addresses: dict[tuple[str, str], str] = {}  # (node, device) -> "addr/prefix"
    for mesh in sorted(meshes):
        by_addr = meshes[mesh]
        taken = set(by_addr)
        for value in sorted(by_addr):
            owners = by_addr[value]
            for i, (node, dev, pool) in enumerate(owners):
                prefix = pool_prefixlen(pool)
                chosen = value
                if i > 0:
                    chosen = next_free(pool, value, taken)
                    taken.add(chosen)
                    findings.append(
                        Finding(
                            "warning",
                            f"ClusterNode/{node.name}",
                            f"{dev} address {ipaddress.ip_address(value)} is also derived for "
                            f"{owners[0][0].name}; using {ipaddress.ip_address(chosen)} instead",
                        )
                    )
                addresses[(node.name, dev)] = f"{address_text(chosen)}/{prefix}"

    devices: DeviceMap = {}
    for node in ordered:
        mine: dict[str, Device] = {}
        for dev, family, _pool in wanted_devices(topo, node):
            mine[dev] = Device.trusted(
                type="vxlan",
                name=dev,
                addr=addresses[(node.name, dev)],
                mac=device_mac(node.cluster, node.node, dev),
                bind_dev=node.interface,
                id=C.VNI[dev],
                port=C.PORT[dev],
                mtu=device_mtu(node.mtu, family),
            )
        devices[node.name] = dict(sorted(mine.items()))
    return devices, findings


def device_ip(device: Device) -> str:
    return device.addr.split("/", 1)[0]
