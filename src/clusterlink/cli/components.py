"""`clusterlink`: the component entry points (one image, one binary, many roles)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from clusterlink import __version__
from clusterlink import constants as C
from clusterlink.api.clusternode import cluster_node_name
from clusterlink.api.crds import stale_crds, write_crds
from clusterlink.api.net import normalize_cidr
from clusterlink.cli.common import EXIT_FAILURE, OutputFormat, StoreOption, emit, fail, user_errors
from clusterlink.controllers.clock import ENV_CLOCK_SKEW, SystemClock
from clusterlink.controllers.elector import DEFAULT_TIMING, Elector, UnderlayCheck
from clusterlink.controllers.leader import LeaseTiming
from clusterlink.controllers.member import FactsPort, MemberController
from clusterlink.controllers.metrics import (
    ControllerMetrics,
    ElectorMetrics,
    NetworkManagerMetrics,
)
from clusterlink.store.stop import Stop
from clusterlink.store.url import open_store
from clusterlink.telemetry.server import Exported, serve

if TYPE_CHECKING:
    from clusterlink.agent.events import NetlinkEvents
    from clusterlink.agent.linux import LinuxKernel
    from clusterlink.agent.metrics import AgentMetrics
    from clusterlink.agent.service import Agent
    from clusterlink.agent.wireguard import WireGuardNode

# Each role imports what it needs inside its command (pyroute2, WireGuard, the planner: 0.3-0.5 s
# of CPU per process started alone). The lab supervisor imports all of it once, then forks
# each component (docs/lab.md): these are the modules the lab's components import.
LAB_COMPONENT_MODULES = [
    "clusterlink.agent.events",
    "clusterlink.agent.health",
    "clusterlink.agent.iptables",
    "clusterlink.agent.kernel",
    "clusterlink.agent.linux",
    "clusterlink.agent.metrics",
    "clusterlink.agent.netlink",
    "clusterlink.agent.netns",
    "clusterlink.agent.prefixmaps",
    "clusterlink.agent.service",
    "clusterlink.agent.wireguard",
    "clusterlink.controllers.network_manager",
    "clusterlink.lab.cni",
    "clusterlink.lab.facts",
    "clusterlink.lab.state",
]

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
    metrics_addr: MetricsAddr = f":{C.METRICS_PORT['agent']}",
    probe_interval: Annotated[
        float,
        typer.Option(help="Seconds between health probes of the tunnels' remote peers; 0: off."),
    ] = 1.0,
    probe_idle_interval: Annotated[
        float,
        typer.Option(
            help="Seconds between probes of a peer that is up and answered its last one.",
            min=0.01,
        ),
    ] = 5.0,
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="Where the node's WireGuard private key lives.")
    ] = Path(C.DEFAULT_STATE_DIR),
    wg_socket_dir: Annotated[
        str,
        typer.Option("--wireguard-socket-dir", help="wireguard-go's UAPI sockets (lab: per node)."),
    ] = C.WG_SOCKET_DIR,
) -> None:
    """Make this node's kernel match its NodeConfig, and keep it so.

    Exits 0 on SIGTERM without touching the kernel (a restart must not disturb traffic);
    a deleted NodeConfig tears our state down. With --once, exits 1 if the pass had errors.
    """
    from clusterlink.agent import iptables, prefixmaps, service
    from clusterlink.agent.metrics import AgentMetrics

    with user_errors():
        st = open_store(store)
        linux_kernel, wg, feed = _agent_kernel(netns_name, state_dir, wg_socket_dir, once)
        metrics = AgentMetrics(stall=3 * resync + 60)
        worker = service.Agent(
            st,
            node,
            linux_kernel,
            iptables.IptablesFirewall(netns_name, cache=not once),
            prefix_maps=prefixmaps.NftPrefixMaps(netns_name),
            events=feed,
            netns_name=netns_name,
            resync=resync,
            detect_nic=detect_nic,
            metrics=metrics,
            wireguard=wg,
        )
        if once:
            _once(worker, output)
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )
        _metrics(metrics_addr, metrics)
        stop = Stop()
        signal.signal(signal.SIGTERM, lambda *_: worker.stop(stop))
        signal.signal(signal.SIGINT, lambda *_: worker.stop(stop))
        if probe_interval > 0:
            _start_prober(worker, probe_interval, probe_idle_interval, metrics, stop)
        worker.run(stop)
        linux_kernel.close()
        if feed is not None:
            feed.close()


def _agent_kernel(
    netns_name: str | None, state_dir: Path, wg_socket_dir: str, once: bool
) -> tuple[LinuxKernel, WireGuardNode | None, NetlinkEvents | None]:
    """The agent's kernel side: netlink, WireGuard, kernel notifications (not with --once)."""
    from clusterlink.agent import events, kernel, linux, wireguard

    try:
        linux_kernel = linux.LinuxKernel(netns_name)
        wg = wireguard.start(netns_name, state_dir, wg_socket_dir)
        return linux_kernel, wg, None if once else events.NetlinkEvents(netns_name)
    except (kernel.KernelError, OSError) as exc:
        fail(f"agent: {exc}")


def _once(worker: Agent, output: OutputFormat) -> NoReturn:
    """`agent --once`: one pass, print what changed, exit 1 if it had errors."""
    report = worker.sync()
    if output == OutputFormat.json:
        emit(report.to_dict(), output)
    else:
        typer.echo(f"{worker.node}: {report.changes} kernel changes")
        for error in report.errors:
            typer.echo(f"error: {error}", err=True)
    raise typer.Exit(EXIT_FAILURE if report.errors else 0)


def _start_prober(
    worker: Agent, interval: float, idle: float, metrics: AgentMetrics, stop: threading.Event
) -> None:
    """Probe the remote peers of the tunnels this node's NodeConfig gives it, in a thread."""
    from clusterlink.agent.health import HealthMetrics, IcmpPinger, Prober, tunnel_peers

    try:
        pinger = IcmpPinger(worker.netns)
    except OSError as exc:
        fail(f"agent: health probes: {exc}")

    def peers() -> dict[str, str]:
        nc = worker.nodeconfig()
        return tunnel_peers(nc.spec if nc else None)

    prober = Prober(worker.store, worker.node, peers, pinger, interval=interval,
                    idle_interval=max(idle, interval), timeout=min(0.5, interval / 2),
                    metrics=HealthMetrics(metrics.registry))  # fmt: skip
    worker.on_new_nodeconfig.append(prober.poke)
    threading.Thread(target=prober.run, args=(stop,), name="health", daemon=True).start()


def lease_timing(duration: float, renew_deadline: float, retry: float) -> LeaseTiming:
    """The three lease flags, checked together (exit 2 with the rule when they disagree)."""
    timing = LeaseTiming(duration, renew_deadline, retry)
    try:
        timing.check()
    except ValueError as exc:
        fail(str(exc))
    return timing


def _serve(name: str, run: Callable[[threading.Event], None]) -> None:
    """Run a component loop until SIGTERM/SIGINT; log to stderr."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    stop = Stop()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(stop)


Seconds = Annotated[float, typer.Option(min=0.01)]
ClockSkewOption = Annotated[
    float,
    typer.Option(
        "--clock-skew",
        envvar=ENV_CLOCK_SKEW,
        help="Seconds added to this process's wall clock (to show leases do not depend on it).",
    ),
]


MetricsAddr = Annotated[
    str,
    typer.Option(
        "--metrics-addr", help="Serve /metrics, /healthz and /readyz on HOST:PORT or :PORT; 0: off."
    ),
]


def _metrics(addr: str, metrics: Exported) -> None:
    """Serve a component's metrics (its registry, heartbeat and readiness) in a thread."""
    serve(addr, metrics.registry, metrics.heartbeat, metrics.ready)


@app.command("network-manager")
def network_manager(
    store: StoreOption = None,
    lease_duration: Annotated[float, typer.Option(help="Leader lease duration, seconds.")] = 15.0,
    renew_deadline: Annotated[
        float, typer.Option(help="Stop leading after failing to renew this long.")
    ] = 10.0,
    retry_period: Annotated[float, typer.Option(help="Seconds between lease attempts.")] = 2.0,
    resync: Annotated[
        float, typer.Option(help="Seconds between full comparisons with stored NodeConfigs.")
    ] = 60.0,
    clock_skew: ClockSkewOption = 0.0,
    metrics_addr: MetricsAddr = f":{C.METRICS_PORT['network-manager']}",
) -> None:
    """Plan NodeConfigs from Clusters and ClusterNodes; one active replica (Lease)."""
    from clusterlink.controllers.network_manager import NetworkManager

    with user_errors():
        timing = lease_timing(lease_duration, renew_deadline, retry_period)
        metrics = NetworkManagerMetrics(stall=10 * retry_period + 60)
        manager = NetworkManager(
            open_store(store),
            f"{socket.gethostname()}-{os.getpid()}",
            resync=resync,
            clock=SystemClock(clock_skew),
            metrics=metrics,
        )
        _metrics(metrics_addr, metrics)
        _serve("network-manager", lambda stop: manager.run(stop, timing))


@app.command()
def elector(
    cluster: Annotated[str, typer.Option("--cluster", help="The Cluster this node belongs to.")],
    node: Annotated[str, typer.Option("--node", help="This node's name in its cluster.")],
    store: StoreOption = None,
    netns_name: Annotated[
        str | None, typer.Option("--netns", help="The node's namespace (lab).")
    ] = None,
    interface: Annotated[
        str | None,
        typer.Option(help="Underlay NIC to watch (default: the ClusterNode's interfaceName)."),
    ] = None,
    lease_duration: Annotated[
        float, typer.Option(help="Gateway lease duration, seconds.")
    ] = DEFAULT_TIMING.duration,
    renew_deadline: Annotated[
        float, typer.Option(help="Stop leading after failing to renew this long.")
    ] = DEFAULT_TIMING.renew_deadline,
    retry_period: Annotated[
        float, typer.Option(help="Seconds between lease attempts.")
    ] = DEFAULT_TIMING.retry,
    clock_skew: ClockSkewOption = 0.0,
    metrics_addr: MetricsAddr = f":{C.METRICS_PORT['elector']}",
) -> None:
    """Elect this cluster's gateway among the candidates that run an elector."""
    from clusterlink.agent import netns
    from clusterlink.agent.netlink import LinkWatch  # plain netlink sockets: no pyroute2

    with user_errors():
        timing = lease_timing(lease_duration, renew_deadline, retry_period)
        st = open_store(store)
        if netns_name is not None and not netns.exists(netns_name):
            fail(f"network namespace {netns_name!r} does not exist")
        links = LinkWatch(netns_name)
        underlay_up = UnderlayCheck(
            st, cluster_node_name(cluster, node), links.link_state, interface
        )
        metrics = ElectorMetrics(stall=10 * retry_period + 30)
        worker = Elector(st, cluster, node, timing=timing, underlay_up=underlay_up,
                         clock=SystemClock(clock_skew), metrics=metrics, follow=True)  # fmt: skip
        _metrics(metrics_addr, metrics)
        _serve(f"elector[{cluster}/{node}]", worker.run)


@app.command()
def controller(
    cluster: Annotated[str, typer.Option("--cluster", help="The member Cluster's name.")],
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            "--kubeconfig",
            help="The member: a lab handle or a kubeconfig (default: in-cluster, $KUBECONFIG).",
        ),
    ] = None,
    context: Annotated[
        str | None, typer.Option("--context", help="The kubeconfig context.")
    ] = None,
    service_cidr: Annotated[
        list[str] | None,
        typer.Option(
            "--service-cidr",
            help="Service CIDR(s), for clusters whose kube-apiserver Pod is not visible.",
        ),
    ] = None,
    store: StoreOption = None,
    period: Annotated[float, typer.Option(help="Seconds between syncs.")] = 5.0,
    metrics_addr: MetricsAddr = f":{C.METRICS_PORT['controller']}",
) -> None:
    """Member controller: Nodes -> ClusterNodes, pod/service CIDRs -> Cluster status
    (and, with Calico on Kubernetes, IPPools for the other clusters' CIDRs)."""
    from clusterlink.lab.state import is_lab_handle

    with user_errors():
        st = open_store(store)
        source: FactsPort
        if kubeconfig and is_lab_handle(kubeconfig):
            from clusterlink.lab.facts import LabFacts

            source = LabFacts(kubeconfig, st)
        else:
            from clusterlink.kube.member import KubeFacts
            from clusterlink.kubeclient.api import KubeApi
            from clusterlink.kubeclient.target import Target

            api = KubeApi(Target(kubeconfig, context), field_manager="clusterlink-controller")
            source = KubeFacts(api, st, [normalize_cidr(c) for c in service_cidr or []])
        metrics = ControllerMetrics(stall=3 * period + 60)
        worker = MemberController(st, cluster, source, period=period, metrics=metrics)
        _metrics(metrics_addr, metrics)
        _serve(f"controller[{cluster}]", worker.run)


@app.command()
def floater(
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="TCP port (both families).")
    ] = 8889,
    netns_name: Annotated[
        str | None, typer.Option("--netns", help="Run inside this namespace (lab).")
    ] = None,
    unix: Annotated[
        str | None, typer.Option("--unix", help="Also serve on this Unix socket (control).")
    ] = None,
) -> None:
    """A probe server: answers probes (TCP, HTTP OK on /) and runs probes on request."""
    import asyncio

    from clusterlink.agent import netns
    from clusterlink.doctor.floater import serve

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with netns.entered(netns_name):
            asyncio.run(serve(port, unix))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        fail(f"floater: {exc}")


@app.command("lab-supervisor", context_settings={"allow_extra_args": True})
def lab_supervisor(
    ctx: typer.Context,
    lab: Annotated[str, typer.Option("--lab", help="The lab whose components to keep running.")],
) -> None:
    """Keep a lab's components running (started by `kosmosctl lab up`; stopped by `lab down`)."""
    from clusterlink.lab import spawn
    from clusterlink.lab.state import state_dir
    from clusterlink.lab.supervisor import Supervisor

    if any(ctx.args):  # empty ones are the room for its components' command lines
        fail(f"unexpected arguments: {' '.join(a for a in ctx.args if a)}")
    d = state_dir(lab)
    if not (d / "lab.json").exists():
        fail(f"no lab {lab!r} in {d}")
    spawn.make_title_room()
    stop = Stop()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Supervisor(d, preload=LAB_COMPONENT_MODULES).run(stop)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
