"""`kosmosctl lab`: emulated clusters made of network namespaces on this host."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError

from clusterlink.api.cluster import Cluster
from clusterlink.api.clusternode import ClusterNode
from clusterlink.api.registry import format_validation_error
from clusterlink.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    OutputFormat,
    emit,
    err_console,
    fail,
    format_table,
)
from clusterlink.lab import build, supervisor
from clusterlink.lab.services import services_status
from clusterlink.lab.state import (
    LabError,
    handle_path,
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

app = typer.Typer(
    help="Emulated clusters made of network namespaces (the embedded default).",
    no_args_is_help=True,
)

LabOption = Annotated[
    str | None, typer.Option("--lab", help="Lab name (default: the only lab that is up).")
]


@contextlib.contextmanager
def lab_errors() -> Any:
    try:
        yield
    except LabError as exc:
        fail(str(exc), EXIT_BAD_INPUT)


def read_topology(path: Path) -> Topology:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise LabError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise LabError(f"{path}: malformed YAML: {str(exc).splitlines()[0]}") from None
    try:
        return Topology.model_validate(data)
    except ValidationError as exc:
        raise LabError(f"{path}: {format_validation_error(exc)}") from None


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
    deadline = time.monotonic() + 10
    while supervisor.supervisor_pid(d) is None:
        if time.monotonic() > deadline:
            raise LabError(
                f"the lab supervisor did not start (see {d / 'logs' / 'supervisor.log'})"
            )
        time.sleep(0.05)


def lab_up(plan: LabPlan, quiet: bool = False) -> float:
    """Build the lab (or find it already up); returns seconds spent."""
    started = time.monotonic()
    present = build.lab_namespaces(plan.name)
    if plan_path(plan.name).exists() and not present:
        # State without a single namespace (a reboot, a crash before building): stale.
        if not quiet:
            err_console.print(f"lab {plan.name}: stale state without namespaces; starting afresh")
        lab_down(plan.name, quiet=True)
    if plan_path(plan.name).exists():
        if load_plan(plan.name) == plan and set(plan.namespaces()) <= set(present):
            start_supervisor(plan.name)
            if not quiet:
                err_console.print(f"lab {plan.name} is up already")
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
        build.build(
            plan, progress=(lambda m: None) if quiet else (lambda m: err_console.print(f"  {m}"))
        )
        start_supervisor(plan.name)
    except BaseException:
        lab_down(plan.name, quiet=True)
        raise
    return time.monotonic() - started


def lab_down(lab: str, quiet: bool = False) -> tuple[int, float]:
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


@app.command()
def up(
    filename: Annotated[
        Path, typer.Option("-f", "--filename", help="Topology file (see docs/lab.md).")
    ],
) -> None:
    """Build a lab: clusters of node and pod namespaces joined by a fabric router."""
    with lab_errors():
        topology = read_topology(filename)
        try:
            plan = plan_lab(topology)
        except ValueError as exc:
            raise LabError(f"{filename}: {exc}") from None
        spent = lab_up(plan)
        nodes = sum(len(c.nodes) for c in plan.clusters)
        pods = sum(len(c.pods) for c in plan.clusters)
        typer.echo(
            f"lab {plan.name}: {len(plan.clusters)} clusters, {nodes} nodes, {pods} pods up in {spent:.1f} s "
            f"(state: {state_dir(plan.name)})"
        )
        for c in plan.clusters:
            typer.echo(f"  {c.name}: handle {handle_path(plan.name, c.name)}")


@app.command()
def down(
    name: Annotated[str | None, typer.Argument(help="Lab name (default: the only one).")] = None,
) -> None:
    """Remove a lab: its processes, namespaces and state, even after a crash."""
    with lab_errors():
        if name is None:
            name = resolve_lab(None)
        if not name.isalnum():
            raise LabError(f"{name!r} is not a lab name")
        count, spent = lab_down(name)
        typer.echo(f"lab {name}: {count} namespaces removed in {spent:.1f} s")


def _roles(lab: str) -> dict[tuple[str, str], list[str]]:
    """(lab cluster, node) -> roles, through the Cluster that names the lab cluster's handle."""
    path = state_dir(lab) / "store.db"
    if not path.exists():
        return {}
    try:
        store = SqliteStore(path)
        try:
            joined = {c.spec.kubeconfig: c.name for c in store.list(Cluster)}
            plan = load_plan(lab)
            names = {
                joined.get(str(handle_path(lab, c.name).resolve())): c.name for c in plan.clusters
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


def status_of(lab: str) -> dict[str, Any]:
    plan = load_plan(lab)
    roles = _roles(lab)
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
                        "roles": roles.get((c.name, n.name), []),
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


@app.command()
def status(
    name: Annotated[str | None, typer.Argument(help="Lab name (default: the only one).")] = None,
    output: Annotated[
        OutputFormat, typer.Option("-o", "--output", help="table or json")
    ] = OutputFormat.table,
) -> None:
    """Clusters, nodes (namespace, underlay IPs, roles) and pods (namespace, IPs) of a lab."""
    with lab_errors():
        data = status_of(resolve_lab(name))
        if output in (OutputFormat.json, OutputFormat.yaml):
            emit(data, output)
            return
        rows = []
        for c in data["clusters"]:
            for n in c["nodes"]:
                rows.append(
                    [
                        c["name"],
                        n["name"],
                        n["netns"],
                        n["ip"] or "-",
                        n["ip6"] or "-",
                        "yes" if n["gatewayCandidate"] else "no",
                        ",".join(n["roles"]) or "-",
                    ]
                )
        typer.echo(f"lab {data['name']} (state {data['stateDir']})")
        typer.echo(
            format_table(["CLUSTER", "NODE", "NETNS", "IP", "IP6", "CANDIDATE", "ROLES"], rows)
        )


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


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec(
    target: Annotated[str, typer.Argument(help="CLUSTER/NODE or CLUSTER/NODE/POD")],
    command: Annotated[list[str], typer.Argument(help="-- CMD [ARGS...]")],
    lab: LabOption = None,
) -> None:
    """Run a command inside a node's or a pod's network namespace."""
    with lab_errors():
        ns = target_netns(load_plan(resolve_lab(lab)), target)
    os.execvp("nsenter", ["nsenter", f"--net=/run/netns/{ns}", "--", *command])


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="CLUSTER/NODE (or CLUSTER/NODE/POD) to run in")],
    name: Annotated[str, typer.Option("--name", help="Component name (unique in the lab).")],
    command: Annotated[list[str], typer.Argument(help="-- CMD [ARGS...]")],
    lab: LabOption = None,
) -> None:
    """Have the lab supervisor keep a process running in a namespace (restarted if it dies)."""
    with lab_errors():
        lab = resolve_lab(lab)
        ns = target_netns(load_plan(lab), target)
        supervisor.register(state_dir(lab), name, ns, command)
        start_supervisor(lab)
        typer.echo(f"{name}: supervised in {ns} (log: {state_dir(lab) / 'logs' / (name + '.log')})")


@app.command()
def rm(
    names: Annotated[list[str], typer.Argument(help="Component names.")],
    lab: LabOption = None,
) -> None:
    """Stop supervised components and forget them."""
    with lab_errors():
        lab = resolve_lab(lab)
        gone = supervisor.unregister(state_dir(lab), names)
        missing = sorted(set(names) - set(gone))
        for n in gone:
            typer.echo(f"{n}: removed")
        if missing:
            fail(f"no component {', '.join(missing)}", EXIT_FAILURE)


@app.command()
def ps(
    lab: LabOption = None,
    output: Annotated[
        OutputFormat, typer.Option("-o", "--output", help="table or json")
    ] = OutputFormat.table,
) -> None:
    """Supervised components: state, pid, restarts."""
    with lab_errors():
        lab = resolve_lab(lab)
        d = state_dir(lab)
        wanted = supervisor.read_components(d)
        status = supervisor.read_status(d)
        rows = {
            name: {**spec, **status.get(name, {"state": "pending"})}
            for name, spec in wanted.items()
        }
        if output == OutputFormat.json:
            emit({"components": rows}, output)
            return
        typer.echo(
            format_table(
                ["NAME", "STATE", "PID", "RESTARTS", "NETNS"],
                [
                    [
                        n,
                        r.get("state", "?"),
                        str(r.get("pid") or "-"),
                        str(r.get("restarts", 0)),
                        r.get("netns") or "-",
                    ]
                    for n, r in sorted(rows.items())
                ],
            )
        )


@app.command()
def demo(
    filename: Annotated[
        Path | None, typer.Option("-f", "--filename", help="Topology (default: the built-in demo).")
    ] = None,
    wait_time: Annotated[
        float, typer.Option("--wait-time", help="Seconds to wait for the federation to connect.")
    ] = 180.0,
) -> None:
    """Build a lab, install clusterlink, join every cluster, and prove pods reach each other."""
    from clusterlink.cli.doctor import dr
    from clusterlink.cli.federation import progress, wait_connected
    from clusterlink.lab import deploy
    from clusterlink.lab.demo import DEFAULT_TOPOLOGY
    from clusterlink.store.url import open_store

    with lab_errors():
        topology = (
            read_topology(filename) if filename else Topology.model_validate(DEFAULT_TOPOLOGY)
        )
        try:
            plan = plan_lab(topology)
        except ValueError as exc:
            raise LabError(str(exc)) from None
        typer.echo(f"1/4 lab {plan.name}: building {len(plan.clusters)} clusters")
        lab_up(plan)
        url = store_url(plan.name)
        st = open_store(url)
        names = []
        for i, c in enumerate(plan.clusters):
            handle = str(handle_path(plan.name, c.name))
            options = deploy.topology_options(c)
            if i == 0:
                typer.echo(f"2/4 installing clusterlink; {c.name} joins as the control cluster")
                deploy.install(st, url, handle, "kosmos-control-cluster", options, progress)
                names.append("kosmos-control-cluster")
            else:
                typer.echo(f"    joining {c.name} ({options.network_type}, {options.ip_family})")
                deploy.join(st, url, handle, c.name, options, progress)
                names.append(c.name)
        typer.echo("3/4 waiting until every node is planned, applied and synced")
        took = wait_connected(st, names, wait_time)
        typer.echo(f"    connected in {took:.1f} s")
        first = handle_path(plan.name, plan.clusters[0].name)
        typer.echo(
            f"next: kosmosctl get clusters --kubeconfig {first} | kosmosctl lab status | kosmosctl lab down {plan.name}"
        )
        typer.echo("4/4 kosmosctl dr: every pod against every pod, each family (ICMP)")
        report = state_dir(plan.name) / "dr-report.html"
        typer.echo(f"    (HTML report: {report})")
        handles = [str(handle_path(plan.name, c.name)) for c in plan.clusters]
        dr(src_kubeconfig=handles, dst_kubeconfig=None, host_network=False, image_repository=None,
           port=8889, protocol="icmp", concurrency=256, timeout=2.0, retries=1, resume=None,
           output=OutputFormat.table, report=report)  # fmt: skip
