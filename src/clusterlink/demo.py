"""`kosmosctl lab demo`: build a lab, install clusterlink, join every cluster, wait until
every node is synced, and prove pods reach each other with the doctor. The one use case that
composes the others (lab life cycle, federation, doctor), so it sits above them all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clusterlink.doctor import run as doctor
from clusterlink.federation import lab as lab_federation
from clusterlink.federation.membership import wait_connected
from clusterlink.lab import lifecycle, services
from clusterlink.lab.cni import pools_pending
from clusterlink.lab.demo import DEFAULT_TOPOLOGY
from clusterlink.lab.state import handle_path, state_dir, store_url
from clusterlink.lab.topology import Topology
from clusterlink.store.url import open_store

Progress = Callable[[str], None]


@dataclass
class DemoOutcome:
    dr: doctor.DrOutcome
    services: list[services.ServiceCheck]

    @property
    def ok(self) -> bool:
        return self.dr.ok and all(c.ok for c in self.services)


def demo(
    filename: Path | None,
    wait_time: float,
    say: Progress,
    progress: Progress,
    bar: doctor.ProbeBar = doctor.no_bar,
) -> DemoOutcome:
    """`say`: the demo's own steps; `progress`: the detail under them."""
    topology = (
        lifecycle.read_topology(filename) if filename else Topology.model_validate(DEFAULT_TOPOLOGY)
    )
    plan = lifecycle.plan_of(topology)
    say(f"1/5 lab {plan.name}: building {len(plan.clusters)} clusters")
    lifecycle.lab_up(plan, progress=progress)
    url = store_url(plan.name)
    st = open_store(url)
    names = []
    for i, c in enumerate(plan.clusters):
        handle = str(handle_path(plan.name, c.name))
        options = lab_federation.topology_options(c)
        if i == 0:
            say(f"2/5 installing clusterlink; {c.name} joins as the control cluster")
            lab_federation.install(st, url, handle, "kosmos-control-cluster", options, progress)
            names.append("kosmos-control-cluster")
        else:
            say(f"    joining {c.name} ({options.network_type}, {options.ip_family})")
            lab_federation.join(st, url, handle, c.name, options, progress)
            names.append(c.name)
    say("3/5 waiting until every node is planned, applied and synced")
    took = wait_connected(
        st, names, wait_time, progress=progress, also=lambda: pools_pending(plan.name, st)
    )
    say(f"    connected in {took:.1f} s")
    first = handle_path(plan.name, plan.clusters[0].name)
    say(
        f"next: kosmosctl get clusters --kubeconfig {first} | kosmosctl lab status | kosmosctl lab down {plan.name}"
    )
    checks = services.check_across(plan)
    if checks:
        say("4/5 Services across clusters, by ClusterIP (kube-proxy's rules in each cluster)")
        for check in checks:
            say(f"    {check.line()}")
    say("5/5 kosmosctl dr: every pod against every pod, each family (ICMP)")
    report = state_dir(plan.name) / "dr-report.html"
    say(f"    (HTML report: {report})")
    handles = [str(handle_path(plan.name, c.name)) for c in plan.clusters]
    request = doctor.DrRequest(handles, report=report)
    return DemoOutcome(doctor.dr(request, progress, bar), checks)
