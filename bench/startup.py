"""Start-up costs against ``python -c pass``: ``relconsole --help``, ``relconsole
--build`` to its first event (``--json``: the first line), one TAB of shell completion
(``--complete-names``, what the completion script runs for service and host names),
``--check-config`` and ``--init``.

Run from the repo root: python3 -m bench.startup [--runs 30]. Uses the ``relconsole``
console script installed beside this interpreter (pip install .; not a pyenv shim,
which is a shell script of its own) with this checkout first on PYTHONPATH, and the same
interpreter for ``python -c pass``. The config and repository it needs are made in a
temporary folder (10 hosts, ssh_config aliases through one jump host; a repository
with a program config and a test suite). The build's hosts are loopback addresses
nothing listens on: it is stopped once its first event is out.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import alternate, median, print_table, row, timed

HOSTS = 10
ROOT = Path(__file__).resolve().parent.parent


def compile_package() -> None:
    """Bytecode for relconsole, as an installed package has it: with
    PYTHONDONTWRITEBYTECODE set (as on the CI machines), a checkout would otherwise be
    compiled anew by every start."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "relconsole")], check=True)


def first_line(argv: list[str], env: dict[str, str]) -> Callable[[], float]:
    """Seconds from spawning ``argv`` to its first line of output; then it is killed."""

    def once() -> float:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        line = proc.stdout.readline()  # type: ignore[union-attr]
        seconds = time.perf_counter() - started
        proc.kill()
        proc.wait()
        if not line:
            sys.exit(f"{argv}: no output: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
        return seconds

    return once


def write_fixtures(base: Path) -> tuple[Path, Path]:
    """A 10-host config (aliases resolved through an ssh_config) and a git repository."""
    lines = ["Host bastion", "    HostName 192.0.2.1"]
    for i in range(HOSTS):
        lines += [f"Host web{i}", f"    HostName 192.0.2.{10 + i}", "    ProxyJump bastion"]
    (base / "ssh_config").write_text("\n".join(lines) + "\n")
    # What --build deploys: three loopback hosts nothing listens on (it is stopped at
    # its first event anyway), a repository here.
    build_hosts = "".join(f'[hosts.b{i}]\naddress = "127.0.0.1"\nport = 9\n' for i in range(3))
    hosts = "".join(f'[hosts.web{i}]\naddress = "web{i}"\n' for i in range(HOSTS))
    names = ", ".join(f'"web{i}"' for i in range(HOSTS))
    config = base / "config.toml"
    config.write_text(
        f'[settings]\nssh_config = "ssh_config"\n{hosts}'
        f'[services.api]\nrepo = "git@example.com:acme/api.git"\nhosts = [{names}]\n'
        f"{build_hosts}"
        f'[services.svc]\nrepo = "{base / "repo"}"\nhosts = ["b0", "b1", "b2"]\n'
    )
    repo = base / "repo"
    (repo / "deploy").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "deploy" / "api.conf").write_text("[program:api]\ncommand=/srv/api/current/run\n")
    (repo / "tests" / "test_api.py").write_text("import unittest\n")
    git = ["git", "-C", str(repo), "-c", "user.name=b", "-c", "user.email=b@b.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "start"]):
        subprocess.run(git + args, check=True)
    return config, repo


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    beside = Path(sys.executable).with_name("relconsole")
    script = str(beside) if beside.exists() else shutil.which("relconsole")
    if script is None:
        sys.exit("relconsole is not installed (pip install .)")

    env = {k: v for k, v in os.environ.items() if k != "RELCONSOLE_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    compile_package()

    def quiet(argv, cwd=None):
        return lambda: timed(
            lambda: subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, cwd=cwd, env=env)
        )

    baseline = quiet([sys.executable, "-c", "pass"])
    with tempfile.TemporaryDirectory() as tmp:
        config, repo = write_fixtures(Path(tmp))
        init = [script, "--init", "--force", "--hosts", "web1,web2"]
        rows = []
        for metric, argv, cwd, target in (
            ("relconsole --help", [script, "--help"], None, "<= 1.3x"),
            (
                "a TAB: relconsole --complete-names services",
                [script, "--config", str(config), "--complete-names", "services"],
                None,
                "<= 3x",
            ),
            (
                f"relconsole --check-config, {HOSTS} hosts via ssh_config",
                [script, "--config", str(config), "--check-config"],
                None,
                "",
            ),
            ("relconsole --init (a small repository)", init, repo, ""),
        ):
            ours, theirs = alternate(quiet(argv, cwd), baseline, args.runs)
            rows.append(row(metric, median(ours), median(theirs), "python -c pass", target=target))
        # What no --build can do without: parse its arguments and the TOML config, make
        # the config's and events' dataclasses, write a JSON line. The floor under the
        # first event's ratio, whatever relconsole's own code does.
        floor = [sys.executable, "-c", "import argparse, dataclasses, json, tomllib"]
        ours, theirs = alternate(quiet(floor), baseline, args.runs)
        rows.append(
            row(
                "floor: import argparse, dataclasses, json, tomllib",
                *map(median, (ours, theirs)),
                "python -c pass",
            )
        )
        # The same build without an ssh_config: what working out the routes costs
        # before the first event (paramiko's import, which imports invoke).
        plain = config.with_name("plain.toml")
        plain.write_text(config.read_text().replace('ssh_config = "ssh_config"', ""))
        for label, path in (("", config), (", no ssh_config", plain)):
            build = [script, "--config", str(path), "--build", "svc", "--json"]
            ours, theirs = alternate(first_line(build, env), baseline, args.runs)
            rows.append(
                row(
                    f"relconsole --build: its first event{label}",
                    median(ours),
                    median(theirs),
                    "python -c pass",
                    target="<= 1.3x",
                )
            )
    print_table(rows)


if __name__ == "__main__":
    main()
