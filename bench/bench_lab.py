"""Lab benchmark (issue 5): `lab up` and `lab down` wall time for 3 clusters x 4 nodes and
20 clusters x 5 nodes, one pod per node; medians of 3. The baseline, measured in the same
run: creating and deleting the same number of bare namespaces (`ip -batch netns add/del`),
the floor under any lab.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from clusterlink.lab.lifecycle import lab_down, lab_up
from clusterlink.lab.topology import Topology, plan_lab

RUNS = 3
SETTLE = (
    3.0  # the kernel frees deleted namespaces asynchronously; creating many right after is slow
)


def bare(count: int) -> tuple[float, float]:
    names = [f"cl-benchbare-{i}" for i in range(count)]
    t = time.perf_counter()
    subprocess.run(
        ["ip", "-batch", "-"],
        input="".join(f"netns add {n}\n" for n in names),
        text=True,
        check=True,
    )
    up = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run(
        ["ip", "-force", "-batch", "-"],
        input="".join(f"netns del {n}\n" for n in names),
        text=True,
        check=True,
    )
    return up, time.perf_counter() - t


def main() -> int:
    os.environ["CLUSTERLINK_LAB_DIR"] = tempfile.mkdtemp(prefix="cl-bench-lab-")
    for clusters, nodes in ((3, 4), (20, 5)):
        topo = Topology.model_validate(
            {
                "name": "bench",
                "clusters": [
                    {"name": f"c{i}", "nodes": nodes, "podsPerNode": 1, "isolated": i % 2 == 1}
                    for i in range(1, clusters + 1)
                ],
            }
        )
        plan = plan_lab(topo)
        ups, downs, bare_ups, bare_downs = [], [], [], []
        for _ in range(RUNS):
            time.sleep(SETTLE)
            bu, bd = bare(len(plan.namespaces()))
            bare_ups.append(bu)
            bare_downs.append(bd)
            time.sleep(SETTLE)
            try:
                ups.append(lab_up(plan, quiet=True))
            finally:
                downs.append(lab_down(plan.name, quiet=True)[1])
        up, down = statistics.median(ups), statistics.median(downs)
        bu, bd = statistics.median(bare_ups), statistics.median(bare_downs)
        print(
            f"{clusters} clusters x {nodes} nodes ({len(plan.namespaces())} namespaces): lab up {up:.2f} s "
            f"({up / bu:.1f}x bare namespace creation {bu:.2f} s), lab down {down:.2f} s "
            f"({down / bd:.1f}x bare deletion {bd:.2f} s)   runs up {[round(x, 2) for x in ups]} down {[round(x, 2) for x in downs]}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
