"""The doctor on a connected lab: it tells the truth about the datapath, pair by pair."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterlink.lab import supervisor
from clusterlink.lab.state import handle_path, state_dir, store_url
from tests.conftest import KOSMOSCTL
from tests.e2e.connect import Lab, joined_lab

TOPOLOGY = {
    "name": "doc",
    "clusters": [
        {"name": "c1", "nodes": 3, "ipFamily": "all", "podsPerNode": 1},
        {
            "name": "c2",
            "nodes": 3,
            "ipFamily": "all",
            "gatewayCandidates": 2,
            "isolated": True,
            "podsPerNode": 1,
        },
    ],
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with joined_lab(
        TOPOLOGY, {"c1": ("p2p", "all"), "c2": ("gateway", "all")}, tmp_path_factory.mktemp("doc")
    ) as joined:
        yield joined


def dr(lab: Lab, *args: str, cwd: Path | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    h = [str(handle_path(lab.plan.name, c)) for c in ("c1", "c2")]
    out = subprocess.run(
        [
            KOSMOSCTL,
            "dr",
            "--src-kubeconfig",
            h[0],
            "--src-kubeconfig",
            h[1],
            "-o",
            "json",
            "--timeout",
            "1",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    return out.returncode, json.loads(out.stdout)


def failed(data: dict) -> set[tuple[str, str, str]]:  # type: ignore[type-arg]
    return {(r["src"], r["dst"], r["target"]) for r in data["results"] if not r["ok"]}


def test_all_pairs_pass_on_a_connected_federation(lab: Lab, tmp_path: Path) -> None:
    code, data = dr(lab, "--protocol", "all", "--report", str(tmp_path / "r.html"), cwd=tmp_path)
    assert code == 0, failed(data)
    # 6 pods x 6 pods (self included) x 2 families x 2 protocols
    assert data["summary"]["total"] == 144 and data["summary"]["passed"] == 144
    page = (tmp_path / "r.html").read_text()
    assert (
        page.startswith("<!doctype html>") and page.count("<svg") == 2 and "144/144 passed" in page
    )


def test_a_deleted_route_fails_exactly_the_pairs_through_it(lab: Lab, tmp_path: Path) -> None:
    c1, c2 = lab.plan.cluster("c1"), lab.plan.cluster("c2")
    node = c1.nodes[0]
    gw = _gw(lab)
    resume = tmp_path / "resume.json"
    agent = supervisor.read_status(state_dir(lab.plan.name))["c1.agent.n1"]["pid"]
    subprocess.run(["kill", "-STOP", str(agent)], check=True)  # no resync may repair it mid-run
    try:
        subprocess.run(
            ["ip", "-n", node.netns, "route", "del", "10.2.0.0/16", "table", "200"], check=True
        )
        code, data = dr(lab, "--resume", str(resume), cwd=tmp_path)
        # IPv4 between c1/n1's pod and every c2 pod, both ways; nothing else.
        expected = {("c1/n1", f"c2/{p.node}", p.ip) for p in c2.pods}
        expected |= {(f"c2/{p.node}", "c1/n1", c1.pods[0].ip) for p in c2.pods}
        assert code == 1 and failed(data) == expected
        # Each failure names its trace; c1/n1's says where and why.
        hint = next(r["trace"] for r in data["results"] if not r["ok"] and r["src"] == "c1/n1")
        assert hint.startswith("kosmosctl trace c1/n1 10.2.")
        out = subprocess.run(
            [KOSMOSCTL, *hint.split()[1:], "--store", store_url(lab.plan.name), "-o", "json"],
            capture_output=True,
            text=True,
        )
        traced = json.loads(out.stdout)
        assert out.returncode == 1 and (traced["brokenAt"], traced["cause"]) == (
            "c1-n1 route",
            "drift",
        )
        reasons = {r["reason"] for r in data["results"] if not r["ok"]}
        assert reasons and reasons <= {"timeout", "unreachable"}
        assert data["summary"]["passed"] == data["summary"]["total"] - len(expected)
        assert len(json.loads(resume.read_text())["failed"]) == len(expected)
        # Repaired (by hand here; the frozen agent would on its next pass) -> --resume
        # re-tests only the failures, which pass now.
        subprocess.run(
            ["ip", "-n", node.netns, "route", "add", "10.2.0.0/16", "via", gw, "dev", "vx-bridge", "onlink",
             "table", "200", "proto", "200"],
            check=True,
        )  # fmt: skip
        code, data = dr(lab, "--resume", str(resume), cwd=tmp_path)
        assert code == 0 and data["summary"]["total"] == len(expected)
    finally:
        subprocess.run(["kill", "-CONT", str(agent)], check=True)


# Replies to the pod's own echo requests are dropped on arrival (dropping the requests on
# the way out would fail them at once: netfilter answers a local sender EPERM).
DROP_ECHO = """table inet cl_test_drop {
  chain input { type filter hook input priority 0; icmp type echo-reply drop; icmpv6 type echo-reply drop; }
}"""


def _floater_probing(dr_pid: int, netns: str) -> int | None:
    """The pid of our dr's floater in `netns` (a child of dr named cl-floater: dr forks its
    floaters, so their command line is dr's; whose network namespace is `netns`) once it
    holds an ICMP raw socket (it is in the middle of its batch), else None."""
    want = os.stat(f"/run/netns/{netns}")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            comm = (proc / "comm").read_text().strip()
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            net = os.stat(proc / "ns" / "net")
        except (OSError, IndexError, ValueError):
            continue
        mine = (net.st_dev, net.st_ino) == (want.st_dev, want.st_ino)
        if ppid == dr_pid and comm == "cl-floater" and mine:
            raw = subprocess.run(["ip", "netns", "exec", netns, "ss", "-Hwap"],
                                 capture_output=True, text=True).stdout  # fmt: skip
            return int(proc.name) if f"pid={proc.name}," in raw else None
    return None


def test_a_floater_killed_mid_run_fails_its_pairs_and_resume_retests_them(
    lab: Lab, tmp_path: Path
) -> None:
    """c1/n1's pod drops the replies to its echo requests, so its floater's batch waits out --timeout;
    it is killed (SIGKILL) in the middle of it. Its pairs fail with the reason, every other
    pair passes, the run completes (was an IndexError). --resume then re-tests exactly its
    pairs; once they pass, --resume refuses: nothing to resume."""
    pod = next(p for p in lab.plan.cluster("c1").pods if p.node == "n1")
    h = [str(handle_path(lab.plan.name, c)) for c in ("c1", "c2")]
    resume = tmp_path / "resume.json"
    argv = [KOSMOSCTL, "dr", "--src-kubeconfig", h[0], "--src-kubeconfig", h[1], "-o", "json",
            "--resume", str(resume)]  # fmt: skip
    subprocess.run(["ip", "netns", "exec", pod.netns, "nft", "-f", "-"], input=DROP_ECHO,
                   text=True, check=True)  # fmt: skip
    try:
        proc = subprocess.Popen([*argv, "--timeout", "30", "--retries", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 90
            while (pid := _floater_probing(proc.pid, pod.netns)) is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"no floater probing: {proc.communicate()}")
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        subprocess.run(["ip", "netns", "exec", pod.netns, "nft", "delete", "table", "inet",
                        "cl_test_drop"], check=True)  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in err, err
    results = json.loads(out)["results"]
    assert len(results) == 6 * 6 * 2  # the whole matrix was reported
    mine = [r for r in results if r["src"] == "c1/n1"]
    assert len(mine) == 6 * 2
    assert {r["reason"] for r in mine} == {"floater on c1/n1 died: killed by SIGKILL"}
    assert all(r["ok"] for r in results if r["src"] != "c1/n1"), failed({"results": results})
    assert len(json.loads(resume.read_text())["failed"]) == len(mine)

    again = subprocess.run([*argv, "--timeout", "1"], capture_output=True, text=True, timeout=120)
    data = json.loads(again.stdout)
    assert again.returncode == 0, failed(data)
    assert {(r["src"], r["target"]) for r in data["results"]} == {
        (r["src"], r["target"]) for r in mine
    }
    passed = subprocess.run([*argv, "--timeout", "1"], capture_output=True, text=True, timeout=120)
    assert passed.returncode == 2 and not passed.stdout
    assert "nothing to resume: the last run passed" in passed.stderr


def _gw(lab: Lab) -> str:
    out = subprocess.run(
        [
            "ip",
            "-n",
            lab.plan.cluster("c1").nodes[1].netns,
            "route",
            "show",
            "table",
            "200",
            "10.2.0.0/16",
        ],
        capture_output=True,
        text=True,
    ).stdout
    return out.split(" via ")[1].split()[0]


def test_a_node_without_floater_is_reported_and_the_run_goes_on(lab: Lab, tmp_path: Path) -> None:
    pod = lab.plan.cluster("c2").pods[2]
    subprocess.run(["ip", "netns", "del", pod.netns], check=True)  # its floater cannot start
    code, data = dr(lab, cwd=tmp_path)
    assert code == 1
    bad = {r["reason"] for r in data["results"] if not r["ok"]}
    assert bad == {"floater missing (source)", "floater missing (destination)"}
    assert all(r["ok"] for r in data["results"] if "c2/n3" not in (r["src"], r["dst"]))


def test_analysis_shows_a_hand_made_drift(lab: Lab) -> None:
    node = lab.plan.cluster("c2").nodes[0]
    h = str(handle_path(lab.plan.name, "c1"))
    mac = subprocess.run(
        ["bridge", "-n", node.netns, "fdb", "show", "dev", "vx-local"],
        capture_output=True,
        text=True,
    ).stdout.split()[0]
    subprocess.run(
        [
            "kill",
            "-STOP",
            str(supervisor.read_status(state_dir(lab.plan.name))["c2.agent.n1"]["pid"]),
        ],
        check=True,
    )
    try:
        subprocess.run(
            [
                "bridge",
                "-n",
                node.netns,
                "fdb",
                "del",
                mac,
                "dev",
                "vx-local",
                "dst",
                "192.168.2.2",
                "self",
            ],
            capture_output=True,
        )
        subprocess.run(
            ["ip", "-n", node.netns, "link", "set", "vx-local", "mtu", "1400"], check=True
        )
        out = subprocess.run(
            [KOSMOSCTL, "analysis", "cluster", "--name", "c2", "--kubeconfig", h, "-o", "json"],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 1
        nodes = json.loads(out.stdout)["nodes"]
        assert nodes["c2-n2"]["inSync"] and nodes["c2-n3"]["inSync"]
        details = [d["detail"] for d in nodes["c2-n1"]["differences"]]
        assert "vx-local: mtu is 1400, want 1450" in details
    finally:
        subprocess.run(
            [
                "kill",
                "-CONT",
                str(supervisor.read_status(state_dir(lab.plan.name))["c2.agent.n1"]["pid"]),
            ],
            check=True,
        )


def test_host_network_pairs_pass_except_where_the_underlay_is_isolated(lab: Lab) -> None:
    """`dr --host-network`: every node reaches every node IP, both families, except across
    clusters for the isolated cluster's non-candidate (c2/n3): it has no underlay path to
    other clusters, by design (the lab's isolation, as in a private cloud network)."""
    code, data = dr(lab, "--host-network", "--protocol", "all")
    assert code == 1
    assert data["summary"]["total"] == 6 * 6 * 2 * 2
    bad = {(r["src"], r["dst"]) for r in data["results"] if not r["ok"]}
    c1 = {r["src"] for r in data["results"] if r["src"].startswith("c1")}
    n3 = {r["src"] for r in data["results"] if r["src"].startswith("c2") and "n3" in r["src"]}
    assert len(c1) == 3 and len(n3) == 1
    want = {(a, b) for a in c1 for b in n3} | {(b, a) for a in c1 for b in n3}
    assert bad == want, sorted(bad ^ want)


def test_the_table_output(lab: Lab) -> None:
    """The seed's table, on c1 against itself (c2/n3's pod is gone after an earlier test)."""
    h = str(handle_path(lab.plan.name, "c1"))
    out = subprocess.run(
        [KOSMOSCTL, "dr", "--src-kubeconfig", h, "--timeout", "1", "--protocol", "tcp"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == [
        "S/N", "SRC_NODE_NAME", "DST_NODE_NAME", "TARGET_IP", "PROTOCOL", "RESULT"
    ]  # fmt: skip
    rows = [line.split() for line in lines[1:-1]]
    assert len(rows) == 3 * 3 * 2
    assert [r[0] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
    assert all(r[1].startswith("c1/") and r[4] == "tcp" and r[5] == "SUCCEEDED" for r in rows)
    assert lines[-1].startswith("18/18 pairs passed, 0 failed in ")
