"""The lab's CNI masquerade, as real CNIs do it: pod traffic leaving the cluster is hidden
behind the node's address unless something says otherwise.

- `calico` (natOutgoing): every node masquerades traffic from a pool with `natOutgoing: true`
  to any destination outside *all* pools - disabled ones included, which is how Kosmos and
  clusterlink exempt remote CIDRs (disabled, non-NAT `clusterlink-*` IPPools). The pools live
  in the lab cluster's own datastore, `<stateDir>/calico/<cluster>.json` (an IPPoolList), and
  one felix stand-in per lab (`python -m clusterlink.lab.cni`, supervised as `calico@lab`)
  rewrites chain `CLAB-CALICO-POSTROUTING` on every node of a cluster as soon as a change to
  its pools rings felix's doorbell (a FIFO in `felix.bells/` beside the pool files), and looks at every pool
  file every `SAFETY_NET` seconds anyway (a file changed without a ring).
- `flannel` (`--ip-masq`): flanneld's own rules, verbatim in shape, in `CLAB-FLANNEL-POSTRTG`
  (static: flannel's rules depend only on the cluster CIDR and the node's subnet). Exceptions
  must come from clusterlink's agent, in its chain ahead of them.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import ipaddress
import json
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clusterlink.agent import netns
from clusterlink.api.cluster import Cluster
from clusterlink.controllers import discovery
from clusterlink.lab.state import LabError, joined_as, load_handle, load_plan, state_dir
from clusterlink.lab.topology import ClusterPlan, NodePlan
from clusterlink.store.base import Store
from clusterlink.store.doorbell import Doorbell, ring_all

log = logging.getLogger("clusterlink.lab.cni")

CALICO_CHAIN = "CLAB-CALICO-POSTROUTING"
FLANNEL_CHAIN = "CLAB-FLANNEL-POSTRTG"
KUBE_PROXY_MARK = "0x4000/0x4000"
MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}
BELLS = "felix.bells"  # in <stateDir>/calico: felix's doorbell (store/doorbell.py), rung by pool writers
SAFETY_NET = 5.0  # seconds between felix's looks at the pool files when nobody rang


COMPONENT = "calico@lab"  # '@' cannot be in a Cluster name: unjoining one never matches it


def _family(cidr: str) -> int:
    return 6 if ":" in cidr else 4


# -- flannel --------------------------------------------------------------------------------


def flannel_rules(cluster: ClusterPlan, node: NodePlan, family: int) -> list[str]:
    """flanneld's masquerade rules (flannel `MasqRules`) for one node and family."""
    cc = next((c for c in cluster.pod_cidrs if _family(c) == family), None)
    subnet = next((b for b in node.pod_cidrs if _family(b) == family), None)
    if cc is None or subnet is None:
        return []
    ch = FLANNEL_CHAIN
    return [
        f"-A {ch} -m mark --mark {KUBE_PROXY_MARK} -j RETURN",  # kube-proxy masquerades these
        f"-A {ch} -s {cc} -d {cc} -j RETURN",  # inside the overlay
        f"-A {ch} ! -s {cc} -d {subnet} -j RETURN",  # to this node's pods from outside
        f"-A {ch} -s {cc} ! -d {MULTICAST[family]} -j MASQUERADE --random-fully",
        f"-A {ch} ! -s {cc} -d {cc} -j MASQUERADE --random-fully",  # from outside to pods
    ]


# -- calico ---------------------------------------------------------------------------------


def pools_path(lab: str, cluster: str) -> Path:
    return state_dir(lab) / "calico" / f"{cluster}.json"


def default_pools(cluster: ClusterPlan) -> list[dict[str, Any]]:
    """The pools a Calico install starts with: the cluster's pod CIDRs, natOutgoing."""
    return [
        {
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "IPPool",
            "metadata": {"name": f"default-ipv{_family(cidr)}-ippool"},
            "spec": {"cidr": cidr, "natOutgoing": True, "disabled": False, "blockSize": 24},
        }
        for cidr in cluster.pod_cidrs
    ]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_suffix(".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def read_pools(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise LabError(f"{path}: unreadable IPPool list ({exc})") from None
    items = data.get("items") if isinstance(data, dict) else None
    return [p for p in items or [] if isinstance(p, dict)]


def _write_pools(path: Path, pools: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    pools = sorted(pools, key=lambda p: str((p.get("metadata") or {}).get("name")))
    body = {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPoolList", "items": pools}
    tmp.write_text(json.dumps(body, indent=1))
    tmp.replace(path)
    ring_all(path.parent / BELLS)


def save_default_pools(lab: str, cluster: ClusterPlan) -> None:
    path = pools_path(lab, cluster.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        _write_pools(path, default_pools(cluster))


def change_pools(path: Path, apply: list[dict[str, Any]], delete: list[str]) -> int:
    """Create-or-replace `apply` by name and delete `delete`, atomically. Returns writes."""
    if not apply and not delete:
        return 0
    with _locked(path):
        by_name = {(p.get("metadata") or {}).get("name"): p for p in read_pools(path)}
        for name in delete:
            by_name.pop(name, None)
        for pool in apply:
            by_name[pool["metadata"]["name"]] = pool
        _write_pools(path, list(by_name.values()))
    return len(apply) + len(delete)


def calico_rules(pools: list[dict[str, Any]], family: int) -> list[str]:
    """felix's natOutgoing: `-s <masq pools> ! -d <all pools> -j MASQUERADE`, as RETURNs
    for every pool followed by one MASQUERADE per natOutgoing pool (no ipset here)."""
    cidrs = [
        (str(spec.get("cidr")), bool(spec.get("natOutgoing")), bool(spec.get("disabled")))
        for spec in ((p.get("spec") or {}) for p in pools)
        if spec.get("cidr") and _family(str(spec.get("cidr"))) == family
    ]
    rules = [f"-A {CALICO_CHAIN} -d {cidr} -j RETURN" for cidr, _, _ in cidrs]
    rules += [
        f"-A {CALICO_CHAIN} -s {cidr} -j MASQUERADE --random-fully"
        for cidr, nat, disabled in cidrs
        if nat and not disabled
    ]
    return rules


def _restore(ns: str, family: int, text: str) -> None:
    tool = "iptables-restore" if family == 4 else "ip6tables-restore"
    proc = subprocess.run(
        netns.command(ns, [tool, "-w", "5", "--noflush"]),
        input=text,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise LabError(f"{ns}: {tool}: {proc.stderr.strip() or proc.returncode}")


def _rule_key(rule: str) -> tuple[str, ...]:
    """A natOutgoing rule as (match, CIDR, target), CIDR normalized: what `iptables -S`
    prints back may spell an address differently from what was restored."""
    words = rule.split()
    for i, word in enumerate(words[:-1]):
        if word in ("-s", "-d"):
            with contextlib.suppress(ValueError):
                words[i + 1] = str(ipaddress.ip_network(words[i + 1], strict=False))
    return tuple(words)


def chain_rules(ns: str, family: int) -> list[tuple[str, ...]] | None:
    """The natOutgoing chain as a node's kernel holds it (None: not there or unreadable)."""
    tool = "iptables" if family == 4 else "ip6tables"
    proc = subprocess.run(
        netns.command(ns, [tool, "-w", "5", "-t", "nat", "-S", CALICO_CHAIN]),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return None
    return [_rule_key(line) for line in proc.stdout.splitlines() if line.startswith("-A ")]


def calico_pending(cluster: ClusterPlan, pools: list[dict[str, Any]]) -> str:
    """ "" when every node of the cluster holds the natOutgoing chain `pools` call for, else
    the first node that does not yet (felix rewrites it within its poll)."""
    for family in cluster.families:
        want = [_rule_key(rule) for rule in calico_rules(pools, family)]
        for node in cluster.nodes:
            if chain_rules(node.netns, family) != want:
                return node.netns
    return ""


def apply_calico(cluster: ClusterPlan, pools: list[dict[str, Any]]) -> None:
    """Rewrite the natOutgoing chain (only it: `:CHAIN` flushes just that chain) on every
    node of the cluster."""
    for family in cluster.families:
        text = "\n".join(
            ["*nat", f":{CALICO_CHAIN} - [0:0]", *calico_rules(pools, family), "COMMIT", ""]
        )
        for node in cluster.nodes:
            _restore(node.netns, family, text)


def sync_pools(store: Store, cluster: str, handle: str) -> int:
    """The member controller's Calico step in the lab, on the same pure functions as on
    Kubernetes (`kube.member.sync_calico_pools`): one disabled, non-NAT `clusterlink-*` pool
    per remote CIDR in the lab cluster's datastore. Returns writes."""
    data = load_handle(handle)
    if load_plan(data["lab"]).cluster(data["cluster"]).cni != "calico":
        return 0
    return write_pools(store, cluster, data["lab"], data["cluster"])


def write_pools(store: Store, cluster: str, lab: str, lab_cluster: str) -> int:
    """`sync_pools` for a Calico lab cluster already known as such. Returns writes."""
    path = pools_path(lab, lab_cluster)
    remote, local = discovery.federation_cidrs(store.list(Cluster), cluster)
    apply, stale = discovery.remote_calico_pools(remote, local, read_pools(path))
    return change_pools(path, apply, stale)


def remove_pools(lab: str, cluster: ClusterPlan) -> int:
    """Unjoin: delete the `clusterlink-*` pools from the lab cluster's datastore and rewrite
    its natOutgoing chain at once (what felix does within its poll). Returns deletions."""
    if cluster.cni != "calico":
        return 0
    path = pools_path(lab, cluster.name)
    names = [str((p.get("metadata") or {}).get("name", "")) for p in read_pools(path)]
    removed = change_pools(
        path, [], [n for n in names if n.startswith(f"{discovery.OUR_POOL_PREFIX}-")]
    )
    apply_calico(cluster, read_pools(path))
    return removed


def pools_pending(lab: str, store: Store) -> str:
    """What the lab's Calico clusters still lack before remote pods see source addresses
    kept: "" when every joined Calico cluster holds the pools of every other cluster's
    CIDRs, else which one waits (the member controller writes them within its period)."""
    clusters = store.list(Cluster)
    joined = joined_as(lab, clusters)
    for lc in load_plan(lab).clusters:
        if lc.cni != "calico" or lc.name not in joined:
            continue
        name = joined[lc.name].name
        remote, local = discovery.federation_cidrs(clusters, name)
        if not all(remote.values()):
            return f"{name}: the other clusters' CIDRs"
        pools = read_pools(pools_path(lab, lc.name))
        apply, stale = discovery.remote_calico_pools(remote, local, pools)
        if apply or stale:
            return (
                f"{name}: its Calico IPPools for the other clusters ({len(apply + stale)} to write)"
            )
        # The pools in the datastore are not enough: until felix has written them into every
        # node's natOutgoing chain, pod traffic to the other clusters is still masqueraded.
        node = calico_pending(lc, pools)
        if node:
            return f"{name}: felix's natOutgoing rules on {node}"
    return ""


class Felix:
    """Keeps each Calico cluster's nodes' natOutgoing chain in step with its pool file (one
    process for the whole lab). Sleeps until a pool writer rings its doorbell; every
    `safety_net` seconds it reads the pool files anyway."""

    def __init__(self, lab: str, safety_net: float = SAFETY_NET) -> None:
        self.clusters = [c for c in load_plan(lab).clusters if c.cni == "calico"]
        self.lab, self.safety_net = lab, safety_net
        self._seen: dict[str, list[dict[str, Any]]] = {}
        # Made before the first read: no ring lost. None (no FIFO here): the safety net alone.
        self.bell = Doorbell.make(state_dir(lab) / "calico" / BELLS)

    def step(self) -> int:
        """Rewrite the chains of each cluster whose pools differ from what it last wrote: by
        content, not by the file's mtime and inode (a rewrite within the clock's granularity
        onto a reused inode would look unchanged)."""
        written = 0
        for c in self.clusters:
            try:
                pools = read_pools(pools_path(self.lab, c.name))
                if self._seen.get(c.name) == pools:
                    continue
                apply_calico(c, pools)
            except LabError as exc:
                log.warning("%s", exc)
                continue
            self._seen[c.name] = pools
            written += 1
            log.info("%s: natOutgoing rules written on %d nodes", c.name, len(c.nodes))
        return written

    def stop(self, stop: threading.Event) -> None:
        """Ask `run` to return (signal-handler safe)."""
        stop.set()
        if self.bell is not None:
            self.bell.ring()

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.step()
                if self.bell is None:
                    stop.wait(self.safety_net)
                else:
                    self.bell.wait(self.safety_net)
        finally:
            if self.bell is not None:
                self.bell.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clusterlink.lab.cni", description=__doc__)
    parser.add_argument("--lab", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    try:
        felix = Felix(args.lab)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: felix.stop(stop))
        felix.run(stop)
    except (LabError, KeyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
