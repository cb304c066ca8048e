"""Onboarding (issue 16) on the real bed: a config written by ``--init`` passes
``--doctor`` and builds without an edit, its hosts being ssh_config aliases; and
``--check-config`` shows the values a connection really uses, secrets masked."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import tomli_w
from gitorigin import make_origin, sample_service_files
from test_onboard import UNITTEST_SUITE
from test_onboard import relconsole as onboard_relconsole
from test_testbed import start_sample
from testbed import SUPERVISORCTL, FakeHost, TestBed, _run


def alias_home(tmp_path: Path, bed: TestBed) -> Path:
    """A HOME whose ~/.ssh knows the bed's h1 and h2 as web1 and web2, as a team's
    would: HostName, Port, User and IdentityFile in ssh_config, keys in known_hosts."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    h1, h2 = bed.hosts[:2]
    (home / ".ssh" / "config").write_text(
        textwrap.dedent(f"""\
        Host web1
            HostName {h1.address}
        Host web2
            HostName {h2.address}
        Host web?
            Port {h1.port}
            User deploy
            IdentityFile {bed.client_key}
        """)
    )
    shutil.copy(bed.known_hosts, home / ".ssh" / "known_hosts")
    return home


@contextlib.contextmanager
def supervisorctl_on_path(host: FakeHost, tmp_path: Path) -> Iterator[None]:
    """Make ``supervisorctl`` a command on the host, as a packaged supervisor is: a
    wrapper bound over /usr/local/sbin (on sudo's secure_path) inside the host's own
    mount namespace only, undone afterwards."""
    folder = tmp_path / f"{host.name}-sbin"
    folder.mkdir()
    wrapper = folder / "supervisorctl"
    wrapper.write_text(f'#!/bin/sh\nexec {SUPERVISORCTL} "$@"\n')
    wrapper.chmod(0o755)
    pid = (host.root / "sshd.pid").read_text().split()[0]
    _run(["nsenter", "-t", pid, "-m", "mount", "--bind", str(folder), "/usr/local/sbin"])
    try:
        yield
    finally:
        subprocess.run(["nsenter", "-t", pid, "-m", "umount", "/usr/local/sbin"], check=False)


def relconsole(cwd: Path, home: Path, *args: str, env: dict | None = None):
    return onboard_relconsole(cwd, home, *args, env=env, timeout=180)


def test_a_config_from_init_passes_doctor_and_builds_without_edits(bed, tmp_path):
    origin = make_origin(tmp_path)  # svc.git: --init names the service svc
    origin.commit(
        {**sample_service_files("svc", "/srv/svc"), "tests/test_version.py": UNITTEST_SUITE},
        "v1",
    )
    home = alias_home(tmp_path, bed)
    hosts = bed.hosts[:2]
    with contextlib.ExitStack() as prepared:
        for host in hosts:  # prepared hosts: supervisor installed, the program known
            start_sample(host)
            prepared.enter_context(supervisorctl_on_path(host, tmp_path))

        init = relconsole(origin.work, home, "--init", "--hosts", "web1,web2")
        assert init.returncode == 0, init.stderr
        text = (origin.work / "config.toml").read_text()
        assert f"ssh_config alias: {hosts[0].address}:{hosts[0].port} as deploy" in text

        doctor = relconsole(origin.work, home, "--doctor", "--json")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        rows = json.loads(doctor.stdout)
        assert {r["host"] for r in rows} == {"web1", "web2"}
        assert all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]
        assert {r["detail"] for r in rows if r["check"] == "programs of svc"} == {"svc"}

        build = relconsole(origin.work, home, "--build", "svc")
        assert build.returncode == 0, build.stdout + build.stderr
        assert "BUILD OK: svc" in build.stdout
        assert "Ran 1 test" in build.stdout  # the guessed unittest check ran
    for host in hosts:
        current = os.readlink(host.path("/srv/svc/current"))
        assert current.startswith("/srv/svc/releases/") and not current.endswith("/r1")


def test_check_config_shows_what_the_connection_really_uses(bed, tmp_path):
    home = alias_home(tmp_path, bed)
    (tmp_path / "dsn").write_text("file-secret-on-the-bed\n")
    config = tmp_path / "config.toml"
    config.write_bytes(
        tomli_w.dumps(
            {
                "settings": {"state_dir": str(tmp_path / "state"), "connect_timeout": 5},
                "hosts": {
                    name: {"address": name, "supervisorctl": SUPERVISORCTL, "sudo": True}
                    for name in ("web1", "web2")
                },
                "services": {
                    "svc": {
                        "repo": "https://ci:url-secret-on-the-bed@git.example.com/svc.git",
                        "hosts": ["web1", "web2"],
                        "programs": ["svc"],
                        "secrets": {"TOKEN": "env:BED_TOKEN", "DSN": "file:dsn"},
                    }
                },
            }
        ).encode()
    )
    env = {"BED_TOKEN": "env-secret-on-the-bed"}
    for host in bed.hosts[:2]:
        start_sample(host)

    shown = relconsole(tmp_path, home, "--check-config", "--json", env=env)
    text = relconsole(tmp_path, home, "--check-config", env=env)
    doctor = relconsole(tmp_path, home, "--doctor", "--json", env=env)

    assert shown.returncode == 0 and text.returncode == 0, shown.stderr + text.stderr
    view = json.loads(shown.stdout)
    for name, host in zip(("web1", "web2"), bed.hosts, strict=False):
        h = view["hosts"][name]
        assert (h["hostname"], h["port"], h["user"]) == (host.address, host.port, "deploy")
        assert (h["port_from"], h["user_from"]) == ("ssh_config", "ssh_config")
        assert h["key"] == f"{bed.client_key} (ssh_config IdentityFile)"
    for secret in ("env-secret-on-the-bed", "file-secret-on-the-bed", "url-secret-on-the-bed"):
        assert secret not in shown.stdout + text.stdout
    assert view["services"]["svc"]["secrets"]["TOKEN"]["value"] == "****"
    assert "https://ci:****@git.example.com/svc.git" in text.stdout
    # What --check-config said is what the doctor's connections used.
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    rows = {(r["host"], r["check"]): r["detail"] for r in json.loads(doctor.stdout)}
    for name in ("web1", "web2"):
        assert rows[(name, "reachable")] == view["hosts"][name]["route"]
        assert rows[(name, "login")] == f"as {view['hosts'][name]['user']}"
