"""The lean netlink reader's link flags (the elector's underlay check, without pyroute2)."""

from __future__ import annotations

from clusterlink.agent.linux import LinuxKernel
from clusterlink.agent.netlink import Reader


def test_link_state_agrees_with_pyroute2_for_every_link() -> None:
    """Read-only, in this process's own namespace: (admin up, carrier) as LinuxKernel says."""
    reader, kernel = Reader(None), LinuxKernel(None)
    try:
        names = reader.link_names()
        assert "lo" in names.values()
        assert reader.link_state("lo") == (True, True)
        for name in names.values():
            assert reader.link_state(name) == kernel.link_state(name), name
        assert reader.link_state("cl-no-such-link") is None
        assert kernel.link_state("cl-no-such-link") is None
    finally:
        reader.close()
        kernel.close()
