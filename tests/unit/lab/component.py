"""A stand-in component for the supervisor tests: says who it is in its log, then sleeps
(run as `python -m tests.unit.lab.component SECONDS`)."""

from __future__ import annotations

import os
import sys
import time

if __name__ == "__main__":
    print(f"pid={os.getpid()}")
    print(f"mark={os.environ.get('CLUSTERLINK_TEST_MARK', '')}")
    print(f"name={__name__}")
    print(f"argv={' '.join(sys.argv[1:])}")
    print("ready", flush=True)
    time.sleep(float(sys.argv[1]))
