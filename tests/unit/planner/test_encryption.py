"""Encrypted links (`encryption: wireguard`): WireGuard devices, peers, routes over them, the
mismatch policy, and MTU. Scenario by scenario, with the hop-by-hop walker."""

from __future__ import annotations

import pytest

from clusterlink.api import ClusterNode
from clusterlink.planner import Plan, plan
from tests.unit.planner.federation import cluster, node, walk, wg_key


def fed(enc_a: str = "wireguard", enc_b: str = "wireguard", **kw: object) -> list[object]:
    return [
        cluster("a", encryption=enc_a, family="all", **kw),  # type: ignore[arg-type]
        cluster("b", mode="gateway", encryption=enc_b, family="all", pods=("10.2.0.0/16",)),
    ]


def nodes(keys: bool = True, gateway: str = "g") -> list[ClusterNode]:
    def k(name: str) -> str:
        return wg_key(name) if keys else ""

    return [
        node("a", "n1", "192.168.1.1", "fd00:1::1", pods=("10.1.1.0/24", "fd10:1:1::/64"),
             key=k("a1")),
        node("a", "n2", "192.168.1.2", "fd00:1::2", pods=("10.1.2.0/24", "fd10:1:2::/64"),
             key=k("a2")),
        node("b", "g", "192.168.2.1", "fd00:2::1", gateway=gateway == "g", key=k("bg"),
             pods=("10.2.1.0/24",)),
        node("b", "h", "192.168.2.3", "fd00:2::3", gateway=gateway == "h", key=k("bh"),
             pods=("10.2.3.0/24",)),
        node("b", "i", "192.168.2.2", "fd00:2::2", pods=("10.2.2.0/24",), key=k("bi")),
    ]  # fmt: skip


def wg(p: Plan, name: str, dev: str = "wg-bridge") -> dict[str, tuple[str, ...]]:
    """endpoint -> allowed IPs of a node's wg device."""
    (device,) = [w for w in p.spec(name).wireguard if w.name == dev]
    return {peer.endpoint: peer.allowed_ips for peer in device.peers}


def test_both_encrypted_route_over_wireguard_and_peer_with_keys_and_cidrs() -> None:
    p = plan(fed(), nodes())  # type: ignore[arg-type]
    a1 = p.spec("a-n1")
    assert not a1.devices and not a1.fdbs and not a1.arps  # no VXLAN on a P2P encrypted node
    # b advertises only its IPv4 status CIDR
    assert {(r.cidr, r.dev) for r in a1.routes} == {("10.2.0.0/16", "wg-bridge")}
    assert wg(p, "a-n1") == {"192.168.2.1:51820": ("220.168.2.1/32", "10.2.0.0/16")}
    peers = next(w for w in p.spec("b-g").wireguard if w.name == "wg-bridge").peers
    assert {x.public_key for x in peers} == {wg_key("a1"), wg_key("a2")}
    assert wg(p, "b-g")["192.168.1.2:51820"] == ("220.168.1.2/32", "10.1.2.0/24")
    assert set(wg(p, "b-g", "wg-bridge-6")) == {"[fd00:1::1]:51821", "[fd00:1::2]:51821"}
    assert wg(p, "b-g", "wg-bridge-6")["[fd00:1::2]:51821"] == (
        "9480:1::2/128",
        "fd10:1:2::/64",
    )
    # the internal node is unchanged: vx-local to its gateway, no WireGuard
    assert not p.spec("b-i").wireguard
    assert {r.dev for r in p.spec("b-i").routes} == {"vx-local", "vx-local-6"}


def test_wireguard_mtu_counts_its_overhead() -> None:
    p = plan(fed(), nodes())  # type: ignore[arg-type]
    mtus = {w.name: w.mtu for w in p.spec("b-g").wireguard}
    assert mtus == {"wg-bridge": 1440, "wg-bridge-6": 1420}  # 1500 - 60, 1500 - 80
    # the clamp covers the wg devices
    assert any("-o wg-bridge-6 " in r.rule for r in p.spec("b-g").iptables if r.table == "mangle")


@pytest.mark.parametrize(("enc_a", "enc_b"), [("wireguard", "none"), ("none", "wireguard")])
def test_mismatch_is_refused_with_a_warning_on_both_ends(enc_a: str, enc_b: str) -> None:
    p = plan(fed(enc_a, enc_b), nodes())  # type: ignore[arg-type]
    assert not p.spec("a-n1").routes and not p.spec("b-g").routes and not p.spec("b-i").routes
    warned = {f.object for f in p.findings if f.level == "warning" and "encryption" in f.message}
    assert warned == {"Cluster/a", "Cluster/b"}
    for name in p.names:
        assert all(not w.peers for w in p.spec(name).wireguard)


def test_allow_plaintext_links_the_unencrypted_cluster_in_vxlan() -> None:
    clusters = [
        cluster("a", encryption="wireguard", allow_plaintext=True),
        cluster("b", mode="gateway", encryption="wireguard", pods=("10.2.0.0/16",)),
        cluster("c"),
    ]
    ns = [n for n in nodes() if n.spec.cluster_name != "b" or n.spec.node_name != "h"]
    ns.append(node("c", "n", "192.168.3.1", pods=("10.3.1.0/24",)))
    p = plan(clusters, ns)
    a1 = p.spec("a-n1")
    assert {(r.cidr, r.dev) for r in a1.routes} == {
        ("10.2.0.0/16", "wg-bridge"),
        ("10.3.1.0/24", "vx-bridge"),
    }
    assert {d.name for d in a1.devices} == {"vx-bridge"}
    vx, wgdev = a1.devices[0].addr, a1.wireguard[0].addr
    assert vx != wgdev  # two devices, two addresses of the pool
    assert {r.cidr for r in p.spec("c-n").routes} == {"10.1.1.0/24", "10.1.2.0/24"}
    assert not p.spec("b-g").wireguard[0].peers[0].endpoint.startswith("192.168.3.")
    assert not any(r.cidr.startswith("10.3.") for r in p.spec("b-g").routes)  # b refuses c
    specs = {n: p.spec(n) for n in p.names}
    assert [h.dev for h in walk(p, specs, "c-n", "10.1.2.9")] == ["vx-bridge"]
    assert [h.dev for h in walk(p, specs, "b-i", "10.1.2.9")] == ["vx-local", "wg-bridge"]


def test_node_without_public_key_is_not_peered() -> None:
    ns = nodes()
    ns[0] = node("a", "n1", "192.168.1.1", "fd00:1::1", pods=("10.1.1.0/24",))
    p = plan(fed(), ns)  # type: ignore[arg-type]
    assert "192.168.1.1:51820" not in wg(p, "b-g")
    assert any(f.object == "ClusterNode/a-n1" and "wireguardPublicKey" in f.message
               for f in p.findings)  # fmt: skip


def test_gateway_failover_rekeys_the_peers() -> None:
    before = plan(fed(), nodes(gateway="g"))  # type: ignore[arg-type]
    after = plan(fed(), nodes(gateway="h"))  # type: ignore[arg-type]
    old = next(w for w in before.spec("a-n1").wireguard if w.name == "wg-bridge").peers
    new = next(w for w in after.spec("a-n1").wireguard if w.name == "wg-bridge").peers
    assert [(x.public_key, x.endpoint) for x in old] == [(wg_key("bg"), "192.168.2.1:51820")]
    assert [(x.public_key, x.endpoint) for x in new] == [(wg_key("bh"), "192.168.2.3:51820")]
    assert "a-n1" in after.changed_since(before).changed


@pytest.mark.parametrize(
    ("src", "dst", "devs"),
    [
        ("a-n1", "10.2.2.7", ["wg-bridge"]),
        ("b-i", "10.1.2.7", ["vx-local", "wg-bridge"]),
        ("b-i", "fd10:1:2::7", ["vx-local-6", "wg-bridge-6"]),
        ("a-n2", "10.2.0.9", ["wg-bridge"]),
    ],
)
def test_every_path_resolves_hop_by_hop(src: str, dst: str, devs: list[str]) -> None:
    p = plan(fed(), nodes())  # type: ignore[arg-type]
    specs = {n: p.spec(n) for n in p.names}
    assert [h.dev for h in walk(p, specs, src, dst)] == devs


def test_key_change_changes_exactly_the_nodes_that_peer_with_it() -> None:
    before = plan(fed(), nodes())  # type: ignore[arg-type]
    ns = nodes()
    ns[0] = ns[0].model_copy(update={"spec": ns[0].spec.model_copy(update={
        "wireguard_public_key": wg_key("rotated")})})  # fmt: skip
    after = plan(fed(), ns)  # type: ignore[arg-type]
    full = sorted(n for n in after.names if after.spec(n) != before.spec(n))
    assert sorted(after.changed_since(before).changed) == full == ["b-g"]
