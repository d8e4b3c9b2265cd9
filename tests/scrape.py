"""Scrape a component's /metrics over HTTP and read samples, parsed by prometheus_client."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families


def get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; 5xx answers are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(base: str) -> dict[str, float]:
    """Every sample of `base`/metrics as `name{label="v",...}` (labels sorted) -> value."""
    status, text = get(f"{base}/metrics")
    assert status == 200, text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now (for a component's --metrics-addr)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:  # the component is not listening yet
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
