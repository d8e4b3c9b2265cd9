"""Everything a real cluster runs, as plain Kubernetes objects (pure functions, no I/O).

- `control_plane`: in the control cluster - namespace, CRDs, the network-manager (2 replicas,
  one active through its Lease) and the `clusterlink-member` role that member components use
  against the control cluster.
- `member`: in each member cluster - the controller, the electors (gateway mode: 2 replicas on
  distinct gateway candidates), the agent DaemonSet and the control cluster's kubeconfig.
- `floater`: the doctor's DaemonSet (`kosmosctl dr`).

RBAC lists verbs and resources one by one: no `*` anywhere (a test enforces it).
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
    same_cluster_as_control: bool = False  # in-cluster access to the store
    control_kubeconfig: str | None = None  # its text, for other clusters
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
        role(nm, [LEASES]),
        binding("RoleBinding", nm, nm, [nm]),
        # Member components use this role against the control cluster (in-cluster for the
        # control cluster's own member; a member's kubeconfig may carry this account's token).
        service_account("clusterlink-member"),
        cluster_role("clusterlink-member", MEMBER_RULES),
        role("clusterlink-member", [LEASES]),
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
    volumes: list[Obj] = []
    mounts: list[Obj] = []
    if spec.same_cluster_as_control:
        store = "kube://"
        # The control cluster's own member: its accounts get the member role in place.
        objs += [
            binding(
                "ClusterRoleBinding",
                "clusterlink-member",
                "clusterlink-member",
                accounts,
                **cl,
            ),
            binding("RoleBinding", "clusterlink-member", "clusterlink-member", accounts, **cl),
        ]
    else:
        if not spec.control_kubeconfig:
            raise ValueError("a member of another cluster needs the control cluster's kubeconfig")
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
        volumes.append({"name": "control", "secret": {"secretName": CONTROL_SECRET}})
        mounts.append({"name": "control", "mountPath": CONTROL_MOUNT, "readOnly": True})

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
        # The node's WireGuard private key (0600), kept across agent restarts and upgrades.
        ("state", C.DEFAULT_STATE_DIR, "DirectoryOrCreate", False),
        ("dev-net-tun", "/dev/net/tun", "CharDevice", False),  # wireguard-go's TUN
    ]
    agent_volumes = volumes + [
        {"name": name, "hostPath": {"path": path, "type": kind}} for name, path, kind, _ in host
    ]
    # wireguard-go's UAPI sockets (the root filesystem is read-only).
    agent_volumes.append({"name": "wireguard-run", "emptyDir": {"medium": "Memory"}})
    agent_mounts = (
        mounts
        + [
            {
                "name": name,
                "mountPath": "/host/proc/sys/net" if name == "proc-sys-net" else path,
                "readOnly": ro,
            }
            for name, path, _, ro in host
        ]
        + [{"name": "wireguard-run", "mountPath": C.WG_SOCKET_DIR}]
    )
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
