"""A lab's life: read its topology, bring it up (or find it up; stale state is cleared, a
failed build rolled back), take it down (even after a crash), report its status, and run
components in it. What `kosmosctl lab ...` calls; each takes a progress callback."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from clusterlink.api.cluster import Cluster
from clusterlink.api.clusternode import ClusterNode
from clusterlink.api.registry import format_validation_error
from clusterlink.inputs import InputError, read_yaml
from clusterlink.lab import build, supervisor
from clusterlink.lab.services import services_status
from clusterlink.lab.state import (
    LabError,
    handle_path,
    joined_as,
    load_plan,
    plan_path,
    remove_state,
    resolve_lab,
    save_plan,
    state_dir,
    store_url,
)
from clusterlink.lab.topology import LabPlan, Topology, plan_lab
from clusterlink.store.base import StoreError
from clusterlink.store.sqlite import SqliteStore

Progress = Callable[[str], None]


def _silent(_message: str) -> None:
    pass


def read_topology(path: Path) -> Topology:
    try:
        data = read_yaml(path, "topology")
    except InputError as exc:
        raise LabError(str(exc)) from None
    try:
        return Topology.model_validate(data)
    except ValidationError as exc:
        raise LabError(f"{path}: {format_validation_error(exc)}") from None


def plan_of(topology: Topology, source: str = "") -> LabPlan:
    """The lab plan of a topology (LabError naming `source` when it cannot be laid out)."""
    try:
        return plan_lab(topology)
    except ValueError as exc:
        raise LabError(f"{source}: {exc}" if source else str(exc)) from None


def start_supervisor(lab: str) -> None:
    d = state_dir(lab)
    if supervisor.supervisor_pid(d) is not None:
        return
    with open(d / "logs" / "supervisor.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "clusterlink.cli.components", "lab-supervisor", "--lab", lab],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ},
        )
    deadline = time.monotonic() + 30  # it imports its components' code first (a busy host)
    while supervisor.supervisor_pid(d) is None:
        if time.monotonic() > deadline:
            raise LabError(
                f"the lab supervisor did not start (see {d / 'logs' / 'supervisor.log'})"
            )
        time.sleep(0.05)


def lab_up(plan: LabPlan, quiet: bool = False, progress: Progress | None = None) -> float:
    """Build the lab (or find it already up); returns seconds spent. `quiet`: no progress."""
    say = _silent if quiet or progress is None else progress
    started = time.monotonic()
    present = build.lab_namespaces(plan.name)
    if plan_path(plan.name).exists() and not present:
        # State without a single namespace (a reboot, a crash before building): stale.
        say(f"lab {plan.name}: stale state without namespaces; starting afresh")
        lab_down(plan.name, quiet=True)
    if plan_path(plan.name).exists():
        if load_plan(plan.name) == plan and set(plan.namespaces()) <= set(present):
            start_supervisor(plan.name)
            say(f"lab {plan.name} is up already")
            return 0.0
        raise LabError(
            f"lab {plan.name} exists with another topology or half built "
            f"(state in {state_dir(plan.name)}): run `kosmosctl lab down {plan.name}` first"
        )
    if present:
        raise LabError(
            f"namespaces of lab {plan.name} exist without its state ({len(present)}, e.g. {present[0]}): "
            f"run `kosmosctl lab down {plan.name}` first"
        )
    save_plan(plan)  # first: `lab down` can always find what a crashed `up` left
    try:
        build.build(plan, progress=lambda m: say(f"  {m}"))
        start_supervisor(plan.name)
    except BaseException:
        lab_down(plan.name, quiet=True)
        raise
    return time.monotonic() - started


def lab_down(lab: str, quiet: bool = False) -> tuple[int, float]:
    """Remove a lab's processes, namespaces and state; (namespaces removed, seconds)."""
    started = time.monotonic()
    d = state_dir(lab)
    supervisor.stop_supervisor(d)
    namespaces = set(build.lab_namespaces(lab))
    with contextlib.suppress(LabError):
        namespaces |= set(build.lab_namespaces(lab)) & set(load_plan(lab).namespaces())
    build.kill_processes(sorted(namespaces))
    build.destroy(sorted(namespaces))
    remove_state(lab)
    return len(namespaces), time.monotonic() - started


def take_down(name: str | None) -> tuple[str, int, float]:
    """`lab down`: the lab named (or the only one); (its name, namespaces removed, seconds)."""
    lab = resolve_lab(name)
    if not lab.isalnum():
        raise LabError(f"{lab!r} is not a lab name")
    return (lab, *lab_down(lab))


def plan_file(path: Path) -> LabPlan:
    """`lab up --dry-run -f FILE`: the plan of the topology in `path` (LabError if none)."""
    return plan_of(read_topology(path), str(path))


def bring_up(path: Path, progress: Progress) -> tuple[LabPlan, float]:
    """`lab up -f FILE`: the plan of the topology in `path`, up; (plan, seconds spent)."""
    plan = plan_file(path)
    return plan, lab_up(plan, progress=progress)


def roles(lab: str) -> dict[tuple[str, str], list[str]]:
    """(lab cluster, node) -> roles, through the Cluster that names the lab cluster's handle."""
    path = state_dir(lab) / "store.db"
    if not path.exists():
        return {}
    try:
        store = SqliteStore(path)
        try:
            names = {
                c.name: lab_name for lab_name, c in joined_as(lab, store.list(Cluster)).items()
            }
            return {
                (names[cn.spec.cluster_name], cn.spec.node_name): cn.spec.roles
                for cn in store.list(ClusterNode)
                if cn.spec.cluster_name in names
            }
        finally:
            store.close()
    except StoreError:
        return {}


def status_of(name: str | None) -> dict[str, Any]:
    """The lab named (or the only one): clusters, nodes (with roles), pods, as data."""
    lab = resolve_lab(name)
    plan = load_plan(lab)
    node_roles = roles(lab)
    return {
        "name": plan.name,
        "stateDir": str(state_dir(lab)),
        "store": store_url(lab),
        "clusters": [
            {
                "name": c.name,
                "handle": str(handle_path(lab, c.name)),
                "podCIDRs": c.pod_cidrs,
                "serviceCIDRs": c.service_cidrs,
                "nodes": [
                    {
                        "name": n.name,
                        "netns": n.netns,
                        "ip": n.ip,
                        "ip6": n.ip6,
                        "gatewayCandidate": n.gateway_candidate,
                        "roles": node_roles.get((c.name, n.name), []),
                    }
                    for n in c.nodes
                ],
                "pods": [
                    {"name": p.name, "node": p.node, "netns": p.netns, "ip": p.ip, "ip6": p.ip6}
                    for p in c.pods
                ],
            }
            for c in plan.clusters
        ],
        "services": services_status(plan),
    }


def target_netns(plan: LabPlan, target: str) -> str:
    parts = target.split("/")
    if len(parts) not in (2, 3):
        raise LabError(f"{target!r}: expected CLUSTER/NODE or CLUSTER/NODE/POD")
    try:
        cluster = plan.cluster(parts[0])
    except KeyError:
        raise LabError(f"no cluster {parts[0]!r} in lab {plan.name}") from None
    node = next((n for n in cluster.nodes if n.name == parts[1]), None)
    if node is None:
        raise LabError(f"no node {parts[1]!r} in cluster {cluster.name}")
    if len(parts) == 2:
        return node.netns
    pod = next(
        (
            p
            for p in cluster.pods
            if p.node == node.name and p.name in (parts[2], f"{node.name}-{parts[2]}")
        ),
        None,
    )
    if pod is None:
        raise LabError(f"no pod {parts[2]!r} on {cluster.name}/{node.name}")
    return pod.netns


def netns_of(lab: str | None, target: str) -> str:
    """The namespace of CLUSTER/NODE[/POD] in the lab named (or the only one)."""
    return target_netns(load_plan(resolve_lab(lab)), target)


def run_component(lab: str | None, target: str, name: str, command: list[str]) -> tuple[str, Path]:
    """Have the supervisor keep `command` running in a node's or pod's namespace; (the
    namespace, the component's log)."""
    lab = resolve_lab(lab)
    ns = target_netns(load_plan(lab), target)
    supervisor.register(state_dir(lab), name, ns, command)
    start_supervisor(lab)
    return ns, state_dir(lab) / "logs" / f"{name}.log"


def remove_components(lab: str | None, names: list[str]) -> tuple[list[str], list[str]]:
    """Stop supervised components and forget them; (removed, not there)."""
    gone = supervisor.unregister(state_dir(resolve_lab(lab)), names)
    return gone, sorted(set(names) - set(gone))


def components(lab: str | None) -> dict[str, dict[str, Any]]:
    """Supervised components: what was asked (netns, argv) and their state, pid, restarts."""
    rows: dict[str, dict[str, Any]] = processes(lab)["components"]
    return rows


def processes(lab: str | None) -> dict[str, Any]:
    """`lab ps`: the supervisor (`running`, or `dead` with the pid it had) and each component.
    Without a live supervisor its last report is stale: a component's state is then what
    /proc says, `unsupervised` (its process runs, nobody restarts it) or `dead`."""
    d = state_dir(resolve_lab(lab))
    wanted = supervisor.read_components(d)
    pid = supervisor.supervisor_pid(d)
    if pid is not None:
        status = supervisor.read_status(d)
        rows = {
            name: {**spec, **status.get(name, {"state": "pending"})}
            for name, spec in wanted.items()
        }
        return {"supervisor": {"state": "running", "pid": pid}, "components": rows}
    running = supervisor.running_components(d)
    last = supervisor.read_status(d)
    rows = {}
    for name, spec in wanted.items():
        pids = running.get(name, [])
        rows[name] = {
            **spec,
            "state": "unsupervised" if pids else "dead",
            "pid": pids[0] if pids else None,
            "restarts": last.get(name, {}).get("restarts", 0),
        }
    dead = {"state": "dead", "pid": supervisor.recorded_supervisor(d)}
    return {"supervisor": dead, "components": rows}
