"""kosmosctl apply/get/delete: kubectl habits, one-line errors, nothing written on bad input."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clusterlink.cli.kosmosctl import app

MANIFEST = """\
apiVersion: kosmos.io/v1alpha1
kind: Cluster
metadata: {name: c1}
spec: {clusterLinkOptions: {networkType: gateway, ipFamily: ipv4}}
---
apiVersion: kosmos.io/v1alpha1
kind: ClusterNode
metadata: {name: c1-a1, labels: {kosmos.io/cluster: c1}}
spec: {clusterName: c1, nodeName: a1, ip: 192.168.1.11, roles: [gateway], interfaceName: eth0}
"""


@pytest.fixture
def run(tmp_path: Path):
    runner = CliRunner()
    url = f"sqlite://{tmp_path}/store.db"

    def invoke(*args: str, stdin: str | None = None):
        result = runner.invoke(
            app, [*args, "--store", url] if args[0] != "--version" else list(args), input=stdin
        )
        assert "Traceback" not in result.output
        return result

    return invoke


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return str(path)


def test_apply_then_get(run, tmp_path: Path) -> None:
    path = write(tmp_path, MANIFEST)
    first = run("apply", "-f", path)
    assert first.exit_code == 0, first.output
    assert "cluster.kosmos.io/c1 created" in first.output
    again = run("apply", "-f", path)
    assert "cluster.kosmos.io/c1 unchanged" in again.output
    table = run("get", "clusters")
    lines = table.output.splitlines()
    assert lines[0].split() == ["NAME", "NETWORK_TYPE", "IP_FAMILY"]
    assert lines[1].split() == ["c1", "gateway", "ipv4"]
    nodes = run("get", "clusternodes").output.splitlines()
    assert nodes[0].split() == ["NAME", "ROLES", "INTERFACE", "IP"]
    assert nodes[1].split() == ["c1-a1", "gateway", "eth0", "192.168.1.11"]
    data = json.loads(run("get", "cn", "c1-a1", "-o", "json").output)
    assert data["spec"]["interfaceName"] == "eth0"
    listing = json.loads(run("get", "cl", "-o", "json").output)
    assert [i["metadata"]["name"] for i in listing["items"]] == ["c1"]
    assert "NETWORK_TYPE" in run("get", "cl", "-o", "wide").output
    assert run("get", "cn", "-l", "kosmos.io/cluster=c1").output.count("c1-a1") == 1
    assert "No resources found" in run("get", "nodeconfigs").output


def test_apply_from_stdin_and_json_output(run) -> None:
    result = run("apply", "-f", "-", "-o", "json", stdin=MANIFEST)
    assert result.exit_code == 0
    assert json.loads(result.output)["applied"][0] == {
        "kind": "Cluster",
        "name": "c1",
        "result": "created",
    }


@pytest.mark.parametrize(
    "text, needle",
    [
        ("kind: Cluster\nmetadata: [\n", "malformed YAML"),
        ("apiVersion: kosmos.io/v1alpha1\nkind: Gadget\nmetadata: {name: g}\n", "unknown kind"),
        (
            MANIFEST
            + "---\napiVersion: kosmos.io/v1alpha1\nkind: ClusterNode\nmetadata: {name: c1-a2}\n"
            "spec: {podCIDRs: [10.1.1.300/24]}\n",
            "document 3 (ClusterNode/c1-a2): spec.podCIDRs: '10.1.1.300/24' is not a valid CIDR",
        ),
        (MANIFEST.replace("ipv4", "ipv7"), "spec.clusterLinkOptions.ipFamily"),
    ],
    ids=["malformed", "unknown-kind", "bad-cidr", "bad-enum"],
)
def test_bad_input_writes_nothing(run, tmp_path: Path, text: str, needle: str) -> None:
    result = run("apply", "-f", write(tmp_path, text))
    assert result.exit_code == 2
    assert needle in result.output
    assert "m.yaml" in result.output
    assert "No resources found" in run("get", "clusters").output


def test_unknown_kind_and_missing_object(run) -> None:
    assert run("get", "widgets").exit_code == 2
    missing = run("get", "cl", "nope")
    assert missing.exit_code == 1 and "Cluster nope not found" in missing.output


def test_delete(run, tmp_path: Path) -> None:
    run("apply", "-f", write(tmp_path, MANIFEST))
    result = run("delete", "clusternode", "c1-a1")
    assert result.exit_code == 0 and "deleted" in result.output
    assert run("delete", "clusternode", "c1-a1").exit_code == 1


def test_unwritable_store_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["get", "clusters", "--store", "sqlite:///etc/hostname/x.db"])
    assert result.exit_code == 2
    assert "is not a directory" in result.output and "Traceback" not in result.output


def test_version(run) -> None:
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("kosmosctl ")


def test_no_store_configured_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("CLUSTERLINK_STORE", "KUBECONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config either
    result = CliRunner().invoke(app, ["get", "clusters"])
    assert result.exit_code == 2 and "no store configured" in result.output
    assert "--store" in result.output and "$KUBECONFIG" in result.output
    assert list(tmp_path.iterdir()) == []


def test_check_is_dr() -> None:
    """Kosmos renamed `dr` to `check`: both names, one command."""
    dr, check = (CliRunner().invoke(app, [name, "--help"]).output for name in ("dr", "check"))
    assert "--src-kubeconfig" in check and check.split("Options")[1] == dr.split("Options")[1]


def test_get_prints_no_kubeconfig_unless_asked(run, tmp_path: Path) -> None:
    """A Kosmos Cluster's spec.kubeconfig (here on a SQLite store, which keeps it) is
    <redacted> in -o json|yaml; --show-secrets prints it."""
    kubeconfig = "apiVersion: v1\nclusters: [{name: m, cluster: {server: 'https://m:6443'}}]\n"
    encoded = base64.b64encode(kubeconfig.encode()).decode()
    path = write(tmp_path, MANIFEST.replace("spec: {clusterLinkOptions",
                                            f"spec: {{kubeconfig: {encoded}, clusterLinkOptions"))  # fmt: skip
    assert run("apply", "-f", path).exit_code == 0
    for output in ("json", "yaml"):
        shown = run("get", "cl", "c1", "-o", output).output
        assert encoded not in shown and "<redacted>" in shown
    listed = json.loads(run("get", "cl", "-o", "json").output)
    assert listed["items"][0]["spec"]["kubeconfig"] == "<redacted>"
    full = json.loads(run("get", "cl", "c1", "-o", "json", "--show-secrets").output)
    assert full["spec"]["kubeconfig"] == encoded
