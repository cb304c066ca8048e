"""The demo sandbox, headless, as a new user would run it: no sshd, no ssh in PATH."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
from clirun import cli


@pytest.fixture
def no_ssh_env(tmp_path):
    """A PATH with every tool of /usr/bin and /bin except ssh and its kin."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in Path(folder).iterdir():
            if tool.name.startswith(("ssh", "scp", "sftp")) or (bin_dir / tool.name).exists():
                continue
            (bin_dir / tool.name).symlink_to(tool)
    env = dict(
        os.environ,
        PATH=str(bin_dir),
        HOME=str(tmp_path / "home"),
        XDG_DATA_HOME=str(tmp_path / "data"),
    )
    assert subprocess.run(["sh", "-c", "command -v ssh"], env=env).returncode != 0
    yield env
    stopped = cli("--stop-demo", env=env, timeout=60)
    assert stopped.returncode == 0, stopped.stderr


def relconsole(env, *args, timeout=120):
    return cli(*args, env=env, timeout=timeout)


def test_demo_builds_and_runs_web_on_two_local_hosts(no_ssh_env, tmp_path):
    build = relconsole(no_ssh_env, "--demo", "--build", "web")
    assert build.returncode == 0, build.stdout + build.stderr
    assert "BUILD OK: web" in build.stdout
    assert "[check] OK" in build.stdout  # the sample's unit tests ran

    status = relconsole(no_ssh_env, "--demo", "--status", "--json")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)
    assert {(r["host"], r["program"], r["state"]) for r in rows} == {
        ("web1", "web", "RUNNING"),
        ("web2", "web", "RUNNING"),
    }
    pids = {r["host"]: r["pid"] for r in rows}
    assert len(set(pids.values())) == 2

    # It shipped as a web service does: setup, probes from each host, one host at a time.
    out = build.stdout
    assert "[setup web1] stamp done in" in out and "[setup web2] stamp done in" in out
    assert "[supervisor] batch 1/2 (web1): probing" in out
    assert "[supervisor] batch 2/2 (web2): done" in out
    assert out.index("batch 1/2 (web1): done") < out.index("batch 2/2 (web2): switching")
    demo = tmp_path / "data" / "relconsole" / "demo"
    ports = set()
    for host in ("web1", "web2"):
        srv = demo / "hosts" / host / "srv" / "web"
        assert (srv / "current").is_symlink()
        assert (srv / "current" / ".env").is_symlink()
        log = demo / "hosts" / host / "etc" / "supervisor" / "log" / "web.out.log"
        assert "hello from web" in log.read_text()
        env = dict(line.split("=", 1) for line in (srv / "shared" / ".env").read_text().split())
        ports.add(env["PORT"])
        # What a newcomer's curl sees: this host's app, this build.
        with urllib.request.urlopen(f"http://127.0.0.1:{env['PORT']}/", timeout=5) as answer:
            text = answer.read().decode()
        assert f"hello from web (host {host}, revision " in text and "built " in text
        assert "GET /healthz" in (srv / "shared" / "logs" / "access.log").read_text()
    assert len(ports) == 2

    # A second build reuses the sandbox and restarts the program with the new release.
    again = relconsole(no_ssh_env, "--demo", "--build", "web")
    assert again.returncode == 0, again.stdout + again.stderr
    rows = json.loads(relconsole(no_ssh_env, "--demo", "--status", "--json").stdout)
    assert all(r["pid"] != pids[r["host"]] for r in rows)
