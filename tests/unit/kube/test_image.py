"""The Dockerfile builds the image the manifests run: the same entry point, the tools the agent
executes, and the user the restricted containers ask for. (No Docker engine here: the image
itself is built by whoever ships it; this keeps the recipe and the manifests in step.)"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from clusterlink.kube import manifests as m

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_entry_point_is_the_console_script_the_manifests_call() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert 'ENTRYPOINT ["clusterlink"]' in DOCKERFILE and "clusterlink" in scripts
    commands = {
        tuple(c["command"])
        for o in m.control_plane()
        + m.member(m.MemberSpec("c", control_kubeconfig="k"))
        + m.floater()
        if o["kind"] in ("Deployment", "DaemonSet")
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert commands == {("clusterlink",)}


def test_the_agent_tools_are_installed() -> None:
    packages = set(re.findall(r"\b(iproute2|iptables|nftables|iputils-ping)\b", DOCKERFILE))
    assert {"iproute2", "iptables"} <= packages  # ip/bridge -batch, iptables-restore


def test_the_restricted_user_exists_in_the_image() -> None:
    assert f"--uid {m.RESTRICTED['runAsUser']}" in DOCKERFILE
