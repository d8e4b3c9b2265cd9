"""Encrypted links in the lab (issue 15), with real packets: wireguard-go between an encrypted
P2P cluster (Calico) and an encrypted gateway-mode cluster (flannel), both families.

- the packet matrix: every source placement reaches every remote pod, Service and host with
  the source address the design says (tests/e2e/matrix.py);
- confidentiality: a marker a pod sends is never seen on the underlay, only UDP to the
  WireGuard port - and the same capture on an unencrypted lab does see it;
- drift (a peer removed by hand, a device deleted) repaired in one pass; agent restarts lose
  no packet; gateway failover re-keys the remote peers; `kosmosctl rotate-keys`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterlink import constants as C
from clusterlink.agent.wgkeys import public_of
from clusterlink.agent.wireguard import WireGuardGo
from clusterlink.api.clusternode import ClusterNode
from clusterlink.api.nodeconfig import NodeConfig
from clusterlink.lab import supervisor
from clusterlink.lab.state import state_dir, store_url
from tests.conftest import CLUSTERLINK, KOSMOSCTL
from tests.e2e.conftest import lab_name
from tests.e2e.connect import Lab, joined_lab, ping, wait_for
from tests.e2e.matrix import Matrix, probe, serve_everywhere, sources, wait_for_bridges
from tests.e2e.test_connect import PingLog, gateway_of
from tests.e2e.test_matrix import cluster

pytestmark = pytest.mark.netns

ENC = {"join": {"encryption": "wireguard"}}
ENCRYPTED: dict[str, object] = {
    "name": lab_name("wge"),
    "clusters": [
        cluster("wp", "p2p", "calico", **ENC),
        cluster("wg", "gateway", "flannel", **{**ENC, "nodes": 3, "gatewayCandidates": 2}),
    ],
}
PLAIN: dict[str, object] = {
    "name": lab_name("wgp"),
    "clusters": [cluster(name, "p2p", "calico", nodes=1, services=[]) for name in ("pa", "pb")],
}
MARKER = b"CLUSTERLINK-CONFIDENTIAL-7f3a9c"

# Runs in the fabric namespace: every frame crossing one node's fabric port for a while, then
# one JSON line - was the marker seen, and (IP protocol, UDP destination port) of what was.
CAPTURE = """
import json, socket, sys, time
port, seconds, marker = sys.argv[1], float(sys.argv[2]), sys.argv[3].encode()
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((port, 0)); s.settimeout(0.2)
print("ready", flush=True)
seen, kinds, end = False, {}, time.monotonic() + seconds
while time.monotonic() < end:
    try:
        frame = s.recv(65535)
    except TimeoutError:
        continue
    seen = seen or marker in frame
    eth = int.from_bytes(frame[12:14], "big")
    if eth == 0x0800:
        proto, off = frame[23], 14 + (frame[14] & 0x0F) * 4
    elif eth == 0x86DD:
        proto, off = frame[20], 54
    else:
        continue
    dport = int.from_bytes(frame[off + 2:off + 4], "big") if proto == 17 else 0
    key = f"{proto}/{dport}"
    kinds[key] = kinds.get(key, 0) + 1
print(json.dumps({"marker": seen, "kinds": kinds}), flush=True)
"""
SEND = """
import socket, sys, time
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
for _ in range(30):
    s.sendto(sys.argv[2].encode() * 8, (sys.argv[1], 9999)); time.sleep(0.03)
"""


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with joined_lab(ENCRYPTED, None, tmp_path_factory.mktemp("wge")) as lab:
        wait_for(lambda: _reaches(lab), 30, "every encrypted path carries traffic")
        yield lab


def _pod(lab: Lab, cluster: str, node: str) -> tuple[str, str, str]:
    p = next(p for p in lab.plan.cluster(cluster).pods if p.node == node)
    return p.netns, p.ip or "", p.ip6 or ""


def _reaches(lab: Lab) -> bool:
    a, b = _pod(lab, "wp", "n1"), _pod(lab, "wg", "n3")
    return ping(a[0], b[1], wait=0.5) and ping(b[0], a[2], wait=0.5)


def elected(lab: Lab) -> dict[str, str]:
    return {c: gateway_of(lab, c) for c in ("wp", "wg")}


def test_matrix_over_wireguard(encrypted: Lab) -> None:
    modes = {"wp": "p2p", "wg": "gateway"}
    wait_for_bridges(encrypted.plan, modes, elected(encrypted))
    cells = Matrix(encrypted.plan, modes, elected(encrypted)).cells(sources(encrypted.plan))
    servers = serve_everywhere(encrypted.plan)
    try:
        seen = probe(cells)
    finally:
        for proc in servers:
            proc.kill()
    wrong = [
        f"{c.source.label} -> {c.dst_label} ({c.kind}, IPv{c.family}, {c.target}): the server "
        f"saw {seen.get(c)!r}, the design says {c.expected}"
        for c in cells
        if c.expected is not None and seen.get(c) != c.expected
    ]
    assert not wrong, f"{len(wrong)} of {len(cells)} cells wrong:\n" + "\n".join(wrong)
    assert {(c.kind, c.family) for c in cells} == {(k, f) for k in ("pod", "service", "host")
                                                   for f in (4, 6)}  # fmt: skip


def test_wireguard_go_is_reported_and_the_private_key_stays_on_the_node(encrypted: Lab) -> None:
    lab_dir = state_dir(encrypted.plan.name)
    configs = {nc.name: nc for nc in encrypted.store.list(NodeConfig)}
    bridged = {n for n, nc in configs.items() if nc.spec.wireguard}
    assert bridged == {"wp-n1", "wp-n2", f"wg-{gateway_of(encrypted, 'wg')}"}
    assert all(configs[n].status.wireguard == "wireguard-go" for n in bridged)
    assert all(not configs[n].status.wireguard for n in set(configs) - bridged)
    private = []
    for cn in encrypted.store.list(ClusterNode):
        key = lab_dir / "agents" / cn.name / "wireguard.key"
        assert oct(key.stat().st_mode & 0o777) == "0o600"
        private.append(key.read_text().strip())
        assert cn.spec.wireguard_public_key == public_of(private[-1])
    dump = subprocess.run(
        [KOSMOSCTL, "get", "cn", "-o", "json", "--store", store_url(encrypted.plan.name)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    dump += subprocess.run(
        [KOSMOSCTL, "get", "nc", "-o", "json", "--store", store_url(encrypted.plan.name)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    logs = "".join(p.read_text(errors="replace") for p in (lab_dir / "logs").glob("*.log"))
    for key in private:
        assert key not in dump and key not in logs


def capture(lab: Lab, cluster: str, node: str, dst: str, src_netns: str) -> dict[str, object]:
    """Send the marker from `src_netns` to `dst` while capturing on the node's fabric port."""
    port = next(n.fabric_port for n in lab.plan.cluster(cluster).nodes if n.name == node)
    cap = subprocess.Popen(
        ["ip", "netns", "exec", lab.plan.fabric_netns, sys.executable, "-c", CAPTURE,
         port, "2.5", MARKER.decode()],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert cap.stdout is not None and cap.stdout.readline().strip() == "ready"
    subprocess.run(["ip", "netns", "exec", src_netns, sys.executable, "-c", SEND, dst,
                    MARKER.decode()], check=True)  # fmt: skip
    out, _ = cap.communicate(timeout=30)
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.mark.parametrize("family", [4, 6])
def test_the_underlay_never_sees_the_marker_only_wireguard(encrypted: Lab, family: int) -> None:
    src = _pod(encrypted, "wp", "n2")
    dst = _pod(encrypted, "wg", "n3")[1 if family == 4 else 2]
    seen = capture(encrypted, "wp", "n2", dst, src[0])
    port = C.WG_PORT[C.WG_BRIDGE if family == 4 else C.WG_BRIDGE6]
    kinds: dict[str, int] = seen["kinds"]  # type: ignore[assignment]
    assert seen["marker"] is False, seen
    assert kinds.get(f"17/{port}", 0) >= 30, kinds  # every datagram left as WireGuard
    assert not any(k.startswith("17/") and k != f"17/{port}" and n >= 30 for k, n in kinds.items())


def test_without_encryption_the_same_capture_sees_the_marker(tmp_path: Path) -> None:
    """One plain lab for both families, built and taken down inside the test: joined_lab
    points CLUSTERLINK_LAB_DIR at it meanwhile, so it must not outlive the test."""
    with joined_lab(PLAIN, None, tmp_path) as plain:
        src, dst = _pod(plain, "pa", "n1"), _pod(plain, "pb", "n1")
        for family, target in ((4, dst[1]), (6, dst[2])):
            wait_for(lambda t=target: ping(src[0], t, wait=0.5), 20, "plain link up")
            seen = capture(plain, "pa", "n1", target, src[0])
            assert seen["marker"] is True, (family, seen)
            vx = C.PORT[C.VX_BRIDGE if family == 4 else C.VX_BRIDGE6]
            assert seen["kinds"].get(f"17/{vx}", 0) >= 30, (family, seen)  # type: ignore[union-attr]


def _agent_once(lab: Lab, name: str) -> dict[str, object]:
    """One reconcile pass of a node's agent, as the lab runs it, with its report."""
    cluster, node = name.split("-", 1)
    netns = next(n.netns for n in lab.plan.cluster(cluster).nodes if n.name == node)
    node_dir = state_dir(lab.plan.name) / "agents" / name
    out = subprocess.run(
        [CLUSTERLINK, "agent", "--node", name,
         "--store", store_url(lab.plan.name), "--netns", netns, "--once", "-o", "json",
         "--state-dir", str(node_dir), "--wireguard-socket-dir", str(node_dir / "run")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_drift_is_repaired_in_one_pass(encrypted: Lab) -> None:
    lab_dir = state_dir(encrypted.plan.name)
    netns = next(n.netns for n in encrypted.plan.cluster("wp").nodes if n.name == "n1")
    port = WireGuardGo(netns, str(lab_dir / "agents" / "wp-n1" / "run"))
    before = port.observe(C.WG_BRIDGE)
    assert before is not None and before.peers
    victim = sorted(before.peers)[0]
    port.configure(C.WG_BRIDGE, None, None, [], [victim])  # `wg set wg-bridge peer K remove`
    assert victim not in (port.observe(C.WG_BRIDGE) or before).peers
    report = _agent_once(encrypted, "wp-n1")
    assert report["peersChanged"] == 1 and report["errors"] == []
    assert port.observe(C.WG_BRIDGE) == before
    # A deleted device: the running agent hears the kernel say so and rebuilds it at once
    # (agent/events.py); its next pass finds nothing to do.
    old = port.observe(C.WG_BRIDGE6)
    subprocess.run(["ip", "-n", netns, "link", "del", C.WG_BRIDGE6], check=True)
    wait_for(lambda: port.observe(C.WG_BRIDGE6) == old, 10, "wg-bridge-6 rebuilt, same peers")
    assert _agent_once(encrypted, "wp-n1")["changes"] == 0
    # The rebuilt device's keepalives start a handshake at once: traffic flows both ways,
    # whichever side sends first.
    wait_for(lambda: _reaches(encrypted), 10, "traffic over the rebuilt device")


@pytest.mark.parametrize("node", ["wp-n1", "gateway"])
def test_agent_restart_loses_no_packet(encrypted: Lab, node: str) -> None:
    if node == "gateway":
        node = f"wg-{gateway_of(encrypted, 'wg')}"
    src, dst = _pod(encrypted, "wp", "n1"), _pod(encrypted, "wg", "n3")
    pings = PingLog(src[0], dst[1], 3.0)
    time.sleep(0.5)
    cluster, name = node.split("-", 1)
    component = f"{cluster}.agent.{name}"
    old = supervisor.read_status(state_dir(encrypted.plan.name))[component]["pid"]
    subprocess.run(["kill", "-9", str(old)], check=True)
    wait_for(
        lambda: (
            supervisor.read_status(state_dir(encrypted.plan.name))[component].get("pid")
            not in (None, old)
        ),
        10,
        "agent restarted",
    )
    assert pings.lost() == 0


def test_gateway_failover_rekeys_the_remote_peers(encrypted: Lab) -> None:
    old = gateway_of(encrypted, "wg")
    src, dst = _pod(encrypted, "wp", "n1"), _pod(encrypted, "wg", "n3")
    port = next(n.fabric_port for n in encrypted.plan.cluster("wg").nodes if n.name == old)
    fabric = encrypted.plan.fabric_netns
    subprocess.run(["ip", "-n", fabric, "link", "set", port, "down"], check=True)
    try:
        took = wait_for(lambda: ping(src[0], dst[1], wait=0.3), 10, "through the new gateway")
        new = gateway_of(encrypted, "wg")
        keys = {cn.spec.node_name: cn.spec.wireguard_public_key
                for cn in encrypted.store.list(ClusterNode) if cn.spec.cluster_name == "wg"}  # fmt: skip
        nc = encrypted.store.get(NodeConfig, "wp-n1")
        peer_keys = {p.public_key for w in nc.spec.wireguard for p in w.peers}
        assert new != old and keys[new] in peer_keys and keys[old] not in peer_keys
        print(f"\nfailover with encryption: traffic through {new} after {took:.2f} s")
        assert took <= 5.0, f"failover with encryption took {took:.1f} s (goal 5 s)"
        assert ping(src[0], dst[2], wait=0.5)
    finally:
        subprocess.run(["ip", "-n", fabric, "link", "set", port, "up"], check=True)
    wait_for(lambda: _reaches(encrypted), 20, "settled")


def test_rotate_keys_gives_every_node_of_the_cluster_a_new_key(encrypted: Lab) -> None:
    def keys() -> dict[str, str]:
        return {cn.name: cn.spec.wireguard_public_key for cn in encrypted.store.list(ClusterNode)}

    before = keys()
    src, dst = _pod(encrypted, "wg", "n3"), _pod(encrypted, "wp", "n2")
    pings = subprocess.Popen(
        ["ip", "netns", "exec", src[0], "ping", "-n", "-i", "0.02", "-W", "1", "-c", "400",
         dst[1]], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(0.5)
    out = subprocess.run(
        [KOSMOSCTL, "rotate-keys", "--cluster", "wp", "--store", store_url(encrypted.plan.name),
         "-o", "json"], capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(json.loads(out.stdout)["nodes"]) == ["wp-n1", "wp-n2"]
    wait_for(lambda: all(keys()[n] != before[n] for n in ("wp-n1", "wp-n2")), 40, "new keys")
    after = keys()
    assert all(after[n] == before[n] for n in after if not n.startswith("wp-"))
    wait_for(lambda: _reaches(encrypted), 40, "traffic with the new keys")
    text, _ = pings.communicate(timeout=60)
    rtts = [float(line.rsplit("time=", 1)[1].split()[0]) for line in text.splitlines()
            if "time=" in line]  # fmt: skip
    late = [r for r in rtts if r > 100]
    print(f"\nrotate-keys: {400 - len(rtts)} of 400 pings at 20 ms lost, {len(late)} late "
          f"(> 100 ms; worst {max(rtts, default=0):.0f} ms)")  # fmt: skip
