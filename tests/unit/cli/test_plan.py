"""kosmosctl plan: offline what-if from a resources file."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from clusterlink.cli.kosmosctl import app
from tests.unit.planner.federation import cluster, node

RESOURCES = """\
apiVersion: kosmos.io/v1alpha1
kind: Cluster
metadata: {name: c1}
spec: {clusterLinkOptions: {networkType: gateway, ipFamily: ipv4}}
status: {clusterLinkStatus: {podCIDRs: [10.233.64.0/18], serviceCIDRs: [10.233.0.0/18]}}
---
apiVersion: kosmos.io/v1alpha1
kind: Cluster
metadata: {name: c2}
spec: {clusterLinkOptions: {networkType: p2p, ipFamily: ipv4}}
---
apiVersion: kosmos.io/v1alpha1
kind: ClusterNode
metadata: {name: c1-a1}
spec: {clusterName: c1, nodeName: a1, ip: 192.168.1.11, roles: [gateway], interfaceName: eth0}
---
apiVersion: kosmos.io/v1alpha1
kind: ClusterNode
metadata: {name: c1-a2}
spec: {clusterName: c1, nodeName: a2, ip: 192.168.1.12, interfaceName: eth0}
---
apiVersion: kosmos.io/v1alpha1
kind: ClusterNode
metadata: {name: c2-b1}
spec: {clusterName: c2, nodeName: b1, ip: 192.168.2.21, podCIDRs: [10.234.70.0/26], interfaceName: eth0}
---
apiVersion: kosmos.io/v1alpha1
kind: ClusterNode
metadata: {name: c2-b9}
spec: {clusterName: c2, nodeName: b9}
"""


def run(tmp_path: Path, *args: str):
    path = tmp_path / "r.yaml"
    path.write_text(RESOURCES)
    result = CliRunner().invoke(app, ["plan", "-f", str(path), *args])
    assert "Traceback" not in result.output
    return result


def test_table_summary_and_findings_on_stderr(tmp_path: Path) -> None:
    result = run(tmp_path)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "NAME", "DEVICES", "ROUTES", "DIRECT", "THROWS", "FDBS", "ARPS", "IPTABLES"
    ]  # fmt: skip
    assert lines[1].split() == ["c1-a1", "2", "1", "0", "0", "3", "2", "6"]  # 2 NAT + 4 MSS clamp
    assert "warning: ClusterNode/c2-b9: spec.interfaceName is empty" in result.stderr
    assert "c2-b9" not in result.stdout


def test_json_shape(tmp_path: Path) -> None:
    data = json.loads(run(tmp_path, "-o", "json").stdout)
    assert set(data) == {"nodeConfigs", "findings"}
    names = [c["metadata"]["name"] for c in data["nodeConfigs"]]
    assert names == ["c1-a1", "c1-a2", "c2-b1"]
    first = data["nodeConfigs"][0]
    assert first["apiVersion"] == "kosmos.io/v1alpha1" and first["kind"] == "NodeConfig"
    assert first["spec"]["routes"] == [
        {"cidr": "10.234.70.0/26", "gw": "220.168.2.21", "dev": "vx-bridge"}
    ]
    assert set(data["findings"][0]) == {"level", "object", "message"}


def test_yaml_of_one_node_is_applyable(tmp_path: Path) -> None:
    result = run(tmp_path, "--node", "c1-a2", "-o", "yaml")
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["metadata"]["name"] for d in docs] == ["c1-a2"]
    assert docs[0]["spec"]["routes"][0]["gw"] == "210.168.1.11"
    out = tmp_path / "nc.yaml"
    out.write_text(result.stdout)
    applied = CliRunner().invoke(
        app, ["apply", "-f", str(out), "--store", f"sqlite://{tmp_path}/s.db"]
    )
    assert applied.exit_code == 0, applied.output


def test_node_without_nodeconfig_says_why(tmp_path: Path) -> None:
    result = run(tmp_path, "--node", "c2-b9")
    assert result.exit_code == 1
    assert "node c2-b9 gets no NodeConfig: spec.interfaceName is empty" in result.output


def test_bad_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["plan", "-f", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_internal_nodes_show_aggregated_and_per_cidr_routes(tmp_path: Path) -> None:
    """Ten gateway clusters with neighbouring pod CIDRs (10.16-10.25/16): an internal node of
    the first gets 10.16.0.0/13 and 10.24.0.0/15 via its gateway and its own 10.16.0.0/16
    thrown - three entries instead of nine routes; --no-aggregate shows the nine."""
    docs = []
    for i in range(10):
        c = cluster(f"g{i}", "gateway", pods=(f"10.{16 + i}.0.0/16",))
        gw = node(f"g{i}", "gw", f"192.168.{i}.1", gateway=True, pods=(f"10.{16 + i}.0.0/24",))
        inner = node(f"g{i}", "in", f"192.168.{i}.2", pods=(f"10.{16 + i}.1.0/24",))
        docs += [o.to_dict() for o in (c, gw, inner)]
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump_all(docs))

    def row(*args: str) -> list[str]:
        result = CliRunner().invoke(app, ["plan", "-f", str(path), "--node", "g0-in", *args])
        assert result.exit_code == 0, result.output
        return result.stdout.splitlines()[1].split()

    _, _, routes, _, throws, *_ = row()
    assert (routes, throws) == ("2", "1")
    _, _, routes, _, throws, *_ = row("--no-aggregate")
    assert (routes, throws) == ("9", "0")
