"""Exit codes that tell the truth: 2 only when nothing was changed; after a change, 1 and the
message says how far the command got."""

from __future__ import annotations

import pytest

from clusterlink.errors import EXIT_BAD_INPUT, EXIT_FAILURE, ClusterlinkError
from clusterlink.federation.base import truthful
from clusterlink.kube import DeployError
from clusterlink.kubeclient.errors import ApiError, KubeconfigError
from clusterlink.lab.state import LabError
from clusterlink.store.base import NotFound, StoreError


@pytest.mark.parametrize(
    "error, code",
    [
        (StoreError("store sqlite:///x: not writable"), EXIT_BAD_INPUT),
        (NotFound("Cluster c not found"), EXIT_FAILURE),
        (LabError("no lab 'x'"), EXIT_BAD_INPUT),
        (DeployError("applying Deployment x: HTTP 500"), EXIT_FAILURE),
        (KubeconfigError("kubeconfig k: no such file"), EXIT_BAD_INPUT),
        (ApiError("GET /x: HTTP 500", 500), EXIT_FAILURE),
    ],
    ids=["store", "not-found", "lab", "deploy", "kubeconfig", "api"],
)
def test_one_root_each_error_its_code(error: ClusterlinkError, code: int) -> None:
    assert isinstance(error, ClusterlinkError) and error.exit_code == code


def test_a_failure_after_a_change_is_reported_as_partly_applied() -> None:
    told: list[str] = []
    with pytest.raises(ClusterlinkError) as caught, truthful(told.append) as step:
        step("Cluster c created (p2p, ipv4)")
        raise StoreError("database is locked")
    assert caught.value.exit_code == EXIT_FAILURE
    assert "database is locked" in str(caught.value)
    assert "the last: Cluster c created" in str(caught.value)
    assert told == ["Cluster c created (p2p, ipv4)"]


def test_a_failure_before_any_change_keeps_its_code() -> None:
    with pytest.raises(LabError) as caught, truthful(lambda _: None):
        raise LabError("c1 of lab x is joined already, as a")
    assert caught.value.exit_code == EXIT_BAD_INPUT
