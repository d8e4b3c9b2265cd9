"""The elector's underlay check on a real kernel: `LinkWatch` answers as a fresh dump would,
and dumps again only after a link notification."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from clusterlink.agent.netlink import LinkWatch, Reader
from tests.conftest import sh

pytestmark = pytest.mark.netns


def test_link_state_follows_link_changes_with_one_dump_each(
    make_netns: Callable[[str], str],
) -> None:
    ns = make_netns("lw")
    sh(f"ip -n {ns} link add eth0 type veth peer name eth1")
    sh(f"ip -n {ns} link set eth1 up")
    sh(f"ip -n {ns} link set eth0 up")
    watch, reader = LinkWatch(ns), Reader(ns)
    try:
        assert watch.link_state("eth0") == reader.link_state("eth0") == (True, True)
        for _ in range(50):
            assert watch.link_state("eth0") == (True, True)
        assert watch.dumps == 1  # nothing changed: no dump after the first
        sh(f"ip -n {ns} link set eth1 down")  # the cable pulled: eth0 loses its carrier
        settle(reader, (True, False))  # the kernel's linkwatch reports carrier a bit later
        assert watch.link_state("eth0") == (True, False)
        sh(f"ip -n {ns} link set eth1 up")
        settle(reader, (True, True))
        assert watch.link_state("eth0") == (True, True)
        sh(f"ip -n {ns} link del eth0")
        assert watch.link_state("eth0") is None
        assert 1 < watch.dumps <= 4
    finally:
        watch.close()
        reader.close()


def settle(reader: Reader, want: tuple[bool, bool]) -> None:
    deadline = time.monotonic() + 3
    while reader.link_state("eth0") != want:
        assert time.monotonic() < deadline, f"eth0 never became {want}"
        time.sleep(0.01)
