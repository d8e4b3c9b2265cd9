"""`python -m clusterlink.doctor --port P [--netns NS] [--unix PATH]`: the floater with a light
start (no CLI framework, no netlink library): `kosmosctl dr` starts one per node or pod."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from clusterlink.agent import netns
from clusterlink.doctor.floater import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="floater", description=__doc__)
    parser.add_argument("--port", type=int, default=8889)
    parser.add_argument("--netns", default=None)
    parser.add_argument("--unix", default=None)
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error("--port: 1-65535")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with netns.entered(args.netns):
            asyncio.run(serve(args.port, args.unix))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"floater: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
