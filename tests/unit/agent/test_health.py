"""The prober with a scripted pinger and a real (sqlite) store: hysteresis, and LinkHealth
written on state changes and every refresh only."""

from __future__ import annotations

import datetime as dt
import socket
import struct
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from clusterlink.agent.health import Prober, tunnel_peers
from clusterlink.api.linkhealth import LinkHealth
from clusterlink.api.nodeconfig import Arp, NodeConfigSpec
from clusterlink.store.sqlite import SqliteStore

PEER = "220.2.0.1"


class Script:
    """Answers each probe from a list of outcomes (True: a 2 ms reply)."""

    def __init__(self, outcomes: list[bool]) -> None:
        self.outcomes = outcomes

    def probe(self, peers: Iterable[str], timeout: float) -> dict[str, float | None]:
        ok = self.outcomes.pop(0)
        return {p: 0.002 if ok else None for p in peers}


def run(outcomes: list[bool], tmp_path: Path, refresh: float = 30.0) -> tuple[Prober, list[str]]:
    now = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
    store = SqliteStore(tmp_path / "s.db")
    prober = Prober(
        store,
        "a-n",
        lambda: {PEER: "vx-bridge"},
        Script(list(outcomes)),
        refresh=refresh,
        clock=lambda: now[0],
    )
    seen = []
    for _ in outcomes:
        prober.step()
        seen.append(prober.states[PEER].status)
        now[0] += dt.timedelta(seconds=1)
    return prober, seen


def test_hysteresis_needs_two_in_a_row(tmp_path: Path) -> None:
    _, seen = run([True, True, False, True, False, False, True, True], tmp_path)
    assert seen == ["unknown", "up", "up", "up", "up", "down", "down", "up"]


def test_writes_on_changes_and_every_refresh_only(tmp_path: Path) -> None:
    # 60 rounds (t = 0..59 s) of replies, then 5 misses: writes at t=0 (a new peer), t=1
    # (up), t=31 (refresh), t=61 (down, the second miss); none in the 56 other rounds.
    prober, _ = run([True] * 60 + [False] * 5, tmp_path)
    assert prober.writes == 4
    health = prober.store.get(LinkHealth, "a-n")
    (peer,) = health.spec.peers
    assert (peer.peer, peer.status, peer.loss) == (PEER, "down", 0.2)  # as at t=61
    assert peer.rtt_seconds == 0.002


def test_peers_are_the_tunnel_neighbours() -> None:
    spec = NodeConfigSpec(
        arps=[
            Arp(ip=PEER, mac="aa:bb:cc:dd:ee:ff", dev="vx-bridge"),
            Arp(ip="210.0.0.2", mac="aa:bb:cc:dd:ee:fe", dev="vx-local"),
        ]
    )
    assert tunnel_peers(spec) == {PEER: "vx-bridge"}
    assert tunnel_peers(None) == {}


def test_a_node_that_loses_its_tunnels_deletes_its_linkhealth(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    peers = {PEER: "vx-bridge"}
    prober = Prober(store, "a-n", lambda: dict(peers), Script([True, True, True]))
    prober.step()
    prober.step()
    assert store.get(LinkHealth, "a-n").spec.peers[0].status == "up"
    peers.clear()  # no longer a gateway, or its NodeConfig deleted
    assert not prober.step()
    assert [h.name for h in store.list(LinkHealth)] == []
    assert not prober.step() and prober.writes == 2  # nothing more to write or delete


def test_icmp_pinger_gets_its_replies_through_its_filters() -> None:
    """Loopback, in this process's own namespace (a few ICMP packets to ourselves). The raw
    sockets pass echo replies only (the kernel drops the rest: every agent's sockets would
    otherwise also get each echo request its peers send it)."""
    from clusterlink.agent import health

    try:
        pinger = health.IcmpPinger(None)
    except PermissionError:
        pytest.skip("raw sockets need CAP_NET_RAW")
    try:
        peers = ["127.0.0.1"] + (["::1"] if socket.has_ipv6 and _has_loopback6() else [])
        for _ in range(3):
            got = pinger.probe(peers, 2.0)
            assert all(got[p] is not None for p in peers), got
        # Other ICMP (a timestamp request to ourselves and its reply) never reaches it.
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as other:
            body = struct.pack("!BBHHH", 13, 0, 0, 1, 1) + bytes(12)
            other.sendto(struct.pack("!BBHHH", 13, 0, health._checksum(body), 1, 1) + bytes(12),
                         ("127.0.0.1", 0))  # fmt: skip
            time.sleep(0.3)
            assert other.recvfrom(2048)  # it was sent (an unfiltered socket sees it)
        with pytest.raises(BlockingIOError):
            pinger.socks[4].recvfrom(2048)
    finally:
        pinger.close()


def _has_loopback6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.connect(("::1", 9))
        return True
    except OSError:
        return False
