"""The agent as a process on a real kernel, scraped over HTTP: ready once its NodeConfig is
applied, and a drift repaired moves the repair counter by exactly the repairs made."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clusterlink.api import NodeConfig, ObjectMeta
from clusterlink.store.sqlite import SqliteStore
from tests.conftest import CLUSTERLINK, sh
from tests.netns.test_agent import Pair, pair  # noqa: F401 (the fixture)
from tests.scrape import free_port, get, scrape, wait_for

pytestmark = pytest.mark.netns

REPAIRS = "clusterlink_agent_drift_repairs_total"


def test_agent_metrics_follow_a_drift_repair(pair: Pair, tmp_path: Path) -> None:  # noqa: F811
    store = SqliteStore(tmp_path / "store.db")
    spec = pair.spec(pair.a)
    pair.apply(pair.b, pair.spec(pair.b))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            CLUSTERLINK,
            "agent",
            "--node",
            "a-n",
            "--netns",
            pair.a,
            "--store",
            f"sqlite://{tmp_path}/store.db",
            "--resync",
            "0.3",
            "--no-detect-nic",
            "--metrics-addr",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: get(f"{base}/readyz") == (503, "no NodeConfig for this node yet\n"),
            "a first pass, not ready: no NodeConfig",
        )
        store.create(NodeConfig(metadata=ObjectMeta(name="a-n"), spec=spec))
        wait_for(lambda: get(f"{base}/readyz")[0] == 200, "ready")
        samples = scrape(base)
        assert samples["clusterlink_agent_nodeconfig_generation"] == 1
        assert samples[REPAIRS] == 0
        assert samples['clusterlink_agent_kernel_entries{kind="routes"}'] == len(spec.routes)
        assert samples["clusterlink_agent_last_sync_timestamp_seconds"] > 0
        changes = samples["clusterlink_agent_kernel_changes_total"]
        # Drift: two routes and the ARP entry of the peer deleted by hand.
        sh(f"ip -n {pair.a} route del 10.2.1.0/24 table 200")
        sh(f"ip -n {pair.a} -6 route del fd12:0:1::/64 table 200")
        sh(f"ip -n {pair.a} neigh del 220.168.77.2 dev vx-bridge")
        wait_for(lambda: scrape(base)[REPAIRS] == 3, "three repairs counted")
        samples = scrape(base)
        assert samples["clusterlink_agent_kernel_changes_total"] == changes + 3
        assert samples["clusterlink_agent_apply_errors_total"] == 0
        assert samples["clusterlink_agent_reconcile_duration_seconds_count"] >= 2
        assert "10.2.1.0/24" in sh(f"ip -n {pair.a} route show table 200")
        assert get(f"{base}/healthz")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
