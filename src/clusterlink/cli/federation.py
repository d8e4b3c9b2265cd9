"""`kosmosctl install | join cluster | unjoin cluster | uninstall`: flags, one call into
`clusterlink.federation.commands`, one line of result. `--kubeconfig` says lab or Kubernetes."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
import yaml

from clusterlink import constants as C
from clusterlink.api.cluster import IPFamily, NetworkType
from clusterlink.cli.common import OutputFormat, StoreOption, err_console, fail, user_errors
from clusterlink.federation import commands
from clusterlink.federation.base import LinkOptions
from clusterlink.kube.manifests import DEFAULT_IMAGE

KubeconfigOption = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig",
        help="The cluster: a kubeconfig file, or a lab handle file (`kosmosctl lab up`); for the "
        "control cluster the default is kubectl's ($KUBECONFIG, else ~/.kube/config).",
    ),
]
ContextOption = Annotated[
    str | None,
    typer.Option(
        "--context", help="Kubernetes: the kubeconfig's context (default: its current one)."
    ),
]
ImageOption = Annotated[
    str, typer.Option("--image", help="Kubernetes: the one image every component runs.")
]
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Kubernetes: print the manifests (-o yaml|json); contact no cluster."
    ),
]
ShowSecretsOption = Annotated[
    bool,
    typer.Option(
        "--show-secrets",
        help="With --dry-run: print Secrets' data and kubeconfigs (default: <redacted>).",
    ),
]
ManifestFormat = Annotated[
    OutputFormat, typer.Option("-o", "--output", help="With --dry-run: yaml or json.")
]
ServiceCidrOption = Annotated[
    list[str] | None,
    typer.Option(
        "--service-cidr",
        help="Kubernetes: the member's service CIDR(s) when no kube-apiserver Pod is visible.",
    ),
]
CniOption = Annotated[str, typer.Option("--cni", help="Pod CIDR discovery adapter.")]
NicOption = Annotated[str, typer.Option("--default-nic", help="Underlay NIC name; * detects it.")]
NetworkTypeOption = Annotated[NetworkType, typer.Option("--network-type", help="p2p or gateway.")]
IPFamilyOption = Annotated[IPFamily, typer.Option("--ip-family", help="ipv4, ipv6 or all.")]
TimeoutOption = Annotated[
    float, typer.Option("--wait-time", help="Seconds to wait for the cluster to connect.")
]


def progress(message: str) -> None:
    err_console.print(f"  {message}", markup=False, highlight=False)


def print_manifests(objects: list[dict[str, Any]], fmt: OutputFormat) -> None:
    if fmt == OutputFormat.json:
        sys.stdout.write(
            json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2) + "\n"
        )
    else:
        sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False))


def _ready(joined: commands.Joined) -> str:
    if joined.seconds is None:
        return " (not waiting: --wait-time 0)"
    return f" and ready in {joined.seconds:.1f} s"


def install(
    kubeconfig: KubeconfigOption = None,
    store: StoreOption = None,
    name: Annotated[
        str, typer.Option("--name", help="Name of the control cluster's Cluster.")
    ] = C.CONTROL_CLUSTER_NAME,
    cni: CniOption = "calico",
    default_nic: NicOption = "*",
    network_type: NetworkTypeOption = "gateway",
    ip_family: IPFamilyOption = "ipv4",
    wait_time: TimeoutOption = 120.0,
    image: ImageOption = DEFAULT_IMAGE,
    service_cidr: ServiceCidrOption = None,
    dry_run: DryRunOption = False,
    output: ManifestFormat = OutputFormat.yaml,
    context: ContextOption = None,
    show_secrets: ShowSecretsOption = False,
) -> None:
    """Set up the control plane (store, network-manager) and join the control cluster itself."""
    with user_errors():
        request = commands.JoinRequest(
            kubeconfig, name, LinkOptions(network_type, ip_family, cni, default_nic),
            store=store, context=context, image=image, service_cidrs=tuple(service_cidr or ()),
            wait_time=wait_time,
        )  # fmt: skip
        if dry_run:
            objects = commands.manifests(request, control=True, show_secrets=show_secrets)
            print_manifests(objects, output)
            return
        joined = commands.install(request, progress)
        typer.echo(
            f"clusterlink installed; {name} joined"
            + _ready(joined)
            + f" (store {joined.store_url})"
        )


join_app = typer.Typer(help="Join a member cluster.", no_args_is_help=True)
unjoin_app = typer.Typer(help="Remove a member cluster.", no_args_is_help=True)


@join_app.command("cluster")
def join_cluster(
    name: Annotated[str, typer.Option("--name", help="The Cluster's name.")],
    kubeconfig: KubeconfigOption = None,
    host_kubeconfig: Annotated[
        str | None,
        typer.Option("--host-kubeconfig", help="The control cluster (default: as --kubeconfig)."),
    ] = None,
    store: StoreOption = None,
    cni: CniOption = "calico",
    default_nic: NicOption = "*",
    enable_link: Annotated[
        bool, typer.Option("--enable-link", help="Join ClusterLink (the only module here).")
    ] = True,
    network_type: NetworkTypeOption = "gateway",
    ip_family: IPFamilyOption = "ipv4",
    wait_time: TimeoutOption = 120.0,
    image: ImageOption = DEFAULT_IMAGE,
    service_cidr: ServiceCidrOption = None,
    dry_run: DryRunOption = False,
    output: ManifestFormat = OutputFormat.yaml,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            help="Kubernetes: the member's context in --kubeconfig (the control cluster is "
            "--host-kubeconfig's current one, or --kubeconfig's when none is given).",
        ),
    ] = None,
    show_secrets: ShowSecretsOption = False,
) -> None:
    """Create the Cluster and start its controller, electors and agents; wait until connected."""
    with user_errors():
        if not enable_link:
            fail("only ClusterLink can be joined; --enable-link is required")
        request = commands.JoinRequest(
            kubeconfig, name, LinkOptions(network_type, ip_family, cni, default_nic),
            host_kubeconfig=host_kubeconfig, store=store, context=context, image=image,
            service_cidrs=tuple(service_cidr or ()), wait_time=wait_time,
        )  # fmt: skip
        if dry_run:
            objects = commands.manifests(request, control=False, show_secrets=show_secrets)
            print_manifests(objects, output)
            return
        joined = commands.join(request, progress)
        typer.echo(f"cluster {name} joined" + _ready(joined))


@unjoin_app.command("cluster")
def unjoin_cluster(
    name: Annotated[str, typer.Option("--name", help="The Cluster's name.")],
    kubeconfig: KubeconfigOption = None,
    store: StoreOption = None,
    wait_time: Annotated[
        float, typer.Option("--wait-time", help="Seconds to wait for the agents to tear down.")
    ] = 60.0,
    context: ContextOption = None,
) -> None:
    """Remove a member: its Cluster, ClusterNodes, NodeConfigs, components and kernel state."""
    with user_errors():
        commands.unjoin(name, kubeconfig, store, progress, context=context, wait_time=wait_time)
        typer.echo(f"cluster {name} unjoined")


def uninstall(
    kubeconfig: KubeconfigOption = None,
    store: StoreOption = None,
    wait_time: Annotated[
        float, typer.Option("--wait-time", help="Seconds to wait for each member's agents.")
    ] = 60.0,
    context: ContextOption = None,
) -> None:
    """Unjoin every cluster and stop the control plane."""
    with user_errors():
        commands.uninstall(kubeconfig, store, progress, context=context, wait_time=wait_time)
        typer.echo("clusterlink uninstalled")
