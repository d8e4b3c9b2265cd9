"""The control-plane components as processes: scrape their /metrics over HTTP and follow known
events (NodeConfigs written, the gateway lease taken); /readyz tells what each one is doing."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterlink.api import ClusterNode
from clusterlink.api.cluster import Cluster
from clusterlink.controllers.member import FactsError, MemberController, MemberFacts, MemberNode
from clusterlink.controllers.metrics import ControllerMetrics
from clusterlink.store.sqlite import SqliteStore
from clusterlink.telemetry.server import MetricsServer
from tests.conftest import CLUSTERLINK
from tests.scrape import free_port, get, scrape, wait_for
from tests.unit.controllers.test_loops import seed

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "s.db")
    seed(s)
    return s


def start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            CLUSTERLINK,
            *args,
            "--store",
            f"sqlite://{tmp_path}/s.db",
            "--metrics-addr",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    running: list[subprocess.Popen[bytes]] = []
    yield running
    for proc in running:
        proc.terminate()
        proc.wait(timeout=10)


def test_network_manager_counts_the_nodeconfigs_it_writes(
    store: SqliteStore, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    proc, base = start(
        tmp_path,
        "network-manager",
        "--lease-duration",
        "2",
        "--renew-deadline",
        "1.5",
        "--retry-period",
        "0.2",
    )
    processes.append(proc)
    wait_for(lambda: get(f"{base}/readyz") == (200, "leading\n"), "the network-manager leads")
    wait_for(
        lambda: scrape(base)["clusterlink_network_manager_nodeconfigs_written_total"] == 3,
        "3 NodeConfigs written",
    )
    moved = store.get(ClusterNode, "a-n1")
    moved.spec.pod_cidrs = ["10.1.9.0/24"]
    store.update(moved)  # b-g and b-i route the new block: two NodeConfigs rewritten
    wait_for(
        lambda: scrape(base)["clusterlink_network_manager_nodeconfigs_written_total"] == 5,
        "2 more NodeConfigs written",
    )
    samples = scrape(base)
    assert samples["clusterlink_network_manager_leader"] == 1
    assert samples["clusterlink_network_manager_plan_duration_seconds_count"] >= 2
    assert samples["clusterlink_network_manager_nodeconfigs_deleted_total"] == 0
    assert get(f"{base}/healthz")[0] == 200


def test_elector_reports_the_gateway_it_became(
    store: SqliteStore, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    # `--interface lo`: the underlay check reads lo's flags (up, carrier) and nothing else.
    proc, base = start(tmp_path, "elector", "--cluster", "b", "--node", "i", "--interface", "lo")
    processes.append(proc)
    wait_for(lambda: get(f"{base}/readyz") == (200, "gateway\n"), "b/i is the gateway")
    samples = scrape(base)
    assert samples["clusterlink_elector_is_gateway"] == 1
    assert samples["clusterlink_elector_lease_transitions_total"] == 1
    wait_for(lambda: store.get(ClusterNode, "b-i").spec.is_gateway, "b-i marked gateway")


class Facts:
    def __init__(self) -> None:
        self.broken = False

    def facts(self, cluster: Cluster) -> MemberFacts:
        if self.broken:
            raise FactsError("member API server unreachable")
        return MemberFacts((MemberNode("n1", ("10.1.1.0/24",)), MemberNode("n2", ())), (), ())

    def after_sync(self, cluster: Cluster) -> int:
        return 0


def test_member_controller_counts_nodes_and_discovery_errors(store: SqliteStore) -> None:
    metrics = ControllerMetrics()
    source = Facts()
    controller = MemberController(store, "a", source, metrics=metrics)
    server = MetricsServer(("127.0.0.1", 0), metrics.registry, metrics.heartbeat, metrics.ready)
    base = f"http://127.0.0.1:{server.start().port}"
    try:
        assert get(f"{base}/readyz") == (503, "no sync yet\n")
        controller.step()
        assert scrape(base)["clusterlink_controller_nodes"] == 2
        assert get(f"{base}/readyz") == (200, "2 nodes synced\n")
        source.broken = True
        controller.step()
        controller.step()
        assert scrape(base)["clusterlink_controller_discovery_errors_total"] == 2
        assert get(f"{base}/readyz") == (503, "member API server unreachable\n")
    finally:
        server.stop()
