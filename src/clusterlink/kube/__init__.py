"""Kubernetes as a member or control cluster: member discovery (`member`), manifests and their
server-side apply (`manifests`, `deploy`). The HTTP client is the bottom package
`clusterlink.kubeclient`; the install/join use cases are in `clusterlink.federation.kube`."""

from clusterlink.errors import Failed


class DeployError(Failed):
    """A deployment step failed; the message says which and why (exit 1: it may be partly
    applied)."""
