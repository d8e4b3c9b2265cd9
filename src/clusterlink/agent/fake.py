"""Fakes of the Kernel, Firewall and PrefixMaps ports: state in dicts, loud on what a kernel refuses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from clusterlink import constants as C
from clusterlink.agent.firewall import FamilyState, Rule, managed_chains
from clusterlink.agent.kernel import ArpKey, Entries, FdbKey, KernelError, Link, RouteKey, VxlanSpec
from clusterlink.agent.prefixmaps import PrefixMap


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

    def links(self) -> dict[str, Link]:
        return dict(self._links)

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
