"""TCP MSS clamping on the nodes that encapsulate (table mangle, `iptables -S` text).

A pod's TCP stack picks its MSS from its own interface MTU (the CNI's: often the full
underlay MTU), which is larger than the tunnel can carry. Every node that owns a vx device
rewrites the MSS option of SYN and SYN-ACK segments leaving over it to fit the route's MTU
(`--clamp-mss-to-pmtu` reads the per-route `mtu` the planner sets toward smaller peers, else
the device's): FORWARD for pod traffic, OUTPUT for the node's own (host-network pods). Both
ends of a connection clamp what they send, so neither side ever relies on ICMP "fragmentation
needed" coming back through the underlay. The rules are written exactly as `iptables -S`
prints them back, so the agent's text diff converges.
"""

from __future__ import annotations

from collections.abc import Mapping

from clusterlink import constants as C
from clusterlink.api.nodeconfig import Iptables


def _rules(dev: str) -> tuple[Iptables, ...]:
    text = f"-o {dev} -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu"
    return tuple(
        Iptables.trusted(table="mangle", chain=chain, rule=text) for chain in ("FORWARD", "OUTPUT")
    )


# One shared, immutable set per device: every NodeConfig of a federation reuses them.
_BY_DEVICE = {dev: _rules(dev) for dev in (*C.OWNED_DEVICES, *C.WG_DEVICES)}


def mss_clamp(devices: Mapping[str, object]) -> list[Iptables]:
    """The clamp on every vx and wg device the node owns."""
    return [rule for dev in devices for rule in _BY_DEVICE.get(dev, ())]
