"""Encryption benchmark (issue 15): iperf3 TCP over encrypted and unencrypted paths and a
WireGuard tunnel built by hand on the same nodes, alternating within one run, medians.

- p2p-wireguard: pod -> pod between two encrypted P2P clusters (wg-bridge, wireguard-go);
- gateway-wireguard: internal node -> gateway =wg=> gateway -> internal node, encrypted
  gateway-mode clusters (vx-local, wg-bridge, vx-local);
- p2p-vxlan, gateway-vxlan: the same shapes between unencrypted clusters;
- hand-built-wireguard: pod -> node =wireguard-go=> node -> pod made with `wireguard-go`, `wg`
  and `ip` alone, between the same two nodes as p2p-wireguard (extra pods on routed veths):
  this shape's floor, so p2p-wireguard / hand-built-wireguard is what clusterlink costs;
- hand-built-vxlan-in-wireguard: the design not taken (docs/encryption.md): a VXLAN between
  the same nodes whose underlay is that WireGuard tunnel (VNI 93 between the wg addresses).

CPU: the seconds of CPU the wireguard-go processes used during each path's runs, per Gbit
sent (userspace crypto is the bottleneck here); and the host's busy CPU share while it ran
(kernel VXLAN works in softirq, which no process is charged for).
Goal: p2p-wireguard >= 0.90x hand-built-wireguard.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clusterlink.agent.wgkeys import generate, public_of
from clusterlink.federation import lab as deploy
from clusterlink.federation.membership import wait_connected
from clusterlink.lab.lifecycle import lab_down, lab_up
from clusterlink.lab.state import handle_path, store_url
from clusterlink.lab.topology import Topology, plan_lab
from clusterlink.store.url import open_store

RUNS = int(os.environ.get("ENCRYPTION_RUNS", "3"))
SECONDS = 4
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
    "name": "benchwg",
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
HW = ["cl-benchhw-pa", "cl-benchhw-pb"]
HV = ["cl-benchhv-pa", "cl-benchhv-pb"]


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
            sh(f"ip netns exec {node} wireguard-go wgh{i}")
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


def wg_go_cpu() -> float:
    """CPU seconds (user + system) of every wireguard-go process so far."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "wireguard-go":
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (after the comm)
        except OSError:
            continue
    return total / os.sysconf("SC_CLK_TCK")


def host_busy() -> tuple[int, int]:
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def iperf(src: str, dst_ns: str, dst_ip: str) -> tuple[float, float, float]:
    """(Gbit/s, wireguard-go CPU seconds, host busy share) of one run."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", dst_ns, "iperf3", "-s", "-1"], stdout=subprocess.DEVNULL
    )
    time.sleep(0.3)
    cpu0, (busy0, all0) = wg_go_cpu(), host_busy()
    try:
        out = subprocess.run(
            ["ip", "netns", "exec", src, "iperf3", "-c", dst_ip, "-t", str(SECONDS), "-J"],
            capture_output=True,
            text=True,
            timeout=SECONDS + 20,
        )
        gbit = float(json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e9
    finally:
        server.kill()
        server.wait()
    busy1, all1 = host_busy()
    return gbit, wg_go_cpu() - cpu0, (busy1 - busy0) / max(1, all1 - all0)


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
        paths = {
            "p2p-wireguard": (c["e1"].pods[0].netns, c["e2"].pods[1].netns, c["e2"].pods[1].ip),
            "hand-built-wireguard": (hw_src, hw_dst_ns, hw_dst),
            "hand-built-vxlan-in-wireguard": (hv_src, hv_dst_ns, hv_dst),
            "p2p-vxlan": (c["u1"].pods[0].netns, c["u2"].pods[1].netns, c["u2"].pods[1].ip),
            "gateway-wireguard": (c["g1"].pods[1].netns, c["g2"].pods[1].netns, c["g2"].pods[1].ip),
            "gateway-vxlan": (c["v1"].pods[1].netns, c["v2"].pods[1].netns, c["v2"].pods[1].ip),
        }
        for src, _dst_ns, dst_ip in paths.values():  # every path carries traffic (handshakes)
            subprocess.run(["ip", "netns", "exec", src, "ping", "-c", "3", "-i", "0.2",
                            dst_ip or ""], capture_output=True)  # fmt: skip
        runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in paths}
        for _ in range(RUNS):
            for name, (src, dst_ns, dst_ip) in paths.items():
                time.sleep(1.0)  # let the previous path's backlog (softirq, goroutines) drain
                runs[name].append(iperf(src, dst_ns, dst_ip or ""))
        med = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
        for k, v in runs.items():
            gbits = sum(r[0] for r in v) * SECONDS
            cpu = sum(r[1] for r in v)
            busy = statistics.median(r[2] for r in v)
            print(f"{k:<29} median {med[k]:5.2f} Gbit/s  runs {[round(r[0], 2) for r in v]}  "
                  f"wireguard-go {cpu / max(gbits, 1e-9):5.2f} CPU s/Gbit  host busy {busy:4.0%}")  # fmt: skip
        ratio = med["p2p-wireguard"] / med["hand-built-wireguard"]
        print(f"p2p-wireguard / hand-built-wireguard {ratio:.2f} (goal >= 0.90); "
              f"p2p-wireguard / p2p-vxlan {med['p2p-wireguard'] / med['p2p-vxlan']:.2f}; "
              f"vxlan-in-wireguard / hand-built-wireguard "
              f"{med['hand-built-vxlan-in-wireguard'] / med['hand-built-wireguard']:.2f}; "
              f"gateway-wireguard / gateway-vxlan "
              f"{med['gateway-wireguard'] / med['gateway-vxlan']:.2f}")  # fmt: skip
        return 0 if ratio >= 0.90 else 1
    finally:
        lab_down(plan.name, quiet=True)
        subprocess.run(
            ["ip", "-force", "-batch", "-"],
            input="".join(f"netns del {n}\n" for n in HW + HV),
            text=True,
            capture_output=True,
        )


if __name__ == "__main__":
    sys.exit(main())
