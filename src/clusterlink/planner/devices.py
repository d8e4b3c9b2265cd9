"""Which vx and wg devices each node owns, with addresses (collisions resolved), MACs, MTUs."""

from __future__ import annotations

import ipaddress
from collections import defaultdict

from clusterlink import constants as C
from clusterlink.api.nodeconfig import Device, WireGuardDevice
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
WG_DEV = {4: C.WG_BRIDGE, 6: C.WG_BRIDGE6}

# node name -> device name -> Device (vx) or WireGuardDevice (wg, peers filled in by the plan)
AnyDevice = Device | WireGuardDevice
DeviceMap = dict[str, dict[str, AnyDevice]]


def bridge_devices(family: int, devices: object) -> list[str]:
    """The cross-cluster devices of a family a node owns: vx-bridge, wg-bridge, or both (an
    encrypted cluster that allows plaintext to unencrypted ones)."""
    return [d for d in (BRIDGE_DEV[family], WG_DEV[family]) if d in devices]  # type: ignore[operator]


def wanted_devices(
    topo: FederationView, node: NodeView, keeps_vxlan: set[str] | None = None
) -> list[tuple[str, int, str]]:
    """(device name, family, pool) for every device the node should own. A bridge-set node
    of an encrypted cluster owns wg-bridge, and vx-bridge only when it links some cluster in
    plaintext (`keeps_vxlan`)."""
    cluster = topo.clusters[node.cluster]
    out = []
    for family in sorted(node.ips):
        if topo.in_bridge_set(node) and cluster.bridge_pool[family]:
            if not cluster.encrypted or node.cluster in (keeps_vxlan or set()):
                out.append((BRIDGE_DEV[family], family, cluster.bridge_pool[family]))
            if cluster.encrypted:
                out.append((WG_DEV[family], family, cluster.bridge_pool[family]))
        if cluster.mode == "gateway" and cluster.local_pool[family]:
            out.append((LOCAL_DEV[family], family, cluster.local_pool[family]))
    return out


def plan_devices(
    topo: FederationView, keeps_vxlan: set[str] | None = None
) -> tuple[DeviceMap, list[Finding]]:
    """Devices for every node.

    Addresses are unique per VXLAN mesh: vx-bridge addresses across the whole federation,
    vx-local addresses within a cluster. Where two nodes derive the same address, the first by
    (cluster, node) keeps it and the others take the next free addresses of their pool - a
    deterministic choice, reported as a finding (Kosmos silently collides). wg-bridge shares
    vx-bridge's pool and uniqueness (a node with both takes the next free one for wg-bridge).
    """
    findings: list[Finding] = []
    # mesh key -> address value -> [(node, device, pool)] in (cluster, node) order
    meshes: dict[tuple[str, str], dict[int, list[tuple[NodeView, str, str]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    ordered = sorted(topo.nodes.values(), key=lambda n: (n.cluster, n.name))
    for node in ordered:
        for dev, family, pool in wanted_devices(topo, node, keeps_vxlan):
            mesh, value = derived(node, dev, family, pool)
            meshes[mesh][value].append((node, dev, pool))

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
                    if owners[0][0] is node:  # its own vx-bridge: no news
                        addresses[(node.name, dev)] = f"{ipaddress.ip_address(chosen)}/{prefix}"
                        continue
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
        wanted = wanted_devices(topo, node, keeps_vxlan)
        devices[node.name] = node_devices(
            node, [(d, f, addresses[(node.name, d)]) for d, f, _ in wanted]
        )
    return devices, findings


MeshKey = tuple[str, str]  # (vx-bridge(-6), "") federation-wide; (vx-local(-6), cluster)


def derived(node: NodeView, dev: str, family: int, pool: str) -> tuple[MeshKey, int]:
    """The address mesh a device belongs to (addresses are unique within it) and the address
    it derives there, before collisions are resolved."""
    bridge = dev in BRIDGE_DEV.values() or dev in WG_DEV.values()
    mesh = (BRIDGE_DEV[family] if bridge else dev, "" if bridge else node.cluster)
    return mesh, int(derive_address(pool, node.ips[family]).ip)


def derived_text(pool: str, value: int) -> str:
    """A derived address as a device carries it ("addr/prefix")."""
    return f"{address_text(value)}/{pool_prefixlen(pool)}"


def node_devices(node: NodeView, wanted: list[tuple[str, int, str]]) -> dict[str, AnyDevice]:
    """The devices of a node from (device name, family, "addr/prefix") of each it owns."""
    mine: dict[str, AnyDevice] = {}
    for dev, family, addr in wanted:
        if dev in WG_DEV.values():
            mine[dev] = WireGuardDevice.trusted(
                name=dev,
                addr=addr,
                listen_port=C.WG_PORT[dev],
                bind_dev=node.interface,
                mtu=device_mtu(node.mtu, family),  # the effective MTU: - 60 / - 80
                peers=(),
            )
            continue
        mine[dev] = Device.trusted(
            type="vxlan",
            name=dev,
            addr=addr,
            mac=device_mac(node.cluster, node.node, dev),
            bind_dev=node.interface,
            id=C.VNI[dev],
            port=C.PORT[dev],
            mtu=device_mtu(node.mtu, family),
        )
    return dict(sorted(mine.items()))


def device_ip(device: AnyDevice) -> str:
    return device.addr.split("/", 1)[0]
