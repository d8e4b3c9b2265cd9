"""The kernel WireGuard adapter against a fake kernel that speaks generic netlink bytes.

This kernel has no WireGuard module, so `KernelWireGuard` runs over pyroute2's real
`WireGuard` socket class bound to a recording socket (one end of a socketpair): every request
is pyroute2's own encoding, captured as bytes; `FakeWgKernel` decodes them with pyroute2's
`wgmsg`, applies set requests to its devices the way drivers/net/wireguard/netlink.c does
(remove, replace allowed IPs, update) and answers dumps the way the kernel does: the device's
attributes in the first message, at most `budget` peer slots per message, a peer whose allowed
IPs do not fit continued in the next message under its public key with only its allowed IPs.
"""

from __future__ import annotations

import errno
import queue
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pyroute2 import NetlinkError
from pyroute2 import WireGuard as GenlWireGuard
from pyroute2.netlink import NLM_F_DUMP, NLM_F_MULTI, NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.generic import GENL_ID_CTRL, ctrlmsg
from pyroute2.netlink.generic.wireguard import (
    WGPEER_F_REMOVE_ME,
    WGPEER_F_REPLACE_ALLOWEDIPS,
    WGPEER_F_UPDATE_ONLY,
    wgmsg,
)

from clusterlink import constants as C
from clusterlink.agent import wgkeys
from clusterlink.agent.kernel import Link
from clusterlink.agent.wireguard import (
    DeviceState,
    KernelWireGuard,
    PeerState,
    parse_kernel_dump,
    sync_wireguard,
)
from clusterlink.api import NodeConfigSpec
from clusterlink.api.nodeconfig import WireGuardDevice, WireGuardPeer

WG_FAMILY_ID = 0x1F  # what the fake's controller answers for "wireguard"
DEV = "wg-bridge"


@dataclass
class FakePeer:
    endpoint: tuple[str, int] | None = None
    keepalive: int = 0
    allowed: list[str] = field(default_factory=list)  # "ip/prefix", kernel order


@dataclass
class FakeDevice:
    ifindex: int
    private: str = ""
    listen_port: int = 0
    peers: dict[str, FakePeer] = field(default_factory=dict)  # public key -> peer, in order


class FakeWgKernel:
    """Wireguard devices as generic netlink sees them. `budget`: the slots of one dump
    message (a peer's header and each allowed IP take one each), so small budgets split."""

    def __init__(self, budget: int = 1000) -> None:
        self.devices: dict[str, FakeDevice] = {}
        self.budget = budget
        self.dumps: list[int] = []  # messages per dump answered

    def add_device(self, name: str) -> FakeDevice:
        self.devices[name] = FakeDevice(ifindex=10 + len(self.devices))
        return self.devices[name]

    def socket(self) -> RecordingSocket:
        return RecordingSocket(self)

    def open(self) -> Any:
        """What `KernelWireGuard(open_socket=...)` calls: pyroute2's class, our transport."""
        return GenlWireGuard(use_socket=self.socket())

    # -- requests -----------------------------------------------------------------------------

    def answer(self, data: bytes) -> list[bytes]:
        length, kind, flags, seq, pid = struct.unpack_from("=IHHII", data, 0)
        assert length == len(data), "one request per send"
        if kind == GENL_ID_CTRL:
            return [self._family(seq, pid)]
        assert kind == WG_FAMILY_ID, f"request for unknown family {kind}"
        msg = wgmsg(data)
        msg.decode()
        name = msg.get_attr("WGDEVICE_A_IFNAME")
        device = self.devices.get(name)
        if device is None:
            return [_error(-errno.ENODEV, data)]
        if flags & NLM_F_DUMP:
            return [*self._dump(name, device, seq, pid), _done(seq, pid)]
        self._apply(device, msg)
        return [_error(0, data)]

    def _family(self, seq: int, pid: int) -> bytes:
        msg = ctrlmsg()
        msg["cmd"], msg["version"] = 1, 2  # CTRL_CMD_NEWFAMILY
        msg["attrs"] = [
            ["CTRL_ATTR_FAMILY_ID", WG_FAMILY_ID],
            ["CTRL_ATTR_FAMILY_NAME", "wireguard"],
        ]
        msg["header"] = {"type": GENL_ID_CTRL, "flags": 0, "sequence_number": seq, "pid": pid}
        msg.encode()
        return bytes(msg.data)

    def _apply(self, device: FakeDevice, msg: Any) -> None:
        private = msg.get_attr("WGDEVICE_A_PRIVATE_KEY")
        if private is not None:
            device.private = private.decode()
        port = msg.get_attr("WGDEVICE_A_LISTEN_PORT")
        if port is not None:
            device.listen_port = int(port)
        for peer in msg.get_attr("WGDEVICE_A_PEERS") or []:
            key = peer.get_attr("WGPEER_A_PUBLIC_KEY").decode()
            flags = peer.get_attr("WGPEER_A_FLAGS") or 0
            if flags & WGPEER_F_REMOVE_ME:
                device.peers.pop(key, None)
                continue
            if key not in device.peers:
                if flags & WGPEER_F_UPDATE_ONLY:
                    continue
                device.peers[key] = FakePeer()
            have = device.peers[key]
            ep = peer.get_attr("WGPEER_A_ENDPOINT")
            if ep is not None:
                have.endpoint = (ep["addr"], ep["port"])
            keepalive = peer.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL")
            if keepalive is not None:
                have.keepalive = int(keepalive)
            if flags & WGPEER_F_REPLACE_ALLOWEDIPS:
                have.allowed = []
            for ip in peer.get_attr("WGPEER_A_ALLOWEDIPS") or []:
                if ip["addr"] not in have.allowed:
                    have.allowed.append(ip["addr"])

    def _dump(self, name: str, device: FakeDevice, seq: int, pid: int) -> list[bytes]:
        out: list[bytes] = []
        attrs: list[Any] = [["WGDEVICE_A_LISTEN_PORT", device.listen_port],
                            ["WGDEVICE_A_FWMARK", 0],
                            ["WGDEVICE_A_IFINDEX", device.ifindex],
                            ["WGDEVICE_A_IFNAME", name]]  # fmt: skip
        if device.private:
            attrs += [["WGDEVICE_A_PRIVATE_KEY", device.private],
                      ["WGDEVICE_A_PUBLIC_KEY", wgkeys.public_of(device.private)]]  # fmt: skip
        chunk: list[Any] = []
        room = self.budget

        def flush() -> None:
            nonlocal attrs, chunk, room
            msg = wgmsg()
            msg["cmd"], msg["version"] = 0, 1  # WG_CMD_GET_DEVICE
            msg["attrs"] = [*attrs, *([["WGDEVICE_A_PEERS", chunk]] if chunk else [])]
            msg["header"] = {"type": WG_FAMILY_ID, "flags": NLM_F_MULTI,
                             "sequence_number": seq, "pid": pid}  # fmt: skip
            msg.encode()
            out.append(bytes(msg.data))
            attrs, chunk, room = [], [], self.budget  # later messages: peers only

        for key, peer in device.peers.items():
            first, ips = True, list(peer.allowed)
            while first or ips:
                if room < 2:
                    flush()
                head: list[Any] = [["WGPEER_A_PUBLIC_KEY", key]]
                if first:
                    if peer.endpoint is not None:
                        head.append(["WGPEER_A_ENDPOINT",
                                     {"addr": peer.endpoint[0], "port": peer.endpoint[1]}])  # fmt: skip
                    head += [["WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL", peer.keepalive],
                             ["WGPEER_A_RX_BYTES", 0], ["WGPEER_A_TX_BYTES", 0],
                             ["WGPEER_A_PROTOCOL_VERSION", 1]]  # fmt: skip
                room -= 1
                take, ips = ips[:room], ips[room:]
                room -= len(take)
                if take:
                    head.append(["WGPEER_A_ALLOWEDIPS", [_allowed_ip(x) for x in take]])
                chunk.append({"attrs": head})
                first = False
        flush()
        self.dumps.append(len(out))
        return out


def _allowed_ip(cidr: str) -> dict[str, Any]:
    addr, prefix = cidr.split("/")
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    return {"attrs": [["WGALLOWEDIP_A_FAMILY", family],
                      ["WGALLOWEDIP_A_IPADDR", socket.inet_pton(family, addr)],
                      ["WGALLOWEDIP_A_CIDR_MASK", int(prefix)]]}  # fmt: skip


def _error(code: int, request: bytes) -> bytes:
    """An ack (0: the code and the request's header) or an error (-errno: the code and the
    whole request), as netlink_ack() writes them."""
    _, _, _, seq, pid = struct.unpack_from("=IHHII", request, 0)
    body = struct.pack("=i", code) + (request[:16] if code == 0 else request)
    return struct.pack("=IHHII", 16 + len(body), NLMSG_ERROR, 0, seq, pid) + body


def _done(seq: int, pid: int) -> bytes:
    return struct.pack("=IHHIIi", 20, NLMSG_DONE, NLM_F_MULTI, seq, pid, 0)


class RecordingSocket(socket.socket):
    """The netlink socket pyroute2 is given: what it sends is recorded and answered by the
    fake kernel; the answers come back through the other end of a socketpair, one datagram
    per message as a dump's skbs do (written by a thread, since a datagram queue is short)."""

    def __init__(self, kernel: FakeWgKernel) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        super().__init__(socket.AF_UNIX, socket.SOCK_DGRAM, 0, fileno=ours.detach())
        self.kernel = kernel
        self.sent: list[bytes] = []
        self._theirs = theirs
        self._out: queue.Queue[bytes | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write, daemon=True)
        self._writer.start()

    def _write(self) -> None:
        while (data := self._out.get()) is not None:
            self._theirs.send(data)
        self._theirs.close()

    def bind(self, address: Any) -> None:  # a netlink port id: nothing to bind here
        pass

    def sendto(self, data: Any, *_: Any) -> int:  # type: ignore[override]
        return self.send(data)

    def send(self, data: Any, flags: int = 0) -> int:
        self.sent.append(bytes(data))
        for answer in self.kernel.answer(bytes(data)):
            self._out.put(answer)
        return len(data)

    def close(self) -> None:
        self._out.put(None)
        super().close()


# -- helpers ----------------------------------------------------------------------------------


def keys(n: int) -> list[str]:
    return [wgkeys.public_of(wgkeys.generate()) for _ in range(n)]


def peers(n: int, ips_each: int = 2) -> list[WireGuardPeer]:
    out = []
    for i, key in enumerate(keys(n)):
        allowed = [f"220.0.{i // 250}.{i % 250 + 1}/32"]
        allowed += [f"10.{i % 250}.{j}.0/24" for j in range(ips_each - 1)]
        out.append(WireGuardPeer(public_key=key, endpoint=f"192.168.{i // 250}.{i % 250 + 1}"
                                 ":51820", allowed_ips=tuple(allowed)))  # fmt: skip
    return out


def device(ps: list[WireGuardPeer], family: int = 4) -> WireGuardDevice:
    return WireGuardDevice(
        name=DEV if family == 4 else C.WG_BRIDGE6,
        addr="220.0.0.1/8" if family == 4 else "fd00:220::1/64",
        listen_port=51820,
        bind_dev="eth0",
        mtu=1440,
        peers=tuple(ps),
    )


def link(dev: WireGuardDevice) -> Link:
    return Link(dev.name, 10, "wireguard", dev.mtu or 1440, True, "", (dev.addr,))


def key_pair() -> wgkeys.KeyPair:
    private = wgkeys.generate()
    return wgkeys.KeyPair(private, wgkeys.public_of(private))


def expected(dev: WireGuardDevice) -> dict[str, PeerState]:
    return {p.public_key: PeerState(p.endpoint, frozenset(p.allowed_ips)) for p in dev.peers}


@pytest.fixture
def kernel() -> Iterator[FakeWgKernel]:
    yield FakeWgKernel()


def adapter(kernel: FakeWgKernel) -> tuple[KernelWireGuard, list[RecordingSocket]]:
    opened: list[RecordingSocket] = []

    def open_socket() -> Any:
        sock = kernel.socket()
        opened.append(sock)
        return GenlWireGuard(use_socket=sock)

    return KernelWireGuard(None, open_socket=open_socket), opened


def sent_peer_messages(opened: list[RecordingSocket]) -> list[Any]:
    """Every WG_CMD_SET_DEVICE request pyroute2 encoded, decoded again."""
    out = []
    for sock in opened:
        for data in sock.sent:
            if struct.unpack_from("=H", data, 4)[0] != WG_FAMILY_ID:
                continue
            msg = wgmsg(data)
            msg.decode()
            if msg["cmd"] == 1:
                out.append(msg)
    return out


# -- tests ------------------------------------------------------------------------------------


def test_configure_sends_pyroute2s_encoding_the_fake_kernel_applies() -> None:
    kernel = FakeWgKernel()
    kernel.add_device(DEV)
    port, opened = adapter(kernel)
    pair = key_pair()
    [peer] = peers(1, ips_each=3)
    port.configure(DEV, pair.private, 51820, [peer], [])
    [key_msg, peer_msg] = sent_peer_messages(opened)
    assert key_msg.get_attr("WGDEVICE_A_LISTEN_PORT") == 51820
    [sent] = peer_msg.get_attr("WGDEVICE_A_PEERS")
    assert sent.get_attr("WGPEER_A_FLAGS") & WGPEER_F_REPLACE_ALLOWEDIPS
    assert sent.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") == C.WG_KEEPALIVE
    have = kernel.devices[DEV]
    assert wgkeys.public_of(have.private) == pair.public
    assert have.peers[peer.public_key].endpoint == ("192.168.0.1", 51820)
    assert sorted(have.peers[peer.public_key].allowed) == sorted(peer.allowed_ips)


def test_observe_reads_back_what_configure_wrote_in_one_message() -> None:
    kernel = FakeWgKernel()
    kernel.add_device(DEV)
    port, _ = adapter(kernel)
    pair, dev = key_pair(), device(peers(3))
    port.configure(DEV, pair.private, 51820, dev.peers, [])
    state = port.observe(DEV)
    assert kernel.dumps == [1]
    assert state == DeviceState(51820, pair.public, expected(dev))
    assert all(p.keepalive == C.WG_KEEPALIVE for p in state.peers.values())


def test_a_dump_split_across_messages_is_merged_by_public_key() -> None:
    kernel = FakeWgKernel(budget=7)  # 3 peers of 4 slots -> split, some peers mid-way
    kernel.add_device(DEV)
    port, _ = adapter(kernel)
    pair, dev = key_pair(), device(peers(40, ips_each=3))
    port.configure(DEV, pair.private, 51820, dev.peers, [])
    state = port.observe(DEV)
    assert kernel.dumps[-1] > 10
    assert state is not None
    assert state.listen_port == 51820 and state.public_key == pair.public
    assert state.peers == expected(dev)


def test_a_peer_whose_allowed_ips_span_three_messages_keeps_its_endpoint_and_all_ips() -> None:
    kernel = FakeWgKernel(budget=5)
    kernel.add_device(DEV)
    port, _ = adapter(kernel)
    pair, dev = key_pair(), device(peers(2, ips_each=12))
    port.configure(DEV, pair.private, 51820, dev.peers, [])
    state = port.observe(DEV)
    assert kernel.dumps[-1] >= 5
    assert state is not None and state.peers == expected(dev)


def test_many_peers_ipv6_round_trip() -> None:
    kernel = FakeWgKernel(budget=64)
    kernel.add_device(C.WG_BRIDGE6)
    port, _ = adapter(kernel)
    ps = [WireGuardPeer(public_key=k, endpoint=f"[fd00::{i + 1:x}]:51821",
                        allowed_ips=(f"fd00:220::{i + 1:x}/128", f"fd10:{i:x}::/64"))
          for i, k in enumerate(keys(100))]  # fmt: skip
    pair, dev = key_pair(), device(ps, family=6)
    port.configure(dev.name, pair.private, 51821, dev.peers, [])
    state = port.observe(dev.name)
    assert kernel.dumps[-1] > 1
    assert state is not None and state.peers == expected(dev)


def test_sync_of_a_device_with_many_peers_split_across_messages_changes_nothing_twice() -> None:
    kernel = FakeWgKernel(budget=50)
    kernel.add_device(DEV)
    port, opened = adapter(kernel)
    pair, dev = key_pair(), device(peers(300, ips_each=3))
    spec = NodeConfigSpec(wireguard=[dev])
    links = {DEV: link(dev)}
    first = sync_wireguard(port, pair, spec, links)
    assert first.errors == [] and first.deleted == [] and first.created == []
    assert first.peers == 300 + 2  # the peers, the key, the port
    writes = len(sent_peer_messages(opened))
    for _ in range(2):
        again = sync_wireguard(port, pair, spec, links)
        assert (again.peers, again.deleted, again.created, again.errors) == (0, [], [], [])
    assert kernel.dumps[-1] > 10, "the dump was split"
    assert len(sent_peer_messages(opened)) == writes, "no write after the first pass"


def test_sync_updates_and_removes_only_what_changed_on_a_split_device() -> None:
    kernel = FakeWgKernel(budget=20)
    kernel.add_device(DEV)
    port, _ = adapter(kernel)
    pair, dev = key_pair(), device(peers(60))
    links = {DEV: link(dev)}
    sync_wireguard(port, pair, NodeConfigSpec(wireguard=[dev]), links)
    kept = list(dev.peers[1:])
    moved = kept[10].model_copy(update={"endpoint": "192.168.9.9:51820"})
    kept[10] = moved
    smaller = dev.model_copy(update={"peers": tuple(kept)})
    changes = sync_wireguard(port, pair, NodeConfigSpec(wireguard=[smaller]), links)
    assert changes.peers == 2  # one removed, one updated
    assert port.observe(DEV) == DeviceState(51820, pair.public, expected(smaller))


def test_a_missing_device_observes_as_none() -> None:
    kernel = FakeWgKernel()
    port, _ = adapter(kernel)
    assert port.observe(DEV) is None
    with pytest.raises(NetlinkError):
        kernel.open().set(DEV, listen_port=1)


def test_parse_kernel_dump_takes_device_attributes_from_the_first_message_only() -> None:
    kernel = FakeWgKernel(budget=3)
    have = kernel.add_device(DEV)
    have.listen_port, have.private = 4242, wgkeys.generate()
    key = keys(1)[0]
    have.peers[key] = FakePeer(("10.0.0.1", 1), 5, [f"10.{i}.0.0/16" for i in range(6)])
    sock = kernel.open()
    try:
        messages = list(sock.info(DEV))
    finally:
        sock.close()
    assert len(messages) == 3
    assert messages[1].get_attr("WGDEVICE_A_LISTEN_PORT") is None
    state = parse_kernel_dump(messages)
    assert state.listen_port == 4242 and state.public_key == wgkeys.public_of(have.private)
    assert state.peers == {
        key: PeerState("10.0.0.1:1", frozenset(f"10.{i}.0.0/16" for i in range(6)), 5)
    }
