"""The `Clock` port of the control loops: a monotonic clock (to measure intervals on this node
only), the wall clock (only to stamp records people read) and waiting.

Leases never compare one node's clock with another's (see `store/lease.py`); the wall clock is
skewable (`SystemClock(skew=...)`, the lab's `clockSkew`) to show it."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Protocol

ENV_CLOCK_SKEW = "CLUSTERLINK_CLOCK_SKEW"  # seconds added to a component's wall clock (lab)


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on this node's monotonic clock (comparable only with itself)."""
        ...

    def now(self) -> dt.datetime:
        """The wall clock (UTC), for timestamps in records."""
        ...

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        """Sleep up to `seconds`; True when `stop` is set (at once when it is)."""
        ...


class SystemClock:
    """The host's clocks; `skew` seconds are added to the wall clock (never the monotonic)."""

    def __init__(self, skew: float = 0.0) -> None:
        self.skew = skew

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.skew)

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        return stop.wait(max(0.0, seconds))
