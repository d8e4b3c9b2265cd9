"""`LinuxKernel`: the real adapter.

- links, addresses, rules: pyroute2 (a handful of objects, small diffs);
- routes, neighbours, FDB: read with the lean netlink reader (`netlink.py`) and written in
  one `ip -batch` and one `bridge -batch` run per change set (-force: one refused entry does
  not stop the rest; its error is reported). At 15,000 entries that is ~1x the kernel floor,
  where one pyroute2 call per entry is ~11x (reference/machine-probe.md §1);
- sysctls: /proc/sys, read and written from a thread inside the namespace.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
from collections.abc import Mapping
from typing import Any

from pyroute2 import IPRoute, NetlinkError
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD

from clusterlink import constants as C
from clusterlink.agent import netns
from clusterlink.agent.kernel import Entries, KernelError, Link, VxlanSpec
from clusterlink.agent.netlink import (
    AF_BRIDGE,
    AF_INET,
    AF_INET6,
    LINK_GROUPS,
    NUD_PERMANENT,
    ChangeFeed,
    Notifications,
    Reader,
)
from clusterlink.agent.onlink import on_link_prefixes

# Where sysctls are read and written. In a container /proc/sys is read-only unless privileged;
# the agent DaemonSet mounts the host's /proc/sys/net writable elsewhere and says where.
PROC_SYS = os.environ.get("CLUSTERLINK_PROC_SYS", "/proc/sys").rstrip("/")

_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
MAIN_TABLE = 254
_ABSENT = {errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL}


class LinuxKernel:
    def __init__(self, netns_name: str | None = None) -> None:
        if netns_name is not None and not netns.exists(netns_name):
            raise KernelError(f"network namespace {netns_name!r} does not exist")
        self.netns = netns_name
        # IPRoute(netns=...) and not IPRoute() inside setns: pyroute2 0.9 opens a new socket
        # for each calling thread, and one made under setns in thread A answers from the
        # *root* namespace when called from thread B (found the hard way). flags=0: never
        # create a missing namespace.
        self.ipr = IPRoute(netns=netns_name, flags=0) if netns_name else IPRoute()
        self.feed = ChangeFeed(netns_name)  # opened before any dump whose result we keep
        self.link_feed = Notifications(netns_name, LINK_GROUPS)
        self._links: dict[str, Link] | None = None
        self.reader = Reader(netns_name)
        self._cached: tuple[dict[str, int], Entries] | None = None

    def close(self) -> None:
        self.ipr.close()
        self.reader.close()
        self.feed.close()
        self.link_feed.close()

    # -- links --------------------------------------------------------------------------------

    def links(self) -> dict[str, Link]:
        """As the kernel holds them. The last dump is reused while the kernel has sent no
        link or address notification since: a pass asked twice (NIC detection, then
        reconcile), and decoding a handful of links through pyroute2 was a third of an
        agent's CPU in a 50 x 5 lab."""
        if self.link_feed.changed() or self._links is None:
            self._links = None
            self._links = self._dump_links()
        return dict(self._links)

    def _dump_links(self) -> dict[str, Link]:
        addrs: dict[int, list[str]] = {}
        for a in self.ipr.get_addr():
            if a["scope"] == 0:  # global
                addrs.setdefault(a["index"], []).append(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}")
        raw = list(self.ipr.get_links())
        names = {link["index"]: link.get("IFLA_IFNAME") for link in raw}
        out: dict[str, Link] = {}
        for link in raw:
            name = link.get("IFLA_IFNAME")
            info = link.get("IFLA_LINKINFO")
            kind = (info.get("IFLA_INFO_KIND") if info else None) or ""
            index = link["index"]
            up = bool(link["flags"] & 1)
            mtu = int(link.get("IFLA_MTU") or 0)
            mac = str(link.get("IFLA_ADDRESS") or "")
            vx = None
            if kind == "vxlan" and name in C.OWNED_DEVICES:
                data = info.get("IFLA_INFO_DATA")
                family_addrs = [
                    x for x in addrs.get(index, []) if (":" in x) == name.endswith("-6")
                ]
                vx = VxlanSpec(
                    name=name,
                    addr=family_addrs[0] if family_addrs else "",
                    mac=mac,
                    bind_dev=names.get(data.get("IFLA_VXLAN_LINK") or 0, ""),
                    vni=int(data.get("IFLA_VXLAN_ID") or 0),
                    port=int(data.get("IFLA_VXLAN_PORT") or 0),
                    mtu=mtu,
                    local=str(data.get("IFLA_VXLAN_LOCAL") or data.get("IFLA_VXLAN_LOCAL6") or ""),
                    learning=bool(data.get("IFLA_VXLAN_LEARNING")),
                    up=up,
                )
            carrier = bool(link["flags"] & 0x10000)  # IFF_LOWER_UP
            out[name] = Link(
                name, index, kind, mtu, up, mac, tuple(addrs.get(index, [])), vx, carrier
            )
        return out

    def link_state(self, name: str) -> tuple[bool, bool] | None:
        """(admin up, carrier) of one link, or None if it does not exist: one netlink request."""
        try:
            (link,) = self.ipr.link("get", ifname=name)
        except NetlinkError:
            return None
        flags = int(link["flags"])
        return bool(flags & 1), bool(flags & 0x10000)

    def create_vxlan(self, spec: VxlanSpec) -> None:
        self._cached = self._links = None
        bind = self.ipr.link_lookup(ifname=spec.bind_dev)
        if not bind:
            raise KernelError(f"{spec.name}: bind device {spec.bind_dev} does not exist")
        v6 = ":" in spec.local
        args: dict[str, Any] = {
            "ifname": spec.name,
            "kind": "vxlan",
            "vxlan_id": spec.vni,
            "vxlan_port": spec.port,
            "vxlan_learning": 0,
            "vxlan_link": bind[0],
            ("vxlan_local6" if v6 else "vxlan_local"): spec.local,
        }
        try:
            self.ipr.link("add", **args)
            index = self.ipr.link_lookup(ifname=spec.name)[0]
            # Up before any route: the kernel refuses routes through a down device.
            self.ipr.link("set", index=index, address=spec.mac, mtu=spec.mtu, state="up")
            if spec.addr:
                ip, prefix = spec.addr.split("/")
                flags = IFA_F_NODAD if ":" in ip else 0  # no DAD: the address is ours by plan
                self.ipr.addr("add", index=index, address=ip, prefixlen=int(prefix), flags=flags)
        except NetlinkError as exc:
            raise KernelError(f"{spec.name}: cannot create: {os.strerror(exc.code)}") from None

    def delete_link(self, name: str) -> None:
        self._cached = self._links = None
        try:
            self.ipr.link("del", ifname=name)
        except NetlinkError as exc:
            if exc.code not in _ABSENT:
                raise KernelError(f"{name}: cannot delete: {os.strerror(exc.code)}") from None

    # -- routes, neighbours, FDB --------------------------------------------------------------

    def entries(self, devices: Mapping[str, int]) -> Entries:
        """As the kernel holds them. The last dump is reused when the kernel has sent no
        notification about table 200 or these devices since (a no-op resync then costs no
        dump at all); anything else dumps again."""
        by_index = {index: name for name, index in devices.items()}
        changed = self.feed.changed(C.ROUTE_TABLE, set(by_index))
        if not changed and self._cached is not None and self._cached[0] == dict(devices):
            return self._cached[1]
        self._cached = None
        entries = self._dump(by_index)
        self._cached = (dict(devices), entries)
        return entries

    def _dump(self, by_index: dict[int, str]) -> Entries:
        devices = by_index.values()
        # Neighbours: only the families we have devices of (IPv6 devices end in -6). Routes:
        # both (a kernel-filtered dump of table 200), for throw routes hang on no device.
        families = sorted({AF_INET6 if n.endswith("-6") else AF_INET for n in devices})
        # Table 200 on our devices is ours whatever wrote it; on any other device (the NIC a
        # direct route leaves by) only what we wrote, proto 200.
        others: dict[int, str] | None = None
        routes: set[tuple[str, str, str, int]] = set()
        for family in (AF_INET, AF_INET6):
            for dst, gw, oif, mtu, proto in self.reader.routes(family, C.ROUTE_TABLE):
                if oif in by_index:
                    routes.add((dst, gw, by_index[oif], mtu))
                elif not gw:
                    routes.add((dst, "", "", 0))
                elif proto == C.ROUTE_PROTO:
                    if others is None:
                        others = self.reader.link_names()
                    name = others.get(oif, f"if{oif}")
                    if name not in C.OWNED_DEVICES:  # not on a device of ours left out
                        routes.add((dst, gw, name, mtu))
        arps = frozenset(
            (ip, mac, by_index[index])
            for family in families
            for ip, mac, index, state in self.reader.neighbours(family)
            if index in by_index and state & NUD_PERMANENT
        )
        fdbs = frozenset(
            (ip, mac, by_index[index])
            for ip, mac, index, _state in self.reader.neighbours(AF_BRIDGE)
            if index in by_index
        )
        return Entries(frozenset(routes), fdbs, arps)

    def change_entries(self, remove: Entries, add: Entries) -> list[str]:
        self._cached = None
        ip_lines = [
            f"route del {cidr} via {gw} dev {dev} table {C.ROUTE_TABLE}"
            if dev
            else f"route del throw {cidr} table {C.ROUTE_TABLE}"
            for cidr, gw, dev, _mtu in remove.routes
        ]
        ip_lines += [f"neigh del {ip} dev {dev}" for ip, _mac, dev in remove.arps]
        ip_lines += [
            f"neigh replace {ip} lladdr {mac} dev {dev} nud permanent" for ip, mac, dev in add.arps
        ]
        bridge_lines = [f"fdb del {mac} dev {dev} dst {ip} self" for ip, mac, dev in remove.fdbs]
        bridge_lines += [
            f"fdb append {mac} dev {dev} dst {ip} self permanent" for ip, mac, dev in add.fdbs
        ]
        # `replace` also retunes a route in place (its MTU changed): no gap in traffic.
        route_lines = [
            f"route replace {cidr} via {gw} dev {dev} onlink table {C.ROUTE_TABLE} "
            f"proto {C.ROUTE_PROTO}" + (f" mtu {mtu}" if mtu else "")
            if dev
            else f"route replace throw {cidr} table {C.ROUTE_TABLE} proto {C.ROUTE_PROTO}"
            for cidr, gw, dev, mtu in add.routes
        ]
        errors = self._batch("ip", ip_lines) + self._batch("bridge", bridge_lines)
        return errors + self._batch("ip", route_lines)

    def _batch(self, tool: str, lines: list[str]) -> list[str]:
        if not lines:
            return []
        argv = [tool, "-force", "-batch", "-"]
        if self.netns is not None:
            argv = [tool, "-n", self.netns, "-force", "-batch", "-"]
        proc = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True)
        return _batch_errors(proc.stderr, lines)

    # -- policy rule --------------------------------------------------------------------------

    def rule_families(self) -> set[int]:
        out = set()
        for family, af in _FAMILY.items():
            for rule in self.ipr.get_rules(family=af):
                table = rule.get("FRA_TABLE") or rule["table"]
                if table == C.ROUTE_TABLE and rule.get("FRA_PRIORITY") == C.RULE_PRIORITY:
                    out.add(family)
        return out

    def add_rule(self, family: int) -> None:
        try:
            self.ipr.rule(
                "add", table=C.ROUTE_TABLE, priority=C.RULE_PRIORITY, family=_FAMILY[family]
            )
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise KernelError(f"rule IPv{family}: {os.strerror(exc.code)}") from None

    def delete_rule(self, family: int) -> None:
        try:
            self.ipr.rule(
                "del", table=C.ROUTE_TABLE, priority=C.RULE_PRIORITY, family=_FAMILY[family]
            )
        except NetlinkError as exc:
            if exc.code not in _ABSENT:
                raise KernelError(f"rule IPv{family}: {os.strerror(exc.code)}") from None

    # -- the underlay (directRouting) --------------------------------------------------------

    def on_link(self, dev: str) -> tuple[str, ...]:
        index = next((i for i, name in self.reader.link_names().items() if name == dev), None)
        if index is None:
            return ()
        main = [r for af in (AF_INET, AF_INET6) for r in self.reader.table(af, MAIN_TABLE)]
        return on_link_prefixes(main, index)

    # -- sysctls ------------------------------------------------------------------------------

    def get_sysctl(self, key: str) -> str | None:
        path = f"{PROC_SYS}/{key}"  # key: a /proc/sys path, e.g. net/ipv4/conf/eth0/rp_filter
        try:
            with netns.entered(self.netns), open(path) as fh:
                return fh.read().strip()
        except FileNotFoundError:
            return None

    def set_sysctl(self, key: str, value: str) -> None:
        path = f"{PROC_SYS}/{key}"  # key: a /proc/sys path, e.g. net/ipv4/conf/eth0/rp_filter
        try:
            with netns.entered(self.netns), open(path, "w") as fh:
                fh.write(value)
        except OSError as exc:
            raise KernelError(f"sysctl {key}={value}: {exc.strerror}") from None


def _batch_errors(stderr: str, lines: list[str]) -> list[str]:
    """`ip -force -batch` prints 'Command failed -:N' after each refused line's message."""
    errors: list[str] = []
    pending: list[str] = []
    for text in stderr.splitlines():
        if text.startswith("Command failed -:"):
            try:
                line = lines[int(text.rsplit(":", 1)[1]) - 1]
            except (ValueError, IndexError):
                line = "?"
            reason = "; ".join(pending) or "failed"
            errors.append(f"{line}: {reason}")
            pending = []
        elif text.strip():
            pending.append(text.strip())
    if pending:
        errors.append("; ".join(pending))
    return errors
