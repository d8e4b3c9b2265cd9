"""`kosmosctl lab`: emulated clusters made of network namespaces on this host. Flags, one call
into `clusterlink.lab.lifecycle` (or `clusterlink.demo`), rendering."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from clusterlink.cli.common import (
    EXIT_FAILURE,
    OutputFormat,
    emit,
    err_console,
    fail,
    format_table,
    user_errors,
)
from clusterlink.lab import lifecycle
from clusterlink.lab.state import handle_path, state_dir

app = typer.Typer(
    help="Emulated clusters made of network namespaces (the embedded default).",
    no_args_is_help=True,
)

LabOption = Annotated[
    str | None, typer.Option("--lab", help="Lab name (default: the only lab that is up).")
]
OutputOption = Annotated[OutputFormat, typer.Option("-o", "--output", help="table or json")]


def note(message: str) -> None:
    err_console.print(message, markup=False, highlight=False)


@app.command()
def up(
    filename: Annotated[
        Path, typer.Option("-f", "--filename", help="Topology file (see docs/lab.md).")
    ],
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Validate the topology and print the lab's plan only."),
    ] = False,
    output: Annotated[
        OutputFormat, typer.Option("-o", "--output", help="With --dry-run: yaml or json.")
    ] = OutputFormat.yaml,
) -> None:
    """Build a lab: clusters of node and pod namespaces joined by a fabric router."""
    with user_errors():
        if dry_run:
            fmt = OutputFormat.json if output == OutputFormat.json else OutputFormat.yaml
            emit(lifecycle.plan_file(filename).model_dump(mode="json", by_alias=True), fmt)
            return
        plan, spent = lifecycle.bring_up(filename, note)
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
    with user_errors():
        lab, count, spent = lifecycle.take_down(name)
        typer.echo(f"lab {lab}: {count} namespaces removed in {spent:.1f} s")


def _node_rows(data: dict[str, Any]) -> list[list[str]]:
    return [
        [c["name"], n["name"], n["netns"], n["ip"] or "-", n["ip6"] or "-",
         "yes" if n["gatewayCandidate"] else "no", ",".join(n["roles"]) or "-"]
        for c in data["clusters"]
        for n in c["nodes"]
    ]  # fmt: skip


@app.command()
def status(
    name: Annotated[str | None, typer.Argument(help="Lab name (default: the only one).")] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Clusters, nodes (namespace, underlay IPs, roles) and pods (namespace, IPs) of a lab."""
    with user_errors():
        data = lifecycle.status_of(name)
        if output in (OutputFormat.json, OutputFormat.yaml):
            emit(data, output)
            return
        typer.echo(f"lab {data['name']} (state {data['stateDir']})")
        headers = ["CLUSTER", "NODE", "NETNS", "IP", "IP6", "CANDIDATE", "ROLES"]
        typer.echo(format_table(headers, _node_rows(data)))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec(
    target: Annotated[str, typer.Argument(help="CLUSTER/NODE or CLUSTER/NODE/POD")],
    command: Annotated[list[str], typer.Argument(help="-- CMD [ARGS...]")],
    lab: LabOption = None,
) -> None:
    """Run a command inside a node's or a pod's network namespace."""
    with user_errors():
        ns = lifecycle.netns_of(lab, target)
    os.execvp("nsenter", ["nsenter", f"--net=/run/netns/{ns}", "--", *command])


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="CLUSTER/NODE (or CLUSTER/NODE/POD) to run in")],
    name: Annotated[str, typer.Option("--name", help="Component name (unique in the lab).")],
    command: Annotated[list[str], typer.Argument(help="-- CMD [ARGS...]")],
    lab: LabOption = None,
) -> None:
    """Have the lab supervisor keep a process running in a namespace (restarted if it dies)."""
    with user_errors():
        ns, log = lifecycle.run_component(lab, target, name, command)
        typer.echo(f"{name}: supervised in {ns} (log: {log})")


@app.command()
def rm(
    names: Annotated[list[str], typer.Argument(help="Component names.")],
    lab: LabOption = None,
) -> None:
    """Stop supervised components and forget them."""
    with user_errors():
        gone, missing = lifecycle.remove_components(lab, names)
        for n in gone:
            typer.echo(f"{n}: removed")
        if missing:
            fail(f"no component {', '.join(missing)}", EXIT_FAILURE)


@app.command()
def ps(lab: LabOption = None, output: OutputOption = OutputFormat.table) -> None:
    """Supervised components: state, pid, restarts; exit 1 when the supervisor is dead."""
    with user_errors():
        data = lifecycle.processes(lab)
        if output == OutputFormat.json:
            emit(data, output)
        else:
            table = [
                [n, r.get("state", "?"), str(r.get("pid") or "-"), str(r.get("restarts", 0)),
                 r.get("netns") or "-"]
                for n, r in sorted(data["components"].items())
            ]  # fmt: skip
            typer.echo(format_table(["NAME", "STATE", "PID", "RESTARTS", "NETNS"], table))
        sup = data["supervisor"]
        if sup["state"] != "running":
            was = f" (pid {sup['pid']})" if sup["pid"] else ""
            fail(
                f"the lab supervisor{was} is dead: nobody restarts components; "
                "`kosmosctl lab up -f FILE` starts it again and adopts what still runs",
                EXIT_FAILURE,
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
    from clusterlink.cli.doctor import probe_bar, render_dr
    from clusterlink.cli.federation import progress
    from clusterlink.demo import demo as run_demo

    with user_errors():
        outcome = run_demo(filename, wait_time, typer.echo, progress, probe_bar(OutputFormat.table))
        render_dr(outcome.dr)
        if not outcome.ok:
            raise typer.Exit(EXIT_FAILURE)
