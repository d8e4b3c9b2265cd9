"""The lab on a real kernel: emulated clusters whose own networks work, and which do not
reach each other until clusterlink connects them."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from clusterlink.lab.lifecycle import lab_down, lab_up
from clusterlink.lab.topology import LabPlan, Topology, plan_lab
from tests.conftest import KOSMOSCTL, host_state, sh
from tests.e2e.conftest import lab_name


def ping(ns: str, dst: str, count: int = 1) -> bool:
    return (
        subprocess.run(
            ["ip", "netns", "exec", ns, "ping", "-c", str(count), "-W", "1", dst],
            capture_output=True,
        ).returncode
        == 0
    )


def two_clusters(name: str) -> dict[str, object]:
    return {
        "name": name,
        "clusters": [
            {"name": "c1", "nodes": 3, "ipFamily": "all", "podsPerNode": 1},
            {
                "name": "c2",
                "nodes": 3,
                "ipFamily": "all",
                "gatewayCandidates": 1,
                "isolated": True,
                "podsPerNode": 2,
            },
        ],
    }


def test_two_cluster_lab(make_lab: Callable[[dict[str, object]], LabPlan]) -> None:
    plan = make_lab(two_clusters(lab_name("lab")))
    c1, c2 = plan.cluster("c1"), plan.cluster("c2")
    p1, p2, p3 = c1.pods  # one per node
    # Inside a cluster: pod <-> pod across nodes and node <-> node, both families.
    assert ping(p1.netns, p3.ip) and ping(p3.netns, p1.ip)
    assert ping(p1.netns, p2.ip6) and ping(c1.nodes[0].netns, c1.nodes[2].ip6)
    assert ping(c2.pods[0].netns, c2.pods[5].ip)  # n1-p1 -> n3-p2
    # Across clusters: no pod reaches another cluster's pods (nothing connects them yet).
    assert not ping(p1.netns, c2.pods[0].ip) and not ping(c2.pods[0].netns, p1.ip6)
    # Isolation: c2's gateway candidate reaches c1's underlay, its other nodes do not.
    assert ping(c2.nodes[0].netns, c1.nodes[0].ip) and ping(c2.nodes[0].netns, c1.nodes[0].ip6)
    assert not ping(c2.nodes[2].netns, c1.nodes[0].ip) and not ping(
        c1.nodes[0].netns, c2.nodes[1].ip6
    )
    # ... and inside its own segment every c2 node still reaches the others.
    assert ping(c2.nodes[2].netns, c2.nodes[0].ip)


def test_status_json_shape_and_exec(make_lab: Callable[[dict[str, object]], LabPlan]) -> None:
    plan = make_lab(two_clusters(lab_name("st")))
    out = subprocess.run(
        [KOSMOSCTL, "lab", "status", plan.name, "-o", "json"], capture_output=True, text=True
    )
    data = json.loads(out.stdout)
    assert set(data) >= {"name", "stateDir", "clusters"}
    cluster = data["clusters"][1]
    assert set(cluster) >= {"name", "handle", "podCIDRs", "serviceCIDRs", "nodes", "pods"}
    assert set(cluster["nodes"][0]) == {"name", "netns", "ip", "ip6", "gatewayCandidate", "roles"}
    assert set(cluster["pods"][0]) == {"name", "node", "netns", "ip", "ip6"}
    assert cluster["nodes"][0]["gatewayCandidate"] and not cluster["nodes"][1]["gatewayCandidate"]
    assert Path(cluster["handle"]).exists()
    exec_ = subprocess.run(
        [
            KOSMOSCTL,
            "lab",
            "exec",
            "--lab",
            plan.name,
            "c1/n2/p1",
            "--",
            "ip",
            "-4",
            "-o",
            "addr",
            "show",
            "eth0",
        ],
        capture_output=True,
        text=True,
    )
    assert exec_.returncode == 0 and plan.cluster("c1").pods[1].ip in exec_.stdout


def test_supervisor_restarts_a_dead_component(
    make_lab: Callable[[dict[str, object]], LabPlan],
) -> None:
    plan = make_lab(two_clusters(lab_name("sv")))
    run = subprocess.run(
        [
            KOSMOSCTL,
            "lab",
            "run",
            "--lab",
            plan.name,
            "c1/n1",
            "--name",
            "sleeper",
            "--",
            "sleep",
            "600",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr

    def component() -> dict[str, object]:
        out = subprocess.run(
            [KOSMOSCTL, "lab", "ps", "--lab", plan.name, "-o", "json"],
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout)["components"]["sleeper"]

    first = wait_for(lambda: component() if component().get("pid") else None)
    assert sh(f"ip netns identify {first['pid']}").strip() == plan.cluster("c1").nodes[0].netns
    sh(f"kill -9 {first['pid']}")
    second = wait_for(
        lambda: c if (c := component()).get("pid") not in (None, first["pid"]) else None
    )
    assert second["restarts"] == 1


def wait_for(fn: Callable[[], object], timeout: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value  # type: ignore[return-value]
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_down_leaves_nothing_and_the_host_is_untouched(lab_dir: Path) -> None:
    before = host_state()
    plan = plan_lab(Topology.model_validate(two_clusters(lab_name("dn"))))
    lab_up(plan, quiet=True)
    state = lab_dir / plan.name
    subprocess.run(
        [
            KOSMOSCTL,
            "lab",
            "run",
            "--lab",
            plan.name,
            "c2/n1/p1",
            "--name",
            "s",
            "--",
            "sleep",
            "600",
        ],
        check=True,
        capture_output=True,
    )
    pid = int(state.joinpath("supervisor.pid").read_text())
    time.sleep(0.5)
    lab_down(plan.name, quiet=True)
    assert not [ns for ns in sh("ip netns list").split() if ns.startswith(f"cl-{plan.name}-")]
    assert not state.exists()
    assert subprocess.run(["pgrep", "-f", "sleep 600"], capture_output=True).returncode == 1
    assert (
        not Path(f"/proc/{pid}").exists()
        or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
    )
    assert host_state() == before


def test_down_after_a_crashed_up(lab_dir: Path) -> None:
    """A lab whose build died half way (namespaces, no supervisor) still goes away."""
    plan = plan_lab(Topology.model_validate(two_clusters(lab_name("cr"))))
    from clusterlink.lab.state import save_plan

    save_plan(plan)
    sh("ip netns add " + plan.cluster("c1").nodes[0].netns)  # as if `up` died right here
    out = subprocess.run([KOSMOSCTL, "lab", "down", plan.name], capture_output=True, text=True)
    assert out.returncode == 0 and "1 namespaces removed" in out.stdout
    assert not (lab_dir / plan.name).exists()


def test_up_refuses_a_different_lab_of_the_same_name(
    make_lab: Callable[[dict[str, object]], LabPlan], tmp_path: Path
) -> None:
    plan = make_lab(two_clusters(lab_name("re")))
    other = tmp_path / "other.yaml"
    other.write_text(json.dumps({"name": plan.name, "clusters": [{"name": "x"}]}))
    out = subprocess.run([KOSMOSCTL, "lab", "up", "-f", str(other)], capture_output=True, text=True)
    assert out.returncode == 2 and "exists with another topology" in out.stderr
    same = tmp_path / "same.yaml"
    same.write_text(json.dumps(two_clusters(plan.name)))
    again = subprocess.run(
        [KOSMOSCTL, "lab", "up", "-f", str(same)], capture_output=True, text=True
    )
    assert again.returncode == 0 and "up already" in again.stderr


def test_down_removes_a_lab_whose_state_another_version_wrote(lab_dir: Path) -> None:
    plan = plan_lab(Topology.model_validate(two_clusters(lab_name("ov"))))
    from clusterlink.lab.state import save_plan

    save_plan(plan)
    state = lab_dir / plan.name / "lab.json"
    state.write_text(
        state.read_text().replace('"clusters"', '"bridgeOfOldTimes": 1, "clusters"', 1)
    )
    sh("ip netns add " + plan.cluster("c1").nodes[0].netns)
    status = subprocess.run([KOSMOSCTL, "lab", "status", plan.name], capture_output=True, text=True)
    assert status.returncode == 2 and "written by another version" in status.stderr
    out = subprocess.run([KOSMOSCTL, "lab", "down", plan.name], capture_output=True, text=True)
    assert out.returncode == 0 and "1 namespaces removed" in out.stdout, out.stderr
    assert not (lab_dir / plan.name).exists()
