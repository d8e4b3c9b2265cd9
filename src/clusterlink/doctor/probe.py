"""`kosmosctl dr`'s core: places, pairs, results; probing every pair through the floaters
(`FloaterCaller`, whatever drives them), the summary, resume files and the HTML report. The
adapters that place floaters are siblings: `doctor.lab` (lab namespaces) and `doctor.kube`
(DaemonSets); `doctor.run` runs a whole check.

Each source floater gets its whole batch at once and runs it concurrently; a floater that
does not come up is reported as missing for every pair it is in, and the run goes on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from clusterlink.inputs import InputError, read_json
from clusterlink.planner.exports import to_global


@dataclass(frozen=True)
class Place:
    """Where a floater runs: a node (host network) or the first pod on a node."""

    cluster: str
    node: str
    netns: str
    ips: tuple[str, ...]
    # The cluster's globalCIDRsMap (real -> global): other clusters reach these IPs there.
    global_map: tuple[tuple[str, str], ...] = ()

    def reached_at(self, ip: str, src_cluster: str) -> str:
        """The address a floater of `src_cluster` must probe for `ip` (Kosmos' check
        translates the same way): its global address from another cluster."""
        if src_cluster == self.cluster or not self.global_map:
            return ip
        host = 128 if ":" in ip else 32
        mapped = to_global(dict(self.global_map), f"{ip}/{host}")
        return mapped.split("/")[0]

    @property
    def label(self) -> str:
        return f"{self.cluster}/{self.node}"


@dataclass(frozen=True)
class Pair:
    src: str  # place label
    dst: str
    target: str  # the address probed
    protocol: str
    real: str = ""  # when `target` is a global address: the destination's own address

    def key(self) -> tuple[str, str, str, str]:
        return (self.src, self.dst, self.target, self.protocol)


@dataclass
class Result:
    pair: Pair
    ok: bool
    reason: str = ""
    rtt_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        p = self.pair
        out = {"src": p.src, "dst": p.dst, "target": p.target, "protocol": p.protocol,
               "ok": self.ok, "reason": self.reason, "rttMs": self.rtt_ms}  # fmt: skip
        if p.real:
            out["realIP"] = p.real  # the target is this address's global one
        return out


def matrix(srcs: list[Place], dsts: list[Place], protocols: list[str]) -> list[Pair]:
    """Every source x destination x target address (families both have) x protocol; a
    destination in a cluster with globalCIDRsMap is probed at its global address from other
    clusters."""
    pairs = []
    for s in srcs:
        fams = {":" in ip for ip in s.ips}
        for d in dsts:
            for ip in d.ips:
                if (":" in ip) in fams:
                    target = d.reached_at(ip, s.cluster)
                    real = ip if target != ip else ""
                    pairs += [Pair(s.label, d.label, target, proto, real) for proto in protocols]
    return pairs


class FloaterGone(OSError):
    """A floater is no longer running: its pairs fail with this reason
    (`floater on c1/n2 died: killed by SIGKILL`)."""


class FloaterCaller(Protocol):
    """Sends one HTTP request to the floater at a place: (status, decoded answer)."""

    async def call(
        self, label: str, method: str, url: str, body: Any, timeout: float
    ) -> tuple[int, Any]: ...


async def probe_all(
    fl: FloaterCaller,
    pairs: list[Pair],
    up: set[str],
    *,
    timeout: float,
    concurrency: int,
    port: int,
    retries: int = 1,
    done: Callable[[int], None],
) -> list[Result]:
    """Run every pair; each source floater gets its batch in chunks, `concurrency` probes of
    a source in flight at once; a failing floater fails only its own pairs."""
    results: list[Result] = []
    by_src: dict[str, list[Pair]] = {}
    for p in pairs:
        if p.src not in up:
            results.append(Result(p, False, "floater missing (source)"))
        elif p.dst not in up:
            results.append(Result(p, False, "floater missing (destination)"))
        else:
            by_src.setdefault(p.src, []).append(p)
    done(len(results))

    async def run_src(src: str, batch: list[Pair]) -> None:
        for i in range(0, len(batch), 500):
            chunk = batch[i : i + 500]
            body = {"targets": [{"ip": p.target, "protocol": p.protocol, "port": port} for p in chunk],
                    "timeout": timeout, "concurrency": concurrency, "retries": retries}  # fmt: skip
            try:
                status, answer = await fl.call(src, "POST", "/probe", body, timeout * 3 + 30)
                if status != 200:
                    raise OSError(f"floater answered {status}: {answer}")
                for p, r in zip(chunk, answer["results"], strict=True):
                    results.append(Result(p, bool(r["ok"]), r["reason"], float(r["rttMs"])))
            except FloaterGone as exc:
                results.extend(Result(p, False, str(exc)) for p in chunk)
            except (OSError, TimeoutError, KeyError, ValueError, TypeError, IndexError) as exc:
                # an answer we cannot read fails this chunk's pairs, never the run
                results.extend(Result(p, False, f"floater error: {exc}") for p in chunk)
            done(len(chunk))

    await asyncio.gather(*(run_src(s, b) for s, b in by_src.items()))
    order = {p.key(): i for i, p in enumerate(pairs)}
    return sorted(results, key=lambda r: order[r.pair.key()])


def summary(results: list[Result], seconds: float) -> dict[str, Any]:
    failed = sum(not r.ok for r in results)
    reasons: dict[str, int] = {}
    for r in results:
        if not r.ok:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
    return {"total": len(results), "passed": len(results) - failed, "failed": failed,
            "seconds": round(seconds, 3), "reasons": reasons}  # fmt: skip


PairKey = tuple[str, str, str, str]


def save_resume(path: Path, results: list[Result]) -> int:
    """Record a run: its failed pairs (what `--resume` re-tests) and how many it tested."""
    failed = [r.pair.key() for r in results if not r.ok]
    record = {"tested": len(results), "failed": [list(k) for k in failed]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)
    return len(failed)


def load_resume(path: Path) -> set[PairKey]:
    """The failed pairs a resume file records (InputError: not a readable resume file)."""
    data = read_json(path, "--resume")
    failed = data.get("failed") if isinstance(data, dict) else None
    if not isinstance(failed, list) or not all(
        isinstance(k, list) and len(k) == 4 and all(isinstance(x, str) for x in k) for k in failed
    ):
        raise InputError(f"--resume {path}: not a dr resume file (no list of failed pairs)")
    return {(k[0], k[1], k[2], k[3]) for k in failed}


def report_html(results: list[Result], title: str) -> str:
    """A self-contained page: summary, cluster x cluster and node x node matrices (SVG)."""
    nodes = sorted({r.pair.src for r in results} | {r.pair.dst for r in results})
    clusters = sorted({n.split("/")[0] for n in nodes})
    cell: dict[tuple[str, str], list[bool]] = {}
    for r in results:
        cell.setdefault((r.pair.src, r.pair.dst), []).append(r.ok)
        cell.setdefault((r.pair.src.split("/")[0], r.pair.dst.split("/")[0]), []).append(r.ok)

    def svg(names: list[str], size: int) -> str:
        pad = 110
        w = pad + size * len(names)
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{w}" font-size="10" font-family="sans-serif">'
        ]
        for i, n in enumerate(names):
            parts.append(
                f'<text x="{pad - 4}" y="{pad + i * size + size * 0.7}" text-anchor="end">{n}</text>'
            )
            parts.append(
                f'<text transform="translate({pad + i * size + size * 0.7},{pad - 4}) rotate(-60)">{n}</text>'
            )
            for j, m in enumerate(names):
                oks = cell.get((n, m))
                colour = (
                    "#ddd"
                    if not oks
                    else "#2e9d4a"
                    if all(oks)
                    else "#d33"
                    if not any(oks)
                    else "#e8a33d"
                )
                tip = f"{n} -> {m}: " + (f"{sum(oks)}/{len(oks)} ok" if oks else "not probed")
                parts.append(
                    f'<rect x="{pad + j * size}" y="{pad + i * size}" width="{size - 1}" height="{size - 1}" fill="{colour}"><title>{tip}</title></rect>'
                )
        parts.append("</svg>")
        return "".join(parts)

    s = summary(results, 0)
    failures = "".join(
        f"<tr><td>{r.pair.src}</td><td>{r.pair.dst}</td><td>{r.pair.target}</td><td>{r.pair.protocol}</td><td>{r.reason}</td></tr>"
        for r in results if not r.ok
    )  # fmt: skip
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}</style></head><body>"
        f"<h1>{title}</h1><p>{s['passed']}/{s['total']} passed, {s['failed']} failed. "
        "Rows are sources, columns destinations; green: all probes passed, red: none, amber: some.</p>"
        f"<h2>Cluster x cluster</h2>{svg(clusters, 40)}<h2>Node x node</h2>{svg(nodes, max(6, min(24, 1200 // max(1, len(nodes)))))}"
        f"<h2>Failures</h2><table><tr><th>source</th><th>destination</th><th>target</th><th>protocol</th><th>reason</th></tr>{failures}</table>"
        "</body></html>"
    )


__all__ = [
    "FloaterGone",
    "Pair",
    "Place",
    "Result",
    "matrix",
    "probe_all",
    "report_html",
]
