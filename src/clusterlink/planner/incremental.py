"""Incremental planning: after a change to a few ClusterNodes, patch the previous plan instead
of making it again, and name exactly the NodeConfigs that changed.

`plan()` stays the reference: `Planner.update` returns a plan equal to `plan()` of the same
input, byte for byte (tests/unit/planner/test_incremental.py checks it over random sequences
of changes). What it keeps from the last plan - the inputs, the views, the devices, the
export table, the bridge mesh in NodeConfig order, the recipes - is patched where the change
lands:

- the changed nodes' views, devices, mesh entries (FDB + ARP), the routes of their exports;
- the recipes of the changed nodes and, in a gateway-mode cluster, of its gateway (it peers
  with every node on vx-local) or of every node when the gateway itself changed;
- which NodeConfigs changed: those recipes when they differ, and every bridge-set node of
  another cluster when a changed node's mesh entry or export route differs (they all list it).

Everything a change could spread through federation-wide falls back to a full plan, and
`last_reason` says which: any Cluster change; encryption or directRouting in the federation
(what a node installs depends on cluster or node pairs); a changed set of advertised CIDRs
or of a cluster's local CIDRs (overlaps and skipped exports); a new gateway or service node;
a vx address collision in a mesh the change touches; a changed MTU of a node others route
toward, or of the largest MTU (path MTU capping); a tie in the mesh order.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from clusterlink.api.cluster import Cluster
from clusterlink.api.clusternode import ClusterNode
from clusterlink.api.net import cidr_family
from clusterlink.api.nodeconfig import Arp, Fdb
from clusterlink.planner.devices import (
    DeviceMap,
    MeshKey,
    derived,
    derived_text,
    node_devices,
    wanted_devices,
)
from clusterlink.planner.direct import opted_in
from clusterlink.planner.exports import Export, ExportTable, advertised, make_export
from clusterlink.planner.findings import Finding
from clusterlink.planner.plan import (
    Parts,
    Plan,
    PlanDiff,
    Recipe,
    SortedMesh,
    arp_order,
    build_parts,
    fdb_order,
    gc_paused,
    mesh_entries,
    node_recipe,
    sort_mesh,
)
from clusterlink.planner.topology import (
    ClusterView,
    FederationView,
    NodeView,
    cluster_roles,
    cluster_view,
    node_view,
)


class Fallback(Exception):
    """The change is one the patch does not follow: plan in full (the message says why)."""


@dataclass(slots=True)
class _State:
    """What the last plan was made of, and the indexes a patch needs."""

    clusters: dict[str, Cluster]  # the input, by name
    nodes: dict[str, ClusterNode]
    by_cluster: dict[str, frozenset[str]]  # spec.clusterName -> its ClusterNodes' names
    parts: Parts  # its `mesh` is stale after a patch: `mesh` below is the current one
    mesh: SortedMesh
    hard: str | None  # why no patch applies to this federation at all
    base_findings: list[Finding]  # the topology's, but for roles and nodes (Cluster links)
    role_findings: dict[str, list[Finding]]  # cluster -> `cluster_roles` findings
    node_findings: dict[str, list[Finding]]  # ClusterNode -> its view's findings (non-empty)
    advertised: dict[str, list[tuple[str, str]]]  # cluster -> (CIDR, target) it announces
    targets: frozenset[str]  # nodes exports route to (their MTU caps others' routes)
    index: dict[tuple[int, str], int]  # (family, CIDR) -> its index in the export table
    values: dict[str, list[tuple[MeshKey, int]]]  # node -> its derived device addresses
    counts: dict[MeshKey, Counter[int]]  # mesh -> derived address -> how many derive it
    shared: dict[MeshKey, int]  # mesh -> how many of its addresses are derived twice or more
    bridge: dict[int, dict[str, frozenset[str]]]  # family -> cluster -> nodes with vx-bridge
    mtus: Counter[int]  # underlay MTUs of the planned nodes

    def topology_findings(self) -> list[Finding]:
        topo = list(self.base_findings)
        for more in self.role_findings.values():
            topo += more
        for more in self.node_findings.values():
            topo += more
        return topo


class Planner:
    """Plans a federation again and again: `update` patches the last plan where it can."""

    def __init__(self) -> None:
        self.plan: Plan | None = None
        self.full_plans = 0  # how many updates planned in full
        self.last_reason: str | None = None  # why the last update planned in full (None: patched)
        self._state: _State | None = None
        self._duplicates = False  # the last input had duplicate names: its state is not exact

    def update(self, clusters: Iterable[Cluster], nodes: Iterable[ClusterNode]) -> PlanDiff:
        """Plan the input; the diff names the NodeConfigs to write and to delete."""
        clusters, nodes = list(clusters), list(nodes)
        cluster_in = {c.metadata.name: c for c in clusters}
        node_in = {n.metadata.name: n for n in nodes}
        previous, state = self.plan, self._state
        reason = "first plan"
        duplicates = len(cluster_in) != len(clusters) or len(node_in) != len(nodes)
        if state is not None and previous is not None:
            if duplicates or self._duplicates:
                reason = "duplicate names in the input"
            else:
                try:
                    with gc_paused():
                        patched = _patch(state, previous, cluster_in, node_in)
                except Fallback as why:
                    reason = str(why)
                else:
                    self._state, self.plan, diff = patched
                    self.last_reason = None
                    return diff
        self.last_reason = reason
        self.full_plans += 1
        self._duplicates = duplicates
        with gc_paused():
            self._state, current = _full(cluster_in, node_in, clusters, nodes)
        self.plan = current
        if previous is None:
            return PlanDiff(current.names, [], current.findings, current)
        diff = current.changed_since(previous)
        return PlanDiff(diff.changed, diff.removed, current.findings, current)


def _full(
    cluster_in: dict[str, Cluster],
    node_in: dict[str, ClusterNode],
    clusters: list[Cluster],
    nodes: list[ClusterNode],
) -> tuple[_State, Plan]:
    parts = build_parts(clusters, nodes)
    mesh = sort_mesh(parts.mesh)
    current = Plan(
        parts.topo,
        parts.recipes,
        parts.exports,
        parts.mesh,
        parts.findings(),
        parts.direct,
        sorted_mesh=mesh,
    )
    topo = parts.topo
    hard = None
    if any(c.encrypted for c in topo.clusters.values()):
        hard = "encryption in the federation: links and routes depend on cluster pairs"
    elif parts.direct or sum(opted_in(c) for c in topo.clusters.values()) >= 2:
        hard = "directRouting in the federation: routes depend on the underlay between nodes"
    by_cluster: dict[str, set[str]] = {}
    for cn in node_in.values():
        by_cluster.setdefault(cn.spec.cluster_name, set()).add(cn.name)
    role_findings: dict[str, list[Finding]] = {}
    for name, view in topo.clusters.items():
        members = topo.members[name]
        role_findings[name] = _roles(view, members, node_in)[2]
    node_findings: dict[str, list[Finding]] = {}
    rest: Counter[Finding] = Counter()
    for f in topo.findings:
        if f.object.startswith("ClusterNode/"):
            node_findings.setdefault(f.object.removeprefix("ClusterNode/"), []).append(f)
        else:
            rest[f] += 1
    for more in role_findings.values():
        rest.subtract(more)
    values: dict[str, list[tuple[MeshKey, int]]] = {}
    counts: dict[MeshKey, Counter[int]] = {}
    for node in topo.nodes.values():
        values[node.name] = _derived(topo, node)
        for mesh_key, value in values[node.name]:
            counts.setdefault(mesh_key, Counter())[value] += 1
    bridge: dict[int, dict[str, set[str]]] = {4: {}, 6: {}}
    for r in parts.recipes.values():
        for family in r.mesh_families:
            bridge[family].setdefault(r.cluster, set()).add(r.name)
    index = {
        (family, e.cidr): i
        for family, table in parts.exports.by_family.items()
        for i, e in enumerate(table)
    }
    state = _State(
        clusters=cluster_in,
        nodes=node_in,
        by_cluster={c: frozenset(names) for c, names in by_cluster.items()},
        parts=parts,
        mesh=mesh,
        hard=hard,
        base_findings=sorted(rest.elements()),
        role_findings=role_findings,
        node_findings=node_findings,
        advertised={c: advertised(topo, view) for c, view in topo.clusters.items()},
        targets=frozenset(e.target for t in parts.exports.by_family.values() for e in t),
        index=index,
        values=values,
        counts=counts,
        shared={k: sum(1 for n in c.values() if n > 1) for k, c in counts.items()},
        bridge={f: {c: frozenset(n) for c, n in by.items()} for f, by in bridge.items()},
        mtus=Counter(n.mtu for n in topo.nodes.values()),
    )
    return state, current


def _roles(
    view: ClusterView, members: list[str], node_in: dict[str, ClusterNode]
) -> tuple[str | None, str | None, list[Finding]]:
    candidates = [n for n in members if node_in[n].spec.is_gateway]
    return cluster_roles(view, members, candidates)


def _derived(topo: FederationView, node: NodeView) -> list[tuple[MeshKey, int]]:
    return [derived(node, dev, f, pool) for dev, f, pool in wanted_devices(topo, node)]


def _changed_nodes(
    old: dict[str, ClusterNode], new: dict[str, ClusterNode]
) -> tuple[list[str], bool]:
    """Names of the ClusterNodes added, removed or changed; and whether names came or went."""
    changed, added = [], 0
    for name, cn in new.items():
        before = old.get(name)
        if before is cn:
            continue
        if before is None:
            added += 1
            changed.append(name)
        elif before != cn:
            changed.append(name)
    kept = len(new) - added
    if kept != len(old):
        changed += [name for name in old if name not in new]
    return changed, bool(added) or kept != len(old)


def _check_clusters(state: _State, cluster_in: dict[str, Cluster]) -> None:
    if cluster_in.keys() != state.clusters.keys():
        came = sorted(cluster_in.keys() - state.clusters.keys())
        went = sorted(state.clusters.keys() - cluster_in.keys())
        raise Fallback(f"Cluster/{came[0]} added" if came else f"Cluster/{went[0]} removed")
    for name, cluster in cluster_in.items():
        before = state.clusters[name]
        if before is not cluster and before != cluster:
            raise Fallback(f"Cluster/{name} changed")


def _patch(
    state: _State, previous: Plan, cluster_in: dict[str, Cluster], node_in: dict[str, ClusterNode]
) -> tuple[_State, Plan, PlanDiff]:
    _check_clusters(state, cluster_in)
    changed, renamed = _changed_nodes(state.nodes, node_in)
    if not changed:  # keep the new objects: the next comparison is by identity again
        same = replace(state, clusters=cluster_in, nodes=node_in)
        return same, previous, PlanDiff([], [], previous.findings, previous)
    if state.hard is not None:
        raise Fallback(state.hard)
    parts, topo = state.parts, state.parts.topo
    old_nodes = state.nodes
    touched = {
        cn.spec.cluster_name
        for name in changed
        for cn in (old_nodes.get(name), node_in.get(name))
        if cn is not None
    }

    # -- ClusterNodes by cluster, cluster views (their local CIDRs) ---------------------------
    by_cluster = dict(state.by_cluster)
    moved: set[str] = set()  # clusters whose set of ClusterNodes or their pod CIDRs changed
    for name in changed:
        before, after = old_nodes.get(name), node_in.get(name)
        was = before.spec.cluster_name if before is not None else None
        now = after.spec.cluster_name if after is not None else None
        if was != now:
            if was is not None:
                by_cluster[was] = by_cluster[was] - {name}
            if now is not None:
                by_cluster[now] = by_cluster.get(now, frozenset()) | {name}
            moved.update(c for c in (was, now) if c is not None)
        elif now is not None and before.spec.pod_cidrs != after.spec.pod_cidrs:  # type: ignore[union-attr]
            moved.add(now)
    views = topo.clusters
    for c in moved & views.keys():
        members_in = [node_in[n] for n in sorted(by_cluster[c])]
        if cluster_view(cluster_in[c], members_in) != views[c]:
            raise Fallback(f"the CIDRs local to Cluster/{c} changed (what overlaps it)")

    # -- node views, roles --------------------------------------------------------------------
    node_findings = dict(state.node_findings)
    new_views: dict[str, NodeView | None] = {}
    mtus = state.mtus.copy()
    for name in changed:
        cn = node_in.get(name)
        found: list[Finding] = []
        view = node_view(cn, views.get(cn.spec.cluster_name), found) if cn is not None else None
        node_findings.pop(name, None)
        if found:
            node_findings[name] = found
        new_views[name] = view
        old = topo.nodes.get(name)
        if old is not None:
            mtus[old.mtu] -= 1
            if view is not None and view.mtu != old.mtu and name in state.targets:
                raise Fallback(f"the MTU of ClusterNode/{name} changed (routes toward it)")
        if view is not None:
            mtus[view.mtu] += 1
    mtus = +mtus
    if max(mtus, default=0) != max(state.mtus, default=0):
        raise Fallback("the largest underlay MTU changed (path MTUs of every node)")
    reorder = renamed or any(
        (v is None) != (topo.nodes.get(n) is None)
        or (v is not None and v.cluster != topo.nodes[n].cluster)
        for n, v in new_views.items()
    )
    nodes = dict(topo.nodes)
    for name, view in new_views.items():
        if view is None:
            nodes.pop(name, None)
        else:
            nodes[name] = view
    if reorder:  # the order build_topology makes: by cluster, then name
        nodes = dict(sorted(nodes.items(), key=lambda kv: (kv[1].cluster, kv[0])))
    members = dict(topo.members)
    role_findings = dict(state.role_findings)
    for c in touched & views.keys():
        members[c] = sorted(n for n in by_cluster.get(c, ()) if n in nodes)
        gateway, service, role_findings[c] = _roles(views[c], members[c], node_in)
        if gateway != topo.gateway.get(c):
            raise Fallback(f"the gateway of Cluster/{c} changed")
        if service != topo.service_node.get(c):
            raise Fallback(f"the service node of Cluster/{c} changed")
    new_topo = FederationView(views, nodes, topo.gateway, topo.service_node, members)

    # -- devices (no collision in a mesh the change touches) ----------------------------------
    values, counts, shared = dict(state.values), dict(state.counts), dict(state.shared)
    devices: DeviceMap = dict(parts.devices)
    meshes: set[MeshKey] = set()
    for name, view in new_views.items():
        for mesh_key, value in values.pop(name, ()):
            _count(counts, shared, meshes, mesh_key, value, -1)
        devices.pop(name, None)
        if view is None:
            continue
        wanted = wanted_devices(new_topo, view)
        values[name] = [derived(view, dev, f, pool) for dev, f, pool in wanted]
        for mesh_key, value in values[name]:
            _count(counts, shared, meshes, mesh_key, value, +1)
        devices[name] = node_devices(
            view,
            [
                (dev, f, derived_text(pool, value))
                for (dev, f, pool), (_, value) in zip(wanted, values[name], strict=True)
            ],
        )
    for mesh_key in sorted(meshes):  # a collision now, or one before (nodes moved aside)
        if shared.get(mesh_key) or state.shared.get(mesh_key):
            raise Fallback(f"a {mesh_key[0]} address collision in a mesh the change touches")

    # -- exports: the same CIDRs, new routes toward changed nodes -----------------------------
    exports = dict(parts.exports.by_family)
    spread: dict[int, set[str]] = {4: set(), 6: set()}  # family -> owners of changed entries
    for c in sorted(touched & views.keys()):
        announced = advertised(new_topo, views[c])
        if announced != state.advertised[c]:
            raise Fallback(f"the CIDRs Cluster/{c} advertises changed")
        for real, target in announced:
            if target not in new_views:
                continue
            old_export = make_export(views[c], real, target, parts.devices)
            now_export = make_export(views[c], real, target, devices)
            if old_export == now_export:
                continue
            if not (isinstance(old_export, Export) and isinstance(now_export, Export)):
                raise Fallback(f"what Cluster/{c} advertises changed ({real})")
            family = cidr_family(real)
            i = state.index[(family, now_export.cidr)]
            table = exports[family]
            if table[i] != old_export:
                continue  # a duplicate of another cluster's CIDR: not routed
            if table is parts.exports.by_family[family]:
                exports[family] = table = list(table)
            table[i] = now_export
            spread[family].add(c)
    export_table = ExportTable(exports, parts.exports.skipped)

    # -- the bridge mesh ----------------------------------------------------------------------
    fdbs, arps = dict(state.mesh[0]), dict(state.mesh[1])
    for name, view in new_views.items():
        old_view = topo.nodes.get(name)
        before_entries: dict[int, tuple[str, Fdb, Arp]] = {
            f: (old_view.cluster, fdb, arp)  # type: ignore[union-attr]
            for f, fdb, arp in (
                mesh_entries(old_view, parts.devices[name]) if old_view is not None else ()
            )
        }
        after_entries: dict[int, tuple[str, Fdb, Arp]] = {
            f: (view.cluster, fdb, arp)  # type: ignore[union-attr]
            for f, fdb, arp in (mesh_entries(view, devices[name]) if view is not None else ())
        }
        for family in (4, 6):
            a, b = before_entries.get(family), after_entries.get(family)
            if a == b:
                continue
            if fdbs[family] is state.mesh[0][family]:
                fdbs[family], arps[family] = list(fdbs[family]), list(arps[family])
            if a is not None:
                _remove(fdbs[family], (a[0], a[1]), fdb_order)
                _remove(arps[family], (a[0], a[2]), arp_order)
                spread[family].add(a[0])
            if b is not None:
                _insert(fdbs[family], (b[0], b[1]), fdb_order)
                _insert(arps[family], (b[0], b[2]), arp_order)
                spread[family].add(b[0])

    # -- recipes ------------------------------------------------------------------------------
    redo = {n for n, v in new_views.items() if v is not None}
    for c in touched & views.keys():
        gateway = topo.gateway.get(c)
        if views[c].mode == "gateway" and gateway is not None:
            redo |= set(members[c]) if gateway in new_views else {gateway}
    recipes: dict[str, Recipe] = dict(parts.recipes)
    for name, view in new_views.items():
        if view is None:
            recipes.pop(name, None)
    out: set[str] = set()
    bridge = {f: dict(by) for f, by in state.bridge.items()}
    for name in sorted(redo):
        recipe = node_recipe(new_topo, nodes[name], devices, {}, {})
        old_recipe = parts.recipes.get(name)
        if recipe != old_recipe:
            out.add(name)
        recipes[name] = recipe
    for name in new_views:  # bridge-set membership of the changed nodes
        for family in (4, 6):
            for r, add in ((parts.recipes.get(name), False), (recipes.get(name), True)):
                if r is not None and family in r.mesh_families:
                    names = bridge[family].get(r.cluster, frozenset())
                    bridge[family][r.cluster] = names | {name} if add else names - {name}
    if renamed:
        recipes = dict(sorted(recipes.items()))
    for family, owners in spread.items():
        for c, names in bridge[family].items():
            if owners and owners != {c}:  # they list the changed entries (not their own)
                out |= names
    removed = [n for n in parts.recipes if n not in recipes]
    out -= set(removed)

    # -- the new plan -------------------------------------------------------------------------
    new_parts = replace(
        parts, topo=new_topo, devices=devices, exports=export_table, mesh={}, recipes=recipes
    )
    new_state = replace(
        state,
        clusters=cluster_in,
        nodes=node_in,
        by_cluster=by_cluster,
        parts=new_parts,
        mesh=(fdbs, arps),
        role_findings=role_findings,
        node_findings=node_findings,
        values=values,
        counts=counts,
        shared=shared,
        bridge=bridge,
        mtus=mtus,
    )
    new_topo.findings = new_state.topology_findings()
    new_parts.topo = new_topo
    findings = new_parts.findings()
    current = Plan(new_topo, recipes, export_table, {}, findings, {}, sorted_mesh=(fdbs, arps))
    current.share_aggregators(previous)
    changed_names = sorted(out)
    return new_state, current, PlanDiff(changed_names, removed, findings, current)


def _count(
    counts: dict[MeshKey, Counter[int]],
    shared: dict[MeshKey, int],
    meshes: set[MeshKey],
    mesh_key: MeshKey,
    value: int,
    step: int,
) -> None:
    """Count a derived address in or out of its mesh (copying the mesh's counter once)."""
    if mesh_key not in meshes:
        meshes.add(mesh_key)
        counts[mesh_key] = Counter(counts.get(mesh_key, ()))
    c = counts[mesh_key]
    before = c[value]
    c[value] = before + step
    if c[value] <= 0:
        del c[value]
    after = c.get(value, 0)
    shared[mesh_key] = shared.get(mesh_key, 0) + (after > 1) - (before > 1)


def _remove(entries: list[Any], entry: tuple[str, Fdb | Arp], key: Callable[[Any], Any]) -> None:
    k = key(entry)
    i = bisect_left(entries, k, key=key)
    if i >= len(entries) or entries[i] != entry:
        raise Fallback("the bridge mesh is not as planned")  # not expected: plan in full
    if (i + 1 < len(entries) and key(entries[i + 1]) == k) or (i and key(entries[i - 1]) == k):
        raise Fallback("two bridge mesh entries sort the same (their order is the plan's)")
    del entries[i]


def _insert(entries: list[Any], entry: tuple[str, Fdb | Arp], key: Callable[[Any], Any]) -> None:
    k = key(entry)
    i = bisect_left(entries, k, key=key)
    if i < len(entries) and key(entries[i]) == k:
        raise Fallback("two bridge mesh entries sort the same (their order is the plan's)")
    entries.insert(i, entry)
