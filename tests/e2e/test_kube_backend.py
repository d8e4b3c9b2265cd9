"""The control plane on the Kubernetes API: a lab whose every component (network-manager,
controllers, electors, agents) uses the `kube` store - the API server double, listening in the
lab's fabric where every node reaches it, as nodes reach a real API server - and real packets
cross clusters with the sender's pod IP."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import yaml

from clusterlink.agent import netns
from clusterlink.federation import lab as deploy
from clusterlink.federation.membership import wait_connected
from clusterlink.lab.cni import pools_pending
from clusterlink.lab.lifecycle import lab_down, lab_up
from clusterlink.lab.state import handle_path
from clusterlink.lab.topology import Topology, plan_lab
from clusterlink.store.kube import kube_url
from clusterlink.store.url import open_store
from tests.e2e.conftest import lab_name
from tests.e2e.connect import Lab, ping, wait_for
from tests.kubeapi import RunningApiServer, kubeconfig_for

API_ADDRESS = "172.31.255.1"  # on the fabric's loopback; every node's default route leads there


def test_components_on_the_kube_store_connect_clusters(tmp_path: Path, lab_dir: Path) -> None:
    name = lab_name("kb")
    topology = {
        "name": name,
        "clusters": [
            {"name": "c1", "nodes": 2, "podsPerNode": 1},
            {"name": "c2", "nodes": 2, "gatewayCandidates": 1, "isolated": True, "podsPerNode": 1},
        ],
    }
    plan = plan_lab(Topology.model_validate(topology))
    lab_up(plan, quiet=True)
    lab = None
    try:
        subprocess.run(
            ["ip", "-n", plan.fabric_netns, "addr", "add", f"{API_ADDRESS}/32", "dev", "lo"],
            check=True,
        )
        with RunningApiServer(tmp_path, netns=plan.fabric_netns, address=API_ADDRESS) as server:
            config = tmp_path / "lab.kubeconfig"
            config.write_text(yaml.safe_dump(kubeconfig_for(server.url)))
            url = kube_url(str(config))
            with netns.entered(plan.fabric_netns):  # where this test reaches the API, too
                store = open_store(url)
                for i, (cluster, mode) in enumerate((("c1", "p2p"), ("c2", "gateway"))):
                    (deploy.install if i == 0 else deploy.join)(
                        store, url, str(handle_path(name, cluster)), cluster,
                        deploy.LinkOptions(mode, "ipv4"), lambda _: None,  # type: ignore[arg-type]
                    )  # fmt: skip
                took = wait_connected(
                    store, ["c1", "c2"], 90, 0.2, also=lambda: pools_pending(name, store)
                )
            assert took < 90
            synced = [o["status"]["phase"] for o in server.objects("nodeconfigs")]
            assert synced == ["Synced"] * 4  # written by the agents, through the API
            lab = Lab(plan, store)
            c1, c2 = plan.cluster("c1"), plan.cluster("c2")
            for src, dst in itertools.chain(
                itertools.product(c1.pods, c2.pods), itertools.product(c2.pods, c1.pods)
            ):
                assert ping(src.netns, dst.ip or ""), f"{src.netns} -> {dst.ip}"
            for dst in c2.pods:
                lab.serve(dst.netns, dst.ip or "")
            for src, dst in itertools.product(c1.pods, c2.pods):
                assert lab.tcp_peer(src.netns, dst.ip or "") == src.ip  # no NAT pod <-> pod

            with netns.entered(plan.fabric_netns):
                deploy.unjoin(store, "c2", lambda _: None)
            assert not ping(c1.pods[0].netns, c2.pods[0].ip or "")
            wait_for(
                lambda: deploy.no_state_left([n.netns for n in c2.nodes]), 20, "c2's nodes clean"
            )
            assert server.server.state is not None and server.server.state.denied == []
    finally:
        if lab is not None:
            lab.close()
        lab_down(name, quiet=True)
