"""`kosmosctl lab demo`: lab up + install + join every cluster + wait + `kosmosctl dr`."""

from __future__ import annotations

# The default demo: one P2P and one isolated gateway-mode cluster, dual-stack.
# (examples/mixed-dual-stack.yaml is the same; a test keeps them equal.)
DEFAULT_TOPOLOGY: dict[str, object] = {
    "name": "demo",
    "clusters": [
        {
            "name": "c1",
            "nodes": 3,
            "ipFamily": "all",
            "podCIDRs": ["10.233.64.0/18", "fd11:233::/48"],
            "serviceCIDRs": ["10.233.0.0/18", "fd11:96::/108"],
            "podsPerNode": 1,
            "services": [{"name": "web", "port": 80, "pods": ["n2/p1", "n3/p1"]}],
            "join": {"networkType": "p2p", "ipFamily": "all"},
        },
        {
            "name": "c2",
            "nodes": 3,
            "ipFamily": "all",
            "podCIDRs": ["10.234.64.0/18", "fd12:234::/48"],
            "serviceCIDRs": ["10.234.0.0/18", "fd12:96::/108"],
            "gatewayCandidates": 2,
            "isolated": True,
            "podsPerNode": 1,
            "services": [{"name": "web", "port": 80, "pods": ["n3/p1"]}],
            "join": {"networkType": "gateway", "ipFamily": "all"},
        },
    ],
}
