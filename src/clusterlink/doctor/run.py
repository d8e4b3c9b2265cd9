"""The doctor's use cases: `dr` (every source against every destination, in a lab or on
Kubernetes) and `analysis` (each lab node's NodeConfig against its kernel). They take
progress callbacks and return data; the CLI renders it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterlink import __version__
from clusterlink.api.cluster import Cluster
from clusterlink.api.clusternode import cluster_node_name
from clusterlink.api.nodeconfig import NodeConfig
from clusterlink.doctor import lab as lab_doctor
from clusterlink.doctor import probe
from clusterlink.errors import BadInput
from clusterlink.federation.control import open_control
from clusterlink.lab.state import LabError, is_lab_handle, load_handle, state_dir
from clusterlink.store.base import NotFound

Progress = Callable[[str], None]
# Given the number of pairs, a context whose value advances a progress bar by n pairs.
ProbeBar = Callable[[int], AbstractContextManager[Callable[[int], None]]]

PROTOCOLS = {"icmp": ["icmp"], "tcp": ["tcp"], "all": ["icmp", "tcp"]}


def no_bar(_total: int) -> AbstractContextManager[Callable[[int], None]]:
    return nullcontext(lambda _n: None)


@dataclass(frozen=True)
class DrRequest:
    sources: list[str]  # kubeconfigs or lab handles
    destinations: list[str] = field(default_factory=list)  # empty: the sources themselves
    host_network: bool = False
    image: str | None = None  # Kubernetes: the floater image (default: from the repository)
    image_repository: str | None = None
    floater_wait: float = 120.0
    port: int = 8889
    protocol: str = "icmp"
    concurrency: int = 256
    timeout: float = 2.0
    retries: int = 1
    resume: Path | None = None
    report: Path | None = None
    context: str | None = None


@dataclass
class DrOutcome:
    results: list[probe.Result]
    summary: dict[str, Any]
    resume_path: Path

    @property
    def failed(self) -> list[probe.Result]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.summary["nodesWithoutFloater"]


def dr(request: DrRequest, progress: Progress, bar: ProbeBar = no_bar) -> DrOutcome:
    """Probe every pair; save the failures for --resume, write the report; the outcome."""
    if request.protocol not in PROTOCOLS:
        raise BadInput(f"--protocol {request.protocol!r}: icmp, tcp or all")
    destinations = request.destinations or request.sources
    on_lab = {is_lab_handle(h) for h in dict.fromkeys([*request.sources, *destinations])}
    if len(on_lab) > 1:
        raise BadInput("--src/--dst-kubeconfig: all lab handles or all kubeconfigs, not a mix")
    resume_path = request.resume or default_resume_path(request.sources, on_lab == {True})
    wanted = resume_of(request.resume) if request.resume is not None else None
    started = time.monotonic()
    run = _lab if on_lab == {True} else _kube
    results, missing, placing = run(request, destinations, progress, bar, wanted)
    seconds = time.monotonic() - started
    summary = probe.summary(results, seconds) | {
        "nodesWithoutFloater": sorted(set(missing)),
        "floaterSeconds": round(placing, 3),  # of `seconds`: until the floaters were up
    }
    outcome = DrOutcome(results, summary, resume_path)
    try:
        probe.save_resume(resume_path, results)  # every run: `--resume` means the last one
    except OSError as exc:
        progress(f"warning: cannot save the run to {resume_path}: {exc.strerror or exc}")
    if request.report is not None:
        request.report.write_text(probe.report_html(results, "clusterlink dr"))
    return outcome


# The results, the nodes without a floater, the seconds it took to place the floaters.
Run = tuple[list[probe.Result], list[str], float]
Wanted = set[probe.PairKey] | None  # the pairs to re-test (--resume), None: every pair

RESUME_FILE = "dr-resume.json"
NOTHING_TO_RESUME = (
    "nothing to resume: the last run passed (every pair it tested passed); "
    "run without --resume to test every pair"
)


def default_resume_path(sources: list[str], on_lab: bool) -> Path:
    """Where a run is recorded without --resume: the lab's state directory (of the first
    source), else $XDG_STATE_HOME/clusterlink (~/.local/state/clusterlink) - never the
    current directory."""
    if on_lab:
        return state_dir(str(load_handle(sources[0])["lab"])) / RESUME_FILE
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "clusterlink" / RESUME_FILE


def resume_of(path: Path) -> Wanted:
    """--resume FILE: the failures it records; None (every pair) when FILE does not exist
    yet; BadInput when it records no failure - a resumed run never passes by testing nothing."""
    if not path.exists():
        return None
    wanted = probe.load_resume(path)
    if not wanted:
        raise BadInput(f"--resume {path}: {NOTHING_TO_RESUME}")
    return wanted


def _lab(
    request: DrRequest, destinations: list[str], progress: Progress, bar: ProbeBar, wanted: Wanted
) -> Run:
    try:
        srcs, missing = lab_doctor.lab_places(request.sources, request.host_network)
        dsts, dst_missing = (
            (srcs, [])
            if destinations == request.sources
            else lab_doctor.lab_places(destinations, request.host_network)
        )
    except (LabError, KeyError) as exc:
        raise BadInput(str(exc)) from None
    places = {p.label: p for p in srcs + dsts}
    with lab_doctor.floaters(request.port) as fl:
        placing = time.monotonic()
        for place in places.values():
            fl.start(place)
        up = fl.ready(timeout=15 + 0.2 * len(places))  # many starting at once share the CPU
        placing = time.monotonic() - placing
        for label in sorted(set(places) - up):
            progress(f"warning: floater on {label} did not come up; its pairs are reported as such")
        pairs = _pairs(srcs, dsts, request, progress, wanted)
        return _probe(fl, pairs, up, request, bar), missing + dst_missing, placing


def _kube(
    request: DrRequest, destinations: list[str], progress: Progress, bar: ProbeBar, wanted: Wanted
) -> Run:
    from clusterlink.doctor.kube import KubeCluster, KubeFloaters
    from clusterlink.kube.manifests import DEFAULT_IMAGE
    from clusterlink.kubeclient.api import KubeApi
    from clusterlink.kubeclient.target import Target

    repository = request.image_repository
    image = request.image or (
        f"{repository.rstrip('/')}/clusterlink:{__version__}" if repository else DEFAULT_IMAGE
    )
    clusters: dict[str, KubeCluster] = {}
    for k in dict.fromkeys([*request.sources, *destinations]):
        api = KubeApi(Target(k, request.context), field_manager="kosmosctl-dr")
        clusters[k] = KubeCluster(api.context or Path(k).name, api)
    kf = KubeFloaters(list(clusters.values()), request.host_network, image, request.port)
    try:
        progress(f"placing floater DaemonSets ({image}) ...")
        placing = time.monotonic()
        kf.deploy()
        found, absent = kf.places(request.floater_wait, progress)
        placing = time.monotonic() - placing
        names = {clusters[k].name for k in request.sources}
        dst_names = {clusters[k].name for k in destinations}
        srcs = [p for p in found if p.cluster in names]
        dsts = [p for p in found if p.cluster in dst_names]
        missing = [a for a in absent if a.split("/")[0] in names | dst_names]
        pairs = _pairs(srcs, dsts, request, progress, wanted)
        return _probe(kf, pairs, {p.label for p in found}, request, bar), missing, placing
    finally:
        for problem in kf.cleanup():
            progress(f"warning: floaters not removed: {problem}")


def _pairs(
    srcs: list[probe.Place],
    dsts: list[probe.Place],
    request: DrRequest,
    progress: Progress,
    wanted: Wanted,
) -> list[probe.Pair]:
    pairs = probe.matrix(srcs, dsts, PROTOCOLS[request.protocol])
    if wanted is None:
        return pairs
    pairs = [p for p in pairs if p.key() in wanted]
    if not pairs:
        raise BadInput(
            f"--resume {request.resume}: none of its {len(wanted)} failed pairs is a pair of "
            "these clusters (with this --protocol and network); run without --resume"
        )
    if len(pairs) < len(wanted):
        progress(f"warning: {len(wanted) - len(pairs)} recorded pairs are not pairs of this run")
    progress(f"resuming: {len(pairs)} pairs that failed last time")
    return pairs


def _probe(
    caller: probe.FloaterCaller,
    pairs: list[probe.Pair],
    up: set[str],
    request: DrRequest,
    bar: ProbeBar,
) -> list[probe.Result]:
    with bar(len(pairs)) as advance:
        return asyncio.run(
            probe.probe_all(
                caller,
                pairs,
                up,
                timeout=request.timeout,
                concurrency=request.concurrency,
                port=request.port,
                retries=request.retries,
                done=advance,
            )
        )


NOT_A_LAB = (
    "analysis reads each node's kernel directly. On Kubernetes each agent compares and "
    "repairs its node itself and reports it in its NodeConfig's status (`kosmosctl get "
    "nodeconfigs -o wide`); `kosmosctl dr` checks the datapath"
)


def analysis(
    name: str, kubeconfig: str | None, store: str | None, context: str | None = None
) -> dict[str, list[tuple[str, str]]]:
    """Per node of a lab Cluster: its NodeConfig against its kernel; (type, detail) list,
    empty when in sync."""
    st = open_control(kubeconfig, store, context).store
    try:
        cluster = st.get(Cluster, name)
    except NotFound:
        raise NotFound(f"no Cluster {name}") from None
    try:
        plan = lab_doctor.lab_cluster_of(cluster.spec.kubeconfig or "")
    except LabError as exc:
        raise BadInput(f"Cluster {name} is not a lab cluster: {NOT_A_LAB} ({exc})") from None
    nodes: dict[str, list[tuple[str, str]]] = {}
    for node in plan.nodes:
        cn = cluster_node_name(name, node.name)
        try:
            spec = st.get(NodeConfig, cn).spec
        except NotFound:
            nodes[cn] = [("nodeconfig", "no NodeConfig")]
            continue
        nodes[cn] = lab_doctor.node_drift(node.netns, spec)
    return nodes
