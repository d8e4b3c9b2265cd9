"""Encryption benchmark (issue 15): iperf3 TCP over encrypted and unencrypted paths and a
WireGuard tunnel built by hand on the same nodes, alternating within one run, medians.

- p2p-wireguard: pod -> pod between two encrypted P2P clusters (wg-bridge, wireguard-go);
- gateway-wireguard: internal node -> gateway =wg=> gateway -> internal node, encrypted
  gateway-mode clusters (vx-local, wg-bridge, vx-local);
- p2p-vxlan, gateway-vxlan: the same shapes between unencrypted clusters;
- hand-built-wireguard: pod -> node =wireguard-go=> node -> pod made with `wireguard-go`, `wg`
  and `ip` alone, between the same two nodes as p2p-wireguard (extra pods on routed veths):
  this shape's floor, so p2p-wireguard / hand-built-wireguard is what clusterlink costs. Each
  of its wireguard-go processes runs in a session of its own, as the agent starts ours: with
  autogroup scheduling the kernel shares CPU between sessions first, and a tunnel left in the
  bench's session (with both iperf3 ends) measured ~1.2x faster than the same tunnel in its
  own session - a shape ours cannot have (`ENCRYPTION_HAND_SESSION=bench` measures it; each
  tunnel process's session and autogroup are printed before the rounds);
- hand-built-vxlan-in-wireguard: the design not taken (docs/encryption.md): a VXLAN between
  the same nodes whose underlay is that WireGuard tunnel (VNI 93 between the wg addresses).

Rounds: every round runs every path once, p2p-wireguard and hand-built-wireguard next to
each other (their order swapped every other round), so a change in the host's load hits both
alike; the figure is the median of the round-by-round ratios p2p-wireguard /
hand-built-wireguard, each round's ratio printed. At least 5 rounds (`ENCRYPTION_RUNS`,
default 9: single rounds spread +-20 % on this 2-core host).

CPU: the seconds of CPU that the wireguard-go processes carrying the path used, per Gbit
sent (userspace crypto is the bottleneck here) - only the two endpoint nodes' processes of
that path's device (found by their network namespace and the device on their command line),
not every wireguard-go on the host; and the host's busy CPU share while it ran (kernel VXLAN
works in softirq, which no process is charged for). iperf3's retransmits are printed too.
Goal: p2p-wireguard >= 0.90x hand-built-wireguard.

Environment: `ENCRYPTION_LAB` the lab's name (default `benchwg`; its namespaces are
`cl-<lab>-...`), `ENCRYPTION_RUNS` rounds (default 9), `ENCRYPTION_SECONDS` per run (4);
`ENCRYPTION_HAND_SESSION=bench` starts the hand-built wireguard-go in the bench's session
(the old, unequal shape; default `own`);
`ENCRYPTION_DIAG=1` prints both paths' settings first; `ENCRYPTION_STOP_LAB=1` stops the lab's
control plane (SIGSTOP: agents, their probers, electors, network-manager) during the rounds,
the datapath left as built - to tell its cost from the datapath's; with it,
`ENCRYPTION_CROSS=1` adds hand-built pods routed over our wg-bridge, and `ENCRYPTION_TUNE=
keepalive=0,peers=1` changes our tunnel before the rounds (see `tune_our_tunnel`).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterlink import constants as C
from clusterlink.agent.wgkeys import generate, public_of
from clusterlink.agent.wireguard import WireGuardGo
from clusterlink.api.nodeconfig import WireGuardPeer
from clusterlink.federation import lab as deploy
from clusterlink.federation.membership import wait_connected
from clusterlink.lab.lifecycle import lab_down, lab_up
from clusterlink.lab.state import handle_path, store_url
from clusterlink.lab.topology import Topology, plan_lab
from clusterlink.store.url import open_store

LAB = os.environ.get("ENCRYPTION_LAB", "benchwg")
RUNS = max(5, int(os.environ.get("ENCRYPTION_RUNS", "9")))
HAND_SESSION = os.environ.get("ENCRYPTION_HAND_SESSION", "own")  # own | bench
SECONDS = int(os.environ.get("ENCRYPTION_SECONDS", "4"))
GOAL = 0.90
OURS, HAND = "p2p-wireguard", "hand-built-wireguard"
ENC = {"encryption": "wireguard"}
CLUSTERS = {  # name: (networkType, encrypted)
    "e1": ("p2p", True),
    "e2": ("p2p", True),
    "g1": ("gateway", True),
    "g2": ("gateway", True),
    "u1": ("p2p", False),
    "u2": ("p2p", False),
    "v1": ("gateway", False),
    "v2": ("gateway", False),
}
TOPOLOGY = {
    "name": LAB,
    "clusters": [
        {
            "name": n,
            "nodes": 2,
            "podsPerNode": 1,
            **({"gatewayCandidates": 1} if m == "gateway" else {}),
        }
        for n, (m, _) in CLUSTERS.items()
    ],
}
HW = [f"cl-{LAB}-hw-pa", f"cl-{LAB}-hw-pb"]
HV = [f"cl-{LAB}-hv-pa", f"cl-{LAB}-hv-pb"]
CX = [f"cl-{LAB}-hx-pa", f"cl-{LAB}-hx-pb"]
CROSS = "hand-built-pods-over-our-wg"


def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True, capture_output=True)


def hand_built_wireguard(a: str, a_ip: str, b: str, b_ip: str) -> tuple[str, str, str]:
    """Pods 10.252.1.2 (on node a) and 10.252.2.2 (on node b) over a wireguard-go tunnel
    between the nodes (devices wgh1/wgh2: wireguard-go's sockets share /var/run/wireguard)."""
    keys = [generate(), generate()]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (node, pod) in enumerate(((a, HW[0]), (b, HW[1])), 1):
            key = Path(tmp) / f"k{i}"
            key.write_text(keys[i - 1] + "\n")
            key.chmod(0o600)
            peer_ip, peer_key = (b_ip, public_of(keys[1])) if i == 1 else (a_ip, public_of(keys[0]))
            # A session of its own, as the agent starts ours (`wireguard.start_daemon`) and
            # as any daemon runs: with autogroup scheduling (this host) a wireguard-go left in
            # the bench's session shares one CPU share with both iperf3 ends, a scheduling
            # shape no deployed tunnel has and ours cannot have (ENCRYPTION_HAND_SESSION=bench
            # measures it: ~0.8x for ours; docs/encryption.md).
            own = "" if HAND_SESSION == "bench" else "setsid --wait "
            sh(f"{own}ip netns exec {node} wireguard-go wgh{i}")
            sh(f"wg set wgh{i} private-key {key} listen-port 51900 peer {peer_key} "
               f"endpoint {peer_ip}:51900 allowed-ips 10.252.{3 - i}.0/24,10.253.0.{3 - i}/32")  # fmt: skip
            sh(f"ip -n {node} link set wgh{i} mtu 1440 up")
            sh(f"ip -n {node} addr add 10.253.0.{i}/24 dev wgh{i}")
            sh(f"ip -n {node} route add 10.252.{3 - i}.0/24 dev wgh{i}")
            sh(f"ip netns add {pod} && ip -n {pod} link set lo up")
            sh(f"ip -n {node} link add hw{i} type veth peer name eth0 netns {pod}")
            sh(f"ip -n {node} link set hw{i} up && ip -n {node} addr add 10.252.{i}.1/24 dev hw{i}")
            sh(f"ip -n {pod} link set eth0 up && ip -n {pod} addr add 10.252.{i}.2/24 dev eth0")
            sh(f"ip -n {pod} route add default via 10.252.{i}.1")
    assert base64.b64decode(keys[0])
    return HW[0], HW[1], "10.252.2.2"


def vxlan_in_wireguard(a: str, b: str) -> tuple[str, str, str]:
    """Pods 10.254.1.2 / 10.254.2.2 over VXLAN (VNI 93) whose underlay is the hand-built
    WireGuard tunnel (10.253.0.1 <-> .2): 50 + 60 bytes of overhead, MTU 1390."""
    for i, (node, pod) in enumerate(((a, HV[0]), (b, HV[1])), 1):
        peer = 3 - i
        sh(f"ip -n {node} link add vxw type vxlan id 93 local 10.253.0.{i} dstport 4993 nolearning")
        sh(f"ip -n {node} link set vxw address 02:00:00:00:93:0{i} mtu 1390 up")
        sh(f"ip -n {node} addr add 93.0.0.{i}/24 dev vxw")
        sh(
            f"ip -n {node} neigh add 93.0.0.{peer} lladdr 02:00:00:00:93:0{peer} dev vxw nud permanent"
        )
        sh(
            f"bridge -n {node} fdb append 02:00:00:00:93:0{peer} dev vxw dst 10.253.0.{peer} self permanent"
        )
        sh(f"ip netns add {pod} && ip -n {pod} link set lo up")
        sh(f"ip -n {node} link add hv{i} type veth peer name eth0 netns {pod}")
        sh(f"ip -n {node} link set hv{i} up && ip -n {node} addr add 10.254.{i}.1/24 dev hv{i}")
        sh(f"ip -n {pod} link set eth0 up && ip -n {pod} addr add 10.254.{i}.2/24 dev eth0")
        sh(f"ip -n {pod} route add default via 10.254.{i}.1")
        sh(f"ip -n {node} route add 10.254.{peer}.0/24 via 93.0.0.{peer} dev vxw onlink")
    return HV[0], HV[1], "10.254.2.2"


@dataclass(frozen=True)
class BenchPath:
    """One measured path: iperf3 from `src` to `dst_ip` (served in `dst_ns`); its tunnel is
    the wireguard-go processes of `tunnel`'s (node namespace, device) pairs (none: kernel)."""

    src: str
    dst_ns: str
    dst_ip: str
    tunnel: tuple[tuple[str, str], ...] = ()


def wg_go_pids(tunnel: tuple[tuple[str, str], ...]) -> list[int]:
    """The wireguard-go processes of each (network namespace, device) in `tunnel`: the
    process's /proc/PID/ns/net is that namespace's and the device is on its command line
    (wireguard-go re-executes itself in the background with the same arguments)."""
    wanted = {(os.stat(f"/run/netns/{ns}").st_ino, dev.encode()) for ns, dev in tunnel}
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "wireguard-go":
                continue
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            inode = os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            continue
        if any((inode, arg) in wanted for arg in argv):
            out.append(int(pid))
    return sorted(out)


def sessions(tunnel: tuple[tuple[str, str], ...]) -> str:
    """Where the kernel schedules the path's wireguard-go processes: each one's session and
    autogroup (with autogroup scheduling, CPU is shared between sessions first)."""
    out = []
    for pid in wg_go_pids(tunnel):
        try:
            sid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3]
            group = Path(f"/proc/{pid}/autogroup").read_text().split()[0]
        except (OSError, IndexError):
            sid, group = "?", "-"
        own = " (the bench's)" if int(sid if sid.isdigit() else -1) == os.getsid(0) else ""
        out.append(f"pid {pid} session {sid}{own} {group}")
    return ", ".join(out)


def cpu_of(pids: list[int]) -> float:
    """CPU seconds (user + system, every thread) of these processes so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (after the comm)
    return total / os.sysconf("SC_CLK_TCK")


def host_busy() -> tuple[int, int]:
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass(frozen=True)
class Run:
    gbit: float  # received, Gbit/s
    cpu: float  # CPU seconds of the path's wireguard-go processes
    busy: float  # the host's busy CPU share
    retransmits: int
    rtt_ms: float  # the sender's mean smoothed RTT
    switches: int  # context switches of the path's wireguard-go threads
    tun: tuple[int, int, int, int] = (
        0,
        0,
        0,
        0,
    )  # sender node's tunnel: tx pkts/bytes, rx pkts/bytes


def tun_counters(tunnel: tuple[tuple[str, str], ...]) -> tuple[int, int, int, int]:
    """The sending node's tunnel device counters (data out, ACKs in)."""
    if not tunnel:
        return (0, 0, 0, 0)
    ns, dev = tunnel[0]
    out = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    stats = json.loads(out)[0]["stats64"]
    tx, rx = stats["tx"], stats["rx"]
    return (tx["packets"], tx["bytes"], rx["packets"], rx["bytes"])


def switches_of(pids: list[int]) -> int:
    """Voluntary + involuntary context switches of every thread of these processes so far."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            except OSError:
                continue
            total += sum(int(line.split()[1]) for line in text.splitlines()
                         if "ctxt_switches:" in line)  # fmt: skip
    return total


def iperf(path: BenchPath) -> Run:
    pids = wg_go_pids(path.tunnel)
    if path.tunnel and len(pids) != 2:
        raise RuntimeError(f"wireguard-go of {path.tunnel}: {len(pids)} processes, not 2")
    server = subprocess.Popen(
        ["ip", "netns", "exec", path.dst_ns, "iperf3", "-s", "-1"], stdout=subprocess.DEVNULL
    )
    time.sleep(0.3)
    cpu0, (busy0, all0), sw0 = cpu_of(pids), host_busy(), switches_of(pids)
    tun0 = tun_counters(path.tunnel)
    try:
        out = subprocess.run(
            ["ip", "netns", "exec", path.src, "iperf3", "-c", path.dst_ip, "-t", str(SECONDS),
             "-J"],
            capture_output=True,
            text=True,
            timeout=SECONDS + 20,
        )  # fmt: skip
        end = json.loads(out.stdout)["end"]
        gbit = float(end["sum_received"]["bits_per_second"]) / 1e9
        retransmits = int(end["sum_sent"].get("retransmits", 0))
        rtt = float(end["streams"][0]["sender"].get("mean_rtt", 0)) / 1000
    finally:
        server.kill()
        server.wait()
    busy1, all1 = host_busy()
    busy = (busy1 - busy0) / max(1, all1 - all0)
    tun = tuple(b - a for a, b in zip(tun0, tun_counters(path.tunnel), strict=True))
    return Run(gbit, cpu_of(pids) - cpu0, busy, retransmits, rtt, switches_of(pids) - sw0,
               tun)  # type: ignore[arg-type]  # fmt: skip


def gbits(runs: list[Run]) -> float:
    """Gbit sent over these runs."""
    return sum(r.gbit for r in runs) * SECONDS


def tun_shape(runs: list[Run]) -> str:
    """Mean size of the packets the sender's tunnel carried out, and ACKs in per data out."""
    tx_p, tx_b, rx_p = (sum(r.tun[i] for r in runs) for i in (0, 1, 2))
    if not tx_p:
        return ""
    return f"tun out {tx_b / tx_p:.0f} B/pkt, in/out pkts {rx_p / tx_p:.2f}  "


def cpu_per_gbit(runs: list[Run]) -> float:
    return sum(r.cpu for r in runs) / max(gbits(runs), 1e-9)


def _uapi_dir(node: str) -> str:
    """The node's wireguard-go UAPI socket directory (the lab's `--wireguard-socket-dir`)."""
    lab_dir = os.environ["CLUSTERLINK_LAB_DIR"]
    found = [str(x.parent) for x in Path(lab_dir).glob(f"**/{node}/run/{C.WG_BRIDGE}.sock")]
    if len(found) != 1:
        raise RuntimeError(f"UAPI socket of {node}: {found}")
    return found[0]


def tune_our_tunnel(a: Any, b: Any, change: str) -> None:
    """Change our wg-bridge on both nodes over UAPI (control plane stopped): `keepalive=0`
    turns the peers' persistent keepalive off; `peers=1` removes every peer but the other
    node of the measured path."""
    for node, peer in ((a, b), (b, a)):
        port = WireGuardGo(None, _uapi_dir(node.netns.removeprefix(f"cl-{LAB}-")))
        state = port.observe(C.WG_BRIDGE)
        assert state is not None
        if change == "keepalive=0":
            text = "set=1\n" + "".join(f"public_key={base64.b64decode(k).hex()}\n"
                                        "persistent_keepalive_interval=0\n"
                                        for k in state.peers) + "\n"  # fmt: skip
            port._uapi(C.WG_BRIDGE, text)
        elif change == "peers=1":
            others = [k for k, v in state.peers.items() if not v.endpoint.startswith(f"{peer.ip}:")]
            port.configure(C.WG_BRIDGE, None, None, [], others)
        else:
            raise ValueError(f"ENCRYPTION_TUNE: {change!r}")
        after = port.observe(C.WG_BRIDGE)
        assert after is not None
        print(f"tuned {node.netns} {change}: peers "
              f"{[(v.endpoint, v.keepalive) for v in after.peers.values()]}")  # fmt: skip


def hand_pods_over_our_tunnel(a: Any, b: Any, tunnel: tuple[tuple[str, str], ...]) -> BenchPath:
    """Pods 10.251.1.2 / 10.251.2.2 built like the hand-built ones but routed over our
    wg-bridge (their subnets added to the two nodes' peers' allowed IPs over UAPI; only with
    the control plane stopped, else the agents repair it): tells our tunnel from our pods."""
    for i, (node, peer, pod) in enumerate(((a, b, CX[0]), (b, a, CX[1])), 1):
        port = WireGuardGo(None, _uapi_dir(node.netns.removeprefix(f"cl-{LAB}-")))
        state = port.observe(C.WG_BRIDGE)
        assert state is not None
        key, have = next((k, v) for k, v in state.peers.items()
                         if v.endpoint.startswith(f"{peer.ip}:"))  # fmt: skip
        allowed = (*sorted(have.allowed_ips), f"10.251.{3 - i}.0/24")
        port.configure(C.WG_BRIDGE, None, None,
                       [WireGuardPeer(public_key=key, endpoint=have.endpoint,
                                      allowed_ips=allowed)], [])  # fmt: skip
        sh(f"ip -n {node.netns} route add 10.251.{3 - i}.0/24 dev {C.WG_BRIDGE}")
        sh(f"ip netns add {pod} && ip -n {pod} link set lo up")
        sh(f"ip -n {node.netns} link add hx{i} type veth peer name eth0 netns {pod}")
        sh(f"ip -n {node.netns} link set hx{i} up && "
           f"ip -n {node.netns} addr add 10.251.{i}.1/24 dev hx{i}")  # fmt: skip
        sh(f"ip -n {pod} link set eth0 up && ip -n {pod} addr add 10.251.{i}.2/24 dev eth0")
        sh(f"ip -n {pod} route add default via 10.251.{i}.1")
    ping = subprocess.run(["ip", "netns", "exec", CX[0], "ping", "-c", "3", "-i", "0.2",
                           "10.251.2.2"], capture_output=True, text=True)  # fmt: skip
    print(f"{CROSS}: ping {'ok' if ping.returncode == 0 else 'FAILED'}")
    return BenchPath(CX[0], CX[1], "10.251.2.2", tunnel)


def lab_processes(lab_dir: str) -> list[int]:
    """The lab's own processes (agents with their probers, electors, network-manager,
    controllers: their command lines name the lab directory), not wireguard-go."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if lab_dir.encode() in argv and b"wireguard-go" not in argv:
            out.append(int(pid))
    return out


def diagnose(paths: dict[str, BenchPath]) -> None:
    """What differs between ours and the hand-built path, before the rounds: the pods' and
    tunnels' link settings, the route each node takes, the node's netfilter rules."""
    for name in (OURS, HAND):
        path = paths[name]
        print(f"-- {name}")
        cmds = [f"ip -n {path.src} -d link show eth0", f"ip -n {path.src} route",
                f"ip -n {path.dst_ns} -d link show eth0"]  # fmt: skip
        for ns, dev in path.tunnel:
            cmds += [f"ip -n {ns} -d link show dev {dev}", f"ip -n {ns} route get {path.dst_ip}",
                     f"ip -n {ns} rule", f"ip -n {ns} -s link show dev {dev}"]  # fmt: skip
        for cmd in cmds:
            out = subprocess.run(cmd, shell=True, capture_output=True, text=True)
            print(f"$ {cmd}\n{out.stdout.strip()}{out.stderr.strip()}")
    ns = paths[OURS].tunnel[0][0]
    out = subprocess.run(["ip", "netns", "exec", ns, "iptables-save", "-c"], capture_output=True,
                         text=True)  # fmt: skip
    print(f"$ iptables-save -c ({ns})\n{out.stdout.strip()}")
    out = subprocess.run(["ip", "netns", "exec", ns, "sysctl", "net.netfilter.nf_conntrack_count"],
                         capture_output=True, text=True)  # fmt: skip
    print(out.stdout.strip(), out.stderr.strip())


def measure(paths: dict[str, BenchPath]) -> int:
    """RUNS rounds of every path, ours and the hand-built tunnel side by side; the figure is
    the median of the rounds' ratios."""
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    enabled = autogroup.read_text().strip() if autogroup.exists() else "absent"
    print(f"autogroup scheduling: {enabled}; hand-built wireguard-go session: {HAND_SESSION}")
    for name in (OURS, HAND):
        print(f"{name} tunnel: {sessions(paths[name].tunnel)}")
    runs: dict[str, list[Run]] = {k: [] for k in paths}
    others = [k for k in paths if k not in (OURS, HAND, CROSS)]
    if CROSS in paths:
        others.insert(0, CROSS)
    for r in range(RUNS):
        pair = [OURS, HAND] if r % 2 == 0 else [HAND, OURS]
        for name in pair + others:
            time.sleep(1.0)  # let the previous path's backlog (softirq, goroutines) drain
            runs[name].append(iperf(paths[name]))
        ratio = runs[OURS][-1].gbit / max(runs[HAND][-1].gbit, 1e-9)
        print(f"round {r + 1}: {OURS} {runs[OURS][-1].gbit:.3f} Gbit/s, "
              f"{HAND} {runs[HAND][-1].gbit:.3f} Gbit/s, ratio {ratio:.2f}", flush=True)  # fmt: skip
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    for k, v in runs.items():
        cpu = f"{cpu_per_gbit(v):5.2f} CPU s/Gbit" if paths[k].tunnel else "   - (kernel)"
        print(f"{k:<29} median {statistics.median(r.gbit for r in v):6.3f} Gbit/s  "
              f"runs {[round(r.gbit, 3) for r in v]}  wireguard-go {cpu}  "
              f"retransmits {statistics.median(r.retransmits for r in v):.0f}  "
              f"rtt {statistics.median(r.rtt_ms for r in v):.1f} ms  "
              f"switches/Gbit {sum(r.switches for r in v) / max(gbits(v), 1e-9):.0f}  "
              f"{tun_shape(v)}"
              f"host busy {statistics.median(r.busy for r in v):4.0%}")  # fmt: skip
    ratios = [o.gbit / max(h.gbit, 1e-9) for o, h in zip(runs[OURS], runs[HAND], strict=True)]
    figure = statistics.median(ratios)
    med = {k: statistics.median(r.gbit for r in v) for k, v in runs.items()}
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    print(f"{OURS} / {HAND}: round ratios {[round(x, 2) for x in ratios]}, "
          f"median {figure:.2f} (goal >= {GOAL:.2f}; quartiles {q1:.2f}-{q3:.2f}); "
          f"ratio of the medians {med[OURS] / med[HAND]:.2f}")  # fmt: skip
    print(f"{OURS} / p2p-vxlan {med[OURS] / med['p2p-vxlan']:.3f}; "
          f"vxlan-in-wireguard / {HAND} {med['hand-built-vxlan-in-wireguard'] / med[HAND]:.2f}; "
          f"gateway-wireguard / gateway-vxlan "
          f"{med['gateway-wireguard'] / med['gateway-vxlan']:.3f}")  # fmt: skip
    return 0 if figure >= GOAL else 1


def main() -> int:
    os.environ["CLUSTERLINK_LAB_DIR"] = tempfile.mkdtemp(prefix="cl-bench-wg-")
    plan = plan_lab(Topology.model_validate(TOPOLOGY))
    lab_up(plan, quiet=True)
    try:
        url = store_url(plan.name)
        store = open_store(url)
        for i, (name, (mode, enc)) in enumerate(CLUSTERS.items()):
            fn = deploy.install if i == 0 else deploy.join
            options = deploy.LinkOptions(mode, "ipv4", extra=ENC if enc else {})  # type: ignore[arg-type]
            fn(store, url, str(handle_path(plan.name, name)), name, options, lambda _: None)
        wait_connected(store, list(CLUSTERS), 120)
        c = {n: plan.cluster(n) for n in CLUSTERS}
        a, b = c["e1"].nodes[0], c["e2"].nodes[1]
        hw_src, hw_dst_ns, hw_dst = hand_built_wireguard(a.netns, a.ip or "", b.netns, b.ip or "")
        hv_src, hv_dst_ns, hv_dst = vxlan_in_wireguard(a.netns, b.netns)
        ours = ((a.netns, C.WG_BRIDGE), (b.netns, C.WG_BRIDGE))
        hand = ((a.netns, "wgh1"), (b.netns, "wgh2"))
        gw = tuple((n.netns, C.WG_BRIDGE) for k in ("g1", "g2") for n in c[k].nodes)
        paths = {
            OURS: BenchPath(c["e1"].pods[0].netns, c["e2"].pods[1].netns, c["e2"].pods[1].ip or "",
                        ours),
            HAND: BenchPath(hw_src, hw_dst_ns, hw_dst, hand),
            "hand-built-vxlan-in-wireguard": BenchPath(hv_src, hv_dst_ns, hv_dst, hand),
            "p2p-vxlan": BenchPath(c["u1"].pods[0].netns, c["u2"].pods[1].netns,
                               c["u2"].pods[1].ip or ""),
            "gateway-wireguard": BenchPath(c["g1"].pods[1].netns, c["g2"].pods[1].netns,
                                       c["g2"].pods[1].ip or "", gw),
            "gateway-vxlan": BenchPath(c["v1"].pods[1].netns, c["v2"].pods[1].netns,
                                   c["v2"].pods[1].ip or ""),
        }  # fmt: skip
        for path in paths.values():  # every path carries traffic (handshakes)
            subprocess.run(["ip", "netns", "exec", path.src, "ping", "-c", "3", "-i", "0.2",
                            path.dst_ip], capture_output=True)  # fmt: skip
        if os.environ.get("ENCRYPTION_DIAG"):
            diagnose(paths)
        if not os.environ.get("ENCRYPTION_STOP_LAB"):
            return measure(paths)
        stopped = lab_processes(os.environ["CLUSTERLINK_LAB_DIR"])
        print(f"control plane stopped during the rounds: {len(stopped)} processes")
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        try:
            for change in filter(None, os.environ.get("ENCRYPTION_TUNE", "").split(",")):
                tune_our_tunnel(a, b, change)
            if os.environ.get("ENCRYPTION_CROSS"):
                paths[CROSS] = hand_pods_over_our_tunnel(a, b, paths[OURS].tunnel)
            return measure(paths)
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
    finally:
        lab_down(plan.name, quiet=True)
        subprocess.run(
            ["ip", "-force", "-batch", "-"],
            input="".join(f"netns del {n}\n" for n in HW + HV + CX),
            text=True,
            capture_output=True,
        )


if __name__ == "__main__":
    sys.exit(main())
