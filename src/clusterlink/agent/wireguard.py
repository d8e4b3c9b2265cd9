"""The `WireGuard` port: the node's wg devices, their key and their peers.

Two adapters and a fake, one protocol:
- `WireGuardGo`: the userspace implementation (`wireguard-go`, a TUN device), programmed over
  its UAPI socket (the text protocol of wg(8)'s cross-platform interface: `get=1` /
  `set=1`, keys in hex). Its sockets live in a fixed directory (`/var/run/wireguard`); with
  `socket_dir` elsewhere (the lab: one per node, since every node's device has the same name)
  each wireguard-go runs in a private mount namespace with that directory bound over it.
- `KernelWireGuard`: the kernel module, created with rtnetlink and programmed with pyroute2's
  WireGuard generic netlink.
- `FakeWireGuard` (agent/fake.py): dicts, refuses what a device would refuse.

`sync_wireguard` is the diff: a device whose link differs (address, MTU, down) is retuned in
place (`tune`: its key and peers stay, so no handshake is lost), a missing one created, one
whose process is gone replaced; peers added, updated (`replace_allowed_ips`) or removed - a
pass with nothing to do changes nothing. Link level (address, MTU, up) is read from the
Kernel port's links.

wireguard-go daemonizes: its parent makes the TUN and exits, and the child it leaves sets the
TUN's MTU to 1420 once more as it starts - after the parent has returned. An MTU set before
that is lost (seen: 2 of 20 tries here; the agent then found its IPv4 device, 1440, at 1420,
and rebuilt it). `WireGuardGo.create` therefore waits for the child's UAPI answer, which it
gives only after that, before it sets the link up.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pyroute2 import IPRoute, NetlinkError
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD

from clusterlink import constants as C
from clusterlink.agent import netns
from clusterlink.agent.kernel import KernelError, Link
from clusterlink.agent.wgkeys import (
    KeyFileError,
    KeyPair,
    last_rotation,
    load_or_create,
    public_of,
    rotate,
)
from clusterlink.api.nodeconfig import NodeConfigSpec, WireGuardDevice, WireGuardPeer

log = logging.getLogger("clusterlink.agent")

KERNEL = "kernel"
USERSPACE = "wireguard-go"


@dataclass(frozen=True, slots=True)
class PeerState:
    endpoint: str
    allowed_ips: frozenset[str]
    keepalive: int = C.WG_KEEPALIVE  # persistent keepalive, seconds (0 = off)


@dataclass(frozen=True, slots=True)
class DeviceState:
    """A wg device as it is configured (its link side is in `Link`)."""

    listen_port: int = 0
    public_key: str = ""  # of the private key it holds ("" = none)
    peers: dict[str, PeerState] = field(default_factory=dict)  # public key (base64) -> peer


class WireGuard(Protocol):
    implementation: str  # KERNEL or USERSPACE

    def observe(self, name: str) -> DeviceState | None:
        """The device's configuration, or None when it is not there or its process is gone
        (the reconciler then replaces it). Raises KernelError when it is there but did not
        answer this time (a slow or busy process: the next pass asks again; replacing the
        device for that would cut its traffic)."""
        ...

    def create(self, device: WireGuardDevice) -> None:
        """Create the link with its address and MTU, up (no peers, no key yet)."""
        ...

    def delete(self, name: str) -> None: ...

    def tune(self, device: WireGuardDevice, link: Link) -> None:
        """Make the device's link (MTU, address, up) match `device`, in place."""
        ...

    def configure(
        self,
        name: str,
        private_key: str | None,
        listen_port: int | None,
        peers: Iterable[WireGuardPeer],
        remove: Iterable[str],
    ) -> None:
        """Set the key and port (None: keep), add or update `peers` (their allowed IPs replaced),
        remove the peers with these public keys."""
        ...


def peer_state(peer: WireGuardPeer) -> PeerState:
    return PeerState(peer.endpoint, frozenset(peer.allowed_ips))


def link_drift(device: WireGuardDevice, link: Link) -> list[str]:
    """How a wg device's link differs from what it should be ([] when it matches)."""
    out = []
    if device.mtu and link.mtu != device.mtu:
        out.append(f"MTU {link.mtu}, want {device.mtu}")
    if device.addr not in link.addrs:
        out.append(f"addresses {list(link.addrs)}, want {device.addr}")
    if not link.up:
        out.append("down")
    return out


@dataclass(slots=True)
class WireGuardChanges:
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    tuned: list[str] = field(default_factory=list)  # link retuned in place (MTU, address, up)
    peers: int = 0  # peers added, updated or removed, and key/port writes
    errors: list[str] = field(default_factory=list)


def sync_wireguard(
    port: WireGuard, keys: KeyPair, spec: NodeConfigSpec | None, links: Mapping[str, Link]
) -> WireGuardChanges:
    """Make the node's wg devices match the NodeConfig (None or no devices: remove ours)."""
    out = WireGuardChanges()
    wanted = {w.name: w for w in (spec.wireguard if spec is not None else [])}
    for name in C.WG_DEVICES:
        link = links.get(name)
        device = wanted.get(name)
        try:
            if link is not None and device is None:
                port.delete(name)
                out.deleted.append(name)
                continue
            if device is None:
                continue
            state = port.observe(name) if link is not None else None
            drift = link_drift(device, link) if state is not None and link is not None else []
            if drift and link is not None:
                log.info("%s: retuning in place: %s", name, "; ".join(drift))
                port.tune(device, link)
                out.tuned.append(name)
            if state is None:
                if link is not None:  # there but not answering (its process died): replace
                    log.info("%s: its process is gone: replacing it", name)
                    port.delete(name)
                    out.deleted.append(name)
                port.create(device)
                out.created.append(name)
                state = DeviceState()
            out.peers += _configure(port, keys, device, state)
        except KernelError as exc:
            out.errors.append(str(exc))
    return out


def _configure(port: WireGuard, keys: KeyPair, device: WireGuardDevice, have: DeviceState) -> int:
    want = {p.public_key: p for p in device.peers}
    changed = [p for k, p in sorted(want.items()) if have.peers.get(k) != peer_state(p)]
    remove = sorted(set(have.peers) - set(want))
    private = keys.private if have.public_key != keys.public else None
    listen = device.listen_port if have.listen_port != device.listen_port else None
    if not (changed or remove or private or listen):
        return 0
    port.configure(device.name, private, listen, changed, remove)
    return len(changed) + len(remove) + (private is not None) + (listen is not None)


@dataclass(slots=True)
class WireGuardNode:
    """What the reconciler needs for WireGuard: the port and this node's key pair, made on
    first need (the node's cluster asks for encryption, or its NodeConfig has wg devices), so
    an agent of an unencrypted cluster never writes a key; replaced on rotation."""

    port: WireGuard
    keys: KeyPair | None = None
    state_dir: Path | None = None  # where the key lives (None: `keys` given, tests)

    @property
    def implementation(self) -> str:
        return self.port.implementation

    def key_pair(self) -> KeyPair:
        if self.keys is None:
            if self.state_dir is None:
                raise KeyFileError("no state dir for the WireGuard key")
            self.keys = load_or_create(self.state_dir)
        return self.keys

    def sync(self, spec: NodeConfigSpec | None, links: Mapping[str, Link]) -> WireGuardChanges:
        wanted = spec is not None and bool(spec.wireguard)
        if not wanted and not any(name in links for name in C.WG_DEVICES):
            return WireGuardChanges()
        try:
            keys = self.key_pair() if wanted else KeyPair()
        except KeyFileError as exc:
            return WireGuardChanges(errors=[f"wireguard key: {exc}"])
        return sync_wireguard(self.port, keys, spec, links)

    def pending(self, request: str) -> bool:
        """A rotation request (the ClusterNode annotation's value) not carried out yet."""
        return (
            bool(request)
            and self.state_dir is not None
            and (request != last_rotation(self.state_dir))
        )

    def rotate_if_asked(self, request: str) -> bool:
        """Carry out a rotation request once: a new key pair, saved; this pass writes it to
        the devices. True if the key changed."""
        if not self.pending(request) or self.state_dir is None:
            return False
        self.keys = rotate(self.state_dir, request)
        return True


def start(
    netns_name: str | None, state_dir: Path, socket_dir: str = C.WG_SOCKET_DIR
) -> WireGuardNode | None:
    """The node's WireGuard: its implementation (kernel, else wireguard-go); its key pair is
    made on first need. None when neither implementation is here."""
    port = detect(netns_name, socket_dir)
    if port is None:
        return None
    return WireGuardNode(port, None, state_dir)


# -- wireguard-go over UAPI -------------------------------------------------------------------


def _hex(key_b64: str) -> str:
    return base64.b64decode(key_b64).hex()


def _b64(key_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(key_hex)).decode()


def _endpoint_text(endpoint: str) -> str:
    """UAPI prints an IPv6 endpoint as [addr]:port, with the address in its shortest form."""
    host, _, port_ = endpoint.rpartition(":")
    ip = ipaddress.ip_address(host.strip("[]"))
    return f"[{ip}]:{port_}" if ip.version == 6 else f"{ip}:{port_}"


def parse_uapi_get(text: str) -> DeviceState:
    """A `get=1` answer (key=value lines) as a DeviceState. The private key is turned into its
    public key at once and not kept."""
    listen, public = 0, ""
    peers: dict[str, PeerState] = {}
    current: str | None = None
    endpoint, allowed, keepalive = "", set[str](), 0

    def close() -> None:
        if current is not None:
            peers[current] = PeerState(endpoint, frozenset(allowed), keepalive)

    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "private_key" and value.strip("0"):
            public = public_of(_b64(value))
        elif key == "listen_port":
            listen = int(value)
        elif key == "public_key":
            close()
            current, endpoint, allowed, keepalive = _b64(value), "", set(), 0
        elif key == "persistent_keepalive_interval":
            keepalive = int(value)
        elif key == "endpoint":
            endpoint = _endpoint_text(value)
        elif key == "allowed_ip":
            allowed.add(str(ipaddress.ip_network(value, strict=False)))
    close()
    return DeviceState(listen, public, peers)


def uapi_set_text(
    private_key: str | None,
    listen_port: int | None,
    peers: Iterable[WireGuardPeer],
    remove: Iterable[str],
) -> str:
    lines = ["set=1"]
    if private_key is not None:
        lines.append(f"private_key={_hex(private_key)}")
    if listen_port is not None:
        lines.append(f"listen_port={listen_port}")
    for key in remove:
        lines += [f"public_key={_hex(key)}", "remove=true"]
    for peer in peers:
        lines += [
            f"public_key={_hex(peer.public_key)}",
            f"endpoint={peer.endpoint}",
            f"persistent_keepalive_interval={C.WG_KEEPALIVE}",
            "replace_allowed_ips=true",
            *(f"allowed_ip={cidr}" for cidr in peer.allowed_ips),
        ]
    return "\n".join(lines) + "\n\n"


def start_daemon(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a program that forks itself to the background (wireguard-go) in a session of its
    own, and wait for its foreground part to exit.

    wireguard-go's background copy does not call setsid: started plainly it would stay in the
    agent's session and process group. Two consequences, both avoided here: with autogroup
    scheduling (CONFIG_SCHED_AUTOGROUP, on by default on desktop and many server kernels,
    and on this lab host) the kernel shares CPU between sessions first, so the tunnel would
    share one session's CPU share with the agent (its passes, its prober) instead of having
    its own - the scheduling shape every other daemon has; and a signal to the agent's process
    group (Ctrl-C on an agent run in a terminal) would stop the tunnel too."""
    return subprocess.run(argv, capture_output=True, text=True, start_new_session=True)


class DeviceGone(KernelError):
    """A wireguard-go device's UAPI socket is missing or nobody listens on it."""


class WireGuardGo:
    """wireguard-go devices inside network namespace `netns_name`, sockets in `socket_dir`."""

    implementation = USERSPACE

    def __init__(
        self, netns_name: str | None, socket_dir: str = C.WG_SOCKET_DIR, timeout: float = 5.0
    ) -> None:
        self.netns = netns_name
        self.socket_dir = socket_dir
        self.timeout = timeout  # seconds for one UAPI request
        self.binary = shutil.which("wireguard-go") or "wireguard-go"

    def _uapi(self, name: str, request: str) -> str:
        path = os.path.join(self.socket_dir, f"{name}.sock")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                try:
                    sock.connect(path)
                except (FileNotFoundError, ConnectionRefusedError) as exc:
                    # No socket, or nobody listening on it: the process is gone.
                    raise DeviceGone(f"{name}: UAPI {path}: {exc.strerror or exc}") from None
                sock.sendall(request.encode())
                chunks: list[bytes] = []
                while not b"".join(chunks).endswith(b"\n\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except OSError as exc:
            raise KernelError(f"{name}: UAPI {path}: {exc.strerror or exc}") from None
        text = b"".join(chunks).decode()
        errno_line = next((x for x in text.splitlines() if x.startswith("errno=")), "errno=?")
        if errno_line != "errno=0":
            raise KernelError(f"{name}: UAPI refused the request ({errno_line})")
        return text

    def observe(self, name: str) -> DeviceState | None:
        try:
            return parse_uapi_get(self._uapi(name, "get=1\n\n"))
        except DeviceGone:
            return None  # a slow or refused answer raises: the device stays

    def _argv(self, name: str) -> list[str]:
        argv = [self.binary, name]
        if os.path.realpath(self.socket_dir) != os.path.realpath(C.WG_SOCKET_DIR):
            # A private mount namespace where this node's directory is /var/run/wireguard.
            script = (
                'mkdir -p /var/run/wireguard && mount --bind "$0" /var/run/wireguard && exec "$@"'
            )
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                    self.socket_dir, *argv]  # fmt: skip
        return netns.command(self.netns, argv)

    def create(self, device: WireGuardDevice) -> None:
        Path(self.socket_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        Path(C.WG_SOCKET_DIR).mkdir(parents=True, exist_ok=True, mode=0o700)
        # wireguard-go makes the TUN and the UAPI socket, then forks to the background and
        # exits: when it returns, both are there.
        proc = start_daemon(self._argv(device.name))
        if proc.returncode != 0:
            why = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            raise KernelError(f"{device.name}: wireguard-go failed: {why[0]}")
        # The child answers UAPI only after it has set the TUN's MTU (to 1420) as it starts:
        # ours must come after that (see the module's docstring).
        self._uapi(device.name, "get=1\n\n")
        _set_link(self.netns, device)

    def delete(self, name: str) -> None:
        _delete_link(self.netns, name)  # wireguard-go exits when its TUN goes

    def tune(self, device: WireGuardDevice, link: Link) -> None:
        _tune_link(self.netns, device, link)

    def configure(
        self,
        name: str,
        private_key: str | None,
        listen_port: int | None,
        peers: Iterable[WireGuardPeer],
        remove: Iterable[str],
    ) -> None:
        self._uapi(name, uapi_set_text(private_key, listen_port, peers, remove))


# -- the kernel module ------------------------------------------------------------------------


def _ipr(netns_name: str | None) -> IPRoute:
    return IPRoute(netns=netns_name, flags=0) if netns_name else IPRoute()


def _set_link(netns_name: str | None, device: WireGuardDevice) -> None:
    """Set up a new device's link: MTU, address, up."""
    _tune_link(netns_name, device, None)


def _tune_link(netns_name: str | None, device: WireGuardDevice, link: Link | None) -> None:
    """Retune a device's link in place: its MTU, its one address (others removed), up.
    `link` None: a device just made (looked up by name; no MTU set, no address, down)."""
    with _ipr(netns_name) as ipr:
        try:
            if link is None:
                found = ipr.link_lookup(ifname=device.name)
                if not found:
                    raise KernelError(f"{device.name}: cannot set up: not found")
                link = Link(device.name, found[0], "", 0, False, "")
            if device.mtu and link.mtu != device.mtu:
                ipr.link("set", index=link.index, mtu=device.mtu)
            for addr in link.addrs:
                if addr != device.addr:
                    ip, prefix = addr.split("/")
                    ipr.addr("del", index=link.index, address=ip, prefixlen=int(prefix))
            if device.addr not in link.addrs:
                ip, prefix = device.addr.split("/")
                flags = IFA_F_NODAD if ":" in ip else 0
                ipr.addr("add", index=link.index, address=ip, prefixlen=int(prefix), flags=flags)
            if not link.up:
                ipr.link("set", index=link.index, state="up")
        except NetlinkError as exc:
            raise KernelError(f"{device.name}: cannot retune: {os.strerror(exc.code)}") from None


def _delete_link(netns_name: str | None, name: str) -> None:
    with _ipr(netns_name) as ipr:
        try:
            ipr.link("del", ifname=name)
        except NetlinkError as exc:
            if exc.code not in (2, 19):  # ENOENT, ENODEV: gone already
                raise KernelError(f"{name}: cannot delete: {os.strerror(exc.code)}") from None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_kernel_dump(messages: Iterable[Any]) -> DeviceState:
    """A WG_CMD_GET_DEVICE dump (pyroute2 `wgmsg`s) as one DeviceState.

    The kernel answers a dump of a device with many peers in several messages: the device's
    own attributes (listen port, keys) in the first, then each message a slice of the peers;
    a peer whose allowed IPs do not fit continues in the next message under its public key
    again, with only the rest of its allowed IPs. Merged by public key, as wg(8) does - read
    one message alone, a large device would look different every pass and be rebuilt."""
    listen, public = 0, ""
    endpoints: dict[str, str] = {}
    allowed: dict[str, set[str]] = {}
    keepalives: dict[str, int] = {}
    for msg in messages:
        port_ = msg.get_attr("WGDEVICE_A_LISTEN_PORT")
        if port_ is not None:
            listen = int(port_)
        pub = msg.get_attr("WGDEVICE_A_PUBLIC_KEY")
        if pub:
            public = _text(pub)
        for peer in msg.get_attr("WGDEVICE_A_PEERS") or []:
            key = _text(peer.get_attr("WGPEER_A_PUBLIC_KEY"))
            allowed.setdefault(key, set())
            ep = peer.get_attr("WGPEER_A_ENDPOINT")
            if ep is not None and ep.get("addr"):
                endpoints[key] = _endpoint_text(f"[{ep['addr']}]:{ep['port']}")
            keepalive = peer.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL")
            if keepalive is not None:
                keepalives[key] = int(keepalive)
            for ip in peer.get_attr("WGPEER_A_ALLOWEDIPS") or []:
                allowed[key].add(str(ipaddress.ip_network(ip["addr"], strict=False)))
    peers = {
        key: PeerState(endpoints.get(key, ""), frozenset(ips), keepalives.get(key, 0))
        for key, ips in allowed.items()
    }
    return DeviceState(listen, public, peers)


class KernelWireGuard:
    """The kernel module (`ip link add ... type wireguard`), over generic netlink.

    `open_socket` makes the generic netlink socket (pyroute2's `WireGuard`, or one over a
    given socket: the unit tests' fake kernel); by default one bound to `netns_name`."""

    implementation = KERNEL

    def __init__(
        self, netns_name: str | None, open_socket: Callable[[], Any] | None = None
    ) -> None:
        self.netns = netns_name
        self._open = open_socket or self._open_in_netns

    def _open_in_netns(self) -> Any:
        from pyroute2 import WireGuard as GenlWireGuard

        with netns.entered(self.netns):  # the socket stays bound to the namespace it was made in
            return GenlWireGuard()

    def _wg(self) -> Any:
        return self._open()

    def observe(self, name: str) -> DeviceState | None:
        try:
            wg = self._wg()
            try:
                messages = list(wg.info(name))
            finally:
                wg.close()
        except (NetlinkError, ValueError, OSError):
            return None
        return parse_kernel_dump(messages) if messages else None

    def create(self, device: WireGuardDevice) -> None:
        with _ipr(self.netns) as ipr:
            try:
                ipr.link("add", ifname=device.name, kind="wireguard")
            except NetlinkError as exc:
                raise KernelError(
                    f"{device.name}: cannot create: {os.strerror(exc.code)}"
                ) from None
        _set_link(self.netns, device)

    def delete(self, name: str) -> None:
        _delete_link(self.netns, name)

    def tune(self, device: WireGuardDevice, link: Link) -> None:
        _tune_link(self.netns, device, link)

    def configure(
        self,
        name: str,
        private_key: str | None,
        listen_port: int | None,
        peers: Iterable[WireGuardPeer],
        remove: Iterable[str],
    ) -> None:
        wg = self._wg()
        try:
            if private_key is not None or listen_port is not None:
                wg.set(name, private_key=private_key, listen_port=listen_port)
            for key in remove:
                wg.set(name, peer={"public_key": key, "remove": True})
            for peer in peers:
                host, _, port_ = peer.endpoint.rpartition(":")
                wg.set(
                    name,
                    peer={
                        "public_key": peer.public_key,
                        "endpoint_addr": host.strip("[]"),
                        "endpoint_port": int(port_),
                        "persistent_keepalive": C.WG_KEEPALIVE,
                        "replace_allowed_ips": True,
                        "allowed_ips": list(peer.allowed_ips),
                    },
                )
        except NetlinkError as exc:
            raise KernelError(f"{name}: cannot configure: {os.strerror(exc.code)}") from None
        finally:
            wg.close()


def kernel_has_wireguard(netns_name: str | None) -> bool:
    """Whether the kernel makes `wireguard` links here (a probe link, removed at once)."""
    probe = "cl-wgprobe"
    with _ipr(netns_name) as ipr:
        try:
            ipr.link("add", ifname=probe, kind="wireguard")
        except NetlinkError:
            return False
        ipr.link("del", ifname=probe)
        return True


def detect(netns_name: str | None, socket_dir: str = C.WG_SOCKET_DIR) -> WireGuard | None:
    """The kernel module where it exists, else wireguard-go if installed, else None."""
    if kernel_has_wireguard(netns_name):
        return KernelWireGuard(netns_name)
    if shutil.which("wireguard-go"):
        return WireGuardGo(netns_name, socket_dir)
    return None
