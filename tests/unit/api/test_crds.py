"""CRDs are generated from the models; the committed files must match."""

from __future__ import annotations

from pathlib import Path

import yaml

from clusterlink.api.crds import render_crds, stale_crds

CRD_DIR = Path(__file__).parents[3] / "deploy" / "crds"


def test_committed_crds_are_current() -> None:
    assert stale_crds(CRD_DIR) == [], "run `make crds` and commit deploy/crds"


def test_printer_columns_match_kosmos() -> None:
    crds = {name: yaml.safe_load(text) for name, text in render_crds().items()}

    def columns(name: str) -> list[str]:
        return [c["name"] for c in crds[name]["spec"]["versions"][0]["additionalPrinterColumns"]]

    assert columns("kosmos.io_clusters.yaml")[:2] == ["NETWORK_TYPE", "IP_FAMILY"]
    assert columns("kosmos.io_clusternodes.yaml")[:3] == ["ROLES", "INTERFACE", "IP"]
    # Kosmos' NodeConfig CRD has none, so the API server shows its default Age column first.
    assert columns("kosmos.io_nodeconfigs.yaml")[:1] == ["AGE"]


def test_schema_is_structural_and_uses_kosmos_names() -> None:
    crd = yaml.safe_load(render_crds()["kosmos.io_clusters.yaml"])
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    link = schema["properties"]["spec"]["properties"]["clusterLinkOptions"]
    assert link["properties"]["networkType"]["enum"] == ["p2p", "gateway"]
    assert link["properties"]["bridgeCIDRs"]["default"] == {"ip": "220.0.0.0/8", "ip6": "9480::/16"}
    assert "$ref" not in render_crds()["kosmos.io_clusters.yaml"]

    def walk(node: object) -> None:  # structural: every schema node has a type
        if isinstance(node, dict):
            if "properties" in node:
                assert node.get("type") == "object"
                for child in node["properties"].values():
                    assert "type" in child, child
                    walk(child)
            if "items" in node:
                walk(node["items"])

    walk(schema)
