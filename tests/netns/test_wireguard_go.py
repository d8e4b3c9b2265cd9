"""The wireguard-go adapter on a real kernel: a device it creates keeps the MTU it was given
(wireguard-go's daemonized child resets the TUN's MTU to 1420 as it starts, after the parent
returned), and link drift is retuned in place, the process and its peers untouched."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from clusterlink.agent.linux import LinuxKernel
from clusterlink.agent.wgkeys import KeyPair, generate, public_of
from clusterlink.agent.wireguard import WireGuardGo, sync_wireguard
from clusterlink.api import NodeConfigSpec
from clusterlink.api.nodeconfig import WireGuardDevice, WireGuardPeer
from tests.conftest import sh

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(shutil.which("wireguard-go") is None, reason="no wireguard-go"),
]

PEER = WireGuardPeer(
    public_key=public_of(generate()), endpoint="192.168.0.2:51820", allowed_ips=("10.2.0.0/16",)
)


def device(mtu: int = 1440) -> WireGuardDevice:
    return WireGuardDevice(
        name="wg-bridge",
        addr="10.99.0.1/24",
        listen_port=51820,
        bind_dev="eth0",
        mtu=mtu,
        peers=(PEER,),
    )


def mtu_of(ns: str) -> int:
    out = sh(f"ip -n {ns} -o link show dev wg-bridge")
    return int(out.split(" mtu ")[1].split()[0])


def test_a_created_device_keeps_its_mtu(make_netns: Callable[[str], str], tmp_path: Path) -> None:
    """The end result on a real kernel. The race itself shows rarely from here (by hand with
    `ip`, 2 of 20 devices were back at 1420; from this test without the wait, 0 of 36), so
    tests/unit/agent/test_wireguard.py pins the order that prevents it."""
    ns = make_netns("wgmtu")
    port = WireGuardGo(ns, str(tmp_path / "sock"))
    reset = []
    try:
        for i in range(12):
            port.create(device())
            time.sleep(0.4)  # the child's reset, when it came late, came well within this
            if mtu_of(ns) != 1440:
                reset.append(i)
            port.delete("wg-bridge")
            time.sleep(0.1)
    finally:
        port.delete("wg-bridge")
    assert not reset, f"tries {reset} of 12: wireguard-go reset wg-bridge's MTU to 1420"


def test_link_drift_is_retuned_in_place(make_netns: Callable[[str], str], tmp_path: Path) -> None:
    ns = make_netns("wgtune")
    port = WireGuardGo(ns, str(tmp_path / "sock"))
    private = generate()
    keys = KeyPair(private, public_of(private))
    spec = NodeConfigSpec(wireguard=[device()])
    kernel = LinuxKernel(ns)
    try:
        first = sync_wireguard(port, keys, spec, kernel.links())
        assert first.created == ["wg-bridge"] and first.errors == []
        index = kernel.links()["wg-bridge"].index
        sh(f"ip -n {ns} link set wg-bridge mtu 1420")
        sh(f"ip -n {ns} addr flush dev wg-bridge")
        sh(f"ip -n {ns} link set wg-bridge down")
        again = sync_wireguard(port, keys, spec, kernel.links())
        assert again.tuned == ["wg-bridge"], again
        assert again.created == [] and again.deleted == [] and again.errors == []
        link = kernel.links()["wg-bridge"]
        assert (link.index, link.mtu, link.addrs, link.up) == (index, 1440, ("10.99.0.1/24",), True)
        state = port.observe("wg-bridge")
        assert state is not None and set(state.peers) == {PEER.public_key}
        assert sync_wireguard(port, keys, spec, kernel.links()).tuned == []
    finally:
        kernel.close()
        port.delete("wg-bridge")
