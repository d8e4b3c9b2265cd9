"""A bulk TCP transfer between two network namespaces that reports each end's MSS.

`transfer(src_ns, dst_ns, dst_ip, nbytes)` starts a receiver in `dst_ns`, sends `nbytes`
from `src_ns`, and returns what both ends saw: bytes received, seconds (connect to the
receiver's close after the last byte), and TCP_MAXSEG on the
sender's and the receiver's socket right after the handshake (before any data: what the SYN
and SYN-ACK negotiated, so an MSS clamp on the way shows there).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

RECEIVER = r"""
import json, socket, sys, time
ip, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ip, port)); s.listen(1); s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
c, _ = s.accept(); c.settimeout(float(sys.argv[3]))
mss = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
start, got = time.monotonic(), 0
while True:
    data = c.recv(1 << 20)
    if not data:
        break
    got += len(data)
print(json.dumps({"mss": mss, "bytes": got, "seconds": time.monotonic() - start}), flush=True)
"""
SENDER = r"""
import json, socket, sys, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
start = time.monotonic()
s = socket.create_connection((ip, port), timeout=float(sys.argv[4]))
mss = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
chunk = b"x" * (1 << 20)
left = n
while left:
    left -= s.send(chunk[: min(left, len(chunk))])
s.shutdown(socket.SHUT_WR)
s.recv(1)  # returns when the receiver, having read everything, closes
print(json.dumps({"mss": mss, "seconds": time.monotonic() - start}), flush=True)
"""


def netns_python(ns: str, script: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-c", script]


@dataclass(frozen=True)
class Transfer:
    received: int
    seconds: float  # the sender's: connect to the receiver's close after the last byte
    sender_mss: int
    receiver_mss: int


def transfer(
    src_ns: str, dst_ns: str, dst_ip: str, nbytes: int, port: int = 5201, timeout: float = 20.0
) -> Transfer:
    receiver = subprocess.Popen(
        [*netns_python(dst_ns, RECEIVER), dst_ip, str(port), str(timeout)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        ready = receiver.stdout.readline().strip()
        assert ready == "ready", receiver.stderr.read() if receiver.stderr else ready
        sender = subprocess.run(
            [*netns_python(src_ns, SENDER), dst_ip, str(port), str(nbytes), str(timeout)],
            capture_output=True,
            text=True,
            timeout=timeout + 5,
        )
        assert sender.returncode == 0, sender.stderr
        out, err = receiver.communicate(timeout=timeout + 5)
        assert receiver.returncode == 0, err
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    got = json.loads(out.strip().splitlines()[-1])
    sent = json.loads(sender.stdout.strip().splitlines()[-1])
    return Transfer(got["bytes"], sent["seconds"], sent["mss"], got["mss"])
