"""Every number of the address plan in one place (ARCHITECTURE §3), each with why it is what it is."""

from typing import Final

API_GROUP: Final = "kosmos.io"
API_VERSION: Final = "kosmos.io/v1alpha1"  # Kosmos' group/version, so Kosmos manifests load as-is
LEASE_API_VERSION: Final = "coordination.k8s.io/v1"

CLUSTER_LABEL: Final = "kosmos.io/cluster"  # label on every ClusterNode naming its Cluster
EXCLUDE_LABEL: Final = "kosmos.io/exclude"  # nodes carrying it (=true) are left alone
GATEWAY_ROLE: Final = "gateway"  # the only ClusterNode role; matched case-insensitively
DEFAULT_NAMESPACE: Final = "kosmos-system"
CONTROL_CLUSTER_NAME: Final = "kosmos-control-cluster"
# Each member cluster's identity in the control cluster: ServiceAccount PREFIX+cluster in
# DEFAULT_NAMESPACE (its elector Lease has the same name, so admission can match the two).
MEMBER_ACCOUNT_PREFIX: Final = "clusterlink-member-"
# A member's credentials (Kosmos' Cluster.spec.kubeconfig) on the kube store: Secret
# PREFIX+cluster in DEFAULT_NAMESPACE, data key `kubeconfig`; members cannot read Secrets.
CREDENTIALS_SECRET_PREFIX: Final = "clusterlink-kubeconfig-"

# Device names, VNIs and UDP ports are Kosmos' own, so mixed fleets and docs stay comparable.
VX_BRIDGE: Final = "vx-bridge"  # cross-cluster mesh (gateways + every P2P node), IPv4
VX_LOCAL: Final = "vx-local"  # inside a gateway-mode cluster: node <-> its gateway, IPv4
VX_BRIDGE6: Final = "vx-bridge-6"
VX_LOCAL6: Final = "vx-local-6"
OWNED_DEVICES: Final = (VX_BRIDGE, VX_BRIDGE6, VX_LOCAL, VX_LOCAL6)

VNI: Final = {VX_BRIDGE: 54, VX_LOCAL: 55, VX_BRIDGE6: 64, VX_LOCAL6: 65}
PORT: Final = {VX_BRIDGE: 4876, VX_LOCAL: 4877, VX_BRIDGE6: 4866, VX_LOCAL6: 4867}

# Default address pools. 220/8 and 210/8 are Kosmos' defaults; the v6 pair follows kosmosctl
# (bridge 9480::/16, local 9470::/16), not the swapped CRD defaults Kosmos ships.
DEFAULT_BRIDGE_CIDR4: Final = "220.0.0.0/8"
DEFAULT_BRIDGE_CIDR6: Final = "9480::/16"
DEFAULT_LOCAL_CIDR4: Final = "210.0.0.0/8"
DEFAULT_LOCAL_CIDR6: Final = "9470::/16"

ROUTE_TABLE: Final = 200  # all our routes live here, so `main` is never touched
RULE_PRIORITY: Final = 200  # one `lookup 200` rule per family, consulted before `main` (32766)
ROUTE_PROTO: Final = 200  # rtm_protocol marking routes we installed (kernel leaves 200 unused)

DEFAULT_UNDERLAY_MTU: Final = 1500
# VXLAN overhead: outer IP + UDP (8) + VXLAN (8) + inner Ethernet (14).
VXLAN_OVERHEAD: Final = {4: 50, 6: 70}  # outer IPv4 header is 20 bytes, IPv6 is 40

ZERO_MAC: Final = "00:00:00:00:00:00"  # FDB flood entry: where BUM frames go when no MAC matches

# Packet marks clusterlink sets in nat PREROUTING (first packet of a connection only). Bits
# outside kube-proxy's (0x4000 masquerade, 0x8000 drop), Calico's (0xffff0000 by default) and
# Cilium's (0x0f00 and 0xf000 ranges), so every one of them leaves them alone.
MARK_SERVICE_MASQ: Final = 0x10  # remote Service traffic a P2P service node must masquerade
MARK_FROM_TUNNEL: Final = 0x20  # tunnel traffic a gateway must not let the CNI masquerade
