"""ICMP echo from Python, many at once: one raw socket per family, replies matched to waiting
probes by (address, identifier, sequence). ICMP errors about our probes (destination
unreachable, ...) end them at once with a reason."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import struct
import time

ECHO_REQUEST = {4: 8, 6: 128}
ECHO_REPLY = {4: 0, 6: 129}
UNREACHABLE = {4: 3, 6: 1}


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(family: int, ident: int, seq: int, payload: bytes = b"clusterlink-dr") -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST[family], 0, 0, ident, seq)
    if family == 6:
        return header + payload  # the kernel fills in the ICMPv6 checksum
    return struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload


class Pinger:
    """Send echo requests and await their replies, sharing one socket per family."""

    def __init__(self) -> None:
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0
        self.waiting: dict[tuple[str, int], asyncio.Future[str | None]] = {}
        self.socks: dict[int, socket.socket] = {}

    def _sock(self, family: int) -> socket.socket:
        if family not in self.socks:
            af, proto = (
                (socket.AF_INET, socket.IPPROTO_ICMP)
                if family == 4
                else (socket.AF_INET6, socket.IPPROTO_ICMPV6)
            )
            sock = socket.socket(af, socket.SOCK_RAW, proto)
            sock.setblocking(False)
            asyncio.get_running_loop().add_reader(sock.fileno(), self._read, sock, family)
            self.socks[family] = sock
        return self.socks[family]

    def _read(self, sock: socket.socket, family: int) -> None:
        while True:
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            if family == 4:
                data = data[(data[0] & 0x0F) * 4 :]  # raw IPv4 sockets deliver the IP header
            if len(data) < 8:
                continue
            kind, _code, _sum, ident, seq = struct.unpack("!BBHHH", data[:8])
            if kind == ECHO_REPLY[family] and ident == self.ident:
                self._finish((str(ipaddress.ip_address(addr[0])), seq), None)
            elif kind == UNREACHABLE[family]:
                inner = data[8:]
                if family == 4 and len(inner) >= 20:
                    dst = str(ipaddress.ip_address(inner[16:20]))
                    inner = inner[(inner[0] & 0x0F) * 4 :]
                elif family == 6 and len(inner) >= 40:
                    dst = str(ipaddress.ip_address(inner[24:40]))
                    inner = inner[40:]
                else:
                    continue
                if len(inner) >= 8:
                    _k, _c, _s, i_ident, i_seq = struct.unpack("!BBHHH", inner[:8])
                    if i_ident == self.ident:
                        self._finish((dst, i_seq), "unreachable")

    def _finish(self, key: tuple[str, int], reason: str | None) -> None:
        future = self.waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(reason)

    async def ping(self, ip: str, timeout: float) -> tuple[bool, str, float]:
        """(ok, reason, rtt ms)."""
        family = 6 if ":" in ip else 4
        self.seq = (self.seq + 1) & 0xFFFF
        key = (str(ipaddress.ip_address(ip)), self.seq)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.waiting[key] = future
        start = time.monotonic()
        try:
            self._sock(family).sendto(echo_request(family, self.ident, self.seq), (ip, 0))
        except OSError as exc:
            self.waiting.pop(key, None)
            return (
                False,
                "unreachable" if exc.errno in (101, 113) else f"error: {exc.strerror}",
                0.0,
            )
        try:
            reason = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self.waiting.pop(key, None)
            return False, "timeout", 0.0
        rtt = (time.monotonic() - start) * 1000
        return reason is None, reason or "", rtt

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.socks.values():
            loop.remove_reader(sock.fileno())
            sock.close()
        self.socks.clear()
