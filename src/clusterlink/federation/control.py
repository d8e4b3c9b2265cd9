"""Which control plane a command means: its store (from --store, a lab handle, or a
kubeconfig) and whether it runs in a lab or on Kubernetes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from clusterlink.errors import BadInput
from clusterlink.inputs import load_yaml, read_text
from clusterlink.lab.state import is_lab_handle, load_handle, store_url
from clusterlink.store.base import Store
from clusterlink.store.kube import kube_url
from clusterlink.store.url import open_store


@dataclass
class Control:
    """The control plane's store, its URL, and the lab it lives in (None: not known to be a
    lab, e.g. Kubernetes or a bare --store)."""

    store: Store
    url: str
    lab: str | None = None


NO_STORE = (
    "no store configured: pass --store URL (or set $CLUSTERLINK_STORE, e.g. "
    "sqlite:///var/lib/clusterlink/clusterlink.db), or a cluster with --kubeconfig (or $KUBECONFIG)"
)


def default_kubeconfig() -> str | None:
    """The kubeconfig kubectl would use: the first file in $KUBECONFIG, else ~/.kube/config
    when it exists."""
    env = os.environ.get("KUBECONFIG")
    if env:
        return next((p for p in env.split(os.pathsep) if p), None)
    home = Path.home() / ".kube" / "config"
    return str(home) if home.is_file() else None


def is_kube(kubeconfig: str | None) -> bool:
    return bool(kubeconfig) and not is_lab_handle(kubeconfig or "")


def open_control(kubeconfig: str | None, store: str | None, context: str | None = None) -> Control:
    """--store, else the lab store a handle names, else the Kubernetes API a kubeconfig
    points at (BadInput when neither is given)."""
    lab = None
    if kubeconfig and is_lab_handle(kubeconfig):
        data = load_handle(kubeconfig)
        lab = str(data["lab"])
        url = store or data.get("store") or store_url(lab)
    elif store:
        url = store
    elif kubeconfig:
        if not Path(kubeconfig).is_file():
            raise BadInput(f"--kubeconfig {kubeconfig}: no such file")
        url = kube_url(str(Path(kubeconfig).resolve()), context)
    else:
        raise BadInput("--kubeconfig (a kubeconfig or a lab handle) or --store is required")
    return Control(open_store(url), url, lab)


def control_store(
    kubeconfig: str | None, store: str | None, context: str | None = None
) -> tuple[Store, str]:
    """The control plane's store and its URL (see `open_control`)."""
    control = open_control(kubeconfig, store, context)
    return control.store, control.url


def store_for(kubeconfig: str | None, store: str | None, context: str | None = None) -> Store:
    """--store (or $CLUSTERLINK_STORE), else the store the control cluster's kubeconfig names
    (--kubeconfig, else kubectl's default); no store file is ever made up (BadInput)."""
    if store:
        return open_store(store)
    kubeconfig = kubeconfig or default_kubeconfig()
    if not kubeconfig:
        raise BadInput(NO_STORE)
    return open_control(kubeconfig, None, context).store


def read_kubeconfig(path: str, context: str | None = None) -> str:
    """The kubeconfig's text, with `context` made current (it is stored and used elsewhere)."""
    text = read_text(path, "--kubeconfig")
    data = load_yaml(text, f"--kubeconfig {path}")
    if context is None:
        return text
    if not isinstance(data, dict) or context not in {
        c.get("name") for c in data.get("contexts") or [] if isinstance(c, dict)
    }:
        raise BadInput(f"--context {context}: not a context of {path}")
    data["current-context"] = context
    return str(yaml.safe_dump(data, sort_keys=False))
