"""Incremental planning: after any sequence of changes, `Planner.update` gives what `plan()`
gives, byte for byte, and names exactly the NodeConfigs that changed; the patch is taken for
one node's change and the fallbacks say why."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from clusterlink.api import ClusterNode
from clusterlink.planner import Plan, plan
from clusterlink.planner.incremental import Planner
from tests.unit.planner.federation import cluster, node
from tests.unit.planner.test_properties import Federation, dump, federations

CHANGES = [
    "ip",
    "ip6",
    "block",
    "add-block",
    "gateway",
    "mtu",
    "iface",
    "key",
    "labels",
    "add",
    "remove",
    "move",
    "cluster-option",
    "cluster-add",
    "cluster-remove",
    "copy",
]


def _plain(fed: Federation) -> Federation:
    """No encryption, no directRouting, and underlay addresses whose low bits differ across
    clusters (no vx-bridge collisions): the federations the patch applies to."""
    clusters = []
    for c in fed[0]:
        c = c.model_copy(deep=True)
        link = c.spec.cluster_link_options
        assert link is not None
        link.encryption, link.direct_routing = "none", False
        clusters.append(c)
    nodes = []
    for n in fed[1]:
        n = n.model_copy(deep=True)
        if n.spec.ip:
            a, _, c, d = n.spec.ip.split(".")
            n.spec.ip = f"{a}.{int(a) - 100}.{c}.{d}"
        nodes.append(n)
    return clusters, nodes


def _change(data: st.DataObject, fed: Federation, step: int) -> Federation:
    """One random change; changed objects are new (deep copies), the others kept as they are
    (as the network-manager's watch cache hands them over)."""
    clusters, nodes = list(fed[0]), list(fed[1])
    what = data.draw(st.sampled_from(CHANGES), label="change")
    if what.startswith("cluster"):
        if what == "cluster-add" or not clusters:
            ci = 10 + step
            clusters.append(
                cluster(
                    f"c{ci}",
                    data.draw(st.sampled_from(["p2p", "gateway"])),
                    pods=(f"10.{ci}.0.0/16",),
                )
            )
            return clusters, nodes
        i = data.draw(st.integers(0, len(clusters) - 1), label="cluster")
        if what == "cluster-remove":
            del clusters[i]
            return clusters, nodes
        c = clusters[i] = clusters[i].model_copy(deep=True)
        link = c.spec.cluster_link_options
        assert link is not None
        option = data.draw(st.sampled_from(["cni", "services", "enable", "mode"]), label="option")
        if option == "cni":
            link.cni = "flannel" if link.cni == "calico" else "calico"
        elif option == "services":
            status = c.status.cluster_link_status
            status.service_cidrs = [] if status.service_cidrs else [f"10.{200 + i}.0.0/16"]
        elif option == "enable":
            link.enable = not link.enable
        else:
            link.network_type = "gateway" if link.network_type == "p2p" else "p2p"
        return clusters, nodes
    if what == "add" or not nodes:
        target = data.draw(st.sampled_from([c.name for c in clusters] or ["c0"]), label="into")
        ci = int(target[1:])
        pods = (f"10.{ci}.{100 + step}.0/24",) if data.draw(st.booleans(), label="pods") else ()
        nodes.append(
            node(target, f"x{step}", f"{100 + ci}.{ci}.{100 + step}.1", pods=pods, mtu=1500)
        )
        return clusters, nodes
    i = data.draw(st.integers(0, len(nodes) - 1), label="node")
    if what == "remove":
        del nodes[i]
        return clusters, nodes
    if what == "copy":  # equal objects, not the same ones: nothing changed
        return [c.model_copy(deep=True) for c in clusters], [n.model_copy(deep=True) for n in nodes]
    n = nodes[i] = nodes[i].model_copy(deep=True)
    spec = n.spec
    if what == "ip" and spec.ip:
        a, b, c, _ = spec.ip.split(".")
        spec.ip = f"{a}.{b}.{c}.{data.draw(st.integers(1, 250), label='host')}"
    elif what == "ip6" and spec.ip6:
        spec.ip6 = spec.ip6.rsplit(":", 1)[0] + f":{data.draw(st.integers(1, 250), label='h6'):x}"
    elif what == "block":
        spec.pod_cidrs = spec.pod_cidrs[:-1]
    elif what == "add-block":
        spec.pod_cidrs = [*spec.pod_cidrs, f"10.250.{step}.0/24"]
    elif what == "gateway":
        spec.roles = [] if spec.roles else ["gateway"]
    elif what == "mtu":
        spec.mtu = data.draw(st.sampled_from([None, 1400, 1450, 1500, 9000]), label="mtu")
    elif what == "iface":
        spec.interface_name = "eth1" if spec.interface_name == "eth0" else "eth0"
    elif what == "key":
        spec.wireguard_public_key = ""
    elif what == "labels":
        n.metadata.labels = {**n.metadata.labels, "touched": str(step)}
    elif what == "move" and clusters:
        spec.cluster_name = data.draw(st.sampled_from([c.name for c in clusters]), label="to")
    return clusters, nodes


def _json(p: Plan) -> dict[str, str]:
    return {n: s.model_dump_json(by_alias=True) for n, s in p.node_configs()}


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(federations(), st.booleans(), st.data())
def test_incremental_equals_a_full_plan_after_every_change(
    fed: Federation, plain: bool, data: st.DataObject
) -> None:
    if plain:
        fed = _plain(fed)
    planner = Planner()
    planner.update(*fed)
    before = _json(planner.plan)  # type: ignore[arg-type]
    for step in range(data.draw(st.integers(1, 6), label="steps")):
        fed = _change(data, fed, step)
        diff = planner.update(*fed)
        event("patched" if planner.last_reason is None else f"full: {planner.last_reason[:30]}")
        reference = plan(*fed)
        assert diff.plan is planner.plan
        assert dump(planner.plan) == dump(reference)  # type: ignore[arg-type]
        assert diff.findings == reference.findings
        after = _json(reference)
        assert diff.changed == [n for n in after if before.get(n) != after[n]], planner.last_reason
        assert diff.removed == [n for n in before if n not in after], planner.last_reason
        before = after


# -- the patch is taken, and writes only what it must ----------------------------------------


def p2p(clusters: int, nodes: int) -> Federation:
    cs = [
        cluster(f"c{c}", pods=(f"10.{c}.0.0/16",), services=(f"11.{c}.0.0/16",))
        for c in range(clusters)
    ]
    ns = [
        node(f"c{c}", f"n{n}", f"172.16.{c}.{n + 1}", gateway=n == 0, pods=(f"10.{c}.{n}.0/24",))
        for c in range(clusters)
        for n in range(nodes)
    ]
    return cs, ns


def gateways(clusters: int, nodes: int) -> Federation:
    cs = [cluster(f"c{c}", "gateway", pods=(f"10.{c}.0.0/16",)) for c in range(clusters)]
    ns = [
        node(f"c{c}", f"n{n}", f"172.16.{c}.{n + 1}", gateway=n == 0)
        for c in range(clusters)
        for n in range(nodes)
    ]
    return cs, ns


def _edit(fed: Federation, name: str, edit: Callable[[ClusterNode], None]) -> Federation:
    nodes = list(fed[1])
    i = next(i for i, n in enumerate(nodes) if n.name == name)
    nodes[i] = nodes[i].model_copy(deep=True)
    edit(nodes[i])
    return fed[0], nodes


def _set_ip(ip: str) -> Callable[[ClusterNode], None]:
    def edit(n: ClusterNode) -> None:
        n.spec.ip = ip

    return edit


def test_an_underlay_ip_change_rewrites_only_the_nodeconfigs_that_mention_it() -> None:
    fed = p2p(10, 10)
    planner = Planner()
    planner.update(*fed)
    before = _json(planner.plan)  # type: ignore[arg-type]
    diff = planner.update(*_edit(fed, "c3-n4", _set_ip("172.20.3.5")))
    assert planner.last_reason is None and planner.full_plans == 1
    after = _json(planner.plan)  # type: ignore[arg-type]
    mentioning = {n for n, text in after.items() if '"172.20.3.5"' in text}
    assert len(mentioning) == 90  # every node of the 9 other clusters: FDB toward it
    assert diff.changed == sorted(mentioning | {"c3-n4"})  # and the node itself (its devices)
    assert not any("172.16.3.5" in text for text in after.values())
    assert all(before[n] == after[n] for n in after if n not in diff.changed)
    assert diff.removed == []


def test_an_internal_node_change_rewrites_it_and_its_gateway() -> None:
    fed = gateways(20, 3)
    planner = Planner()
    planner.update(*fed)
    diff = planner.update(*_edit(fed, "c7-n2", _set_ip("172.20.7.3")))
    assert planner.last_reason is None
    assert diff.changed == ["c7-n0", "c7-n2"]
    assert dump(planner.plan) == dump(plan(*_edit(fed, "c7-n2", _set_ip("172.20.7.3"))))  # type: ignore[arg-type]


def test_removing_and_adding_an_internal_node_is_patched() -> None:
    fed = gateways(5, 3)
    planner = Planner()
    planner.update(*fed)
    smaller = (fed[0], [n for n in fed[1] if n.name != "c2-n1"])
    diff = planner.update(*smaller)
    assert planner.last_reason is None
    assert (diff.changed, diff.removed) == (["c2-n0"], ["c2-n1"])
    diff = planner.update(*fed)
    assert planner.last_reason is None
    assert diff.changed == ["c2-n0", "c2-n1"] and diff.removed == []
    assert dump(planner.plan) == dump(plan(*fed))  # type: ignore[arg-type]


def test_nothing_changed_is_nothing_to_write() -> None:
    fed = p2p(3, 3)
    planner = Planner()
    planner.update(*fed)
    copies = [c.model_copy(deep=True) for c in fed[0]], [n.model_copy(deep=True) for n in fed[1]]
    diff = planner.update(*copies)
    assert (diff.changed, diff.removed, planner.last_reason, planner.full_plans) == (
        [],
        [],
        None,
        1,
    )


def _encrypted(fed: Federation) -> Federation:
    clusters = [c.model_copy(deep=True) for c in fed[0]]
    for c in clusters:
        assert c.spec.cluster_link_options is not None
        c.spec.cluster_link_options.encryption = "wireguard"
    return clusters, fed[1]


def _cni(fed: Federation) -> Federation:
    clusters = list(fed[0])
    clusters[1] = clusters[1].model_copy(deep=True)
    assert clusters[1].spec.cluster_link_options is not None
    clusters[1].spec.cluster_link_options.cni = "flannel"
    return clusters, fed[1]


def _roles(*roles: str) -> Callable[[ClusterNode], None]:
    def edit(n: ClusterNode) -> None:
        n.spec.roles = list(roles)

    return edit


def _pods(n: ClusterNode) -> None:
    n.spec.pod_cidrs = ["10.1.9.0/24"]


def _mtu(n: ClusterNode) -> None:
    n.spec.mtu = 1400


@pytest.mark.parametrize(
    "change, reason",
    [
        (_cni, "Cluster/c1 changed"),
        (lambda f: (f[0][:2], f[1]), "Cluster/c2 removed"),
        (lambda f: _edit(f, "c1-n1", _pods), "the CIDRs local to Cluster/c1 changed"),
        (lambda f: _edit(f, "c1-n0", _roles()), "the gateway of Cluster/c1 changed"),
        (lambda f: _edit(f, "c1-n1", _mtu), "the MTU of ClusterNode/c1-n1 changed"),
        (lambda f: _edit(f, "c1-n1", _set_ip("172.16.2.2")), "a vx-bridge address collision"),
    ],
    ids=["cluster-option", "cluster-removed", "pod-cidrs", "gateway-moved", "mtu", "collision"],
)
def test_fallbacks_say_why(change: Callable[[Federation], Federation], reason: str) -> None:
    fed = p2p(3, 3)
    planner = Planner()
    planner.update(*fed)
    before = _json(planner.plan)  # type: ignore[arg-type]
    changed = change(fed)
    diff = planner.update(*changed)
    assert planner.full_plans == 2
    assert planner.last_reason is not None and planner.last_reason.startswith(reason)
    assert dump(planner.plan) == dump(plan(*changed))  # type: ignore[arg-type]
    after = _json(planner.plan)  # type: ignore[arg-type]
    assert diff.changed == [n for n in after if before.get(n) != after[n]]


def test_an_encrypted_federation_is_always_planned_in_full() -> None:
    fed = _encrypted(p2p(3, 3))
    planner = Planner()
    planner.update(*fed)
    changed = _edit(fed, "c1-n1", _set_ip("172.16.1.9"))
    planner.update(*changed)
    assert planner.last_reason is not None and planner.last_reason.startswith("encryption")
    assert dump(planner.plan) == dump(plan(*changed))  # type: ignore[arg-type]


def test_diff_specs_are_the_reference_plans() -> None:
    """The diff materialises from the patched plan: the same specs as the reference."""
    fed = p2p(4, 4)
    planner = Planner()
    planner.update(*fed)
    changed = _edit(fed, "c0-n3", _set_ip("172.30.0.4"))
    diff = planner.update(*changed)
    reference = plan(*changed)
    assert {n: diff.spec(n).model_dump_json() for n in diff.changed} == {
        n: reference.spec(n).model_dump_json() for n in diff.changed
    }
    assert json.loads(dump(reference))["findings"] == [f.to_dict() for f in diff.findings]


def test_a_collision_that_goes_away_is_planned_in_full() -> None:
    """Nodes moved aside by a collision take their own address again: no patch."""
    fed = p2p(3, 3)
    planner = Planner()
    colliding = _edit(fed, "c1-n1", _set_ip("172.16.2.2"))  # c2-n1 derives the same address
    planner.update(*colliding)
    planner.update(*fed)
    assert planner.last_reason is not None and "collision" in planner.last_reason
    assert dump(planner.plan) == dump(plan(*fed))  # type: ignore[arg-type]
