"""One connection to a Kubernetes API server: requests, retries, errors, watch streams.

Client library: **lightkube** (pinned in pyproject). Why lightkube rather than
kubernetes-asyncio:
- it imports in ~75 ms (kubernetes-asyncio ~565 ms, machine-probe §3); every `kosmosctl`
  call and every component process pays that;
- one model for sync and async code over the same httpx transport: our Store port and our
  components are synchronous (threads), and lightkube's sync client is first-class, not a
  wrapper around an event loop;
- it loads kubeconfigs completely (contexts, client certificates, bearer and token files,
  exec credential plugins, in-cluster service accounts with rotating tokens) - the part that is
  hard to get right and that we must not write ourselves;
- server-side apply, generic resources and typed core models are built in.

We use lightkube for configuration and its authenticated httpx client, and speak the REST paths
of our few kinds ourselves: lightkube's `Client.watch` loops forever with no read timeout, so a
quiet watch could never notice a stop request; our own loop re-arms a bounded read and resumes
from the last resourceVersion, and maps status codes to our errors (`kubeclient.errors`) in one place.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
from lightkube.config import client_adapter
from lightkube.config.kubeconfig import DEFAULT_KUBECONFIG, KubeConfig, SingleConfig
from lightkube.core.exceptions import ConfigError

from clusterlink.inputs import InputError, load_yaml, read_yaml
from clusterlink.kubeclient.errors import ApiError, KubeconfigError, status_error
from clusterlink.kubeclient.target import Target

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
JSON = "application/json"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"


def load_config(target: Target) -> SingleConfig:
    try:
        config = _kubeconfig(target)
        single = config.get(context_name=target.context)
    except InputError as exc:
        raise KubeconfigError(str(exc)) from None
    except ConfigError as exc:
        raise KubeconfigError(f"kubeconfig {target.describe()}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # lightkube's own messages name a field, never a value
        problem = f"{type(exc).__name__} {exc}"[:120]
        raise KubeconfigError(f"kubeconfig {target.describe()}: malformed ({problem})") from None
    if single is None:  # pragma: no cover - lightkube raises instead
        raise KubeconfigError(f"kubeconfig {target.describe()}: no context")
    return single


def _kubeconfig(target: Target) -> KubeConfig:
    """The KubeConfig a target names, every file read through `clusterlink.inputs`."""
    if target.data is not None:
        loaded = load_yaml(target.data, f"kubeconfig {target.describe()}")
        path: Path | None = None
    else:
        if target.kubeconfig:
            path = Path(target.kubeconfig)
        else:
            try:
                return KubeConfig.from_service_account()
            except ConfigError:
                path = Path(os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG).expanduser()
        if not path.exists():
            raise KubeconfigError(f"kubeconfig {path}: no such file")
        loaded = read_yaml(path, "kubeconfig")
    if not isinstance(loaded, dict):
        raise KubeconfigError(f"kubeconfig {target.describe()}: not a kubeconfig")
    return KubeConfig.from_dict(loaded, fname=path)


class KubeApi:
    """Synchronous, thread-safe (httpx clients are) access to one API server."""

    def __init__(
        self,
        target: Target,
        timeout: float = 10.0,
        retries: int = 6,
        field_manager: str = "clusterlink",
    ) -> None:
        self.target = target
        self.retries = retries
        self.field_manager = field_manager
        config = load_config(target)
        self.server = config.cluster.server
        self.context = config.context_name
        self.default_namespace = config.namespace
        params = client_adapter.ConnectionParams(timeout=httpx.Timeout(timeout), trust_env=False)
        try:
            self._http = client_adapter.Client(config, params)
        except (ConfigError, OSError) as exc:
            raise KubeconfigError(f"kubeconfig {target.describe()}: {exc}") from None

    def close(self) -> None:
        self._http.close()

    # -- plain requests -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
        what: str = "",
        timeout: float | None = None,
        retries: int | None = None,
    ) -> dict[str, Any]:
        """One call; retries 429/5xx and connection failures with jittered backoff (`retries`
        times, default the client's)."""
        content = None
        if body is not None:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": content_type, "Accept": JSON} if content else {"Accept": JSON}
        delay = 0.05
        retries = self.retries if retries is None else retries
        for attempt in range(retries + 1):
            try:
                resp = self._http.request(
                    method,
                    path,
                    params=params,
                    content=content,
                    headers=headers,
                    timeout=httpx.Timeout(timeout) if timeout else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as exc:
                if attempt == retries:
                    raise ApiError(
                        f"Kubernetes API {self.server}: {type(exc).__name__}: {exc}"
                    ) from None
            else:
                if resp.status_code < 300:
                    return resp.json() if resp.content else {}
                if resp.status_code not in RETRY_STATUS or attempt == retries:
                    raise status_error(resp.status_code, _body(resp), what or f"{method} {path}")
                delay = max(delay, _retry_after(resp))
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- watch ----------------------------------------------------------------------------------

    def watch_lines(
        self, path: str, params: dict[str, str], read_timeout: float
    ) -> Iterator[dict[str, Any]]:
        """One watch request: decoded events until the server ends it or a read times out.

        Raises TimeoutError when no byte arrived for `read_timeout` (the caller re-arms)."""
        timeout = httpx.Timeout(10.0, read=read_timeout)
        try:
            with self._http.stream(
                "GET", path, params={**params, "watch": "true"}, timeout=timeout
            ) as resp:
                if resp.status_code >= 300:
                    resp.read()
                    raise status_error(resp.status_code, _body(resp), f"watch {path}")
                for line in resp.iter_lines():
                    if line:
                        yield json.loads(line)
        except httpx.ReadTimeout:
            raise TimeoutError from None
        except httpx.TransportError as exc:
            raise ConnectionError(f"watch {path}: {type(exc).__name__}: {exc}") from None


def _body(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {"message": resp.text[:200]}
    return data if isinstance(data, dict) else {"message": str(data)[:200]}


def _retry_after(resp: httpx.Response) -> float:
    try:
        return min(float(resp.headers.get("Retry-After", "0")), 10.0)
    except ValueError:
        return 0.0


__all__ = ["APPLY_PATCH", "JSON", "MERGE_PATCH", "KubeApi", "load_config", "status_error"]
