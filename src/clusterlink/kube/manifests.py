"""Everything a real cluster runs, as plain Kubernetes objects (pure functions, no I/O).

- `control_plane`: in the control cluster - namespace, CRDs, the network-manager (2 replicas,
  one active through its Lease), the `clusterlink-member` roles that member components use
  against the control cluster, and the admission policy that confines each member to its own
  cluster's objects (`member_scope_policy`).
- `member_identity`: in the control cluster, per member - its ServiceAccount
  `clusterlink-member-<cluster>` and the bindings of the member roles to it (`join` hands the
  member a token of this account only).
- `member`: in each member cluster - the controller, the electors (gateway mode: 2 replicas on
  distinct gateway candidates), the agent DaemonSet and the control cluster's kubeconfig.
- `floater`: the doctor's DaemonSet (`kosmosctl dr`).

RBAC lists verbs and resources one by one: no `*` anywhere (a test enforces it). RBAC cannot
say "only your own cluster's ClusterNodes" (names are not known in advance, and a create has
no name to match); the ValidatingAdmissionPolicy says it, in CEL.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from clusterlink import __version__
from clusterlink import constants as C
from clusterlink.api.crds import crd_objects

NS = C.DEFAULT_NAMESPACE
DEFAULT_IMAGE = f"ghcr.io/clusterlink-io/clusterlink:{__version__}"
PART_OF = {"app.kubernetes.io/part-of": "clusterlink"}
CANDIDATE_LABEL = "kosmos.io/gateway-candidate"
EXCLUDE_LABEL = "kosmos.io/exclude"
CONTROL_SECRET = "clusterlink-control-kubeconfig"
CONTROL_MOUNT = "/etc/clusterlink/control"
FLOATER_PORT = 8889

Obj = dict[str, Any]
READ = ["get", "list", "watch"]
WRITE = ["create", "update", "patch", "delete"]


@dataclass(frozen=True)
class MemberSpec:
    """What `join` needs to lay out a member's components."""

    cluster: str
    image: str = DEFAULT_IMAGE
    network_type: str = "gateway"
    control_kubeconfig: str = ""  # its text: the member account's token (deploy.py)
    service_cidrs: tuple[str, ...] = field(default_factory=tuple)


def _meta(name: str, namespace: str | None = NS, **labels: str) -> Obj:
    meta: Obj = {"name": name, "labels": {**PART_OF, **labels}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def namespace() -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(NS, None)}


def service_account(name: str, **labels: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, **labels)}


def rule(group: str, resources: list[str], verbs: list[str]) -> Obj:
    return {"apiGroups": [group], "resources": resources, "verbs": verbs}


def cluster_role(name: str, rules: list[Obj], **labels: str) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(name, None, **labels),
        "rules": rules,
    }


def role(name: str, rules: list[Obj], namespace: str = NS, **labels: str) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(name, namespace, **labels),
        "rules": rules,
    }


def binding(kind: str, name: str, role_name: str, accounts: list[str], **labels: str) -> Obj:
    """A (Cluster)RoleBinding of `role_name` to service accounts of our namespace."""
    cluster_scoped = kind == "ClusterRoleBinding"
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": _meta(name, None if cluster_scoped else NS, **labels),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole" if cluster_scoped else "Role",
            "name": role_name,
        },
        "subjects": [{"kind": "ServiceAccount", "name": a, "namespace": NS} for a in accounts],
    }


LEASES = rule("coordination.k8s.io", ["leases"], ["get", "list", "watch", "create", "update"])
# What a member's components (controller, electors, agents) do in the control cluster; the
# admission policy narrows every write to the member's own cluster. No Secrets.
MEMBER_RULES = [
    rule(C.API_GROUP, ["clusters"], READ),
    rule(C.API_GROUP, ["clusters/status"], ["get", "update", "patch"]),
    rule(C.API_GROUP, ["clusternodes"], READ + WRITE),
    rule(C.API_GROUP, ["nodeconfigs"], READ),
    rule(C.API_GROUP, ["nodeconfigs/status"], ["get", "update", "patch"]),
]


def _container(name: str, image: str, args: list[str], **extra: Any) -> Obj:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["clusterlink"],
        "args": args,
        **extra,
    }


NODE_NAME_ENV = {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "capabilities": {"drop": ["ALL"]},
}


def _workload(
    kind: str, name: str, labels: dict[str, str], pod_spec: Obj, replicas: int | None = None
) -> Obj:
    spec: Obj = {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name, **labels}}, "spec": pod_spec},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": _meta(name, **labels), "spec": spec}


def _spread(name: str, required: bool) -> Obj:
    term = {
        "labelSelector": {"matchLabels": {"app": name}},
        "topologyKey": "kubernetes.io/hostname",
    }
    if required:
        return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": term}
            ]
        }
    }


def control_plane(image: str = DEFAULT_IMAGE) -> list[Obj]:
    nm = "clusterlink-network-manager"
    return [
        namespace(),
        *crd_objects(),
        service_account(nm),
        cluster_role(
            nm,
            [
                rule(C.API_GROUP, ["clusters", "clusternodes"], READ),
                rule(C.API_GROUP, ["nodeconfigs"], READ + WRITE),
            ],
        ),
        binding("ClusterRoleBinding", nm, nm, [nm]),
        # Its Lease, and the members' credentials (the control plane's to read, by name).
        role(nm, [LEASES, rule("", ["secrets"], ["get"])]),
        binding("RoleBinding", nm, nm, [nm]),
        # Bound to each member's own account by `member_identity`.
        cluster_role(MEMBER_ROLE, MEMBER_RULES),
        role(MEMBER_ROLE, [LEASES]),
        *member_scope_policy(),
        _workload(
            "Deployment",
            nm,
            {},
            {
                "serviceAccountName": nm,
                "affinity": _spread(nm, required=False),
                "containers": [
                    _container(
                        "network-manager",
                        image,
                        ["network-manager", "--store", "kube://"],
                        securityContext=RESTRICTED,
                        resources={"requests": {"cpu": "50m", "memory": "96Mi"}},
                    )
                ],
            },
            replicas=2,
        ),
    ]


MEMBER_ROLE = "clusterlink-member"
MEMBER_SCOPE = "clusterlink-member-scope"
MEMBER_USER = f"system:serviceaccount:{NS}:{C.MEMBER_ACCOUNT_PREFIX}"
_WRITES = ["CREATE", "UPDATE", "DELETE"]


def member_account(cluster: str) -> str:
    """The member's ServiceAccount in the control cluster (also its elector Lease's name)."""
    return f"{C.MEMBER_ACCOUNT_PREFIX}{cluster}"


def member_identity(cluster: str) -> list[Obj]:
    """In the control cluster: the member's own account, bound to the member roles."""
    account = member_account(cluster)
    cl = {C.CLUSTER_LABEL: cluster}
    return [
        service_account(account, **cl),
        binding("ClusterRoleBinding", account, MEMBER_ROLE, [account], **cl),
        binding("RoleBinding", account, MEMBER_ROLE, [account], **cl),
    ]


def _only_for(resource: str, check: str) -> str:
    return f"request.resource.resource != '{resource}' || ({check})"


# Each validation is about one resource, and holds trivially for the others. `variables.target`
# is the object written, or the one deleted. The requester is compared by concatenation only
# (standard CEL, nothing from Kubernetes' extension libraries), so the double's CEL library
# evaluates these very strings (tests/kubeauth.py).
MEMBER_SCOPE_VALIDATIONS: list[tuple[str, str]] = [
    (
        _only_for(
            "clusternodes",
            f"request.userInfo.username == '{MEMBER_USER}' + variables.target.spec.clusterName"
            " && (request.operation != 'UPDATE'"
            " || oldObject.spec.clusterName == object.spec.clusterName)"
            " && variables.target.metadata.name"
            " == variables.target.spec.clusterName + '-' + variables.target.spec.nodeName"
            f" && (!has(variables.target.metadata.labels)"
            f" || !('{C.CLUSTER_LABEL}' in variables.target.metadata.labels)"
            f" || variables.target.metadata.labels['{C.CLUSTER_LABEL}']"
            " == variables.target.spec.clusterName)",
        ),
        "a member may write only ClusterNodes of its own cluster (spec.clusterName, the "
        "kosmos.io/cluster label, and the name <cluster>-<node>)",
    ),
    (
        _only_for(
            "clusters",
            f"request.userInfo.username == '{MEMBER_USER}' + variables.target.metadata.name",
        ),
        "a member may write only its own Cluster's status",
    ),
    (
        _only_for(
            "nodeconfigs",
            f"has(oldObject.metadata.labels) && '{C.CLUSTER_LABEL}' in oldObject.metadata.labels"
            f" && request.userInfo.username == '{MEMBER_USER}'"
            f" + oldObject.metadata.labels['{C.CLUSTER_LABEL}']",
        ),
        "a member may write only the status of its own cluster's NodeConfigs (the "
        "kosmos.io/cluster label the network-manager sets)",
    ),
    (
        _only_for(
            "leases",
            f"request.userInfo.username == 'system:serviceaccount:{NS}:'"
            " + variables.target.metadata.name",
        ),
        "a member may hold only its own cluster's Lease (named as its account)",
    ),
]


def member_scope_policy() -> list[Obj]:
    """A ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1, Kubernetes >= 1.30) and its
    binding: a request by a member account may write only its own cluster's ClusterNodes,
    Cluster status, NodeConfig status and Lease. Other requesters are not matched."""
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _meta(MEMBER_SCOPE, None),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [C.API_GROUP],
                        "apiVersions": ["*"],
                        "operations": _WRITES,
                        "resources": ["clusternodes", "clusters/status", "nodeconfigs/status"],
                    },
                    {
                        "apiGroups": ["coordination.k8s.io"],
                        "apiVersions": ["*"],
                        "operations": _WRITES,
                        "resources": ["leases"],
                    },
                ]
            },
            "matchConditions": [
                {
                    "name": "member-account",
                    "expression": f"request.userInfo.username.startsWith('{MEMBER_USER}')",
                }
            ],
            "variables": [
                {
                    "name": "target",
                    "expression": "request.operation == 'DELETE' ? oldObject : object",
                }
            ],
            "validations": [
                {"expression": expression, "message": message, "reason": "Forbidden"}
                for expression, message in MEMBER_SCOPE_VALIDATIONS
            ],
        },
    }
    binding_obj = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": _meta(MEMBER_SCOPE, None),
        "spec": {"policyName": MEMBER_SCOPE, "validationActions": ["Deny"]},
    }
    return [policy, binding_obj]


def member(spec: MemberSpec) -> list[Obj]:
    """A member's objects (in the member cluster). Every one carries `kosmos.io/cluster`."""
    cl = {C.CLUSTER_LABEL: spec.cluster}
    accounts = ["clusterlink-controller", "clusterlink-agent"]
    if spec.network_type == "gateway":
        accounts.insert(1, "clusterlink-elector")
    objs: list[Obj] = [namespace(), *(service_account(a, **cl) for a in accounts)]
    objs += [
        cluster_role(
            "clusterlink-controller",
            [
                rule("", ["nodes"], READ),
                rule("", ["pods"], ["get", "list"]),
                rule("", ["configmaps"], ["get"]),
                rule("crd.projectcalico.org", ["ippools"], READ + WRITE),
                rule("crd.projectcalico.org", ["blockaffinities"], READ),
            ],
            **cl,
        ),
        binding(
            "ClusterRoleBinding",
            "clusterlink-controller",
            "clusterlink-controller",
            ["clusterlink-controller"],
            **cl,
        ),
    ]
    # The control cluster's kubeconfig (its own member's too): a token of the member's own
    # account in the control cluster, never the caller's identity.
    store = f"kube://?kubeconfig={CONTROL_MOUNT}/kubeconfig"
    objs.append(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(CONTROL_SECRET, **cl),
            "type": "Opaque",
            "data": {"kubeconfig": base64.b64encode(spec.control_kubeconfig.encode()).decode()},
        }
    )
    volumes: list[Obj] = [{"name": "control", "secret": {"secretName": CONTROL_SECRET}}]
    mounts: list[Obj] = [{"name": "control", "mountPath": CONTROL_MOUNT, "readOnly": True}]

    controller_args = ["controller", "--cluster", spec.cluster, "--store", store]
    for cidr in spec.service_cidrs:
        controller_args += ["--service-cidr", cidr]
    objs.append(
        _workload(
            "Deployment",
            "clusterlink-controller",
            cl,
            {
                "serviceAccountName": "clusterlink-controller",
                "containers": [
                    _container(
                        "controller",
                        spec.image,
                        controller_args,
                        securityContext=RESTRICTED,
                        volumeMounts=mounts,
                        resources={"requests": {"cpu": "20m", "memory": "64Mi"}},
                    )
                ],
                "volumes": volumes,
            },
            replicas=1,
        )
    )
    if spec.network_type == "gateway":
        objs.append(
            _workload(
                "Deployment",
                "clusterlink-elector",
                cl,
                {
                    "serviceAccountName": "clusterlink-elector",
                    "hostNetwork": True,  # it watches the node's underlay NIC
                    "nodeSelector": {CANDIDATE_LABEL: "true"},
                    "affinity": _spread("clusterlink-elector", required=True),
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [
                        _container(
                            "elector",
                            spec.image,
                            [
                                "elector",
                                "--cluster",
                                spec.cluster,
                                "--node",
                                "$(NODE_NAME)",
                                "--store",
                                store,
                            ],
                            env=[NODE_NAME_ENV],
                            securityContext=RESTRICTED,
                            volumeMounts=mounts,
                            resources={"requests": {"cpu": "10m", "memory": "64Mi"}},
                        )
                    ],
                    "volumes": volumes,
                },
                replicas=2,
            )
        )
    objs.append(agent_daemonset(spec, store, volumes, mounts))
    return objs


NOT_EXCLUDED = {"key": EXCLUDE_LABEL, "operator": "NotIn", "values": ["true"]}


def _not_excluded() -> Obj:
    terms = [{"matchExpressions": [NOT_EXCLUDED]}]
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
        }
    }


def agent_daemonset(spec: MemberSpec, store: str, volumes: list[Obj], mounts: list[Obj]) -> Obj:
    host = [
        ("xtables-lock", "/run/xtables.lock", "FileOrCreate", False),
        ("proc-sys-net", "/proc/sys/net", "Directory", False),
        ("lib-modules", "/lib/modules", "Directory", True),
    ]
    agent_volumes = volumes + [
        {"name": name, "hostPath": {"path": path, "type": kind}} for name, path, kind, _ in host
    ]
    agent_mounts = mounts + [
        {
            "name": name,
            "mountPath": "/host/proc/sys/net" if name == "proc-sys-net" else path,
            "readOnly": ro,
        }
        for name, path, _, ro in host
    ]
    return _workload(
        "DaemonSet",
        "clusterlink-agent",
        {C.CLUSTER_LABEL: spec.cluster},
        {
            "serviceAccountName": "clusterlink-agent",
            "hostNetwork": True,
            "dnsPolicy": "ClusterFirstWithHostNet",
            "priorityClassName": "system-node-critical",
            "tolerations": [{"operator": "Exists"}],
            "affinity": _not_excluded(),
            "containers": [
                _container(
                    "agent",
                    spec.image,
                    ["agent", "--node", f"{spec.cluster}-$(NODE_NAME)", "--store", store],
                    env=[
                        NODE_NAME_ENV,
                        {"name": "CLUSTERLINK_PROC_SYS", "value": "/host/proc/sys"},
                    ],
                    securityContext={
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]},
                    },
                    volumeMounts=agent_mounts,
                    resources={"requests": {"cpu": "20m", "memory": "96Mi"}},
                )
            ],
            "volumes": agent_volumes,
        },
    )


def floater_name(host_network: bool) -> str:
    return "clusterlink-floater-host" if host_network else "clusterlink-floater"


def floater(
    image: str = DEFAULT_IMAGE, host_network: bool = False, port: int = FLOATER_PORT
) -> list[Obj]:
    """The doctor's probes: one per node, in the pod network (or the host network)."""
    name = floater_name(host_network)
    pod: Obj = {
        "tolerations": [{"operator": "Exists"}],
        "automountServiceAccountToken": False,
        "containers": [
            _container(
                "floater",
                image,
                ["floater", "--port", str(port)],
                ports=[{"containerPort": port, "name": "floater"}],
                securityContext={
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_RAW"]},
                },
                readinessProbe={"httpGet": {"path": "/", "port": port}},
            )
        ],
    }
    if host_network:
        pod["hostNetwork"] = True
    return [
        namespace(),
        _workload("DaemonSet", name, {"app.kubernetes.io/component": "doctor"}, pod),
    ]


# -- how each kind is addressed (for apply and delete) ---------------------------------------

PATHS: dict[str, tuple[str, str, bool]] = {
    # kind: (API prefix, plural, namespaced)
    "Namespace": ("/api/v1", "namespaces", False),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Secret": ("/api/v1", "secrets", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "CustomResourceDefinition": (
        "/apis/apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        False,
    ),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "DaemonSet": ("/apis/apps/v1", "daemonsets", True),
    "ValidatingAdmissionPolicy": (
        "/apis/admissionregistration.k8s.io/v1",
        "validatingadmissionpolicies",
        False,
    ),
    "ValidatingAdmissionPolicyBinding": (
        "/apis/admissionregistration.k8s.io/v1",
        "validatingadmissionpolicybindings",
        False,
    ),
}


def object_path(obj: Obj) -> str:
    prefix, plural, namespaced = PATHS[obj["kind"]]
    meta = obj["metadata"]
    ns = f"/namespaces/{meta['namespace']}" if namespaced else ""
    return f"{prefix}{ns}/{plural}/{meta['name']}"


def describe(obj: Obj) -> str:
    meta = obj["metadata"]
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj['kind']} {ns}{meta['name']}"


def unique(objects: list[Obj]) -> list[Obj]:
    """The first of each object (by API path), in order."""
    seen: set[str] = set()
    out = []
    for obj in objects:
        key = object_path(obj)
        if key not in seen:
            seen.add(key)
            out.append(obj)
    return out
