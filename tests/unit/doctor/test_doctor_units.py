"""Doctor pieces without a network: request validation, ICMP encoding, the pair matrix, the report."""

from __future__ import annotations

import struct

import pytest

from clusterlink.doctor.floater import BadRequest, parse_request
from clusterlink.doctor.icmp import _checksum, echo_request
from clusterlink.doctor.probe import Pair, Place, Result, matrix, report_html, summary


def test_parse_request_normalises_and_defaults() -> None:
    targets, timeout, concurrency, _retries = parse_request(
        {"targets": [{"ip": "fd00:0::1"}, {"ip": "10.0.0.1", "protocol": "tcp", "port": 80}]}
    )
    assert targets == [
        {"ip": "fd00::1", "protocol": "icmp", "port": 8889},
        {"ip": "10.0.0.1", "protocol": "tcp", "port": 80},
    ]
    assert (timeout, concurrency) == (2.0, 256)


@pytest.mark.parametrize(
    "body, needle",
    [
        ({"targets": "x"}, "targets: a list"),
        ({"targets": [{"ip": "10.0.0.300"}]}, "targets[0].ip"),
        ({"targets": [{"ip": "10.0.0.1", "protocol": "udp"}]}, "protocol"),
        ({"targets": [{"ip": "10.0.0.1", "port": 0}]}, "port"),
        ({"targets": [], "timeout": 0}, "timeout"),
        ({"targets": [], "concurrency": 0}, "concurrency"),
        ({"targets": ["; rm -rf /"]}, "targets[0]: an object"),
    ],
)
def test_parse_request_rejects_bad_input(body: dict[str, object], needle: str) -> None:
    with pytest.raises(BadRequest, match=needle.replace("[", r"\[").replace("]", r"\]")):
        parse_request(body)


def test_icmp_echo_request_checksums() -> None:
    packet = echo_request(4, 0x1234, 7)
    assert packet[0] == 8 and struct.unpack("!HH", packet[4:8]) == (0x1234, 7)
    assert _checksum(packet) == 0  # a correct checksum sums to zero
    assert echo_request(6, 1, 1)[0] == 128  # ICMPv6: the kernel computes the checksum


def test_matrix_pairs_only_shared_families() -> None:
    a = Place("c1", "n1", "ns-a", ("10.1.1.2", "fd11::2"))
    b = Place("c2", "n1", "ns-b", ("10.2.1.2",))
    pairs = matrix([a], [a, b], ["icmp", "tcp"])
    assert [(p.dst, p.target, p.protocol) for p in pairs] == [
        ("c1/n1", "10.1.1.2", "icmp"), ("c1/n1", "10.1.1.2", "tcp"),
        ("c1/n1", "fd11::2", "icmp"), ("c1/n1", "fd11::2", "tcp"),
        ("c2/n1", "10.2.1.2", "icmp"), ("c2/n1", "10.2.1.2", "tcp"),
    ]  # fmt: skip
    assert matrix([b], [a], ["icmp"]) == [Pair("c2/n1", "c1/n1", "10.1.1.2", "icmp")]


def test_report_and_summary() -> None:
    results = [
        Result(Pair("c1/n1", "c2/n1", "10.2.1.2", "icmp"), True, rtt_ms=0.1),
        Result(Pair("c1/n1", "c2/n2", "10.2.2.2", "icmp"), False, "timeout"),
    ]
    assert summary(results, 1.0) == {
        "total": 2,
        "passed": 1,
        "failed": 1,
        "seconds": 1.0,
        "reasons": {"timeout": 1},
    }
    page = report_html(results, "t")
    assert page.count("<svg") == 2 and "1/2 passed" in page and "timeout" in page and "#d33" in page


def test_matrix_probes_a_mapped_cluster_at_its_global_addresses() -> None:
    gmap = (("10.50.0.0/16", "10.62.0.0/16"), ("fd10:50::/48", "fd10:62::/48"))
    a = Place(
        "oa", "n1", "ns-a", ("10.50.1.2", "fd10:50:0:1::2"), (("10.50.0.0/16", "10.61.0.0/16"),)
    )
    b = Place("ob", "n2", "ns-b", ("10.50.2.2", "fd10:50:0:2::2"), gmap)
    pairs = matrix([a], [a, b], ["icmp"])
    assert [(p.dst, p.target, p.real) for p in pairs] == [
        ("oa/n1", "10.50.1.2", ""),  # its own cluster: the real address
        ("oa/n1", "fd10:50:0:1::2", ""),
        ("ob/n2", "10.62.2.2", "10.50.2.2"),
        ("ob/n2", "fd10:62:0:2::2", "fd10:50:0:2::2"),
    ]
    assert Result(pairs[2], True).to_dict()["realIP"] == "10.50.2.2"
