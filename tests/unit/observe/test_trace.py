"""`trace` over a planned federation in a real (sqlite) store, kernels not read: the hops of
a complete path, and each cause at the hop where it breaks the path."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterlink.api import Cluster, ClusterNode, NodeConfig, NodeConfigStatus, ObjectMeta
from clusterlink.errors import BadInput
from clusterlink.observe.trace import (
    Federation,
    Hop,
    LabView,
    NoKernels,
    Seen,
    Trace,
    endpoint,
    trace,
    walk,
)
from clusterlink.planner import plan
from clusterlink.store.sqlite import SqliteStore
from tests.unit.planner.federation import cluster, node, wg_key


def federation(
    clusters: list[Cluster], nodes: list[ClusterNode], tmp_path: Path, synced: bool = True
) -> SqliteStore:
    store = SqliteStore(tmp_path / "s.db")
    for c in clusters:
        created = store.create(c)
        store.update_status(created.model_copy(update={"status": c.status}))
    for n in nodes:
        store.create(n)
    replan(store, synced)
    return store


def replan(store: SqliteStore, synced: bool = True) -> None:
    """Write the plan's NodeConfigs, as the network-manager would; `synced`: as applied."""
    for name, spec in plan(list(store.list(Cluster)), list(store.list(ClusterNode))).node_configs():
        try:
            nc = store.get(NodeConfig, name)
            nc = store.update(nc.model_copy(update={"spec": spec}))
        except Exception:
            nc = store.create(NodeConfig(metadata=ObjectMeta(name=name), spec=spec))
        if synced:
            status = NodeConfigStatus(phase="Synced", observed_generation=nc.metadata.generation)
            store.update_status(nc.model_copy(update={"status": status}))


def p2p_and_gateway(tmp_path: Path, synced: bool = True) -> SqliteStore:
    return federation(
        [cluster("a", pods=("10.1.0.0/16",)), cluster("b", "gateway", pods=("10.2.0.0/16",))],
        [
            node("a", "n1", "192.168.1.1", pods=("10.1.1.0/24",)),
            node("b", "g", "192.168.2.1", gateway=True, pods=("10.2.1.0/24",)),
            node("b", "i", "192.168.2.2", pods=("10.2.2.0/24",)),
        ],
        tmp_path,
        synced,
    )


def broken(result: Trace) -> Hop:
    assert result.broken is not None and not result.complete, result.hops
    return result.broken


def test_a_complete_path_crosses_the_gateway(tmp_path: Path) -> None:
    result = trace(p2p_and_gateway(tmp_path), "10.1.1.5", "10.2.2.7")
    steps = [(h.node, h.step) for h in result.hops]
    assert steps == [
        ("a-n1", "synced"),
        ("a-n1", "route"),
        ("a-n1", "fdb"),
        ("b-g", "synced"),
        ("b-g", "cluster"),
        ("b-i", "synced"),
        ("b-i", "deliver"),
    ]
    assert result.complete and result.broken is None
    assert "dev vx-bridge" in result.hops[1].config and "the CNI" in result.hops[4].config
    assert "dst 192.168.2.1" in result.hops[2].config  # the FDB entry: b-g's underlay IP


def test_from_an_internal_node_through_its_gateway(tmp_path: Path) -> None:
    store = p2p_and_gateway(tmp_path)
    nc = store.get(NodeConfig, "b-i")
    result = trace(store, "10.2.2.5", "10.1.1.5")
    assert result.complete, result.hops
    assert [h.node for h in result.hops if h.step == "route"] == ["b-i", "b-g"]
    # Within its own cluster the internal node's table 200 defers to the CNI (a throw route
    # when its routes are aggregated).
    local = trace(store, "10.2.2.5", "10.2.1.5")
    assert local.complete and [h.step for h in local.hops][:2] == ["synced", "cluster"], nc


def test_node_not_synced(tmp_path: Path) -> None:
    bad = broken(trace(p2p_and_gateway(tmp_path, synced=False), "10.1.1.5", "10.2.2.7"))
    assert (bad.node, bad.cause) == ("a-n1", "node not synced")


def test_no_route_to_an_address_nobody_has(tmp_path: Path) -> None:
    bad = broken(trace(p2p_and_gateway(tmp_path), "10.1.1.5", "10.9.0.1"))
    assert (bad.step, bad.cause) == ("route", "no route")


def test_gateway_missing(tmp_path: Path) -> None:
    store = p2p_and_gateway(tmp_path)
    gw = store.get(ClusterNode, "b-g")
    store.update(gw.model_copy(update={"spec": gw.spec.model_copy(update={"roles": []})}))
    replan(store)
    bad = broken(trace(store, "10.1.1.5", "10.2.2.7"))
    assert (bad.node, bad.cause) == ("a-n1", "gateway missing")


def test_family_not_enabled(tmp_path: Path) -> None:
    store = federation(
        [
            cluster("a", family="all", pods=("10.1.0.0/16", "fd01::/48")),
            cluster("b", family="ipv4", pods=("10.2.0.0/16", "fd02::/48")),
        ],
        [
            node("a", "n1", "192.168.1.1", "fd00::1", pods=("10.1.1.0/24", "fd01:0:1::/64")),
            node("b", "n1", "192.168.2.1", "fd00::2", pods=("10.2.1.0/24", "fd02:0:1::/64")),
        ],
        tmp_path,
    )
    bad = broken(trace(store, "fd01:0:1::5", "fd02:0:1::5"))
    assert (bad.node, bad.cause) == ("a-n1", "family not enabled")
    assert "IPv6 is not enabled in cluster b" in bad.detail
    assert trace(store, "10.1.1.5", "10.2.1.5").complete


def test_cidr_skipped_for_overlap(tmp_path: Path) -> None:
    store = federation(
        [
            cluster("a", pods=("10.1.0.0/16",)),
            cluster("b", pods=("10.2.0.0/16",)),
            cluster("c", pods=("10.2.0.0/16",)),
        ],
        [
            node("a", "n1", "192.168.1.1", pods=("10.1.1.0/24",)),
            node("b", "n1", "192.168.2.1", pods=("10.2.1.0/24",)),
            node("c", "n1", "192.168.3.1", pods=("10.2.1.0/24",)),
        ],
        tmp_path,
    )
    # b's pods from c: c's own CIDR overlaps b's, so b's is not routed in c.
    bad = broken(trace(store, "c/n1", "10.2.1.5"))
    assert (bad.node, bad.cause) == ("c-n1", "CIDR skipped for overlap")


class Unreachable(NoKernels):
    """Kernels that have no route to anything on `nodes`."""

    def __init__(self, *nodes: str) -> None:
        self.nodes = nodes

    def route_get(self, node: str, dst: str) -> Seen | str | None:
        return "Network is unreachable" if node in self.nodes else None


@pytest.mark.parametrize(
    "nodes, expected",
    [
        (("a-n1",), ("a-n1", "route", "drift")),  # the NodeConfig routes it, the kernel not
        (("b-g",), ("b-g", "cluster", "no route")),  # the gateway cannot reach its own node
    ],
)
def test_a_kernel_without_the_route_breaks_the_path(
    tmp_path: Path, nodes: tuple[str, ...], expected: tuple[str, str, str]
) -> None:
    fed = Federation.read(p2p_and_gateway(tmp_path))
    lab = LabView({}, {})
    src = endpoint("10.1.1.5", fed, lab, 4, True)
    dst = endpoint("10.2.2.7", fed, lab, 4, False)
    bad = broken(walk(fed, Unreachable(*nodes), src, dst))
    assert (bad.node, bad.step, bad.cause) == expected
    assert bad.kernel == "Network is unreachable"


def test_bad_endpoints_are_bad_input(tmp_path: Path) -> None:
    store = p2p_and_gateway(tmp_path)
    with pytest.raises(BadInput, match="no such lab pod"):
        trace(store, "a/n1/p1", "10.2.2.7")
    with pytest.raises(BadInput, match=r"no node of the federation holds 10\.7\.0\.1"):
        trace(store, "10.7.0.1", "10.2.2.7")
    with pytest.raises(BadInput, match="want an IP"):
        trace(store, "nonsense", "10.2.2.7")
    assert trace(store, "a/n1", "b/i").complete  # nodes: a-n1's IP -> b-i's pod CIDR


def test_a_throw_route_hands_the_own_cluster_to_the_cni(tmp_path: Path) -> None:
    """b-i's routes aggregate to 10.0.0.0/21 with a throw for b-g's own 10.0.2.0/24."""
    remote = [
        node("a", f"n{i}", f"192.168.1.{i + 1}", pods=(f"10.0.{i}.0/24",))
        for i in (0, 1, 3, 4, 5, 6, 7)
    ]
    store = federation(
        [cluster("a"), cluster("b", "gateway")],
        [
            *remote,
            node("b", "g", "192.168.2.1", gateway=True, pods=("10.0.2.0/24",)),
            node("b", "i", "192.168.2.2", pods=("10.9.2.0/24",)),
        ],
        tmp_path,
    )
    routes = {(r.cidr, r.type) for r in store.get(NodeConfig, "b-i").spec.routes}
    assert routes == {("10.0.0.0/21", ""), ("10.0.2.0/24", "throw")}
    local = trace(store, "10.9.2.5", "10.0.2.7")
    assert local.complete and [(h.node, h.step) for h in local.hops][1] == ("b-i", "cluster")
    remote_path = trace(store, "10.9.2.5", "10.0.3.7")
    assert remote_path.complete and "10.0.0.0/21" in remote_path.hops[1].config


def encrypted_and_plain(tmp_path: Path, allow_plaintext: bool) -> SqliteStore:
    """a asks for WireGuard, b (gateway mode) does not."""
    return federation(
        [
            cluster(
                "a", pods=("10.1.0.0/16",), encryption="wireguard", allow_plaintext=allow_plaintext
            ),
            cluster("b", "gateway", pods=("10.2.0.0/16",)),
        ],
        [
            node("a", "n1", "192.168.1.1", pods=("10.1.1.0/24",), key=wg_key("a-n1")),
            node("b", "g", "192.168.2.1", gateway=True, pods=("10.2.1.0/24",)),
            node("b", "i", "192.168.2.2", pods=("10.2.2.0/24",)),
        ],
        tmp_path,
    )


def test_encryption_mismatch_names_the_planner_warning(tmp_path: Path) -> None:
    store = encrypted_and_plain(tmp_path, allow_plaintext=False)
    there = broken(trace(store, "10.1.1.5", "10.2.2.7"))
    assert (there.node, there.step, there.cause) == ("a-n1", "encryption", "encryption mismatch")
    assert there.detail.startswith("asks for encryption (wireguard) but b does not")
    assert there.config == "a: encryption wireguard"
    # From the plain side: b's internal node has no route to a either.
    back = broken(trace(store, "10.2.2.7", "10.1.1.5"))
    assert (back.node, back.cause) == ("b-i", "encryption mismatch")
    assert back.detail.startswith("a asks for encryption (wireguard) and this cluster does not")
    # An address nobody owns is still plain "no route".
    assert broken(trace(store, "10.1.1.5", "10.9.0.1")).cause == "no route"


def test_allow_plaintext_links_in_vxlan(tmp_path: Path) -> None:
    store = encrypted_and_plain(tmp_path, allow_plaintext=True)
    for src, dst in (("10.1.1.5", "10.2.2.7"), ("10.2.2.7", "10.1.1.5")):
        result = trace(store, src, dst)
        assert result.complete, result.hops
        assert any("dev vx-bridge" in h.config for h in result.hops if h.step == "route")


def test_two_encrypted_clusters_trace_over_wireguard(tmp_path: Path) -> None:
    store = federation(
        [
            cluster("a", pods=("10.1.0.0/16",), encryption="wireguard"),
            cluster("b", pods=("10.2.0.0/16",), encryption="wireguard"),
        ],
        [
            node("a", "n1", "192.168.1.1", pods=("10.1.1.0/24",), key=wg_key("a-n1")),
            node("b", "n1", "192.168.2.1", pods=("10.2.1.0/24",), key=wg_key("b-n1")),
        ],
        tmp_path,
    )
    result = trace(store, "10.1.1.5", "10.2.1.7")
    assert result.complete, result.hops
    assert "dev wg-bridge" in result.hops[1].config
    assert result.hops[2].step == "peer" and "endpoint 192.168.2.1:" in result.hops[2].config
    assert [h.node for h in result.hops][-1] == "b-n1"
