"""The map of docs/architecture.md, enforced: imports run one way, down the layers; the CLI
only parses, calls one function and renders; tests and benches never reach into the CLI."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "clusterlink"

# Bottom to top. A package may import its own modules and those of packages in lower layers
# only: never one above, never a sibling on its own layer.
LAYERS: list[set[str]] = [
    {"constants", "errors"},  # what everything may use
    {"inputs"},  # reading what a user hands us: files no reader should take are refused
    {"api"},  # resources: pure models
    {"planner", "kubeclient"},  # pure planning; the Kubernetes HTTP client
    {"store"},  # the Store port and its backends (kube:// on top of kubeclient)
    {"agent", "controllers"},  # the loops: observe, diff, apply, through ports
    {"lab", "kube"},  # the two environments: lab namespaces, Kubernetes clusters
    {"federation"},  # install / join / unjoin / uninstall over either environment
    {"doctor"},  # dr and analysis (reads the federation's store)
    {"demo"},  # the lab demo: composes all use cases
    {"cli"},  # flags, one call, rendering
]
LAYER = {package: i for i, packages in enumerate(LAYERS) for package in packages}
CLI_BODY_LIMIT = 40  # lines of body, docstring excluded
ENTRY_POINTS = {"clusterlink.cli.kosmosctl", "clusterlink.cli.components"}


def package_of(module: str) -> str:
    """clusterlink.X.Y -> X; the root package (`__version__`) counts as constants."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "constants"


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every clusterlink import in a file, also inside functions."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "clusterlink":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "clusterlink":  # from clusterlink import constants, __version__
                for alias in node.names:
                    name = alias.name if (SRC / f"{alias.name}.py").exists() else ""
                    yield node.lineno, f"clusterlink.{name}".rstrip(".")
            elif node.module.split(".")[0] == "clusterlink":
                yield node.lineno, node.module


def source_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_package_has_a_layer() -> None:
    packages = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in source_files()}
    assert packages - {"__init__"} <= set(LAYER), "add new packages to LAYERS (and the docs)"


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_run_down_the_layers(path: Path) -> None:
    here = path.relative_to(SRC).parts[0].removesuffix(".py")
    here = "constants" if here == "__init__" else here
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {here} (layer {LAYER[here]}) imports {module} "
        f"(layer {LAYER[package_of(module)]})"
        for line, module in imports(path)
        if package_of(module) != here and LAYER[package_of(module)] >= LAYER[here]
    ]
    assert not wrong, "imports that run the wrong way:\n" + "\n".join(wrong)


def test_tests_and_benches_call_domain_packages_not_the_cli() -> None:
    """Tests drive the CLI only through its entry points (as a user would); benches never."""
    wrong = []
    for path in sorted([*(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]):
        allowed = ENTRY_POINTS if path.is_relative_to(ROOT / "tests") else set()
        for line, module in imports(path):
            if package_of(module) == "cli" and module not in allowed:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    assert not wrong, "\n".join(wrong)


def body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    if not body:
        return 0
    return (body[-1].end_lineno or body[-1].lineno) - body[0].lineno + 1


def test_cli_functions_are_small() -> None:
    """The CLI parses flags, calls one function and renders: no function grows a body."""
    sizes = []
    for path in sorted((SRC / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                sizes.append((body_lines(node), f"{path.name}:{node.name}"))
    largest = max(sizes)
    assert largest[0] < CLI_BODY_LIMIT, f"{largest[1]} has a {largest[0]}-line body"
