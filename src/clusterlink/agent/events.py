"""The `KernelEvents` port: "something of ours may have changed in the kernel", as it happens,
so the agent repairs drift within its coalescing delay instead of on the resync timer.

Ours, and what tells of a change to it:
- routes in table 200, and our `lookup 200` policy rules: rtnetlink route and rule groups;
- our devices (vx-*): link notifications by name; their addresses, FDB entries and
  neighbours: address and neighbour notifications on their interface indexes;
- our iptables chains and jumps (iptables-nft) and our nft tables: nf_tables notifications
  whose message names CLUSTERLINK-* or clusterlink (chain, table, jump target, comment).

Neighbour notifications come for every device (a busy underlay's ARP entries churn several
times a second); a socket filter (classic BPF, `neighbour_filter`) lets the kernel drop those
of devices not ours before they wake us, and is re-attached when our set of devices changes.

Conservative like `netlink.ChangeFeed`: a lost notification (ENOBUFS) counts as a change.
The agent's own writes are changes too: each pass that changed the kernel is followed by one
more that finds nothing to do. Sysctls send no notification: the timer still repairs those.

Adapters: `NetlinkEvents` (two netlink sockets opened in the node's namespace) and
`FakeEvents` (tests fire it by hand).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from clusterlink import constants as C
from clusterlink.agent import netns
from clusterlink.agent.netlink import Reader

NETLINK_NETFILTER = 12
# rtnetlink multicast groups (bind mask bits) and message types
_GROUPS = (
    0x1  # RTMGRP_LINK
    | 0x4  # RTMGRP_NEIGH
    | 0x10  # RTMGRP_IPV4_IFADDR
    | 0x40  # RTMGRP_IPV4_ROUTE
    | 0x80  # RTMGRP_IPV4_RULE
    | 0x100  # RTMGRP_IPV6_IFADDR
    | 0x400  # RTMGRP_IPV6_ROUTE
    | 1 << (19 - 1)  # RTNLGRP_IPV6_RULE
)
NFNLGRP_NFTABLES = 7
RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29
RTM_NEWRULE, RTM_DELRULE = 32, 33
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWGEN = 15  # one per nf_tables transaction, whatever it changed
IFLA_IFNAME = 3

_HDR = struct.Struct("=LHHLL")
_ATTR = struct.Struct("=HH")


def is_owned_device(name: str) -> bool:
    return name in C.OWNED_DEVICES or name in C.WG_DEVICES  # wg: deleted or downed by hand


class KernelEvents(Protocol):
    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds; True as soon as something of ours may have changed
        (every notification pending is consumed). `interrupt` ends it early (False)."""
        ...

    def interrupt(self) -> None:
        """Wake a `wait` now (signal-handler safe): the agent is stopping."""
        ...

    def close(self) -> None: ...


# Classic BPF (linux/filter.h): a program of (code, jt, jf, k) run on each notification.
_BPF_LDH_ABS, _BPF_LDW_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x28, 0x20, 0x15, 0x06
_SO_ATTACH_FILTER = 26
_ACCEPT, _DROP = 0xFFFFFFFF, 0
_NEIGH_IFINDEX = 16 + 4  # nlmsghdr, then struct ndmsg's ndm_ifindex
_MAX_FILTERED = 250  # jump offsets are 8 bits: with more devices, take every notification


def _net16(value: int) -> int:
    """A host-order u16 as BPF's absolute loads (network order) see it."""
    return int.from_bytes(struct.pack("=H", value), "big")


def _net32(value: int) -> int:
    return int.from_bytes(struct.pack("=i", value), "big")


def neighbour_filter(ours: Iterable[int]) -> list[tuple[int, int, int, int]] | None:
    """The socket filter: every notification but neighbour ones of devices not in `ours`
    (None: too many devices to list, take everything)."""
    indexes = sorted(set(ours))
    n = len(indexes)
    if n > _MAX_FILTERED:
        return None
    prog = [
        (_BPF_LDH_ABS, 0, 0, 4),  # nlmsg_type
        (_BPF_JEQ_K, 1, 0, _net16(RTM_NEWNEIGH)),
        (_BPF_JEQ_K, 0, n + 2, _net16(RTM_DELNEIGH)),  # not a neighbour: accept
        (_BPF_LDW_ABS, 0, 0, _NEIGH_IFINDEX),
    ]
    prog += [(_BPF_JEQ_K, n - j, 0, _net32(index)) for j, index in enumerate(indexes)]
    prog += [(_BPF_RET_K, 0, 0, _DROP), (_BPF_RET_K, 0, 0, _ACCEPT)]
    return prog


def attach_filter(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    """SO_ATTACH_FILTER (replaces the socket's filter; the kernel copies the program)."""
    code = b"".join(struct.pack("=HBBI", *insn) for insn in prog)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HP", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


def _ifname(msg: bytes, off: int, end: int) -> str | None:
    pos = off + 16  # struct ifinfomsg
    while pos + 4 <= end:
        alen, atype = _ATTR.unpack_from(msg, pos)
        if alen < 4:
            break
        if atype == IFLA_IFNAME:
            return msg[pos + 4 : pos + alen].split(b"\0", 1)[0].decode(errors="replace")
        pos += (alen + 3) & ~3
    return None


def _messages(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(type, payload offset, end) of each netlink message in a datagram."""
    off = 0
    while off + _HDR.size <= len(data):
        length, mtype, _f, _seq, _pid = _HDR.unpack_from(data, off)
        if length < _HDR.size:
            return
        yield mtype, off + _HDR.size, off + length
        off += (length + 3) & ~3


class RouteFilter:
    """Which rtnetlink notifications concern our state. Keeps the interface indexes of our
    devices from the link notifications themselves (seeded by one dump)."""

    def __init__(self, owned: Callable[[str], bool], indexes: dict[int, str]) -> None:
        self.owned = owned
        self.ours = {i for i, name in indexes.items() if owned(name)}

    def relevant(self, data: bytes) -> bool:
        hit = False
        for mtype, body, end in _messages(data):
            if mtype in (RTM_NEWROUTE, RTM_DELROUTE) and end >= body + 12:
                hit |= data[body + 4] == C.ROUTE_TABLE  # rtmsg.rtm_table
            elif mtype in (RTM_NEWRULE, RTM_DELRULE) and end >= body + 12:
                hit |= data[body + 4] == C.ROUTE_TABLE  # fib_rule_hdr.table
            elif mtype in (RTM_NEWNEIGH, RTM_DELNEIGH) and end >= body + 12:
                hit |= struct.unpack_from("=i", data, body + 4)[0] in self.ours
            elif mtype in (RTM_NEWADDR, RTM_DELADDR) and end >= body + 8:
                hit |= struct.unpack_from("=I", data, body + 4)[0] in self.ours
            elif mtype in (RTM_NEWLINK, RTM_DELLINK) and end >= body + 16:
                index = struct.unpack_from("=i", data, body + 4)[0]
                name = _ifname(data, body, end)
                if name is not None and self.owned(name):
                    hit = True
                    if mtype == RTM_NEWLINK:
                        self.ours.add(index)
                    else:
                        self.ours.discard(index)
                elif index in self.ours:  # renamed away from one of our names, or gone
                    hit = True
                    self.ours.discard(index)
        return hit


def nft_relevant(data: bytes) -> bool:
    """nf_tables notifications that name one of our chains or tables (a deleted rule's
    notification carries its chain and its jump's target)."""
    hit = False
    for mtype, body, end in _messages(data):
        if mtype >> 8 == NFNL_SUBSYS_NFTABLES and mtype & 0xFF != NFT_MSG_NEWGEN:
            chunk = data[body:end]
            hit |= b"CLUSTERLINK" in chunk or b"clusterlink" in chunk
    return hit


class NetlinkEvents:
    """rtnetlink + nf_tables notifications in one namespace."""

    def __init__(
        self, netns_name: str | None, owned: Callable[[str], bool] = is_owned_device
    ) -> None:
        with netns.entered(netns_name):
            self.route = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            self.nft = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        for sock in (self.route, self.nft):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.setblocking(False)
        self.route.bind((0, _GROUPS))
        self.nft.bind((0, 1 << (NFNLGRP_NFTABLES - 1)))
        self.netns = netns_name
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._filtered: frozenset[int] | None = None
        self.filter = RouteFilter(owned, self._link_names())
        self._refilter()

    def _refilter(self) -> None:
        """Let the kernel drop neighbour notifications of devices not ours (again when our
        devices changed). A notification between a new device and its filter is read and
        judged by `RouteFilter`, as all are."""
        ours = frozenset(self.filter.ours)
        if ours == self._filtered:
            return
        prog = neighbour_filter(ours)
        if prog is None:
            prog = [(_BPF_RET_K, 0, 0, _ACCEPT)]
        try:
            attach_filter(self.route, prog)
        except OSError:
            return  # an optimisation only: RouteFilter still judges every notification
        self._filtered = ours

    def _link_names(self) -> dict[int, str]:
        reader = Reader(self.netns)
        try:
            return reader.link_names()
        finally:
            reader.close()

    def wait(self, timeout: float) -> bool:
        socks = {self.route.fileno(): self.route, self.nft.fileno(): self.nft}
        ready, _, _ = select.select([*socks, self._wake_r], [], [], timeout)
        hit = False
        for fd in ready:
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 64):
                        pass
            else:
                hit |= self._drain(socks[fd])
        self._refilter()  # our devices may have changed
        return hit

    def interrupt(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def _drain(self, sock: socket.socket) -> bool:
        hit = False
        while True:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                return hit
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                hit = True  # notifications were lost: assume the worst
                if sock is self.route:
                    self.filter = RouteFilter(self.filter.owned, self._link_names())
                continue
            hit |= self.filter.relevant(data) if sock is self.route else nft_relevant(data)

    def close(self) -> None:
        self.route.close()
        self.nft.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class FakeEvents:
    """Fired by hand: `fire()` makes the next `wait` return True."""

    def __init__(self) -> None:
        self._fired = threading.Event()
        self._interrupted = False
        self.closed = False

    def fire(self) -> None:
        self._fired.set()

    def wait(self, timeout: float) -> bool:
        hit = self._fired.wait(timeout) and not self._interrupted
        self._fired.clear()
        self._interrupted = False
        return hit

    def interrupt(self) -> None:
        self._interrupted = True
        self._fired.set()

    def close(self) -> None:
        self.closed = True


__all__ = [
    "FakeEvents",
    "KernelEvents",
    "NetlinkEvents",
    "RouteFilter",
    "attach_filter",
    "neighbour_filter",
    "nft_relevant",
]
