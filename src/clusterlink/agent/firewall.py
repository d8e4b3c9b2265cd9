"""The `Firewall` port: the rules we own as data (`Rule`), what a node holds of them
(`FamilyState`), and when the two agree (`in_sync`). The adapter is `agent.iptables`
(`IptablesFirewall`); `agent.fake` keeps the same state in memory for tests.

State we own, per family: chains `CLUSTERLINK-<CHAIN>` for the (table, built-in chain) pairs
that hold rules, each reached by exactly one jump at position 1 of the built-in chain of that
name. Nothing else is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

PREFIX = "CLUSTERLINK-"


def managed_chains(rules: set[Rule]) -> set[tuple[str, str]]:
    """Our chains: one per (table, built-in chain) that holds rules - and no others. An empty
    nat chain would still create the nat table, and a nat table turns on connection tracking
    for every packet in the namespace (measured: P2P throughput 0.82x -> see docs/agent.md)."""
    return {(r.table, r.chain) for r in rules}


@dataclass(frozen=True, order=True, slots=True)
class Rule:
    family: int
    table: str
    chain: str  # logical (built-in) chain name: PREROUTING, POSTROUTING, FORWARD
    rule: str  # `iptables -S` text without `-A CHAIN`


@dataclass(slots=True)
class FamilyState:
    rules: set[Rule] = field(default_factory=set)
    chains: set[tuple[str, str]] = field(default_factory=set)  # (table, logical chain) of ours
    good_jumps: set[tuple[str, str]] = field(default_factory=set)  # exactly one, first


class FirewallError(Exception):
    pass


class Firewall(Protocol):
    def observe(self) -> dict[int, FamilyState]: ...

    def write(self, family: int, rules: set[Rule]) -> None:
        """Make our chains of `family` hold exactly `rules`, hooked by one jump each."""
        ...

    def teardown(self, family: int) -> None:
        """Remove our jumps and chains of `family`."""
        ...


def in_sync(state: FamilyState, rules: set[Rule]) -> bool:
    managed = managed_chains(rules)
    return state.rules == rules and state.chains == managed and state.good_jumps >= managed
