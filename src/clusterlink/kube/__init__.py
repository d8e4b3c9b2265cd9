"""Kubernetes: the API connection, member discovery, manifests, deployment.

Light on purpose (kosmosctl imports it on every start): the client library loads only with
`clusterlink.kube.api`."""


class DeployError(Exception):
    """A deployment step failed; the message says which and why."""
