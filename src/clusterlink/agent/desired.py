"""What the kernel should hold for a NodeConfig: devices (with facts only the node knows -
its bind NIC's MTU and tunnel source address), entries, rules, sysctls, firewall rules."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from clusterlink import constants as C
from clusterlink.agent.firewall import Rule
from clusterlink.agent.kernel import Entries, Link, VxlanSpec
from clusterlink.agent.prefixmaps import PrefixMap
from clusterlink.api.nodeconfig import NodeConfigSpec


@dataclass(slots=True)
class Desired:
    devices: dict[str, VxlanSpec] = field(default_factory=dict)
    entries: Entries = field(default_factory=Entries)
    rule_families: set[int] = field(default_factory=set)
    sysctls: dict[str, str] = field(default_factory=dict)
    firewall: dict[int, set[Rule]] = field(default_factory=lambda: {4: set(), 6: set()})
    prefix_maps: dict[int, set[PrefixMap]] = field(default_factory=lambda: {4: set(), 6: set()})
    wg_devices: set[str] = field(default_factory=set)  # made by the WireGuard port, not here

    @property
    def all_devices(self) -> set[str]:
        return set(self.devices) | self.wg_devices


def family_of_device(name: str) -> int:
    return 6 if name.endswith("-6") else 4


def family_of_rule(rule: str) -> int:
    """ip6tables for a rule with an IPv6 address or on one of our IPv6 devices (the MSS
    clamp, `-o vx-bridge-6 ...`, has no address); iptables otherwise."""
    if ":" in rule:
        return 6
    words = rule.split()
    on_v6 = any(
        flag in ("-i", "-o")
        and dev in (*C.OWNED_DEVICES, *C.WG_DEVICES)
        and family_of_device(dev) == 6
        for flag, dev in itertools.pairwise(words)
    )
    return 6 if on_v6 else 4


def desired_state(
    spec: NodeConfigSpec, links: dict[str, Link], entries: Entries | None = None
) -> tuple[Desired, list[str]]:
    """Desired state, plus errors for devices that cannot be built here (and are left out,
    with everything that hangs on them). `entries`: `Entries.of(spec)`, if the caller has it."""
    out = Desired()
    errors: list[str] = []
    for dev in spec.devices:
        family = family_of_device(dev.name)
        bind = links.get(dev.bind_dev)
        if bind is None:
            errors.append(f"{dev.name}: bind device {dev.bind_dev} not found")
            continue
        local = next((a.split("/")[0] for a in bind.addrs if (":" in a) == (family == 6)), None)
        if local is None:
            errors.append(f"{dev.name}: {dev.bind_dev} has no IPv{family} address for the tunnel")
            continue
        out.devices[dev.name] = VxlanSpec(
            name=dev.name,
            addr=dev.addr,
            mac=dev.mac,
            bind_dev=dev.bind_dev,
            vni=dev.id,
            port=dev.port,
            mtu=dev.mtu or bind.mtu - C.VXLAN_OVERHEAD[family],
            local=local,
        )
        _tunnel_device(out, dev.name, dev.bind_dev)
    for wg in spec.wireguard:
        _tunnel_device(out, wg.name, wg.bind_dev)
        out.wg_devices.add(wg.name)
    out.entries = entries if entries is not None else Entries.of(spec)
    if len(out.devices) < len(spec.devices):  # a device was left out: so are its entries
        out.entries = out.entries.on(out.all_devices)
    for r in spec.iptables:
        family = family_of_rule(r.rule)
        out.firewall[family].add(Rule(family, r.table, r.chain, r.rule))
    for m in spec.address_maps:
        family = 6 if ":" in m.cidr else 4
        out.prefix_maps[family].add(PrefixMap(family, m.dev, m.cidr, m.global_cidr))
    return out, errors


def _tunnel_device(out: Desired, name: str, bind_dev: str) -> None:
    """What any of our tunnel devices (vx or wg) needs besides itself: the policy rule of its
    family, forwarding, loose rp_filter, and FORWARD accepted both ways."""
    family = family_of_device(name)
    out.rule_families.add(family)
    if family == 4:
        out.sysctls["net/ipv4/ip_forward"] = "1"
        # Loose reverse-path filtering: replies may arrive on another device than the
        # route back (pod traffic enters over vx, leaves over the CNI, and vice versa).
        out.sysctls[f"net/ipv4/conf/{name}/rp_filter"] = "2"
        out.sysctls[f"net/ipv4/conf/{bind_dev}/rp_filter"] = "2"
    else:
        out.sysctls["net/ipv6/conf/all/forwarding"] = "1"
        out.sysctls[f"net/ipv6/conf/{name}/disable_ipv6"] = "0"
    for direction in ("-i", "-o"):
        out.firewall[family].add(Rule(family, "filter", "FORWARD", f"{direction} {name} -j ACCEPT"))
