"""What every command shares: the store option, output formats, tables and one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.console import Console

from clusterlink.api.manifest import ManifestError
from clusterlink.api.registry import UnknownKind
from clusterlink.errors import EXIT_BAD_INPUT, EXIT_FAILURE, ClusterlinkError
from clusterlink.store.url import ENV_STORE

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILURE"]  # the codes live in clusterlink.errors

err_console = Console(stderr=True, highlight=False, soft_wrap=True)

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar=ENV_STORE,
        help="Store URL, e.g. sqlite:///var/lib/clusterlink/clusterlink.db "
        f"(default: ${ENV_STORE}, else that file).",
        show_default=False,
    ),
]


class OutputFormat(StrEnum):
    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn expected failures into one line on stderr and the exit code the error carries
    (`clusterlink.errors`); never a traceback."""
    try:
        yield
    except (ManifestError, UnknownKind) as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except ClusterlinkError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """kubectl-style aligned columns: three spaces between columns, no borders."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def emit(data: Any, fmt: OutputFormat) -> None:
    if fmt == OutputFormat.json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
