"""`clusterlink`: the component entry points (one image, one binary, many roles)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clusterlink import __version__
from clusterlink.api.crds import stale_crds, write_crds
from clusterlink.cli.common import EXIT_FAILURE, fail

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


def main() -> None:
    app()
