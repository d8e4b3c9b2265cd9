"""Live health of the tunnels this node owns: ICMP echoes to each remote peer across the
tunnel (the vx-bridge ARP entries of the NodeConfig: remote gateways and P2P nodes), RTT and
loss over a window, up/down with hysteresis.

Rounds run every `interval` seconds; a round probes only the peers that are due, all in one
batch: a peer that is `up` and answered its last probe is due every `idle_interval` seconds,
any other (new, unknown, down, or it just missed one) every round. So an idle federation of
healthy links costs one echo per peer per `idle_interval` (a 20 x 5 lab: ~3,300 echoes a
second with 1 s probes), and a miss is re-probed at the next round. Peers that fall due within
half an idle period are probed with the batch, so they stay in step. The prober sleeps through
the rounds in which no peer is due (an idle node wakes once per idle period, not every round);
the agent `poke`s it when a new NodeConfig may have changed the peers.

Hysteresis: a peer goes `down` after `DOWN_AFTER` probes in a row without a reply, and `up`
after `UP_AFTER` replies in a row; single losses do not flap a link. With a 1 s interval, a
5 s idle interval and a 0.5 s reply timeout, a dead peer that was up is `down` within 6.5 s
of its last reply (its next idle probe, one round more); a peer that is not up is probed
every round, so one coming back is `up` within 2.5 s.

Writes (`LinkHealth`, named like the node): when a peer changes state or the peer set
changes, else at most every `HEALTH_REFRESH` (30 s) to refresh RTT and loss. A node without
tunnel peers (any more) deletes its LinkHealth (once; at start too, for a stale one).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import logging
import os
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Gauge

from clusterlink import constants as C
from clusterlink.agent import netns
from clusterlink.api.linkhealth import (
    HEALTH_REFRESH,
    LinkHealth,
    LinkHealthSpec,
    LinkState,
    PeerHealth,
)
from clusterlink.api.meta import ObjectMeta, now_rfc3339
from clusterlink.api.nodeconfig import NodeConfigSpec
from clusterlink.store.base import AlreadyExists, Conflict, NotFound, Store, StoreError
from clusterlink.store.stop import woken_by

log = logging.getLogger("clusterlink.health")

DOWN_AFTER = 2  # misses in a row that take a link down
UP_AFTER = 2  # replies in a row that bring it up
WINDOW = 10  # probes that RTT and loss are computed over
TUNNELS = (C.VX_BRIDGE, C.VX_BRIDGE6)


def tunnel_peers(spec: NodeConfigSpec | None) -> dict[str, str]:
    """peer address -> our tunnel device: the cross-cluster neighbours this node reaches."""
    if spec is None:
        return {}
    return {arp.ip: arp.dev for arp in spec.arps if arp.dev in TUNNELS}


class Pinger(Protocol):
    def probe(self, peers: Iterable[str], timeout: float) -> dict[str, float | None]:
        """One echo to each peer; seconds to its reply, or None (no reply within timeout)."""
        ...


def _checksum(data: bytes) -> int:
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data + b"\0" * (len(data) % 2))))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


# Kernel-side filters on the raw sockets: pass echo replies only. Without them every agent's
# sockets also get a copy of each echo request its peers send it (as many packets again as its
# own replies, each decoded in Python). A set bit blocks that ICMP type.
_SOL_RAW, _ICMP_FILTER, _ICMP6_FILTER = 255, 1, 1
_PASS_ECHO_REPLY4 = struct.pack("=I", 0xFFFFFFFF & ~(1 << 0))
_PASS_ECHO_REPLY6 = struct.pack("=8I", *(0xFFFFFFFF & ~(1 << 1) if i == 4 else 0xFFFFFFFF for i in range(8)))  # fmt: skip
_PAYLOAD = b"clusterlink-health"


class IcmpPinger:
    """Raw ICMP sockets opened inside the node's namespace (they stay there)."""

    def __init__(self, netns_name: str | None = None) -> None:
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0
        with netns.entered(netns_name):
            self.socks = {
                4: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                6: socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
            }
        for sock in self.socks.values():
            sock.setblocking(False)
        with contextlib.suppress(OSError):  # a filter is an optimisation: we check replies too
            self.socks[4].setsockopt(_SOL_RAW, _ICMP_FILTER, _PASS_ECHO_REPLY4)
        with contextlib.suppress(OSError):
            self.socks[6].setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, _PASS_ECHO_REPLY6)
        self._family: dict[str, int] = {}

    def _version(self, peer: str) -> int:
        family = self._family.get(peer)
        if family is None:
            family = self._family[peer] = ipaddress.ip_address(peer).version
        return family

    def probe(self, peers: Iterable[str], timeout: float) -> dict[str, float | None]:
        self.seq = (self.seq + 1) & 0xFFFF
        sent: dict[str, float] = {}
        result: dict[str, float | None] = {}
        v4 = struct.pack("!BBHHH", 8, 0, 0, self.ident, self.seq)
        v4 = struct.pack("!BBHHH", 8, 0, _checksum(v4 + _PAYLOAD), self.ident, self.seq) + _PAYLOAD
        v6 = struct.pack("!BBHHH", 128, 0, 0, self.ident, self.seq) + _PAYLOAD  # kernel sums
        for peer in peers:
            family = self._version(peer)
            result[peer] = None
            try:
                self.socks[family].sendto(v4 if family == 4 else v6, (peer, 0))
                sent[peer] = time.monotonic()
            except OSError:
                pass  # no route, unreachable: a miss
        pending = set(sent)
        deadline = time.monotonic() + timeout
        socks = list(self.socks.values())
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select(socks, [], [], left)
            now = time.monotonic()
            for sock in ready:
                while True:  # everything queued, not one packet per select
                    try:
                        data, addr = sock.recvfrom(2048)
                    except BlockingIOError:
                        break
                    replied = self._reply_from(sock, data, addr[0], pending)
                    if replied is not None:
                        pending.discard(replied)
                        result[replied] = now - sent[replied]
        return result

    def _reply_from(
        self, sock: socket.socket, data: bytes, source: str, pending: set[str]
    ) -> str | None:
        """The pending peer this is our echo reply from, else None."""
        if sock.family == socket.AF_INET:
            data = data[(data[0] & 0x0F) * 4 :]  # IPv4 raw sockets see the IP header
            want = 0
        else:
            want = 129
        if len(data) < 8:
            return None
        kind, _, _, ident, seq = struct.unpack("!BBHHH", data[:8])
        if kind != want or ident != self.ident or seq != self.seq:
            return None
        if source in pending:
            return source
        peer = str(ipaddress.ip_address(source.split("%")[0]))
        return peer if peer in pending else None

    def close(self) -> None:
        for sock in self.socks.values():
            sock.close()


@dataclass
class PeerState:
    device: str
    status: LinkState = "unknown"
    since: dt.datetime | None = None
    streak: int = 0  # replies (> 0) or misses (< 0) in a row
    window: deque[float | None] = field(default_factory=lambda: deque(maxlen=WINDOW))
    due: int = 0  # the prober's round at which it is probed next

    @property
    def steady(self) -> bool:
        """Up, and it answered its last probe: the idle interval is enough."""
        return self.status == "up" and self.streak > 0

    def record(self, rtt: float | None, now: dt.datetime) -> bool:
        """Add one probe's outcome; returns whether the status changed."""
        self.window.append(rtt)
        if rtt is None:
            self.streak = min(self.streak, 0) - 1
        else:
            self.streak = max(self.streak, 0) + 1
        new = self.status
        if self.streak <= -DOWN_AFTER:
            new = "down"
        elif self.streak >= UP_AFTER:
            new = "up"
        if new == self.status:
            return False
        self.status, self.since = new, now
        return True

    @property
    def loss(self) -> float:
        return sum(r is None for r in self.window) / len(self.window) if self.window else 0.0

    @property
    def rtt(self) -> float | None:
        replies = [r for r in self.window if r is not None]
        return sum(replies) / len(replies) if replies else None


class HealthMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["peer", "device"]
        self.rtt = Gauge(
            "clusterlink_link_rtt_seconds", "Mean RTT to a remote peer across the tunnel.",
            labels, registry=registry,
        )  # fmt: skip
        self.loss = Gauge(
            "clusterlink_link_loss_ratio", "Share of the last probes without a reply.",
            labels, registry=registry,
        )  # fmt: skip
        self.up = Gauge(
            "clusterlink_link_up", "1 while the link to a remote peer is up.",
            labels, registry=registry,
        )  # fmt: skip
        self.writes = Gauge(
            "clusterlink_link_health_writes", "LinkHealth writes made by this node's prober.",
            registry=registry,
        )  # fmt: skip


class Prober:
    """Probe the peers `peers()` names (every `interval` while a peer is not steadily up, else
    every `idle_interval`); write `LinkHealth` `node` sparingly."""

    def __init__(
        self,
        store: Store,
        node: str,
        peers: Callable[[], dict[str, str]],
        pinger: Pinger,
        *,
        interval: float = 1.0,
        idle_interval: float = 5.0,
        timeout: float = 0.5,
        refresh: float = HEALTH_REFRESH,
        metrics: HealthMetrics | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store, self.node, self.peers, self.pinger = store, node, peers, pinger
        self.interval, self.timeout, self.refresh = interval, timeout, refresh
        # Rounds between probes of a steady peer (at least 1: every round).
        self.idle_rounds = max(1, round(idle_interval / interval))
        self.metrics, self.clock = metrics, clock
        self.states: dict[str, PeerState] = {}
        self.round = 0
        self.probes = 0  # echoes sent (what idling costs)
        self.writes = 0
        self._written_at: dt.datetime | None = None
        self._started = False  # the first round without peers removes a stale LinkHealth
        self.wake = threading.Event()  # `poke`: a round now

    def step(self) -> bool:
        """One round: probe the peers that are due; returns whether it wrote LinkHealth."""
        self.round += 1
        wanted = self.peers()
        changed = set(wanted) != set(self.states)
        for gone in set(self.states) - set(wanted):
            device = self.states.pop(gone).device
            if self.metrics is not None:
                for gauge in (self.metrics.rtt, self.metrics.loss, self.metrics.up):
                    with contextlib.suppress(KeyError):
                        gauge.remove(gone, device)
        if not wanted:
            if changed or self._written_at is not None or not self._started:
                self._forget()  # no tunnel (any more): no LinkHealth either
            self._started = True
            return False
        self._started = True
        for peer, dev in wanted.items():
            self.states.setdefault(peer, PeerState(dev, due=self.round))
        results = self.pinger.probe(self._due(), self.timeout)
        self.probes += len(results)
        now = self.clock()
        for peer, rtt in results.items():
            state = self.states[peer]
            if state.record(rtt, now):
                changed = True
                log.info("%s: link to %s is %s", self.node, peer, state.status)
            state.due = self.round + (self.idle_rounds if state.steady else 1)
            self._observe(peer, state)
        due = self._written_at is None or (now - self._written_at).total_seconds() >= self.refresh
        return self._write(now) if changed or due else False

    def _due(self) -> list[str]:
        """The peers to probe this round: those due; with a steady one among them (the idle
        batch), the steady peers due within half an idle period too, so the batches of peers
        that became steady at different rounds merge instead of waking the prober apart."""
        due = [peer for peer, s in self.states.items() if s.due <= self.round]
        if any(self.states[peer].steady for peer in due):
            early = self.round + self.idle_rounds // 2
            due += [
                peer for peer, s in self.states.items() if self.round < s.due <= early and s.steady
            ]
        return due

    def _forget(self) -> None:
        try:
            self.store.delete(LinkHealth, self.node)
        except NotFound:
            pass
        except StoreError as exc:
            log.warning("%s: cannot delete LinkHealth: %s", self.node, exc)
            return
        self._written_at = None

    def _observe(self, peer: str, state: PeerState) -> None:
        if self.metrics is None:
            return
        self.metrics.up.labels(peer, state.device).set(1 if state.status == "up" else 0)
        self.metrics.loss.labels(peer, state.device).set(state.loss)
        if state.rtt is not None:
            self.metrics.rtt.labels(peer, state.device).set(state.rtt)

    def health(self, now: dt.datetime) -> LinkHealth:
        peers = [
            PeerHealth(
                peer=peer,
                device=s.device,
                status=s.status,
                rtt_seconds=None if s.rtt is None else round(s.rtt, 6),
                loss=round(s.loss, 3),
                since=now_rfc3339(s.since) if s.since else None,
            )
            for peer, s in sorted(self.states.items())
        ]
        spec = LinkHealthSpec(
            probed_at=now_rfc3339(now), interval_seconds=self.interval, peers=peers
        )
        return LinkHealth(metadata=ObjectMeta(name=self.node), spec=spec)

    def _write(self, now: dt.datetime) -> bool:
        obj = self.health(now)
        try:
            try:  # unconditional (no resourceVersion): this node is its only writer
                self.store.update(obj)
            except NotFound:
                self.store.create(obj)
        except (Conflict, AlreadyExists):
            return False  # someone else wrote it: the next round tries again
        except StoreError as exc:
            log.warning("%s: cannot write LinkHealth: %s", self.node, exc)
            return False
        self._written_at = now
        self.writes += 1
        if self.metrics is not None:
            self.metrics.writes.set(self.writes)
        return True

    def rounds_to_next(self) -> int:
        """Rounds from this one to the next with a peer due (so the prober sleeps through
        the rounds of an idle period); with no peer known, an idle period (a new NodeConfig
        `poke`s it sooner)."""
        if not self.states:
            return self.idle_rounds
        return max(1, min(s.due for s in self.states.values()) - self.round)

    def poke(self) -> None:
        """Run a round now (the peers may have changed; signal-handler safe)."""
        self.wake.set()

    def run(self, stop: threading.Event) -> None:
        """A round, then sleep until the next round with a peer due (or a poke). Rounds
        count time: those slept through still pass, so a steady peer is due when its idle
        period is up."""
        origin = time.monotonic()
        with woken_by(stop, self.poke):
            while not stop.is_set():
                started = time.monotonic()
                self.round = max(self.round, round((started - origin) / self.interval))
                try:
                    self.step()
                except Exception:
                    log.exception("%s: health probe failed", self.node)
                pause = self.interval * self.rounds_to_next() - (time.monotonic() - started)
                if self.wake.wait(max(0.0, pause)):
                    self.wake.clear()
