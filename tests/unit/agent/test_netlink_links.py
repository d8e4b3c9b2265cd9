"""The lean netlink reader's link flags (the elector's underlay check, without pyroute2)."""

from __future__ import annotations

from clusterlink.agent.kernel import Link
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


class Says:
    """A link feed that reports what it is told to."""

    def __init__(self) -> None:
        self.news = False

    def changed(self) -> bool:
        news, self.news = self.news, False
        return news

    def close(self) -> None:
        pass


def test_links_are_dumped_again_only_after_a_link_or_address_notification() -> None:
    """Read-only, in this process's own namespace: the second ask (a pass asks for NIC
    detection, then reconcile) reuses the dump; a notification makes the next ask dump
    again."""
    kernel = LinuxKernel(None)
    dumps = []
    dump = kernel._dump_links

    def counted() -> dict[str, Link]:
        dumps.append(1)
        return dump()

    kernel._dump_links = counted  # type: ignore[method-assign]
    feed, kernel.link_feed = kernel.link_feed, Says()  # type: ignore[assignment]
    try:
        first = kernel.links()
        assert "lo" in first and len(dumps) == 1
        again = kernel.links()
        assert again == first and len(dumps) == 1
        again.pop("lo")  # the caller's own copy
        assert "lo" in kernel.links() and len(dumps) == 1
        kernel.link_feed.news = True  # type: ignore[attr-defined]
        assert kernel.links() == first and len(dumps) == 2
        assert kernel.links() == first and len(dumps) == 2  # the news was taken
    finally:
        feed.close()
        kernel.close()
