"""Stateless prefix maps: the nft text we write, reading it back, and the reconcile step."""

from __future__ import annotations

from clusterlink.agent.fake import FakeFirewall, FakeKernel, FakePrefixMaps
from clusterlink.agent.prefixmaps import PrefixMap, nft_input, parse_listing
from clusterlink.agent.reconcile import reconcile
from clusterlink.api.nodeconfig import AddressMap, NodeConfigSpec

M4 = PrefixMap(4, "vx-bridge", "10.150.0.0/16", "10.162.0.0/16")
M6 = PrefixMap(6, "vx-bridge-6", "fd20:50::/108", "fd20:62::/108")


def test_nft_input_swaps_the_prefix_and_keeps_the_host_bits() -> None:
    text = nft_input(4, {M4})
    assert text.startswith("table ip clusterlink\ndelete table ip clusterlink\n")
    assert (
        'iifname "vx-bridge" ip daddr 10.162.0.0/16 ip daddr set ip daddr & 0.0.255.255 | '
        '10.150.0.0 comment "in vx-bridge 10.150.0.0/16 10.162.0.0/16"'
    ) in text
    assert (
        'oifname "vx-bridge" ip saddr 10.150.0.0/16 ip saddr set ip saddr & 0.0.255.255 | '
        '10.162.0.0 comment "out vx-bridge 10.150.0.0/16 10.162.0.0/16"'
    ) in text
    assert "ip6 daddr set ip6 daddr & ::f:ffff | fd20:50::" in nft_input(6, {M6})


def _listing(*comments: str) -> dict[str, object]:
    return {"nftables": [{"table": {}}] + [{"rule": {"comment": c}} for c in comments]}


def test_reading_back() -> None:
    both = _listing(
        "in vx-bridge 10.150.0.0/16 10.162.0.0/16", "out vx-bridge 10.150.0.0/16 10.162.0.0/16"
    )
    assert parse_listing(4, both) == {M4}
    assert parse_listing(4, _listing("in vx-bridge 10.150.0.0/16 10.162.0.0/16")) is None  # half
    assert parse_listing(4, _listing("someone else's rule")) is None
    assert parse_listing(4, _listing()) == set()


def test_reconcile_writes_keeps_and_tears_down() -> None:
    kernel, fw, maps = FakeKernel(), FakeFirewall(), FakePrefixMaps()
    spec = NodeConfigSpec(
        address_maps=[
            AddressMap(dev="vx-bridge", cidr="10.150.0.0/16", global_cidr="10.162.0.0/16")
        ]
    )
    first = reconcile(kernel, fw, spec, maps=maps)
    assert first.prefix_maps_changed == [4] and maps.state[4] == {M4}
    assert reconcile(kernel, fw, spec, maps=maps).changes == 0
    maps.state[4] = set()  # drift: the table deleted by hand
    assert reconcile(kernel, fw, spec, maps=maps).prefix_maps_changed == [4]
    gone = reconcile(kernel, fw, None, maps=maps)
    assert gone.prefix_maps_changed == [4] and maps.calls[-1] == "teardown 4"


def test_without_a_port_the_maps_are_an_error_not_silence() -> None:
    spec = NodeConfigSpec(
        address_maps=[
            AddressMap(dev="vx-bridge", cidr="10.150.0.0/16", global_cidr="10.162.0.0/16")
        ]
    )
    report = reconcile(FakeKernel(), FakeFirewall(), spec)
    assert any("addressMaps" in e for e in report.errors)
