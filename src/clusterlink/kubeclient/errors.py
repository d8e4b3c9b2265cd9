"""The Kubernetes client's errors: a Status (HTTP code, reason) as an exception with a readable
message. The store maps them to its own errors in one place (`store.kube.store_error`)."""

from __future__ import annotations

from typing import Any

from clusterlink.errors import EXIT_BAD_INPUT, ClusterlinkError


class ApiError(ClusterlinkError):
    """A Kubernetes API request failed; `code` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, code: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.code, self.reason = code, reason


class KubeconfigError(ApiError):
    """The kubeconfig (or in-cluster account) cannot be used; no request was made."""

    exit_code = EXIT_BAD_INPUT


class ApiNotFound(ApiError):
    pass


class ApiAlreadyExists(ApiError):
    pass


class ApiConflict(ApiError):
    """A stale resourceVersion: re-read and retry."""


class ApiGone(ApiError):
    """A watch asked for a resourceVersion the server no longer holds (410)."""


def status_error(code: int, status: dict[str, Any], what: str) -> ApiError:
    """A Kubernetes Status (HTTP code + body) as an error with a readable message."""
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or reason or f"HTTP {code}")
    text = f"{what}: {message}"
    if code == 404:
        return ApiNotFound(text, code, reason)
    if code == 409 and reason == "AlreadyExists":
        return ApiAlreadyExists(text, code, reason)
    if code == 409:
        return ApiConflict(
            f"{what}: stale resourceVersion, the object changed ({message})", code, reason
        )
    if code == 410:
        return ApiGone(text, code, reason)
    if code in (401, 403):
        return ApiError(
            f"{text} (HTTP {code}: check the kubeconfig's credentials and RBAC)", code, reason
        )
    return ApiError(f"{text} (HTTP {code} {reason})".rstrip(), code, reason)
