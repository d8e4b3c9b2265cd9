"""Which of iptables and ip6tables a NodeConfig rule goes to."""

from __future__ import annotations

import pytest

from clusterlink.agent.desired import family_of_rule


@pytest.mark.parametrize(
    ("rule", "family"),
    [
        ("-s 10.1.0.0/16 -o vx-bridge -j ACCEPT", 4),
        ("-s fd10:1::/48 -o vx-bridge-6 -j ACCEPT", 6),
        ("-o vx-bridge-6 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu", 6),
        ("-o vx-local-6 -j ACCEPT", 6),
        ("-o vx-local -j ACCEPT", 4),
        ("-m comment --comment vx-bridge-6x -j ACCEPT", 4),
    ],
)
def test_family_of_rule(rule: str, family: int) -> None:
    assert family_of_rule(rule) == family
