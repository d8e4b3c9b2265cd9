"""Where a lab lives on disk: its state directory, plan, handle files and logs."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from clusterlink.api.cluster import Cluster
from clusterlink.api.meta import validate_dns1123
from clusterlink.errors import BadInput
from clusterlink.inputs import read_json, read_yaml
from clusterlink.lab.topology import ClusterPlan, LabPlan

ENV_LAB_DIR = "CLUSTERLINK_LAB_DIR"
DEFAULT_LAB_DIR = "/var/lib/clusterlink/labs"
HANDLE_KIND = "LabClusterHandle"
HANDLE_API = "lab.clusterlink.io/v1"
# What a handle may name (it becomes a path under the labs' root: no "..", no "/").
_LAB_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")  # as topology.Topology.name


class LabError(BadInput):
    """Bad input or a lab in the wrong state (nothing was changed); the message is for a
    user."""


def labs_root() -> Path:
    return Path(os.environ.get(ENV_LAB_DIR) or DEFAULT_LAB_DIR)


def state_dir(name: str) -> Path:
    return labs_root() / name


def plan_path(name: str) -> Path:
    return state_dir(name) / "lab.json"


def store_url(name: str) -> str:
    return f"sqlite://{state_dir(name)}/store.db"


def handle_path(lab: str, cluster: str) -> Path:
    return state_dir(lab) / "handles" / f"{cluster}.yaml"


def existing_labs() -> list[str]:
    root = labs_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "lab.json").exists())


def lab_uid(name: str) -> str:
    """The lab's own ID, made once when its state is first saved: lab clusters' IDs derive
    from it, so a lab of the same name built again is another set of clusters."""
    path = state_dir(name) / "uid"
    try:
        return str(uuid.UUID(path.read_text().strip()))
    except (FileNotFoundError, ValueError):
        uid = str(uuid.uuid4())
        path.write_text(uid + "\n")
        return uid


def cluster_id(uid: str, cluster: str) -> str:
    """A lab cluster's intrinsic ID (what a Kubernetes cluster's kube-system UID is)."""
    return str(uuid.uuid5(uuid.UUID(uid), cluster))


def save_plan(plan: LabPlan) -> None:
    d = state_dir(plan.name)
    (d / "logs").mkdir(parents=True, exist_ok=True)
    (d / "handles").mkdir(exist_ok=True)
    uid = lab_uid(plan.name)
    tmp = d / "lab.json.tmp"
    tmp.write_text(json.dumps(plan.model_dump(mode="json", by_alias=True), indent=1))
    tmp.replace(d / "lab.json")
    for cluster in plan.clusters:
        handle_path(plan.name, cluster.name).write_text(
            yaml.safe_dump(handle(plan, cluster, uid), sort_keys=False)
        )


def load_plan(name: str) -> LabPlan:
    path = plan_path(name)
    try:
        if not path.exists():
            raise LabError(f"no lab {name!r} (no {path})")
        return LabPlan.model_validate(read_json(path, "lab plan"))
    except ValidationError:
        raise LabError(
            f"lab {name!r}: {path} was written by another version; `kosmosctl lab down {name}` removes it"
        ) from None


def resolve_lab(name: str | None) -> str:
    """The lab a command means: the one named, or the only one there is."""
    if name:
        return name
    labs = existing_labs()
    if len(labs) == 1:
        return labs[0]
    if not labs:
        raise LabError(f"no lab is up (none in {labs_root()})")
    raise LabError(f"several labs are up ({', '.join(labs)}): name one")


def remove_state(name: str) -> None:
    shutil.rmtree(state_dir(name), ignore_errors=True)


def handle(plan: LabPlan, cluster: ClusterPlan, uid: str) -> dict[str, Any]:
    """The lab's stand-in for a member kubeconfig: what the member API would tell."""
    return {
        "apiVersion": HANDLE_API,
        "kind": HANDLE_KIND,
        "lab": plan.name,
        "cluster": cluster.name,
        "clusterID": cluster_id(uid, cluster.name),
        "stateDir": str(state_dir(plan.name)),
        "store": store_url(plan.name),
        "ipFamily": cluster.ip_family,
        "podCIDRs": cluster.pod_cidrs,
        "serviceCIDRs": cluster.service_cidrs,
        "nodes": [
            {
                "name": n.name,
                "netns": n.netns,
                "internalIP": n.ip,
                "internalIPv6": n.ip6,
                "podCIDRs": n.pod_cidrs,
                "gatewayCandidate": n.gateway_candidate,
            }
            for n in cluster.nodes
        ],
    }


def joined_as(lab: str, clusters: Iterable[Cluster]) -> dict[str, Cluster]:
    """Lab cluster name -> the Cluster it was joined as: the one whose `clusterID` is the
    lab cluster's (whatever handle file or copy of it the join was given)."""
    by_id = {c.spec.cluster_id: c for c in clusters if c.spec.cluster_id}
    plan = load_plan(lab)
    uid = lab_uid(lab)
    out = {}
    for c in plan.clusters:
        joined = by_id.get(cluster_id(uid, c.name))
        if joined is not None:
            out[c.name] = joined
    return out


def is_lab_handle(path: str | Path) -> bool:
    """True for a file that says it is a lab handle (`load_handle` then says what is wrong
    with it, if anything); False for anything else (e.g. a kubeconfig, or no file)."""
    if not Path(path).exists():
        return False
    data = read_yaml(path, "kubeconfig")  # InputError (exit 2): a file no reader should take
    return isinstance(data, dict) and data.get("kind") == HANDLE_KIND


def _is_dns1123(name: str) -> bool:
    try:
        validate_dns1123(name)
    except ValueError:
        return False
    return True


def load_handle(path: str | Path) -> dict[str, Any]:
    """Read a handle file; LabError if it is not one."""
    if not Path(path).exists():
        raise LabError(f"{path}: no such file")
    data = read_yaml(path, "lab handle")  # InputError (exit 2): a file no reader should take
    if not isinstance(data, dict) or data.get("kind") != HANDLE_KIND:
        raise LabError(f"{path}: not a lab cluster handle (kind {HANDLE_KIND})")
    lab, cluster, store = data.get("lab"), data.get("cluster"), data.get("store")
    if not isinstance(lab, str) or not _LAB_NAME.match(lab):
        raise LabError(f"{path}: lab: expected a lab name (1-12 lowercase letters and digits)")
    if not isinstance(cluster, str) or not _is_dns1123(cluster):
        raise LabError(f"{path}: cluster: expected a lab cluster name")
    if store is not None and not isinstance(store, str):
        raise LabError(f"{path}: store: expected a store URL")
    return data
