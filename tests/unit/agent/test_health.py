"""The prober with a scripted pinger and a real (sqlite) store: hysteresis, LinkHealth
written on state changes and every refresh only, and the idle schedule (steady peers probed
every idle interval, in one batch; any other every round)."""

from __future__ import annotations

import datetime as dt
import socket
import struct
import threading
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
    """One probe a round (the idle interval equal to the interval)."""
    now = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
    store = SqliteStore(tmp_path / "s.db")
    prober = Prober(
        store,
        "a-n",
        lambda: {PEER: "vx-bridge"},
        Script(list(outcomes)),
        idle_interval=1.0,
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


class Alive:
    """Answers the peers in `alive` (a 1 ms reply); records which peers each round probed."""

    def __init__(self, alive: set[str]) -> None:
        self.alive = alive
        self.rounds: list[list[str]] = []

    def probe(self, peers: Iterable[str], timeout: float) -> dict[str, float | None]:
        asked = sorted(peers)
        self.rounds.append(asked)
        return {p: 0.001 if p in self.alive else None for p in asked}


def idle_prober(tmp_path: Path, peers: dict[str, str], pinger: Alive) -> Prober:
    """1 s rounds, 5 s idle interval (the defaults)."""
    return Prober(SqliteStore(tmp_path / "s.db"), "a-n", lambda: dict(peers), pinger)


def test_steady_peers_are_probed_every_idle_interval_in_one_batch(tmp_path: Path) -> None:
    peers = {f"220.2.0.{i}": "vx-bridge" for i in range(1, 51)}
    pinger = Alive(set(peers))
    prober = idle_prober(tmp_path, peers, pinger)
    for _ in range(62):
        prober.step()
    # Rounds 1 and 2 bring every peer up; then one batch of all 50 every 5th round.
    assert [len(r) for r in pinger.rounds[:8]] == [50, 50, 0, 0, 0, 0, 50, 0]
    assert all(len(r) in (0, 50) for r in pinger.rounds)
    assert prober.probes == 50 * 14  # rounds 1, 2, 7, 12, ..., 62: 62 s of 1 s probes was 3,100


def test_a_dead_peer_is_down_within_an_idle_interval_and_two_rounds(tmp_path: Path) -> None:
    dead, other = "220.2.0.1", "220.2.0.2"
    pinger = Alive({dead, other})
    prober = idle_prober(tmp_path, {dead: "vx-bridge", other: "vx-bridge"}, pinger)
    for _ in range(7):
        prober.step()  # up at round 2, last probed (replied) at round 7
    pinger.alive.discard(dead)
    rounds = 0
    while prober.states[dead].status != "down":
        prober.step()
        rounds += 1
    assert rounds == 6  # a miss at round 12 (its idle probe), re-probed at 13: down
    assert pinger.rounds[-2:] == [[dead, other], [dead]]  # the miss alone is re-probed
    # A down peer is probed every round, so it is up two rounds after it answers again.
    pinger.alive.add(dead)
    prober.step()
    prober.step()
    assert prober.states[dead].status == "up"


def test_a_peer_that_becomes_steady_later_joins_the_batch(tmp_path: Path) -> None:
    early, late = "220.2.0.1", "220.2.0.2"
    peers = {early: "vx-bridge"}
    pinger = Alive({early, late})
    prober = idle_prober(tmp_path, peers, pinger)
    for _ in range(3):
        prober.step()
    peers[late] = "vx-bridge"  # a new node joined: probed at once, every round until up
    for _ in range(20):
        prober.step()
    batches = [r for r in pinger.rounds[10:] if r]
    assert batches and all(r == [early, late] for r in batches), pinger.rounds


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


class Always:
    """Every peer answers."""

    def probe(self, peers: Iterable[str], timeout: float) -> dict[str, float | None]:
        return dict.fromkeys(peers, 0.001)


def test_run_sleeps_through_the_rounds_no_peer_is_due_and_a_poke_runs_one(
    tmp_path: Path,
) -> None:
    """Real time, 50 ms rounds and a 0.5 s idle interval: once the peer is steady the prober
    wakes once per idle period (every round, it would step ~24 times in 1.2 s), and `poke`
    runs a round at once."""
    prober = Prober(
        SqliteStore(tmp_path / "s.db"), "a-n", lambda: {PEER: "vx-bridge"}, Always(),
        interval=0.05, idle_interval=0.5, timeout=0.01,
    )  # fmt: skip
    steps: list[float] = []
    step = prober.step

    def counted() -> bool:
        steps.append(time.monotonic())
        return step()

    prober.step = counted  # type: ignore[method-assign]
    stop = threading.Event()
    thread = threading.Thread(target=prober.run, args=(stop,), daemon=True)
    thread.start()
    try:
        time.sleep(1.2)
        assert prober.states[PEER].steady
        assert 3 <= len(steps) <= 8, f"{len(steps)} rounds in 1.2 s"
        assert prober.rounds_to_next() > 1
        before = len(steps)
        poked = time.monotonic()
        prober.poke()
        deadline = poked + 2.0
        while len(steps) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(steps) > before and steps[before] - poked < 0.2, "a poke ran no round"
    finally:
        stop.set()
        prober.poke()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_rounds_to_next_counts_to_the_soonest_due_peer(tmp_path: Path) -> None:
    peers = {PEER: "vx-bridge", "220.2.0.2": "vx-bridge"}
    prober = Prober(SqliteStore(tmp_path / "s.db"), "a-n", lambda: peers, Always(),
                    interval=1.0, idle_interval=5.0)  # fmt: skip
    assert prober.rounds_to_next() == prober.idle_rounds  # nobody known yet
    prober.step()
    assert prober.rounds_to_next() == 1  # not steady yet: every round
    prober.step()  # up after two replies: steady, due in an idle period
    assert prober.rounds_to_next() == 5
