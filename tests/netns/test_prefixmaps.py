"""The nftables prefix-map adapter on a real kernel: what it writes reads back as written,
a table deleted or edited by hand is seen as drift, teardown leaves no table."""

from __future__ import annotations

from collections.abc import Callable

from clusterlink.agent.prefixmaps import NftPrefixMaps, PrefixMap
from tests.conftest import sh

M4 = PrefixMap(4, "vx-bridge", "10.150.0.0/16", "10.162.0.0/16")
M6 = PrefixMap(6, "vx-bridge-6", "fd20:50::/108", "fd20:62::/108")


def test_write_observe_drift_teardown(make_netns: Callable[[str], str]) -> None:
    ns = make_netns("pm")
    port = NftPrefixMaps(ns)
    assert port.observe() == {4: set(), 6: set()}
    port.write(4, {M4})
    port.write(6, {M6})
    assert port.observe() == {4: {M4}, 6: {M6}}
    port.write(4, {M4})  # rewriting is one transaction: still exactly one table, one map
    assert sh(f"ip netns exec {ns} nft list tables").split().count("clusterlink") == 2
    assert port.observe()[4] == {M4}

    sh(f"ip netns exec {ns} nft delete table ip clusterlink")
    assert NftPrefixMaps(ns).observe()[4] == set()  # a fresh adapter sees the deletion
    port.write(4, {M4})
    sh(f"ip netns exec {ns} nft add rule ip clusterlink prerouting counter")  # not ours
    assert port.observe()[4] != {M4}  # drift: rewritten on the next pass

    port.teardown(4)
    port.teardown(6)
    assert "clusterlink" not in sh(f"ip netns exec {ns} nft list tables")
