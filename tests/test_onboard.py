"""Onboarding (issue 16), fast tier: --init in temporary repositories, --check-config on
configs with ssh_config and secrets, shell completion in real bash and zsh. Nothing
connects anywhere."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from clirun import cli

from relconsole.cli import build_parser
from relconsole.completion import complete_names, script
from relconsole.config import load_config
from relconsole.config_view import config_view, render_view
from relconsole.repo_scan import scan_repository
from relconsole.starter import parse_host_specs, starter_text, write_starter

ORIGIN = "git@example.com:acme/shop.git"

PROGRAM_CONF = """\
[program:svc]
command=/usr/bin/python3 -u /srv/svc/current/app.py
directory=/srv/svc/current
startsecs=1
"""

UNITTEST_SUITE = """\
import pathlib
import unittest


class VersionTest(unittest.TestCase):
    def test_version_is_written(self):
        self.assertTrue(pathlib.Path("VERSION").read_text().strip())
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def make_repo(base: Path, files: dict[str, str], origin: str | None = ORIGIN) -> Path:
    repo = base / "shop"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    if origin:
        git(repo, "remote", "add", "origin", origin)
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "start")
    return repo


@pytest.fixture
def home(tmp_path) -> Path:
    """A HOME with an empty ~/.ssh: no ssh_config, no keys."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    return home


def relconsole(cwd: Path, home: Path, *args: str, env: dict | None = None, timeout: float = 60):
    """relconsole in ``cwd`` with ``home`` as HOME, no agent and no $RELCONSOLE_CONFIG."""
    unset = ("RELCONSOLE_CONFIG", "SSH_AUTH_SOCK")
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    environ.update(HOME=str(home), **(env or {}))
    return cli(*args, cwd=cwd, env=environ, timeout=timeout, stdin=subprocess.DEVNULL)


def init(repo: Path, **flags) -> str:
    """--init's work in this process (the CLI around it is tested apart): the text
    written to ``repo``/config.toml."""
    target = repo / "config.toml"
    hosts = flags.pop("hosts", None)
    text = starter_text(
        scan_repository(repo), target, hosts=parse_host_specs(hosts) if hosts else None, **flags
    )
    write_starter(target, text)
    return text


SERVICE_FILES = {
    "app.py": "print('svc')\n",
    "VERSION": "1\n",
    "deploy/supervisor/svc.conf": PROGRAM_CONF,
    "tests/test_version.py": UNITTEST_SUITE,
}


# --------------------------------------------------------------------------- --init


def test_init_writes_a_config_that_loads_and_names_program_check_and_origin(tmp_path, home):
    repo = make_repo(tmp_path, SERVICE_FILES)

    proc = relconsole(repo, home, "--init", "--service", "svc", "--hosts", "web1,web2")

    assert proc.returncode == 0, proc.stderr
    config = load_config(repo / "config.toml")
    service = config.services["svc"]
    assert service.repo == ORIGIN
    assert service.branch == "main"
    assert service.hosts == ("web1", "web2")
    assert service.programs == ("svc",)
    assert service.path == "/srv/svc"  # from the program config's /srv/svc/current
    assert [(c.name, c.run) for c in service.checks] == [
        ("tests", "python3 -m unittest discover -s tests")
    ]
    assert [(f.src, f.dest) for f in service.files] == [
        ("deploy/supervisor/svc.conf", "/etc/supervisor/conf.d")
    ]
    assert [config.hosts[h].address for h in service.hosts] == ["web1", "web2"]
    text = (repo / "config.toml").read_text()
    assert "# guess: a unittest suite (tests/test_version.py)" in text


def test_every_key_init_writes_carries_a_comment(tmp_path, home, monkeypatch):
    monkeypatch.setenv("HOME", str(home))
    files = {**SERVICE_FILES, "pyproject.toml": "[tool.ruff]\nline-length = 100\n"}
    repo = make_repo(tmp_path, files)
    init(repo, hosts="web1,deploy@10.0.0.5:2200")

    keys = [
        line
        for line in (repo / "config.toml").read_text().splitlines()
        if re.match(r"[A-Za-z_]+ = ", line)
    ]
    assert len(keys) >= 15
    uncommented = [line for line in keys if not re.search(r'(^[^"#]*|"[^"]*"[^"#]*)#', line)]
    assert not uncommented


def test_the_guessed_unittest_check_passes_in_the_repository(tmp_path, home, monkeypatch):
    monkeypatch.setenv("HOME", str(home))
    repo = make_repo(tmp_path, SERVICE_FILES)
    init(repo)
    (check,) = load_config(repo / "config.toml").services["shop"].checks

    ran = subprocess.run(check.run, shell=True, cwd=repo, capture_output=True, text=True)

    assert ran.returncode == 0, ran.stderr
    assert "Ran 1 test" in ran.stderr


def test_init_refuses_to_overwrite_and_force_replaces(tmp_path, home):
    repo = make_repo(tmp_path, SERVICE_FILES)
    (repo / "config.toml").write_text("# ours\n")

    refused = relconsole(repo, home, "--init")
    assert refused.returncode == 2
    assert "config.toml exists: not overwritten (--force replaces it)" in refused.stderr
    assert (repo / "config.toml").read_text() == "# ours\n"

    forced = relconsole(repo, home, "--init", "--force", "--service", "svc")
    assert forced.returncode == 0, forced.stderr
    assert "svc" in load_config(repo / "config.toml").services


def test_init_outside_a_git_repository_and_bad_flags_exit_2(tmp_path, home):
    outside = relconsole(tmp_path, home, "--init")
    assert outside.returncode == 2
    assert "is not inside a git work tree" in outside.stderr
    assert not (tmp_path / "config.toml").exists()

    repo = make_repo(tmp_path, SERVICE_FILES)
    bad_path = relconsole(repo, home, "--init", "--path", "srv/x")
    assert bad_path.returncode == 2
    assert "[services.shop] key 'path': must be an absolute path" in bad_path.stderr
    assert relconsole(repo, home, "--init", "--hosts", "web 1").returncode == 2
    assert relconsole(repo, home, "--service", "svc").returncode == 2  # without --init
    assert not (repo / "config.toml").exists()


def test_init_writes_ssh_config_aliases_without_spelling_them_out(tmp_path, home, monkeypatch):
    monkeypatch.setenv("HOME", str(home))
    (home / ".ssh" / "config").write_text(
        "Host web1\n    HostName 10.1.1.1\n    Port 2222\n    User deploy\n"
    )
    repo = make_repo(tmp_path, SERVICE_FILES)

    text = init(repo, hosts="web1,plain.example.com")

    web1 = text.split("[hosts.web1]")[1].split("\n\n")[0]
    plain = text.split('[hosts."plain.example.com"]')[1].split("\n\n")[0]
    assert "ssh_config alias: 10.1.1.1:2222 as deploy" in web1
    assert (
        "\nuser = " not in web1 and "\nport = " not in web1 and "10.1.1.1" not in web1.split("#")[0]
    )
    assert "sudo = true" in web1  # deploy is not root: a guess, said so
    assert "not in ssh_config" in plain and "\nuser = " in plain
    assert load_config(repo / "config.toml").hosts["web1"].user is None


def test_init_without_origin_deploys_the_repository_itself(tmp_path, home, monkeypatch):
    monkeypatch.setenv("HOME", str(home))
    repo = make_repo(tmp_path, SERVICE_FILES, origin=None)
    init(repo)
    assert load_config(repo / "config.toml").services["shop"].repo == str(repo)


def test_scan_guesses_checks_from_what_the_repository_holds(tmp_path):
    repo = make_repo(
        tmp_path,
        {
            "Makefile": "test:\n\tpython3 -m pytest\n",
            "pytest.ini": "[pytest]\n",
            "tests/test_a.py": "import pytest\n",
            ".flake8": "[flake8]\n",
            "setup.cfg": "[mypy]\n",
            "ops/supervisord.conf": "[supervisord]\n[program:all]\ncommand=x\n",
            "ops/progs/a.conf": "[program:a]\ncommand=/opt/shop/current/a\n",
            "ops/progs/b.conf": "[group:workers]\nprograms=b1,b2\n[program:b1]\n[program:b2]\n",
            "untracked-later.conf": "",
        },
    )
    (repo / "extra.conf").write_text("[program:untracked]\n")  # not committed: not deployed

    facts = scan_repository(repo / "ops")

    assert [(c.name, c.run) for c in facts.checks] == [
        ("tests", "make test"),
        ("flake8", "flake8"),
        ("mypy", "mypy"),
    ]
    assert [(c.name, c.run) for c in facts.alternatives] == [("tests", "python3 -m pytest -q")]
    assert facts.programs == ["a", "workers:*"]
    assert facts.uploads == ["ops/progs/*.conf"]
    assert facts.skipped == [
        ("ops/supervisord.conf", "a whole supervisord config ([supervisord] section)")
    ]
    assert facts.run_from == "/opt/shop"


# --------------------------------------------------------------------------- --check-config

SSH_CONFIG = """\
Host bastion
    HostName 192.0.2.10
    User jump
Host web?
    User deploy
    Port 2222
    ProxyJump bastion
    IdentityFile {key}
    ServerAliveInterval 30
Host web1
    HostName 192.0.2.11
"""


def write_checked_config(tmp_path: Path, extra_service: str = "") -> Path:
    key = tmp_path / "id_deploy"
    key.write_text("not really a key\n")
    (tmp_path / "ssh_config").write_text(SSH_CONFIG.format(key=key))
    (tmp_path / "token").write_text("file-secret-value\n")
    config = tmp_path / "config.toml"
    config.write_text(
        textwrap.dedent(
            f"""\
            [settings]
            ssh_config = "ssh_config"
            known_hosts = "known_hosts"

            [hosts.web1]
            address = "web1"
            sudo = true

            [hosts.db]
            address = "192.0.2.20"
            user = "root"
            port = 22
            key = "id_deploy"

            [services.shop]
            repo = "https://bot:hunter2-url-password@git.example.com/acme/shop.git"
            hosts = ["web1", "db"]
            secrets = {{ TOKEN = "env:CI_TOKEN", DSN = "file:token", GONE = "env:NOT_SET_ANYWHERE" }}
            {extra_service}
            """
        )
    )
    return config


def test_check_config_shows_what_ssh_config_resolves_and_where_it_came_from(tmp_path):
    config = load_config(write_checked_config(tmp_path))

    view = config_view(config, environ={})  # no SSH_AUTH_SOCK: no agent to offer

    web1, db = view["hosts"]["web1"], view["hosts"]["db"]
    assert (web1["hostname"], web1["port"], web1["user"]) == ("192.0.2.11", 2222, "deploy")
    assert (web1["hostname_from"], web1["port_from"], web1["user_from"]) == (
        "ssh_config HostName",
        "ssh_config",
        "ssh_config",
    )
    assert web1["route"] == "bastion (192.0.2.10:22) → web1 (192.0.2.11:2222)"
    assert web1["key"] == f"{tmp_path / 'id_deploy'} (ssh_config IdentityFile)"
    assert web1["ignored"] == ["web1: ServerAliveInterval 30"]
    assert (db["hostname"], db["port"], db["user"], db["port_from"]) == (
        "192.0.2.20",
        22,
        "root",
        "config",
    )
    assert db["key"] == f"{tmp_path / 'id_deploy'} (config key)"
    assert view["services"]["shop"]["hosts"] == ["web1", "db"]
    with_agent = config_view(config, environ={"SSH_AUTH_SOCK": "/agent"})["hosts"]["web1"]
    assert with_agent["key"].endswith("(ssh_config IdentityFile), then ssh-agent")

    text = render_view(view)
    assert "bastion (192.0.2.10:22) → web1 (192.0.2.11:2222)" in text
    assert "2222 (ssh_config)" in text and "deploy (ssh_config)" in text


def test_check_config_masks_secret_values(tmp_path):
    config = load_config(write_checked_config(tmp_path))

    view = config_view(config, environ={"CI_TOKEN": "env-secret-value"})

    for out in (json.dumps(view), render_view(view)):
        for secret in ("env-secret-value", "file-secret-value", "hunter2-url-password"):
            assert secret not in out
        assert "https://bot:****@git.example.com/acme/shop.git" in out
        assert "env:CI_TOKEN" in out and "NOT_SET_ANYWHERE is not set" in out
    secrets = view["services"]["shop"]["secrets"]
    assert secrets["TOKEN"] == {"reference": "env:CI_TOKEN", "set": True, "value": "****"}
    assert secrets["DSN"]["set"] is True and secrets["GONE"]["set"] is False


def test_check_config_masks_a_secret_value_wherever_it_appears(tmp_path):
    path = write_checked_config(
        tmp_path, extra_service='checks = [{ name = "t", run = "curl -H env-secret-value x" }]'
    )
    text = render_view(config_view(load_config(path), environ={"CI_TOKEN": "env-secret-value"}))
    assert "curl -H **** x" in text and "env-secret-value" not in text


def test_check_config_exits_0_when_valid_and_2_naming_file_table_and_key(tmp_path, home):
    config = write_checked_config(tmp_path)
    good = relconsole(tmp_path, home, "--config", str(config), "--check-config", "--json")
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["hosts"]["web1"]["hostname"] == "192.0.2.11"
    config = write_checked_config(tmp_path, extra_service="keep_releases = 0")

    proc = relconsole(tmp_path, home, "--config", str(config), "--check-config")

    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == (
        "relconsole: config.toml: [services.shop] key 'keep_releases': must be at least 1, got 0"
    )


# --------------------------------------------------------------------------- completion

COMPLETION_CONFIG = """\
[hosts.web1]
address = "10.0.0.11"
[hosts.web2]
address = "10.0.0.12"
[hosts.db1]
address = "10.0.0.21"
[services.api]
repo = "git@example.com:acme/api.git"
hosts = ["web1", "web2"]
[services.billing]
repo = "git@example.com:acme/billing.git"
hosts = ["db1"]
"""

# Each line: the words typed (the last is being completed) → what is offered.
CASES = [
    ("relconsole --build ''", ["api", "billing"]),
    ("relconsole --rollback b", ["billing"]),
    ("relconsole --status ''", ["api", "billing"]),
    ("relconsole --build api --hosts ''", ["web1", "web2"]),
    ("relconsole --build api --hosts web1,", ["web1,web2"]),
    ("relconsole --trust ''", ["web1", "web2", "db1"]),
    ("relconsole --completion ''", ["bash", "zsh"]),
    ("relconsole --check", ["--check-config"]),
    ("relconsole --status --js", ["--json"]),
]

DRIVER = """\
relconsole() {{ {python} -m relconsole "$@"; }}
{setup}
t() {{
    {local}
    COMP_WORDS=("$@"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMPREPLY=()
    _relconsole
    echo "${{COMPREPLY[*]}}"
}}
"""


def run_completion(shell: str, tmp_path: Path, cases: list[str], config: Path | None = None):
    if shell == "bash":
        setup, local = f"source {tmp_path / 'completion'}", ""
    else:  # how a zsh user enables it; zsh's bashcompinit runs the function in sh mode
        setup = f"autoload -U compinit && compinit -u -d {tmp_path}/zcompdump\n"
        setup += f"source {tmp_path / 'completion'}\n"
        setup += 'print -r -- "registered: ${_comps[relconsole]}"'
        local = "emulate -L sh"
    (tmp_path / "completion").write_text(script(shell, build_parser()))
    lines = DRIVER.format(python=sys.executable, setup=setup, local=local)
    lines += "\n".join(f"t {case}" for case in cases) + "\n"
    env = dict(os.environ, HOME=str(tmp_path))
    if config is not None:
        env["RELCONSOLE_CONFIG"] = str(config)
    proc = subprocess.run(
        [shell, "-c", lines], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_offers_service_and_host_names_from_the_config(shell, tmp_path):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (scripts/test installs it)")
    config = tmp_path / "deploy.toml"
    config.write_text(COMPLETION_CONFIG)

    out = run_completion(shell, tmp_path, [c for c, _ in CASES], config)

    if shell == "zsh":
        assert out.pop(0) == "registered: _bash_complete -F _relconsole"
    for (case, expected), got in zip(CASES, out, strict=True):
        # zsh's own matching filters by the typed prefix; bash's compgen does it here.
        offered = got.split()
        typed = case.split()[-1].strip("'").rsplit(",", 1)[-1]
        if shell == "zsh":
            offered = [o for o in offered if o.rsplit(",", 1)[-1].startswith(typed)]
        assert offered == expected, case


def test_completion_reads_the_config_named_on_the_command_line(tmp_path):
    config = tmp_path / "other place.toml"
    config.write_text(COMPLETION_CONFIG.replace("billing", "payroll"))
    out = run_completion(
        "bash", tmp_path, [f"relconsole --config '{config}' --pending ''", "relconsole --build ''"]
    )
    assert out == ["api payroll", ""]  # no config.toml in the folder: no names, no error


def test_complete_names_survives_a_broken_config(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[services\n")
    assert complete_names("services", str(bad)) == []
    bad.write_text('services = "x"\n[hosts.web1]\naddress = "a"\n')
    assert complete_names("services", str(bad)) == []
    assert complete_names("hosts-of:nope", str(bad)) == ["web1"]
    bad.write_text('[services."a b"]\n[services.ok]\n')
    assert complete_names("services", str(bad)) == ["ok"]  # a name the shell could misread


def test_the_script_lists_every_visible_flag_of_the_parser():
    parser = build_parser()
    text = script("bash", parser)
    flags = re.search(r'_relconsole_flags="([^"]*)"', text)[1].split()
    visible = {s for a in parser._actions if a.help != "==SUPPRESS==" for s in a.option_strings}
    assert set(flags) == {f for f in visible if f.startswith("--")}
    assert "--complete-names" not in flags
    with pytest.raises(ValueError):
        script("fish", parser)
