"""Which Kubernetes API server: a kubeconfig (and context), inline kubeconfig text, or the
in-cluster account. No client library here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """Which API server: a kubeconfig file (and context), else in-cluster, else $KUBECONFIG."""

    kubeconfig: str | None = None
    context: str | None = None
    data: str | None = None  # the kubeconfig's text itself (e.g. from a Cluster object)

    def describe(self) -> str:
        where = self.kubeconfig or ("(inline)" if self.data else "in-cluster/$KUBECONFIG")
        return f"{where}" + (f" (context {self.context})" if self.context else "")
