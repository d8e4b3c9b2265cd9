# The one image every clusterlink component runs (`clusterlink <component>`):
# network-manager, controller, elector, agent, floater.
#   docker build -t REGISTRY/clusterlink:0.1.0 .
#   kosmosctl install --kubeconfig K --image REGISTRY/clusterlink:0.1.0
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
# ip/bridge (the agent's batched writes), iptables-restore (its NAT chains; the nf_tables
# backend, as on current distributions), ping (debugging inside the pod), wireguard-go (the
# encrypted links where the kernel has no WireGuard module) and wg (debugging them).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      iproute2 iptables nftables iputils-ping wireguard-go wireguard-tools \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
 && useradd --uid 65532 --no-create-home --shell /usr/sbin/nologin clusterlink
# The control-plane Deployments run as 65532 (their securityContext says so); the agent and
# the floater run as root with only NET_ADMIN/NET_RAW.
ENTRYPOINT ["clusterlink"]
CMD ["--help"]
