"""The shipped admission policy's CEL, evaluated by cel-python as the double does it: each
member write it must admit is admitted and each forged one denied, with the reason the API
server would give; and the double's RBAC rule matching (subresources, resourceNames)."""

from __future__ import annotations

from typing import Any

import pytest

from clusterlink.kube import manifests as m
from tests import kubeauth as auth

POLICY, BINDING = m.member_scope_policy()
CN = ("kosmos.io", "v1alpha1", "clusternodes")
CLUSTERS = ("kosmos.io", "v1alpha1", "clusters")
NODECONFIGS = ("kosmos.io", "v1alpha1", "nodeconfigs")
LEASES = ("coordination.k8s.io", "v1", "leases")


def member(cluster: str) -> auth.UserInfo:
    return auth.UserInfo(f"system:serviceaccount:kosmos-system:clusterlink-member-{cluster}")


def node(name: str, cluster: str, label: str | None = None) -> dict[str, Any]:
    labels = {"kosmos.io/cluster": label or cluster}
    spec = {"clusterName": cluster, "nodeName": name.split("-", 1)[1]}
    return {"metadata": {"name": name, "labels": labels}, "spec": spec}


def named(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "spec": {}, "status": {}}


A = member("a")
# (case, operation, resource, subresource, user, oldObject, object): admitted?
CASES: list[tuple[str, str, tuple[str, str, str], str, auth.UserInfo, Any, Any, bool]] = [
    ("own node created", "CREATE", CN, "", A, None, node("a-n1", "a"), True),
    ("own node updated", "UPDATE", CN, "", A, node("a-n1", "a"), node("a-n1", "a"), True),
    ("own node deleted", "DELETE", CN, "", A, node("a-n1", "a"), None, True),
    ("B's node created", "CREATE", CN, "", A, None, node("b-n1", "b"), False),
    ("B's node updated", "UPDATE", CN, "", A, node("b-n1", "b"), node("b-n1", "b"), False),
    ("B's node taken over", "UPDATE", CN, "", A, node("b-n1", "b"), node("b-n1", "a"), False),
    ("own node given away", "UPDATE", CN, "", A, node("a-n1", "a"), node("a-n1", "b"), False),
    ("B's node deleted", "DELETE", CN, "", A, node("b-n1", "b"), None, False),
    ("own node, B's name", "CREATE", CN, "", A, None, node("b-n1", "a", "a"), False),
    ("own node, B's label", "CREATE", CN, "", A, None, node("a-n1", "a", "b"), False),
    ("own node, another node's name", "CREATE", CN, "", A, None,
     {**node("a-n1", "a"), "spec": {"clusterName": "a", "nodeName": "n2"}}, False),
    ("a node without clusterName", "CREATE", CN, "", A, None, named("a-n1"), False),
    ("own Cluster status", "UPDATE", CLUSTERS, "status", A, named("a"), named("a"), True),
    ("B's Cluster status", "UPDATE", CLUSTERS, "status", A, named("b"), named("b"), False),
    ("own NodeConfig status", "UPDATE", NODECONFIGS, "status", A,
     named("a-n1", **{"kosmos.io/cluster": "a"}), named("a-n1", **{"kosmos.io/cluster": "a"}), True),
    ("B's NodeConfig status", "UPDATE", NODECONFIGS, "status", A,
     named("b-n1", **{"kosmos.io/cluster": "b"}), named("b-n1", **{"kosmos.io/cluster": "b"}), False),
    ("an unlabelled NodeConfig's status", "UPDATE", NODECONFIGS, "status", A,
     named("a-n1"), named("a-n1"), False),
    ("own Lease created", "CREATE", LEASES, "", A, None, named("clusterlink-member-a"), True),
    ("own Lease renewed", "UPDATE", LEASES, "", A,
     named("clusterlink-member-a"), named("clusterlink-member-a"), True),
    ("B's Lease taken", "UPDATE", LEASES, "", A,
     named("clusterlink-member-b"), named("clusterlink-member-b"), False),
    ("the network-manager's Lease", "UPDATE", LEASES, "", A,
     named("network-manager"), named("network-manager"), False),
    # A prefix of another member's name is not that member.
    ("a-b's Lease, by a", "CREATE", LEASES, "", A, None, named("clusterlink-member-a-b"), False),
    # Not a member: not matched at all.
    ("the network-manager", "CREATE", LEASES, "", auth.UserInfo(
        "system:serviceaccount:kosmos-system:clusterlink-network-manager"), None,
     named("network-manager"), True),
    ("the admin writes B's node", "CREATE", CN, "", auth.ADMIN, None, node("b-n1", "b"), True),
]  # fmt: skip


@pytest.mark.parametrize(
    "operation, gvr, sub, user, old, new, admitted",
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_the_shipped_policy(
    operation: str,
    gvr: tuple[str, str, str],
    sub: str,
    user: auth.UserInfo,
    old: Any,
    new: Any,
    admitted: bool,
) -> None:
    name = (new or old)["metadata"]["name"]
    ns = "kosmos-system" if gvr == LEASES else None
    attrs = auth.Attributes(operation, gvr, "Kind", sub, ns, name, user)
    decision = auth.policy_decision(POLICY, attrs, old, new)
    if admitted:
        assert decision is None
    else:
        assert decision is not None
        reason, message = decision
        assert reason == "Forbidden" or "resulted in error" in message, decision


def test_a_denial_is_the_api_servers_status() -> None:
    objects = {
        (("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies"), None, m.MEMBER_SCOPE): POLICY,
        (("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings"), None, m.MEMBER_SCOPE): BINDING,
    }  # fmt: skip
    attrs = auth.Attributes("CREATE", CN, "ClusterNode", "", None, "b-n1", A)
    with pytest.raises(auth.Refusal) as caught:
        auth.admit(attrs, None, node("b-n1", "b"), objects)
    status = caught.value.status()
    assert status["code"] == 403 and status["reason"] == "Forbidden"
    assert status["message"].startswith(
        'clusternodes.kosmos.io "b-n1" is forbidden: ValidatingAdmissionPolicy '
        "'clusterlink-member-scope' with binding 'clusterlink-member-scope' denied request: "
        "a member may write only ClusterNodes of its own cluster"
    )
    assert status["details"]["kind"] == "clusternodes"
    auth.admit(attrs, None, node("b-n1", "b"), {})  # no policy applied: nothing to deny
    unbound = {k: v for k, v in objects.items() if "bindings" not in k[0][2]}
    auth.admit(attrs, None, node("b-n1", "b"), unbound)  # a policy without binding: inert


def test_an_evaluation_error_fails_closed_as_invalid() -> None:
    """failurePolicy Fail: an expression that cannot be evaluated denies (Invalid, 422)."""
    attrs = auth.Attributes("CREATE", CN, "ClusterNode", "", None, "a-n1", A)
    decision = auth.policy_decision(POLICY, attrs, None, named("a-n1"))  # no spec.clusterName
    assert decision is not None and decision[0] == "Invalid"
    assert "resulted in error" in decision[1]


@pytest.mark.parametrize(
    "rule, verb, resource, name, allowed",
    [
        ({"resources": ["clusters"], "verbs": ["get"]}, "get", "clusters", "a", True),
        ({"resources": ["clusters"], "verbs": ["get"]}, "get", "clusters/status", "a", False),
        ({"resources": ["clusters/status"], "verbs": ["update"]}, "update", "clusters/status", "a", True),
        ({"resources": ["clusters/status"], "verbs": ["update"]}, "update", "clusters", "a", False),
        ({"resources": ["leases"], "verbs": ["update"], "resourceNames": ["x"]}, "update", "leases", "x", True),
        ({"resources": ["leases"], "verbs": ["update"], "resourceNames": ["x"]}, "update", "leases", "y", False),
        # A create names no object: resourceNames never match it (as in Kubernetes).
        ({"resources": ["leases"], "verbs": ["create"], "resourceNames": ["x"]}, "create", "leases", None, False),
        ({"resources": ["*"], "verbs": ["get"]}, "get", "clusters/status", "a", True),
        ({"resources": ["clusters"], "verbs": ["get"], "apiGroups": ["other.io"]}, "get", "clusters", "a", False),
    ],
)  # fmt: skip
def test_rbac_rules(
    rule: dict[str, Any], verb: str, resource: str, name: str | None, allowed: bool
) -> None:
    full = {"apiGroups": ["kosmos.io"], **rule}
    assert auth.rule_allows(full, verb, "kosmos.io", resource, name) is allowed
