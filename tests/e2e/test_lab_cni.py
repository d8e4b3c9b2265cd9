"""The lab's Calico stand-in on a real kernel: "pools pending" means pending until felix has
written the pools into every node's natOutgoing chain, not only into the datastore."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from clusterlink.lab import cni
from clusterlink.lab.topology import ClusterPlan, LabPlan
from tests.conftest import pids_by_argv
from tests.e2e.conftest import lab_name


def _felix_pid(lab: str) -> int:
    found = pids_by_argv(lambda argv: b"clusterlink.lab.cni" in argv and lab.encode() in argv)
    assert found, f"no felix stand-in runs for lab {lab}"
    return found[0]


def _settle(cluster: ClusterPlan, pools: list[dict[str, object]], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while (pending := cni.calico_pending(cluster, pools)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pending


def test_pools_are_pending_until_felix_writes_them_on_every_node(
    make_lab: Callable[[dict[str, object]], LabPlan],
) -> None:
    name = lab_name("fx")
    plan = make_lab(
        {
            "name": name,
            "clusters": [{"name": "c1", "nodes": 2, "cni": "calico", "ipFamily": "all"}],
        }
    )
    cluster = plan.cluster("c1")
    path = cni.pools_path(name, "c1")
    before = cni.read_pools(path)
    assert _settle(cluster, before, 5) == "", "felix never wrote the default pools"

    extra = {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "IPPool",
        "metadata": {"name": "clusterlink-test"},
        "spec": {"cidr": "10.250.0.0/16", "disabled": True, "natOutgoing": False},
    }
    pid = _felix_pid(name)
    os.kill(pid, signal.SIGSTOP)
    try:
        cni.change_pools(path, [extra], [])
        after = cni.read_pools(path)
        time.sleep(0.6)  # felix acts on the ring at once: had it run, it would have written them
        pending = cni.calico_pending(cluster, after)
        assert pending == cluster.nodes[0].netns, (
            f"felix is stopped, yet the chain on {cluster.nodes[0].netns} already holds the new "
            f"pool (pending: {pending!r})"
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    assert _settle(cluster, after, 5) == "", "felix resumed but the chains never caught up"
    rules = cni.chain_rules(cluster.nodes[1].netns, 4) or []
    assert ("-A", cni.CALICO_CHAIN, "-d", "10.250.0.0/16", "-j", "RETURN") in rules, rules
