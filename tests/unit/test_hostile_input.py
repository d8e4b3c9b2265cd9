"""Input that cannot hurt: every reader and every CLI entry point that takes a file, fed
hostile input - a table of the named cases (issue 14's 134-input run) and hypothesis-made
garbage and mutations of valid documents (bit flips, truncations, deep nesting, repeated keys,
huge strings, spliced bytes).

Each must end in a result or a one-line error with exit code 0, 1 or 2: never a traceback,
never a hang, never the file's contents in the message (a kubeconfig's token above all), and
the store exactly as it was when the command refused.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from clusterlink.api.cluster import Cluster
from clusterlink.api.manifest import ManifestError, load_manifest, parse_documents
from clusterlink.cli.kosmosctl import app
from clusterlink.doctor.probe import load_resume
from clusterlink.errors import ClusterlinkError
from clusterlink.federation.control import read_kubeconfig
from clusterlink.inputs import load_json, load_yaml_documents
from clusterlink.kube.deploy import control_cluster_of
from clusterlink.kubeclient.api import load_config
from clusterlink.kubeclient.target import Target
from clusterlink.lab.lifecycle import plan_file
from clusterlink.lab.state import load_handle
from clusterlink.store.sqlite import SqliteStore
from tests.conftest import KOSMOSCTL

SECRET = "s3cr3t-t0ken-never-shown"
MANIFEST = b"""\
apiVersion: kosmos.io/v1alpha1
kind: Cluster
metadata: {name: c1, labels: {team: net}}
spec: {clusterLinkOptions: {networkType: gateway, ipFamily: ipv4}}
---
apiVersion: kosmos.io/v1alpha1
kind: ClusterNode
metadata: {name: c1-a1, labels: {kosmos.io/cluster: c1}}
spec: {clusterName: c1, nodeName: a1, ip: 192.168.1.11, roles: [gateway], interfaceName: eth0}
"""
TOPOLOGY = b"""\
name: infz
clusters:
  - {name: c1, nodes: 2, ipFamily: all, podsPerNode: 1}
  - {name: c2, nodes: 2, isolated: true, gatewayCandidates: 1}
"""
KUBECONFIG = f"""\
apiVersion: v1
kind: Config
current-context: k
clusters:
- name: k
  cluster: {{server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}
contexts:
- name: k
  context: {{cluster: k, user: u}}
users:
- name: u
  user: {{token: {SECRET}}}
""".encode()
HANDLE = b"""\
apiVersion: lab.clusterlink.io/v1
kind: LabClusterHandle
lab: infz
cluster: c1
"""
RESUME = b'{"tested": 2, "failed": [["c1/n1", "c2/n1", "10.2.1.2", "icmp"]]}'
# Enough to find the defects this file was written for within seconds each (every one of
# them fell in its first 15 examples); the named cases below pin them.
FUZZ = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# -- the readers --------------------------------------------------------------------------


def readers() -> dict[str, tuple[bytes, Callable[[Path], Any]]]:
    """Every reader of a file a user hands us: its valid base document and the call."""
    return {
        "manifest": (MANIFEST, load_manifest),
        "topology": (TOPOLOGY, plan_file),
        "handle": (HANDLE, load_handle),
        "kubeconfig": (KUBECONFIG, lambda p: load_config(Target(kubeconfig=str(p)))),
        "kubeconfig-inline": (
            KUBECONFIG,
            lambda p: load_config(Target(data=p.read_bytes().decode(errors="replace"))),
        ),
        "kubeconfig-context": (KUBECONFIG, lambda p: read_kubeconfig(str(p), "k")),
        "control-kubeconfig": (KUBECONFIG, lambda p: control_cluster_of(str(p))),
        "resume": (RESUME, load_resume),
    }


def one_line_refusal_or_result(call: Callable[[], Any]) -> None:
    try:
        call()
    except (ClusterlinkError, ManifestError) as exc:
        message = str(exc)
        assert message and "\n" not in message, message
        assert SECRET not in message, f"the file's content in an error: {message}"
        assert len(message) < 600, f"an error that echoes too much: {message[:200]}..."


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def repeat_line(data: bytes, i: int) -> bytes:
    lines = data.splitlines(keepends=True)
    i %= len(lines)
    return b"".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])


def nest(data: bytes, depth: int, flow: bool) -> bytes:
    if flow:
        return data + b"deep: " + b"[" * depth + b"]" * depth + b"\n"
    return data + b"deep:\n" + b"".join(b"  " * i + b"- \n" for i in range(1, depth))


def mutated(base: bytes) -> st.SearchStrategy[bytes]:
    """A valid document, damaged the ways hostile or broken input is."""
    at = st.integers(0, len(base))
    return st.one_of(
        st.integers(0, len(base) * 8 - 1).map(lambda b: flip(base, b)),
        at.map(lambda n: base[:n]),
        st.integers(0, 50).map(lambda i: repeat_line(base, i)),
        st.tuples(st.integers(90, 1200), st.booleans()).map(lambda t: nest(base, *t)),
        st.sampled_from([100, 5_000, 70_000, 300_000]).map(
            lambda n: base + b"huge: '" + b"x" * n + b"'\n"
        ),
        st.tuples(at, st.binary(min_size=1, max_size=40)).map(
            lambda t: base[: t[0]] + t[1] + base[t[0] :]
        ),
        st.tuples(at, st.sampled_from([b"\0", b"\x01", b"\t", b"&a", b"*a", b"<<: ", b"!!python/object:os.system "])).map(
            lambda t: base[: t[0]] + t[1] + base[t[0] :]
        ),
    )  # fmt: skip


def hostile(base: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(mutated(base), st.binary(max_size=2000), st.text(max_size=500).map(str.encode))


@pytest.fixture
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cl-hostile-") as d:
        yield Path(d)


@pytest.mark.parametrize("name", sorted(readers()))
def test_every_reader_survives_hostile_files(name: str) -> None:
    base, read = readers()[name]

    @FUZZ
    @given(data=hostile(base))
    def check(data: bytes) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "input"
            path.write_bytes(data)
            one_line_refusal_or_result(lambda: read(path))

    check()


# Found by the fuzzing above, pinned: (reader, content, a phrase of the one-line refusal).
READER_CASES = [
    ("control-kubeconfig", KUBECONFIG.replace(b"- name: k\n  context:", b"- null\n- name: j\n  context:"), "is not defined"),
    ("control-kubeconfig", KUBECONFIG.replace(b"contexts:\n", b"contexts: 7\nx:\n"), "is not defined"),
    ("kubeconfig", KUBECONFIG.replace(b"contexts:\n", b"contexts: 7\nx:\n"), "kubeconfig"),
    ("kubeconfig-inline", KUBECONFIG + b"token: " + SECRET.encode() + b": [", "malformed YAML"),
]  # fmt: skip


@pytest.mark.parametrize("reader, content, phrase", READER_CASES)
def test_named_reader_cases(scratch: Path, reader: str, content: bytes, phrase: str) -> None:
    path = scratch / "input"
    path.write_bytes(content)
    with pytest.raises((ClusterlinkError, ManifestError), match=phrase) as info:
        readers()[reader][1](path)
    assert "\n" not in str(info.value) and SECRET not in str(info.value)


@FUZZ
@given(text=st.text(max_size=300), deep=st.integers(0, 400))
def test_json_and_yaml_texts_never_raise_anything_else(text: str, deep: int) -> None:
    for candidate in (text, "[" * deep + text + "]" * deep, "{'a': " * deep + text):
        one_line_refusal_or_result(lambda c=candidate: load_json(c, "t"))  # type: ignore[misc]
        one_line_refusal_or_result(lambda c=candidate: load_yaml_documents(c, "t"))  # type: ignore[misc]
        one_line_refusal_or_result(lambda c=candidate: parse_documents(c, "t"))  # type: ignore[misc]


# -- the CLI ------------------------------------------------------------------------------


def snapshot(db: Path) -> tuple[int, list[str]]:
    """The store's revision and every row: a refused command changes neither."""
    store = SqliteStore(db)
    try:
        rows = store._db.execute("SELECT kind, key, data FROM objects ORDER BY kind, key")
        return store.revision(), [repr(r) for r in rows.fetchall()]
    finally:
        store.close()


class Cli:
    """kosmosctl through its entry point (as tests/unit/cli do), on a store of its own
    holding MANIFEST's objects."""

    def __init__(self, root: Path, template: Path) -> None:
        self.root = root
        self.db = root / "store.db"
        self.db.write_bytes(template.read_bytes())
        self.url = f"sqlite://{self.db}"
        self.runner = CliRunner()
        (root / "m.yaml").write_bytes(MANIFEST)

    def __call__(self, args: list[str], stdin: bytes | None = None, store: bool = True) -> int:
        return self.run(args, stdin, store).exit_code

    def run(self, args: list[str], stdin: bytes | None = None, store: bool = True) -> Result:
        argv = [*args, "--store", self.url] if store else args
        before = snapshot(self.db) if self.db.exists() else None
        result = self.runner.invoke(app, argv, input=stdin)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"kosmosctl {' '.join(argv)[:200]}: {type(result.exception).__name__}: "
            f"{result.exception}"
        )
        assert result.exit_code in (0, 1, 2), result.output
        assert "Traceback" not in result.output
        assert SECRET not in result.output, "the file's content on the screen"
        if result.exit_code != 0 and before is not None:
            assert snapshot(self.db) == before, f"kosmosctl {argv[0]} refused but changed the store"
        return result

    def file(self, data: bytes, name: str = "input.yaml") -> str:
        path = self.root / name
        path.write_bytes(data)
        return str(path)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding MANIFEST's objects, c1 changed once since (resourceVersion 3)."""
    db = tmp_path_factory.mktemp("template") / "store.db"
    store = SqliteStore(db)
    store.apply_all(parse_documents(MANIFEST.decode(), "m"))
    store.apply_all(parse_documents(MANIFEST.replace(b"team: net", b"team: edge").decode(), "m"))
    assert store.get(Cluster, "c1").metadata.resource_version == "3"
    store.close()
    return db


@pytest.fixture
def cli(scratch: Path, template: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("CLUSTERLINK_LAB_DIR", str(scratch / "labs"))
    monkeypatch.delenv("CLUSTERLINK_STORE", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return Cli(scratch, template)


@FUZZ
@given(data=hostile(MANIFEST))
def test_apply_and_plan_survive_hostile_manifests(cli: Cli, data: bytes) -> None:
    path = cli.file(data)
    cli(["apply", "-f", path])
    cli(["apply", "-f", "-"], stdin=data)
    cli(["plan", "-f", path], store=False)


@FUZZ
@given(data=hostile(TOPOLOGY))
def test_lab_up_dry_run_survives_hostile_topologies(cli: Cli, data: bytes) -> None:
    cli(["lab", "up", "--dry-run", "-f", cli.file(data)], store=False)


@FUZZ
@given(data=hostile(HANDLE))
def test_kubeconfig_flag_survives_hostile_files(cli: Cli, data: bytes) -> None:
    """--kubeconfig with handles and garbage (kubeconfigs themselves through the readers
    above: a valid one would reach for its API server)."""
    assert cli(["get", "clusters", "--kubeconfig", cli.file(data)], store=False) in (1, 2)


@FUZZ
@given(
    name=st.text(max_size=60),
    kind=st.sampled_from(["clusters", "cn", "nodeconfigs", "leases", "pods"]),
)
def test_delete_survives_hostile_names(cli: Cli, name: str, kind: str) -> None:
    if name.startswith("-") or not name:
        return  # an option or nothing: the parser's business
    cli(["delete", kind, name])


@FUZZ
@given(
    tail=st.text(max_size=40),
    scheme=st.sampled_from(["sqlite://", "kube://?kubeconfig=", "", "x://"]),
)
def test_store_urls_survive_garbage(cli: Cli, tail: str, scheme: str) -> None:
    if ".." in tail or not tail.strip("/"):
        return  # no walking out of the scratch directory; bare kube:// reads ~/.kube/config
    target = f"{cli.root}/{tail}" if scheme.startswith(("sqlite", "kube")) else tail
    cli(["get", "clusters", "--store", f"{scheme}{target}"], store=False)


# -- the named cases (issue 14's hostile run) --------------------------------------------

BILLION_LAUGHS = b"a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + b"".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n".encode()
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)
CLUSTER = b"apiVersion: kosmos.io/v1alpha1\nkind: Cluster\nmetadata: {name: c1}\n"


def cluster_with(meta: str = "name: c1", spec: str = "") -> bytes:
    doc = f"apiVersion: kosmos.io/v1alpha1\nkind: Cluster\nmetadata: {{{meta}}}\n"
    return (doc + (f"spec: {{{spec}}}\n" if spec else "")).encode()


# (id, file content, argv with {f} for the file, exit code, a phrase of the one-line error)
APPLY = ["apply", "-f", "{f}"]
UP = ["lab", "up", "--dry-run", "-f", "{f}"]
KCFG = ["get", "clusters", "--kubeconfig", "{f}"]
CASES: list[tuple[str, bytes, list[str], int, str]] = [
    ("deep-500-apply", b"a: " + b"[" * 500 + b"]" * 500, APPLY, 2, "nested deeper than 100"),
    ("deep-500-block-apply", nest(CLUSTER, 500, False), APPLY, 2, "nested deeper than 100"),
    ("deep-500-lab-up", b"name: x\nclusters: " + b"[" * 500 + b"]" * 500, UP, 2, "nested deeper"),
    ("deep-500-kubeconfig", b"a: " + b"{a: " * 500 + b"}" * 500, KCFG, 2, "nested deeper"),
    ("deep-json-5000-apply", b"[" * 5000 + b"]" * 5000, APPLY, 2, "nested deeper"),
    ("binary-kubeconfig", bytes(range(256)) * 8, KCFG, 2, "binary file"),
    ("binary-topology", bytes(range(256)) * 8, UP, 2, "binary file"),
    ("binary-apply", bytes(range(256)) * 8, APPLY, 2, "binary file"),
    ("latin1-apply", "name: caf\xe9\n".encode("latin-1"), APPLY, 2, "not UTF-8"),
    ("nul-in-text", CLUSTER + b"# \0\n", APPLY, 2, "NUL"),
    ("control-char", CLUSTER + b"x: '\x07'\n", APPLY, 2, "does not allow"),
    ("oversized-4mib", b"# " + b"x" * (4 << 20) + b"\n", APPLY, 2, "more than the 3 MiB limit"),
    ("oversized-topology", b"# " + b"x" * (4 << 20) + b"\n", UP, 2, "3 MiB"),
    ("no-api-version", b"kind: Cluster\nmetadata: {name: c1}\n", APPLY, 2, "apiVersion: missing"),
    ("no-kind", b"apiVersion: kosmos.io/v1alpha1\nmetadata: {name: c1}\n", APPLY, 2, "kind: missing"),
    ("wrong-api-version", b"apiVersion: v1\nkind: Cluster\nmetadata: {name: c1}\n", APPLY, 2, "apiVersion must be"),
    ("duplicate-key", CLUSTER + b"metadata: {name: c2}\n", APPLY, 2, "a key repeated"),
    ("duplicate-key-flow", cluster_with("name: c1, name: c2"), APPLY, 2, "a key repeated"),
    ("duplicate-key-json", b'{"apiVersion": "kosmos.io/v1alpha1", "kind": "Cluster", "kind": "Cluster", "metadata": {"name": "c"}}', APPLY, 2, "a key repeated"),
    ("duplicate-key-kubeconfig", KUBECONFIG + b"current-context: k\n", KCFG, 2, "a key repeated"),
    ("duplicate-key-topology", TOPOLOGY + b"name: other\n", UP, 2, "a key repeated"),
    ("annotation-5mb", cluster_with("name: c1, annotations: {a: '" + "x" * (5 << 20) + "'}"), APPLY, 2, "3 MiB"),
    ("annotation-300kib", cluster_with("name: c1, annotations: {a: '" + "x" * (300 << 10) + "'}"), APPLY, 2, "annotations total"),
    ("annotations-sum-over-256kib", cluster_with("name: c1, annotations: {" + ", ".join(f"a{i}: '{'x' * (40 << 10)}'" for i in range(7)) + "}"), APPLY, 2, "annotations total"),
    ("annotation-bad-key", cluster_with("name: c1, annotations: {'-bad': x}"), APPLY, 2, "annotation key"),
    ("label-value-64", cluster_with("name: c1, labels: {a: " + "v" * 64 + "}"), APPLY, 2, "label"),
    ("label-value-spaces", cluster_with("name: c1, labels: {a: 'two words'}"), APPLY, 2, "label"),
    ("label-key-bad-prefix", cluster_with("name: c1, labels: {'Bad_Prefix/x': y}"), APPLY, 2, "prefix"),
    ("label-key-too-long", cluster_with("name: c1, labels: {" + "k" * 64 + ": v}"), APPLY, 2, "label key"),
    ("object-over-1.5mib", cluster_with("name: c1", "kubeconfig: '" + "A" * (2 << 20) + "'"), APPLY, 2, "more than the 1572864 allowed"),
    ("name-uppercase", cluster_with("name: C1"), APPLY, 2, "DNS-1123"),
    ("name-254-chars", cluster_with("name: " + "a" * 254), APPLY, 2, "DNS-1123"),
    ("name-not-a-string", cluster_with("name: [1, 2]"), APPLY, 2, "metadata.name"),
    ("namespace-bad", b"apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: l, namespace: Bad_NS}\n", APPLY, 2, "namespace"),
    ("stale-resource-version", cluster_with("name: c1, resourceVersion: '1'", "namespace: other"), APPLY, 1, "stale"),
    ("resource-version-of-nothing", cluster_with("name: zz, resourceVersion: '1'"), APPLY, 1, "does not exist"),
    ("billion-laughs-apply", BILLION_LAUGHS, APPLY, 2, "expands to more than"),
    ("billion-laughs-kubeconfig", BILLION_LAUGHS, KCFG, 2, "expands to more than"),
    ("billion-laughs-topology", BILLION_LAUGHS, UP, 2, "expands to more than"),
    ("alias-cycle", b"a: &a [*a]\n", APPLY, 2, "refers to its own anchor"),
    ("python-tag", CLUSTER + b"x: !!python/object/apply:os.system [true]\n", APPLY, 2, "constructor"),
    ("yaml-error-kubeconfig-token", b"users:\n- user: {token: " + SECRET.encode() + b"\n  bad: [", KCFG, 2, "malformed YAML at line"),
    ("yaml-error-apply-token", CLUSTER + b"token: " + SECRET.encode() + b": x: [", APPLY, 2, "malformed YAML at line"),
    ("kubeconfig-a-list", b"- a\n- b\n", KCFG, 2, "not a kubeconfig"),
    ("kubeconfig-no-clusters", b"apiVersion: v1\nkind: Config\n", KCFG, 2, "kubeconfig"),
    ("handle-of-no-lab", HANDLE, KCFG, 2, "does not exist"),
    # found by the fuzzing below (a KeyError traceback): a handle without its lab
    ("handle-without-lab", HANDLE.replace(b"lab: infz\n", b""), KCFG, 2, "lab: expected a lab name"),
    ("handle-lab-a-path", HANDLE.replace(b"lab: infz", b"lab: ../../etc"), KCFG, 2, "lab: expected"),
    ("handle-cluster-a-list", HANDLE.replace(b"cluster: c1", b"cluster: [c1]"), KCFG, 2, "cluster: expected"),
    ("handle-store-a-mapping", HANDLE + b"store: {a: b}\n", KCFG, 2, "store: expected"),
    ("empty-apply", b"", APPLY, 2, "no objects"),
    ("only-comments-apply", b"# nothing\n---\n# more\n", APPLY, 2, "no objects"),
    ("list-of-garbage", b"kind: List\nitems: [1, [2], {a: b}]\n", APPLY, 2, "expected a mapping"),
    ("unknown-kind", b"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", APPLY, 2, "unknown kind"),
    ("a-scalar", b"42\n", APPLY, 2, "expected a mapping"),
    ("tabs", b"apiVersion: v1\n\tkind: x\n", APPLY, 2, "malformed YAML"),
    ("two-topologies", TOPOLOGY + b"---\n" + TOPOLOGY, UP, 2, "2 YAML documents"),
    ("topology-not-a-mapping", b"[1, 2]\n", UP, 2, "valid dictionary"),
    ("topology-bad-field", b"name: x\nclusters: [{name: c1, nodes: -1}]\n", UP, 2, "nodes"),
    ("topology-name-too-long", b"name: abcdefghijklmnop\nclusters: [{name: c1}]\n", UP, 2, "name"),
]  # fmt: skip
# Paths (not contents): directories, special files, what is not there.
PATHS: list[tuple[str, str, list[str], int, str]] = [
    ("dir-apply", "{d}", APPLY, 2, "is a directory"),
    ("dir-kubeconfig", "{d}", KCFG, 2, "is a directory"),
    ("dir-topology", "{d}", UP, 2, "is a directory"),
    ("dev-null-apply", "/dev/null", APPLY, 2, "not a regular file"),
    ("dev-zero-kubeconfig", "/dev/zero", KCFG, 2, "not a regular file"),
    ("missing-apply", "{d}/nope.yaml", APPLY, 2, "no such file"),
    ("missing-kubeconfig", "{d}/nope.yaml", KCFG, 2, "no such file"),
    ("missing-topology", "{d}/nope.yaml", UP, 2, "no such file"),
]
STORES: list[tuple[str, str, int, str]] = [
    ("store-dir-missing", "sqlite://{d}/nonexistent/dir/x.db", 2, "does not exist"),
    ("store-nonexistent-root", "sqlite:///nonexistent-cl-test/dir/x.db", 2, "does not exist"),
    ("store-is-dir", "sqlite://{d}", 2, "is a directory"),
    ("store-dev-null", "sqlite:///dev/null", 2, "not a regular file"),
    ("store-under-a-file", "sqlite://{d}/m.yaml/x.db", 2, "is not a directory"),
    ("store-not-a-db", "sqlite://{d}/m.yaml", 2, "not a database"),
    ("store-relative", "sqlite://x.db", 2, "absolute path"),
    ("store-empty", "sqlite://", 2, "no file path"),
    ("store-bad-scheme", "postgres://x", 2, "unknown scheme"),
    ("store-no-scheme", "just-a-path", 2, "expected SCHEME://"),
    ("store-kube-no-file", "kube://?kubeconfig={d}/nope", 2, "no such file"),
    ("store-kube-dir", "kube://?kubeconfig={d}", 2, "is a directory"),
    ("store-kube-host", "kube://somehost/x", 2, "expected kube://"),
    ("store-kube-param", "kube://?token=x", 2, "unknown parameter"),
]


def made(root: Path) -> list[str]:
    """What is in `root`, leaving out the fixture's own store (its -wal and -shm come and go)."""
    return sorted(str(p) for p in root.rglob("*") if not p.name.startswith("store.db"))


def run_case(cli: Cli, argv: list[str], want: int, phrase: str, **fmt: str) -> None:
    args = [a.format(**fmt) for a in argv]
    result = cli.run(args, store=args[0] == "apply")  # the store unchanged: Cli.run checks
    assert result.exit_code == want, result.output
    assert phrase in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize(
    "content, argv, want, phrase", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_named_hostile_files(
    cli: Cli, content: bytes, argv: list[str], want: int, phrase: str
) -> None:
    run_case(cli, argv, want, phrase, f=cli.file(content, "case.yaml"))


@pytest.mark.parametrize(
    "path, argv, want, phrase", [c[1:] for c in PATHS], ids=[c[0] for c in PATHS]
)
def test_named_hostile_paths(cli: Cli, path: str, argv: list[str], want: int, phrase: str) -> None:
    (cli.root / "d").mkdir()
    run_case(cli, argv, want, phrase, f=path.format(d=cli.root / "d"))


@pytest.mark.parametrize("url, want, phrase", [c[1:] for c in STORES], ids=[c[0] for c in STORES])
def test_named_hostile_store_urls(cli: Cli, url: str, want: int, phrase: str) -> None:
    url = url.format(d=cli.root)
    before = made(cli.root)
    result = cli.run(["get", "clusters", "--store", url], store=False)
    assert result.exit_code == want and phrase in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert made(cli.root) == before, "a store refused but a file or directory was made up"
    assert not Path("/nonexistent-cl-test").exists()


def test_merge_keys_are_not_hostile(cli: Cli) -> None:
    """Not everything unusual is hostile: YAML merge keys (explicit keys win) are accepted."""
    doc = (
        b"apiVersion: kosmos.io/v1alpha1\nkind: Cluster\nmetadata: {name: c9}\nspec:\n"
        b"  clusterLinkOptions:\n    <<: {networkType: gateway, ipFamily: all}\n    ipFamily: ipv4\n"
    )
    assert cli(["apply", "-f", cli.file(doc)]) == 0
    assert cli.run(["get", "cl", "c9"]).output.split()[-2:] == ["gateway", "ipv4"]


# Standard input: the same checks as a file's (a non-UTF-8 stdin was a UnicodeDecodeError
# traceback, found by the fuzzing above).
STDIN = [
    ("stdin-latin1", "name: caf\xe9\n".encode("latin-1"), "not UTF-8"),
    ("stdin-binary", bytes(range(256)), "binary"),
    ("stdin-oversized", b"# " + b"x" * (4 << 20), "3 MiB"),
    ("stdin-deep", b"[" * 1000 + b"]" * 1000, "nested deeper"),
    ("stdin-duplicate-key", CLUSTER + b"kind: Cluster\n", "a key repeated"),
]


@pytest.mark.parametrize("data, phrase", [c[1:] for c in STDIN], ids=[c[0] for c in STDIN])
def test_named_hostile_stdin(cli: Cli, data: bytes, phrase: str) -> None:
    result = cli.run(["apply", "-f", "-"], stdin=data)
    assert result.exit_code == 2 and phrase in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


# What would block a reader forever or never end: through the real entry point, with a timeout.
BLOCKING = [
    ("fifo-apply", ["apply", "-f", "{fifo}", "--store", "{store}"], "not a regular file"),
    ("fifo-kubeconfig", ["get", "clusters", "--kubeconfig", "{fifo}"], "not a regular file"),
    ("fifo-topology", ["lab", "up", "--dry-run", "-f", "{fifo}"], "not a regular file"),
    ("fifo-store", ["get", "clusters", "--store", "sqlite://{fifo}"], "not a regular file"),
    ("dev-zero-apply", ["apply", "-f", "/dev/zero", "--store", "{store}"], "not a regular file"),
]


@pytest.mark.parametrize("argv, phrase", [c[1:] for c in BLOCKING], ids=[c[0] for c in BLOCKING])
def test_what_would_block_is_refused(scratch: Path, argv: list[str], phrase: str) -> None:
    fifo = scratch / "fifo"
    os.mkfifo(fifo)
    args = [a.format(fifo=fifo, store=f"sqlite://{scratch}/s.db") for a in argv]
    proc = subprocess.run([KOSMOSCTL, *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and phrase in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
