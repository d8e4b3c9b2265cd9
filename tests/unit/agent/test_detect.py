"""NIC and IP auto-detection: nicNodeNames, then defaultNICName, then can-reach."""

from __future__ import annotations

import pytest

from clusterlink.agent.detect import Detected, detect, merged
from clusterlink.agent.kernel import Link
from clusterlink.api import Cluster, ClusterLinkOptions, ClusterNodeSpec, ClusterSpec, ObjectMeta
from clusterlink.api.cluster import NicNodeNames

LINKS = {
    "eth0": Link(
        "eth0", 2, "veth", 1500, True, "02:00:00:00:00:01", ("192.168.1.5/24", "fd00::5/64")
    ),
    "eth1": Link("eth1", 3, "veth", 9000, True, "02:00:00:00:00:02", ("10.0.0.5/24",)),
}


def cluster(**options: object) -> Cluster:
    return Cluster(
        metadata=ObjectMeta(name="c"),
        spec=ClusterSpec(cluster_link_options=ClusterLinkOptions(**options)),
    )


NODE = ClusterNodeSpec(cluster_name="c", node_name="n1")


@pytest.mark.parametrize(
    "options, source, expected",
    [
        (
            {
                "nic_node_names": [NicNodeNames(interface_name="eth1", node_name=["n1"])],
                "default_nic_name": "eth0",
            },
            None,
            Detected("eth1", "10.0.0.5", "", 9000),
        ),
        (
            {
                "nic_node_names": [NicNodeNames(interface_name="eth1", node_name=["n2"])],
                "default_nic_name": "eth0",
            },
            None,
            Detected("eth0", "192.168.1.5", "fd00::5", 1500),
        ),
        (
            {"autodetection_method": "can-reach=10.0.0.1"},
            "10.0.0.5",
            Detected("eth1", "10.0.0.5", "", 9000),
        ),
        ({}, "192.168.1.5", Detected("eth0", "192.168.1.5", "fd00::5", 1500)),
    ],
    ids=["nic-node-names", "default-nic", "can-reach", "default-can-reach"],
)
def test_choice_order(options: dict[str, object], source: str | None, expected: Detected) -> None:
    targets: list[str] = []

    def find(target: str) -> str | None:
        targets.append(target)
        return source

    found, why = detect(cluster(**options), NODE, LINKS, find)
    assert found == expected, why
    if not options:
        assert targets == ["8.8.8.8"]


def test_ipv6_only_node_falls_back_to_an_ipv6_target() -> None:
    found, _ = detect(cluster(), NODE, LINKS, lambda t: "fd00::5" if ":" in t else None)
    assert found is not None and found.interface == "eth0"


def test_failures_say_why() -> None:
    assert detect(cluster(default_nic_name="eth7"), NODE, LINKS, lambda t: None) == (
        None,
        "interface eth7 not found",
    )
    assert (
        detect(cluster(), NODE, LINKS, lambda t: None)[1]
        == "no route to 8.8.8.8 or 2001:4860:4860::8888 (can-reach=8.8.8.8, can-reach=2001:4860:4860::8888)"
    )
    assert (
        "no interface holds 172.16.0.1" in detect(cluster(), NODE, LINKS, lambda t: "172.16.0.1")[1]
    )


def test_merge_never_clears_known_values() -> None:
    known = NODE.model_copy(
        update={"interface_name": "eth0", "ip": "192.168.1.5", "ip6": "fd00::5"}
    )
    assert merged(known, Detected("eth0", "192.168.1.6", "", 1500)).ip6 == "fd00::5"
    assert merged(known, Detected("eth0", "192.168.1.6", "", 1500)).ip == "192.168.1.6"
