"""kosmosctl rotate-keys: a fresh request on every ClusterNode of an encrypted cluster, and
one-line errors for clusters that do not exist or are not encrypted."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from clusterlink import constants as C
from clusterlink.api import ClusterNode
from clusterlink.cli.kosmosctl import app
from clusterlink.store.url import open_store

MANIFEST = """\
apiVersion: kosmos.io/v1alpha1
kind: Cluster
metadata: {name: enc}
spec: {clusterLinkOptions: {networkType: p2p, encryption: wireguard}}
---
apiVersion: kosmos.io/v1alpha1
kind: Cluster
metadata: {name: plain}
spec: {clusterLinkOptions: {networkType: p2p}}
---
apiVersion: kosmos.io/v1alpha1
kind: ClusterNode
metadata: {name: enc-a1, labels: {kosmos.io/cluster: enc}}
spec: {clusterName: enc, nodeName: a1, ip: 192.168.1.11, interfaceName: eth0}
---
apiVersion: kosmos.io/v1alpha1
kind: ClusterNode
metadata: {name: enc-a2, labels: {kosmos.io/cluster: enc}}
spec: {clusterName: enc, nodeName: a2, ip: 192.168.1.12, interfaceName: eth0}
---
apiVersion: kosmos.io/v1alpha1
kind: ClusterNode
metadata: {name: plain-b1, labels: {kosmos.io/cluster: plain}}
spec: {clusterName: plain, nodeName: b1, ip: 192.168.2.11, interfaceName: eth0}
"""


def test_rotate_keys_annotates_every_node_of_the_cluster_with_a_new_request(
    tmp_path: Path,
) -> None:
    url = f"sqlite://{tmp_path}/store.db"
    runner = CliRunner()
    assert runner.invoke(app, ["apply", "-f", "-", "--store", url], input=MANIFEST).exit_code == 0
    first = runner.invoke(app, ["rotate-keys", "--cluster", "enc", "--store", url, "-o", "json"])
    assert first.exit_code == 0, first.output
    done = json.loads(first.output)
    assert done["nodes"] == ["enc-a1", "enc-a2"] and done["cluster"] == "enc"
    store = open_store(url)

    def requests() -> dict[str, str]:
        return {
            cn.name: cn.metadata.annotations.get(C.ROTATE_KEYS_ANNOTATION, "")
            for cn in store.list(ClusterNode)
        }

    assert requests() == {"enc-a1": done["request"], "enc-a2": done["request"], "plain-b1": ""}
    again = runner.invoke(app, ["rotate-keys", "--cluster", "enc", "--store", url])
    assert again.exit_code == 0 and "requested on 2 nodes of enc" in again.output
    assert requests()["enc-a1"] not in ("", done["request"])  # a new value: a new rotation


def test_rotate_keys_refuses_unknown_and_unencrypted_clusters(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/store.db"
    runner = CliRunner()
    runner.invoke(app, ["apply", "-f", "-", "--store", url], input=MANIFEST)
    for name, why in (("nope", "no Cluster nope"), ("plain", "encryption is not wireguard")):
        result = runner.invoke(app, ["rotate-keys", "--cluster", name, "--store", url])
        assert result.exit_code == 2 and why in result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
