"""`clusterlink`: the component entry points (one image, one binary, many roles)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from clusterlink import __version__
from clusterlink.agent.firewall import IptablesFirewall
from clusterlink.agent.kernel import KernelError
from clusterlink.agent.linux import LinuxKernel
from clusterlink.agent.service import Agent
from clusterlink.api.crds import stale_crds, write_crds
from clusterlink.cli.common import EXIT_FAILURE, OutputFormat, StoreOption, emit, fail, user_errors
from clusterlink.store.url import open_store

app = typer.Typer(
    name="clusterlink",
    help="clusterlink components: each runs as a process (lab) or a container (Kubernetes).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"clusterlink {__version__}")


@app.command("gen-crds")
def gen_crds(
    directory: Annotated[Path, typer.Argument(help="Where the CRD YAML files go.")] = Path(
        "deploy/crds"
    ),
    check: Annotated[
        bool, typer.Option("--check", help="Only report stale files; exit 1 if any.")
    ] = False,
) -> None:
    """(Re)generate the CustomResourceDefinitions from the models."""
    if check:
        stale = stale_crds(directory)
        if stale:
            fail(f"stale CRDs in {directory}: {', '.join(stale)} (run `make crds`)", EXIT_FAILURE)
        typer.echo(f"CRDs in {directory} are up to date")
        return
    for path in write_crds(directory):
        typer.echo(f"wrote {path}")


@app.command()
def agent(
    node: Annotated[
        str, typer.Option("--node", help="This node's ClusterNode (= NodeConfig) name.")
    ],
    store: StoreOption = None,
    netns_name: Annotated[
        str | None, typer.Option("--netns", help="Act inside this network namespace (lab, tests).")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="One reconcile, print what changed, exit.")
    ] = False,
    resync: Annotated[
        float, typer.Option("--resync", help="Seconds between full resyncs.", min=0.1)
    ] = 30.0,
    detect_nic: Annotated[
        bool,
        typer.Option(
            "--detect-nic/--no-detect-nic", help="Fill interfaceName/ip/ip6 of the ClusterNode."
        ),
    ] = True,
    output: Annotated[
        OutputFormat, typer.Option("-o", "--output", help="With --once: table or json.")
    ] = OutputFormat.table,
) -> None:
    """Make this node's kernel match its NodeConfig, and keep it so.

    Exits 0 on SIGTERM without touching the kernel (a restart must not disturb traffic);
    a deleted NodeConfig tears our state down. With --once, exits 1 if the pass had errors.
    """
    with user_errors():
        st = open_store(store)
        try:
            kernel = LinuxKernel(netns_name)
        except (KernelError, OSError) as exc:
            fail(f"agent: {exc}")
        worker = Agent(
            st,
            node,
            kernel,
            IptablesFirewall(netns_name),
            netns_name=netns_name,
            resync=resync,
            detect_nic=detect_nic,
        )
        if once:
            report = worker.sync()
            if output == OutputFormat.json:
                emit(report.to_dict(), output)
            else:
                typer.echo(f"{node}: {report.changes} kernel changes")
                for error in report.errors:
                    typer.echo(f"error: {error}", err=True)
            raise typer.Exit(EXIT_FAILURE if report.errors else 0)
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: worker.stop(stop))
        signal.signal(signal.SIGINT, lambda *_: worker.stop(stop))
        worker.run(stop)
        kernel.close()


@app.command("lab-supervisor")
def lab_supervisor(
    lab: Annotated[str, typer.Option("--lab", help="The lab whose components to keep running.")],
) -> None:
    """Keep a lab's components running (started by `kosmosctl lab up`; stopped by `lab down`)."""
    from clusterlink.lab.state import state_dir
    from clusterlink.lab.supervisor import Supervisor

    d = state_dir(lab)
    if not (d / "lab.json").exists():
        fail(f"no lab {lab!r} in {d}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Supervisor(d).run(stop)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
