"""`kosmosctl dr` (alias `check`) and `kosmosctl analysis cluster`: flags, one call into
`clusterlink.doctor.run`, rendering."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from clusterlink.cli.common import (
    EXIT_FAILURE,
    OutputFormat,
    StoreOption,
    emit,
    err_console,
    format_table,
    user_errors,
)
from clusterlink.cli.federation import ContextOption, KubeconfigOption
from clusterlink.doctor import run
from clusterlink.observe.trace import command as trace_command


def note(message: str) -> None:
    err_console.print(message, markup=False, highlight=False)


def probe_bar(output: OutputFormat) -> run.ProbeBar:
    """A progress bar on stderr while pairs are probed (none with -o json)."""

    @contextmanager
    def bar(total: int) -> Iterator[Callable[[int], None]]:
        with Progress(TextColumn("probing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, transient=True, disable=output == OutputFormat.json) as p:  # fmt: skip
            task = p.add_task("pairs", total=total)
            yield lambda n: p.advance(task, n)

    return bar


def dr(
    src_kubeconfig: Annotated[
        list[str],
        typer.Option(
            "--src-kubeconfig",
            help="Source cluster(s): kubeconfigs or lab handles; repeat for more.",
        ),
    ],
    dst_kubeconfig: Annotated[
        list[str] | None,
        typer.Option(
            "--dst-kubeconfig", help="Destination cluster(s); default: the sources themselves."
        ),
    ] = None,
    host_network: Annotated[
        bool,
        typer.Option(
            "--host-network", help="Probe node IPs from the nodes instead of pod IPs from pods."
        ),
    ] = False,
    image_repository: Annotated[
        str | None,
        typer.Option(
            "-r",
            "--image-repository",
            help="Kubernetes: registry of the floater image (REPO/clusterlink:VERSION).",
        ),
    ] = None,
    image_name: Annotated[
        str | None, typer.Option("--image", help="Kubernetes: the exact floater image.")
    ] = None,
    floater_wait: Annotated[
        float,
        typer.Option("--floater-wait", min=1, help="Kubernetes: seconds to wait for floaters."),
    ] = 120.0,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Floater port.")] = 8889,
    protocol: Annotated[str, typer.Option("--protocol", help="icmp, tcp or all.")] = "icmp",
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", min=1, max=4096, help="Probes in flight per source floater."),
    ] = 256,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.05, max=60, help="Seconds per probe.")
    ] = 2.0,
    retries: Annotated[
        int, typer.Option("--retries", min=0, max=5, help="Tries again after a timeout.")
    ] = 1,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Re-test only the failures the run recorded in FILE (all pairs if FILE does "
            "not exist; refused if that run passed) and record this run there.",
        ),
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("-o", "--output", help="table or json")
    ] = OutputFormat.table,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write a self-contained HTML report.")
    ] = None,
    context: Annotated[
        str | None,
        typer.Option("--context", help="Kubernetes: the context to use in every kubeconfig."),
    ] = None,
) -> None:
    """Check that every source reaches every destination (pod or host network), per pair."""
    with user_errors():
        request = run.DrRequest(
            src_kubeconfig, dst_kubeconfig or [], host_network=host_network, image=image_name,
            image_repository=image_repository, floater_wait=floater_wait, port=port,
            protocol=protocol, concurrency=concurrency, timeout=timeout, retries=retries,
            resume=resume, report=report, context=context,
        )  # fmt: skip
        outcome = run.dr(request, note, probe_bar(output))
        if output == OutputFormat.json:
            results = [
                r.to_dict() | ({} if r.ok else {"trace": trace_command(r.pair.src, r.pair.target)})
                for r in outcome.results
            ]
            emit_dr_json(results, outcome.summary)
        else:
            render_dr(outcome)
        if not outcome.ok:
            raise typer.Exit(EXIT_FAILURE)


def emit_dr_json(results: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """`dr -o json`: one line per pair (a 10,000-pair matrix is 10,000 lines, not 90,000),
    written by json's C encoder - its indenting one is pure Python, 5x slower here."""
    lines = ",\n".join("    " + json.dumps(r) for r in results)
    sys.stdout.write(
        '{\n  "results": [\n' + lines + ("\n" if results else "")
        + '  ],\n  "summary": ' + json.dumps(summary) + "\n}\n"
    )  # fmt: skip


def render_dr(outcome: run.DrOutcome) -> None:
    summary, failed = outcome.summary, outcome.failed
    ordered = failed + [r for r in outcome.results if r.ok]
    rows = [
        [str(i), r.pair.src, r.pair.dst,
         f"{r.pair.target} (global of {r.pair.real})" if r.pair.real else r.pair.target,
         r.pair.protocol,
         "SUCCEEDED" if r.ok else f"FAILED ({r.reason})"]
        for i, r in enumerate(ordered, 1)
    ]  # fmt: skip
    headers = ["S/N", "SRC_NODE_NAME", "DST_NODE_NAME", "TARGET_IP", "PROTOCOL", "RESULT"]
    typer.echo(format_table(headers, rows))
    resume = outcome.resume_path
    typer.echo(
        f"{summary['passed']}/{summary['total']} pairs passed, {summary['failed']} failed in {summary['seconds']:.1f} s"
        + (f"; failures saved to {resume} (--resume {resume} re-tests them)" if failed else "")
    )
    for r in failed:
        typer.echo(
            f"why {r.pair.src} -> {r.pair.target}: {trace_command(r.pair.src, r.pair.target)}"
        )
    for node in summary["nodesWithoutFloater"]:
        typer.echo(f"note: {node} has no floater (no pod to place one in, or not Ready)")


analysis_app = typer.Typer(
    help="Compare NodeConfigs with the kernel state of each node.", no_args_is_help=True
)


@analysis_app.command("cluster")
def analysis_cluster(
    name: Annotated[str, typer.Option("--name", help="The Cluster to analyse.")],
    kubeconfig: KubeconfigOption = None,
    store: StoreOption = None,
    output: Annotated[
        OutputFormat, typer.Option("-o", "--output", help="table or json")
    ] = OutputFormat.table,
    context: ContextOption = None,
) -> None:
    """Per node: the NodeConfig against what the kernel holds - in sync, or the differences."""
    with user_errors():
        nodes = run.analysis(name, kubeconfig, store, context)
        if output == OutputFormat.json:
            emit({"cluster": name, "nodes": {
                n: {"inSync": not d, "differences": [{"type": t, "detail": x} for t, x in d]}
                for n, d in nodes.items()
            }}, output)  # fmt: skip
        else:
            rows = []
            for n, diffs in nodes.items():
                rows += [[name, n, "all", "in sync"]] if not diffs else []
                rows += [[name, n, t, x] for t, x in diffs]
            headers = ["CLUSTER_NAME", "CLUSTER_NODE_NAME", "PARAMETER_TYPE", "ANALYZE_RESULT"]
            typer.echo(format_table(headers, rows))
        if any(nodes.values()):
            raise typer.Exit(EXIT_FAILURE)
