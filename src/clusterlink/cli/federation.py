"""`kosmosctl install | join cluster | unjoin cluster | uninstall`, on lab clusters (handle
files) and on Kubernetes clusters (kubeconfigs): `--kubeconfig` says which."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

from clusterlink import constants as C
from clusterlink.api.cluster import Cluster, IPFamily, NetworkType
from clusterlink.api.net import normalize_cidr
from clusterlink.cli.common import (
    EXIT_FAILURE,
    OutputFormat,
    StoreOption,
    err_console,
    fail,
    user_errors,
)
from clusterlink.controllers.membership import connected
from clusterlink.kube import DeployError, manifests
from clusterlink.kube.manifests import DEFAULT_IMAGE
from clusterlink.kube.target import Target, kube_url
from clusterlink.lab import deploy
from clusterlink.lab.state import LabError, is_lab_handle, load_handle, store_url
from clusterlink.store.base import Store
from clusterlink.store.url import open_store

if TYPE_CHECKING:
    from clusterlink.kube.deploy import KubeLinkOptions

# The Kubernetes client loads only when a command talks to Kubernetes (kosmosctl starts fast).


KubeconfigOption = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig",
        help="The cluster: a kubeconfig file, or a lab handle file (`kosmosctl lab up`).",
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


def control_store(
    kubeconfig: str | None, store: str | None, context: str | None = None
) -> tuple[Store, str]:
    """The control plane's store: --store, else the lab store a handle names, else the
    Kubernetes API a kubeconfig points at."""
    if store:
        return open_store(store), store
    if kubeconfig:
        if is_lab_handle(kubeconfig):
            data = load_handle(kubeconfig)
            url = data.get("store") or store_url(data["lab"])
            return open_store(url), url
        if not Path(kubeconfig).is_file():
            fail(f"--kubeconfig {kubeconfig}: no such file")
        url = kube_url(str(Path(kubeconfig).resolve()), context)
        return open_store(url), url
    fail("--kubeconfig (a kubeconfig or a lab handle) or --store is required")


def is_kube(kubeconfig: str | None) -> bool:
    return bool(kubeconfig) and not is_lab_handle(kubeconfig or "")


def print_manifests(objects: list[dict[str, Any]], fmt: OutputFormat) -> None:
    if fmt == OutputFormat.json:
        sys.stdout.write(
            json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2) + "\n"
        )
    else:
        sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False))


def kube_options(
    network_type: str,
    ip_family: str,
    cni: str,
    default_nic: str,
    image: str,
    cidrs: list[str] | None,
) -> KubeLinkOptions:
    from clusterlink.kube import deploy as kdeploy

    try:
        services = tuple(normalize_cidr(c) for c in cidrs or [])
    except ValueError as exc:
        fail(f"--service-cidr: {exc}")
    return kdeploy.KubeLinkOptions(network_type, ip_family, cni, default_nic, image, services)


def read_kubeconfig(path: str, context: str | None = None) -> str:
    """The kubeconfig's text, with `context` made current (it is stored and used elsewhere)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        fail(f"--kubeconfig {path}: {exc.strerror}")
    if context is None:
        return text
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or context not in {
        c.get("name") for c in data.get("contexts") or [] if isinstance(c, dict)
    }:
        fail(f"--context {context}: not a context of {path}")
    data["current-context"] = context
    return str(yaml.safe_dump(data, sort_keys=False))


def wait_connected(st: Store, names: list[str], timeout: float, interval: float = 0.1) -> float:
    """Poll until connected. On Kubernetes poll once a second: each poll lists the Clusters,
    ClusterNodes and NodeConfigs (large objects) from the API server."""
    start = time.monotonic()
    last = ""
    while True:
        ok, waiting = connected(st, names)
        if ok:
            return time.monotonic() - start
        if waiting != last:
            progress(f"waiting for {waiting}")
            last = waiting
        if time.monotonic() - start > timeout:
            raise LabError(f"not connected after {timeout:.0f} s: still waiting for {waiting}")
        time.sleep(interval)


def deploy_and_wait(
    action: Callable[[Store, str, str, str, deploy.LinkOptions, Callable[[str], None]], None],
    st: Store,
    url: str,
    handle: str,
    name: str,
    options: deploy.LinkOptions,
    wait_time: float,
) -> float:
    """Install or join, then wait until the cluster is connected; seconds it took."""
    try:
        action(st, url, handle, name, options, progress)
        return wait_connected(st, [name], wait_time)
    except LabError as exc:
        fail(str(exc))


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
) -> None:
    """Set up the control plane (store, network-manager) and join the control cluster itself."""
    with user_errors():
        from clusterlink.kube import deploy as kdeploy
        from clusterlink.kube.api import KubeApi

        if dry_run:
            opts = kube_options(network_type, ip_family, cni, default_nic, image, service_cidr)
            objects = manifests.control_plane(image) + kdeploy.member_objects(
                name, opts, True, None
            )
            cluster = kdeploy.cluster_object(name, "(the control cluster's kubeconfig)", opts)
            print_manifests([*manifests.unique(objects), cluster.to_dict()], output)
            return
        if not kubeconfig:
            fail("--kubeconfig (the control cluster: a kubeconfig or a lab handle) is required")
        st, url = control_store(kubeconfig, store, context)
        if is_kube(kubeconfig):
            opts = kube_options(network_type, ip_family, cni, default_nic, image, service_cidr)
            api = KubeApi(Target(kubeconfig, context), field_manager=kdeploy.FIELD_MANAGER)
            text = read_kubeconfig(kubeconfig, context)
            try:
                kdeploy.install(api, st, text, name, opts, progress)
                took = wait_connected(st, [name], wait_time, 1.0) if wait_time > 0 else 0.0
            except (DeployError, LabError) as exc:
                fail(str(exc), EXIT_FAILURE)
            typer.echo(f"clusterlink installed; {name} joined" + _ready(took, wait_time))
            return
        options = deploy.LinkOptions(network_type, ip_family, cni, default_nic)
        took = deploy_and_wait(deploy.install, st, url, kubeconfig, name, options, wait_time)
        typer.echo(f"clusterlink installed; {name} joined and ready in {took:.1f} s (store {url})")


def _ready(took: float, wait_time: float) -> str:
    return f" and ready in {took:.1f} s" if wait_time > 0 else " (not waiting: --wait-time 0)"


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
) -> None:
    """Create the Cluster and start its controller, electors and agents; wait until connected."""
    with user_errors():
        from clusterlink.kube import deploy as kdeploy
        from clusterlink.kube.api import KubeApi, load_config

        if not enable_link:
            fail("only ClusterLink can be joined; --enable-link is required")
        if dry_run:
            opts = kube_options(network_type, ip_family, cni, default_nic, image, service_cidr)
            try:
                control = host_kubeconfig and kdeploy.control_kubeconfig_text(host_kubeconfig)
            except DeployError as exc:
                fail(str(exc))
            objects = kdeploy.member_objects(name, opts, not control, control or None)
            cluster = kdeploy.cluster_object(name, "(the member's kubeconfig)", opts)
            print_manifests([*objects, cluster.to_dict()], output)
            return
        if not kubeconfig:
            fail("--kubeconfig (the member cluster: a kubeconfig or a lab handle) is required")
        st, url = control_store(host_kubeconfig or kubeconfig, store)  # its current context
        if is_kube(kubeconfig):
            opts = kube_options(network_type, ip_family, cni, default_nic, image, service_cidr)
            try:
                api = KubeApi(Target(kubeconfig, context), field_manager=kdeploy.FIELD_MANAGER)
                control_server = load_config(Target(host_kubeconfig or kubeconfig)).cluster.server
                same = api.server == control_server
                control = (
                    None if same else kdeploy.control_kubeconfig_text(host_kubeconfig or kubeconfig)
                )
                member_text = read_kubeconfig(kubeconfig, context)
                kdeploy.join(api, st, name, member_text, control, opts, progress)
                took = wait_connected(st, [name], wait_time, 1.0) if wait_time > 0 else 0.0
            except (DeployError, LabError) as exc:
                fail(str(exc), EXIT_FAILURE)
            typer.echo(f"cluster {name} joined" + _ready(took, wait_time))
            return
        options = deploy.LinkOptions(network_type, ip_family, cni, default_nic)
        took = deploy_and_wait(deploy.join, st, url, kubeconfig, name, options, wait_time)
        typer.echo(f"cluster {name} joined and connected in {took:.1f} s")


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
        from clusterlink.kube import deploy as kdeploy

        st, _ = control_store(kubeconfig, store, context)
        try:
            obj = st.get(Cluster, name)
            if kdeploy.member_kubeconfig_of(obj) is not None:
                kdeploy.unjoin(st, name, progress, wait_time)
            else:
                deploy.unjoin(st, name, progress, wait_time)
        except (LabError, DeployError) as exc:
            fail(str(exc), EXIT_FAILURE)
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
        from clusterlink.kube import deploy as kdeploy
        from clusterlink.kube.api import KubeApi

        if not kubeconfig:
            fail("--kubeconfig (the control cluster: a kubeconfig or a lab handle) is required")
        st, _ = control_store(kubeconfig, store, context)
        try:
            if is_kube(kubeconfig):
                api = KubeApi(Target(kubeconfig, context), field_manager=kdeploy.FIELD_MANAGER)
                kdeploy.uninstall(api, st, progress, wait_time)
            else:
                deploy.uninstall(st, load_handle(kubeconfig)["lab"], progress)
        except (LabError, DeployError) as exc:
            fail(str(exc), EXIT_FAILURE)
        typer.echo("clusterlink uninstalled")
