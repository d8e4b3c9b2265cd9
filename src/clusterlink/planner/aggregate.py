"""Route aggregation for nodes that send every remote CIDR to one next hop (internal nodes of
gateway clusters): the fewest table-200 entries - covering routes via the next hop, and
`throw` routes that punch out what must not go that way (the node's own cluster's CIDRs,
CIDRs skipped for overlap, and anything that belongs to no cluster) - that route every
address exactly as one route per remote CIDR would. A `throw` ends the lookup in table 200,
so the packet goes on to the main table: the same as no match.

How: a binary trie over the family's exported CIDRs, and for each trie node the fewest
entries its subtree needs when the entry above it says "via the next hop" (G) or "not"
(N) - a leaf CIDR is all-G, a subtree without exports all-N; an inner node either inherits
or places one entry of the other kind (ORTC-style dynamic programming, optimal for two
kinds). The federation-wide trie is built once per family; a receiving cluster's own and
skipped CIDRs turn their leaves to N, and only the nodes above them are recomputed.

Families whose exports overlap one another are not aggregated (`Aggregator.of` -> None).
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable

Node = tuple[int, int]  # (prefix length, network as an int)
Costs = tuple[int, int]  # (entries when the parent says G, entries when it says N)

_REGION_G: Costs = (0, 1)
_REGION_N: Costs = (1, 0)


def _combine(a: Costs, b: Costs) -> Costs:
    keep_g, keep_n = a[0] + b[0], a[1] + b[1]
    return min(keep_g, 1 + keep_n), min(keep_n, 1 + keep_g)


class Aggregator:
    """The trie of one family's exports (CIDRs sorted, none overlapping another)."""

    def __init__(self, bits: int, leaves: list[Node]) -> None:
        self.bits = bits
        self.leaves = leaves
        self.leaf_set = set(leaves)
        self.order = self._above(leaves)
        self.costs: dict[Node, Costs] = {}
        self._fill(self.costs, self.order, set())

    @classmethod
    def of(cls, cidrs: list[str]) -> Aggregator | None:
        nets = [ipaddress.ip_network(c) for c in cidrs]
        if not nets:
            return None
        bits = nets[0].max_prefixlen
        ordered = sorted(nets, key=lambda n: (int(n.network_address), n.prefixlen))
        for a, b in itertools.pairwise(ordered):
            if int(b.network_address) <= int(a.broadcast_address):
                return None  # overlapping exports: not aggregated
        return cls(bits, [(n.prefixlen, int(n.network_address)) for n in nets])

    def _above(self, leaves: Iterable[Node]) -> list[Node]:
        """The trie nodes above these leaves, children before parents."""
        above = {
            (q, net >> (self.bits - q) << (self.bits - q))
            for plen, net in leaves
            for q in range(plen)
        }
        return sorted(above, key=lambda n: -n[0])

    def _child_costs(self, node: Node, table: dict[Node, Costs], removed: set[Node]) -> Costs:
        if node in self.leaf_set:
            return _REGION_N if node in removed else _REGION_G
        got = table.get(node)  # a receiver's recomputed nodes, over the federation's
        if got is None:
            got = self.costs.get(node, _REGION_N)
        return got

    def _children(self, node: Node) -> tuple[Node, Node]:
        plen, net = node
        return (plen + 1, net), (plen + 1, net | 1 << (self.bits - plen - 1))

    def _fill(self, table: dict[Node, Costs], nodes: Iterable[Node], removed: set[Node]) -> None:
        for node in nodes:
            left, right = self._children(node)
            table[node] = _combine(
                self._child_costs(left, table, removed), self._child_costs(right, table, removed)
            )

    def entries(self, removed_indices: Iterable[int]) -> list[tuple[str, bool]] | None:
        """(CIDR, is_throw) entries that route exactly the exports but `removed_indices`
        (indices into the CIDR list given to `of`) via the next hop; None when they would not
        be fewer than one route per remaining CIDR."""
        removed = {self.leaves[i] for i in removed_indices}
        wanted = len(self.leaves) - len(removed)
        table: dict[Node, Costs] = {}  # only the nodes above removed leaves, recomputed
        if removed:
            self._fill(table, self._above(removed), removed)
        root: Node = (0, 0)
        root_costs = self._child_costs(root, table, removed)
        if root_costs[1] >= wanted:
            return None
        out: list[tuple[str, bool]] = []
        self._emit(root, False, table, removed, out)
        return out

    def _emit(
        self, node: Node, via: bool, table: dict[Node, Costs], removed: set[Node],
        out: list[tuple[str, bool]],
    ) -> None:  # fmt: skip
        stack = [(node, via)]
        while stack:
            node, via = stack.pop()
            costs = self._child_costs(node, table, removed)
            if costs[0 if via else 1] == 0:
                continue
            if node in self.leaf_set or (node not in table and node not in self.costs):
                # a uniform region, and it differs from what the entry above says
                out.append((self._cidr(node), via))  # G under N: a route; N under G: a throw
                continue
            left, right = self._children(node)
            lc, rc = (self._child_costs(c, table, removed) for c in (left, right))
            here = 0 if via else 1
            if lc[here] + rc[here] != costs[here]:  # cheaper with an entry of the other kind
                via = not via
                out.append((self._cidr(node), not via))
            stack += [(right, via), (left, via)]

    def _cidr(self, node: Node) -> str:
        plen, net = node
        addr = ipaddress.IPv4Address(net) if self.bits == 32 else ipaddress.IPv6Address(net)
        return f"{addr}/{plen}"


__all__ = ["Aggregator"]
