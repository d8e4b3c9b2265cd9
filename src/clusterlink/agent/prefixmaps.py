"""The `PrefixMaps` port and its nftables adapter: stateless 1:1 prefix translation on our
devices (NodeConfig `addressMaps`).

Why nftables and not iptables: a translation that kube-proxy must see past (a global Service
CIDR rewritten to the real one before kube-proxy's DNAT) has to happen before connection
tracking and outside the nat table - iptables has no stateless address rewrite, nftables
does (`ip daddr set ...` in a filter chain at priority raw; the kernel fixes the IP and L4
checksums). Replies are rewritten back after every NAT (postrouting, priority 300).

State we own, per family: table `ip clusterlink` / `ip6 clusterlink`, nothing else. Each
rule carries a comment naming its map, which is how `observe` reads the table back; a write
replaces the whole table in one transaction (`nft -f`).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass
from typing import Any, Protocol

from clusterlink.agent import netns

TABLE = "clusterlink"
_NFT_FAMILY = {4: "ip", 6: "ip6"}


@dataclass(frozen=True, order=True, slots=True)
class PrefixMap:
    family: int
    dev: str
    cidr: str  # real
    global_cidr: str

    def comment(self, direction: str) -> str:
        return f"{direction} {self.dev} {self.cidr} {self.global_cidr}"


class PrefixMapError(Exception):
    pass


class PrefixMaps(Protocol):
    def observe(self) -> dict[int, set[PrefixMap]]: ...

    def write(self, family: int, maps: set[PrefixMap]) -> None:
        """Make our table of `family` hold exactly `maps` (created if missing)."""
        ...

    def teardown(self, family: int) -> None:
        """Remove our table of `family`."""
        ...


def _rewrite(field: str, match: str, to: str) -> str:
    """`<field> set <field> & <host mask> | <to's network>`: the prefix swapped, host kept."""
    net = ipaddress.ip_network(to)
    return f"{field} {match} {field} set {field} & {net.hostmask} | {net.network_address}"


def nft_input(family: int, maps: set[PrefixMap]) -> str:
    """One transaction that replaces our table (declare, delete, define)."""
    fam = _NFT_FAMILY[family]
    addr = "ip" if family == 4 else "ip6"
    pre, post = [], []
    for m in sorted(maps):
        pre.append(
            f'    iifname "{m.dev}" '
            + _rewrite(f"{addr} daddr", m.global_cidr, m.cidr)
            + f' comment "{m.comment("in")}"'
        )
        post.append(
            f'    oifname "{m.dev}" '
            + _rewrite(f"{addr} saddr", m.cidr, m.global_cidr)
            + f' comment "{m.comment("out")}"'
        )
    return "\n".join(
        [
            f"table {fam} {TABLE}",
            f"delete table {fam} {TABLE}",
            f"table {fam} {TABLE} {{",
            "  chain prerouting {",
            "    type filter hook prerouting priority raw; policy accept;",
            *pre,
            "  }",
            "  chain postrouting {",
            "    type filter hook postrouting priority 300; policy accept;",
            *post,
            "  }",
            "}",
            "",
        ]
    )


def parse_listing(family: int, listing: dict[str, Any]) -> set[PrefixMap] | None:
    """The maps a `nft -j list table` shows; None when the table is not wholly ours as we
    write it (a rule without our comment, a map with only one direction)."""
    seen: dict[str, set[str]] = {}
    for item in listing.get("nftables", []):
        rule = item.get("rule")
        if rule is None:
            continue
        parts = str(rule.get("comment") or "").split()
        if len(parts) != 4 or parts[0] not in ("in", "out"):
            return None
        seen.setdefault(" ".join(parts[1:]), set()).add(parts[0])
    out = set()
    for key, directions in seen.items():
        if directions != {"in", "out"}:
            return None
        dev, cidr, glob = key.split()
        out.add(PrefixMap(family, dev, cidr, glob))
    return out


class NftPrefixMaps:
    def __init__(self, netns_name: str | None = None) -> None:
        self.netns = netns_name
        # Families seen without our table: not asked again until we write one (an idle
        # agent on a node without maps runs no nft at all after its first pass).
        self._absent: set[int] = set()

    def _nft(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                netns.command(self.netns, ["nft", *args]),
                input=stdin,
                capture_output=True,
                text=True,
            )
        except FileNotFoundError:
            raise PrefixMapError("nft: not installed (the nftables package)") from None

    def observe(self) -> dict[int, set[PrefixMap]]:
        out: dict[int, set[PrefixMap]] = {}
        for family, fam in _NFT_FAMILY.items():
            if family in self._absent:
                out[family] = set()
                continue
            proc = self._nft(["-j", "list", "table", fam, TABLE])
            if proc.returncode != 0:
                out[family] = set()  # no table
                self._absent.add(family)
                continue
            maps = parse_listing(family, json.loads(proc.stdout or "{}"))
            # A table we cannot read back as ours is drift: report it as holding a map no
            # NodeConfig can want, so the diff rewrites it.
            out[family] = maps if maps is not None else {PrefixMap(family, "?", "?", "?")}
        return out

    def write(self, family: int, maps: set[PrefixMap]) -> None:
        self._absent.discard(family)
        proc = self._nft(["-f", "-"], nft_input(family, maps))
        if proc.returncode != 0:
            detail = proc.stderr.strip().splitlines()
            raise PrefixMapError(f"nft: {detail[-1] if detail else proc.returncode}")

    def teardown(self, family: int) -> None:
        fam = _NFT_FAMILY[family]
        proc = self._nft(["-f", "-"], f"table {fam} {TABLE}\ndelete table {fam} {TABLE}\n")
        if proc.returncode != 0:
            raise PrefixMapError(f"nft: {proc.stderr.strip() or proc.returncode}")
        self._absent.add(family)
