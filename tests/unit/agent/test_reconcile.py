"""The reconciler against fake ports: what it changes, in which order, and what it leaves."""

from __future__ import annotations

from clusterlink.agent.fake import FakeFirewall, FakeKernel
from clusterlink.agent.reconcile import reconcile
from clusterlink.api import Arp, Device, Fdb, Iptables, NodeConfigSpec, Route

BRIDGE = Device(
    name="vx-bridge",
    addr="220.0.0.1/8",
    mac="02:00:00:00:00:aa",
    bind_dev="eth0",
    id=54,
    port=4876,
    mtu=1450,
)
BRIDGE6 = Device(
    name="vx-bridge-6",
    addr="9480::1/16",
    mac="02:00:00:00:00:bb",
    bind_dev="eth0",
    id=64,
    port=4866,
)
ROUTE = Route(cidr="10.2.0.0/16", gw="220.0.0.2", dev="vx-bridge")
FDB = Fdb(ip="192.168.0.2", mac="02:00:00:00:00:cc", dev="vx-bridge")
ARP = Arp(ip="220.0.0.2", mac="02:00:00:00:00:cc", dev="vx-bridge")
R = ("10.2.0.0/16", "220.0.0.2", "vx-bridge", 0)  # mtu 0: the device's
F = ("192.168.0.2", "02:00:00:00:00:cc", "vx-bridge")
A = ("220.0.0.2", "02:00:00:00:00:cc", "vx-bridge")
MASQ = Iptables(table="nat", chain="POSTROUTING", rule="-s 210.0.0.0/8 -o vx-bridge -j MASQUERADE")


def spec(
    *devices: Device, routes=(ROUTE,), fdbs=(FDB,), arps=(ARP,), iptables=()
) -> NodeConfigSpec:
    return NodeConfigSpec(
        devices=list(devices),
        routes=list(routes),
        fdbs=list(fdbs),
        arps=list(arps),
        iptables=list(iptables),
    )


def host() -> tuple[FakeKernel, FakeFirewall]:
    kernel = FakeKernel()
    kernel.add_nic("eth0", ("192.168.0.1/24", "fd00::1/64"), mtu=1500)
    return kernel, FakeFirewall()


def test_first_pass_builds_everything_then_nothing_changes() -> None:
    kernel, fw = host()
    report = reconcile(kernel, fw, spec(BRIDGE, BRIDGE6, iptables=(MASQ,)))
    assert report.errors == []
    assert report.devices_created == ["vx-bridge", "vx-bridge-6"]
    assert report.entries_added == 3 and report.rules_changed == 2
    assert kernel.routes == {R} and kernel.fdbs == {F} and kernel.arps == {A}
    vx6 = kernel.links()["vx-bridge-6"].vxlan
    assert vx6 is not None and vx6.mtu == 1430 and vx6.local == "fd00::1"  # mtu 0 -> NIC - 70
    assert kernel.sysctls["net/ipv4/conf/eth0/rp_filter"] == "2"
    rules4 = {r.rule for r in fw.state[4].rules}
    assert rules4 == {MASQ.rule, "-i vx-bridge -j ACCEPT", "-o vx-bridge -j ACCEPT"}
    calls = len(kernel.calls) + len(fw.calls)
    again = reconcile(kernel, fw, spec(BRIDGE, BRIDGE6, iptables=(MASQ,)))
    assert again.changes == 0 and again.errors == []
    assert len(kernel.calls) + len(fw.calls) == calls  # not one mutating call


def test_stale_entries_removed_before_new_ones_added() -> None:
    kernel, fw = host()
    reconcile(kernel, fw, spec(BRIDGE))
    moved = Route(cidr="10.2.0.0/16", gw="220.0.0.3", dev="vx-bridge")
    report = reconcile(kernel, fw, spec(BRIDGE, routes=(moved,)))
    assert (report.entries_removed, report.entries_added) == (1, 1)
    assert kernel.routes == {(moved.cidr, moved.gw, moved.dev, 0)}
    assert kernel.calls[-2:] == ["entries -1 +0", "entries -0 +1"]


def test_route_mtu_change_retunes_the_route_in_place() -> None:
    """A new path MTU (a peer moved to a smaller underlay) is one `route replace`: no delete
    first, so traffic never finds the route missing."""
    kernel, fw = host()
    reconcile(kernel, fw, spec(BRIDGE))
    capped = ROUTE.model_copy(update={"mtu": 1350})
    report = reconcile(kernel, fw, spec(BRIDGE, routes=(capped,)))
    assert (report.entries_removed, report.entries_added) == (0, 1)
    assert kernel.calls[-1] == "entries -0 +1"
    assert kernel.routes == {(*R[:3], 1350)}
    assert reconcile(kernel, fw, spec(BRIDGE, routes=(capped,))).changes == 0
    kernel.routes = {R}  # drift: someone reset the MTU
    assert reconcile(kernel, fw, spec(BRIDGE, routes=(capped,))).entries_added == 1
    assert kernel.routes == {(*R[:3], 1350)}
    report = reconcile(kernel, fw, spec(BRIDGE))  # and back to the device MTU
    assert report.entries_added == 1 and kernel.routes == {R}


def test_mss_clamp_rules_on_v6_devices_go_to_ip6tables() -> None:
    kernel, fw = host()
    clamp = "-p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu"
    rules = tuple(
        Iptables(table="mangle", chain=chain, rule=f"-o {dev} {clamp}")
        for dev in ("vx-bridge", "vx-bridge-6")
        for chain in ("FORWARD", "OUTPUT")
    )
    report = reconcile(kernel, fw, spec(BRIDGE, BRIDGE6, iptables=rules))
    assert report.errors == []
    for family, dev in ((4, "vx-bridge"), (6, "vx-bridge-6")):
        assert {r.rule for r in fw.state[family].rules if r.table == "mangle"} == {
            f"-o {dev} {clamp}"
        }
        assert ("mangle", "FORWARD") in fw.state[family].chains


def test_changed_device_is_replaced_and_its_entries_restored_in_the_same_pass() -> None:
    kernel, fw = host()
    reconcile(kernel, fw, spec(BRIDGE))
    new_mac = BRIDGE.model_copy(update={"mac": "02:00:00:00:00:dd"})
    report = reconcile(kernel, fw, spec(new_mac))
    assert report.devices_deleted == ["vx-bridge"] and report.devices_created == ["vx-bridge"]
    assert kernel.routes == {R} and kernel.fdbs == {F} and kernel.arps == {A}
    assert reconcile(kernel, fw, spec(new_mac)).changes == 0


def test_drift_is_repaired() -> None:
    kernel, fw = host()
    reconcile(kernel, fw, spec(BRIDGE, iptables=(MASQ,)))
    kernel.routes.clear()
    kernel.arps.clear()
    kernel.rules.clear()
    fw.state[4].rules.clear()
    kernel.sysctls["net/ipv4/ip_forward"] = "0"
    report = reconcile(kernel, fw, spec(BRIDGE, iptables=(MASQ,)))
    assert report.entries_added == 2 and report.rules_changed == 1 and report.sysctls_changed == 1
    assert report.firewall_changed == [4]
    assert kernel.routes == {R} and kernel.rules == {4}


def test_foreign_entries_on_other_devices_are_never_touched() -> None:
    kernel, fw = host()
    foreign = ("10.9.0.0/16", "192.168.0.254", "eth0", 0)
    kernel.routes.add(foreign)
    reconcile(kernel, fw, spec(BRIDGE))
    reconcile(kernel, fw, None)
    assert kernel.routes == {foreign}


def test_missing_bind_device_is_an_error_for_that_device_only() -> None:
    kernel, fw = host()
    other = BRIDGE6.model_copy(update={"bind_dev": "eth9"})
    report = reconcile(kernel, fw, spec(BRIDGE, other))
    assert report.errors == ["vx-bridge-6: bind device eth9 not found"]
    assert set(kernel.links()) == {"eth0", "vx-bridge"}
    assert kernel.routes == {R}


def test_a_foreign_link_with_our_name_is_left_alone() -> None:
    kernel, fw = host()
    kernel.add_nic("vx-local", ())
    report = reconcile(kernel, fw, spec(BRIDGE))
    assert any("vx-local: a veth link has our name" in e for e in report.errors)
    assert kernel.links()["vx-local"].kind == "veth"


def test_teardown_removes_all_of_ours() -> None:
    kernel, fw = host()
    reconcile(kernel, fw, spec(BRIDGE, BRIDGE6, iptables=(MASQ,)))
    report = reconcile(kernel, fw, None)
    assert sorted(report.devices_deleted) == ["vx-bridge", "vx-bridge-6"]
    assert set(kernel.links()) == {"eth0"}
    assert kernel.routes == kernel.fdbs == kernel.arps == set() and kernel.rules == set()
    assert fw.state[4].chains == set() and fw.state[6].chains == set()
    assert reconcile(kernel, fw, None).changes == 0


def test_removed_device_takes_its_rule_family_with_it() -> None:
    kernel, fw = host()
    reconcile(kernel, fw, spec(BRIDGE, BRIDGE6))
    report = reconcile(kernel, fw, spec(BRIDGE))
    assert report.devices_deleted == ["vx-bridge-6"] and kernel.rules == {4}
    assert report.firewall_changed == [6] and fw.state[6].chains == set()


def test_entries_the_kernel_refuses_are_reported() -> None:
    class Refusing(FakeKernel):
        def change_entries(self, remove, add):
            errors = super().change_entries(remove, add)
            bad = [r for r in add.routes if r[0] == "10.3.0.0/16"]
            self.routes -= set(bad)
            return errors + [f"route replace {r[0]}: Network is unreachable" for r in bad]

    kernel, fw = Refusing(), FakeFirewall()
    kernel.add_nic("eth0", ("192.168.0.1/24",))
    bad = Route(cidr="10.3.0.0/16", gw="220.0.0.9", dev="vx-bridge")
    report = reconcile(kernel, fw, spec(BRIDGE, routes=(ROUTE, bad)))
    assert report.errors == ["route replace 10.3.0.0/16: Network is unreachable"]
    assert kernel.routes == {R}
