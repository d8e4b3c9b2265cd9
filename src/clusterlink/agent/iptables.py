"""The `Firewall` port's iptables adapter (the port: `agent.firewall`).

Why iptables-restore --noflush on the default (nf_tables) iptables rather than native nft or
python-iptables: the NodeConfig carries rules in `iptables -S` text (Kosmos' format), so the
rules we write read back byte for byte and the diff converges; `-restore` writes each of our
chains whole and atomically per table (a `:CHAIN` line flushes just that chain); it takes no
host-global xtables lock, so lab nodes in parallel don't wait on each other; and the same path
works on real nodes. python-iptables only sees the legacy backend (reference/machine-probe.md
§2). Measured: a save or restore runs in < 10 ms in a namespace. What we own and touch: see
`agent.firewall`.

Tables: an iptables table is created on first use and never removed by iptables, and an empty
`nat` table still turns connection tracking on for every packet. So a table our rules need
that is not there yet is created by us first, through nft, with a comment (`OWNED_COMMENT`):
when it holds nothing any more (no rule, no chain but empty base chains with policy accept,
no set), we delete it - `nft list ruleset` after a teardown is what it was before our first
write. A table that was there before us carries no such comment and is never removed.

Observing: with `cache=True` (the agent), `observe` reuses its last reading while no
nf_tables notification came since (any at all, ours included: conservative), so a no-op
resync runs no `iptables-save`. Only on the nf_tables backend: legacy iptables notifies
nobody, so it is read every time.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from clusterlink.agent import netns
from clusterlink.agent.events import NETLINK_NETFILTER, NFNLGRP_NFTABLES
from clusterlink.agent.firewall import PREFIX, FamilyState, FirewallError, Rule, managed_chains
from clusterlink.agent.netlink import Notifications

OWNED_COMMENT = "clusterlink: created by its agent; deleted when empty"
NFT_FAMILY = {4: "ip", 6: "ip6"}


def table_is_empty(listing: dict[str, object]) -> bool:
    """A `nft -j list table` that holds nothing: no rule, set, map or object, and only base
    chains with policy accept (what iptables leaves after its last rule is deleted)."""
    items = listing.get("nftables")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or len(item) != 1:
            return False
        kind, body = next(iter(item.items()))
        if kind in ("metainfo", "table"):
            continue
        if kind != "chain" or not isinstance(body, dict):
            return False  # a rule, set, map, flowtable or stateful object
        if "hook" not in body or body.get("policy", "accept") != "accept":
            return False
    return True


def empty_base_chains(listing: dict[str, object]) -> set[str]:
    """Base chains of a `nft -j list table` with no rule and policy accept."""
    items = listing.get("nftables")
    chains: set[str] = set()
    used: set[str] = set()
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        chain, rule = item.get("chain"), item.get("rule")
        if isinstance(chain, dict) and "hook" in chain and chain.get("policy") == "accept":
            chains.add(str(chain.get("name")))
        if isinstance(rule, dict):
            used.add(str(rule.get("chain")))
    return chains - used


def marked_ours(listing_text: str) -> bool:
    """True when a `nft list table` (text) carries our creation comment."""
    lines = listing_text.splitlines()
    return len(lines) > 1 and lines[1].strip() == f'comment "{OWNED_COMMENT}"'


def nf_tables_backend() -> bool:
    """Whether iptables here is iptables-nft (whose changes send notifications)."""
    try:
        proc = subprocess.run(["iptables-save", "-V"], capture_output=True, text=True)
    except OSError:
        return False
    return "nf_tables" in proc.stdout + proc.stderr


def _copy(state: dict[int, FamilyState]) -> dict[int, FamilyState]:
    return {
        f: FamilyState(set(s.rules), set(s.chains), set(s.good_jumps)) for f, s in state.items()
    }


class IptablesFirewall:
    def __init__(self, netns_name: str | None = None, cache: bool = False) -> None:
        self.netns = netns_name
        self.has_nft = (
            shutil.which("nft") is not None
        )  # without it tables stay as iptables leaves them
        self.changes = (
            Notifications(netns_name, 1 << (NFNLGRP_NFTABLES - 1), NETLINK_NETFILTER, 1 << 20)
            if cache and nf_tables_backend()
            else None
        )  # nf_tables notifications: the cached reading is stale
        self._observed: dict[int, FamilyState] | None = None
        self.saves = 0  # iptables-save runs (what the cache spares)

    def _run(self, argv: list[str], stdin: str | None = None) -> str:
        proc = subprocess.run(
            netns.command(self.netns, argv), input=stdin, capture_output=True, text=True
        )
        if proc.returncode != 0:
            detail = proc.stderr.strip().splitlines()
            raise FirewallError(f"{argv[0]}: {detail[-1] if detail else f'exit {proc.returncode}'}")
        return proc.stdout

    def _save(self, family: int) -> str:
        self.saves += 1
        return self._run(["iptables-save" if family == 4 else "ip6tables-save"])

    def observe(self) -> dict[int, FamilyState]:
        # Drain first, then read: a change after the drain is in the reading and is read
        # again next time.
        changed = self.changes is None or self.changes.changed()
        if not changed and self._observed is not None:
            return _copy(self._observed)
        self._observed = None
        observed = {family: parse_save(self._save(family), family) for family in (4, 6)}
        if self.changes is not None:
            self._observed = _copy(observed)
        return observed

    def close(self) -> None:
        if self.changes is not None:
            self.changes.close()

    def write(self, family: int, rules: set[Rule]) -> None:
        self._observed = None
        saved = self._save(family)
        state, jumps = parse_save(saved, family), parse_jumps(saved)
        needed = {r.table for r in rules}
        self._create_tables(family, needed - saved_tables(saved))
        self._run(
            ["iptables-restore" if family == 4 else "ip6tables-restore", "-w", "5", "--noflush"],
            restore_input(state, jumps, rules),
        )
        self._drop_empty_tables(
            family,
            touched_tables(state, jumps) - needed,
            (state.chains | set(jumps)) - managed_chains(rules),
        )

    def teardown(self, family: int) -> None:
        self._observed = None
        saved = self._save(family)
        state, jumps = parse_save(saved, family), parse_jumps(saved)
        if state.chains or jumps:
            self._run(
                ["iptables-restore" if family == 4 else "ip6tables-restore", "-w", "5",
                 "--noflush"],
                teardown_input(state, jumps),
            )  # fmt: skip
        self._drop_empty_tables(family, saved_tables(saved), state.chains | set(jumps))

    # -- the tables we create -------------------------------------------------------------

    def _nft(self, args: list[str]) -> str | None:
        """nft's output, or None where nft is not installed."""
        return self._run(["nft", *args]) if self.has_nft else None

    def _create_tables(self, family: int, tables: set[str]) -> None:
        for table in sorted(tables):
            self._nft(["add", "table", NFT_FAMILY[family], table,
                       f'{{ comment "{OWNED_COMMENT}" ; }}'])  # fmt: skip

    def _drop_empty_tables(
        self, family: int, tables: set[str], hooks: set[tuple[str, str]]
    ) -> None:
        """Delete those of `tables` that we created and that hold nothing now; in the others,
        the built-in chains of `hooks` ((table, chain) where our jumps were) that are empty
        with policy accept - iptables made them for our jump, and to iptables an empty
        accept chain is the same as none (it shows all of them either way)."""
        fam = NFT_FAMILY[family]
        for table in sorted(tables):
            try:
                text = self._nft(["list", "table", fam, table])
                listing = self._nft(["-j", "list", "table", fam, table])
            except FirewallError:
                continue  # not there
            if text is None or listing is None:
                return
            data = json.loads(listing)
            if marked_ours(text) and table_is_empty(data):
                self._nft(["delete", "table", fam, table])
                continue
            for chain in sorted(empty_base_chains(data) & {c for t, c in hooks if t == table}):
                self._nft(["delete", "chain", fam, table, chain])


def parse_save(text: str, family: int) -> FamilyState:
    state = FamilyState()
    table = ""
    first_rule: dict[str, str] = {}
    jump_count: dict[tuple[str, str], int] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            first_rule = {}
        elif line.startswith(f":{PREFIX}"):
            state.chains.add((table, line[1:].split()[0].removeprefix(PREFIX)))
        elif line.startswith("-A "):
            _, chain, *rest = line.split(" ", 2)
            body = rest[0] if rest else ""
            if chain.startswith(PREFIX):
                state.rules.add(Rule(family, table, chain.removeprefix(PREFIX), body))
                continue
            first_rule.setdefault(chain, body)
            if body == f"-j {PREFIX}{chain}":
                jump_count[(table, chain)] = jump_count.get((table, chain), 0) + 1
                if first_rule[chain] == body and jump_count[(table, chain)] == 1:
                    state.good_jumps.add((table, chain))
    for key, count in jump_count.items():
        if count != 1:
            state.good_jumps.discard(key)
    return state


def saved_tables(text: str) -> set[str]:
    """The tables an iptables-save lists (those that exist)."""
    return {line[1:].strip() for line in text.splitlines() if line.startswith("*")}


def touched_tables(state: FamilyState, jumps: dict[tuple[str, str], int]) -> set[str]:
    """Tables that hold a chain of ours or a jump to one."""
    return {t for t, _ in state.chains} | {t for t, _ in jumps}


def parse_jumps(text: str) -> dict[tuple[str, str], int]:
    """How many jumps to our chain each built-in chain holds."""
    table = ""
    out: dict[tuple[str, str], int] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith("-A "):
            _, chain, *rest = line.split(" ", 2)
            if not chain.startswith(PREFIX) and rest and rest[0] == f"-j {PREFIX}{chain}":
                out[(table, chain)] = out.get((table, chain), 0) + 1
    return out


def restore_input(state: FamilyState, jumps: dict[tuple[str, str], int], rules: set[Rule]) -> str:
    managed = managed_chains(rules)
    tables = sorted({t for t, _ in managed} | {t for t, _ in state.chains} | {t for t, _ in jumps})
    lines: list[str] = []
    for table in tables:
        lines.append(f"*{table}")
        mine = sorted(c for t, c in managed if t == table)
        for chain in mine:
            lines.append(f":{PREFIX}{chain} - [0:0]")  # declares (and flushes) our chain
        for rule in sorted(r for r in rules if r.table == table):
            lines.append(f"-A {PREFIX}{rule.chain} {rule.rule}")
        for chain in mine:
            if (table, chain) not in state.good_jumps:
                lines += [f"-D {chain} -j {PREFIX}{chain}"] * jumps.get((table, chain), 0)
                lines.append(f"-I {chain} 1 -j {PREFIX}{chain}")
        for t, chain in sorted(state.chains | set(jumps)):
            if t == table and chain not in mine:  # ours, no longer wanted
                lines += [f"-D {chain} -j {PREFIX}{chain}"] * jumps.get((t, chain), 0)
                if (t, chain) in state.chains:
                    lines += [f"-F {PREFIX}{chain}", f"-X {PREFIX}{chain}"]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def teardown_input(state: FamilyState, jumps: dict[tuple[str, str], int]) -> str:
    lines: list[str] = []
    for table in sorted({t for t, _ in state.chains} | {t for t, _ in jumps}):
        lines.append(f"*{table}")
        for t, chain in sorted(jumps):
            if t == table:
                lines += [f"-D {chain} -j {PREFIX}{chain}"] * jumps[(t, chain)]
        for t, chain in sorted(state.chains):
            if t == table:
                lines += [f"-F {PREFIX}{chain}", f"-X {PREFIX}{chain}"]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"
