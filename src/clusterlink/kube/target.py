"""Which Kubernetes API server: a kubeconfig (and context), inline kubeconfig text, or the
in-cluster account - and the `kube://` store URLs that name one. No client library here."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

from clusterlink.store.base import StoreError


@dataclass(frozen=True)
class Target:
    """Which API server: a kubeconfig file (and context), else in-cluster, else $KUBECONFIG."""

    kubeconfig: str | None = None
    context: str | None = None
    data: str | None = None  # the kubeconfig's text itself (e.g. from a Cluster object)

    def describe(self) -> str:
        where = self.kubeconfig or ("(inline)" if self.data else "in-cluster/$KUBECONFIG")
        return f"{where}" + (f" (context {self.context})" if self.context else "")


def parse_kube_url(rest: str) -> Target:
    """`kube://` or `kube://?kubeconfig=PATH&context=NAME` -> Target."""
    host, _, query = rest.partition("?")
    if host.strip("/"):
        raise StoreError(
            f"store URL kube://{rest}: expected kube:// or kube://?kubeconfig=PATH&context=NAME"
        )
    values = parse_qs(query, keep_blank_values=False)
    unknown = set(values) - {"kubeconfig", "context"}
    if unknown:
        raise StoreError(
            f"store URL kube://{rest}: unknown parameter(s) {', '.join(sorted(unknown))}"
        )
    return Target(
        kubeconfig=values.get("kubeconfig", [None])[-1], context=values.get("context", [None])[-1]
    )


def kube_url(kubeconfig: str | None = None, context: str | None = None) -> str:
    parts = [f"kubeconfig={kubeconfig}"] if kubeconfig else []
    parts += [f"context={context}"] if context else []
    return "kube://" + ("?" + "&".join(parts) if parts else "")
