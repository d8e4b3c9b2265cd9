"""`kosmosctl dr` and `kosmosctl analysis cluster`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from clusterlink import __version__
from clusterlink.agent.firewall import FirewallError, IptablesFirewall
from clusterlink.agent.inspect import drift
from clusterlink.agent.kernel import KernelError
from clusterlink.agent.linux import LinuxKernel
from clusterlink.api.cluster import Cluster
from clusterlink.api.clusternode import cluster_node_name
from clusterlink.api.nodeconfig import NodeConfig
from clusterlink.cli.common import (
    EXIT_FAILURE,
    OutputFormat,
    StoreOption,
    emit,
    err_console,
    fail,
    format_table,
    user_errors,
)
from clusterlink.cli.federation import ContextOption, KubeconfigOption, control_store
from clusterlink.doctor import dr as doctor
from clusterlink.kube import DeployError
from clusterlink.kube.manifests import DEFAULT_IMAGE
from clusterlink.kube.target import Target
from clusterlink.lab.state import LabError, is_lab_handle, load_handle, load_plan
from clusterlink.store.base import NotFound

if TYPE_CHECKING:
    from clusterlink.doctor.kube import KubeCluster


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
            help="Re-test only the failures saved in FILE (and save the new ones there).",
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
        if protocol not in ("icmp", "tcp", "all"):
            fail(f"--protocol {protocol!r}: icmp, tcp or all")
        protocols = ["icmp", "tcp"] if protocol == "all" else [protocol]
        sources, destinations = src_kubeconfig, dst_kubeconfig or src_kubeconfig
        on_lab = {is_lab_handle(h) for h in [*sources, *destinations]}
        if len(on_lab) > 1:
            fail("--src/--dst-kubeconfig: all lab handles or all kubeconfigs, not a mix")
        started = time.monotonic()
        if on_lab == {True}:
            try:
                srcs, missing = _places(sources, host_network)
                dsts, dst_missing = _places(destinations, host_network)
            except LabError as exc:
                fail(str(exc))
            places = {p.label: p for p in srcs + dsts}
            with doctor.floaters(port) as fl:
                for place in places.values():
                    fl.start(place)
                up = fl.ready(timeout=15 + 0.2 * len(places))  # many starting at once share the CPU
                for label in sorted(set(places) - up):
                    err_console.print(
                        f"warning: floater on {label} did not come up; its pairs are reported as such"
                    )
                pairs = _pairs(srcs, dsts, protocols, resume)
                results = _probe(fl, pairs, up, timeout, concurrency, port, retries, output)
        else:
            from clusterlink.doctor.kube import KubeFloaters

            image = image_name or (
                f"{image_repository.rstrip('/')}/clusterlink:{__version__}"
                if image_repository
                else DEFAULT_IMAGE
            )
            kube_clusters = {
                k: _kube_cluster(k, context) for k in dict.fromkeys([*sources, *destinations])
            }
            kf = KubeFloaters(list(kube_clusters.values()), host_network, image, port)
            try:
                err_console.print(f"placing floater DaemonSets ({image}) ...")
                kf.deploy()
                found, absent = kf.places(floater_wait, lambda note: err_console.print(note))
                names = {kube_clusters[k].name for k in sources}
                dst_names = {kube_clusters[k].name for k in destinations}
                srcs = [p for p in found if p.cluster in names]
                dsts = [p for p in found if p.cluster in dst_names]
                missing = [a for a in absent if a.split("/")[0] in names]
                dst_missing = [a for a in absent if a.split("/")[0] in dst_names]
                pairs = _pairs(srcs, dsts, protocols, resume)
                up = {p.label for p in found}
                results = _probe(kf, pairs, up, timeout, concurrency, port, retries, output)
            except DeployError as exc:
                fail(str(exc), EXIT_FAILURE)
            finally:
                for problem in kf.cleanup():
                    err_console.print(f"warning: floaters not removed: {problem}")
        seconds = time.monotonic() - started
        summary = doctor.summary(results, seconds) | {
            "nodesWithoutFloater": sorted(set(missing) | set(dst_missing))
        }
        failed = [r for r in results if not r.ok]
        resume_path = resume or Path("dr-resume.json")
        if failed or resume is not None:
            doctor.save_resume(resume_path, results)
        if report is not None:
            report.write_text(doctor.report_html(results, "clusterlink dr"))
        if output == OutputFormat.json:
            emit({"results": [r.to_dict() for r in results], "summary": summary}, output)
        else:
            ordered = failed + [r for r in results if r.ok]
            rows = [
                [
                    str(i),
                    r.pair.src,
                    r.pair.dst,
                    r.pair.target,
                    r.pair.protocol,
                    "SUCCEEDED" if r.ok else f"FAILED ({r.reason})",
                ]
                for i, r in enumerate(ordered, 1)
            ]
            typer.echo(
                format_table(
                    ["S/N", "SRC_NODE_NAME", "DST_NODE_NAME", "TARGET_IP", "PROTOCOL", "RESULT"],
                    rows,
                )
            )
            typer.echo(
                f"{summary['passed']}/{summary['total']} pairs passed, {summary['failed']} failed in {seconds:.1f} s"
                + (
                    f"; failures saved to {resume_path} (--resume {resume_path} re-tests them)"
                    if failed
                    else ""
                )
            )
            for node in summary["nodesWithoutFloater"]:
                typer.echo(f"note: {node} has no floater (no pod to place one in, or not Ready)")
        if failed or summary["nodesWithoutFloater"]:
            raise typer.Exit(EXIT_FAILURE)


def _kube_cluster(kubeconfig: str, context: str | None) -> KubeCluster:
    from clusterlink.doctor.kube import KubeCluster
    from clusterlink.kube.api import KubeApi

    api = KubeApi(Target(kubeconfig, context), field_manager="kosmosctl-dr")
    return KubeCluster(api.context or Path(kubeconfig).name, api)


def _pairs(
    srcs: list[doctor.Place], dsts: list[doctor.Place], protocols: list[str], resume: Path | None
) -> list[doctor.Pair]:
    pairs = doctor.matrix(srcs, dsts, protocols)
    if resume is not None and resume.exists():
        wanted = doctor.load_resume(resume)
        pairs = [p for p in pairs if p.key() in wanted]
        err_console.print(f"resuming: {len(pairs)} pairs that failed last time")
    return pairs


def _probe(
    caller: doctor.FloaterCaller,
    pairs: list[doctor.Pair],
    up: set[str],
    timeout: float,
    concurrency: int,
    port: int,
    retries: int,
    output: OutputFormat,
) -> list[doctor.Result]:
    with Progress(TextColumn("probing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=output == OutputFormat.json) as bar:  # fmt: skip
        task = bar.add_task("pairs", total=len(pairs))
        return asyncio.run(
            doctor.probe_all(
                caller,
                pairs,
                up,
                timeout=timeout,
                concurrency=concurrency,
                port=port,
                retries=retries,
                done=lambda n: bar.advance(task, n),
            )
        )


def _places(handles: list[str], host_network: bool) -> tuple[list[doctor.Place], list[str]]:
    out: list[doctor.Place] = []
    missing: list[str] = []
    for h in handles:
        p, m = doctor.places(h, host_network)
        out += p
        missing += m
    return out, missing


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
        st, _ = control_store(kubeconfig, store, context)
        try:
            cluster = st.get(Cluster, name)
            data = load_handle(cluster.spec.kubeconfig or "")
        except NotFound:
            fail(f"no Cluster {name}", EXIT_FAILURE)
        except LabError as exc:
            fail(
                f"Cluster {name} is not a lab cluster: analysis reads each node's kernel directly. "
                "On Kubernetes each agent compares and repairs its node itself and reports it in "
                "its NodeConfig's status (`kosmosctl get nodeconfigs -o wide`); `kosmosctl dr` "
                f"checks the datapath ({exc})"
            )
        plan = load_plan(data["lab"]).cluster(data["cluster"])
        nodes: dict[str, list[tuple[str, str]]] = {}
        for node in plan.nodes:
            cn = cluster_node_name(name, node.name)
            try:
                spec = st.get(NodeConfig, cn).spec
            except NotFound:
                nodes[cn] = [("nodeconfig", "no NodeConfig")]
                continue
            try:
                kernel = LinuxKernel(node.netns)
            except KernelError as exc:
                nodes[cn] = [("node", str(exc))]
                continue
            try:
                nodes[cn] = drift(kernel, IptablesFirewall(node.netns), spec)
            except (KernelError, FirewallError, OSError) as exc:
                nodes[cn] = [("node", f"cannot read its kernel state: {exc}")]
            finally:
                kernel.close()
        if output == OutputFormat.json:
            emit(
                {
                    "cluster": name,
                    "nodes": {
                        n: {
                            "inSync": not d,
                            "differences": [{"type": t, "detail": x} for t, x in d],
                        }
                        for n, d in nodes.items()
                    },
                },
                output,
            )
        else:
            rows = []
            for n, diffs in nodes.items():
                if not diffs:
                    rows.append([name, n, "all", "in sync"])
                rows += [[name, n, t, x] for t, x in diffs]
            typer.echo(
                format_table(
                    ["CLUSTER_NAME", "CLUSTER_NODE_NAME", "PARAMETER_TYPE", "ANALYZE_RESULT"], rows
                )
            )
        if any(nodes.values()):
            raise typer.Exit(EXIT_FAILURE)
