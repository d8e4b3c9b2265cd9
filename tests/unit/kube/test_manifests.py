"""The manifests are valid Kubernetes objects (the official OpenAPI schemas, strict), RBAC
names every verb and resource, and the workloads have the shape the issue asks for."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from clusterlink.api.crds import crd_objects
from clusterlink.cli.kosmosctl import app
from clusterlink.kube import manifests as m

# The oldest and newest Kubernetes the validator ships schemas for that we support (1.30: the
# first with admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy).
VERSIONS = ["1.30.0", "1.37.0"]


def every_manifest() -> list[m.Obj]:
    out = m.control_plane() + m.member_identity("c1") + m.floater() + m.floater(host_network=True)
    for network_type in ("gateway", "p2p"):
        out += m.member(
            m.MemberSpec(cluster="c1", network_type=network_type, control_kubeconfig="k")
        )
    return out


def wildcards(objects: list[m.Obj]) -> list[str]:
    """Every `*` in an RBAC rule, as `Kind/name: field`."""
    found = []
    for obj in objects:
        for i, rule in enumerate(obj.get("rules") or []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                if any("*" in value for value in rule.get(field) or []):
                    found.append(f"{obj['kind']}/{obj['metadata']['name']}: rules[{i}].{field}")
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_schema_valid(version: str) -> None:
    for obj in every_manifest():
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_catches_a_broken_manifest() -> None:
    broken = m.control_plane()[-1]
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_no_rbac_wildcard_anywhere() -> None:
    roles = [o for o in every_manifest() if o["kind"] in ("Role", "ClusterRole")]
    assert len(roles) >= 4
    assert wildcards(roles) == []


def test_the_wildcard_check_fails_on_a_wildcard() -> None:
    role = m.cluster_role("x", [m.rule("", ["pods"], ["*"]), m.rule("*", ["nodes"], ["get"])])
    assert wildcards([role]) == [
        "ClusterRole/x: rules[0].verbs",
        "ClusterRole/x: rules[1].apiGroups",
    ]


def _by_kind(objects: list[m.Obj], kind: str, name: str) -> m.Obj:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_network_manager_two_replicas_one_leader_by_lease() -> None:
    objs = m.control_plane("img:1")
    nm = _by_kind(objs, "Deployment", "clusterlink-network-manager")
    assert nm["spec"]["replicas"] == 2
    container = nm["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "img:1" and container["args"][:3] == [
        "network-manager",
        "--store",
        "kube://",
    ]
    role = _by_kind(objs, "Role", "clusterlink-network-manager")
    assert role["rules"][0]["resources"] == ["leases"]
    assert role["rules"][1] == {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    assert [o["kind"] for o in objs[:4]] == ["Namespace"] + ["CustomResourceDefinition"] * 3


def test_member_workloads() -> None:
    objs = m.member(m.MemberSpec(cluster="c1", control_kubeconfig="apiVersion: v1"))
    agent = _by_kind(objs, "DaemonSet", "clusterlink-agent")["spec"]["template"]["spec"]
    assert agent["hostNetwork"] is True
    assert agent["tolerations"] == [{"operator": "Exists"}]
    caps = agent["containers"][0]["securityContext"]["capabilities"]
    assert caps["add"] == ["NET_ADMIN", "NET_RAW"]
    mounts = {v["mountPath"] for v in agent["containers"][0]["volumeMounts"]}
    assert {"/run/xtables.lock", m.CONTROL_MOUNT} <= mounts
    terms = agent["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"] == [m.NOT_EXCLUDED]
    assert "--node" in agent["containers"][0]["args"]
    assert "c1-$(NODE_NAME)" in agent["containers"][0]["args"]
    elector = _by_kind(objs, "Deployment", "clusterlink-elector")
    assert elector["spec"]["replicas"] == 2
    pod = elector["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {m.CANDIDATE_LABEL: "true"}
    assert "requiredDuringSchedulingIgnoredDuringExecution" in pod["affinity"]["podAntiAffinity"]
    assert all(o["metadata"]["labels"].get("kosmos.io/cluster") == "c1" for o in objs[1:])
    secret = _by_kind(objs, "Secret", m.CONTROL_SECRET)
    assert secret["data"]["kubeconfig"]


def test_p2p_members_run_no_elector() -> None:
    objs = m.member(m.MemberSpec(cluster="c1", network_type="p2p", control_kubeconfig="k"))
    assert not [o for o in objs if o["metadata"]["name"] == "clusterlink-elector"]


def test_members_get_no_secrets_and_no_shared_account() -> None:
    """Least privilege: the member roles name no Secret; every member has its own account,
    and nothing binds a member role to an account shared by members."""
    objs = m.control_plane() + m.member_identity("a") + m.member_identity("b")
    member_roles = [o for o in objs if o["metadata"]["name"] == m.MEMBER_ROLE]
    assert sorted(o["kind"] for o in member_roles) == ["ClusterRole", "Role"]
    assert not [r for o in member_roles for r in o["rules"] if "secrets" in r["resources"]]
    bindings = [o for o in objs if o["kind"].endswith("Binding") and
                o.get("roleRef", {}).get("name") == m.MEMBER_ROLE]  # fmt: skip
    assert sorted((b["kind"], [s["name"] for s in b["subjects"]]) for b in bindings) == [
        ("ClusterRoleBinding", ["clusterlink-member-a"]),
        ("ClusterRoleBinding", ["clusterlink-member-b"]),
        ("RoleBinding", ["clusterlink-member-a"]),
        ("RoleBinding", ["clusterlink-member-b"]),
    ]
    writes = {
        tuple(r["resources"]): r["verbs"]
        for o in member_roles
        for r in o["rules"]
        if set(r["verbs"]) & {"create", "update", "patch", "delete"}
    }
    assert writes == {
        ("clusters/status",): ["get", "update", "patch"],
        ("clusternodes",): ["get", "list", "watch", "create", "update", "patch", "delete"],
        ("nodeconfigs/status",): ["get", "update", "patch"],
        ("leases",): ["get", "list", "watch", "create", "update"],
    }


def _cluster_schema() -> dict[str, Any]:
    crd = next(c for c in crd_objects() if c["spec"]["names"]["kind"] == "Cluster")
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_install_dry_run_prints_valid_manifests_without_a_cluster() -> None:
    result = CliRunner().invoke(app, ["install", "--dry-run", "--image", "reg/cl:2"])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "Namespace" and kinds[-1] == "Cluster"
    assert kinds.count("DaemonSet") == 1 and kinds.count("Namespace") == 1
    for doc in docs[:-1]:
        kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)
    jsonschema.validate(docs[-1], _cluster_schema())
    assert wildcards(docs) == []


CONTROL_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: control
  cluster: {server: "https://control:6443", certificate-authority-data: Q0EK}
users:
- name: admin
  user: {token: admin-secret-token}
contexts:
- name: control
  context: {cluster: control, user: admin}
current-context: control
"""


def test_join_dry_run_json_and_the_control_kubeconfig_must_embed_files(tmp_path: Any) -> None:
    control = tmp_path / "control"
    control.write_text(CONTROL_KUBECONFIG)
    args = ["join", "cluster", "--name", "m1", "--dry-run", "-o", "json"]
    result = CliRunner().invoke(app, [*args, "--host-kubeconfig", str(control)])
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    assert [i["metadata"]["name"] for i in items if i["kind"] == "Secret"] == [m.CONTROL_SECRET]
    control.write_text(CONTROL_KUBECONFIG.replace("certificate-authority-data: Q0EK",
                                                  "certificate-authority: /etc/ca.pem"))  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--host-kubeconfig", str(control)])
    assert result.exit_code != 0 and "kubectl config view --flatten" in result.output


@pytest.mark.parametrize("command", [["install"], ["join", "cluster", "--name", "m1"]])
def test_dry_runs_print_no_token_unless_asked(tmp_path: Any, command: list[str]) -> None:
    """Secrets' data is <redacted> in a dry run; --show-secrets prints the member's kubeconfig,
    which holds the control cluster and the member account's token - never the caller's."""
    control = tmp_path / "control"
    control.write_text(CONTROL_KUBECONFIG)
    args = [*command, "--dry-run", "-o", "yaml", "--kubeconfig", str(control)]
    if command[0] == "join":
        args += ["--host-kubeconfig", str(control)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    secret = _by_kind(docs, "Secret", m.CONTROL_SECRET)
    assert secret["data"] == {"kubeconfig": "<redacted>"}
    assert (
        _by_kind(docs, "Cluster", "m1" if command[0] == "join" else "kosmos-control-cluster")[
            "spec"
        ]["kubeconfig"]
        == "<redacted>"
    )
    assert "admin-secret-token" not in result.stdout and "token" not in yaml.safe_dump(secret)
    shown = CliRunner().invoke(app, [*args, "--show-secrets"])
    assert shown.exit_code == 0, shown.output
    mounted = yaml.safe_load(
        base64.b64decode(_by_kind(list(yaml.safe_load_all(shown.stdout)), "Secret",
                                  m.CONTROL_SECRET)["data"]["kubeconfig"])
    )  # fmt: skip
    name = "m1" if command[0] == "join" else "kosmos-control-cluster"
    assert mounted["users"] == [
        {"name": f"clusterlink-member-{name}",
         "user": {"token": f"(a token of clusterlink-member-{name}, by TokenRequest at join)"}}
    ]  # fmt: skip
    server = mounted["clusters"][0]["cluster"]["server"]
    assert server == ("https://control:6443" if command[0] == "join" else
                      "https://kubernetes.default.svc")  # fmt: skip
    assert "admin-secret-token" not in shown.stdout
