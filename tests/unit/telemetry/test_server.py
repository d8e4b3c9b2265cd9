"""The metrics server over real HTTP: /metrics parses, /healthz and /readyz tell their checks'
answers as 200 or 503, `--metrics-addr` is checked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from clusterlink.errors import BadInput
from clusterlink.telemetry.server import Heartbeat, MetricsServer, parse_addr, serve
from tests.scrape import get, scrape


@pytest.mark.parametrize(
    "addr, expected",
    [
        (":9471", ("0.0.0.0", 9471)),
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("[::1]:9472", ("::1", 9472)),
        ("0", None),
    ],
)
def test_parse_addr(addr: str, expected: tuple[str, int] | None) -> None:
    assert parse_addr(addr) == expected


@pytest.mark.parametrize("addr", ["9471", "host:", ":0", ":70000", "a:b"])
def test_bad_addr_is_bad_input(addr: str) -> None:
    with pytest.raises(BadInput, match="--metrics-addr"):
        parse_addr(addr)


@pytest.fixture
def server() -> Iterator[tuple[MetricsServer, Counter, list[tuple[bool, str]]]]:
    registry = CollectorRegistry()
    events = Counter("test_events", "Events.", registry=registry)
    readiness = [(False, "not yet")]
    srv = MetricsServer(("127.0.0.1", 0), registry, lambda: (True, "ok"), lambda: readiness[-1])
    srv.start()
    yield srv, events, readiness
    srv.stop()


def test_metrics_follow_the_registry(server) -> None:
    srv, events, _ = server
    base = f"http://127.0.0.1:{srv.port}"
    assert scrape(base)["test_events_total"] == 0
    events.inc(3)
    assert scrape(base)["test_events_total"] == 3


def test_readyz_answers_its_check(server) -> None:
    srv, _, readiness = server
    base = f"http://127.0.0.1:{srv.port}"
    assert get(f"{base}/readyz") == (503, "not yet\n")
    readiness.append((True, "applied"))
    assert get(f"{base}/readyz") == (200, "applied\n")
    assert get(f"{base}/healthz") == (200, "ok\n")
    assert get(f"{base}/nothing")[0] == 404


def test_a_taken_port_is_bad_input(server) -> None:
    srv, _, _ = server
    with pytest.raises(BadInput, match=f"127.0.0.1:{srv.port}"):
        serve(f"127.0.0.1:{srv.port}", CollectorRegistry(), lambda: (True, ""), lambda: (True, ""))


def test_zero_disables() -> None:
    assert serve("0", CollectorRegistry(), lambda: (True, ""), lambda: (True, "")) is None


def test_heartbeat_goes_stale() -> None:
    now = [100.0]
    beat = Heartbeat(10, clock=lambda: now[0])
    assert beat()[0]
    now[0] = 111.0
    ok, why = beat()
    assert not ok and "no iteration for 11 s" in why
    beat.beat()
    assert beat()[0]
