"""dr tells the truth when floaters misbehave, and --resume never passes by testing nothing.

The floaters here are small stand-in processes on Unix sockets (no namespace, no root): one
that dies while it holds a request, one that answers garbage and lives on. The real floater
killed mid-run on a real lab: tests/e2e/test_doctor.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clusterlink.agent import netns
from clusterlink.doctor import run
from clusterlink.doctor.lab import FLOATER_NAME, Floaters, Forked
from clusterlink.doctor.probe import Pair, Result, load_resume, probe_all, save_resume
from clusterlink.errors import BadInput
from clusterlink.inputs import InputError
from clusterlink.lab.state import handle_path, save_plan
from clusterlink.lab.topology import Topology, plan_lab
from tests.conftest import KOSMOSCTL

# A stand-in floater: answers `GET /`, and on a POST either dies (SIGKILL, holding the
# connection) or answers bytes that are no HTTP answer and lives on.
STAND_IN = """
import os, signal, socket, sys
path, mode = sys.argv[1], sys.argv[2]
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
srv.listen(8)
while True:
    conn, _ = srv.accept()
    data = conn.recv(65536)
    if data.startswith(b"GET"):
        conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nOK")
    elif mode == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    else:
        conn.sendall(b"garbage")
    conn.close()
"""


def stand_in(fl: Floaters, label: str, mode: str) -> subprocess.Popen[bytes]:
    sock = fl.socket(label)
    proc = subprocess.Popen([sys.executable, "-c", STAND_IN, sock, mode])
    fl.procs[label] = proc
    while not Path(sock).exists():  # bound: the stand-in is listening
        assert proc.poll() is None, "the stand-in floater did not start"
        time.sleep(0.01)
    return proc


PAIRS = [
    Pair("c1/n2", "c1/n1", "10.1.1.2", "icmp"),
    Pair("c1/n2", "c2/n1", "10.2.1.2", "icmp"),
    Pair("c1/n1", "c1/n2", "10.1.2.2", "icmp"),
]


def probe(fl: Floaters, up: set[str]) -> list[Result]:
    return asyncio.run(
        probe_all(fl, PAIRS, up, timeout=1, concurrency=4, port=8889, done=lambda _n: None)
    )


def test_a_floater_that_dies_mid_request_fails_its_pairs_with_the_reason(tmp_path: Path) -> None:
    fl = Floaters(tmp_path, 8889)
    try:
        stand_in(fl, "c1/n2", "die")
        stand_in(fl, "c1/n1", "garbage")
        results = probe(fl, {"c1/n1", "c1/n2", "c2/n1"})
    finally:
        fl.stop()
    reasons = {(r.pair.src, r.pair.dst): (r.ok, r.reason) for r in results}
    died = "floater on c1/n2 died: killed by SIGKILL"
    assert reasons == {
        ("c1/n2", "c1/n1"): (False, died),
        ("c1/n2", "c2/n1"): (False, died),
        # alive, but no HTTP answer: this pair fails, the run goes on (was an IndexError)
        ("c1/n1", "c1/n2"): (False, "floater error: the floater closed the connection without an answer"),
    }  # fmt: skip


def test_a_floater_dead_before_its_batch_is_reported_dead(tmp_path: Path) -> None:
    fl = Floaters(tmp_path, 8889)
    try:
        proc = stand_in(fl, "c1/n2", "garbage")
        proc.kill()
        proc.wait()
        results = probe(fl, {"c1/n1", "c1/n2", "c2/n1"})
    finally:
        fl.stop()
    mine = [r for r in results if r.pair.src == "c1/n2"]
    assert [r.reason for r in mine] == ["floater on c1/n2 died: killed by SIGKILL"] * 2


def _detached() -> int:
    """In a forked floater: 0 when it is a session of its own, named, on /dev/null."""
    alone = os.getsid(0) == os.getpid()
    named = Path("/proc/self/comm").read_bytes().strip() == FLOATER_NAME
    quiet = all(os.readlink(f"/proc/self/fd/{fd}") == os.devnull for fd in (0, 1, 2))
    print("a floater writes nowhere")  # not into the test's output
    return 0 if alone and named and quiet else 1


def test_a_forked_floater_is_a_process_of_its_own() -> None:
    """What the lab's floaters are forked as: their own session (a Ctrl-C in kosmosctl's
    terminal is not theirs), /dev/null for stdin/out/err (no pipe of the caller stays open),
    the name cl-floater; an exit code or a signal is reported as Popen reports it."""
    assert Forked(_detached).wait(10) == 0
    assert Forked(lambda: 3).wait(10) == 3
    sleeper = Forked(lambda: time.sleep(60) or 0)
    assert sleeper.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        sleeper.wait(0.05)
    sleeper.kill()
    assert sleeper.wait(10) == -signal.SIGKILL and sleeper.poll() == -signal.SIGKILL
    raising = Forked(lambda: 1 // 0)  # an exception ends the child, never runs on in the test
    assert raising.wait(10) == 70


def test_a_forked_floater_killed_is_reported_killed(tmp_path: Path) -> None:
    fl = Floaters(tmp_path, 8889)
    try:
        fl.procs["c1/n1"] = proc = Forked(lambda: time.sleep(60) or 0)
        assert fl.death("c1/n1", grace=0.05) is None  # it runs
        os.kill(proc.pid, signal.SIGKILL)
        assert fl.death("c1/n1") == "killed by SIGKILL"
    finally:
        fl.stop()


def test_dr_json_says_how_long_placing_the_floaters_took(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`summary.floaterSeconds`: part of `seconds`. A lab planned but never built: its
    floaters are forked and fail to enter their (missing) namespaces, so every pair fails
    with `floater missing`, and the time is still measured."""
    monkeypatch.setenv("CLUSTERLINK_LAB_DIR", str(tmp_path / "labs"))
    plan = plan_lab(Topology.model_validate(
        {"name": "drunit", "clusters": [{"name": "c1", "nodes": 3, "podsPerNode": 1}]}
    ))  # fmt: skip
    save_plan(plan)
    assert not any(netns.exists(p.netns) for p in plan.cluster("c1").pods), "a lab drunit is up"
    out = subprocess.run(
        [KOSMOSCTL, "dr", "--src-kubeconfig", str(handle_path("drunit", "c1")), "-o", "json",
         "--timeout", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    data = json.loads(out.stdout)
    assert len(out.stdout.splitlines()) == 9 + 5  # one line per pair
    assert {r["reason"] for r in data["results"]} == {"floater missing (source)"}
    summary = data["summary"]
    assert summary["total"] == 9 and isinstance(summary["floaterSeconds"], float)
    assert 0 < summary["floaterSeconds"] < summary["seconds"]
    assert out.stderr.count("did not come up") == 3


def results_of(failed: int, passed: int) -> list[Result]:
    pair = [Pair(f"c1/n{i}", "c2/n1", "10.2.1.2", "icmp") for i in range(failed + passed)]
    return [Result(p, i >= failed) for i, p in enumerate(pair)]


def test_resume_of_a_run_that_failed_names_its_failures(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "r.json"
    assert save_resume(path, results_of(2, 3)) == 2
    assert json.loads(path.read_text())["tested"] == 5
    assert run.resume_of(path) == {("c1/n0", "c2/n1", "10.2.1.2", "icmp"),
                                   ("c1/n1", "c2/n1", "10.2.1.2", "icmp")}  # fmt: skip


def test_resume_of_a_run_that_passed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    save_resume(path, results_of(0, 4))
    with pytest.raises(BadInput, match="nothing to resume: the last run passed") as info:
        run.resume_of(path)
    assert info.value.exit_code == 2


def test_resume_of_a_file_not_there_yet_tests_everything(tmp_path: Path) -> None:
    assert run.resume_of(tmp_path / "new.json") is None


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"{", "malformed JSON"),
        (b"[]", "not a dr resume file"),
        (b'{"failed": [["a", "b"]]}', "not a dr resume file"),
        (b'{"failed": [], "failed": []}', "repeated"),
        (b"\x00\x01", "binary"),
        (b"[" * 5000 + b"]" * 5000, "nested deeper"),
    ],
)
def test_a_bad_resume_file_is_one_line(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=needle) as info:
        load_resume(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_the_default_resume_file_is_never_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert run.default_resume_path(["k.yaml"], on_lab=False) == (
        tmp_path / "state" / "clusterlink" / "dr-resume.json"
    )
    monkeypatch.setenv("CLUSTERLINK_LAB_DIR", str(tmp_path / "labs"))
    handle = tmp_path / "h.yaml"
    handle.write_text(
        "apiVersion: lab.clusterlink.io/v1\nkind: LabClusterHandle\nlab: l1\ncluster: c1\n"
    )
    assert run.default_resume_path([str(handle)], on_lab=True) == (
        tmp_path / "labs" / "l1" / "dr-resume.json"
    )


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,  # was a RecursionError in the floater
        b'{"targets": [], "targets": []}',
        b"[1, 2]",
        b"\xff\xfe",
        b"\0",
        b'{"targets": "x"}',
    ],
    ids=["deep", "repeated-key", "a-list", "not-utf8", "nul", "bad-field"],
)
def test_the_floater_answers_hostile_bodies_400_and_lives_on(tmp_path: Path, body: bytes) -> None:
    from clusterlink.doctor import floater
    from clusterlink.doctor.lab import http

    sock = str(tmp_path / "f.sock")

    async def exchange() -> tuple[int, int]:
        server = await asyncio.start_unix_server(floater._handle, path=sock)
        async with server:
            reader, writer = await asyncio.open_unix_connection(sock)
            writer.write(b"POST /probe HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
            status = int((await reader.read()).split(b" ", 2)[1])
            writer.close()
            alive, _ = await http(sock, "GET", "/", None, 5)
            return status, alive

    assert asyncio.run(exchange()) == (400, 200)
