"""Mixed underlay MTUs end to end: a 1400 cloud cluster joined to 1500 on-premises clusters,
one P2P and one isolated gateway-mode, dual-stack; pods keep the CNI's MTU (the node's: the
lab's pods are routed, unencapsulated, as with Calico in BGP mode), which is larger than the
tunnel. The path MTU is 1400 - 50 = 1350 over IPv4 and 1400 - 70 = 1330 over IPv6 whichever
side sends: `ping -M do` fits exactly, one byte more is refused at once, and 50 MB of TCP go
through in both families and both modes with the MSS clamped to the path."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from clusterlink.lab.topology import PodPlan
from tests.e2e.conftest import lab_name
from tests.e2e.connect import Lab, joined_lab
from tests.tcp_probe import transfer

PATH = {4: 1400 - 50, 6: 1400 - 70}  # to or from the cloud cluster
PATH_1500 = {4: 1500 - 50, 6: 1500 - 70}  # between the two 1500 clusters
HEADERS = {4: 28, 6: 48}  # IP + ICMP header: ping -s is the payload
TCP_HEADERS = {4: 40, 6: 60}
TOPOLOGY = {
    "name": lab_name("mtu"),
    "clusters": [
        {"name": "cloud", "nodes": 2, "ipFamily": "all", "mtu": 1400},
        {"name": "onprem", "nodes": 2, "ipFamily": "all", "mtu": 1500},
        {
            "name": "gw",
            "nodes": 2,
            "ipFamily": "all",
            "mtu": 1500,
            "gatewayCandidates": 1,
            "isolated": True,
        },
    ],
}
JOINS = {"cloud": ("p2p", "all"), "onprem": ("p2p", "all"), "gw": ("gateway", "all")}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with joined_lab(TOPOLOGY, JOINS, tmp_path_factory.mktemp("mtu")) as lab:
        yield lab


def ip_of(pod: PodPlan, family: int) -> str:
    ip = pod.ip if family == 4 else pod.ip6
    assert ip is not None
    return ip


def ping(src: PodPlan, dst: PodPlan, family: int, size: int) -> subprocess.CompletedProcess[str]:
    argv = ["ping", "-M", "do", "-s", str(size), "-c", "1", "-W", "1", ip_of(dst, family)]
    return subprocess.run(
        ["ip", "netns", "exec", src.netns, *argv], capture_output=True, text=True, timeout=10
    )


def pairs(lab: Lab) -> list[tuple[str, PodPlan, PodPlan, dict[int, int]]]:
    """(mode, pod, pod, path MTU): a 1500 cluster's pod and the 1400 one's, P2P and
    gateway-mode (the gateway node's pod, and an internal node's: vx-local to the gateway,
    then vx-bridge); and the two 1500 clusters' pods, where the path is the full 1450."""
    cloud = lab.plan.cluster("cloud").pods
    onprem, gw = lab.plan.cluster("onprem").pods, lab.plan.cluster("gw").pods
    return [
        ("p2p", onprem[0], cloud[0], PATH),
        ("gateway", gw[0], cloud[1], PATH),
        ("gateway-internal", gw[1], cloud[0], PATH),
        ("same-mtu", onprem[1], gw[1], PATH_1500),
    ]


@pytest.mark.parametrize("family", [4, 6])
def test_ping_fits_the_path_mtu_exactly_both_ways(lab: Lab, family: int) -> None:
    failures = []
    for mode, a, b, path in pairs(lab):
        mtu = path[family]
        for src, dst in ((a, b), (b, a)):
            what = f"{mode} IPv{family} {src.netns} -> {ip_of(dst, family)}"
            fits = ping(src, dst, family, mtu - HEADERS[family])
            if fits.returncode != 0:
                failures.append(f"{what}: {mtu} bytes lost: {fits.stdout}")
            start = time.monotonic()
            over = ping(src, dst, family, mtu - HEADERS[family] + 1)
            took = time.monotonic() - start
            refused = str(mtu) in over.stdout + over.stderr  # "mtu = 1350" / "mtu=1330"
            if over.returncode == 0 or not refused or took > 3:
                failures.append(
                    f"{what}: {mtu + 1} bytes not refused cleanly "
                    f"(rc {over.returncode}, {took:.1f} s): {over.stdout} {over.stderr}"
                )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("mode", ["p2p", "gateway-internal"])
def test_50mb_tcp_transfer_with_the_mss_clamped(lab: Lab, family: int, mode: str) -> None:
    _, src, dst, path = next(p for p in pairs(lab) if p[0] == mode)
    for pod in (src, dst):  # forget path MTUs the pings taught: the MSS must come from the clamp
        for flag in ("-4", "-6"):
            subprocess.run(["ip", "-n", pod.netns, flag, "route", "flush", "cache"], check=True)
    t = transfer(src.netns, dst.netns, ip_of(dst, family), 50_000_000, timeout=30)
    print(f"{mode} IPv{family}: 50 MB in {t.seconds:.2f} s, MSS {t.sender_mss}/{t.receiver_mss}")
    assert t.received == 50_000_000
    limit = path[family] - TCP_HEADERS[family]
    assert 0 < t.sender_mss <= limit and 0 < t.receiver_mss <= limit, t
