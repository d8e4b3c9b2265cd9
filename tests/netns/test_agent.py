"""The agent on a real kernel: two namespaces joined by a veth underlay, each a node of its own
cluster, programmed from the planner's NodeConfigs."""

from __future__ import annotations

import contextlib
import json
import re
import select
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clusterlink.agent.events import NetlinkEvents
from clusterlink.agent.iptables import IptablesFirewall
from clusterlink.agent.linux import LinuxKernel
from clusterlink.agent.reconcile import Report, reconcile
from clusterlink.agent.service import Agent
from clusterlink.api import NodeConfig, NodeConfigSpec, ObjectMeta, Route
from clusterlink.planner import plan
from clusterlink.store.sqlite import SqliteStore
from tests.conftest import CLUSTERLINK, sh
from tests.unit.planner.federation import cluster, node


@dataclass
class Pair:
    a: str
    b: str
    specs: dict[str, NodeConfigSpec]

    def apply(self, ns: str, spec: NodeConfigSpec | None):
        kernel = LinuxKernel(ns)
        try:
            return reconcile(kernel, IptablesFirewall(ns), spec)
        finally:
            kernel.close()

    def spec(self, ns: str) -> NodeConfigSpec:
        return self.specs["a-n" if ns == self.a else "b-n"]


@pytest.fixture
def pair(make_netns: Callable[[str], str]) -> Iterator[Pair]:
    a, b = make_netns("a"), make_netns("b")
    sh(f"ip -n {a} link add eth0 type veth peer name eth0 netns {b}")
    for ns, i in ((a, 1), (b, 2)):
        sh(
            f"ip -n {ns} link set eth0 up && ip -n {ns} addr add 192.168.77.{i}/24 dev eth0 && "
            f"ip -n {ns} addr add fd77::{i}/64 dev eth0 nodad && "
            # the node's "pod" addresses, inside its pod block
            f"ip -n {ns} addr add 10.{i}.1.1/32 dev lo && ip -n {ns} addr add fd1{i}:0:1::1/128 dev lo"
        )
    p = plan(
        [cluster("a", family="all"), cluster("b", family="all")],
        [
            node("a", "n", "192.168.77.1", "fd77::1", pods=("10.1.1.0/24", "fd11:0:1::/64")),
            node("b", "n", "192.168.77.2", "fd77::2", pods=("10.2.1.0/24", "fd12:0:1::/64")),
        ],
    )
    yield Pair(a, b, dict(p.node_configs()))


def pings(ns: str, src: str, dst: str, count: int = 1) -> bool:
    proc = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "ping",
            "-c",
            str(count),
            "-W",
            "1",
            "-i",
            "0.2",
            "-I",
            src,
            dst,
        ],
        capture_output=True,
    )
    return proc.returncode == 0


def connected(pair: Pair) -> bool:
    return pings(pair.a, "10.1.1.1", "10.2.1.1") and pings(pair.a, "fd11:0:1::1", "fd12:0:1::1")


def test_pings_cross_vx_bridge_v4_and_v6(pair: Pair) -> None:
    assert not pings(pair.a, "10.1.1.1", "10.2.1.1")  # nothing connects them yet
    for ns in (pair.a, pair.b):
        report = pair.apply(ns, pair.spec(ns))
        assert report.errors == [] and report.changes > 0
    assert pings(pair.a, "10.1.1.1", "10.2.1.1", 3)
    assert pings(pair.b, "fd12:0:1::1", "fd11:0:1::1", 3)
    mtu = sh(f"ip -n {pair.a} -o link show vx-bridge-6")
    assert "mtu 1430" in mtu  # 1500 - 70 over an IPv6 underlay
    assert "vxlan id 64" in sh(f"ip -n {pair.a} -d link show vx-bridge-6")
    assert "nolearning" in sh(f"ip -n {pair.a} -d link show vx-bridge")


def test_second_pass_changes_nothing(pair: Pair) -> None:
    pair.apply(pair.a, pair.spec(pair.a))
    report = pair.apply(pair.a, pair.spec(pair.a))
    assert report.changes == 0 and report.errors == []


DRIFTS = {
    "route": "ip -n {ns} route del 10.2.1.0/24 table 200",
    "fdb": "bridge -n {ns} fdb del {mac} dev vx-bridge dst 192.168.77.2 self",
    "neighbour": "ip -n {ns} neigh del 220.168.77.2 dev vx-bridge",
    "iptables-rule": "ip netns exec {ns} iptables -D CLUSTERLINK-FORWARD -o vx-bridge -j ACCEPT",
    "iptables-jump": "ip netns exec {ns} iptables -D FORWARD -j CLUSTERLINK-FORWARD",
    "policy-rule": "ip -n {ns} rule del priority 200",
    "device": "ip -n {ns} link del vx-bridge",
    "device-down": "ip -n {ns} link set vx-bridge down",
    "sysctl": "ip netns exec {ns} sysctl -qw net.ipv4.ip_forward=0",
}


@pytest.mark.parametrize("drift", sorted(DRIFTS))
def test_drift_is_repaired_in_one_pass(pair: Pair, drift: str) -> None:
    for ns in (pair.a, pair.b):
        pair.apply(ns, pair.spec(ns))
    mac = next(d.mac for d in pair.spec(pair.b).devices if d.name == "vx-bridge")
    sh(DRIFTS[drift].format(ns=pair.a, mac=mac))
    report = pair.apply(pair.a, pair.spec(pair.a))
    assert report.changes > 0 and report.errors == [], report.to_dict()
    assert pair.apply(pair.a, pair.spec(pair.a)).changes == 0
    assert connected(pair)


def effective_rules(text: str) -> list[str]:
    """iptables-save without comments and without tables that hold nothing but the default
    ACCEPT policies: nf_tables creates those empty base tables on first use, which is the same
    rule set as none."""
    out: list[str] = []
    for block in text.replace("\nCOMMIT", "\nCOMMIT\x00").split("\x00"):
        lines = [
            line
            for line in block.splitlines()
            if line and not line.startswith("#") and line != "COMMIT"
        ]
        empty = all(
            line.startswith("*")
            or (
                line.startswith(":")
                and " ACCEPT " in line
                and line.split()[0][1:].isupper()
                and "-" not in line.split()[0]
            )
            for line in lines
        )
        if lines and not empty:
            out += [*lines, "COMMIT"]
    return out


def snapshot(ns: str) -> dict[str, list[str]]:
    def lines(cmd: str) -> list[str]:
        return sh(cmd).splitlines()

    return {
        "routes": lines(f"ip -n {ns} route show table all")
        + lines(f"ip -n {ns} -6 route show table all"),
        "rules": lines(f"ip -n {ns} rule") + lines(f"ip -n {ns} -6 rule"),
        "neigh": lines(f"ip -n {ns} neigh show nud permanent"),
        "iptables": sh(f"ip netns exec {ns} iptables-save").splitlines()
        + sh(f"ip netns exec {ns} ip6tables-save").splitlines(),
    }


def normalized(snap: dict[str, list[str]]) -> dict[str, list[str]]:
    return {**snap, "iptables": effective_rules("\n".join(snap["iptables"]))}


def without_ours(snap: dict[str, list[str]]) -> dict[str, list[str]]:
    ours = ("vx-bridge", "vx-local", "CLUSTERLINK", "lookup 200")
    return {k: [line for line in v if not any(o in line for o in ours)] for k, v in snap.items()}


def test_foreign_state_is_byte_identical_before_during_and_after(pair: Pair) -> None:
    ns = pair.a
    # A Kubernetes node forwards already; the agent sets forwarding but never reverts sysctls
    # (neither does Kosmos), and the kernel adds subnet-router anycast routes when it is on.
    sh(f"ip netns exec {ns} sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1")
    sh(
        f"ip -n {ns} route add 10.99.0.0/16 via 192.168.77.254 dev eth0 onlink && "
        f"ip -n {ns} route add 10.98.0.0/16 via 192.168.77.254 dev eth0 onlink table 200 && "
        f"ip -n {ns} rule add from 10.97.0.0/16 lookup 100 priority 300 && "
        f"ip -n {ns} neigh add 192.168.77.99 lladdr 02:00:00:00:00:99 dev eth0 nud permanent && "
        f"ip netns exec {ns} iptables -t nat -N FOREIGN && "
        f"ip netns exec {ns} iptables -t nat -A FOREIGN -s 10.96.0.0/16 -j RETURN && "
        f"ip netns exec {ns} iptables -t nat -A POSTROUTING -j FOREIGN && "
        f"ip netns exec {ns} iptables -A FORWARD -s 10.95.0.0/16 -j DROP"
    )
    before = snapshot(ns)
    assert pair.apply(ns, pair.spec(ns)).errors == []
    during = snapshot(ns)
    assert during != before  # ours is there...
    assert normalized(without_ours(during)) == normalized(before)  # ...and nothing else moved
    assert pair.apply(ns, None).errors == []
    assert normalized(snapshot(ns)) == normalized(before)


def test_teardown_leaves_nothing_of_ours(pair: Pair) -> None:
    pair.apply(pair.a, pair.spec(pair.a))
    report = pair.apply(pair.a, None)
    assert sorted(report.devices_deleted) == ["vx-bridge", "vx-bridge-6"]
    assert "vx-" not in sh(f"ip -n {pair.a} link show")
    assert "lookup 200" not in sh(f"ip -n {pair.a} rule") + sh(f"ip -n {pair.a} -6 rule")
    assert sh(f"ip -n {pair.a} route show table 200") == ""
    saved = sh(f"ip netns exec {pair.a} iptables-save") + sh(
        f"ip netns exec {pair.a} ip6tables-save"
    )
    assert "CLUSTERLINK" not in saved
    assert pair.apply(pair.a, None).changes == 0


def test_throw_routes_apply_converge_repair_and_go(pair: Pair) -> None:
    """An aggregated table: a covering route via the peer and a throw for the own CIDR. The
    throw sends its CIDR on to the main table; a pass converges; a deleted throw is put back;
    teardown removes it (it hangs on no device, so deleting devices would not)."""
    base = pair.spec(pair.a)
    via = base.routes[0]
    spec = base.model_copy(
        update={
            "routes": [
                *base.routes,
                Route(cidr="10.0.0.0/8", gw=via.gw, dev=via.dev),
                Route(cidr="10.1.0.0/16", type="throw"),
            ]
        }
    )
    assert pair.apply(pair.a, spec).errors == []
    assert "throw 10.1.0.0/16" in sh(f"ip -n {pair.a} route show table 200")
    assert f"via {via.gw} dev vx-bridge" in sh(f"ip -n {pair.a} route get 10.77.0.1")
    assert (
        "vx-bridge"
        not in subprocess.run(
            ["ip", "-n", pair.a, "route", "get", "10.1.9.9"], capture_output=True, text=True
        ).stdout
    )  # thrown: the main table decides (it has no route there)
    assert pair.apply(pair.a, spec).changes == 0
    sh(f"ip -n {pair.a} route del throw 10.1.0.0/16 table 200")
    assert pair.apply(pair.a, spec).changes == 1
    assert pair.apply(pair.a, None).errors == []
    assert sh(f"ip -n {pair.a} route show table 200") == ""


def ruleset(ns: str) -> str:
    """`nft list ruleset` without packet counters (they move with traffic)."""
    text = sh(f"ip netns exec {ns} nft list ruleset")
    return re.sub(r"counter packets \d+ bytes \d+", "counter", text)


def test_teardown_leaves_the_ruleset_as_it_was(pair: Pair) -> None:
    """Tables our rules made us create go with our last rule: an empty nat table would keep
    connection tracking on for every packet. A namespace with no tables has none again."""
    assert ruleset(pair.a) == ""
    pair.apply(pair.a, pair.spec(pair.a))
    assert "CLUSTERLINK" in ruleset(pair.a)
    assert pair.apply(pair.a, None).errors == []
    assert ruleset(pair.a) == ""


def test_tables_that_were_there_stay(pair: Pair) -> None:
    """A table someone else made (even empty, even the same name) is never ours to delete."""
    sh(f"ip netns exec {pair.a} iptables -t filter -N THEIRS")
    sh(f"ip netns exec {pair.a} iptables -t filter -X THEIRS")  # an empty filter table left
    sh(f"ip netns exec {pair.a} ip6tables -t nat -A POSTROUTING -s fd99::/64 -j MASQUERADE")
    before = ruleset(pair.a)
    assert "table ip filter" in before and "table ip6 nat" in before
    pair.apply(pair.a, pair.spec(pair.a))
    assert pair.apply(pair.a, None).errors == []
    assert ruleset(pair.a) == before


def _store_with_nodeconfigs(tmp_path: Path, pair: Pair) -> SqliteStore:
    store = SqliteStore(tmp_path / "store.db")
    for name, spec in pair.specs.items():
        store.create(NodeConfig(metadata=ObjectMeta(name=name), spec=spec))
    return store


def agent_once(name: str, ns: str, url: str) -> int:
    """A whole agent process: start, one pass, exit; returns the kernel changes it made."""
    cmd = [
        CLUSTERLINK,
        "agent",
        "--node",
        name,
        "--netns",
        ns,
        "--store",
        url,
        "--once",
        "--no-detect-nic",
        "-o",
        "json",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return int(json.loads(out.stdout)["changes"])


def test_restart_changes_nothing_and_loses_no_ping(pair: Pair, tmp_path: Path) -> None:
    store = _store_with_nodeconfigs(tmp_path, pair)
    url = f"sqlite://{tmp_path}/store.db"
    nodes = (("a-n", pair.a), ("b-n", pair.b))
    assert all(agent_once(name, ns, url) > 0 for name, ns in nodes)
    assert store.get(NodeConfig, "a-n").status.phase == "Synced"
    ping = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            pair.a,
            "ping",
            "-q",
            "-i",
            "0.01",
            "-c",
            "300",
            "-W",
            "1",
            "-I",
            "10.1.1.1",
            "10.2.1.1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    # The agent restarts on both nodes, three times, while pings flow at 10 ms.
    restarts = [agent_once(name, ns, url) for _ in range(3) for name, ns in nodes]
    out, _ = ping.communicate(timeout=30)
    assert restarts == [0] * 6
    assert " 0% packet loss" in out, out


def test_agent_service_follows_its_nodeconfig(pair: Pair, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    kernel = LinuxKernel(pair.a)
    agent = Agent(
        store,
        "a-n",
        kernel,
        IptablesFirewall(pair.a),
        netns_name=pair.a,
        resync=0.5,
        detect_nic=False,
    )
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        pair.apply(pair.b, pair.spec(pair.b))
        store.create(NodeConfig(metadata=ObjectMeta(name="a-n"), spec=pair.spec(pair.a)))
        wait_for(lambda: store.get(NodeConfig, "a-n").status.phase == "Synced", "status Synced")
        status = store.get(NodeConfig, "a-n").status
        assert status.observed_generation == 1 and status.last_sync_time and status.spec_hash
        assert connected(pair)
        sh(f"ip -n {pair.a} route del 10.2.1.0/24 table 200")  # drift: repaired by the resync
        wait_for(
            lambda: "10.2.1.0/24" in sh(f"ip -n {pair.a} route show table 200"), "route repaired"
        )
        store.delete(NodeConfig, "a-n")  # gone: tear down
        wait_for(lambda: "vx-" not in sh(f"ip -n {pair.a} link show"), "teardown")
    finally:
        agent.stop(stop)  # wakes the loop too: stop alone waits out the resync timer
        thread.join(timeout=10)
        kernel.close()
    assert not thread.is_alive()


NOTIFIED = sorted(set(DRIFTS) - {"sysctl"})  # sysctls send no notification: the timer's


@pytest.mark.parametrize("drift", NOTIFIED)
def test_kernel_notifications_repair_drift_without_the_timer(
    pair: Pair, drift: str, tmp_path: Path
) -> None:
    """Each kind of hand deletion is repaired by the pass the kernel's notification wakes:
    the resync timer is an hour away. (How fast: bench/bench_repair.py.)"""
    pair.apply(pair.b, pair.spec(pair.b))
    store = _store_with_nodeconfigs(tmp_path, pair)
    kernel = LinuxKernel(pair.a)
    events = NetlinkEvents(pair.a)
    agent = Agent(store, "a-n", kernel, IptablesFirewall(pair.a), events=events,
                  netns_name=pair.a, resync=3600, detect_nic=False)  # fmt: skip
    passes: list[int] = []
    sync = agent.sync

    def counted() -> Report:
        report = sync()
        passes.append(report.changes)
        return report

    agent.sync = counted  # type: ignore[method-assign]
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: store.get(NodeConfig, "a-n").status.phase == "Synced", "first pass")
        wait_for(lambda: len(passes) >= 2 and passes[-1] == 0, "the kernel settled")
        before = len(passes)
        mac = next(d.mac for d in pair.spec(pair.b).devices if d.name == "vx-bridge")
        sh(DRIFTS[drift].format(ns=pair.a, mac=mac))
        wait_for(lambda: any(passes[before:]), f"{drift}: a pass that repairs it")
        assert agent.kernel_wakeups > 0
        assert pair.apply(pair.a, pair.spec(pair.a)).changes == 0  # repaired, all of it
        assert connected(pair)
    finally:
        agent.stop(stop)  # wakes the loop too: stop alone waits out the hour-long timer
        thread.join(timeout=10)
        kernel.close()
        events.close()
    assert not thread.is_alive()


@contextlib.contextmanager
def settled_events(pair: Pair) -> Iterator[NetlinkEvents]:
    """Notifications in a's namespace, once its spec is applied and those of our own writes
    are drained."""
    events = NetlinkEvents(pair.a)
    try:
        pair.apply(pair.a, pair.spec(pair.a))
        while events.wait(0.2):
            pass  # our own writes
        yield events
    finally:
        events.close()


def test_foreign_changes_wake_no_pass(pair: Pair) -> None:
    """Routes, neighbours and rules that are not ours do not wake the agent."""
    with settled_events(pair) as events:
        sh(f"ip -n {pair.a} route add 10.99.0.0/24 dev eth0")
        sh(f"ip -n {pair.a} neigh add 192.168.77.9 lladdr 02:00:00:00:00:09 dev eth0")
        sh(f"ip netns exec {pair.a} iptables -t filter -A INPUT -s 10.98.0.0/16 -j ACCEPT")
        assert not events.wait(0.5)
        sh(f"ip -n {pair.a} route del 10.2.1.0/24 table 200")
        assert events.wait(2.0)


def test_the_kernel_drops_other_devices_neighbour_churn_and_a_stop_interrupts(
    pair: Pair,
) -> None:
    """The socket filter: neighbour notifications of a device not ours never reach the
    socket (no wake-up at all), ours still do; `interrupt` ends a long wait at once."""
    with settled_events(pair) as events:
        sh(f"ip -n {pair.a} neigh add 192.168.77.9 lladdr 02:00:00:00:00:09 dev eth0")
        sh(f"ip -n {pair.a} neigh del 192.168.77.9 dev eth0")
        assert select.select([events.route], [], [], 0.5)[0] == [], "eth0's neighbours queued"
        sh(f"ip -n {pair.a} neigh add 10.222.0.77 lladdr 02:00:00:00:00:77 dev vx-bridge")
        assert events.wait(2.0), "a neighbour on vx-bridge woke nothing"
        threading.Timer(0.2, events.interrupt).start()
        began = time.monotonic()
        assert not events.wait(30.0)
        assert time.monotonic() - began < 2.0


def test_the_firewall_reads_iptables_again_only_after_an_nf_tables_change(pair: Pair) -> None:
    """With the cache (the agent's), a no-op observe runs no iptables-save; a rule changed by
    hand is read at the next observe."""
    pair.apply(pair.a, pair.spec(pair.a))
    firewall = IptablesFirewall(pair.a, cache=True)
    try:
        assert firewall.changes is not None  # this host's iptables is iptables-nft
        first = firewall.observe()
        saves = firewall.saves
        assert firewall.observe() == first and firewall.saves == saves
        sh(f"ip netns exec {pair.a} iptables -t filter -A INPUT -s 10.97.0.0/16 -j ACCEPT")
        firewall.observe()
        assert firewall.saves == saves + 2, "an nf_tables change was not read again"
        assert firewall.observe() is not None and firewall.saves == saves + 2
    finally:
        firewall.close()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigterm_leaves_the_kernel_alone(pair: Pair, tmp_path: Path) -> None:
    _store_with_nodeconfigs(tmp_path, pair)
    proc = subprocess.Popen(
        [
            CLUSTERLINK,
            "agent",
            "--node",
            "a-n",
            "--netns",
            pair.a,
            "--store",
            f"sqlite://{tmp_path}/store.db",
            "--no-detect-nic",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: "vx-bridge" in sh(f"ip -n {pair.a} link show"), "agent applied")
        time.sleep(0.3)
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    assert "vx-bridge" in sh(f"ip -n {pair.a} link show")
    assert "10.2.1.0/24" in sh(f"ip -n {pair.a} route show table 200")


def test_kernel_adapter_stays_in_its_namespace_from_any_thread(pair: Pair) -> None:
    """Regression: pyroute2 sockets made under setns answered from the root namespace when
    used from another thread, and an agent thread created vx devices on the host."""
    kernel = LinuxKernel(pair.a)
    seen: dict[str, set[str]] = {}
    try:
        worker = threading.Thread(target=lambda: seen.setdefault("links", set(kernel.links())))
        worker.start()
        worker.join()
        report: dict[str, object] = {}
        worker = threading.Thread(
            target=lambda: report.setdefault(
                "r", reconcile(kernel, IptablesFirewall(pair.a), pair.spec(pair.a))
            )
        )
        worker.start()
        worker.join()
    finally:
        kernel.close()
    assert seen["links"] == {"lo", "eth0"}
    assert "vx-bridge" in sh(f"ip -n {pair.a} link show")


@pytest.mark.parametrize(
    "options",
    [{"default_nic_name": "eth0"}, {"autodetection_method": "can-reach=192.168.77.2"}],
    ids=["default-nic", "can-reach"],
)
def test_agent_fills_its_clusternode(pair: Pair, tmp_path: Path, options: dict[str, str]) -> None:
    from clusterlink.api import (
        Cluster,
        ClusterLinkOptions,
        ClusterNode,
        ClusterNodeSpec,
        ClusterSpec,
    )

    store = SqliteStore(tmp_path / "store.db")
    store.create(
        Cluster(
            metadata=ObjectMeta(name="a"),
            spec=ClusterSpec(cluster_link_options=ClusterLinkOptions(**options)),
        )
    )
    store.create(
        ClusterNode(
            metadata=ObjectMeta(name="a-n"),
            spec=ClusterNodeSpec(cluster_name="a", node_name="n", ip6="fd99::1"),  # a stale ip6
        )
    )
    kernel = LinuxKernel(pair.a)
    try:
        Agent(store, "a-n", kernel, IptablesFirewall(pair.a), netns_name=pair.a).sync()
    finally:
        kernel.close()
    spec = store.get(ClusterNode, "a-n").spec
    assert (spec.interface_name, spec.ip, spec.ip6, spec.mtu) == (
        "eth0",
        "192.168.77.1",
        "fd77::1",
        1500,
    )


@pytest.mark.parametrize("drift", ["route", "fdb", "neighbour", "device-down"])
def test_change_feed_never_hides_drift(pair: Pair, drift: str) -> None:
    """One long-lived adapter (as in the agent): after passes that reuse the last dump, a
    change made behind its back is still seen and repaired."""
    for ns in (pair.a, pair.b):
        pair.apply(ns, pair.spec(ns))
    kernel = LinuxKernel(pair.a)
    try:
        firewall = IptablesFirewall(pair.a)
        spec = pair.spec(pair.a)
        assert reconcile(kernel, firewall, spec).changes == 0  # warms the cache
        assert reconcile(kernel, firewall, spec).changes == 0  # served from it
        mac = next(d.mac for d in pair.spec(pair.b).devices if d.name == "vx-bridge")
        sh(DRIFTS[drift].format(ns=pair.a, mac=mac))
        report = reconcile(kernel, firewall, spec)
        assert report.changes > 0 and report.errors == []
        assert reconcile(kernel, firewall, spec).changes == 0
    finally:
        kernel.close()
    assert connected(pair)
