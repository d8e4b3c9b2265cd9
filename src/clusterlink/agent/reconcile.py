"""Reconcile: observe what we own, diff against the desired state, delete then add.

Order: stale entries on devices that stay -> devices to replace or remove -> devices to
create -> (re-observe, since a replaced device lost its routes, FDB and neighbours; Kosmos
waits 30 s for its next pass here) -> missing entries -> policy rules -> sysctls -> firewall
-> prefix maps.
A pass with nothing to do makes no kernel change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clusterlink import constants as C
from clusterlink.agent.desired import Desired, desired_state, family_of_device
from clusterlink.agent.firewall import Firewall, FirewallError, in_sync
from clusterlink.agent.kernel import Entries, Kernel, KernelError, Link
from clusterlink.agent.prefixmaps import PrefixMapError, PrefixMaps
from clusterlink.agent.wireguard import WireGuardNode
from clusterlink.api.nodeconfig import NodeConfigSpec


@dataclass(slots=True)
class Report:
    devices_deleted: list[str] = field(default_factory=list)
    devices_created: list[str] = field(default_factory=list)
    devices_tuned: list[str] = field(default_factory=list)  # wg links retuned in place
    entries_removed: int = 0
    entries_added: int = 0
    rules_changed: int = 0
    sysctls_changed: int = 0
    firewall_changed: list[int] = field(default_factory=list)
    prefix_maps_changed: list[int] = field(default_factory=list)
    peers_changed: int = 0  # WireGuard peers added, updated, removed (and key/port writes)
    errors: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return (
            len(self.devices_deleted)
            + len(self.devices_created)
            + len(self.devices_tuned)
            + self.entries_removed
            + self.entries_added
            + self.rules_changed
            + self.sysctls_changed
            + len(self.firewall_changed)
            + len(self.prefix_maps_changed)
            + self.peers_changed
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "changes": self.changes,
            "devicesDeleted": self.devices_deleted,
            "devicesCreated": self.devices_created,
            "devicesTuned": self.devices_tuned,
            "entriesRemoved": self.entries_removed,
            "entriesAdded": self.entries_added,
            "rulesChanged": self.rules_changed,
            "sysctlsChanged": self.sysctls_changed,
            "firewallFamiliesWritten": self.firewall_changed,
            "prefixMapFamiliesWritten": self.prefix_maps_changed,
            "peersChanged": self.peers_changed,
            "errors": self.errors,
        }


def _ours(links: dict[str, Link], report: Report) -> dict[str, Link]:
    owned = {}
    for name in C.OWNED_DEVICES:
        link = links.get(name)
        if link is None:
            continue
        if link.vxlan is None:
            report.errors.append(
                f"{name}: a {link.kind or 'non-vxlan'} link has our name; left alone"
            )
            continue
        owned[name] = link
    return owned


class Reconciler:
    """`reconcile` that remembers the entry set of the last spec it saw: a resync of an
    unchanged NodeConfig (the same object) skips rebuilding ~15,000 tuples."""

    def __init__(
        self,
        kernel: Kernel,
        firewall: Firewall,
        maps: PrefixMaps | None = None,
        wireguard: WireGuardNode | None = None,
    ) -> None:
        self.kernel = kernel
        self.firewall = firewall
        self.maps = maps
        self.wireguard = wireguard
        self._spec: NodeConfigSpec | None = None
        self._entries = Entries()

    def __call__(self, spec: NodeConfigSpec | None) -> Report:
        if spec is not None and spec is not self._spec:
            self._spec, self._entries = spec, Entries.of(spec)
        return reconcile(
            self.kernel,
            self.firewall,
            spec,
            self._entries if spec is not None else None,
            self.maps,
            self.wireguard,
        )


def reconcile(
    kernel: Kernel,
    firewall: Firewall,
    spec: NodeConfigSpec | None,
    entries: Entries | None = None,
    maps: PrefixMaps | None = None,
    wireguard: WireGuardNode | None = None,
) -> Report:
    """Make the kernel match `spec`; None (NodeConfig deleted) tears all our state down."""
    report = Report()
    links = kernel.links()
    if wireguard is not None or (spec is not None and spec.wireguard):
        links = _wireguard(kernel, wireguard, spec, links, report)
    desired, errors = desired_state(spec or NodeConfigSpec(), links, entries if spec else None)
    report.errors += errors
    owned = _ours(links, report)

    replace = sorted(
        name for name, link in owned.items() if desired.devices.get(name) != link.vxlan
    )
    kept = {name: link.index for name, link in owned.items() if name not in replace}
    kept |= {n: links[n].index for n in desired.wg_devices if n in links}
    observed = kernel.entries(kept)
    stale = observed - desired.entries
    if stale.routes:  # a route that differs only in its MTU is replaced in place, not deleted
        retuned = {r[:3] for r in desired.entries.routes}
        keep = frozenset(r for r in stale.routes if r[:3] in retuned)
        stale = Entries(stale.routes - keep, stale.fdbs, stale.arps)
    if len(stale):
        report.errors += kernel.change_entries(stale, Entries())
        report.entries_removed += len(stale)
        observed = observed - stale

    for name in replace:
        _try(report, lambda n=name: kernel.delete_link(n))
        report.devices_deleted.append(name)
    for name in sorted(desired.devices):
        if name in kept:
            continue
        if _try(report, lambda n=name: kernel.create_vxlan(desired.devices[n])):
            report.devices_created.append(name)

    if report.devices_created or report.devices_deleted:
        links = kernel.links()  # re-observe: new indices, and what the new devices hold
        present = {n: links[n].index for n in desired.all_devices if n in links}
        observed = kernel.entries(present)
    wanted = desired.entries
    if not desired.all_devices <= set(links):  # a device failed to come up
        wanted = wanted.on(set(links) & desired.all_devices)
    missing = wanted - observed
    if len(missing):
        report.errors += kernel.change_entries(Entries(), missing)
        report.entries_added += len(missing)

    _rules(kernel, desired, report)
    _sysctls(kernel, desired, report)
    _firewall(firewall, desired, report)
    _prefix_maps(maps, desired, report)
    return report


def _wireguard(
    kernel: Kernel,
    wireguard: WireGuardNode | None,
    spec: NodeConfigSpec | None,
    links: dict[str, Link],
    report: Report,
) -> dict[str, Link]:
    """wg devices first (agent/wireguard.py): their routes are then diffed like the rest."""
    if wireguard is None:
        report.errors.append(
            "wireguard: the NodeConfig has wg devices; this agent runs no WireGuard"
        )
        return links
    changes = wireguard.sync(spec, links)
    report.devices_created += changes.created
    report.devices_deleted += changes.deleted
    report.devices_tuned += changes.tuned
    report.peers_changed += changes.peers
    report.errors += changes.errors
    return kernel.links() if changes.created or changes.deleted or changes.tuned else links


def _try(report: Report, action: object) -> bool:
    try:
        action()  # type: ignore[operator]
    except KernelError as exc:
        report.errors.append(str(exc))
        return False
    return True


def _rules(kernel: Kernel, desired: Desired, report: Report) -> None:
    have = kernel.rule_families()
    for family in sorted(desired.rule_families - have):
        if _try(report, lambda f=family: kernel.add_rule(f)):
            report.rules_changed += 1
    for family in sorted(have - desired.rule_families):
        if _try(report, lambda f=family: kernel.delete_rule(f)):
            report.rules_changed += 1


def _sysctls(kernel: Kernel, desired: Desired, report: Report) -> None:
    for key, value in sorted(desired.sysctls.items()):
        if kernel.get_sysctl(key) != value and _try(
            report, lambda k=key, v=value: kernel.set_sysctl(k, v)
        ):
            report.sysctls_changed += 1


def _firewall(firewall: Firewall, desired: Desired, report: Report) -> None:
    try:
        state = firewall.observe()
        for family in (4, 6):
            rules = desired.firewall[family]
            current = state[family]
            if rules and not in_sync(current, rules):
                firewall.write(family, rules)
                report.firewall_changed.append(family)
            elif not rules and (current.chains or current.good_jumps):
                firewall.teardown(family)
                report.firewall_changed.append(family)
    except FirewallError as exc:
        report.errors.append(f"firewall: {exc}")


def _prefix_maps(port: PrefixMaps | None, desired: Desired, report: Report) -> None:
    wanted = any(desired.prefix_maps.values())
    if port is None:
        if wanted:
            report.errors.append("addressMaps: this agent has no prefix-map adapter")
        return
    try:
        state = port.observe()
        for family in (4, 6):
            want, have = desired.prefix_maps[family], state.get(family, set())
            if want and want != have:
                port.write(family, want)
                report.prefix_maps_changed.append(family)
            elif not want and have:
                port.teardown(family)
                report.prefix_maps_changed.append(family)
    except PrefixMapError as exc:
        report.errors.append(f"addressMaps: {exc}")


__all__ = ["Reconciler", "Report", "family_of_device", "reconcile"]
