"""WireGuard devices against the fakes: built, kept, repaired, re-keyed and torn down like
every other device; the UAPI text both ways; the key file."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from clusterlink.agent import wgkeys
from clusterlink.agent.fake import FakeFirewall, FakeKernel, FakeWireGuard
from clusterlink.agent.kernel import Link
from clusterlink.agent.reconcile import Reconciler
from clusterlink.agent.wireguard import (
    DeviceState,
    PeerState,
    WireGuardGo,
    WireGuardNode,
    parse_uapi_get,
    start_daemon,
    sync_wireguard,
    uapi_set_text,
)
from clusterlink.api import NodeConfigSpec, Route
from clusterlink.api.nodeconfig import WireGuardDevice, WireGuardPeer

KEY_B = wgkeys.public_of(wgkeys.generate())
KEY_C = wgkeys.public_of(wgkeys.generate())
PEER_B = WireGuardPeer(
    public_key=KEY_B, endpoint="192.168.0.2:51820", allowed_ips=("220.0.0.2/32", "10.2.0.0/16")
)
PEER_C = WireGuardPeer(
    public_key=KEY_C, endpoint="192.168.0.3:51820", allowed_ips=("220.0.0.3/32", "10.3.0.0/16")
)
ROUTES = [
    Route(cidr="10.2.0.0/16", gw="220.0.0.2", dev="wg-bridge"),
    Route(cidr="10.3.0.0/16", gw="220.0.0.3", dev="wg-bridge"),
]


def spec(*peers: WireGuardPeer, mtu: int = 1440) -> NodeConfigSpec:
    device = WireGuardDevice(
        name="wg-bridge",
        addr="220.0.0.1/8",
        listen_port=51820,
        bind_dev="eth0",
        mtu=mtu,
        peers=peers,
    )
    return NodeConfigSpec(wireguard=[device], routes=ROUTES)


def node() -> tuple[FakeKernel, FakeWireGuard, Reconciler, wgkeys.KeyPair]:
    kernel = FakeKernel()
    kernel.add_nic("eth0", ("192.168.0.1/24",), mtu=1500)
    wg = FakeWireGuard(kernel)
    private = wgkeys.generate()
    keys = wgkeys.KeyPair(private, wgkeys.public_of(private))
    return kernel, wg, Reconciler(kernel, FakeFirewall(), None, WireGuardNode(wg, keys)), keys


def test_first_pass_builds_the_device_key_peers_and_routes_then_nothing_changes() -> None:
    kernel, wg, reconcile, keys = node()
    report = reconcile(spec(PEER_B, PEER_C))
    assert report.errors == []
    assert report.devices_created == ["wg-bridge"]
    assert report.peers_changed == 2 + 1 + 1  # two peers, the key, the port
    state = wg.state["wg-bridge"]
    assert state.public_key == keys.public and state.listen_port == 51820
    assert state.peers[KEY_B] == PeerState("192.168.0.2:51820", frozenset(PEER_B.allowed_ips))
    assert {r[:3] for r in kernel.routes} == {(r.cidr, r.gw, r.dev) for r in ROUTES}
    assert kernel.rules == {4}
    again = reconcile(spec(PEER_B, PEER_C))
    assert again.changes == 0 and again.errors == []


def test_a_peer_removed_by_hand_is_back_after_one_pass() -> None:
    _kernel, wg, reconcile, _ = node()
    reconcile(spec(PEER_B, PEER_C))
    wg.remove_peer_by_hand("wg-bridge", KEY_C)
    report = reconcile(spec(PEER_B, PEER_C))
    assert report.peers_changed == 1 and report.devices_created == []
    assert set(wg.state["wg-bridge"].peers) == {KEY_B, KEY_C}
    assert reconcile(spec(PEER_B, PEER_C)).changes == 0


def test_a_deleted_device_is_rebuilt_with_its_routes_in_one_pass() -> None:
    kernel, wg, reconcile, _ = node()
    reconcile(spec(PEER_B, PEER_C))
    kernel.delete_link("wg-bridge")  # as `ip link del wg-bridge`; the routes go with it
    assert not kernel.routes
    report = reconcile(spec(PEER_B, PEER_C))
    assert report.devices_created == ["wg-bridge"] and report.errors == []
    assert len(kernel.routes) == 2 and set(wg.state["wg-bridge"].peers) == {KEY_B, KEY_C}
    assert reconcile(spec(PEER_B, PEER_C)).changes == 0


def test_a_changed_peer_is_updated_in_place_and_a_gone_one_removed() -> None:
    _kernel, wg, reconcile, _ = node()
    reconcile(spec(PEER_B, PEER_C))
    moved = PEER_B.model_copy(update={"endpoint": "192.168.0.9:51820"})
    report = reconcile(spec(moved))
    assert report.devices_deleted == [] and report.peers_changed == 2
    assert wg.state["wg-bridge"].peers == {
        KEY_B: PeerState("192.168.0.9:51820", frozenset(PEER_B.allowed_ips))
    }


def test_an_mtu_change_is_made_in_place_keeping_the_key_and_peers() -> None:
    kernel, wg, reconcile, _ = node()
    reconcile(spec(PEER_B, PEER_C))
    before = kernel.links()["wg-bridge"].index
    report = reconcile(spec(PEER_B, PEER_C, mtu=1400))
    assert report.devices_deleted == [] and report.devices_created == []
    assert report.devices_tuned == ["wg-bridge"] and report.errors == []
    link = kernel.links()["wg-bridge"]
    assert link.mtu == 1400 and link.index == before
    assert set(wg.state["wg-bridge"].peers) == {KEY_B, KEY_C}
    assert reconcile(spec(PEER_B, PEER_C, mtu=1400)).changes == 0


@pytest.mark.parametrize(
    ("what", "mtu", "addrs", "up"),
    [
        ("MTU reset to wireguard-go's default", 1420, None, True),
        ("address removed by hand", None, (), True),
        ("address replaced by hand", None, ("10.99.0.9/24",), True),
        ("downed by hand", None, None, False),
    ],
)
def test_link_drift_is_retuned_in_place(
    what: str, mtu: int | None, addrs: tuple[str, ...] | None, up: bool
) -> None:
    kernel, wg, reconcile, _ = node()
    reconcile(spec(PEER_B))
    link = kernel.links()["wg-bridge"]
    kernel.retune_link("wg-bridge", mtu or link.mtu, link.addrs if addrs is None else addrs, up=up)
    report = reconcile(spec(PEER_B))
    assert report.devices_tuned == ["wg-bridge"], what
    assert report.devices_created == [] and report.devices_deleted == [], what
    after = kernel.links()["wg-bridge"]
    assert (after.mtu, after.addrs, after.up, after.index) == (
        1440,
        link.addrs,
        True,
        link.index,
    ), what
    assert set(wg.state["wg-bridge"].peers) == {KEY_B}, what
    assert reconcile(spec(PEER_B)).changes == 0, what


def test_a_new_key_is_written_to_the_device_alone() -> None:
    _kernel, wg, reconcile, _ = node()
    reconcile(spec(PEER_B))
    private = wgkeys.generate()
    assert reconcile.wireguard is not None
    reconcile.wireguard.keys = wgkeys.KeyPair(private, wgkeys.public_of(private))
    report = reconcile(spec(PEER_B))
    assert report.peers_changed == 1 and report.devices_created == []
    assert wg.state["wg-bridge"].public_key == wgkeys.public_of(private)


def test_teardown_removes_the_device_and_its_routes() -> None:
    kernel, wg, reconcile, _ = node()
    reconcile(spec(PEER_B, PEER_C))
    report = reconcile(None)
    assert report.devices_deleted == ["wg-bridge"]
    assert "wg-bridge" not in kernel.links() and not kernel.routes and not wg.state
    assert kernel.rules == set()


def test_without_a_wireguard_port_the_pass_says_so() -> None:
    kernel = FakeKernel()
    kernel.add_nic("eth0", ("192.168.0.1/24",))
    report = Reconciler(kernel, FakeFirewall())(spec(PEER_B))
    assert any("runs no WireGuard" in e for e in report.errors)


def test_uapi_text_both_ways() -> None:
    private = wgkeys.generate()
    text = uapi_set_text(private, 51820, [PEER_B], [KEY_C])
    lines = text.splitlines()
    assert lines[0] == "set=1" and text.endswith("\n\n")
    assert f"public_key={wgkeys.base64.b64decode(KEY_C).hex()}" in lines
    assert lines[lines.index(f"public_key={wgkeys.base64.b64decode(KEY_C).hex()}") + 1] == (
        "remove=true"
    )
    assert "replace_allowed_ips=true" in lines and "allowed_ip=10.2.0.0/16" in lines
    assert "persistent_keepalive_interval=25" in lines
    answer = (
        f"private_key={wgkeys.base64.b64decode(private).hex()}\nlisten_port=51820\n"
        f"public_key={wgkeys.base64.b64decode(KEY_B).hex()}\nprotocol_version=1\n"
        "endpoint=[fd00:0::2]:51821\npersistent_keepalive_interval=25\n"
        "allowed_ip=10.2.0.0/16\nallowed_ip=220.0.0.2/32\n"
        "tx_bytes=0\nerrno=0\n\n"
    )
    assert parse_uapi_get(answer) == DeviceState(
        51820,
        wgkeys.public_of(private),
        {KEY_B: PeerState("[fd00::2]:51821", frozenset({"10.2.0.0/16", "220.0.0.2/32"}))},
    )


def test_the_key_file_is_private_stable_and_rotates(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = wgkeys.load_or_create(state)
    path = state / wgkeys.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert wgkeys.load_or_create(state) == first  # restart: the same key
    assert first.private not in repr(first)  # never in a log line
    path.chmod(0o644)
    assert wgkeys.load_or_create(state) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rotated = wgkeys.rotate(state, "r1")
    assert rotated.public != first.public and wgkeys.last_rotation(state) == "r1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_analysis_sees_no_drift_after_a_pass_and_a_missing_device_after_a_delete() -> None:
    from clusterlink.agent.drift import drift

    kernel, _wg, reconcile, _ = node()
    reconcile(spec(PEER_B, PEER_C))
    assert drift(kernel, reconcile.firewall, spec(PEER_B, PEER_C)) == []
    kernel.delete_link("wg-bridge")
    found = drift(kernel, reconcile.firewall, spec(PEER_B, PEER_C))
    assert ("device", "wg-bridge: missing") in found
    assert any(kind == "route" and "missing" in text for kind, text in found)


def test_the_agent_keys_only_encrypted_clusters_publishes_the_key_and_rotates_once(
    tmp_path: Path,
) -> None:
    from clusterlink import constants as C
    from clusterlink.agent.service import Agent
    from clusterlink.api import Cluster, ClusterNode, ClusterSpec
    from clusterlink.store.sqlite import SqliteStore
    from tests.unit.agent import seed

    store = SqliteStore(tmp_path / "s.db")
    seed.cluster(store)
    seed.cluster_node(store)
    kernel = seed.node_kernel()
    state = tmp_path / "state"
    wg = WireGuardNode(FakeWireGuard(kernel), None, state)
    agent = Agent(store, "c-n", kernel, FakeFirewall(), detect_nic=False, wireguard=wg)

    def published() -> str:
        return store.get(ClusterNode, "c-n").spec.wireguard_public_key

    agent.sync()
    assert not (state / wgkeys.KEY_FILE).exists() and published() == ""  # unencrypted: no key
    cluster = store.get(Cluster, "c")
    assert cluster.spec.cluster_link_options is not None
    link = cluster.spec.cluster_link_options.model_copy(update={"encryption": "wireguard"})
    store.update(cluster.model_copy(update={"spec": ClusterSpec(cluster_link_options=link)}))
    agent.sync()
    first = published()
    assert first == wgkeys.load_or_create(state).public
    assert stat.S_IMODE((state / wgkeys.KEY_FILE).stat().st_mode) == 0o600
    cn = store.get(ClusterNode, "c-n")
    meta = cn.metadata.model_copy(update={"annotations": {C.ROTATE_KEYS_ANNOTATION: "r1"}})
    store.update(cn.model_copy(update={"metadata": meta}))
    agent.sync()
    second = published()
    assert second not in ("", first)
    agent.sync()
    assert published() == second  # the same request is carried out once


class _StalledWireGuardGo(WireGuardGo):
    """wireguard-go whose process answers nothing in time; creating or deleting is a bug."""

    def create(self, device: WireGuardDevice) -> None:
        raise AssertionError(f"{device.name} was created again")

    def delete(self, name: str) -> None:
        raise AssertionError(f"{name} was deleted although its process is alive")


def test_a_slow_uapi_answer_keeps_the_device_and_a_gone_process_replaces_it(
    tmp_path: Path,
) -> None:
    sock_dir = tmp_path / "run"
    sock_dir.mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_dir / "wg-bridge.sock"))
    listener.listen(4)  # accepts (the kernel's backlog) and never answers: a busy process
    port = _StalledWireGuardGo(None, str(sock_dir), timeout=0.2)
    device = spec(PEER_B).wireguard[0]
    link = Link(device.name, 7, "", device.mtu or 1420, True, "", (device.addr,))
    keys = wgkeys.KeyPair()
    try:
        out = sync_wireguard(port, keys, spec(PEER_B), {device.name: link})
        assert out.deleted == [] and out.created == []
        assert len(out.errors) == 1 and "wg-bridge: UAPI" in out.errors[0], out.errors
    finally:
        listener.close()
    # The process is gone (its socket file stays, nobody listens): observe says so.
    assert WireGuardGo(None, str(sock_dir), timeout=0.2).observe(device.name) is None
    (sock_dir / "wg-bridge.sock").unlink()
    assert WireGuardGo(None, str(sock_dir), timeout=0.2).observe(device.name) is None


def test_create_sets_the_link_only_after_the_daemon_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wireguard-go's daemonized child resets the TUN's MTU as it starts, after the command
    returned, and answers UAPI only after that: the link is set once it has answered."""
    sock_dir = tmp_path / "run"
    sock_dir.mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_dir / "wg-bridge.sock"))
    listener.listen(1)
    events: list[str] = []

    def daemon() -> None:  # the child: answers one request, late
        conn, _ = listener.accept()
        with conn:
            request = conn.recv(1024).decode()
            time.sleep(0.2)
            events.append(f"answered {request.splitlines()[0]}")
            conn.sendall(b"errno=0\n\n")

    thread = threading.Thread(target=daemon, daemon=True)
    thread.start()
    port = WireGuardGo(None, str(sock_dir), timeout=2)
    monkeypatch.setattr(port, "_argv", lambda name: ["true"])  # the parent: made it, exited
    monkeypatch.setattr(
        "clusterlink.agent.wireguard._set_link", lambda ns, dev: events.append("link set")
    )
    try:
        port.create(spec(PEER_B).wireguard[0])
    finally:
        listener.close()
        thread.join(2)
    assert events == ["answered get=1", "link set"]


def test_the_daemon_gets_a_session_of_its_own(tmp_path: Path) -> None:
    """wireguard-go forks to the background without setsid; started in the agent's session it
    would share the agent's autogroup CPU share and its process group's signals. The
    background copy of a program started by `start_daemon` is in another session."""
    out = tmp_path / "sid"
    # The background part outlives the foreground one, as wireguard-go's does, and reports
    # its session (field 6 of /proc/self/stat: awk's own, inherited from the subshell).
    script = (
        f"(sleep 0.2; awk '{{print $6}}' /proc/self/stat > {out}.tmp; mv {out}.tmp {out}) "
        ">/dev/null 2>&1 &"
    )
    proc = start_daemon(["sh", "-c", script])
    assert proc.returncode == 0
    deadline = time.monotonic() + 5
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    daemon_sid = int(out.read_text())
    assert daemon_sid not in (os.getsid(0), 0)
