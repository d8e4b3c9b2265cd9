"""Fakes of the Kernel, Firewall and PrefixMaps ports: state in dicts, loud on what a kernel refuses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from clusterlink import constants as C
from clusterlink.agent.firewall import FamilyState, Rule, managed_chains
from clusterlink.agent.kernel import ArpKey, Entries, FdbKey, KernelError, Link, RouteKey, VxlanSpec
from clusterlink.agent.prefixmaps import PrefixMap
from clusterlink.agent.wgkeys import public_of
from clusterlink.agent.wireguard import DeviceState, PeerState, peer_state
from clusterlink.api.nodeconfig import WireGuardDevice, WireGuardPeer


class FakeKernel:
    def __init__(self, links: dict[str, Link] | None = None) -> None:
        self._links: dict[str, Link] = dict(links or {})
        self.routes: set[RouteKey] = set()
        self.fdbs: set[FdbKey] = set()
        self.arps: set[ArpKey] = set()
        self.rules: set[int] = set()
        self.sysctls: dict[str, str] = {}
        self.on_link_prefixes: dict[str, tuple[str, ...]] = {}  # NIC -> what `on_link` says
        self.written: set[RouteKey] = set()  # routes `change_entries` added: "proto 200"
        self.calls: list[str] = []  # every mutating call, for assertions
        self._next_index = 100

    def add_nic(self, name: str, addrs: tuple[str, ...], mtu: int = 1500) -> None:
        self._next_index += 1
        self._links[name] = Link(
            name, self._next_index, "veth", mtu, True, "02:00:00:00:00:01", addrs
        )

    def add_link(self, name: str, kind: str, mtu: int, addrs: tuple[str, ...]) -> None:
        """A link some other component made (a WireGuard device)."""
        if name in self._links:
            raise KernelError(f"{name}: File exists")
        self._next_index += 1
        self._links[name] = Link(name, self._next_index, kind, mtu, True, "", addrs)

    def links(self) -> dict[str, Link]:
        return dict(self._links)

    def retune_link(self, name: str, mtu: int, addrs: tuple[str, ...], up: bool = True) -> None:
        """A link's MTU, addresses and state set in place (its routes stay), or by hand."""
        link = self._links[name]
        self._links[name] = replace(link, mtu=mtu, addrs=addrs, up=up)

    def create_vxlan(self, spec: VxlanSpec) -> None:
        self.calls.append(f"create {spec.name}")
        if spec.name in self._links:
            raise KernelError(f"{spec.name}: File exists")
        if spec.bind_dev not in self._links:
            raise KernelError(f"{spec.name}: bind device {spec.bind_dev} does not exist")
        self._next_index += 1
        spec = replace(spec, learning=False, up=True)
        self._links[spec.name] = Link(
            spec.name, self._next_index, "vxlan", spec.mtu, True, spec.mac, (spec.addr,), spec
        )

    def delete_link(self, name: str) -> None:
        self.calls.append(f"delete {name}")
        self._links.pop(name, None)
        # The kernel drops everything that hung on the device.
        self.routes = {r for r in self.routes if r[2] != name}
        self.fdbs = {f for f in self.fdbs if f[2] != name}
        self.arps = {a for a in self.arps if a[2] != name}

    def entries(self, devices: Mapping[str, int]) -> Entries:
        names = set(devices)
        # On a device not ours (the NIC of a direct route) only the routes we wrote count.
        routes = frozenset(
            r
            for r in self.routes
            if r[2] in names or not r[2] or (r in self.written and r[2] not in C.OWNED_DEVICES)
        )
        return Entries(routes, frozenset(self.fdbs), frozenset(self.arps)).on(names)

    def change_entries(self, remove: Entries, add: Entries) -> list[str]:
        self.calls.append(f"entries -{len(remove)} +{len(add)}")
        self.routes -= remove.routes
        self.fdbs -= remove.fdbs
        self.arps -= remove.arps
        errors = []
        for kind, store, items in (("fdb", self.fdbs, add.fdbs), ("neigh", self.arps, add.arps)):
            for item in items:
                if self._down(item[2]):
                    errors.append(f"{kind} {item}: device {item[2]} missing or down")
                    continue
                store.add(item)
        for route in add.routes:
            if route[2] and self._down(route[2]):  # a throw route ("" device) needs none
                errors.append(f"route {route}: device {route[2]} missing or down")
                continue
            # `ip route replace`: one route per destination (a new MTU retunes it in place)
            self.routes = {r for r in self.routes if r[0] != route[0]}
            self.routes.add(route)
            self.written.add(route)
        return errors

    def _down(self, dev: str) -> bool:
        link = self._links.get(dev)
        return link is None or not link.up

    def rule_families(self) -> set[int]:
        return set(self.rules)

    def add_rule(self, family: int) -> None:
        self.calls.append(f"rule +{family}")
        self.rules.add(family)

    def delete_rule(self, family: int) -> None:
        self.calls.append(f"rule -{family}")
        self.rules.discard(family)

    def get_sysctl(self, key: str) -> str | None:
        return self.sysctls.get(key, "0")

    def set_sysctl(self, key: str, value: str) -> None:
        self.calls.append(f"sysctl {key}={value}")
        self.sysctls[key] = value

    def on_link(self, dev: str) -> tuple[str, ...]:
        return self.on_link_prefixes.get(dev, ()) if dev in self._links else ()

    def close(self) -> None:
        pass


class FakeFirewall:
    """Our chains per family as plain sets; `installed` families have chains and jumps."""

    def __init__(self) -> None:
        self.state: dict[int, FamilyState] = {4: FamilyState(), 6: FamilyState()}
        self.calls: list[str] = []

    def observe(self) -> dict[int, FamilyState]:
        return {
            f: FamilyState(set(s.rules), set(s.chains), set(s.good_jumps))
            for f, s in self.state.items()
        }

    def write(self, family: int, rules: set[Rule]) -> None:
        self.calls.append(f"write {family} {len(rules)}")
        managed = managed_chains(rules)
        self.state[family] = FamilyState(set(rules), set(managed), set(managed))

    def teardown(self, family: int) -> None:
        self.calls.append(f"teardown {family}")
        self.state[family] = FamilyState()


class FakePrefixMaps:
    """Our nft tables per family as plain sets."""

    def __init__(self) -> None:
        self.state: dict[int, set[PrefixMap]] = {4: set(), 6: set()}
        self.calls: list[str] = []

    def observe(self) -> dict[int, set[PrefixMap]]:
        return {f: set(m) for f, m in self.state.items()}

    def write(self, family: int, maps: set[PrefixMap]) -> None:
        self.calls.append(f"write {family} {len(maps)}")
        self.state[family] = set(maps)

    def teardown(self, family: int) -> None:
        self.calls.append(f"teardown {family}")
        self.state[family] = set()


class FakeWireGuard:
    """wg devices as dicts; their links live in the FakeKernel (routes hang on them, and a
    link deleted by hand takes its device with it, as wireguard-go exits with its TUN)."""

    def __init__(self, kernel: FakeKernel, implementation: str = "wireguard-go") -> None:
        self.kernel = kernel
        self.implementation = implementation
        self.state: dict[str, DeviceState] = {}
        self.calls: list[str] = []

    def observe(self, name: str) -> DeviceState | None:
        if name not in self.kernel.links():
            self.state.pop(name, None)
        return self.state.get(name)

    def create(self, device: WireGuardDevice) -> None:
        self.calls.append(f"create {device.name}")
        self.kernel.add_link(device.name, "tun", device.mtu or 1420, (device.addr,))
        self.state[device.name] = DeviceState()

    def delete(self, name: str) -> None:
        self.calls.append(f"delete {name}")
        self.kernel.delete_link(name)
        self.state.pop(name, None)

    def tune(self, device: WireGuardDevice, link: Link) -> None:
        self.calls.append(f"tune {device.name}")
        self.kernel.retune_link(device.name, device.mtu or link.mtu, (device.addr,))

    def configure(
        self,
        name: str,
        private_key: str | None,
        listen_port: int | None,
        peers: Iterable[WireGuardPeer],
        remove: Iterable[str],
    ) -> None:
        have = self.observe(name)
        if have is None:
            raise KernelError(f"{name}: no such WireGuard device")
        table: dict[str, PeerState] = dict(have.peers)
        for key in remove:
            table.pop(key, None)
        added = list(peers)
        for peer in added:
            table[peer.public_key] = peer_state(peer)
        public = public_of(private_key) if private_key is not None else have.public_key
        port = listen_port if listen_port is not None else have.listen_port
        self.calls.append(f"configure {name} +{len(added)}")
        self.state[name] = DeviceState(port, public, table)

    def remove_peer_by_hand(self, name: str, key: str) -> None:
        """Drift: `wg set DEV peer KEY remove` behind the agent's back."""
        have = self.state[name]
        self.state[name] = DeviceState(
            have.listen_port, have.public_key, {k: p for k, p in have.peers.items() if k != key}
        )
