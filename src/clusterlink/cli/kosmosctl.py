"""`kosmosctl`: the user's command line (kubectl habits: get/apply/delete, -o json|yaml|wide)."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Annotated, Any

import typer

from clusterlink import __version__
from clusterlink.api.cluster import Cluster, without_credentials
from clusterlink.api.clusternode import ClusterNode
from clusterlink.api.manifest import ManifestError, dump_yaml, load_manifest, parse_documents
from clusterlink.api.meta import Resource, parse_rfc3339
from clusterlink.api.nodeconfig import NodeConfig
from clusterlink.api.registry import kind_class
from clusterlink.cli import doctor as doctor_cli
from clusterlink.cli import federation
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
from clusterlink.cli.federation import ContextOption, KubeconfigOption
from clusterlink.cli.lab import app as lab_app
from clusterlink.federation.control import store_for
from clusterlink.federation.keys import rotate_keys
from clusterlink.inputs import read_stream
from clusterlink.observe.connections import connections, wait_up
from clusterlink.observe.trace import trace
from clusterlink.planner.whatif import what_if
from clusterlink.store.base import NotFound, Store

app = typer.Typer(
    name="kosmosctl",
    help="Join the pod and service networks of many Kubernetes clusters (Kosmos ClusterLink style).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kosmosctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """kosmosctl: manage a clusterlink federation."""


def read_manifest(path: str) -> list[Resource]:
    if path == "-":
        return parse_documents(read_stream(sys.stdin.buffer), "<stdin>")
    return load_manifest(path)


@app.command()
def apply(
    filename: Annotated[
        str,
        typer.Option(
            "-f", "--filename", help="Manifest file (YAML/JSON, multi-document; - for stdin)."
        ),
    ],
    store: StoreOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: Annotated[
        OutputFormat, typer.Option("-o", "--output", help="table or json")
    ] = OutputFormat.table,
) -> None:
    """Validate every object in FILE, then create or update them all (all or nothing)."""
    with user_errors():
        objects = read_manifest(filename)
        if not objects:
            raise ManifestError(f"{filename}: no objects")
        st = store_for(kubeconfig, store, context)
        before: dict[tuple[str, str], Resource | None] = {}
        for obj in objects:
            try:
                before[(obj.KIND, obj.key)] = st.get(
                    type(obj), obj.metadata.name, obj.metadata.namespace
                )
            except NotFound:
                before[(obj.KIND, obj.key)] = None
        written = st.apply_all(objects)
        results = []
        for obj in written:
            old = before[(obj.KIND, obj.key)]
            if old is None:
                verdict = "created"
            elif old.metadata.resource_version == obj.metadata.resource_version:
                verdict = "unchanged"
            else:
                verdict = "configured"
            results.append({"kind": obj.KIND, "name": obj.key, "result": verdict})
        if output == OutputFormat.json:
            emit({"applied": results}, output)
        else:
            for r in results:
                typer.echo(f"{r['kind'].lower()}.kosmos.io/{r['name']} {r['result']}")


def _age(obj: Resource, now: dt.datetime) -> str:
    stamp = obj.metadata.creation_timestamp
    if not stamp:
        return "<unknown>"
    seconds = int((now - parse_rfc3339(stamp)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _cluster_row(obj: Cluster, wide: bool, now: dt.datetime) -> list[str]:
    link = obj.link
    row = [obj.name, link.network_type if link else "", link.ip_family if link else ""]
    if wide:
        status = obj.status.cluster_link_status
        row += [
            link.cni if link else "",
            str(link.enable).lower() if link else "false",
            ",".join(status.pod_cidrs) or "<none>",
            ",".join(status.service_cidrs) or "<none>",
            _age(obj, now),
        ]
    return row


def _cluster_node_row(obj: ClusterNode, wide: bool, now: dt.datetime) -> list[str]:
    spec = obj.spec
    row = [obj.name, ",".join(spec.roles) or "<none>", spec.interface_name, spec.ip]
    if wide:
        row += [spec.ip6, spec.cluster_name, ",".join(spec.pod_cidrs) or "<none>", _age(obj, now)]
    return row


def _node_config_row(obj: NodeConfig, wide: bool, now: dt.datetime) -> list[str]:
    row = [obj.name, _age(obj, now)]
    if wide:
        s = obj.spec
        counts = (s.devices, s.routes, s.fdbs, s.arps, s.iptables)
        row += [str(len(c)) for c in counts] + [obj.status.phase or "<pending>", obj.status.message]
    return row


def _row(obj: Resource, wide: bool, now: dt.datetime) -> list[str]:
    if isinstance(obj, Cluster):
        return _cluster_row(obj, wide, now)
    if isinstance(obj, ClusterNode):
        return _cluster_node_row(obj, wide, now)
    if isinstance(obj, NodeConfig):
        return _node_config_row(obj, wide, now)
    return [obj.name, _age(obj, now)]


_HEADERS = {
    "Cluster": (
        ["NAME", "NETWORK_TYPE", "IP_FAMILY"],
        ["CNI", "ENABLE", "POD_CIDRS", "SERVICE_CIDRS", "AGE"],
    ),
    "ClusterNode": (["NAME", "ROLES", "INTERFACE", "IP"], ["IP6", "CLUSTER", "POD_CIDRS", "AGE"]),
    "NodeConfig": (
        ["NAME", "AGE"],
        ["DEVICES", "ROUTES", "FDBS", "ARPS", "IPTABLES", "PHASE", "MESSAGE"],
    ),
    "Lease": (["NAME", "AGE"], []),
    "LinkHealth": (["NAME", "AGE"], []),
}
CONNECTIONS = ("connections", "connection", "conn")


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f}ms"


def _show_connections(st: Store, output: OutputFormat, wait: bool, timeout: float) -> None:
    """Render `get connections` (after waiting for every link to be up, with --wait)."""
    if wait:
        up, rows = wait_up(st, timeout)
    else:
        up, rows = True, connections(st)
    if output in (OutputFormat.json, OutputFormat.yaml):
        emit({"items": [c.to_dict() for c in rows]}, output)
    elif not rows:
        typer.echo("No connections measured (no gateway or P2P node probes yet).", err=True)
    else:
        wide = output == OutputFormat.wide
        headers = ["FROM", "TO", "STATUS", "RTT", "LOSS", "SINCE"]
        headers += ["FROM_NODE", "TO_NODE", "PEER", "DEVICE"] if wide else []
        table = [
            [c.source, c.target, c.status, _ms(c.rtt_seconds), f"{c.loss:.0%}", c.since or "-"]
            + ([c.source_node, c.target_node, c.peer, c.device] if wide else [])
            for c in rows
        ]
        typer.echo(format_table(headers, table))
    if not up:
        down = sum(c.status != "up" for c in rows)
        fail(f"timed out after {timeout:g}s: {down} of {len(rows)} connections not up", 1)


@app.command()
def get(
    kind: Annotated[
        str,
        typer.Argument(help="clusters | clusternodes | nodeconfigs (cl, cn, nc) | connections"),
    ],
    name: Annotated[str | None, typer.Argument(help="One object by name.")] = None,
    output: Annotated[
        OutputFormat, typer.Option("-o", "--output", help="table, wide, json or yaml")
    ] = OutputFormat.table,
    selector: Annotated[
        str | None, typer.Option("-l", "--selector", help="Label selector k=v[,k=v].")
    ] = None,
    store: StoreOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="-o json|yaml: print a Cluster's kubeconfig.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="connections: until every one is up (exit 1: timeout).")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="connections --wait: seconds.", min=0)
    ] = 60.0,
) -> None:
    """List objects of a kind, or show one; `connections`: every link's live health."""
    with user_errors():
        if kind.lower() in CONNECTIONS:
            _show_connections(store_for(kubeconfig, store, context), output, wait, timeout)
            return
        cls = kind_class(kind)
        labels = _parse_selector(selector)
        st = store_for(kubeconfig, store, context)
        if name is not None:
            objects: list[Resource] = [st.get(cls, name)]
        else:
            objects = list(st.list(cls, labels))
        if output in (OutputFormat.json, OutputFormat.yaml):
            shown = [o.to_dict() if show_secrets else without_credentials(o.to_dict())
                     for o in objects]  # fmt: skip
            if name is not None:
                emit(shown[0], output)
            else:
                emit({"apiVersion": "v1", "kind": "List", "items": shown}, output)
            return
        if not objects:
            typer.echo("No resources found.", err=True)
            return
        wide = output == OutputFormat.wide
        base, extra = _HEADERS[cls.KIND]
        now = dt.datetime.now(dt.UTC)
        typer.echo(
            format_table(base + (extra if wide else []), [_row(o, wide, now) for o in objects])
        )


def _parse_selector(selector: str | None) -> dict[str, str] | None:
    if not selector:
        return None
    labels = {}
    for part in selector.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key:
            fail(f"--selector {selector!r}: expected key=value[,key=value]")
        labels[key.strip()] = value.strip()
    return labels


@app.command()
def delete(
    kind: Annotated[str, typer.Argument(help="clusters | clusternodes | nodeconfigs")],
    name: Annotated[str, typer.Argument(help="Object name.")],
    store: StoreOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Delete one object."""
    with user_errors():
        cls = kind_class(kind)
        store_for(kubeconfig, store, context).delete(cls, name)
        typer.echo(f"{cls.KIND.lower()}.kosmos.io/{name} deleted")


PLAN_COLUMNS = ["NAME", "DEVICES", "ROUTES", "DIRECT", "THROWS", "FDBS", "ARPS", "IPTABLES"]


def plan_row(config: dict[str, Any]) -> list[str]:
    spec = config["spec"]
    throws = sum(1 for r in spec["routes"] if r.get("type") == "throw")
    ours = {d["name"] for d in spec["devices"]}
    direct = sum(1 for r in spec["routes"] if r.get("dev") and r["dev"] not in ours)
    counts = [len(spec["devices"]), len(spec["routes"]) - throws - direct, direct, throws]
    counts += [len(spec[k]) for k in ("fdbs", "arps", "iptables")]
    return [config["metadata"]["name"], *map(str, counts)]


@app.command("rotate-keys")
def rotate_keys_command(
    cluster: Annotated[str, typer.Option("--cluster", help="The Cluster whose keys to rotate.")],
    store: StoreOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: Annotated[
        OutputFormat, typer.Option("-o", "--output", help="table or json")
    ] = OutputFormat.table,
) -> None:
    """Give every node of an encrypted cluster a new WireGuard key pair (docs/encryption.md)."""
    with user_errors():
        done = rotate_keys(store_for(kubeconfig, store, context), cluster)
        if output == OutputFormat.json:
            emit(done.to_dict(), output)
            return
        typer.echo(
            f"rotation {done.request} requested on {len(done.nodes)} nodes of {cluster}: "
            + ", ".join(done.nodes)
        )


@app.command("plan")
def plan_command(
    filename: Annotated[
        str,
        typer.Option(
            "-f", "--filename", help="Clusters and ClusterNodes (apply format; - for stdin)."
        ),
    ],
    node: Annotated[str | None, typer.Option("--node", help="Only this node's NodeConfig.")] = None,
    output: Annotated[
        OutputFormat, typer.Option("-o", "--output", help="table (summary), yaml or json")
    ] = OutputFormat.table,
    aggregate: Annotated[
        bool,
        typer.Option(
            "--aggregate/--no-aggregate",
            help="Internal nodes: covering + throw routes (default), or one route per CIDR.",
        ),
    ] = True,
) -> None:
    """Offline what-if: print the NodeConfigs the network-manager would write, and why.

    Findings (what was left out or adjusted) go to stderr, or under `findings` with -o json.
    The table counts routes via a next hop and throw routes (aggregation's holes) apart.
    """
    with user_errors():
        configs, found = what_if(read_manifest(filename), node, aggregate)
        findings = [f.to_dict() for f in found]
        if output == OutputFormat.json:
            emit({"nodeConfigs": configs, "findings": findings}, output)
            return
        for f in found:
            err_console.print(f"{f.level}: {f.object}: {f.message}", markup=False, highlight=False)
        if output == OutputFormat.yaml:
            typer.echo(dump_yaml(configs), nl=False)
            return
        typer.echo(format_table(PLAN_COLUMNS, [plan_row(c) for c in configs]))


@app.command("trace")
def trace_command(
    src: Annotated[
        str,
        typer.Argument(
            help="A lab pod CLUSTER/NODE/POD, a node CLUSTER/NODE, an IP, or on Kubernetes a "
            "Pod NS/POD or CLUSTER:NS/POD."
        ),
    ],
    dst: Annotated[str, typer.Argument(help="The same forms; a node: its pod CIDR.")],
    family: Annotated[
        int | None,
        typer.Option("--family", min=4, max=6, help="4 or 6: which address of a pod or node."),
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("-o", "--output", help="table or json")
    ] = OutputFormat.table,
    store: StoreOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """The hops a packet takes from SRC to DST, what each NodeConfig and live kernel says;
    stops at the first bad hop and names the cause (exit 1 when the path is not complete)."""
    with user_errors():
        if family not in (None, 4, 6):
            fail("--family: 4 or 6")
        result = trace(store_for(kubeconfig, store, context), src, dst, family)
        if output in (OutputFormat.json, OutputFormat.yaml):
            emit(result.to_dict(), output)
        else:
            rows = [
                [h.node, h.step, h.config, h.kernel or "-", h.cause or "ok"] for h in result.hops
            ]
            typer.echo(f"{src} ({result.src.ip}) -> {dst} ({result.dst.ip})")
            typer.echo(format_table(["NODE", "HOP", "NODECONFIG", "KERNEL", "STATUS"], rows))
            bad = result.broken
            if bad is not None:
                typer.echo(f"broken at {bad.node} ({bad.step}): {bad.cause}: {bad.detail}")
            elif result.complete:
                typer.echo("path complete")
        if not result.complete:
            raise typer.Exit(EXIT_FAILURE)


app.add_typer(lab_app, name="lab")
app.command("install")(federation.install)
app.command("uninstall")(federation.uninstall)
app.add_typer(federation.join_app, name="join")
app.add_typer(federation.unjoin_app, name="unjoin")
app.command("dr")(doctor_cli.dr)
app.command("check", help="The same as `dr` (Kosmos renamed dr to check).")(doctor_cli.dr)
app.add_typer(doctor_cli.analysis_app, name="analysis")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
