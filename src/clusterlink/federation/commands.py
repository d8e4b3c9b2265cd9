"""The federation's use cases, as `kosmosctl install | join cluster | unjoin cluster |
uninstall` run them: pick the implementation (lab or Kubernetes) from the kubeconfig, run it,
wait until connected. Each takes a progress callback; failures are `ClusterlinkError`s whose
exit code tells the truth (`base.truthful`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clusterlink import constants as C
from clusterlink.api.cluster import Cluster
from clusterlink.errors import BadInput
from clusterlink.federation.base import Federation, LinkOptions, Progress, truthful
from clusterlink.federation.control import Control, default_kubeconfig, is_kube, open_control
from clusterlink.federation.lab import LabFederation
from clusterlink.federation.membership import wait_connected
from clusterlink.kube.manifests import DEFAULT_IMAGE

# The Kubernetes client loads only when a command talks to Kubernetes (kosmosctl starts fast).


@dataclass(frozen=True)
class JoinRequest:
    """What install and join are asked. `kubeconfig`: the member (for install the control
    cluster itself); `host_kubeconfig`: the control cluster of a join (default: `kubeconfig`);
    `wait_time` 0: do not wait until connected."""

    kubeconfig: str | None
    name: str = C.CONTROL_CLUSTER_NAME
    options: LinkOptions = field(default_factory=LinkOptions)
    host_kubeconfig: str | None = None
    store: str | None = None
    context: str | None = None
    image: str = DEFAULT_IMAGE
    service_cidrs: tuple[str, ...] = ()
    wait_time: float = 120.0


@dataclass(frozen=True)
class Joined:
    name: str
    store_url: str
    seconds: float | None  # until connected; None: not waited for


def federation_of(
    control: Control,
    member_kubeconfig: str | None,
    *,
    control_kubeconfig: str | None = None,
    control_context: str | None = None,
    member_context: str | None = None,
    image: str = DEFAULT_IMAGE,
    service_cidrs: tuple[str, ...] = (),
) -> Federation:
    """The implementation for a member: Kubernetes for a kubeconfig, else the lab."""
    if is_kube(member_kubeconfig):
        from clusterlink.federation.kube import KubeFederation
        from clusterlink.kubeclient.target import Target

        return KubeFederation(
            control.store,
            Target(control_kubeconfig, control_context),
            member_context=member_context,
            image=image,
            service_cidrs=list(service_cidrs),
        )
    return LabFederation(control.store, control.url, control.lab)


def _require(kubeconfig: str | None, what: str) -> str:
    if not kubeconfig:
        raise BadInput(
            f"--kubeconfig ({what}: a kubeconfig or a lab handle) is required when $KUBECONFIG "
            "is unset and there is no ~/.kube/config"
        )
    return kubeconfig


def install(request: JoinRequest, progress: Progress) -> Joined:
    """Start the control plane and join the control cluster itself as `request.name`."""
    kubeconfig = _require(request.kubeconfig or default_kubeconfig(), "the control cluster")
    control = open_control(kubeconfig, request.store, request.context)
    fed = federation_of(control, kubeconfig, control_kubeconfig=kubeconfig,
                        control_context=request.context, member_context=request.context,
                        image=request.image, service_cidrs=request.service_cidrs)  # fmt: skip
    with truthful(progress) as step:
        fed.install(kubeconfig, request.name, request.options, step)
        return _wait(fed, control, request, progress)


def join(request: JoinRequest, progress: Progress) -> Joined:
    """Create the member's Cluster and start its components; wait until connected."""
    kubeconfig = _require(request.kubeconfig, "the member cluster")
    # The control cluster: --host-kubeconfig; for a Kubernetes member else kubectl's default
    # kubeconfig, as Kosmos does; else (a lab handle, or no default) the member's file.
    default = default_kubeconfig() if is_kube(kubeconfig) else None
    host = request.host_kubeconfig or default or kubeconfig
    control = open_control(host, request.store)  # the control cluster: its current context
    fed = federation_of(control, kubeconfig, control_kubeconfig=host,
                        member_context=request.context, image=request.image,
                        service_cidrs=request.service_cidrs)  # fmt: skip
    with truthful(progress) as step:
        fed.join(kubeconfig, request.name, request.options, step)
        return _wait(fed, control, request, progress)


def _wait(fed: Federation, control: Control, request: JoinRequest, progress: Progress) -> Joined:
    if request.wait_time <= 0:
        return Joined(request.name, control.url, None)
    took = wait_connected(
        control.store, [request.name], request.wait_time, fed.poll_interval, progress, fed.pending
    )
    return Joined(request.name, control.url, took)


def unjoin(
    name: str,
    kubeconfig: str | None,
    store: str | None,
    progress: Progress,
    *,
    context: str | None = None,
    wait_time: float = 60.0,
) -> None:
    """Remove a member: the Cluster it was joined as says where its components run."""
    kubeconfig = kubeconfig or (None if store else default_kubeconfig())
    control = open_control(kubeconfig, store, context)
    from clusterlink.kube.deploy import member_kubeconfig_of

    obj = control.store.get(Cluster, name)
    on_kube = member_kubeconfig_of(control.store, obj) is not None
    fed = federation_of(control, kubeconfig if on_kube else None, control_kubeconfig=kubeconfig,
                        control_context=context)  # fmt: skip
    with truthful(progress) as step:
        fed.unjoin(name, step, wait_time)


def uninstall(
    kubeconfig: str | None,
    store: str | None,
    progress: Progress,
    *,
    context: str | None = None,
    wait_time: float = 60.0,
) -> None:
    """Unjoin every cluster and stop the control plane."""
    kubeconfig = _require(kubeconfig or default_kubeconfig(), "the control cluster")
    control = open_control(kubeconfig, store, context)
    fed = federation_of(control, kubeconfig, control_kubeconfig=kubeconfig,
                        control_context=context)  # fmt: skip
    with truthful(progress) as step:
        fed.uninstall(step, wait_time)


def manifests(
    request: JoinRequest, *, control: bool, show_secrets: bool = False
) -> list[dict[str, Any]]:
    """`--dry-run`: what install (`control`) or join would apply on Kubernetes; Secrets'
    data redacted unless `show_secrets`."""
    from clusterlink.federation.kube import dry_run, kube_options

    opts = kube_options(request.options, request.image, list(request.service_cidrs))
    return dry_run(request.name, opts, control, request.host_kubeconfig, show_secrets)
