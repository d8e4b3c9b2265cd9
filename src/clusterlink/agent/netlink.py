"""A lean rtnetlink reader for the bulk of our state: routes, neighbours and FDB entries.

Why not pyroute2 here: reading back 5,000 routes through pyroute2 takes ~220 ms (and as much
again for neighbours and FDB), more than programming them with `ip -batch`; a no-op resync
must cost a few percent of an apply. The kernel dumps 5,000 entries in ~3 ms; this module
asks for the dump on a plain netlink socket and decodes only the attributes we compare.
pyroute2 still does everything else (links, addresses, rules).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Iterator

from clusterlink import constants as C
from clusterlink.agent import netns

AF_INET, AF_INET6, AF_BRIDGE = 2, 10, 7
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTM_NEWROUTE, RTM_GETROUTE, RTM_NEWNEIGH, RTM_GETNEIGH = 24, 26, 28, 30
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_METRICS, RTA_TABLE = 1, 4, 5, 8, 15
RTAX_MTU = 2  # inside RTA_METRICS
NDA_DST, NDA_LLADDR = 1, 2
RTM_GETLINK, IFLA_IFNAME = 18, 3
NUD_PERMANENT = 0x80
SOL_NETLINK, NETLINK_GET_STRICT_CHK = 270, 12

_HDR = struct.Struct("=LHHLL")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NDMSG = struct.Struct("=BxxxiHBB")
_ATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")


class NetlinkError(OSError):
    pass


# Records are plain tuples (a dataclass per entry costs more than the dump itself):
RawRoute = tuple[str, str, int, int, int]  # (dst CIDR, gateway, oif, mtu metric; 0 = none,
# rtm_protocol); a throw route of ours: gateway "", oif 0
RTN_THROW = 9
RawNeigh = tuple[str, str, int, int]  # (ip, lladdr, ifindex, state)


def _ip(family: int, raw: bytes) -> str:
    return socket.inet_ntop(AF_INET6 if len(raw) == 16 else AF_INET, raw)


def _mac(raw: bytes) -> str:
    return raw.hex(":")


def _metric(msg: bytes, pos: int, end: int, wanted: int) -> int:
    """One u32 of a nested RTA_METRICS attribute (0 when absent)."""
    while pos + 8 <= end:
        alen, atype = _ATTR.unpack_from(msg, pos)
        if alen < 4:
            break
        if atype & 0x3FFF == wanted and alen >= 8:
            return int(_U32.unpack_from(msg, pos + 4)[0])
        pos += (alen + 3) & ~3
    return 0


RTMGRP_LINK, RTMGRP_NEIGH, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE = 0x1, 0x4, 0x40, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_DELROUTE, RTM_DELNEIGH = 16, 17, 25, 29


def drain(sock: socket.socket) -> bool:
    """Empty a non-blocking notification socket's queue; True if anything was (or was lost:
    ENOBUFS) in it."""
    notified = False
    while True:
        try:
            sock.recv(1 << 16)
        except BlockingIOError:
            return notified
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
        notified = True


class ChangeFeed:
    """Kernel notifications about links, routes and neighbours (FDB included), so a resync
    can tell "nothing of ours changed since the last dump" without dumping 15,000 entries.

    Conservative: any notification for table 200 or for one of the watched devices, any
    notification it cannot place, and a lost notification (ENOBUFS: the queue overflowed)
    all count as a change."""

    def __init__(self, netns_name: str | None) -> None:
        with netns.entered(netns_name):
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((0, RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE))
        self.sock.setblocking(False)

    def changed(self, table: int, ifindexes: set[int]) -> bool:
        """Drain pending notifications; True if any may concern our state."""
        relevant = False
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return relevant
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # notifications were lost
                    relevant = True
                    continue
                raise
            off = 0
            while off + _HDR.size <= len(data):
                length, mtype, _f, _seq, _pid = _HDR.unpack_from(data, off)
                if length < _HDR.size:
                    break
                body = off + _HDR.size
                if mtype in (RTM_NEWROUTE, RTM_DELROUTE) and length >= _HDR.size + _RTMSG.size:
                    relevant |= _RTMSG.unpack_from(data, body)[4] == table
                elif mtype in (RTM_NEWNEIGH, RTM_DELNEIGH) and length >= _HDR.size + _NDMSG.size:
                    relevant |= _NDMSG.unpack_from(data, body)[1] in ifindexes
                elif mtype in (RTM_NEWLINK, RTM_DELLINK) and length >= _HDR.size + 8:
                    relevant |= struct.unpack_from("=i", data, body + 4)[0] in ifindexes
                else:
                    relevant = True
                off += (length + 3) & ~3

    def close(self) -> None:
        self.sock.close()


RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x10, 0x100
LINK_GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR  # links and addresses


class Notifications:
    """ "Has anything come since the last look?" on netlink multicast groups in a namespace:
    what makes a cached dump (links, iptables) safe to reuse. Subscribe before the first dump
    whose result is kept; any notification, and a lost one (ENOBUFS), counts."""

    def __init__(
        self,
        netns_name: str | None,
        groups: int,
        protocol: int = socket.NETLINK_ROUTE,
        rcvbuf: int | None = None,
    ) -> None:
        with netns.entered(netns_name):
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((0, groups))
        self.sock.setblocking(False)

    def changed(self) -> bool:
        """Drain pending notifications; True if there was any (or some were lost)."""
        return drain(self.sock)

    def close(self) -> None:
        self.sock.close()


class Reader:
    """One netlink socket, opened inside `netns_name` and bound there for its lifetime."""

    def __init__(self, netns_name: str | None) -> None:
        with netns.entered(netns_name):
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        with contextlib.suppress(OSError):  # kernel-side filtering where it can; we filter too
            self.sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def _dump(self, msg_type: int, body: bytes) -> Iterator[tuple[int, bytes, int]]:
        """Yield (type, buffer, offset of the payload) for every message of the dump."""
        self.seq += 1
        self.sock.send(
            _HDR.pack(_HDR.size + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0)
            + body
        )
        while True:
            data = self.sock.recv(1 << 20)
            off = 0
            while off < len(data):
                length, mtype, _flags, seq, _pid = _HDR.unpack_from(data, off)
                if seq != self.seq:
                    off += (length + 3) & ~3
                    continue
                if mtype == NLMSG_DONE:
                    return
                if mtype == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, off + _HDR.size)
                    if code:
                        raise NetlinkError(-code, f"netlink dump failed: {os.strerror(-code)}")
                    return
                yield mtype, data[off : off + length], _HDR.size
                off += (length + 3) & ~3

    def routes(self, family: int, table: int) -> list[RawRoute]:
        out = []
        for fam, dst_len, dst, gateway, oif, mtu, proto, rtype in self._routes(family, table):
            throw = rtype == RTN_THROW and proto == C.ROUTE_PROTO
            if not (gateway or throw):
                continue
            prefix = _ip(fam, dst) if dst else ("0.0.0.0" if fam == AF_INET else "::")
            gw = _ip(fam, gateway) if gateway else ""
            out.append((f"{prefix}/{dst_len}", gw, oif, mtu, proto))
        return out

    def table(self, family: int, table: int) -> list[tuple[str, str, int, int]]:
        """Every route of a table: (dst CIDR, gateway or "", oif, rtm_type)."""
        out = []
        for fam, dst_len, dst, gateway, oif, _mtu, _proto, rtype in self._routes(family, table):
            prefix = _ip(fam, dst) if dst else ("0.0.0.0" if fam == AF_INET else "::")
            out.append((f"{prefix}/{dst_len}", _ip(fam, gateway) if gateway else "", oif, rtype))
        return out

    def _routes(
        self, family: int, table: int
    ) -> Iterator[tuple[int, int, bytes, bytes, int, int, int, int]]:
        """(family, dst_len, dst, gateway, oif, mtu, protocol, type) of a table's routes."""
        body = _RTMSG.pack(family, 0, 0, 0, table if table < 256 else 0, 0, 0, 0, 0)
        for mtype, msg, off in self._dump(RTM_GETROUTE, body):
            if mtype != RTM_NEWROUTE:
                continue
            fam, dst_len, _s, _t, tbl, proto, _sc, rtype, _f = _RTMSG.unpack_from(msg, off)
            pos = off + _RTMSG.size
            dst = gateway = b""
            oif = mtu = 0
            end = len(msg)
            while pos + 4 <= end:
                alen, atype = _ATTR.unpack_from(msg, pos)
                if alen < 4:
                    break
                atype &= 0x3FFF
                if atype == RTA_DST:
                    dst = msg[pos + 4 : pos + alen]
                elif atype == RTA_GATEWAY:
                    gateway = msg[pos + 4 : pos + alen]
                elif atype == RTA_OIF:
                    (oif,) = _U32.unpack_from(msg, pos + 4)
                elif atype == RTA_TABLE:
                    (tbl,) = _U32.unpack_from(msg, pos + 4)
                elif atype == RTA_METRICS:
                    mtu = _metric(msg, pos + 4, pos + alen, RTAX_MTU)
                pos += (alen + 3) & ~3
            if tbl == table:
                yield fam, dst_len, dst, gateway, oif, mtu, proto, rtype

    def neighbours(self, family: int) -> list[RawNeigh]:
        """IPv4/IPv6 neighbours (family AF_INET/AF_INET6) or FDB entries (AF_BRIDGE: `ip` is the
        remote underlay address; entries without one are skipped)."""
        out = []
        for mtype, msg, off in self._dump(RTM_GETNEIGH, _NDMSG.pack(family, 0, 0, 0, 0)):
            if mtype != RTM_NEWNEIGH:
                continue
            fam, ifindex, state, _flags, _ty = _NDMSG.unpack_from(msg, off)
            pos = off + _NDMSG.size
            dst = lladdr = b""
            end = len(msg)
            while pos + 4 <= end:
                alen, atype = _ATTR.unpack_from(msg, pos)
                if alen < 4:
                    break
                atype &= 0x3FFF
                if atype == NDA_DST:
                    dst = msg[pos + 4 : pos + alen]
                    if lladdr:
                        break
                elif atype == NDA_LLADDR:
                    lladdr = msg[pos + 4 : pos + alen]
                    if dst:
                        break
                pos += (alen + 3) & ~3
            if not dst or len(lladdr) != 6:
                continue
            out.append((_ip(fam, dst), _mac(lladdr), ifindex, state))
        return out

    def link_names(self) -> dict[int, str]:
        """Interface index -> name of every link."""
        return {index: name for index, (name, _flags) in self._links().items()}

    def link_state(self, name: str) -> tuple[bool, bool] | None:
        """(admin up, carrier) of one link, or None if it does not exist (as
        `LinuxKernel.link_state`, without pyroute2: the elector needs nothing else)."""
        for link, flags in self._links().values():
            if link == name:
                return bool(flags & 1), bool(flags & 0x10000)  # IFF_UP, IFF_LOWER_UP
        return None

    def _links(self) -> dict[int, tuple[str, int]]:
        """Interface index -> (name, flags) of every link."""
        out = {}
        for mtype, msg, off in self._dump(RTM_GETLINK, struct.pack("=BxHiII", 0, 0, 0, 0, 0)):
            if mtype != RTM_NEWLINK:
                continue
            index, flags = struct.unpack_from("=iI", msg, off + 4)
            pos, end = off + 16, len(msg)
            while pos + 4 <= end:
                alen, atype = _ATTR.unpack_from(msg, pos)
                if alen < 4:
                    break
                if atype & 0x3FFF == IFLA_IFNAME:
                    out[index] = (msg[pos + 4 : pos + alen].split(b"\0", 1)[0].decode(), flags)
                    break
                pos += (alen + 3) & ~3
        return out


class LinkWatch:
    """`Reader.link_state` that dumps the links again only after a link notification: the
    elector asks four times a second, and a node's links rarely change (a dump is ~50 us of
    decoding; a look at an empty notification queue, one failed recv). Conservative: any link
    notification, and a lost one (ENOBUFS), mean a new dump."""

    def __init__(self, netns_name: str | None) -> None:
        self.feed = Notifications(netns_name, RTMGRP_LINK)  # before the first dump
        self.reader = Reader(netns_name)
        self._links: dict[int, tuple[str, int]] | None = None
        self.dumps = 0

    def link_state(self, name: str) -> tuple[bool, bool] | None:
        """As `Reader.link_state`."""
        if self.feed.changed() or self._links is None:
            self._links = self.reader._links()
            self.dumps += 1
        for link, flags in self._links.values():
            if link == name:
                return bool(flags & 1), bool(flags & 0x10000)  # IFF_UP, IFF_LOWER_UP
        return None

    def close(self) -> None:
        self.feed.close()
        self.reader.close()
