"""Delta uploads on a large repository (issue 15, target 3), on a 1-host loopback bed.

python3 -m bench.delta [--files 20000] [--mb 200] [--runs 3]

  full upload   relconsole's upload path for a host with no release (the release tar
                made by git archive, one connection, one stream into tar -x) vs
                ``tar c | ssh host tar x`` of the same tree checked out. Target <= 1.1x.
  memory        peak RSS of a process doing that upload, for a tenth of the files
                and for all of them (same file size): it must not grow with the tree.
  one-file      a build after a one-file commit (a delta) vs a build that sends the
                full tree (``current`` removed first): bytes sent (< 1 MB) and the
                build's wall time (<= 0.3x).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from deltarepo import CountingConnector
from deployconfig import write_config
from gitorigin import make_origin, sample_service_files
from testbed import start_testbed

from bench.common import alternate, median, print_table, row, timed
from relconsole.config import load_config
from relconsole.events import StageFinished
from relconsole.hosts.connect import open_transport
from relconsole.pipeline import run_build
from relconsole.stages.send_release import ReleaseStreams, send_release


def generate(work: Path, n_files: int, total_mb: int, seed: int = 1) -> float:
    """``n_files`` files of ``total_mb`` in all (half random bytes, half text, so git
    and tar see source-like and binary-like content), in folders of 100; committed."""
    started = time.perf_counter()
    rnd = random.Random(seed)
    size = total_mb * 1_000_000 // n_files
    for i in range(n_files):
        path = work / f"lib/pkg{i // 100:03d}/mod{i:05d}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = (f"# module {i}\n" * (size // 24))[: size // 2].encode()
        path.write_bytes(text + rnd.randbytes(size - len(text)))
    for name, body in sample_service_files("svc", "/srv/svc").items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(body)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", f"{n_files} files")
    git(work, "push", "-q", "origin", "main:refs/heads/main")
    return time.perf_counter() - started


def git(work: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(work), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def upload_once(config_path: str, workspace: str, sha: str, base: str) -> None:
    """relconsole's upload path to the bed's host, for a host that has no release."""
    config = load_config(Path(config_path))
    host = next(iter(config.hosts.values()))
    t = open_transport(host, config.settings)
    with tempfile.TemporaryDirectory() as tmp:
        streams = ReleaseStreams(Path(workspace), sha, (), (), Path(tmp))
        try:
            send_release(
                t,
                base,
                "20260101-000000.000-" + sha[:7],
                streams,
                timeout=600,
                cancel=threading.Event(),
                log=lambda line: None,
                deployed=(None, None),
            )
        finally:
            streams.close()
            t.close()


def rss_child() -> None:
    """In a process of its own: one upload, then its peak RSS in KB on stdout."""
    upload_once(*sys.argv[2:6])
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    git_archive = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"maxrss_kb": own, "children_kb": git_archive}))


def peak_rss(config: Path, workspace: Path, sha: str, base: str) -> tuple[int, int]:
    """(relconsole's peak RSS, its largest child's: git archive), in KB."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.delta",
            "--rss-child",
            str(config),
            str(workspace),
            sha,
            base,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = json.loads(out.strip().splitlines()[-1])
    return found["maxrss_kb"], found["children_kb"]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--rss-child":
        rss_child()
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--builds-only", action="store_true", help="only the one-file rows")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bed = start_testbed(1, tmp / "bed")
        try:
            rows = bench(bed, tmp, args)
        finally:
            bed.close()
    print()
    print_table(rows)
    print(f"load average at the end: {os.getloadavg()}")


def bench(bed, tmp: Path, args) -> list[list[str]]:
    host = bed.hosts[0]
    origin = make_origin(tmp / "git")
    seconds = generate(origin.work, args.files, args.mb)
    print(f"generated and pushed {args.files:,} files, {args.mb} MB in {seconds:.1f}s", flush=True)
    if args.builds_only:
        return bench_builds(bed, tmp, origin, args)
    small = make_origin(tmp / "git-small", "small")
    generate(small.work, args.files // 10, args.mb // 10)
    workspace, small_ws = tmp / "ws", tmp / "ws-small"
    git(tmp, "clone", "-q", origin.url, str(workspace))
    git(tmp, "clone", "-q", small.url, str(small_ws))
    sha = git(workspace, "rev-parse", "HEAD")
    config = write_config(tmp / "cfg", bed, origin.url, checks=[])
    n = [0]

    def fresh() -> str:
        n[0] += 1
        return f"/srv/b{n[0]}"

    def clean(base: str) -> None:
        host.ssh(f"rm -rf {shlex.quote(base)}", timeout=120)

    def ours() -> float:
        base = fresh()
        took = timed(lambda: upload_once(str(config), str(workspace), sha, base))
        clean(base)
        return took

    ssh = " ".join(map(shlex.quote, host.ssh_argv()))

    def tar_pipe() -> float:
        base = fresh()
        took = timed(
            lambda: subprocess.run(
                f"tar cf - -C {workspace} --exclude=.git . | "
                f"{ssh} 'mkdir -p {base} && tar xf - -C {base}'",
                shell=True,
                check=True,
            )
        )
        clean(base)
        return took

    for warm in (ours, tar_pipe):
        warm()
    a, b = alternate(ours, tar_pipe, args.runs)
    print("full upload:", a, b, flush=True)
    rows = [
        row(
            f"full upload, {args.files:,} files / {args.mb} MB, connection included",
            median(a),
            median(b),
            "tar c | ssh host tar x",
            target="<= 1.1x",
        )
    ]

    small_sha = git(small_ws, "rev-parse", "HEAD")
    (rss_small, git_small) = peak_rss(config, small_ws, small_sha, fresh())
    (rss_big, git_big) = peak_rss(config, workspace, sha, fresh())
    print("peak RSS KB (small, big), git archive's:", rss_small, rss_big, git_small, git_big)
    for who, small_kb, big_kb in (("relconsole", rss_small, rss_big), ("git", git_small, git_big)):
        rows.append(
            [
                f"peak RSS of a full upload: {who}",
                f"{big_kb / 1024:.0f} MB at {args.files:,} files",
                f"{small_kb / 1024:.0f} MB at {args.files // 10:,} files",
                f"{big_kb / small_kb:.2f}x",
                "independent of size",
            ]
        )
    rows += bench_builds(bed, tmp, origin, args)
    return rows


def bench_builds(bed, tmp: Path, origin, args) -> list[list[str]]:
    """A one-file change built as a delta vs built with the full tree."""
    host = bed.hosts[0]
    config = load_config(write_config(tmp / "build", bed, origin.url, checks=[]))
    counting = CountingConnector(config.settings)
    count = [0]

    def build(full: bool) -> float:
        count[0] += 1
        origin.commit({"VERSION": f"v{count[0]}\n"}, f"one file: v{count[0]}")
        if full:  # no release to start from: the full tree travels
            host.ssh("rm -f /srv/svc/current")
        counting.reset()
        started = time.perf_counter()
        stages: dict[str, float] = {}
        done = run_build(
            config,
            "svc",
            lambda e: stages.update({e.stage: e.seconds}) if isinstance(e, StageFinished) else None,
            connector=counting,
        )
        wall = time.perf_counter() - started
        assert done.ok, done.error
        sent[full].append(counting.sent[host.name])
        upload[full].append(stages["upload"])
        print(f"{'full' if full else 'delta'} build {wall:.2f}s, stages {stages}", flush=True)
        return wall

    sent: dict[bool, list[int]] = {True: [], False: []}
    upload: dict[bool, list[float]] = {True: [], False: []}
    build(True)  # the workspace and the first release
    build(False)
    delta, full = alternate(lambda: build(False), lambda: build(True), args.runs)
    counting.close()
    print("builds delta/full:", delta, full, "bytes:", sent, flush=True)
    return [
        [
            "bytes sent for a one-file change",
            f"{median(sent[False]) / 1000:.0f} KB",
            f"full tree: {median(sent[True]) / 1e6:.0f} MB",
            f"{median(sent[False]) / median(sent[True]):.4f}x",
            "< 1 MB",
        ],
        row(
            "build after a one-file change",
            median(delta),
            median(full),
            "the same build sending the full tree",
            target="<= 0.3x",
        ),
        row(
            "its upload stage",
            median(upload[False][-len(delta) :]),
            median(upload[True][-len(full) :]),
            "the full tree's upload stage",
        ),
    ]


if __name__ == "__main__":
    main()
