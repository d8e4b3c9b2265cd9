"""Gateway electors on simulated time: clock skew, store stalls, a killed holder.

Each elector has its own SimClock (its own monotonic origin and a skewed wall clock) over a
real SQLite store, wrapped so that writes block during a stall. After every turn of any
elector the test records who leads (`Leadership.is_leader`, which reads the clock) and which
ClusterNode carries the gateway role; nothing can change between turns, so "never two leaders"
checked on that record is exact.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clusterlink.api import ClusterNode, Lease
from clusterlink.controllers.elector import DEFAULT_TIMING, Elector, lease_name
from clusterlink.store.sqlite import SqliteStore
from tests.unit.controllers.sim import SimClock, StalledStore, World
from tests.unit.planner.federation import cluster, node

T = DEFAULT_TIMING  # 2 s lease, 1.5 s renew deadline, 0.25 s retry
Windows = list[tuple[float, float]]
MakeLab = Callable[..., "Lab"]


@dataclass
class History:
    """Who led and who carried the gateway role, as (time, value) at each change."""

    leaders: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)
    gateway: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)
    most_leaders: int = 0

    def record(self, t: float, leaders: tuple[str, ...], gateway: tuple[str, ...]) -> None:
        self.most_leaders = max(self.most_leaders, len(leaders))
        for series, value in ((self.leaders, leaders), (self.gateway, gateway)):
            if not series or series[-1][1] != value:
                series.append((round(t, 3), value))

    def leaders_at(self, t: float) -> tuple[str, ...]:
        return [v for when, v in self.leaders if when <= t][-1]

    def __str__(self) -> str:
        return f"leaders {self.leaders}\ngateway role {self.gateway}"


@dataclass
class Lab:
    world: World
    store: SqliteStore
    stores: dict[str, StalledStore]  # each elector's view of the store
    electors: dict[str, Elector]
    clocks: dict[str, SimClock]
    history: History

    def run(self, until: float) -> None:
        def observe(t: float) -> None:
            leaders = tuple(n for n, e in self.electors.items() if e.leadership.is_leader)
            gateway = tuple(
                cn.spec.node_name for cn in self.store.list(ClusterNode) if cn.spec.is_gateway
            )
            self.history.record(t, leaders, gateway)

        self.world.run(until, observe)

    def lease(self) -> Lease:
        return self.store.get(Lease, lease_name("b"), "kosmos-system")

    def refused(self) -> int:
        return sum(s.refused for s in self.stores.values())


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[MakeLab]:
    """A factory: lab(skews={node: seconds}, stalls=[(start, end)]) with electors started in
    the order of `skews` (the first takes the lease). `stalls` block every node's writes;
    `cut` only one node's (a partition), `slow` delays one node's replies."""
    made: list[World] = []

    def make(
        skews: dict[str, float],
        stalls: Windows | None = None,
        cut: dict[str, Windows] | None = None,
        slow: dict[str, Windows] | None = None,
    ) -> Lab:
        inner = SqliteStore(tmp_path / "s.db")
        inner.create(cluster("b", "gateway"))
        for i, name in enumerate(skews, start=1):
            inner.create(node("b", name, f"192.168.2.{i}"))
        world = World()
        made.append(world)
        clocks, electors, stores = {}, {}, {}
        for i, (name, skew) in enumerate(skews.items()):
            clocks[name] = SimClock(world, skew=skew, origin=1000.0 * (i + 1) + 0.123 * i)
            blocked = [*(stalls or []), *(cut or {}).get(name, [])]
            stores[name] = StalledStore(
                inner, world, blocked, slow_replies=(slow or {}).get(name, [])
            )
            electors[name] = Elector(stores[name], "b", name, timing=T, clock=clocks[name])
        stop = threading.Event()
        for elector in electors.values():
            world.spawn(lambda e=elector: e.run(stop))  # type: ignore[misc]
        return Lab(world, inner, stores, electors, clocks, History())

    yield make
    for world in made:
        world.end()


@pytest.mark.parametrize(
    "skews",
    [{"g": 0.0, "i": 30.0}, {"g": 0.0, "i": -30.0}, {"g": 30.0, "i": 0.0}, {"g": -30.0, "i": 0.0}],
    ids=["challenger-30s-ahead", "challenger-30s-behind", "holder-30s-ahead", "holder-30s-behind"],
)
def test_a_clock_30s_off_neither_steals_nor_loses_the_lease(
    lab: MakeLab, skews: dict[str, float]
) -> None:
    world: Lab = lab(skews)
    world.run(60.0)
    assert world.history.most_leaders == 1, world.history
    assert [v for _, v in world.history.leaders] == [("g",)], world.history
    assert [v for _, v in world.history.gateway] == [("g",)], world.history
    lease = world.lease()
    assert lease.spec.holder_identity == "b-g" and lease.spec.lease_transitions == 0


# Stalls that begin at 27 phases spread over a second (against the 0.25 s retry and 0.67 s
# renewal), short (within the renew deadline), longer than the lease, longer than SQLite's
# 30 s busy timeout.
STALLS = [(10.0 + 0.0371 * k, length) for k in range(27) for length in (1.0, 5.0)] + [
    (10.0 + 0.23 * k, 60.0) for k in range(4)
]


@pytest.mark.parametrize(("start", "length"), STALLS)
def test_a_stalled_store_never_yields_two_leaders_and_the_holder_keeps_it(
    lab: MakeLab, start: float, length: float
) -> None:
    world: Lab = lab({"g": 0.0, "i": 7.0}, stalls=[(start, start + length)])
    world.run(start + length + 30.0)
    history = world.history
    assert history.most_leaders == 1, history
    # The holder stopped leading within its renew deadline of the stall, though blocked...
    if length > T.renew_deadline:
        assert history.leaders_at(start + T.renew_deadline + T.retry) == (), history
    # ...and took up again after it, with no one else in between: the role never moved.
    assert {v for _, v in history.leaders} <= {(), ("g",)}, history
    assert [v for _, v in history.gateway] == [("g",)], history
    assert history.leaders[-1][1] == ("g",), history
    assert world.lease().spec.lease_transitions == 0, history
    if length > 30.0:
        assert world.refused() > 0  # writes did hit the busy timeout during the stall


def test_a_killed_holder_is_replaced_within_a_lease_and_two_retries(lab: MakeLab) -> None:
    world: Lab = lab({"g": 0.0, "i": -30.0})
    world.run(10.0)
    world.clocks["g"].killed = True  # g's process is gone: it never renews nor releases
    world.run(20.0)
    history = world.history
    assert history.most_leaders == 1, history
    took = next(t for t, v in history.leaders if v == ("i",))
    assert 10.0 < took <= 10.0 + T.duration + 2 * T.retry, history
    assert history.gateway[-1][1] == ("i",), history


@pytest.mark.parametrize("start", [10.0 + 0.0437 * k for k in range(12)])
@pytest.mark.parametrize("late", [0.6, 1.2])
def test_late_replies_never_yield_two_leaders(lab: MakeLab, start: float, late: float) -> None:
    """The holder's writes are done at once but answered `late` (an API server slow to
    answer), then it is cut off from the store: it counts its deadline from when it began the
    write, so it stops leading before the other, who saw that write, may take over."""
    late_then_cut = {"g": [(start + late, start + late + 10.0)]}
    world: Lab = lab({"g": 0.0, "i": 0.0}, cut=late_then_cut, slow={"g": [(start, start + late)]})
    world.run(start + late + 20.0)
    assert world.history.most_leaders == 1, world.history
    assert world.history.leaders_at(start + late + 5.0) == ("i",), world.history
