"""Read-only: how a node's kernel differs from its NodeConfig (`kosmosctl analysis`)."""

from __future__ import annotations

from dataclasses import fields

from clusterlink import constants as C
from clusterlink.agent.desired import desired_state
from clusterlink.agent.firewall import Firewall, in_sync
from clusterlink.agent.kernel import Kernel, entry_text
from clusterlink.api.nodeconfig import NodeConfigSpec


def drift(kernel: Kernel, firewall: Firewall, spec: NodeConfigSpec) -> list[tuple[str, str]]:
    """(parameter type, difference) pairs; empty when the kernel matches the NodeConfig."""
    out: list[tuple[str, str]] = []
    links = kernel.links()
    desired, errors = desired_state(spec, links)
    out += [("device", e) for e in errors]
    owned = {
        n: link for n, link in links.items() if n in C.OWNED_DEVICES and link.vxlan is not None
    }
    for name in sorted(set(desired.devices) | set(owned)):
        want, have = desired.devices.get(name), owned[name].vxlan if name in owned else None
        if have is None:
            out.append(("device", f"{name}: missing"))
        elif want is None:
            out.append(("device", f"{name}: present, not in the NodeConfig"))
        elif want != have:
            for f in fields(want):
                a, b = getattr(have, f.name), getattr(want, f.name)
                if a != b:
                    out.append(("device", f"{name}: {f.name} is {a!r}, want {b!r}"))
    for name in sorted(desired.wg_devices - set(links)):
        out.append(("device", f"{name}: missing"))
    wg = {n: links[n].index for n in desired.wg_devices if n in links}
    observed = kernel.entries({n: owned[n].index for n in owned} | wg)
    for kind, have_set, want_set in (
        ("route", observed.routes, desired.entries.routes),
        ("fdb", observed.fdbs, desired.entries.fdbs),
        ("arp", observed.arps, desired.entries.arps),
    ):
        out += [(kind, f"{entry_text(e)}: missing") for e in sorted(want_set - have_set)]
        out += [
            (kind, f"{entry_text(e)}: not in the NodeConfig") for e in sorted(have_set - want_set)
        ]
    have_rules = kernel.rule_families()
    out += [
        ("rule", f"IPv{f} lookup 200: missing") for f in sorted(desired.rule_families - have_rules)
    ]
    out += [
        ("rule", f"IPv{f} lookup 200: not wanted")
        for f in sorted(have_rules - desired.rule_families)
    ]
    for key, value in sorted(desired.sysctls.items()):
        now = kernel.get_sysctl(key)
        if now != value:
            out.append(("sysctl", f"{key} is {now}, want {value}"))
    state = firewall.observe()
    for family in (4, 6):
        rules, current = desired.firewall[family], state[family]
        if rules and not in_sync(current, rules):
            missing = sorted(r.rule for r in rules - current.rules)
            extra = sorted(r.rule for r in current.rules - rules)
            detail = (
                "; ".join([*(f"missing {r}" for r in missing), *(f"extra {r}" for r in extra)])
                or "chains or jumps out of place"
            )
            out.append(("iptables", f"IPv{family}: {detail}"))
        elif not rules and (current.chains or current.rules):
            out.append(("iptables", f"IPv{family}: our chains present, none wanted"))
    return out
