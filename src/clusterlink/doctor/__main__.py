"""`python -m clusterlink.doctor --port P [--netns NS] [--unix PATH]`: the floater with a light
start (no CLI framework, no netlink library), for a floater on its own; `kosmosctl dr` in the
lab forks its floaters instead (`doctor.lab`)."""

from __future__ import annotations

import argparse
import sys

from clusterlink.doctor.floater import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="floater", description=__doc__)
    parser.add_argument("--port", type=int, default=8889)
    parser.add_argument("--netns", default=None)
    parser.add_argument("--unix", default=None)
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error("--port: 1-65535")
    return run(args.port, args.netns, args.unix)


if __name__ == "__main__":
    sys.exit(main())
