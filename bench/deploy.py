"""Deploy and upload figures against the tools people would use instead.

Run as root from the repo root: python3 -m bench.deploy [--runs 5] [--hosts 10]
(needs ansible-core: pip install ansible-core). Brings up its own loopback test bed
(tests/testbed.py) with N real sshd + supervisord hosts; touches nothing else.

Metrics (medians; A/B runs alternate which goes first):
  connections  SSH connections sshd accepted per host per relconsole build (its log).
  deploy 10/1  relconsole build without checks (checkout of a warm workspace, lock,
               upload, switch, restart, verify) to 10 hosts vs to 1 host.
  vs ansible   the same 10-host job as an Ansible playbook: unarchive the release tar
               (made once, beforehand) into releases/<id>, install the supervisor conf,
               switch the symlink, supervisorctl update + restart. forks=10, OpenSSH
               with ControlPersist (Ansible's defaults).
  vs fabric    a plain Fabric script: ThreadingGroup, mkdir, per-file put of the tree
               and the conf, symlink, supervisorctl update + restart.
  upload       a 2,000-file tree to one host, connection included: relconsole's
               transport (connect + one tar stream into one exec channel) vs the limit
               ``tar c | ssh host tar x`` and ``scp -r``.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from deployconfig import write_config
from gitorigin import make_origin
from testbed import SUPERVISORCTL, start_testbed

from bench.common import alternate, median, print_table, row, service_tree, timed, tree_files
from relconsole.config import load_config
from relconsole.events import StageFinished
from relconsole.hosts.connect import open_transport
from relconsole.pipeline import run_build

TREE_FILES = 300  # the deployed service: sample app + a lib/ of this many files


def relconsole_build(config_path: Path, origin, counter: list) -> float:
    counter[0] += 1
    origin.commit({"VERSION": f"v{counter[0]}\n"}, f"v{counter[0]}")
    config = load_config(config_path)
    stages: list[StageFinished] = []
    started = time.perf_counter()
    done = run_build(
        config,
        "svc",
        lambda e: stages.append(e) if isinstance(e, StageFinished) else None,
        threading.Event(),
    )
    wall = time.perf_counter() - started
    assert done.ok, done.error
    return wall


def ansible_files(tmp: Path, bed, hosts, release_tar: Path, conf: Path) -> tuple[Path, Path]:
    inventory = tmp / "inventory.ini"
    lines = ["[targets]"]
    for h in hosts:
        lines.append(
            f"{h.name} ansible_host={h.address} ansible_port={h.port} ansible_user=root "
            f"ansible_ssh_private_key_file={bed.client_key} "
            f"ansible_python_interpreter=/usr/bin/python3 "
            f"ansible_ssh_common_args='-o UserKnownHostsFile={bed.known_hosts} "
            f"-o StrictHostKeyChecking=yes'"
        )
    inventory.write_text("\n".join(lines) + "\n")
    playbook = tmp / "deploy.yml"
    playbook.write_text(
        textwrap.dedent(f"""\
        - hosts: targets
          gather_facts: false
          tasks:
            - file: {{path: "/srv/ans/releases/{{{{ rid }}}}", state: directory}}
            - unarchive: {{src: "{release_tar}", dest: "/srv/ans/releases/{{{{ rid }}}}"}}
            - copy: {{src: "{conf}", dest: /etc/supervisor/conf.d/ans.conf}}
            - file: {{src: "/srv/ans/releases/{{{{ rid }}}}", dest: /srv/ans/current,
                      state: link, force: true}}
            - command: "{SUPERVISORCTL} update"
            - command: "{SUPERVISORCTL} restart ans"
        """)
    )
    return inventory, playbook


def program_conf(name: str, path: str) -> str:
    return textwrap.dedent(f"""\
        [program:{name}]
        command=/usr/bin/python3 -u {path}/current/app.py
        directory={path}/current
        startsecs=1
        autorestart=true
        """)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--upload-only", action="store_true", help="just the upload rows")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bed = start_testbed(1 if args.upload_only else args.hosts, tmp / "bed")
        try:
            if args.upload_only:
                rows += bench_upload(bed, tmp, args.runs)
            else:
                rows += bench(bed, tmp, args.runs)
        finally:
            bed.close()
    print()
    print_table(rows)


def bench(bed, tmp: Path, runs: int) -> list[list[str]]:
    rows = []
    origin = make_origin(tmp / "git")
    origin.commit(service_tree(TREE_FILES), "v0")
    counter = [0]
    all_hosts = [h.name for h in bed.hosts]
    cfg_all = write_config(tmp / "all", bed, origin.url, checks=[], hosts=all_hosts)
    cfg_one = write_config(tmp / "one", bed, origin.url, checks=[], hosts=all_hosts[:1])
    for cfg in (cfg_all, cfg_one):  # warm workspaces and first releases
        relconsole_build(cfg, origin, counter)

    # connections per host per build
    for h in bed.hosts:
        h.sshd_log.write_text("")
    relconsole_build(cfg_all, origin, counter)
    conns = sorted({h.accepted_connections() for h in bed.hosts})
    rows.append(
        ["ssh connections per host per build", "/".join(map(str, conns)), "-", "-", "exactly 1"]
    )
    print("connections:", conns, flush=True)

    ten, one = alternate(
        lambda: relconsole_build(cfg_all, origin, counter),
        lambda: relconsole_build(cfg_one, origin, counter),
        runs,
    )
    rows.append(
        row(
            f"deploy to {len(bed.hosts)} hosts (no checks)",
            median(ten),
            median(one),
            "relconsole to 1 host",
            target="<= 1.5x",
        )
    )
    print("deploy 10 vs 1:", ten, one, flush=True)

    # The alternatives deploy the same tree: a tar made once, and a checked-out folder.
    workdir = tmp / "tree"
    subprocess.run(["git", "clone", "-q", origin.url, str(workdir)], check=True)
    release_tar = tmp / "release.tar"
    subprocess.run(
        ["git", "-C", str(workdir), "archive", "-o", str(release_tar), "HEAD"], check=True
    )
    conf_ans = tmp / "ans.conf"
    conf_ans.write_text(program_conf("ans", "/srv/ans"))
    inventory, playbook = ansible_files(tmp, bed, bed.hosts, release_tar, conf_ans)
    rid = [0]

    def ansible() -> float:
        rid[0] += 1
        cmd = [
            "ansible-playbook",
            "-i",
            str(inventory),
            "-f",
            str(len(bed.hosts)),
            "-e",
            f"rid=r{rid[0]}",
            str(playbook),
        ]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - started
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return wall

    files = sorted(p for p in workdir.rglob("*") if p.is_file() and ".git" not in p.parts)
    conf_fab = tmp / "fab.conf"
    conf_fab.write_text(program_conf("fab", "/srv/fab"))

    def fabric_script() -> float:
        from fabric import ThreadingGroup

        rid[0] += 1
        base = f"/srv/fab/releases/r{rid[0]}"
        started = time.perf_counter()
        group = ThreadingGroup(
            *[f"root@{h.address}:{h.port}" for h in bed.hosts],
            connect_kwargs={"key_filename": str(bed.client_key)},
        )
        dirs = sorted({str(Path(base) / p.parent.relative_to(workdir)) for p in files})
        group.run("mkdir -p " + " ".join(map(shlex.quote, dirs)), hide=True)
        for p in files:
            group.put(str(p), f"{base}/{p.relative_to(workdir)}")
        group.put(str(conf_fab), "/etc/supervisor/conf.d/fab.conf")
        group.run(f"ln -sfn {base} /srv/fab/current", hide=True)
        group.run(f"{SUPERVISORCTL} update && {SUPERVISORCTL} restart fab", hide=True)
        group.close()
        return time.perf_counter() - started

    ansible()  # warm up: first runs set up ControlPersist sockets and python caches
    ours, theirs = alternate(lambda: relconsole_build(cfg_all, origin, counter), ansible, runs)
    rows.append(
        row(
            f"{len(bed.hosts)}-host deploy",
            median(ours),
            median(theirs),
            "ansible-playbook",
            target="faster",
        )
    )
    print("vs ansible:", ours, theirs, flush=True)
    ours, theirs = alternate(
        lambda: relconsole_build(cfg_all, origin, counter), fabric_script, max(2, runs // 2)
    )
    rows.append(
        row(
            f"{len(bed.hosts)}-host deploy",
            median(ours),
            median(theirs),
            "fabric per-file put",
            target="faster",
        )
    )
    print("vs fabric:", ours, theirs, flush=True)

    rows += bench_upload(bed, tmp, runs)
    return rows


def bench_upload(bed, tmp: Path, runs: int) -> list[list[str]]:
    """2,000 files to one host: relconsole's transport vs tar pipe vs scp -r."""
    tree = tmp / "upload-tree"
    for name, body in tree_files(2000).items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(body)
    tar_file = tmp / "upload.tar"
    subprocess.run(["tar", "cf", str(tar_file), "-C", str(tree), "."], check=True)
    host = bed.hosts[0]
    config = load_config(write_config(tmp / "up", bed, "/nonexistent", checks=[]))
    n = [0]

    def target() -> str:
        n[0] += 1
        return f"/srv/up/{n[0]}"

    def ours() -> float:
        # The relconsole path: tar made by the build (here: the same tar), one connection,
        # one exec channel. The tar is re-made each run, as a build would.
        dest = target()

        def go():
            subprocess.run(["tar", "cf", str(tar_file), "-C", str(tree), "."], check=True)
            t = open_transport(config.hosts[host.name], config.settings)
            with open(tar_file, "rb") as data:
                res = t.put_stream(f"mkdir -p {dest} && tar -x -f - -C {dest}", data, timeout=120)
            t.close()
            assert res.ok, res.stdout

        return timed(go)

    ssh = " ".join(map(shlex.quote, host.ssh_argv()))

    def tar_pipe() -> float:
        dest = target()
        return timed(
            lambda: subprocess.run(
                f"tar cf - -C {tree} . | {ssh} 'mkdir -p {dest} && tar xf - -C {dest}'",
                shell=True,
                check=True,
            )
        )

    def scp() -> float:
        dest = target()
        host.ssh(f"mkdir -p {dest}")
        argv = [
            "scp",
            "-q",
            "-r",
            "-F",
            "/dev/null",
            "-i",
            str(bed.client_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={bed.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "KexAlgorithms=curve25519-sha256",
            "-P",
            str(host.port),
            str(tree),
            f"root@{host.address}:{dest}/",
        ]
        return timed(lambda: subprocess.run(argv, check=True))

    # Warm up page cache and sshd first: the first extractions of a fresh tree are
    # dominated by the disk, for every tool alike.
    for warm in (ours, tar_pipe, scp):
        warm()
    a, b = alternate(ours, tar_pipe, max(runs, 7))
    c, d = alternate(ours, scp, max(3, runs // 2))
    print("upload:", a, b, c, d, flush=True)
    return [
        row(
            "upload 2,000-file tree (1 host)",
            median(a),
            median(b),
            "tar | ssh tar x",
            target="<= 1.1x",
        ),
        row("upload 2,000-file tree (1 host)", median(c), median(d), "scp -r", target="<= 0.5x"),
    ]


if __name__ == "__main__":
    sys.exit(main())
