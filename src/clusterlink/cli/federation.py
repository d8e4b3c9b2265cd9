"""`kosmosctl install | join cluster | unjoin cluster | uninstall` (lab handles today; real
kubeconfigs arrive with the Kubernetes backend)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

import typer

from clusterlink import constants as C
from clusterlink.api.cluster import IPFamily, NetworkType
from clusterlink.cli.common import StoreOption, err_console, fail, user_errors
from clusterlink.lab import deploy
from clusterlink.lab.state import LabError, load_handle, store_url
from clusterlink.store.base import Store
from clusterlink.store.url import open_store

KubeconfigOption = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig", help="The cluster: a lab handle file (kubeconfigs: with the kube backend)."
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


def control_store(kubeconfig: str | None, store: str | None) -> tuple[Store, str]:
    """The control plane's store: --store, else the one a lab handle names, else the default."""
    if store:
        return open_store(store), store
    if kubeconfig:
        try:
            data = load_handle(kubeconfig)
        except LabError as exc:
            fail(f"{exc}; Kubernetes kubeconfigs are not supported yet (the kube backend)")
        url = data.get("store") or store_url(data["lab"])
        return open_store(url), url
    fail("--kubeconfig (a lab handle) or --store is required")


def wait_connected(st: Store, names: list[str], timeout: float) -> float:
    start = time.monotonic()
    last = ""
    while True:
        ok, waiting = deploy.connected(st, names)
        if ok:
            return time.monotonic() - start
        if waiting != last:
            progress(f"waiting for {waiting}")
            last = waiting
        if time.monotonic() - start > timeout:
            raise LabError(f"not connected after {timeout:.0f} s: still waiting for {waiting}")
        time.sleep(0.1)


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
) -> None:
    """Set up the control plane (store, network-manager) and join the control cluster itself."""
    with user_errors():
        if not kubeconfig:
            fail("--kubeconfig (a lab handle of the control cluster) is required")
        st, url = control_store(kubeconfig, store)
        options = deploy.LinkOptions(network_type, ip_family, cni, default_nic)
        took = deploy_and_wait(deploy.install, st, url, kubeconfig, name, options, wait_time)
        typer.echo(f"clusterlink installed; {name} joined and ready in {took:.1f} s (store {url})")


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
) -> None:
    """Create the Cluster and start its controller, electors and agents; wait until connected."""
    with user_errors():
        if not kubeconfig:
            fail("--kubeconfig (a lab handle of the member cluster) is required")
        if not enable_link:
            fail("only ClusterLink can be joined; --enable-link is required")
        st, url = control_store(host_kubeconfig or kubeconfig, store)
        options = deploy.LinkOptions(network_type, ip_family, cni, default_nic)
        took = deploy_and_wait(deploy.join, st, url, kubeconfig, name, options, wait_time)
        typer.echo(f"cluster {name} joined and connected in {took:.1f} s")


@unjoin_app.command("cluster")
def unjoin_cluster(
    name: Annotated[str, typer.Option("--name", help="The Cluster's name.")],
    kubeconfig: KubeconfigOption = None,
    store: StoreOption = None,
) -> None:
    """Remove a member: its Cluster, ClusterNodes, NodeConfigs, components and kernel state."""
    with user_errors():
        st, _ = control_store(kubeconfig, store)
        try:
            deploy.unjoin(st, name, progress)
        except LabError as exc:
            fail(str(exc))
        typer.echo(f"cluster {name} unjoined")


def uninstall(kubeconfig: KubeconfigOption = None, store: StoreOption = None) -> None:
    """Unjoin every cluster and stop the control plane."""
    with user_errors():
        st, _ = control_store(kubeconfig, store)
        if not kubeconfig:
            fail("--kubeconfig (a lab handle) is required")
        try:
            deploy.uninstall(st, load_handle(kubeconfig)["lab"], progress)
        except LabError as exc:
            fail(str(exc))
        typer.echo("clusterlink uninstalled")
